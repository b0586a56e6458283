"""Verifying the JWT a connecting client presents (seed 000: fail closed).

Two issuers are trusted, told apart by the unverified ``iss`` only to pick the
key — the signature, the algorithm and every claim are then checked against
that issuer's own rules, so claiming another issuer gains nothing:

* **Cognito** (speakers signing in to the stack's user pool): RS256 only,
  verified against the pool's JWKS (cached, refreshed at most once a minute
  for an unknown ``kid``, fetched behind the ``cognito.verifyJwt`` breaker);
  ``token_use`` is ``id`` (``aud`` = an app client id) or ``access``
  (``client_id`` = an app client id).
* **breakwater** (tokens the service issues itself, e.g. for bots or
  ``bw token``): HS256 with the Secrets Manager signing key (``kid`` names
  its version: tokens are issued with the current version only and verified
  with the current or, during a rotation, the previous one); ``aud`` must be
  ``breakwater``.

Before any key is looked up, the token is parsed strictly by
:mod:`resilience.compact_jws` (three canonical base64url segments of at most
``BW_MAX_TOKEN_BYTES``, UTF-8 JSON objects without duplicate members, no
``crit``/embedded keys); PyJWT's decoder is never used, so its lenient
base64 and JSON readings never see a token — only its algorithm objects
compute the signature. The ``alg`` must be the one the issuer's key type
allows (RS256 with a JWKS key, HS256 with the signing key): never ``none``,
never HS256 with an RSA public key.

Every token needs ``sub``, ``exp``, ``iat`` and ``jti`` (the revocation
list's key); ``exp``/``nbf``/``iat`` are NumericDates (JSON numbers, not
strings or booleans, within year 9999) checked with ``BW_JWT_LEEWAY_SECONDS``
of skew. The tenant is ``custom:tenant`` (a Cognito
custom attribute) or ``tenant`` (breakwater tokens); the roles are
``cognito:groups`` (Cognito) or ``roles`` (breakwater), lists of strings, and
a speaker connection needs the ``speaker`` role. Every refusal is a
:class:`TokenInvalidError` whose message says why in a few words (a fixed
phrase, never anything taken from the token); failures to reach a key are the
taxonomy's dependency errors (503) or :class:`JwtKeyError` (500).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import jwt
from jwt.algorithms import HMACAlgorithm, RSAAlgorithm

from resilience.cache import CachePolicy, ResilientCache
from resilience.compact_jws import DEFAULT_MAX_TOKEN_BYTES, CompactJws, parse_compact
from resilience.errors import (
    ConfigurationError,
    DependencyUnavailableError,
    JwtKeyError,
    RetryableError,
    ServiceTimeoutError,
    ThrottledError,
    TokenInvalidError,
)
from resilience.settings import env_number

__all__ = [
    "BREAKWATER_AUDIENCE",
    "Identity",
    "JwksCache",
    "SigningKey",
    "SigningKeySource",
    "TokenPolicy",
    "TokenShape",
    "TokenVerifier",
    "cognito_fetch_timeout",
    "fetch_url",
    "issue_token",
    "parse_jwks",
    "token_shape",
]

IssuerKind = Literal["cognito", "breakwater"]
#: The ``aud`` of every token breakwater issues.
BREAKWATER_AUDIENCE = "breakwater"
#: The leeway's ceiling (``JwtLeewaySeconds``' MaxValue): every second of it is a second an expired token still works.
MAX_LEEWAY_SECONDS = 30.0
_REQUIRED_CLAIMS = ("sub", "exp", "iat", "jti")
#: 9999-12-31T23:59:59Z: a time claim past it is malformed (NaN and Infinity never get this far: not JSON).
_MAX_EPOCH = 253_402_300_799


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One version of breakwater's HS256 key (never logged: no key in ``repr``)."""

    kid: str
    key: bytes = field(repr=False)


