"""Breaker states and the record every environment shares.

One record per breaker (dependency + operation). Its attributes are flat so
that DynamoDB can update them with a single ``UpdateItem``:

* transitions (state, openedAt, probe lease, forced) are compare-and-set on
  ``version``;
* call accounting is commutative ``ADD`` on counters whose names carry the
  version they belong to (``n3_1700000040`` = calls in version 3, bucket
  starting at 1700000040), so a transition starts a fresh window without
  having to delete anything first, and counters of older versions are simply
  ignored (and pruned lazily);
* an environment whose own calls are failing in a row sets a *mark*
  (``m3_<owner>`` = when it last failed) and removes it when it recovers.
  Consecutive failures are only meaningful within one environment (another
  environment's successes reach the table up to a refresh interval late), so
  the fleet aggregates *how many environments are failing right now*.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from resilience.timestamps import iso_utc

__all__ = [
    "BreakerRecord",
    "BreakerState",
    "BreakerStats",
    "CircuitInfo",
    "Counts",
    "Transition",
    "record_from_attributes",
]


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(frozen=True)
class Counts:
    """Calls seen in one window bucket (or pending in one environment)."""

    calls: int = 0
    failures: int = 0
    slow: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.calls + other.calls, self.failures + other.failures, self.slow + other.slow)

    def __bool__(self) -> bool:
        return bool(self.calls or self.failures or self.slow)


_COUNTER = re.compile(r"^([nfs])(\d+)_(\d+)$")
_MARKER = re.compile(r"^m(\d+)_(.+)$")
_FIELD = {"n": "calls", "f": "failures", "s": "slow"}


def counter_name(kind: str, version: int, bucket: int) -> str:
    """``kind`` is ``n`` (calls), ``f`` (failures) or ``s`` (slow)."""
    return f"{kind}{version}_{bucket}"


def marker_name(version: int, owner: str) -> str:
    return f"m{version}_{owner}"


@dataclass(frozen=True)
class BreakerRecord:
    """The shared truth about one breaker, as last read from the store."""

    name: str
    state: BreakerState = BreakerState.CLOSED
    version: int = 0
    opened_at: float | None = None
    next_attempt_at: float | None = None
    probe_owner: str | None = None
    probe_lease_until: float | None = None
    forced: bool = False
    last_failure_at: float | None = None
    last_success_at: float | None = None
    #: When the current version began (the last transition, or the record's creation).
    since: float | None = None
    half_open_successes: int = 0
    buckets: Mapping[int, Counts] = field(default_factory=dict)
    #: Environments failing in a row: owner -> when it last failed.
    marks: Mapping[str, float] = field(default_factory=dict)
    #: Counter attributes of older versions or old buckets, for lazy pruning.
    stale_counters: tuple[str, ...] = ()

    def window(self, now: float, window_seconds: float) -> Counts:
        total = Counts()
        for start, counts in self.buckets.items():
            if start > now - window_seconds:
                total = total + counts
        return total

    def failing_environments(self, now: float, window_seconds: float) -> int:
        """Environments that failed in a row and have not recovered, within the window."""
        return sum(1 for at in self.marks.values() if at > now - window_seconds)

    def counters_outside(self, now: float, window_seconds: float, bucket_seconds: float) -> tuple[str, ...]:
        """Attributes that can no longer matter (for REMOVE): old buckets, expired marks."""
        old = [
            counter_name(kind, self.version, start)
            for start in self.buckets
            if start + bucket_seconds <= now - window_seconds
            for kind in ("n", "f", "s")
        ]
        expired = [marker_name(self.version, owner) for owner, at in self.marks.items() if at <= now - window_seconds]
        return (*self.stale_counters, *old, *expired)

    def info(self) -> CircuitInfo:
        return CircuitInfo(self.name, self.state, self.opened_at, self.next_attempt_at, self.forced)


def record_from_attributes(name: str, attributes: Mapping[str, Any]) -> BreakerRecord:
    """Decode the flat attribute map (plain Python values) both stores keep."""
    version = int(attributes.get("version", 0))
    buckets: dict[int, dict[str, int]] = {}
    marks: dict[str, float] = {}
    stale: list[str] = []
    for key, value in attributes.items():
        marker = _MARKER.match(key)
        if marker is not None:
            if int(marker.group(1)) == version:
                marks[marker.group(2)] = float(value)
            else:
                stale.append(key)
            continue
        match = _COUNTER.match(key)
        if match is None:
            continue
        kind, counter_version, bucket = match.groups()
        if int(counter_version) != version:
            stale.append(key)
            continue
        buckets.setdefault(int(bucket), {})[_FIELD[kind]] = int(value)

    def number(key: str) -> float | None:
        value = attributes.get(key)
        return float(value) if value is not None else None

    return BreakerRecord(
        name=name,
        state=BreakerState(str(attributes.get("state", BreakerState.CLOSED))),
        version=version,
        opened_at=number("openedAt"),
        next_attempt_at=number("nextAttemptAt"),
        probe_owner=attributes.get("probeOwner"),
        probe_lease_until=number("probeLeaseUntil"),
        forced=bool(attributes.get("forced", False)),
        last_failure_at=number("lastFailureAt"),
        last_success_at=number("lastSuccessAt"),
        since=number("updatedAt"),
        half_open_successes=int(attributes.get("halfOpenSuccesses", 0)),
        buckets={start: Counts(**fields) for start, fields in buckets.items()},
        marks=marks,
        stale_counters=tuple(sorted(stale)),
    )


@dataclass(frozen=True)
class CircuitInfo:
    """What a fallback or an error handler may know about an open breaker."""

    name: str
    state: BreakerState
    opened_at: float | None
    next_attempt_at: float | None
    forced: bool = False


@dataclass(frozen=True)
class Transition:
    """Passed to ``on_transition`` hooks: one state change of one breaker."""

    name: str
    from_state: BreakerState
    to_state: BreakerState
    at: float
    reason: str


@dataclass(frozen=True)
class BreakerStats:
    """State and window counts, for ``bw breakers`` and the health endpoint."""

    name: str
    state: BreakerState
    version: int
    calls: int
    failures: int
    slow_calls: int
    failure_rate: float
    failing_environments: int
    opened_at: float | None
    next_attempt_at: float | None
    last_failure_at: float | None
    last_success_at: float | None
    forced: bool

    def to_dict(self) -> dict[str, Any]:
        iso = iso_utc
        return {
            "name": self.name,
            "state": str(self.state),
            "version": self.version,
            "calls": self.calls,
            "failures": self.failures,
            "slowCalls": self.slow_calls,
            "failureRate": round(self.failure_rate, 4),
            "failingEnvironments": self.failing_environments,
            "openedAt": iso(self.opened_at),
            "nextAttemptAt": iso(self.next_attempt_at),
            "lastFailureAt": iso(self.last_failure_at),
            "lastSuccessAt": iso(self.last_success_at),
            "forced": self.forced,
        }
