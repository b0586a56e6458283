"""breakwater's token signing key, from Secrets Manager (seed 000: 5 min cache; no key, no token).

The secret is ``{"kid": "<version>", "key": "<secret>"}`` (what the template's
``GenerateSecretString`` makes) or, for a hand-made secret, a plain string (kid
``default``). Keys are HS256 secrets of at least 32 bytes.

Rotation: write the new version with the old one under ``previous``::

    {"kid": "v2", "key": "<new>", "previous": {"kid": "v1", "key": "<old>"}}

Tokens are then issued with ``v2`` only, and tokens already issued with ``v1``
stay verifiable (the token's ``kid`` picks the version) until ``previous`` is
dropped — after the longest token lifetime. A warm container sees the new secret
within the cache TTL.

The key ring is cached for ``BW_SIGNING_KEY_CACHE_TTL`` and, while Secrets
Manager is down, served stale for at most one more TTL; after that — or with
nothing cached, or a secret that is not a usable key ring — every caller gets
:class:`JwtKeyError` (500 JWT_KEY_ERROR) and no token is issued or verified.
No key reaches a log line, an error message or a ``repr``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from resilience.cache import CachePolicy, ResilientCache, signing_key_policy
from resilience.clients import error_code, translate_errors
from resilience.errors import BreakwaterError, DependencyUnavailableError, JwtKeyError
from resilience.tokens import SigningKey

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["SigningKeyProvider", "parse_signing_key", "parse_signing_keys"]

_MIN_KEY_BYTES = 32
_DEFAULT_KID = "default"


def _key(entry: object, where: str) -> SigningKey:
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        raise JwtKeyError(f"the signing key secret has no {where}'key'")
    kid = entry.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise JwtKeyError(f"the signing key secret's {where}'kid' is not a string")
    key: str = entry["key"]
    if len(key.encode()) < _MIN_KEY_BYTES:
        raise JwtKeyError(f"the signing key secret's {where}key is too short for HS256")
    return SigningKey(kid=kid or _DEFAULT_KID, key=key.encode())


def parse_signing_keys(secret: str) -> tuple[SigningKey, ...]:
    """The key ring in a secret string, current version first; JwtKeyError if any part is unusable."""
    if not secret.lstrip().startswith("{"):
        if len(secret.encode()) < _MIN_KEY_BYTES:
            raise JwtKeyError("the signing key is too short for HS256")
        return (SigningKey(kid=_DEFAULT_KID, key=secret.encode()),)
    try:
        document: Any = json.loads(secret)
    except ValueError as exc:
        raise JwtKeyError("the signing key secret is not valid JSON") from exc
    current = _key(document, "")
    previous = document.get("previous")
    if previous is None:
        return (current,)
    old = _key(previous, "previous ")
    if old.kid == current.kid:
        raise JwtKeyError("the signing key secret's previous version has the current kid")
    return (current, old)


def parse_signing_key(secret: str) -> SigningKey:
    """The current key in a secret string (the one tokens are issued with); JwtKeyError if unusable."""
    return parse_signing_keys(secret)[0]


class SigningKeyProvider:
    """The deployment's key ring (``resilience.tokens.SigningKeySource``), cached with stale-on-error."""

    def __init__(
        self,
        secretsmanager: SecretsManagerClient,
        secret_id: str,
        *,
        policy: CachePolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = secretsmanager
        self._secret_id = secret_id
        self.cache: ResilientCache[str, tuple[SigningKey, ...]] = ResilientCache(
            policy or signing_key_policy(), clock=clock
        )

    def current(self) -> SigningKey:
        """The version tokens are issued with; JwtKeyError when no key can be had."""
        return self.accepted()[0]

    def accepted(self) -> tuple[SigningKey, ...]:
        """Every version a token may be verified with, current first; JwtKeyError when no key can be had."""
        try:
            return self.cache.get_or_load(self._secret_id, self._load)
        except JwtKeyError:
            raise
        except BreakwaterError as exc:
            raise JwtKeyError("the signing key is unavailable") from exc

    def _load(self) -> tuple[SigningKey, ...]:
        try:
            with translate_errors("secretsmanager", "GetSecretValue"):
                response = self._client.get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            raise DependencyUnavailableError(f"secretsmanager.GetSecretValue refused ({error_code(exc)})") from exc
        secret = response.get("SecretString")
        if not isinstance(secret, str):
            raise JwtKeyError("the signing key secret is not a string")
        return parse_signing_keys(secret)
