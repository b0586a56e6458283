"""An attack corpus: named malicious tokens, each refused before any claim is trusted, with its reason.

Most tokens here are *correctly signed* over their exact bytes with the key the
verifier holds (breakwater's HS256 key, or the pool's RSA key), so a refusal
proves the strict parser (resilience.compact_jws) or the header/claim rules
caught them — not a signature failure. Well-formed tokens of both issuers,
shaped like what Cognito and ``issue_token`` produce, are still accepted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import HMACAlgorithm, RSAAlgorithm

from resilience.errors import JwtKeyError, TokenInvalidError
from resilience.tokens import JwksCache, SigningKey, TokenPolicy, TokenVerifier, issue_token

NOW = 1_795_520_000.0
POLICY = TokenPolicy(
    region="us-east-1",
    user_pool_id="us-east-1_Pool",
    client_ids=frozenset({"client-a"}),
    breakwater_issuer="breakwater:dev",
)
COGNITO = POLICY.cognito_issuer
KEY = SigningKey(kid="v1", key=b"k" * 48)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)


class Keys:
    def current(self) -> SigningKey:
        return KEY

    def accepted(self) -> tuple[SigningKey, ...]:
        if not KEY.key:
            raise JwtKeyError("no key")
        return (KEY,)


def _jwks(url: str, timeout: float) -> bytes:
    entry = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    entry.update(kid="k1", alg="RS256", use="sig")
    return json.dumps({"keys": [entry]}).encode()


def verifier() -> TokenVerifier:
    clock: Callable[[], float] = lambda: NOW  # noqa: E731
    return TokenVerifier(
        POLICY, jwks=JwksCache(POLICY, fetch=_jwks, clock=clock, timeout=3.0), signing_keys=Keys(), clock=clock
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def enc(value: Any) -> str:
    return b64(value if isinstance(value, bytes) else json.dumps(value).encode())


BW_HEADER: dict[str, Any] = {"alg": "HS256", "typ": "JWT", "kid": "v1"}
BW_CLAIMS: dict[str, Any] = {
    "iss": "breakwater:dev",
    "aud": "breakwater",
    "sub": "bot",
    "jti": "j-1",
    "iat": int(NOW),
    "exp": int(NOW) + 3600,
    "tenant": "acme",
    "roles": ["speaker"],
}
COGNITO_HEADER: dict[str, Any] = {"kid": "k1", "alg": "RS256"}  # what Cognito sends: no typ
COGNITO_CLAIMS: dict[str, Any] = {
    "sub": "alice",
    "cognito:groups": ["speaker"],
    "iss": COGNITO,
    "aud": "client-a",
    "token_use": "id",
    "custom:tenant": "acme",
    "jti": "j-2",
    "iat": int(NOW),
    "exp": int(NOW) + 3600,
}


def hs(header_segment: str, payload_segment: str) -> str:
    """Signed with breakwater's key over exactly these segments."""
    signing_input = f"{header_segment}.{payload_segment}".encode()
    return f"{header_segment}.{payload_segment}.{b64(_HS256.sign(signing_input, _HS256.prepare_key(KEY.key)))}"


def rs(header_segment: str, payload_segment: str) -> str:
    """Signed with the user pool's RSA key over exactly these segments."""
    signing_input = f"{header_segment}.{payload_segment}".encode()
    return f"{header_segment}.{payload_segment}.{b64(_RS256.sign(signing_input, RSA_KEY))}"


def bw(header: dict[str, Any] | None = None, **claims: Any) -> str:
    body = {**BW_CLAIMS, **claims}
    return hs(enc(header if header is not None else BW_HEADER), enc({k: v for k, v in body.items() if v is not None}))


def cognito(header: dict[str, Any] | None = None, **claims: Any) -> str:
    body = {**COGNITO_CLAIMS, **claims}
    header = header if header is not None else COGNITO_HEADER
    return rs(enc(header), enc({k: v for k, v in body.items() if v is not None}))


def raw_json(text: str) -> str:
    return b64(text.encode())


def _bw_json(text: str) -> str:
    return hs(enc(BW_HEADER), raw_json(text))


def _with_literal(name: str, literal: str) -> str:
    # NaN / Infinity: Python's json (and PyJWT) read them; NaN compares false with everything.
    others = json.dumps({k: v for k, v in BW_CLAIMS.items() if k != name})
    return _bw_json(f'{others[:-1]}, "{name}": {literal}}}')


def _standard_alphabet() -> str:
    # A signature whose base64 uses '+' or '/' (the standard alphabet, not base64url).
    for n in range(200):
        token = bw(jti=f"j-{n}")
        signature = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
        standard = base64.b64encode(signature).rstrip(b"=").decode()
        if "+" in standard or "/" in standard:
            return token.rsplit(".", 1)[0] + "." + standard
    raise AssertionError("no signature with '+' or '/' in 200 tries")


