"""One health snapshot: breakers, caches, timeouts, latency, degradations and alert flags.

The snapshot is built from what it is given, never from globals, so the same
code serves ``GET /health``, ``bw breakers`` and the tests. Breakers and caches
are read through small Protocols (``.stats()`` returning an object with the
named attributes), so the real implementations match by shape and this module
imports neither.

Alert thresholds are the seed's numbers (000, "Alerting Thresholds") and come
from the template Parameters through the environment. Each comparison is the
seed's own: strictly above (open time, latency, memory, timeout rate) or
strictly below (hit rate), so a value exactly at its threshold does not alert.
Memory is bytes, as the template Parameter says: all caches' ``approx_bytes``
against the function's memory, and each cache's own ``memory_warning``.

Overall status:

* ``unhealthy`` (HTTP 503): a critical dependency is down (its breaker is
  OPEN, or it is listed as degraded);
* ``degraded`` (HTTP 200): an important or optional dependency is down, a
  breaker is probing (HALF_OPEN), a source could not be read, or any alert;
* ``healthy`` (HTTP 200) otherwise.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from resilience.errors import ServiceTimeoutError
from resilience.settings import env_number
from resilience.timestamps import iso_utc

__all__ = [
    "AlertThresholds",
    "BreakerHealth",
    "BreakerLike",
    "BreakerStatsLike",
    "CacheHealth",
    "CacheLike",
    "CacheStatsLike",
    "Criticality",
    "DegradationHealth",
    "DegradationLike",
    "Degraded",
    "HealthAlert",
    "HealthSnapshot",
    "HealthStatus",
    "LatencyStats",
    "LatencyTracker",
    "MemoryHealth",
    "TimeoutSetting",
    "build_health_snapshot",
    "function_memory_bytes",
]

Criticality = Literal["critical", "important", "optional"]
HealthStatus = Literal["healthy", "degraded", "unhealthy"]

BREAKER_OPEN_TOO_LONG: Final = "BREAKER_OPEN_TOO_LONG"
CACHE_HIT_RATE_LOW: Final = "CACHE_HIT_RATE_LOW"
LATENCY_HIGH: Final = "LATENCY_HIGH"
MEMORY_HIGH: Final = "MEMORY_HIGH"
TIMEOUT_RATE_HIGH: Final = "TIMEOUT_RATE_HIGH"
STATS_UNAVAILABLE: Final = "STATS_UNAVAILABLE"

#: Breaker state shown when its ``stats()`` raised (e.g. its DynamoDB item could not be read).
UNKNOWN_STATE: Final = "UNKNOWN"
#: Subject of the memory alert about all caches together against the function's memory.
ALL_CACHES: Final = "caches"

_HTTP_STATUS: Final[Mapping[HealthStatus, int]] = {"healthy": 200, "degraded": 200, "unhealthy": 503}

# --------------------------------------------------------------------------- what is consumed


class BreakerStatsLike(Protocol):
    """What a breaker's ``stats()`` returns (read-only, so frozen dataclasses match)."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...  # "CLOSED" | "OPEN" | "HALF_OPEN"
    @property
    def opened_at(self) -> float | None: ...  # epoch seconds
    @property
    def failure_rate(self) -> float: ...  # 0..1
    @property
    def calls(self) -> int: ...
    @property
    def failures(self) -> int: ...


class BreakerLike(Protocol):
    def stats(self) -> BreakerStatsLike: ...


