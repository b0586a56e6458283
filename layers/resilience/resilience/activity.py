"""Connection activity and the idle index (seed 001).

The idle sweeper finds idle connections with a Query, not a Scan: the
Connections table's ``ByIdleShard`` index is keyed by ``idleShard`` (a stable
hash of the connection id into ``shards`` partitions, so no single partition
takes every write) with ``lastActivityTime`` (epoch ms) as its sort key.
Activity writes are bounded: ``lastActivityTime`` moves at most once per
``touch_interval_seconds`` per connection, so a chatty client does not
multiply writes; the sweeper's threshold allows for that lag.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from resilience.settings import env_int

__all__ = ["ActivityPolicy", "idle_shard", "should_touch"]


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