def _trailing_bits(token: str) -> str:
    # HS256's 32-byte MAC is 43 characters: the last carries 2 unused bits. Setting one decodes to the
    # same MAC: one signed token, several spellings (a lenient decoder would verify them all).
    head, signature = token.rsplit(".", 1)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    return f"{head}.{signature[:-1]}{alphabet[last ^ 1]}"


def _length_1_mod_4() -> str:
    header, payload, _ = bw().split(".")
    payload = payload + "A" * ((1 - len(payload)) % 4)
    return hs(header, payload)


def _deep() -> str:
    return _bw_json("[" * 2000 + "]" * 2000)


def _none() -> str:
    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(BW_CLAIMS)}."


def _hs_with_rsa_public_key() -> str:
    # The classic confusion: HS256 keyed with the pool's public key (anyone can fetch it).
    from cryptography.hazmat.primitives import serialization

    public = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header, payload = enc({"alg": "HS256", "kid": "k1"}), enc(COGNITO_CLAIMS)
    signature = HMACAlgorithm(HMACAlgorithm.SHA256).sign(f"{header}.{payload}".encode(), public)
    return f"{header}.{payload}.{b64(signature)}"


def _embedded_jwk() -> str:
    jwk = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return cognito({**COGNITO_HEADER, "jwk": jwk})


