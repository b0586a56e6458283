"""API Gateway stage throttling: a token bucket per route, on the stack's (virtual) clock.

A stage's ``DefaultRouteSettings`` (``ThrottlingBurstLimit``, ``ThrottlingRateLimit``)
apply to each of its routes, its ``RouteSettings`` override them for one route key: the
bucket holds at most *burst* tokens, refills at *rate* tokens per second and starts
full; a request takes one token or is throttled (the HTTP API answers 429
``{"message":"Too Many Requests"}``, the WebSocket API refuses ``$connect`` with 429 and
answers a message with a Too Many Requests frame). A limit of 0 throttles every
request, as on AWS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StageThrottle", "ThrottleSettings", "TokenBucket", "route_throttle_settings", "throttle_settings"]


@dataclass(frozen=True)
class ThrottleSettings:
    """One route's limits: ``burst`` tokens at most, refilled at ``rate`` per second."""

    burst: int
    rate: float


def throttle_settings(route_settings: Any, resolve: Callable[[Any], Any]) -> ThrottleSettings | None:
    """A stage's ``DefaultRouteSettings`` as limits (None when it sets none: AWS's account
    limits are then the only ones, far above anything a local run reaches)."""
    if not isinstance(route_settings, Mapping):
        return None
    burst, rate = route_settings.get("ThrottlingBurstLimit"), route_settings.get("ThrottlingRateLimit")
    if burst is None and rate is None:
        return None
    # Either one unset leaves the account's default for it (5,000 burst, 10,000 per second).
    return ThrottleSettings(
        burst=int(float(resolve(burst))) if burst is not None else 5000,
        rate=float(resolve(rate)) if rate is not None else 10000.0,
    )


@dataclass
class TokenBucket:
    settings: ThrottleSettings
    clock: Callable[[], float]
    _tokens: float = field(init=False)
    _at: float = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._tokens = float(self.settings.burst)
        self._at = self.clock()

    def take(self) -> bool:
        """Take a token: False when the bucket is empty (the request is throttled)."""
        with self._lock:
            now = self.clock()
            elapsed = max(0.0, now - self._at)
            self._tokens = min(float(self.settings.burst), self._tokens + elapsed * self.settings.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


def route_throttle_settings(
    route_settings: Any, default: ThrottleSettings | None, resolve: Callable[[Any], Any]
) -> dict[str, ThrottleSettings | None]:
    """A stage's ``RouteSettings`` (route key -> settings) as limits; what a route leaves
    unset comes from the stage's default."""
    routes: dict[str, ThrottleSettings | None] = {}
    if not isinstance(route_settings, Mapping):
        return routes
    for key, settings in route_settings.items():
        if not isinstance(settings, Mapping):
            continue
        merged = {
            "ThrottlingBurstLimit": default.burst if default is not None else None,
            "ThrottlingRateLimit": default.rate if default is not None else None,
        }
        merged.update({k: v for k, v in settings.items() if k in merged and v is not None})
        routes[str(key)] = throttle_settings(merged, resolve)
    return routes


@dataclass
class StageThrottle:
    """A stage's buckets, one per route key: its own ``routes`` settings, else the stage's
    default (None: that route is not throttled)."""

    settings: ThrottleSettings | None
    clock: Callable[[], float]
    routes: Mapping[str, ThrottleSettings | None] = field(default_factory=dict)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self, route_key: str) -> bool:
        settings = self.routes.get(route_key, self.settings)
        if settings is None:
            return True
        with self._lock:
            bucket = self._buckets.get(route_key)
            if bucket is None:
                bucket = self._buckets[route_key] = TokenBucket(settings, self.clock)
        return bucket.take()

    def reset(self) -> None:
        """Full buckets again (a live stack between two tests)."""
        with self._lock:
            self._buckets.clear()
