"""The metrics seed 000's alarms read, and the helpers that emit them (EMF, via Powertools).

The names and dimensions below are a contract with the "Alarms and dashboard"
section of ``template.yaml``: CloudWatch matches an alarm's dimension set
exactly, so an alarm naming one dimension more or less than the code emits
never fires. ``tests/unit/test_alarm_contract.py`` checks every alarm of the
template against :data:`EMITTED`.

Every metric here is emitted with ``single_metric``: one EMF document per
datapoint, because each carries its own subject dimension (``Breaker``,
``Cache``, ``Service``) and a Powertools metric set shares one dimension set.
Powertools adds ``service`` (``POWERTOOLS_SERVICE_NAME``) to each.

* ``BreakerOpenSeconds`` (Seconds, ``Breaker``): how long a breaker has been
  OPEN or HALF_OPEN when the health function reads it, 0 when CLOSED; the
  alarm takes the Maximum per minute above ``AlertBreakerOpenSeconds``.
* ``CacheHits`` / ``CacheMisses`` (Count, ``Cache``): lookups since the
  container last emitted; the alarm's metric math is the hit rate.
* ``CacheMemoryPercent`` (Percent, ``Cache``): the cache's approximate bytes
  against the function's memory (the health snapshot's own measure).
* ``DependencyLatency`` (Milliseconds), ``DependencyCalls`` and
  ``DependencyTimeouts`` (Count), all with ``Service`` (dynamodb,
  secretsmanager, s3): one datapoint per health probe of that service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Final

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from resilience.health import CacheLike

__all__ = [
    "BREAKER_OPEN_SECONDS",
    "CACHE_HITS",
    "CACHE_MEMORY_PERCENT",
    "CACHE_MISSES",
    "DEPENDENCY_CALLS",
    "DEPENDENCY_LATENCY",
    "DEPENDENCY_TIMEOUTS",
    "EMITTED",
    "SERVICE_DIMENSION",
    "CacheMetrics",
    "emit_breaker_open",
    "emit_dependency_call",
]

#: Powertools' own dimension on every metric it emits (the function's service name).
SERVICE_DIMENSION: Final = "service"

BREAKER_OPEN_SECONDS: Final = "BreakerOpenSeconds"
CACHE_HITS: Final = "CacheHits"
CACHE_MISSES: Final = "CacheMisses"
CACHE_MEMORY_PERCENT: Final = "CacheMemoryPercent"
DEPENDENCY_LATENCY: Final = "DependencyLatency"
DEPENDENCY_CALLS: Final = "DependencyCalls"
DEPENDENCY_TIMEOUTS: Final = "DependencyTimeouts"

#: Every custom metric an alarm may read, with the dimension set it is emitted with.
#: The idle sweep's counters (seed 001) are added to the function's metric set, so they
#: carry ``service`` only.
EMITTED: Final[Mapping[str, frozenset[str]]] = {
    BREAKER_OPEN_SECONDS: frozenset({SERVICE_DIMENSION, "Breaker"}),
    CACHE_HITS: frozenset({SERVICE_DIMENSION, "Cache"}),
    CACHE_MISSES: frozenset({SERVICE_DIMENSION, "Cache"}),
    CACHE_MEMORY_PERCENT: frozenset({SERVICE_DIMENSION, "Cache"}),
    DEPENDENCY_LATENCY: frozenset({SERVICE_DIMENSION, "Service"}),
    DEPENDENCY_CALLS: frozenset({SERVICE_DIMENSION, "Service"}),
    DEPENDENCY_TIMEOUTS: frozenset({SERVICE_DIMENSION, "Service"}),
    "IdleConnectionsDetected": frozenset({SERVICE_DIMENSION}),
    "ConnectionsClosed": frozenset({SERVICE_DIMENSION}),
}


def _emit(metrics: Metrics, name: str, unit: MetricUnit, value: float, dimensions: Mapping[str, str]) -> None:
    with single_metric(
        name=name,
        unit=unit,
        value=value,
        namespace=metrics.namespace,
        default_dimensions=dict(metrics.default_dimensions),
    ) as metric:
        for key, item in dimensions.items():
            metric.add_dimension(name=key, value=item)


def emit_breaker_open(metrics: Metrics, breaker: str, open_seconds: float | None) -> None:
    """The breaker's open duration as read now; ``None`` (CLOSED) is emitted as 0, so the
    alarm sees a closed breaker as a datapoint below its threshold, not as missing data."""
    _emit(metrics, BREAKER_OPEN_SECONDS, MetricUnit.Seconds, max(0.0, open_seconds or 0.0), {"Breaker": breaker})


def emit_dependency_call(metrics: Metrics, service: str, seconds: float, *, timed_out: bool) -> None:
    """One call to ``service``: its latency, and whether it timed out (the rate's two terms)."""
    dimensions = {"Service": service}
    _emit(metrics, DEPENDENCY_LATENCY, MetricUnit.Milliseconds, seconds * 1000.0, dimensions)
    _emit(metrics, DEPENDENCY_CALLS, MetricUnit.Count, 1, dimensions)
    _emit(metrics, DEPENDENCY_TIMEOUTS, MetricUnit.Count, 1 if timed_out else 0, dimensions)


class CacheMetrics:
    """Emits each cache's lookups since the last call, and its memory share.

    A cache's counters live as long as its container; CloudWatch sums what every
    container sends, so each sends only what it has not sent yet. One per
    container, like the caches it reads.
    """

    def __init__(self, caches: Iterable[CacheLike], memory_budget_bytes: int) -> None:
        self._caches = tuple(caches)
        self._budget = memory_budget_bytes
        self._sent: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def emit(self, metrics: Metrics) -> None:
        with self._lock:
            for cache in self._caches:
                stats = cache.stats()
                sent_hits, sent_misses = self._sent.get(stats.name, (0, 0))
                hits, misses = stats.hits - sent_hits, stats.misses - sent_misses
                dimensions = {"Cache": stats.name}
                if hits or misses:
                    _emit(metrics, CACHE_HITS, MetricUnit.Count, hits, dimensions)
                    _emit(metrics, CACHE_MISSES, MetricUnit.Count, misses, dimensions)
                    self._sent[stats.name] = (stats.hits, stats.misses)
                if self._budget > 0:
                    percent = stats.approx_bytes * 100.0 / self._budget
                    _emit(metrics, CACHE_MEMORY_PERCENT, MetricUnit.Percent, percent, dimensions)