class CacheStatsLike(Protocol):
    """What a cache's ``stats()`` returns."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def max_items(self) -> int: ...
    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    @property
    def hit_rate(self) -> float | None: ...  # 0..1, None before the first lookup
    @property
    def approx_bytes(self) -> int: ...
    @property
    def memory_warning(self) -> bool: ...


class CacheLike(Protocol):
    def stats(self) -> CacheStatsLike: ...


class DegradationLike(Protocol):
    """A dependency currently running degraded, since an epoch second.

    Optional attributes are used when present: ``criticality`` (the degradation
    table's own level wins over the ``criticality`` mapping) and ``reason``.
    """

    @property
    def dependency(self) -> str: ...
    @property
    def since(self) -> float: ...


@dataclass(frozen=True)
class Degraded:
    """A ready-made ``DegradationLike`` for callers that have none of their own."""

    dependency: str
    since: float
    reason: str = ""
    criticality: str | None = None


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class AlertThresholds:
    """Seed 000's alerting thresholds; percentages are 0..100."""

    breaker_open_seconds: float = 300.0
    cache_hit_rate_percent: float = 50.0
    latency_ms: float = 1000.0
    memory_percent: float = 80.0
    timeout_rate_percent: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AlertThresholds:
        """From the ``BW_ALERT_*`` variables (template Parameters); a missing one keeps its default."""
        default = cls()
        return cls(
            breaker_open_seconds=env_number(
                env, "BW_ALERT_BREAKER_OPEN_SECONDS", default.breaker_open_seconds, minimum=0, finite=True
            ),
            cache_hit_rate_percent=env_number(
                env, "BW_ALERT_CACHE_HIT_RATE_PERCENT", default.cache_hit_rate_percent, minimum=0, finite=True
            ),
            latency_ms=env_number(env, "BW_ALERT_LATENCY_MS", default.latency_ms, minimum=0, finite=True),
            memory_percent=env_number(env, "BW_ALERT_MEMORY_PERCENT", default.memory_percent, minimum=0, finite=True),
            timeout_rate_percent=env_number(
                env, "BW_ALERT_TIMEOUT_RATE_PERCENT", default.timeout_rate_percent, minimum=0, finite=True
            ),
        )


def function_memory_bytes(env: Mapping[str, str]) -> int | None:
    """The function's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, MB) in bytes, if known."""
    raw = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
    try:
        megabytes = int(raw)
    except ValueError:
        return None
    return megabytes * 1024 * 1024 if megabytes > 0 else None


# --------------------------------------------------------------------------- latency samples


@dataclass(frozen=True)
class LatencyStats:
    dependency: str
    samples: int
    average_ms: float
    timeouts: int

    @property
    def timeout_rate(self) -> float:
        return self.timeouts / self.samples if self.samples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "dependency": self.dependency,
            "samples": self.samples,
            "averageMs": _finite(self.average_ms),
            "timeoutRate": _finite(self.timeout_rate),
        }


class LatencyTracker:
    """A bounded rolling window of (duration, timed out) per dependency.

    Memory stays bounded whatever callers record: ``window`` samples per
    dependency, and at most ``max_dependencies`` dependencies (the one recorded
    least recently is dropped), since a name built from request data would
    otherwise grow the map for the life of the container.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        window: int = 100,
        max_dependencies: int = 64,
    ) -> None:
        if window < 1 or max_dependencies < 1:
            raise ValueError("window and max_dependencies must be >= 1")
        self._clock = clock
        self._window = window
        self._max_dependencies = max_dependencies
        self._samples: OrderedDict[str, deque[tuple[float, bool]]] = OrderedDict()
        # A Map state or a thread pool may record from several threads at once.
        self._lock = threading.Lock()

    def record(self, dependency: str, duration_seconds: float, *, timed_out: bool = False) -> None:
        with self._lock:
            samples = self._samples.get(dependency)
            if samples is None:
                samples = self._samples[dependency] = deque(maxlen=self._window)
                while len(self._samples) > self._max_dependencies:
                    self._samples.popitem(last=False)
            else:
                self._samples.move_to_end(dependency)
            samples.append((max(0.0, duration_seconds), timed_out))

    @contextmanager
    def measure(self, dependency: str) -> Iterator[None]:
        """Time the block with the injected clock; a timeout error marks the sample as timed out.

        Other errors are recorded as ordinary samples (a fast 4xx is still latency)
        and re-raised.
        """
        started = self._clock()
        timed_out = False
        try:
            yield
        except (ServiceTimeoutError, TimeoutError):
            timed_out = True
            raise
        finally:
            self.record(dependency, self._clock() - started, timed_out=timed_out)

    def stats(self) -> tuple[LatencyStats, ...]:
        with self._lock:
            snapshot = {name: list(samples) for name, samples in self._samples.items()}
        return tuple(
            LatencyStats(
                dependency=name,
                samples=len(samples),
                average_ms=sum(duration for duration, _ in samples) * 1000.0 / len(samples),
                timeouts=sum(1 for _, timed_out in samples if timed_out),
            )
            for name, samples in sorted(snapshot.items())
            if samples
        )


# --------------------------------------------------------------------------- snapshot parts


def _finite(value: float | None) -> float | None:
    # NaN/Infinity are not JSON; a broken stat shows as null rather than breaking the endpoint.
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class HealthAlert:
    """One alert; ``value`` and ``threshold`` are in the threshold's unit (seconds, %, ms)."""

    name: str
    subject: str
    value: float | None
    threshold: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "value": _finite(self.value), "threshold": self.threshold}


