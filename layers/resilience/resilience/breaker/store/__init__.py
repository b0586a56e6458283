"""Where breaker state lives: DynamoDB in AWS, memory in tests and benchmarks."""

from __future__ import annotations

from resilience.breaker.store.base import BreakerStore, CountUpdate, StateChange
from resilience.breaker.store.dynamodb import DynamoDBBreakerStore
from resilience.breaker.store.memory import MemoryBreakerStore

__all__ = ["BreakerStore", "CountUpdate", "DynamoDBBreakerStore", "MemoryBreakerStore", "StateChange"]
