"""Redeliver a connection's parked messages, oldest first, when it shows activity.

A parked message waits in the Outbox (connectionId + time-ordered messageId)
until its recipient is heard from again — a ping is the natural moment: the
client is there, and it is the one that missed messages. Delivery stops at the
first failure, so the order per recipient is kept; what is left waits for the
next ping (or expires with its TTL, like the message itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resilience.breaker import CircuitBreaker, CircuitOpenError
from resilience.clients import error_code, is_transient

__all__ = ["DrainResult", "drain_outbox"]


@dataclass(frozen=True)
class DrainResult:
    delivered: int
    remaining: bool
    stopped_by: str | None


def drain_outbox(
    connection_id: str,
    *,
    query: Callable[[str, int], list[dict[str, Any]]],
    post: Callable[[str, bytes], None],
    delete: Callable[[str, str], None],
    breaker: CircuitBreaker,
    limit: int = 25,
) -> DrainResult:
    """Deliver up to ``limit`` parked frames in order; stop at the first that cannot go."""
    items = query(connection_id, limit)
    delivered = 0
    for item in items:
        try:
            breaker.call(post, connection_id, item["frame"]["S"].encode())
        except CircuitOpenError:
            return DrainResult(delivered, True, "circuit_open")
        except Exception as exc:
            if error_code(exc) == "GoneException":
                return DrainResult(delivered, True, "gone")
            if is_transient(exc):
                return DrainResult(delivered, True, "transient")
            raise
        delete(connection_id, item["messageId"]["S"])
        delivered += 1
    return DrainResult(delivered, len(items) == limit, None)