class SigningKeySource(Protocol):
    """Where breakwater's HS256 keys come from (``signing_keys.SigningKeyProvider``)."""

    def current(self) -> SigningKey:
        """The version tokens are issued with; JwtKeyError when no key is available."""
        ...

    def accepted(self) -> Sequence[SigningKey]:
        """Every version a token may be verified with: the current one first, then the previous."""
        ...


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """Who may issue tokens and what they must say."""

    region: str
    user_pool_id: str | None
    client_ids: frozenset[str]
    breakwater_issuer: str
    #: Clock skew on exp/nbf/iat (``JwtLeewaySeconds``, 5 s: both issuers and Lambda run on synchronised clocks).
    leeway_seconds: float = 5.0
    #: The longest token read at all (``MaxTokenBytes``).
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    #: How often an unknown ``kid`` may trigger a JWKS download (key rotation vs. a flood of forged kids).
    jwks_refresh_seconds: float = 60.0
    jwks_ttl_seconds: float = 3600.0
    #: A JWKS older than its TTL is still used this long while Cognito is unreachable.
    jwks_max_stale_seconds: float = 3600.0

    @property
    def cognito_issuer(self) -> str | None:
        if not self.user_pool_id:
            return None
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    @property
    def jwks_url(self) -> str | None:
        issuer = self.cognito_issuer
        return f"{issuer}/.well-known/jwks.json" if issuer else None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenPolicy:
        env = os.environ if env is None else env
        clients = frozenset(c.strip() for c in env.get("BW_COGNITO_CLIENT_IDS", "").split(",") if c.strip())
        return cls(
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            user_pool_id=env.get("BW_COGNITO_USER_POOL_ID") or None,
            client_ids=clients,
            breakwater_issuer=env.get("BW_TOKEN_ISSUER") or f"breakwater:{env.get('BW_ENVIRONMENT', 'dev')}",
            leeway_seconds=env_number(env, "BW_JWT_LEEWAY_SECONDS", 5, minimum=0),
            max_token_bytes=int(env_number(env, "BW_MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES, minimum=1024)),
        )

    def __post_init__(self) -> None:
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY_SECONDS:
            raise ConfigurationError(f"the JWT leeway must be 0-{MAX_LEEWAY_SECONDS:g} s")


@dataclass(frozen=True, slots=True)
class TokenShape:
    """What can be read from a token without trusting it: enough to pick the key."""

    kind: IssuerKind
    issuer: str
    alg: str
    kid: str | None
    #: The parsed token (header, claims, signing input, signature), none of it verified yet.
    jws: CompactJws = field(repr=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified token's subject, as the admission workflow uses it."""

    subject: str
    issuer: IssuerKind
    jti: str
    expires_at: int
    tenant_id: str | None
    roles: frozenset[str]
    token_use: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "userId": self.subject,
            "issuer": self.issuer,
            "jti": self.jti,
            "exp": self.expires_at,
            "tenantId": self.tenant_id,
            "roles": sorted(self.roles),
        }


def token_shape(raw: object, policy: TokenPolicy) -> TokenShape:
    """Syntax checks (:func:`~resilience.compact_jws.parse_compact`) and a known issuer: never a verification."""
    jws = parse_compact(raw, max_bytes=policy.max_token_bytes)
    issuer = jws.claims.get("iss")
    if not isinstance(issuer, str):
        raise TokenInvalidError("malformed token: no issuer")
    if issuer == policy.breakwater_issuer:
        return TokenShape("breakwater", issuer, jws.alg, jws.kid, jws)
    if policy.cognito_issuer is not None and issuer == policy.cognito_issuer:
        return TokenShape("cognito", issuer, jws.alg, jws.kid, jws)
    raise TokenInvalidError("untrusted issuer")


# -- JWKS ------------------------------------------------------------------------------------

#: The most a JWKS download may weigh (Cognito's is about 1 KiB).
MAX_JWKS_BYTES = 1_000_000


def cognito_fetch_timeout(env: Mapping[str, str] | None = None) -> float:
    """The JWKS download's timeout: ``BW_COGNITO_READ_TIMEOUT`` (3 s), never less than
    ``BW_COGNITO_CONNECT_TIMEOUT`` (2 s). urllib has one timeout for connecting and for
    each read, so the larger of the two bounds both."""
    from resilience.clients import ClientSettings

    timeouts = ClientSettings.from_env(env).timeouts_for("cognito-idp")
    return max(timeouts.connect, timeouts.read)


def fetch_url(url: str, timeout: float) -> bytes:
    """GET ``url`` (the default JWKS fetcher); every failure becomes the taxonomy, chained.

    Timeouts (connecting or reading) are :class:`ServiceTimeoutError`, 429
    :class:`ThrottledError`, 5xx and broken connections :class:`RetryableError`,
    any other refusal (403, 404) :class:`DependencyUnavailableError`. The body is
    returned unparsed (see :class:`JwksCache`). ``urllib.request.urlopen`` is looked
    up per call: the offline runtime serves its own JWKS through it.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read(MAX_JWKS_BYTES)
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            raise ThrottledError("JWKS download throttled") from exc
        if exc.code >= 500:
            raise RetryableError(f"JWKS download failed ({exc.code})") from exc
        raise DependencyUnavailableError(f"JWKS download refused ({exc.code})") from exc
    except TimeoutError as exc:
        raise ServiceTimeoutError("JWKS download timed out") from exc
    except urllib.error.URLError as exc:
        # urlopen wraps a *connect* timeout (and DNS, refused connections) in a URLError.
        if isinstance(exc.reason, TimeoutError):
            raise ServiceTimeoutError("JWKS download timed out") from exc
        raise RetryableError("JWKS download failed") from exc
    except (OSError, http.client.HTTPException) as exc:
        # Reset connections, TLS errors, a truncated or garbled response.
        raise RetryableError("JWKS download failed") from exc


def parse_jwks(body: bytes) -> dict[str, Any]:
    """The RS256 public keys of a JWKS document by ``kid``; DependencyUnavailableError if it has none."""
    try:
        document = json.loads(body)
        keys = {
            entry["kid"]: jwt.PyJWK(entry, algorithm="RS256").key
            for entry in document["keys"]
            if isinstance(entry, dict) and entry.get("kty") == "RSA" and isinstance(entry.get("kid"), str)
        }
    except (ValueError, KeyError, TypeError, RecursionError, jwt.PyJWKError) as exc:
        raise DependencyUnavailableError("the JWKS is malformed") from exc
    if not keys:
        raise DependencyUnavailableError("the JWKS is malformed (no RSA keys)")
    return keys


class Guard(Protocol):
    """What the JWKS cache needs of a circuit breaker (``CircuitBreaker.call``)."""

    def call[T](self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


def _monotonic() -> float:
    # Looked up at call time, like resilience.cache's default clock.
    return time.monotonic()


class JwksCache:
    """The user pool's public keys by ``kid`` (a :class:`ResilientCache` of one entry).

    * Cached for ``policy.jwks_ttl_seconds`` (1 h) and, while Cognito cannot be
      reached (timeout, throttle, 5xx, refusal, a malformed document, an open
      ``cognito.verifyJwt`` breaker), served stale for at most
      ``policy.jwks_max_stale_seconds`` more; after that the download's error
      propagates (503: speakers are refused, seed 002).
    * A ``kid`` the cached set lacks may be a key Cognito has just rotated in: the
      set is downloaded again at once — but at most once per
      ``policy.jwks_refresh_seconds`` (60 s), so a flood of forged kids costs one
      download a minute — and a kid still unknown is :class:`TokenInvalidError`.
      If that download fails the kid cannot be judged: the dependency error, not a
      refusal, is raised.
    """

    def __init__(
        self,
        policy: TokenPolicy,
        *,
        fetch: Callable[[str, float], bytes] = fetch_url,
        timeout: float | None = None,
        breaker: Guard | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._policy = policy
        self._fetch = fetch
        self._timeout = cognito_fetch_timeout() if timeout is None else timeout
        self._breaker = breaker
        self._clock: Callable[[], float] = clock if clock is not None else _monotonic
        self._lock = threading.Lock()
        self._last_download: float | None = None
        self.cache: ResilientCache[str, dict[str, Any]] = ResilientCache(
            CachePolicy(
                name="jwks",
                ttl_seconds=policy.jwks_ttl_seconds,
                max_items=1,
                max_stale_seconds=policy.jwks_max_stale_seconds,
            ),
            clock=self._clock,
        )
        #: Downloads attempted (successful or not), for tests and the health snapshot.
        self.downloads = 0

    def key(self, kid: str) -> Any:
        """The public key for ``kid``; TokenInvalidError if the pool has no such key."""
        url = self._policy.jwks_url
        if url is None:
            raise DependencyUnavailableError("no Cognito user pool is configured")
        found = self.cache.fetch(url, self._download)
        key = found.value.get(kid)
        if key is not None:
            return key
        if found.source == "hit" and self._may_refresh():
            keys = self._download()  # a failure here propagates: the kid cannot be judged
            self.cache.set(url, keys)
            key = keys.get(kid)
            if key is not None:
                return key
        elif found.stale:
            raise DependencyUnavailableError("the identity provider cannot be reached to look up a new key")
        raise TokenInvalidError("unknown signing key")

    def _may_refresh(self) -> bool:
        now = self._clock()
        with self._lock:
            return self._last_download is None or now - self._last_download >= self._policy.jwks_refresh_seconds

    def _download(self) -> dict[str, Any]:
        url = self._policy.jwks_url
        assert url is not None
        with self._lock:
            self._last_download = self._clock()
            self.downloads += 1
        if self._breaker is not None:
            body = self._breaker.call(self._fetch, url, self._timeout)
        else:
            body = self._fetch(url, self._timeout)
        return parse_jwks(body)


# -- verification ------------------------------------------------------------------------------

# PyJWT's algorithm objects do the cryptography only; the token was parsed by resilience.compact_jws.
_HS256 = HMACAlgorithm(HMACAlgorithm.SHA256)
_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)
_HS256_BYTES = 32


class TokenVerifier:
    """Verifies a raw token into an :class:`Identity`, or says precisely why not."""

    def __init__(
        self,
        policy: TokenPolicy,
        *,
        jwks: JwksCache,
        signing_keys: SigningKeySource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._jwks = jwks
        self._signing_keys = signing_keys
        self._clock = clock

    def verify(self, raw: object, *, role: str | None = None) -> Identity:
        shape = token_shape(raw, self._policy)
        if shape.kind == "cognito":
            # The pool's keys are RSA: RS256 is the only algorithm they can verify (no HS256 keyed
            # with the public key, no none).
            if shape.alg != "RS256":
                raise TokenInvalidError("algorithm not allowed")
            if not shape.kid:
                raise TokenInvalidError("missing key id")
            public_key = self._jwks.key(shape.kid)
            self._check_signature(shape.jws, _RS256, public_key, public_key.key_size // 8)
            claims = self._claims(shape.jws, audience=None)
            identity = self._cognito_identity(claims)
        else:
            if shape.alg != "HS256":
                raise TokenInvalidError("algorithm not allowed")
            # current() first, whatever the kid: no key available means no token is verified.
            key = self._signing_keys.current()
            if shape.kid is not None and shape.kid != key.kid:
                previous = [k for k in self._signing_keys.accepted() if k.kid == shape.kid]
                if not previous:
                    raise TokenInvalidError("unknown signing key")
                key = previous[0]
            self._check_signature(shape.jws, _HS256, _HS256.prepare_key(key.key), _HS256_BYTES)
            claims = self._claims(shape.jws, audience=BREAKWATER_AUDIENCE)
            identity = self._identity(claims, "breakwater", roles=claims.get("roles"))
        if role == "speaker" and "speaker" not in identity.roles:
            raise TokenInvalidError("token does not grant the speaker role")
        return identity

    @staticmethod
    def _check_signature(jws: CompactJws, algorithm: Any, key: Any, length: int) -> None:
        # RFC 7518 §3.2/§3.3: an HS256 MAC is 32 octets, an RS256 signature the modulus' length.
        if len(jws.signature) != length or not algorithm.verify(jws.signing_input, key, jws.signature):
            raise TokenInvalidError("bad signature")

    def _claims(self, jws: CompactJws, audience: str | None) -> dict[str, Any]:
        claims = jws.claims
        for name in _REQUIRED_CLAIMS:
            if claims.get(name) is None:
                raise TokenInvalidError(f"missing claim {name}")
        if audience is not None:
            # RFC 7519 §4.1.3: a string or an array of strings, one of which must be ours.
            aud = claims.get("aud")
            if aud is None:
                raise TokenInvalidError("missing claim aud")
            if not (aud == audience or (isinstance(aud, list) and audience in aud)):
                raise TokenInvalidError("wrong audience")
        self._check_times(claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self._policy.leeway_seconds
        times = {name: claims.get(name) for name in ("exp", "iat", "nbf")}
        for name, value in times.items():
            # RFC 7519 §2 NumericDate: a JSON number (bool is an int in Python, "123" is a string).
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= _MAX_EPOCH
            ):
                raise TokenInvalidError(f"malformed claim {name}")
        exp, iat, nbf = times["exp"], times["iat"], times["nbf"]
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise TokenInvalidError("malformed claims")
        if exp <= now - leeway:
            raise TokenInvalidError("token expired")
        if (nbf is not None and nbf > now + leeway) or iat > now + leeway:
            raise TokenInvalidError("token not yet valid")

    def _cognito_identity(self, claims: dict[str, Any]) -> Identity:
        use = claims.get("token_use")
        if use == "id":
            audience = claims.get("aud")
        elif use == "access":
            audience = claims.get("client_id")
        else:
            raise TokenInvalidError("wrong token_use")
        if not isinstance(audience, str) or audience not in self._policy.client_ids:
            raise TokenInvalidError("wrong audience")
        return self._identity(claims, "cognito", roles=claims.get("cognito:groups"), token_use=use)

    def _identity(
        self, claims: dict[str, Any], kind: IssuerKind, *, roles: Any, token_use: str | None = None
    ) -> Identity:
        subject, jti, exp = claims.get("sub"), claims.get("jti"), claims.get("exp")
        if not isinstance(subject, str) or not subject or not isinstance(jti, str) or not jti:
            raise TokenInvalidError("malformed claims")
        tenant = claims.get("custom:tenant", claims.get("tenant"))
        if tenant is not None and not isinstance(tenant, str):
            raise TokenInvalidError("malformed claims")
        role_set = frozenset(r for r in roles if isinstance(r, str)) if isinstance(roles, list) else frozenset()
        return Identity(
            subject=subject,
            issuer=kind,
            jti=jti,
            expires_at=int(exp) if isinstance(exp, int | float) else 0,
            tenant_id=tenant,
            roles=role_set,
            token_use=token_use,
        )


def issue_token(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    jti: str,
    now: float,
    lifetime_seconds: int = 3600,
    tenant: str | None = None,
    roles: tuple[str, ...] = (),
) -> str:
    """A breakwater token (HS256). Refuses to issue without a key (seed 000: no key, no token)."""
    if not key.key:
        raise JwtKeyError("no signing key")
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": BREAKWATER_AUDIENCE,
        "sub": subject,
        "jti": jti,
        "iat": int(now),
        "exp": int(now) + lifetime_seconds,
        "roles": list(roles),
    }
    if tenant is not None:
        claims["tenant"] = tenant
    return jwt.encode(claims, key.key, algorithm="HS256", headers={"kid": key.kid})
