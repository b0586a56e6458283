"""The token revocation list (TokenBlacklist table; seed 000: fail closed, < 10 ms warm).

``jti`` -> revocation, with ``expiresAt`` = the token's ``exp`` (DynamoDB TTL
removes the row once the token could not be used anyway).

* A revocation, once seen, is cached until the token expires — longer than the
  cache TTL if need be — so "revoked" never turns back into "not revoked".
* "Not revoked" is cached for ``BW_BLACKLIST_CACHE_TTL`` (5 min): a revocation
  takes at most that long to reach a warm container. Lower the Parameter for
  stricter deployments.
* DynamoDB slow, throttled, failing, refusing access, or behind an open
  breaker, or a row that cannot be read: the token is treated as revoked
  (:class:`TokenRevokedError`, 401 TOKEN_REVOKED), counted in ``failures``.

The warm path is one dict lookup and one clock read under a lock (see
``bench/blacklist.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from resilience.cache import CachePolicy, ResilientCache, blacklist_policy
from resilience.clients import translate_errors
from resilience.errors import BreakwaterError, TokenRevokedError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["TokenBlacklist"]


class Guard(Protocol):
    def call[T](self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class TokenBlacklist:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        *,
        policy: CachePolicy | None = None,
        breaker: Guard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._breaker = breaker
        # Wall-clock seconds: revocations are cached until the token's exp, an epoch time.
        self._clock = clock
        self.cache: ResilientCache[str, bool] = ResilientCache(policy or blacklist_policy(), clock=clock)
        self.failures = 0

    def check(self, jti: str, expires_at: float) -> None:
        """Return if the token is not revoked; TokenRevokedError if it is, or if nobody can tell."""
        revoked = self.cache.get(jti)
        if revoked is None:
            revoked = self._lookup(jti, expires_at)
        if revoked:
            raise TokenRevokedError("token revoked")

    def _lookup(self, jti: str, expires_at: float) -> bool:
        try:
            found = self._breaker.call(self._get, jti) if self._breaker else self._get(jti)
        except (BreakwaterError, ClientError) as exc:
            # Including a 4xx such as AccessDenied: whatever stops the check, the answer is "revoked".
            self.failures += 1
            raise TokenRevokedError("the revocation list cannot be checked; treated as revoked") from exc
        now = self._clock()
        if found:
            # Until the token itself expires, whatever the cache TTL: never un-revoked by expiry.
            self.cache.set(jti, True, ttl=max(1.0, expires_at - now))
        else:
            self.cache.set(jti, False)
        return found

    def _get(self, jti: str) -> bool:
        with translate_errors("dynamodb", "GetItem"):
            item = self._dynamodb.get_item(
                TableName=self._table, Key={"jti": {"S": jti}}, ProjectionExpression="jti", ConsistentRead=False
            ).get("Item")
        return item is not None

    def revoke(self, jti: str, expires_at: int, *, reason: str = "revoked", now: float | None = None) -> None:
        """Revoke a token id until ``expires_at`` (operators, logout)."""
        at = self._clock() if now is None else now
        with translate_errors("dynamodb", "PutItem"):
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "jti": {"S": jti},
                    "revokedAt": {"N": str(int(at))},
                    "reason": {"S": reason},
                    "expiresAt": {"N": str(int(expires_at))},
                },
            )
        self.cache.set(jti, True, ttl=max(1.0, expires_at - at))