@dataclass(frozen=True)
class BreakerHealth:
    name: str
    dependency: str
    criticality: Criticality
    state: str
    opened_at: float | None
    open_seconds: float | None
    failure_rate: float | None
    calls: int | None
    failures: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dependency": self.dependency,
            "criticality": self.criticality,
            "state": self.state,
            "openedAt": iso_utc(self.opened_at),
            "openSeconds": _finite(self.open_seconds),
            "failureRate": _finite(self.failure_rate),
            "calls": self.calls,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class CacheHealth:
    name: str
    size: int | None
    max_items: int | None
    usage_percent: float | None
    hit_rate: float | None
    approx_bytes: int | None
    memory_warning: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "maxItems": self.max_items,
            "usagePercent": _finite(self.usage_percent),
            "hitRate": _finite(self.hit_rate),
            "approxBytes": self.approx_bytes,
            "memoryWarning": self.memory_warning,
        }


@dataclass(frozen=True)
class MemoryHealth:
    """All caches' approximate bytes against the function's memory."""

    cache_bytes: int
    budget_bytes: int | None
    usage_percent: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cacheBytes": self.cache_bytes,
            "budgetBytes": self.budget_bytes,
            "usagePercent": _finite(self.usage_percent),
        }


@dataclass(frozen=True)
class TimeoutSetting:
    service: str
    connect_seconds: float
    read_seconds: float


