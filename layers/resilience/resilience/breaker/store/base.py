"""What a breaker needs from the place its state lives.

Two primitives, both atomic per breaker and both returning the record as it
is *after* the write, so a single request both reports an outcome and tells
the caller the fleet's current view:

* :meth:`BreakerStore.add` — commutative counter updates (never conflicts);
* :meth:`BreakerStore.change` — a state transition, compare-and-set on the
  record's version, so concurrent environments never lose a transition and
  never flap: exactly one of them wins, the others read the winner's result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from resilience.breaker.state import BreakerRecord, BreakerState, Counts, counter_name, marker_name

__all__ = ["BreakerStore", "CountUpdate", "StateChange", "apply_change", "apply_counts"]


@dataclass(frozen=True)
class CountUpdate:
    """Outcomes to add to the current version's window bucket."""

    version: int
    bucket: int
    delta: Counts
    at: float
    #: This environment is failing (a local streak of consecutive failures): mark it...
    mark: str | None = None
    #: ...or it recovered: take its mark away.
    unmark: str | None = None
    prune: tuple[str, ...] = ()


@dataclass(frozen=True)
class StateChange:
    """A transition: every field is written (``None`` removes the attribute)."""

    state: BreakerState
    opened_at: float | None = None
    next_attempt_at: float | None = None
    probe_owner: str | None = None
    probe_lease_until: float | None = None
    forced: bool = False
    #: Probes that succeeded so far in this recovery (probes run one at a time).
    half_open_successes: int = 0
    at: float = 0.0


class BreakerStore(ABC):
    @abstractmethod
    def get(self, name: str) -> BreakerRecord | None:
        """The record, or ``None`` if the breaker has never been written."""

    @abstractmethod
    def add(self, name: str, update: CountUpdate) -> BreakerRecord:
        """Add outcomes (creating a CLOSED record if none exists)."""

    @abstractmethod
    def change(self, name: str, change: StateChange, *, expected_version: int | None) -> BreakerRecord | None:
        """Apply a transition if the version still is ``expected_version``
        (``None``: unconditionally, for operator actions). Bumps the version.
        Returns ``None`` when another environment changed the breaker first."""

    def names(self) -> list[str]:
        """Every breaker the store knows (for ``bw breakers``)."""
        raise NotImplementedError


def apply_counts(attributes: dict[str, Any], update: CountUpdate) -> None:
    """The semantics of :meth:`BreakerStore.add` on a plain attribute map
    (the memory store uses it directly; the DynamoDB store states the same in
    an UpdateExpression, and the shared store test suite holds them equal)."""
    attributes.setdefault("state", str(BreakerState.CLOSED))
    attributes.setdefault("version", 0)
    attributes.setdefault("updatedAt", update.at)
    for kind, value in (("n", update.delta.calls), ("f", update.delta.failures), ("s", update.delta.slow)):
        if value:
            key = counter_name(kind, update.version, update.bucket)
            attributes[key] = int(attributes.get(key, 0)) + value
    if update.mark is not None:
        attributes[marker_name(update.version, update.mark)] = update.at
    if update.unmark is not None:
        attributes.pop(marker_name(update.version, update.unmark), None)
    if update.delta.failures:
        attributes["lastFailureAt"] = update.at
    if update.delta.calls > update.delta.failures:
        attributes["lastSuccessAt"] = update.at
    for key in update.prune:
        attributes.pop(key, None)


def apply_change(attributes: dict[str, Any], change: StateChange) -> None:
    attributes["state"] = str(change.state)
    attributes["version"] = int(attributes.get("version", 0)) + 1
    attributes["forced"] = change.forced
    attributes["updatedAt"] = change.at
    for key, value in (
        ("openedAt", change.opened_at),
        ("nextAttemptAt", change.next_attempt_at),
        ("probeOwner", change.probe_owner),
        ("probeLeaseUntil", change.probe_lease_until),
        ("halfOpenSuccesses", change.half_open_successes or None),
    ):
        if value is None:
            attributes.pop(key, None)
        else:
            attributes[key] = value
