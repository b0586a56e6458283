"""A circuit breaker whose state lives in DynamoDB and is shared by every invocation."""

from __future__ import annotations

from resilience.breaker.breaker import CircuitBreaker
from resilience.breaker.config import BreakerPolicy, counts_as_failure, policy_for, policy_from_env
from resilience.breaker.exceptions import BreakerStoreError, CircuitOpenError
from resilience.breaker.state import BreakerRecord, BreakerState, BreakerStats, CircuitInfo, Counts, Transition
from resilience.breaker.store import BreakerStore, DynamoDBBreakerStore, MemoryBreakerStore

__all__ = [
    "BreakerPolicy",
    "BreakerRecord",
    "BreakerState",
    "BreakerStats",
    "BreakerStore",
    "BreakerStoreError",
    "CircuitBreaker",
    "CircuitInfo",
    "CircuitOpenError",
    "Counts",
    "DynamoDBBreakerStore",
    "MemoryBreakerStore",
    "Transition",
    "counts_as_failure",
    "policy_for",
    "policy_from_env",
]
