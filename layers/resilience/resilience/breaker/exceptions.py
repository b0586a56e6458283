"""The breaker's errors. They live in the taxonomy (``resilience.errors``),
because ASL matches ``CircuitOpenError`` by name; re-exported here so the
breaker package reads like Powertools' (config, exceptions, store, breaker)."""

from __future__ import annotations

from resilience.errors import BreakerStoreError, CircuitOpenError

__all__ = ["BreakerStoreError", "CircuitOpenError"]
