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
  its version); ``aud`` must be ``breakwater``.

Every token needs ``sub``, ``exp``, ``iat`` and ``jti`` (the revocation
list's key); ``exp``/``nbf``/``iat`` are checked with ``BW_JWT_LEEWAY_SECONDS``
of skew. The tenant is ``custom:tenant`` (Cognito attribute) or ``tenant``;
the roles are ``cognito:groups`` or ``roles``: a speaker connection needs the
``speaker`` role. Every refusal is a :class:`TokenInvalidError` whose message
says why in a few words and never contains the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import jwt

from resilience.errors import (
    BreakwaterError,
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
    "TokenPolicy",
    "TokenShape",
    "TokenVerifier",
    "fetch_url",
    "issue_token",
    "token_shape",
]

IssuerKind = Literal["cognito", "breakwater"]
#: The ``aud`` of every token breakwater issues.
BREAKWATER_AUDIENCE = "breakwater"
MAX_TOKEN_CHARS = 8192
_REQUIRED_CLAIMS = ("sub", "exp", "iat", "jti")


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One version of breakwater's HS256 key (never logged: no key in ``repr``)."""

    kid: str
    key: bytes = field(repr=False)


class SigningKeySource(Protocol):
    def current(self) -> SigningKey: ...


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """Who may issue tokens and what they must say."""

    region: str
    user_pool_id: str | None
    client_ids: frozenset[str]
    breakwater_issuer: str
    leeway_seconds: float = 30.0
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
            leeway_seconds=env_number(env, "BW_JWT_LEEWAY_SECONDS", 30, minimum=0),
        )


@dataclass(frozen=True, slots=True)
class TokenShape:
    """What can be read from a token without trusting it: enough to pick the key."""

    kind: IssuerKind
    issuer: str
    alg: str
    kid: str | None


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


def _b64_json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise TokenInvalidError("malformed token") from exc


def token_shape(raw: object, policy: TokenPolicy) -> TokenShape:
    """Structural checks only (three base64url JSON parts, a known issuer): never a verification."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_TOKEN_CHARS:
        raise TokenInvalidError("malformed token")
    parts = raw.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise TokenInvalidError("malformed token")
    header, claims = _b64_json(parts[0]), _b64_json(parts[1])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenInvalidError("malformed token")
    alg, kid, issuer = header.get("alg"), header.get("kid"), claims.get("iss")
    if not isinstance(alg, str) or not isinstance(issuer, str):
        raise TokenInvalidError("malformed token")
    if kid is not None and not isinstance(kid, str):
        raise TokenInvalidError("malformed token")
    if issuer == policy.breakwater_issuer:
        return TokenShape("breakwater", issuer, alg, kid)
    if policy.cognito_issuer is not None and issuer == policy.cognito_issuer:
        return TokenShape("cognito", issuer, alg, kid)
    raise TokenInvalidError("untrusted issuer")


# -- JWKS ------------------------------------------------------------------------------------


def fetch_url(url: str, timeout: float) -> bytes:
    """GET ``url`` (the default JWKS fetcher); errors become the taxonomy, chained."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read(1_000_000)
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            raise ThrottledError("JWKS download throttled") from exc
        if exc.code >= 500:
            raise RetryableError(f"JWKS download failed ({exc.code})") from exc
        raise DependencyUnavailableError(f"JWKS download refused ({exc.code})") from exc
    except TimeoutError as exc:
        raise ServiceTimeoutError("JWKS download timed out") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise RetryableError("JWKS download failed") from exc


