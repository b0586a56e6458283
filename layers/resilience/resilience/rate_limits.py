"""Fixed-window rate limits in the RateLimits table (seed 002: limiting fails open).

One atomic ``UpdateItem ADD`` per checked request and nothing to read first:
the item for ``<subject>#<window start>`` counts the window's requests and
expires two windows later. Over the limit is a :class:`RateLimitedError` with
the seconds left in the window as ``retry_after``. If the table cannot answer
(timeout, throttle, 5xx, access denied, open breaker) limiting is off for that
request: the caller is told so (``RateDecision.enforced`` is False) to log and
count it, and the request goes through — a RateLimits outage must never refuse
a client.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from resilience.clients import translate_errors
from resilience.errors import BreakwaterError, RateLimitedError
from resilience.settings import env_int

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["RateDecision", "RateLimitPolicy", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    limit: int
    window_seconds: int

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_seconds < 1:
            raise ValueError("a rate limit needs limit >= 1 and window_seconds >= 1")

    @classmethod
    def from_env(
        cls,
        limit_variable: str,
        window_variable: str,
        *,
        default_limit: int,
        default_window: int,
        env: Mapping[str, str] | None = None,
    ) -> RateLimitPolicy:
        env = os.environ if env is None else env
        return cls(
            limit=env_int(env, limit_variable, default_limit, positive=True),
            window_seconds=env_int(env, window_variable, default_window, positive=True),
        )


@dataclass(frozen=True, slots=True)
class RateDecision:
    count: int | None
    #: False when the table could not be asked: the request went through unlimited.
    enforced: bool


class RateLimiter:
    def __init__(self, dynamodb: DynamoDBClient, table: str, policy: RateLimitPolicy) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._policy = policy

    def check(self, subject: str, now: float) -> RateDecision:
        """Count one request of ``subject`` at ``now``; RateLimitedError past the limit."""
        window = self._policy.window_seconds
        start = int(now // window) * window
        try:
            with translate_errors("dynamodb", "UpdateItem"):
                response: Any = self._dynamodb.update_item(
                    TableName=self._table,
                    Key={"subject": {"S": f"{subject}#{start}"}},
                    UpdateExpression="ADD requests :one SET expiresAt = :expires",
                    ExpressionAttributeValues={":one": {"N": "1"}, ":expires": {"N": str(start + 2 * window)}},
                    ReturnValues="UPDATED_NEW",
                )
            count = int(response["Attributes"]["requests"]["N"])
        except (BreakwaterError, ClientError, KeyError, ValueError, TypeError):
            # Unreachable, or an item someone corrupted: availability over limiting (seed 002).
            return RateDecision(count=None, enforced=False)
        if count > self._policy.limit:
            raise RateLimitedError("rate limit exceeded", retry_after=max(1, int(start + window - now + 0.999)))
        return RateDecision(count=count, enforced=True)