@dataclass(frozen=True)
class DegradationHealth:
    dependency: str
    criticality: Criticality
    since: float
    for_seconds: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "dependency": self.dependency,
            "criticality": self.criticality,
            "since": iso_utc(self.since),
            "forSeconds": _finite(self.for_seconds),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class HealthSnapshot:
    status: HealthStatus
    checked_at: float
    breakers: tuple[BreakerHealth, ...]
    caches: tuple[CacheHealth, ...]
    memory: MemoryHealth
    timeouts: tuple[TimeoutSetting, ...]
    latency: tuple[LatencyStats, ...]
    degradations: tuple[DegradationHealth, ...]
    alerts: tuple[HealthAlert, ...]

    @property
    def http_status(self) -> int:
        """What ``GET /health`` answers: 503 only when a critical dependency is down."""
        return _HTTP_STATUS[self.status]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (ISO-8601 UTC timestamps, no NaN), camelCase like every public body."""
        return {
            "status": self.status,
            "checkedAt": iso_utc(self.checked_at),
            "breakers": [breaker.to_dict() for breaker in self.breakers],
            "caches": [cache.to_dict() for cache in self.caches],
            "memory": self.memory.to_dict(),
            "timeouts": {
                setting.service: {"connectSeconds": setting.connect_seconds, "readSeconds": setting.read_seconds}
                for setting in self.timeouts
            },
            "latency": [stats.to_dict() for stats in self.latency],
            "degradations": [degradation.to_dict() for degradation in self.degradations],
            "alerts": [alert.to_dict() for alert in self.alerts],
        }


# --------------------------------------------------------------------------- building


_LEVELS: Final[Mapping[str, Criticality]] = {"critical": "critical", "important": "important", "optional": "optional"}


def _level(value: object) -> Criticality | None:
    # str() so the degradation table's StrEnum members count as their values.
    return _LEVELS.get(str(value)) if value is not None else None


def _normalize_levels(criticality: Mapping[str, object] | None) -> dict[str, Criticality]:
    levels: dict[str, Criticality] = {}
    for name, value in (criticality or {}).items():
        level = _level(value)
        if level is None:
            raise ValueError(f"criticality of {name!r} must be one of {sorted(_LEVELS)}, got {value!r}")
        levels[str(name)] = level
    return levels


def _criticality(name: str, criticality: Mapping[str, Criticality]) -> Criticality:
    """A breaker named ``dependency.operation`` is looked up by full name, then by dependency.

    Unlisted dependencies count as important: being down degrades the service but
    never answers 503, which is reserved for dependencies declared critical.
    """
    return criticality.get(name) or criticality.get(name.split(".", 1)[0]) or "important"


def _read_breaker(
    breaker: BreakerLike,
    now: float,
    thresholds: AlertThresholds,
    criticality: Mapping[str, Criticality],
    alerts: list[HealthAlert],
) -> BreakerHealth:
    try:
        stats = breaker.stats()
    except Exception:  # noqa: BLE001 - the health endpoint must answer when a breaker's store is down
        name = str(getattr(breaker, "name", None) or type(breaker).__name__)
        alerts.append(HealthAlert(STATS_UNAVAILABLE, name, None, None))
        return BreakerHealth(
            name=name,
            dependency=name.split(".", 1)[0],
            criticality=_criticality(name, criticality),
            state=UNKNOWN_STATE,
            opened_at=None,
            open_seconds=None,
            failure_rate=None,
            calls=None,
            failures=None,
        )
    open_seconds: float | None = None
    # HALF_OPEN counts as still open: a dependency that keeps failing its probes has been
    # unusable since it first opened, and the alert must not reset at every probe.
    if stats.state != "CLOSED" and stats.opened_at is not None:
        # Another container's clock may be slightly ahead: never a negative duration.
        open_seconds = max(0.0, now - stats.opened_at)
        if open_seconds > thresholds.breaker_open_seconds:
            alerts.append(HealthAlert(BREAKER_OPEN_TOO_LONG, stats.name, open_seconds, thresholds.breaker_open_seconds))
    return BreakerHealth(
        name=stats.name,
        dependency=stats.name.split(".", 1)[0],
        criticality=_criticality(stats.name, criticality),
        state=stats.state,
        opened_at=stats.opened_at,
        open_seconds=open_seconds,
        failure_rate=stats.failure_rate,
        calls=stats.calls,
        failures=stats.failures,
    )


def _read_cache(
    cache: CacheLike, thresholds: AlertThresholds, memory_budget_bytes: int | None, alerts: list[HealthAlert]
) -> CacheHealth:
    try:
        stats = cache.stats()
    except Exception:  # noqa: BLE001 - one broken cache must not take the health endpoint down
        name = str(getattr(cache, "name", None) or type(cache).__name__)
        alerts.append(HealthAlert(STATS_UNAVAILABLE, name, None, None))
        return CacheHealth(name, None, None, None, None, None, None)
    # Slots used is shown but never alerts: a busy LRU cache sits at max_items by design,
    # and an alert that is always on is no alert. Memory alerts are about bytes.
    usage_percent = stats.size * 100.0 / stats.max_items if stats.max_items > 0 else None
    if stats.memory_warning:
        share = stats.approx_bytes * 100.0 / memory_budget_bytes if memory_budget_bytes else None
        alerts.append(HealthAlert(MEMORY_HIGH, stats.name, share, thresholds.memory_percent))
    # Compared as fractions, so a hit rate of exactly 0.5 against 50 % is not "below".
    if stats.hit_rate is not None and stats.hit_rate < thresholds.cache_hit_rate_percent / 100.0:
        alerts.append(
            HealthAlert(CACHE_HIT_RATE_LOW, stats.name, stats.hit_rate * 100.0, thresholds.cache_hit_rate_percent)
        )
    return CacheHealth(
        name=stats.name,
        size=stats.size,
        max_items=stats.max_items,
        usage_percent=usage_percent,
        hit_rate=stats.hit_rate,
        approx_bytes=stats.approx_bytes,
        memory_warning=stats.memory_warning,
    )


def build_health_snapshot(
    *,
    clock: Callable[[], float],
    thresholds: AlertThresholds,
    breakers: Iterable[BreakerLike] = (),
    caches: Iterable[CacheLike] = (),
    timeouts: Mapping[str, tuple[float, float]] | None = None,
    degradations: Iterable[DegradationLike] = (),
    latency: LatencyTracker | Iterable[LatencyStats] = (),
    criticality: Mapping[str, str] | None = None,
    memory_budget_bytes: int | None = None,
) -> HealthSnapshot:
    """Read every source once and derive alerts and the overall status.

    ``timeouts`` maps a service to its (connect, read) seconds;
    ``criticality`` maps a dependency (``dynamodb``) or a breaker name
    (``dynamodb.putItem``) to its level; ``memory_budget_bytes`` is what the
    caches' bytes are compared with (``function_memory_bytes(env)``), no byte
    check when ``None``.
    """
    now = clock()
    levels = _normalize_levels(criticality)
    alerts: list[HealthAlert] = []

    breaker_health = tuple(
        sorted(
            (_read_breaker(breaker, now, thresholds, levels, alerts) for breaker in breakers),
            key=lambda b: b.name,
        )
    )
    cache_health = tuple(
        sorted((_read_cache(cache, thresholds, memory_budget_bytes, alerts) for cache in caches), key=lambda c: c.name)
    )

    cache_bytes = sum(cache.approx_bytes or 0 for cache in cache_health)
    memory_percent: float | None = None
    if memory_budget_bytes is not None and memory_budget_bytes > 0:
        memory_percent = cache_bytes * 100.0 / memory_budget_bytes
        # Integer cross-multiplication: exact at the threshold, no float rounding either way.
        if cache_bytes * 100 > thresholds.memory_percent * memory_budget_bytes:
            alerts.append(HealthAlert(MEMORY_HIGH, ALL_CACHES, memory_percent, thresholds.memory_percent))
    memory = MemoryHealth(cache_bytes=cache_bytes, budget_bytes=memory_budget_bytes, usage_percent=memory_percent)

    latency_stats = latency.stats() if isinstance(latency, LatencyTracker) else tuple(latency)
    for stats in latency_stats:
        if stats.samples and stats.average_ms > thresholds.latency_ms:
            alerts.append(HealthAlert(LATENCY_HIGH, stats.dependency, stats.average_ms, thresholds.latency_ms))
        if stats.samples and stats.timeouts * 100 > thresholds.timeout_rate_percent * stats.samples:
            alerts.append(
                HealthAlert(
                    TIMEOUT_RATE_HIGH, stats.dependency, stats.timeout_rate * 100.0, thresholds.timeout_rate_percent
                )
            )

    degradation_health = tuple(
        sorted(
            (
                DegradationHealth(
                    dependency=str(item.dependency),
                    criticality=_level(getattr(item, "criticality", None)) or _criticality(item.dependency, levels),
                    since=item.since,
                    for_seconds=max(0.0, now - item.since),
                    reason=str(getattr(item, "reason", "") or ""),
                )
                for item in degradations
            ),
            key=lambda d: d.dependency,
        )
    )

    timeout_settings = tuple(
        TimeoutSetting(service=service, connect_seconds=float(connect), read_seconds=float(read))
        for service, (connect, read) in sorted((timeouts or {}).items())
    )

    return HealthSnapshot(
        status=_overall_status(breaker_health, degradation_health, alerts),
        checked_at=now,
        breakers=breaker_health,
        caches=cache_health,
        memory=memory,
        timeouts=timeout_settings,
        latency=latency_stats,
        degradations=degradation_health,
        alerts=tuple(alerts),
    )


def _overall_status(
    breakers: tuple[BreakerHealth, ...],
    degradations: tuple[DegradationHealth, ...],
    alerts: list[HealthAlert],
) -> HealthStatus:
    critical_down = any(b.state == "OPEN" and b.criticality == "critical" for b in breakers) or any(
        d.criticality == "critical" for d in degradations
    )
    if critical_down:
        return "unhealthy"
    # HALF_OPEN is recovering, not down: one probe is let through, so even a critical
    # dependency there reports degraded rather than taking the endpoint to 503.
    anything_down = any(b.state != "CLOSED" for b in breakers) or bool(degradations)
    if anything_down or alerts:
        return "degraded"
    return "healthy"