class Guard(Protocol):
    """What the JWKS cache needs of a circuit breaker (``CircuitBreaker.call``)."""

    def call[T](self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class JwksCache:
    """The user pool's public keys by ``kid``: cached, refreshed for unknown kids at most every
    ``jwks_refresh_seconds``, served stale (bounded) while Cognito cannot be reached."""

    def __init__(
        self,
        policy: TokenPolicy,
        *,
        fetch: Callable[[str, float], bytes] = fetch_url,
        timeout: float = 3.0,
        breaker: Guard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._fetch = fetch
        self._timeout = timeout
        self._breaker = breaker
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, Any] = {}
        self._loaded_at: float | None = None
        self._last_attempt: float | None = None

    def key(self, kid: str) -> Any:
        """The public key for ``kid``; TokenInvalidError if the pool has no such key."""
        now = self._clock()
        with self._lock:
            fresh = self._loaded_at is not None and now - self._loaded_at < self._policy.jwks_ttl_seconds
            found = self._keys.get(kid)
            may_refresh = self._last_attempt is None or now - self._last_attempt >= self._policy.jwks_refresh_seconds
        if found is not None and fresh:
            return found
        if found is None and fresh and not may_refresh:
            raise TokenInvalidError("unknown signing key")
        try:
            self._refresh(now)
        except BreakwaterError:
            with self._lock:
                usable = (
                    self._loaded_at is not None
                    and now - self._loaded_at < self._policy.jwks_ttl_seconds + self._policy.jwks_max_stale_seconds
                )
                stale = self._keys.get(kid)
            if usable and stale is not None:
                return stale
            raise
        with self._lock:
            found = self._keys.get(kid)
        if found is None:
            raise TokenInvalidError("unknown signing key")
        return found

    def _refresh(self, now: float) -> None:
        url = self._policy.jwks_url
        if url is None:
            raise DependencyUnavailableError("no Cognito user pool is configured")
        with self._lock:
            self._last_attempt = now
        body = self._breaker.call(self._fetch, url, self._timeout) if self._breaker else self._fetch(url, self._timeout)
        try:
            document = json.loads(body)
            keys = {
                entry["kid"]: jwt.PyJWK(entry, algorithm="RS256").key
                for entry in document["keys"]
                if entry.get("kty") == "RSA" and isinstance(entry.get("kid"), str)
            }
        except (ValueError, KeyError, TypeError, jwt.PyJWKError) as exc:
            raise DependencyUnavailableError("the JWKS is malformed") from exc
        with self._lock:
            self._keys, self._loaded_at = keys, now


# -- verification ------------------------------------------------------------------------------


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
        token = cast("str", raw)  # token_shape refused anything else
        if shape.kind == "cognito":
            if shape.alg != "RS256":
                raise TokenInvalidError("algorithm not allowed")
            if not shape.kid:
                raise TokenInvalidError("missing key id")
            claims = self._decode(token, self._jwks.key(shape.kid), "RS256", shape.issuer, audience=None)
            identity = self._cognito_identity(claims)
        else:
            if shape.alg != "HS256":
                raise TokenInvalidError("algorithm not allowed")
            key = self._signing_keys.current()
            if shape.kid is not None and shape.kid != key.kid:
                raise TokenInvalidError("unknown signing key")
            claims = self._decode(token, key.key, "HS256", shape.issuer, audience=BREAKWATER_AUDIENCE)
            identity = self._identity(claims, "breakwater", roles=claims.get("roles"))
        if role == "speaker" and "speaker" not in identity.roles:
            raise TokenInvalidError("token does not grant the speaker role")
        return identity

    def _decode(self, raw: str, key: Any, alg: str, issuer: str, audience: str | None) -> dict[str, Any]:
        # Time claims are checked against the injected clock below, not PyJWT's time.time().
        options: dict[str, Any] = {
            "require": list(_REQUIRED_CLAIMS),
            "verify_aud": audience is not None,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                raw,
                key,
                algorithms=[alg],
                issuer=issuer,
                audience=audience,
                options=cast("Any", options),
            )
        except jwt.InvalidIssuerError as exc:
            raise TokenInvalidError("wrong issuer") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenInvalidError("wrong audience") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenInvalidError(f"missing claim {exc.claim}") from exc
        except jwt.InvalidSignatureError as exc:
            raise TokenInvalidError("bad signature") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise TokenInvalidError("algorithm not allowed") from exc
        except jwt.InvalidTokenError as exc:
            raise TokenInvalidError("invalid token") from exc
        self._check_times(claims)
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now, leeway = self._clock(), self._policy.leeway_seconds
        times = {name: claims.get(name) for name in ("exp", "iat", "nbf")}
        for name, value in times.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
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
