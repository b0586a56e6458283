"""breakwater's token signing key, from Secrets Manager (seed 000: 5 min cache; no key, no token).

The secret is ``{"kid": "<version>", "key": "<secret>"}`` (what the template's
``GenerateSecretString`` makes; rotate by writing a new kid and key) or, for a
hand-made secret, a plain string (kid ``default``). The key is cached for
``BW_SIGNING_KEY_CACHE_TTL`` and, while Secrets Manager is down, served stale
for at most one more TTL; after that — or with nothing cached, or a secret that
is not a usable key — every caller gets :class:`JwtKeyError` (500
JWT_KEY_ERROR) and no token is issued or verified. The key is never logged.
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

__all__ = ["SigningKeyProvider", "parse_signing_key"]

_MIN_KEY_BYTES = 32


def parse_signing_key(secret: str) -> SigningKey:
    """The key in a secret string; JwtKeyError if it is not a usable HS256 key."""
    kid, key = "default", secret
    if secret.lstrip().startswith("{"):
        try:
            document: Any = json.loads(secret)
        except ValueError as exc:
            raise JwtKeyError("the signing key secret is not valid JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("key"), str):
            raise JwtKeyError("the signing key secret has no 'key'")
        kid, key = str(document.get("kid") or "default"), document["key"]
    if len(key.encode()) < _MIN_KEY_BYTES:
        raise JwtKeyError("the signing key is too short for HS256")
    return SigningKey(kid=kid, key=key.encode())


class SigningKeyProvider:
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
        self.cache: ResilientCache[str, SigningKey] = ResilientCache(policy or signing_key_policy(), clock=clock)

    def current(self) -> SigningKey:
        try:
            return self.cache.get_or_load(self._secret_id, self._load)
        except JwtKeyError:
            raise
        except BreakwaterError as exc:
            raise JwtKeyError("the signing key is unavailable") from exc

    def _load(self) -> SigningKey:
        try:
            with translate_errors("secretsmanager", "GetSecretValue"):
                response = self._client.get_secret_value(SecretId=self._secret_id)
        except ClientError as exc:
            raise DependencyUnavailableError(f"secretsmanager.GetSecretValue refused ({error_code(exc)})") from exc
        secret = response.get("SecretString")
        if not isinstance(secret, str):
            raise JwtKeyError("the signing key secret is not a string")
        return parse_signing_key(secret)
