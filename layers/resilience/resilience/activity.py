"""Connection activity and the idle index (seed 001).

The idle sweeper finds idle connections with a Query, not a Scan: the
Connections table's ``ByIdleShard`` index is keyed by ``idleShard`` (a stable
hash of the connection id into ``shards`` partitions, so no single partition
takes every write) with ``lastActivityTime`` (epoch ms) as its sort key.
Activity writes are bounded: ``lastActivityTime`` moves at most once per
``touch_interval_seconds`` per connection, so a chatty client does not
multiply writes. The stored time may therefore trail the client's real last
frame by up to that interval, and the sweeper's cutoff (``idle_cutoff_ms``)
allows for it: a connection is never closed before it has really been idle
for ``idle_timeout_seconds``; at worst it is closed one interval later.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import cachetools
from botocore.exceptions import ClientError

from resilience.clients import error_code, translate_errors
from resilience.settings import env_int

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["ActivityPolicy", "ActivityRecorder", "Touch", "idle_cutoff_ms", "idle_shard", "should_touch", "touch"]


def idle_shard(connection_id: str, shards: int) -> str:
    """The connection's partition of the idle index: stable across processes (not ``hash()``)."""
    if shards < 1:
        raise ValueError("shards must be >= 1")
    digest = hashlib.blake2b(connection_id.encode(), digest_size=8).digest()
    return str(int.from_bytes(digest, "big") % shards)


@dataclass(frozen=True, slots=True)
class ActivityPolicy:
    #: Idle longer than this (seconds) and the sweeper closes the connection.
    idle_timeout_seconds: int = 120
    #: lastActivityTime is written at most this often per connection.
    touch_interval_seconds: int = 30
    #: Partitions of the idle index.
    shards: int = 4

    def __post_init__(self) -> None:
        if self.idle_timeout_seconds < 1 or self.touch_interval_seconds < 0 or self.shards < 1:
            raise ValueError("idle timeout and shards must be >= 1, touch interval >= 0")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ActivityPolicy:
        env = os.environ if env is None else env
        return cls(
            idle_timeout_seconds=env_int(env, "CONNECTION_IDLE_TIMEOUT_SECONDS", 120, positive=True),
            touch_interval_seconds=env_int(env, "BW_ACTIVITY_WRITE_INTERVAL_SECONDS", 30),
            shards=env_int(env, "BW_IDLE_INDEX_SHARDS", 4, positive=True),
        )


def should_touch(last_activity_ms: int | None, now_ms: int, policy: ActivityPolicy) -> bool:
    """Whether this frame should move lastActivityTime (never more than once per interval)."""
    return last_activity_ms is None or now_ms - last_activity_ms >= policy.touch_interval_seconds * 1000


def idle_cutoff_ms(now_ms: int, policy: ActivityPolicy) -> int:
    """Connections whose stored lastActivityTime is before this are idle.

    Not ``now - timeout``: a frame within ``touch_interval_seconds`` of the last
    write is not stored, so a stored time that old only proves the client has
    been silent for ``timeout`` once the interval is added too. Closing an
    active client early is worse than closing an idle one an interval late.
    """
    return now_ms - (policy.idle_timeout_seconds + policy.touch_interval_seconds) * 1000


Touch = Literal["touched", "recent", "gone"]


def touch(dynamodb: DynamoDBClient, table: str, connection_id: str, now_ms: int, policy: ActivityPolicy) -> Touch:
    """Move lastActivityTime to ``now_ms`` unless it moved less than ``touch_interval_seconds`` ago.

    One conditional write, nothing read first: "recent" when the write was not
    needed, "gone" when the connection no longer exists (a frame from a client
    that was already cleaned up must not resurrect its item).
    """
    return _touch(dynamodb, table, connection_id, now_ms, policy)[0]


def _touch(
    dynamodb: DynamoDBClient, table: str, connection_id: str, now_ms: int, policy: ActivityPolicy
) -> tuple[Touch, int | None]:
    """``touch``, and the lastActivityTime stored after it (None when gone)."""
    threshold = now_ms - policy.touch_interval_seconds * 1000
    try:
        with translate_errors("dynamodb", "UpdateItem"):
            dynamodb.update_item(
                TableName=table,
                Key={"connectionId": {"S": connection_id}},
                UpdateExpression="SET lastActivityTime = :now",
                ConditionExpression=(
                    "attribute_exists(connectionId) AND "
                    "(attribute_not_exists(lastActivityTime) OR lastActivityTime <= :threshold)"
                ),
                ExpressionAttributeValues={":now": {"N": str(now_ms)}, ":threshold": {"N": str(threshold)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
    except ClientError as exc:
        if error_code(exc) != "ConditionalCheckFailedException":
            raise
        item = exc.response.get("Item")
        if not isinstance(item, dict) or not item:
            return "gone", None
        stored = item.get("lastActivityTime")
        return "recent", int(stored["N"]) if isinstance(stored, dict) and "N" in stored else now_ms
    return "touched", now_ms


class ActivityRecorder:
    """``touch`` with a memory: a warm container that moved (or saw) a connection's
    lastActivityTime within the interval does not ask DynamoDB again — a conditional
    write that fails still costs a write unit. Bounded: at most ``max_items``
    connections, each forgotten when the stored time is an interval old — not an
    interval after this container saw it, or a frame could go unrecorded for up to
    two intervals and the sweeper's allowance (``idle_cutoff_ms``) would not cover it."""

    def __init__(
        self,
        dynamodb: DynamoDBClient,
        table: str,
        policy: ActivityPolicy,
        *,
        max_items: int = 10_000,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table
        self._policy = policy
        # Looked up per call, not bound at import: a patched time.monotonic (virtual time offline) applies.
        self._clock: Callable[[], float] = clock if clock is not None else lambda: time.monotonic()
        # Each entry's value is its own deadline on ``clock``.
        self._recent: cachetools.TLRUCache[str, float] = cachetools.TLRUCache(
            maxsize=max_items, ttu=lambda _key, deadline, _now: deadline, timer=self._clock
        )
        self._lock = threading.Lock()

    def touch(self, connection_id: str, now_ms: int) -> Touch:
        with self._lock:
            if connection_id in self._recent:
                return "recent"
        outcome, stored_ms = _touch(self._dynamodb, self._table, connection_id, now_ms, self._policy)
        if stored_ms is not None:
            # Quiet until the stored time is an interval old, i.e. until DynamoDB would take the next write.
            quiet_s = (stored_ms + self._policy.touch_interval_seconds * 1000 - now_ms) / 1000
            if quiet_s > 0:
                with self._lock:
                    self._recent[connection_id] = self._clock() + quiet_s
        return outcome
