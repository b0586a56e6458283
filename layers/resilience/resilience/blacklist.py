"""The token revocation list (TokenBlacklist table; seed 000: fail closed, < 10 ms warm).

``jti`` -> revocation, with ``expiresAt`` = the token's ``exp`` (DynamoDB TTL
removes the row once the token could not be used anyway).

* A revocation, once seen, is remembered until the token expires — longer than
  the cache TTL if need be, and outside the LRU cache, so neither expiry nor a
  flood of "not revoked" answers can turn "revoked" back into "not revoked".
  That store holds at most ``max_revocations`` ids; when full it forgets the
  expired ones, then the one expiring first (its next check asks DynamoDB
  again, which still holds the row, or fails closed).
* "Not revoked" is cached for ``BW_BLACKLIST_CACHE_TTL`` (5 min): a revocation
  takes at most that long to reach a warm container. Lower the Parameter for
  stricter deployments.
* DynamoDB slow, throttled, failing, refusing access, or behind an open
  breaker, or a row that cannot be read: the token is treated as revoked
  (:class:`TokenRevokedError`, 401 TOKEN_REVOKED), counted in ``failures``.

The warm path is two dict lookups and a clock read (see ``bench/blacklist.py``).
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

__all__ = ["DEFAULT_MAX_REVOCATIONS", "TokenBlacklist"]

DEFAULT_MAX_REVOCATIONS = 10_000


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
        max_revocations: int = DEFAULT_MAX_REVOCATIONS,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._breaker = breaker
        # Wall-clock seconds: revocations are remembered until the token's exp, an epoch time.
        self._clock = clock
        #: "Not revoked" answers, for the policy's TTL (``BW_BLACKLIST_CACHE_TTL``).
        self.cache: ResilientCache[str, bool] = ResilientCache(policy or blacklist_policy(), clock=clock)
        # jti -> until when it is known revoked (the token's exp).
        self._revoked: dict[str, float] = {}
        self._max_revocations = max(1, max_revocations)
        #: Checks that could not ask the table and were answered "revoked" (seed 000: fail closed).
        self.failures = 0

    @property
    def revocations_cached(self) -> int:
        return len(self._revoked)

    def check(self, jti: str, expires_at: float) -> None:
        """Return if the token is not revoked; TokenRevokedError if it is, or if nobody can tell."""
        until = self._revoked.get(jti)
        if until is not None and self._clock() < until:
            raise TokenRevokedError("token revoked")
        if self.cache.get(jti) is False:
            return
        if self._lookup(jti, expires_at):
            raise TokenRevokedError("token revoked")

    def is_revoked(self, jti: str, expires_at: float) -> bool:
        """The same check as a bool (True also when the list cannot be read; counted in ``failures``)."""
        try:
            self.check(jti, expires_at)
        except TokenRevokedError:
            return True
        return False

    def _lookup(self, jti: str, expires_at: float) -> bool:
        try:
            found = self._breaker.call(self._get, jti) if self._breaker else self._get(jti)
        except (BreakwaterError, ClientError) as exc:
            # Including a 4xx such as AccessDenied: whatever stops the check, the answer is "revoked".
            self.failures += 1
            raise TokenRevokedError("the revocation list cannot be checked; treated as revoked") from exc
        if found:
            self._remember(jti, expires_at)
        else:
            self.cache.set(jti, False)
        return found

    def _remember(self, jti: str, expires_at: float) -> None:
        # Until the token itself expires (at least a second), whatever the cache TTL.
        now = self._clock()
        self.cache.invalidate(jti)
        if jti not in self._revoked and len(self._revoked) >= self._max_revocations:
            for gone in [k for k, until in self._revoked.items() if until <= now]:
                del self._revoked[gone]
            if len(self._revoked) >= self._max_revocations:
                del self._revoked[min(self._revoked, key=self._revoked.__getitem__)]
        self._revoked[jti] = max(float(expires_at), now + 1.0)

    def _get(self, jti: str) -> bool:
        with translate_errors("dynamodb", "GetItem"):
            item = self._dynamodb.get_item(
                TableName=self._table, Key={"jti": {"S": jti}}, ProjectionExpression="jti", ConsistentRead=False
            ).get("Item")
        return item is not None

    def revoke(self, jti: str, expires_at: int, *, reason: str = "revoked", now: float | None = None) -> None:
        """Revoke a token id until ``expires_at`` (operators, logout); taxonomy errors if the write fails."""
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
        self._remember(jti, expires_at)
