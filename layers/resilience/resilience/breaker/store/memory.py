"""An in-process store: one environment's tests, benchmarks, and the reference
the DynamoDB store is held to."""

from __future__ import annotations

import threading
from typing import Any

from resilience.breaker.state import BreakerRecord, record_from_attributes
from resilience.breaker.store.base import BreakerStore, CountUpdate, StateChange, apply_change, apply_counts

__all__ = ["MemoryBreakerStore"]


class MemoryBreakerStore(BreakerStore):
    def __init__(self) -> None:
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: Requests served, for benchmarks comparing store traffic.
        self.requests = 0

    def get(self, name: str) -> BreakerRecord | None:
        with self._lock:
            self.requests += 1
            item = self._items.get(name)
            return record_from_attributes(name, item) if item is not None else None

    def add(self, name: str, update: CountUpdate) -> BreakerRecord:
        with self._lock:
            self.requests += 1
            item = self._items.setdefault(name, {})
            apply_counts(item, update)
            return record_from_attributes(name, item)

    def change(self, name: str, change: StateChange, *, expected_version: int | None) -> BreakerRecord | None:
        with self._lock:
            self.requests += 1
            item = self._items.setdefault(name, {})
            if expected_version is not None and int(item.get("version", 0)) != expected_version:
                return None
            apply_change(item, change)
            return record_from_attributes(name, item)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)