#: (name, token, reason the refusal must contain)
CORPUS: list[tuple[str, Callable[[], object], str]] = [
    # -- segments
    ("two-segments", lambda: ".".join(bw().split(".")[:2]), "not three segments"),
    ("four-segments", lambda: bw() + "." + b64(b"x"), "not three segments"),
    (
        "jwe-five-segments",
        lambda: ".".join([enc({"alg": "RSA-OAEP", "enc": "A256GCM"}), "AA", "AA", "AA", "AA"]),
        "not three segments",
    ),
    ("one-segment", lambda: bw().replace(".", ""), "not three segments"),
    ("dot-run", lambda: bw().replace(".", "..", 1), "not three segments"),
    ("trailing-dot", lambda: bw() + ".", "not three segments"),
    ("empty-payload", lambda: f"{enc(BW_HEADER)}..{b64(b'x' * 32)}", "empty segment"),
    ("empty-header", lambda: f".{enc(BW_CLAIMS)}.{b64(b'x' * 32)}", "empty segment"),
    # -- alphabet
    (
        "padding-in-payload",
        lambda: hs(enc(BW_HEADER), enc(BW_CLAIMS) + "=" * (-len(enc(BW_CLAIMS)) % 4 or 4)),
        "not base64url",
    ),
    ("padding-on-signature", lambda: bw() + "=", "not base64url"),
    ("standard-alphabet", _standard_alphabet, "not base64url"),
    ("space-inside", lambda: bw()[:10] + " " + bw()[10:], "not base64url"),
    ("newline-inside", lambda: bw()[:10] + "\n" + bw()[10:], "not base64url"),
    ("tab-inside-signature", lambda: bw()[:-4] + "\t" + bw()[-4:], "not base64url"),
    ("leading-space", lambda: " " + bw(), "not base64url"),
    ("trailing-newline", lambda: bw() + "\n", "not base64url"),
    ("fullwidth-letter", lambda: bw()[:5] + "\uff21" + bw()[6:], "not base64url"),
    ("percent-encoded-padding", lambda: bw() + "%3D", "not base64url"),
    # -- canonical base64url
    ("non-canonical-signature-trailing-bits", lambda: _trailing_bits(bw()), "not canonical"),
    ("length-1-mod-4", _length_1_mod_4, "not canonical"),
    # -- JSON
    ("header-not-utf8", lambda: hs(b64(b'{"alg":"HS256","x":"\xff"}'), enc(BW_CLAIMS)), "header is not UTF-8"),
    ("payload-utf16", lambda: hs(enc(BW_HEADER), b64(json.dumps(BW_CLAIMS).encode("utf-16"))), "payload is not UTF-8"),
    (
        "payload-utf8-bom",
        lambda: hs(enc(BW_HEADER), b64(b"\xef\xbb\xbf" + json.dumps(BW_CLAIMS).encode())),
        "payload is not JSON",
    ),
    ("payload-not-json", lambda: _bw_json("iss=breakwater:dev"), "payload is not JSON"),
    ("payload-trailing-garbage", lambda: _bw_json(json.dumps(BW_CLAIMS) + "x"), "payload is not JSON"),
    ("payload-array", lambda: _bw_json(json.dumps([BW_CLAIMS])), "payload is not a JSON object"),
    ("payload-string", lambda: _bw_json('"breakwater:dev"'), "payload is not a JSON object"),
    ("header-array", lambda: hs(enc(["HS256"]), enc(BW_CLAIMS)), "header is not a JSON object"),
    ("exp-nan", lambda: _with_literal("exp", "NaN"), "payload is not JSON"),
    ("exp-infinity", lambda: _with_literal("exp", "Infinity"), "payload is not JSON"),
    ("nbf-minus-infinity", lambda: _with_literal("nbf", "-Infinity"), "payload is not JSON"),
    ("deeply-nested", _deep, "payload is not a JSON object"),
    # -- duplicate members (two parsers could each read a different one)
    (
        "duplicate-iss",
        lambda: _bw_json(json.dumps(BW_CLAIMS)[:-1] + ', "iss": "https://evil.example"}'),
        "duplicate member in payload",
    ),
    (
        "duplicate-exp",
        lambda: _bw_json(json.dumps(BW_CLAIMS)[:-1] + f', "exp": {int(NOW) + 10**8}}}'),
        "duplicate member in payload",
    ),
    (
        "duplicate-alg",
        lambda: hs(raw_json('{"alg":"HS256","kid":"v1","alg":"none"}'), enc(BW_CLAIMS)),
        "duplicate member in header",
    ),
    (
        "duplicate-nested",
        lambda: _bw_json(json.dumps(BW_CLAIMS)[:-1] + ', "x": {"a": 1, "a": 2}}'),
        "duplicate member in payload",
    ),
    # -- algorithm vs key type
    ("alg-none", _none, "algorithm not allowed"),
    ("alg-None", lambda: f"{enc({'alg': 'None'})}.{enc(BW_CLAIMS)}.", "algorithm not allowed"),
    ("alg-missing", lambda: hs(enc({"kid": "v1"}), enc(BW_CLAIMS)), "no algorithm"),
    ("alg-not-a-string", lambda: hs(enc({"alg": ["HS256"]}), enc(BW_CLAIMS)), "no algorithm"),
    ("hs256-with-rsa-public-key", _hs_with_rsa_public_key, "algorithm not allowed"),
    ("rs256-for-breakwater", lambda: rs(enc({"alg": "RS256", "kid": "v1"}), enc(BW_CLAIMS)), "algorithm not allowed"),
    ("hs512", lambda: bw({"alg": "HS512", "kid": "v1"}), "algorithm not allowed"),
    ("es256-for-cognito", lambda: cognito({"alg": "ES256", "kid": "k1"}), "algorithm not allowed"),
    ("ps256-for-cognito", lambda: cognito({"alg": "PS256", "kid": "k1"}), "algorithm not allowed"),
    ("lowercase-hs256", lambda: bw({"alg": "hs256", "kid": "v1"}), "algorithm not allowed"),
    # -- header parameters
    ("crit-exp", lambda: bw({**BW_HEADER, "crit": ["exp"], "exp": 1}), "critical header not understood"),
    ("crit-empty", lambda: bw({**BW_HEADER, "crit": []}), "critical header not understood"),
    ("crit-b64", lambda: bw({**BW_HEADER, "crit": ["b64"], "b64": False}), "critical header not understood"),
    ("b64-false", lambda: bw({**BW_HEADER, "b64": False}), "unencoded payload not accepted"),
    ("embedded-jwk", _embedded_jwk, "embedded key not accepted"),
    ("jku", lambda: cognito({**COGNITO_HEADER, "jku": "https://evil.example/jwks.json"}), "embedded key not accepted"),
    ("x5u", lambda: cognito({**COGNITO_HEADER, "x5u": "https://evil.example/cert.pem"}), "embedded key not accepted"),
    ("x5c", lambda: cognito({**COGNITO_HEADER, "x5c": ["MIIB"]}), "embedded key not accepted"),
    ("cty-nested-jwt", lambda: bw({**BW_HEADER, "cty": "JWT"}), "nested token not accepted"),
    ("enc-header", lambda: bw({**BW_HEADER, "enc": "A256GCM"}), "encrypted token not accepted"),
    ("typ-jwe", lambda: bw({**BW_HEADER, "typ": "JWE"}), "wrong token type"),
    ("typ-secevent", lambda: bw({**BW_HEADER, "typ": "secevent+jwt"}), "wrong token type"),
    ("typ-number", lambda: bw({**BW_HEADER, "typ": 1}), "wrong token type"),
    ("kid-number", lambda: bw({**BW_HEADER, "kid": 1}), "key id is not a string"),
    ("kid-empty", lambda: bw({**BW_HEADER, "kid": ""}), "key id is not a string"),
    ("kid-unknown", lambda: bw({**BW_HEADER, "kid": "v0"}), "unknown signing key"),
    ("cognito-kid-missing", lambda: cognito({"alg": "RS256"}), "missing key id"),
    # -- signature
    ("signature-truncated", lambda: bw()[:-3], "bad signature"),
    ("signature-empty-hs256", lambda: bw().rsplit(".", 1)[0] + ".", "bad signature"),
    ("signature-extended", lambda: bw() + "AAAA", "bad signature"),
    (
        "claims-swapped-after-signing",
        lambda: bw().split(".")[0] + "." + enc({**BW_CLAIMS, "roles": ["speaker", "admin"]}) + "." + bw().split(".")[2],
        "bad signature",
    ),
    # -- NumericDate and required claims
    ("exp-missing", lambda: bw(exp=None), "missing claim exp"),
    ("exp-string", lambda: bw(exp=str(int(NOW) + 3600)), "malformed claim exp"),
    ("exp-bool", lambda: bw(exp=True), "malformed claim exp"),
    ("exp-null", lambda: _bw_json(json.dumps({**BW_CLAIMS, "exp": None})), "missing claim exp"),
    ("exp-object", lambda: bw(exp={"$date": int(NOW)}), "malformed claim exp"),
    ("exp-year-10000", lambda: bw(exp=253_402_300_800), "malformed claim exp"),
    ("iat-string", lambda: bw(iat="now"), "malformed claim iat"),
    ("nbf-bool", lambda: bw(nbf=False), "malformed claim nbf"),
    ("expired-beyond-leeway", lambda: bw(exp=int(NOW) - 6), "token expired"),
    ("nbf-beyond-leeway", lambda: bw(nbf=int(NOW) + 6), "token not yet valid"),
    ("iss-missing", lambda: bw(iss=None), "no issuer"),
    ("iss-not-a-string", lambda: bw(iss=["breakwater:dev"]), "no issuer"),
    ("aud-missing", lambda: bw(aud=None), "missing claim aud"),
    ("aud-other-list", lambda: bw(aud=["elsewhere"]), "wrong audience"),
    ("cognito-iss-for-bw-key", lambda: bw(iss=COGNITO), "algorithm not allowed"),
    # -- size and type
    ("oversized", lambda: bw(pad="x" * 8192), "too large"),
    ("just-over-the-cap", lambda: "A" * (POLICY.max_token_bytes + 1), "too large"),
    ("empty-string", lambda: "", "not a string"),
    ("bytes", lambda: bw().encode(), "not a string"),
    ("none", lambda: None, "not a string"),
    ("number", lambda: 1, "not a string"),
]


