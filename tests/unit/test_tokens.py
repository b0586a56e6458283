"""Token verification: every way a token can be wrong is a TokenInvalidError with a reason."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import ssl
import urllib.error
import urllib.request
from email.message import Message
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.breaker import CircuitBreaker, MemoryBreakerStore
from resilience.breaker.config import BreakerPolicy
from resilience.errors import (
    BreakwaterError,
    CircuitOpenError,
    DependencyUnavailableError,
    JwtKeyError,
    RetryableError,
    ServiceTimeoutError,
    ThrottledError,
    TokenInvalidError,
)
from resilience.tokens import (
    BREAKWATER_AUDIENCE,
    JwksCache,
    SigningKey,
    TokenPolicy,
    TokenVerifier,
    cognito_fetch_timeout,
    fetch_url,
    issue_token,
    parse_jwks,
    token_shape,
)

NOW = 1_795_520_000.0
POLICY = TokenPolicy(
    region="us-east-1",
    user_pool_id="us-east-1_Pool",
    client_ids=frozenset({"client-a"}),
    breakwater_issuer="breakwater:dev",
    leeway_seconds=30,
)
ISSUER = POLICY.cognito_issuer
KEY = SigningKey(kid="v1", key=b"k" * 48)
LISTENER_GROUPS: dict[str, Any] = {"cognito:groups": ["listener"]}


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


RSA_KEY = _rsa()
OTHER_RSA_KEY = _rsa()


def jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> bytes:
    entries = []
    for kid, key in keys:
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        entry.update(kid=kid, alg="RS256", use="sig")
        entries.append(entry)
    return json.dumps({"keys": entries}).encode()


class Jwks:
    """A fake Cognito endpoint: serves a body, or raises, and counts downloads."""

    def __init__(self, body: bytes | None = None, error: Exception | None = None) -> None:
        self.body = body if body is not None else jwks(("k1", RSA_KEY))
        self.error = error
        self.downloads = 0

    def __call__(self, url: str, timeout: float) -> bytes:
        assert url == f"{ISSUER}/.well-known/jwks.json"
        self.downloads += 1
        if self.error is not None:
            raise self.error
        return self.body


class Keys:
    """A fake key ring: the current key (None: Secrets Manager is down) and the previous versions."""

    def __init__(self, key: SigningKey | None = KEY, *previous: SigningKey) -> None:
        self.key = key
        self.previous = previous

    def current(self) -> SigningKey:
        return self.accepted()[0]

    def accepted(self) -> tuple[SigningKey, ...]:
        if self.key is None:
            raise JwtKeyError("the signing key is unavailable")
        return (self.key, *self.previous)


def verifier(
    fetch: Jwks | None = None, keys: Keys | None = None, clock: Clock | None = None, breaker: Any = None
) -> TokenVerifier:
    clock = clock or Clock()
    cache = JwksCache(POLICY, fetch=fetch or Jwks(), clock=clock, timeout=3.0, breaker=breaker)
    return TokenVerifier(POLICY, jwks=cache, signing_keys=keys or Keys(), clock=clock)


def cognito(
    *,
    key: rsa.RSAPrivateKey = RSA_KEY,
    kid: str | None = "k1",
    alg: str = "RS256",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    body: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "jti": "j-1",
        "iat": int(NOW),
        "exp": int(NOW) + 3600,
        "token_use": "id",
        "aud": "client-a",
        "cognito:groups": ["speaker"],
        "custom:tenant": "acme",
    }
    body.update(claims)
    for name in drop:
        body.pop(name, None)
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def breakwater(**overrides: Any) -> str:
    token = issue_token(
        KEY, issuer="breakwater:dev", subject="bot", jti="j-2", now=NOW, tenant="acme", roles=("speaker",)
    )
    if not overrides:
        return token
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(overrides)
    return jwt.encode(claims, KEY.key, algorithm="HS256", headers={"kid": "v1"})


def test_a_cognito_id_token_is_verified():
    identity = verifier().verify(cognito(), role="speaker")

    assert identity.to_json() == {
        "userId": "alice",
        "issuer": "cognito",
        "jti": "j-1",
        "exp": int(NOW) + 3600,
        "tenantId": "acme",
        "roles": ["speaker"],
    }


def test_a_cognito_access_token_is_verified_by_client_id():
    token = cognito(token_use="access", client_id="client-a", drop=("aud",))

    assert verifier().verify(token).token_use == "access"


def test_a_breakwater_token_is_verified_with_the_signing_key():
    identity = verifier().verify(breakwater(), role="speaker")

    assert (identity.issuer, identity.subject, identity.tenant_id) == ("breakwater", "bot", "acme")


def test_issuing_without_a_key_is_refused():
    with pytest.raises(JwtKeyError):
        issue_token(SigningKey("v1", b""), issuer="breakwater:dev", subject="s", jti="j", now=NOW)


def _forged_hs256_with_public_key() -> str:
    # The classic RS/HS confusion: sign HS256 with the RSA public key as the HMAC secret.
    public = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "k1", "typ": "JWT"}
    claims = {"iss": ISSUER, "sub": "mallory", "jti": "x", "iat": int(NOW), "exp": int(NOW) + 60, "aud": "client-a"}

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    import hashlib
    import hmac

    signature = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def _unsigned() -> str:
    return jwt.encode(
        {"iss": ISSUER, "sub": "m", "jti": "x", "iat": int(NOW), "exp": int(NOW) + 60, "aud": "client-a"},
        key=cast("Any", None),  # an unsigned token: PyJWT's "none" takes no key
        algorithm="none",
    )


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        pytest.param(lambda: cognito(exp=int(NOW) - 31), "token expired", id="expired"),
        pytest.param(lambda: cognito(nbf=int(NOW) + 31), "token not yet valid", id="not-yet-valid"),
        pytest.param(lambda: cognito(drop=("exp",)), "missing claim exp", id="no-expiry"),
        pytest.param(lambda: cognito(iat=int(NOW) + 600), "token not yet valid", id="issued-in-the-future"),
        pytest.param(lambda: cognito(iss="https://evil.example.com"), "untrusted issuer", id="wrong-issuer"),
        pytest.param(lambda: cognito(aud="client-b"), "wrong audience", id="wrong-audience"),
        pytest.param(lambda: cognito(token_use="refresh"), "wrong token_use", id="wrong-token-use"),
        pytest.param(_unsigned, "algorithm not allowed", id="alg-none"),
        pytest.param(_forged_hs256_with_public_key, "algorithm not allowed", id="hs-rs-confusion"),
        pytest.param(lambda: cognito(key=OTHER_RSA_KEY), "bad signature", id="bad-signature"),
        pytest.param(lambda: cognito(kid=None), "missing key id", id="missing-kid"),
        pytest.param(lambda: cognito(kid="k9"), "unknown signing key", id="unknown-kid"),
        pytest.param(lambda: cognito(drop=("jti",)), "missing claim jti", id="missing-jti"),
        pytest.param(lambda: cognito(exp="tomorrow"), "malformed claim exp", id="exp-not-a-number"),
        pytest.param(lambda: cognito(**LISTENER_GROUPS), "speaker role", id="not-a-speaker"),
        pytest.param(lambda: breakwater(aud="someone-else"), "wrong audience", id="breakwater-wrong-audience"),
        pytest.param(lambda: breakwater(exp=int(NOW) - 60), "token expired", id="breakwater-expired"),
        pytest.param(lambda: "a.b", "malformed token", id="two-parts"),
        pytest.param(lambda: "!!!.@@@.###", "malformed token", id="not-base64"),
        pytest.param(lambda: "x" * 9000, "malformed token", id="huge"),
    ],
)
def test_a_bad_token_is_refused_with_its_reason(token, reason):
    raw = token()

    with pytest.raises(TokenInvalidError) as refused:
        verifier().verify(raw, role="speaker")

    assert reason in str(refused.value)
    assert raw not in str(refused.value)


def test_a_breakwater_token_signed_with_a_rotated_out_key_is_refused():
    rotated = Keys(SigningKey(kid="v2", key=b"n" * 48))

    with pytest.raises(TokenInvalidError, match="unknown signing key"):
        verifier(keys=rotated).verify(breakwater())


def test_no_signing_key_means_no_breakwater_token_is_verified():
    with pytest.raises(JwtKeyError):
        verifier(keys=Keys(None)).verify(breakwater())


def test_cognito_tokens_do_not_need_the_signing_key():
    assert verifier(keys=Keys(None)).verify(cognito()).subject == "alice"


def test_an_unknown_kid_refreshes_the_jwks_once_then_is_refused_without_downloading_again():
    fetch = Jwks()
    clock = Clock()
    check = verifier(fetch, clock=clock)
    check.verify(cognito())

    for _ in range(3):
        with pytest.raises(TokenInvalidError, match="unknown signing key"):
            check.verify(cognito(kid="k9"))

    assert fetch.downloads == 1  # the refresh interval (60 s) had not passed since the first download
    clock.now += 61
    with pytest.raises(TokenInvalidError):
        check.verify(cognito(kid="k9"))
    assert fetch.downloads == 2


def test_key_rotation_in_the_pool_is_picked_up():
    fetch = Jwks()
    clock = Clock()
    check = verifier(fetch, clock=clock)
    check.verify(cognito())
    fetch.body = jwks(("k1", RSA_KEY), ("k2", OTHER_RSA_KEY))
    clock.now += 61

    assert check.verify(cognito(key=OTHER_RSA_KEY, kid="k2")).subject == "alice"


@pytest.mark.parametrize(
    "error", [ServiceTimeoutError("timed out"), CircuitOpenError("open"), DependencyUnavailableError("403")]
)
def test_cognito_down_with_nothing_cached_is_a_dependency_error_not_a_refusal(error):
    with pytest.raises(type(error)):
        verifier(Jwks(error=error)).verify(cognito())


def test_a_malformed_jwks_is_a_dependency_error():
    with pytest.raises(DependencyUnavailableError, match="malformed"):
        verifier(Jwks(body=b"<html>")).verify(cognito())


def test_the_jwks_is_served_stale_while_cognito_is_down_but_only_within_its_bound():
    fetch = Jwks()
    clock = Clock()
    check = verifier(fetch, clock=clock)
    check.verify(cognito())
    fetch.error = ServiceTimeoutError("down")

    clock.now += POLICY.jwks_ttl_seconds + 60
    assert check.verify(cognito(iat=int(clock.now), exp=int(clock.now) + 60)).subject == "alice"
    clock.now += POLICY.jwks_max_stale_seconds
    with pytest.raises(ServiceTimeoutError):
        check.verify(cognito(iat=int(clock.now), exp=int(clock.now) + 60))


def test_the_shape_check_reads_the_issuer_without_verifying():
    assert token_shape(cognito(key=OTHER_RSA_KEY), POLICY).kind == "cognito"
    assert token_shape(breakwater(), POLICY).kind == "breakwater"


def test_breakwater_tokens_carry_the_service_audience():
    claims = jwt.decode(breakwater(), options={"verify_signature": False})
    assert claims["aud"] == BREAKWATER_AUDIENCE


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789-_=", max_size=40), max_size=5).map(
            ".".join
        ),
        st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=5).map(
            lambda claims: jwt.encode({**claims, "iss": ISSUER}, "not-the-key-but-long-enough-for-hs256", "HS256")
        ),
        st.none(),
        st.integers(),
    )
)
def test_fuzzed_tokens_are_only_ever_refused_as_invalid(raw):
    with pytest.raises(TokenInvalidError):
        verifier().verify(raw, role="speaker")


# -- time claims -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", 10**400),
        ("exp", True),
        ("exp", "1795523600"),
        ("iat", -1),
        ("iat", 1e300),
        ("nbf", "now"),
        ("nbf", [0]),
    ],
    ids=lambda v: repr(v)[:12],
)
def test_a_time_claim_that_is_not_a_plausible_epoch_is_malformed_even_when_signed(claim, value):
    # NumericDate is a JSON number (RFC 7519 §2); NaN and Infinity are not JSON at all (see test_token_corpus).
    with pytest.raises(TokenInvalidError, match=f"malformed claim {claim}"):
        verifier().verify(cognito(**{claim: value}))


def test_the_leeway_applies_to_expiry_and_to_not_before():
    assert verifier().verify(cognito(exp=int(NOW) - 29, iat=int(NOW) - 600)).subject == "alice"
    assert verifier().verify(cognito(nbf=int(NOW) + 29, iat=int(NOW) + 29)).subject == "alice"


# -- breakwater key rotation -------------------------------------------------------------------

NEW_KEY = SigningKey(kid="v2", key=b"n" * 48)


def test_during_a_rotation_tokens_of_the_previous_key_version_are_still_verified():
    assert verifier(keys=Keys(NEW_KEY, KEY)).verify(breakwater(), role="speaker").subject == "bot"


def test_the_kid_picks_the_version_so_a_token_claiming_an_old_kid_must_be_signed_with_that_key():
    claims = jwt.decode(breakwater(), options={"verify_signature": False})
    forged = jwt.encode(claims, NEW_KEY.key, algorithm="HS256", headers={"kid": KEY.kid})

    with pytest.raises(TokenInvalidError, match="bad signature"):
        verifier(keys=Keys(NEW_KEY, KEY)).verify(forged)


def test_a_token_without_a_kid_is_verified_with_the_current_version_only():
    claims = jwt.decode(breakwater(), options={"verify_signature": False})
    old = jwt.encode(claims, KEY.key, algorithm="HS256")

    assert verifier(keys=Keys(KEY)).verify(old).subject == "bot"
    with pytest.raises(TokenInvalidError, match="bad signature"):
        verifier(keys=Keys(NEW_KEY, KEY)).verify(old)


# -- the JWKS download --------------------------------------------------------------------------

URL = f"{ISSUER}/.well-known/jwks.json"


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _http_error(status: int) -> urllib.error.HTTPError:
    return urllib.error.HTTPError(URL, status, "error", Message(), io.BytesIO(b"{}"))


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        pytest.param(TimeoutError("timed out"), ServiceTimeoutError, id="read-timeout"),
        pytest.param(urllib.error.URLError(TimeoutError("timed out")), ServiceTimeoutError, id="connect-timeout"),
        pytest.param(urllib.error.URLError(ConnectionRefusedError()), RetryableError, id="refused"),
        pytest.param(_http_error(429), ThrottledError, id="429"),
        pytest.param(_http_error(500), RetryableError, id="500"),
        pytest.param(_http_error(503), RetryableError, id="503"),
        pytest.param(_http_error(403), DependencyUnavailableError, id="403-access-denied"),
        pytest.param(_http_error(404), DependencyUnavailableError, id="404"),
        pytest.param(ConnectionResetError(), RetryableError, id="reset"),
        pytest.param(ssl.SSLError("bad record"), RetryableError, id="tls"),
        pytest.param(http.client.IncompleteRead(b"{"), RetryableError, id="truncated"),
    ],
)
def test_download_failures_become_the_taxonomy_chained_to_their_cause(monkeypatch, raised, expected):
    def urlopen(url: str, timeout: float) -> Any:
        raise raised

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    with pytest.raises(BreakwaterError) as failed:
        fetch_url(URL, 2.0)

    assert type(failed.value) is expected
    assert failed.value.__cause__ is raised


def test_a_download_returns_the_body_and_passes_the_timeout(monkeypatch):
    seen: list[tuple[str, float]] = []

    def urlopen(url: str, timeout: float) -> _Response:
        seen.append((url, timeout))
        return _Response(b'{"keys": []}')

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    assert fetch_url(URL, 2.5) == b'{"keys": []}'
    assert seen == [(URL, 2.5)]


def test_the_download_timeout_is_the_cognito_client_timeout_from_the_environment(monkeypatch):
    assert cognito_fetch_timeout({}) == 3.0
    assert cognito_fetch_timeout({"BW_COGNITO_CONNECT_TIMEOUT": "1", "BW_COGNITO_READ_TIMEOUT": "1.5"}) == 1.5
    # urllib has one timeout for connecting and reading: the larger bounds both.
    assert cognito_fetch_timeout({"BW_COGNITO_CONNECT_TIMEOUT": "4", "BW_COGNITO_READ_TIMEOUT": "1"}) == 4.0

    monkeypatch.setenv("BW_COGNITO_READ_TIMEOUT", "1.25")
    monkeypatch.setenv("BW_COGNITO_CONNECT_TIMEOUT", "0.5")
    timeouts: list[float] = []
    served = Jwks()

    def fetch(url: str, timeout: float) -> bytes:
        timeouts.append(timeout)
        return served(url, timeout)

    JwksCache(POLICY, fetch=fetch).key("k1")
    assert timeouts == [1.25]


@pytest.mark.parametrize(
    "body",
    [b"<html>", b"[]", b'{"keys": {}}', b'{"keys": [{"kty": "EC", "kid": "e1"}]}', b'{"keys": [{"kty": "RSA"}]}'],
    ids=["html", "list", "keys-not-a-list", "no-rsa-keys", "no-kid"],
)
def test_a_key_set_that_cannot_be_used_is_a_dependency_error(body):
    with pytest.raises(DependencyUnavailableError, match="malformed"):
        parse_jwks(body)


# -- the JWKS cache and the cognito.verifyJwt breaker -------------------------------------------


def cognito_breaker(clock: Clock) -> CircuitBreaker:
    policy = BreakerPolicy(failure_threshold=3, refresh_interval=0, recovery_timeout=30)
    return CircuitBreaker("cognito.verifyJwt", MemoryBreakerStore(), policy, clock=clock)


def test_cognito_timeouts_open_the_breaker_and_then_cognito_is_not_called_at_all():
    clock = Clock()
    fetch = Jwks(error=ServiceTimeoutError("down"))
    check = verifier(fetch, clock=clock, breaker=cognito_breaker(clock))

    for _ in range(3):
        with pytest.raises(ServiceTimeoutError):
            check.verify(cognito())
        clock.now += 1
    with pytest.raises(CircuitOpenError):
        check.verify(cognito())

    assert fetch.downloads == 3


def test_an_open_breaker_is_answered_from_the_cached_key_set_within_its_bound():
    clock = Clock()
    fetch = Jwks()
    breaker = cognito_breaker(clock)
    jwks_cache = JwksCache(POLICY, fetch=fetch, clock=clock, timeout=3.0, breaker=breaker)
    check = TokenVerifier(POLICY, jwks=jwks_cache, signing_keys=Keys(), clock=clock)
    check.verify(cognito())
    breaker.force_open()

    clock.now += POLICY.jwks_ttl_seconds + 1
    assert check.verify(cognito(iat=int(clock.now), exp=int(clock.now) + 60)).subject == "alice"
    assert jwks_cache.cache.stats().stale_served == 1
    assert fetch.downloads == 1  # the open breaker answered, not Cognito
    clock.now += POLICY.jwks_max_stale_seconds
    with pytest.raises(CircuitOpenError):
        check.verify(cognito(iat=int(clock.now), exp=int(clock.now) + 60))


def test_an_unknown_kid_while_cognito_is_down_is_a_dependency_error_not_a_refusal():
    # Cognito may have rotated a key in: a kid it cannot check is not proof of forgery.
    clock = Clock()
    fetch = Jwks()
    check = verifier(fetch, clock=clock)
    check.verify(cognito())
    fetch.error = ServiceTimeoutError("down")

    clock.now += 61  # the key set is fresh; the refresh it triggers fails
    with pytest.raises(ServiceTimeoutError):
        check.verify(cognito(kid="k9", iat=int(clock.now), exp=int(clock.now) + 60))
    clock.now += POLICY.jwks_ttl_seconds  # the key set is stale
    with pytest.raises(DependencyUnavailableError):
        check.verify(cognito(kid="k9", iat=int(clock.now), exp=int(clock.now) + 60))
    # ...while the known key is still served from the stale set.
    assert check.verify(cognito(iat=int(clock.now), exp=int(clock.now) + 60)).subject == "alice"


def test_a_key_removed_from_the_pool_is_refused_after_the_next_download():
    clock = Clock()
    fetch = Jwks(body=jwks(("k1", RSA_KEY), ("k2", OTHER_RSA_KEY)))
    check = verifier(fetch, clock=clock)
    check.verify(cognito())
    fetch.body = jwks(("k2", OTHER_RSA_KEY))

    clock.now += POLICY.jwks_ttl_seconds
    with pytest.raises(TokenInvalidError, match="unknown signing key"):
        check.verify(cognito(iat=int(clock.now), exp=int(clock.now) + 60))


# -- nothing secret leaks ------------------------------------------------------------------------


def _messages(error: BaseException | None) -> list[str]:
    found: list[str] = []
    while error is not None:
        found.append(str(error))
        error = error.__cause__ or error.__context__
    return found


def test_no_token_reaches_a_log_line_or_any_error_message_in_the_chain(caplog):
    caplog.set_level(logging.DEBUG)
    tokens = [
        cognito(),
        cognito(exp=0, iat=0),
        cognito(key=OTHER_RSA_KEY),
        cognito(**LISTENER_GROUPS),
        breakwater(),
        breakwater(aud="elsewhere"),
        _unsigned(),
        _forged_hs256_with_public_key(),
        cognito()[:-5],
    ]
    check = verifier()
    messages: list[str] = []
    for raw in tokens:
        try:
            messages.append(repr(check.verify(raw, role="speaker")))
        except BreakwaterError as error:
            messages.extend(_messages(error))

    text = "\n".join(messages) + caplog.text
    for raw in tokens:
        for part in filter(None, raw.split(".")):
            assert part not in text


def test_keys_are_not_in_reprs():
    assert KEY.key.decode() not in repr(KEY)
    assert "key=" not in repr(KEY)


# -- structured fuzzing --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
_headers = st.fixed_dictionaries(
    {"alg": st.sampled_from(["RS256", "HS256", "none", "None", "HS512", "RS512", "ES256", "PS256", ""]) | _json_values},
    optional={"kid": st.sampled_from(["k1", "v1", "k9", ""]) | _json_values, "typ": _json_values},
)
_claims = st.fixed_dictionaries(
    {"iss": st.sampled_from([ISSUER, "breakwater:dev", f"{ISSUER}/", "Breakwater:dev"]) | _json_values},
    optional=dict.fromkeys(
        ("sub", "jti", "exp", "iat", "nbf", "aud", "client_id", "token_use", "cognito:groups", "roles"), _json_values
    ),
)


@settings(max_examples=300, deadline=None)
@given(_headers, _claims, st.binary(max_size=300))
def test_structured_forgeries_for_either_issuer_are_only_ever_refused_as_invalid(header, claims, signature):
    raw = ".".join((_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)))

    with pytest.raises(TokenInvalidError):
        verifier().verify(raw, role="speaker")