@pytest.mark.parametrize(("make", "reason"), [pytest.param(m, r, id=n) for n, m, r in CORPUS])
def test_every_token_of_the_attack_corpus_is_refused_with_its_reason(make, reason):
    raw = make()

    with pytest.raises(TokenInvalidError) as refused:
        verifier().verify(raw, role="speaker")

    assert reason in str(refused.value)
    assert refused.value.status == 401
    if isinstance(raw, str):
        for segment in filter(None, raw.split(".")):
            assert segment not in str(refused.value)


def test_the_corpus_names_are_unique():
    names = [name for name, _, _ in CORPUS]
    assert len(names) == len(set(names)) >= 80


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: issue_token(KEY, issuer="breakwater:dev", subject="bot", jti="j", now=NOW, roles=("speaker",)),
            id="issue-token",
        ),
        pytest.param(bw, id="breakwater-hand-built"),
        pytest.param(lambda: bw(aud=["other", "breakwater"]), id="breakwater-aud-array"),
        pytest.param(lambda: bw({"alg": "HS256"}), id="breakwater-no-kid-no-typ"),
        pytest.param(lambda: bw({**BW_HEADER, "typ": "at+jwt"}), id="typ-at-jwt"),
        pytest.param(lambda: bw({**BW_HEADER, "typ": "application/jwt"}), id="typ-application-jwt"),
        pytest.param(lambda: bw(exp=int(NOW) - 4, nbf=int(NOW) + 4, iat=int(NOW) + 4), id="within-the-leeway"),
        pytest.param(lambda: bw(exp=NOW + 60.5), id="fractional-numericdate"),
        pytest.param(cognito, id="cognito-id-token"),
        pytest.param(lambda: cognito(aud=None, token_use="access", client_id="client-a"), id="cognito-access-token"),
        pytest.param(
            lambda: jwt.encode(COGNITO_CLAIMS, RSA_KEY, algorithm="RS256", headers={"kid": "k1"}), id="pyjwt-rs256"
        ),
        pytest.param(lambda: cognito(name="Zoë 🌊"), id="non-ascii-claim"),
    ],
)
def test_well_formed_tokens_of_both_issuers_are_still_accepted(make):
    identity = verifier().verify(make(), role="speaker")

    assert identity.subject in {"bot", "alice"}
    assert "speaker" in identity.roles
