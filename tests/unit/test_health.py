"""The health snapshot: alert flags at their thresholds, overall status, JSON output."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pytest

from resilience.errors import ConfigurationError, ServiceTimeoutError
from resilience.health import (
    AlertThresholds,
    BreakerStatsLike,
    CacheStatsLike,
    Criticality,
    Degraded,
    HealthSnapshot,
    LatencyStats,
    LatencyTracker,
    build_health_snapshot,
    function_memory_bytes,
)

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z
THRESHOLDS = AlertThresholds()


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class BreakerStats:
    name: str
    state: str = "CLOSED"
    opened_at: float | None = None
    failure_rate: float = 0.0
    calls: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Breaker:
    snapshot: BreakerStats

    def stats(self) -> BreakerStatsLike:
        return self.snapshot


@dataclass(frozen=True)
class CacheStats:
    name: str
    size: int = 0
    max_items: int = 1000
    hits: int = 0
    misses: int = 0
    hit_rate: float | None = None
    approx_bytes: int = 0
    memory_warning: bool = False


@dataclass(frozen=True)
class Cache:
    snapshot: CacheStats

    def stats(self) -> CacheStatsLike:
        return self.snapshot


class BrokenBreaker:
    name = "dynamodb.getItem"

    def stats(self) -> BreakerStatsLike:
        raise ConnectionError("breaker table unreachable")


def snapshot(**kwargs: Any) -> HealthSnapshot:
    kwargs.setdefault("clock", FakeClock())
    kwargs.setdefault("thresholds", THRESHOLDS)
    return build_health_snapshot(**kwargs)


def alert_names(snap: HealthSnapshot) -> list[tuple[str, str]]:
    return [(alert.name, alert.subject) for alert in snap.alerts]


def tracker_with(dependency: str, durations: list[float], timeouts: int = 0) -> LatencyTracker:
    tracker = LatencyTracker(FakeClock(), window=1000)
    for index, duration in enumerate(durations):
        tracker.record(dependency, duration, timed_out=index < timeouts)
    return tracker


# --------------------------------------------------------------------------- thresholds, table-driven


def _breaker(state: str, open_for: float | None) -> dict[str, Any]:
    opened_at = None if open_for is None else NOW - open_for
    return {"breakers": [Breaker(BreakerStats("cognito.verifyJwt", state, opened_at))]}


def _hit_rate(rate: float | None) -> dict[str, Any]:
    return {"caches": [Cache(CacheStats("signingKeys", size=10, hit_rate=rate))]}


def _latency(durations: list[float]) -> dict[str, Any]:
    return {"latency": tracker_with("secretsmanager", durations)}


def _items(size: int, max_items: int = 1000, warning: bool = False) -> dict[str, Any]:
    return {"caches": [Cache(CacheStats("tenantConfig", size=size, max_items=max_items, memory_warning=warning))]}


def _bytes(used: int, budget: int) -> dict[str, Any]:
    return {"caches": [Cache(CacheStats("blacklist", size=1, approx_bytes=used))], "memory_budget_bytes": budget}


def _timeouts(timeouts: int, samples: int) -> dict[str, Any]:
    return {"latency": tracker_with("dynamodb", [0.01] * samples, timeouts=timeouts)}


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        # breaker open longer than 300 s
        pytest.param(_breaker("OPEN", 299.0), None, id="breaker-open-below"),
        pytest.param(_breaker("OPEN", 300.0), None, id="breaker-open-at-threshold"),
        pytest.param(
            _breaker("OPEN", 300.001), ("BREAKER_OPEN_TOO_LONG", "cognito.verifyJwt"), id="breaker-open-above"
        ),
        pytest.param(
            _breaker("HALF_OPEN", 301.0), ("BREAKER_OPEN_TOO_LONG", "cognito.verifyJwt"), id="half-open-counts"
        ),
        pytest.param(_breaker("CLOSED", 10_000.0), None, id="closed-never"),
        pytest.param(_breaker("OPEN", None), None, id="open-without-opened-at"),
        pytest.param(_breaker("OPEN", -30.0), None, id="opened-at-in-the-future"),
        # cache hit rate below 50 %
        pytest.param(_hit_rate(0.51), None, id="hit-rate-above"),
        pytest.param(_hit_rate(0.5), None, id="hit-rate-at-threshold"),
        pytest.param(_hit_rate(0.4999), ("CACHE_HIT_RATE_LOW", "signingKeys"), id="hit-rate-below"),
        pytest.param(_hit_rate(None), None, id="hit-rate-no-lookups"),
        # average latency above 1000 ms
        pytest.param(_latency([0.5, 1.5]), None, id="latency-at-threshold-averaged"),
        pytest.param(_latency([1.0]), None, id="latency-at-threshold"),
        pytest.param(_latency([1.0, 1.002]), ("LATENCY_HIGH", "secretsmanager"), id="latency-above"),
        pytest.param(_latency([0.999]), None, id="latency-below"),
        # memory above 80 %: slots are not memory, a full LRU cache is normal; its own byte warning is
        pytest.param(_items(1000), None, id="full-lru-cache-is-normal"),
        pytest.param(_items(1, warning=True), ("MEMORY_HIGH", "tenantConfig"), id="cache-own-warning"),
        # memory above 80 %: all caches' bytes against the function's memory
        pytest.param(_bytes(80, 100), None, id="bytes-at-threshold"),
        pytest.param(_bytes(81, 100), ("MEMORY_HIGH", "caches"), id="bytes-above"),
        # timeout rate above 10 %
        pytest.param(_timeouts(1, 10), None, id="timeouts-at-threshold"),
        pytest.param(_timeouts(10, 100), None, id="timeouts-at-threshold-100"),
        pytest.param(_timeouts(11, 100), ("TIMEOUT_RATE_HIGH", "dynamodb"), id="timeouts-above"),
        pytest.param(_timeouts(0, 100), None, id="timeouts-none"),
    ],
)
def test_each_alert_flips_exactly_past_its_threshold(sources: dict[str, Any], expected: tuple[str, str] | None) -> None:
    snap = snapshot(**sources)

    assert alert_names(snap) == ([] if expected is None else [expected])


@pytest.mark.parametrize(
    ("env", "sources", "alerting"),
    [
        ({"BW_ALERT_BREAKER_OPEN_SECONDS": "60"}, _breaker("OPEN", 60.0), False),
        ({"BW_ALERT_BREAKER_OPEN_SECONDS": "60"}, _breaker("OPEN", 61.0), True),
        ({"BW_ALERT_CACHE_HIT_RATE_PERCENT": "29"}, _hit_rate(0.29), False),
        ({"BW_ALERT_CACHE_HIT_RATE_PERCENT": "29"}, _hit_rate(0.28), True),
        ({"BW_ALERT_LATENCY_MS": "200"}, _latency([0.2]), False),
        ({"BW_ALERT_LATENCY_MS": "200"}, _latency([0.201]), True),
        ({"BW_ALERT_MEMORY_PERCENT": "50"}, _bytes(500, 1000), False),
        ({"BW_ALERT_MEMORY_PERCENT": "50"}, _bytes(501, 1000), True),
        ({"BW_ALERT_TIMEOUT_RATE_PERCENT": "0"}, _timeouts(0, 10), False),
        ({"BW_ALERT_TIMEOUT_RATE_PERCENT": "0"}, _timeouts(1, 10), True),
    ],
)
def test_thresholds_come_from_the_environment(env: dict[str, str], sources: dict[str, Any], alerting: bool) -> None:
    snap = snapshot(thresholds=AlertThresholds.from_env(env), **sources)

    assert bool(snap.alerts) is alerting


def test_threshold_defaults_are_the_seed_numbers() -> None:
    assert AlertThresholds.from_env({}) == AlertThresholds(
        breaker_open_seconds=300, cache_hit_rate_percent=50, latency_ms=1000, memory_percent=80, timeout_rate_percent=10
    )
    assert AlertThresholds.from_env({"BW_ALERT_LATENCY_MS": " "}).latency_ms == 1000


@pytest.mark.parametrize("raw", ["abc", "-1", "nan", "inf"])
def test_bad_threshold_is_a_configuration_error(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="BW_ALERT_MEMORY_PERCENT"):
        AlertThresholds.from_env({"BW_ALERT_MEMORY_PERCENT": raw})


def test_alert_carries_value_and_threshold_in_the_threshold_unit() -> None:
    snap = snapshot(
        breakers=[Breaker(BreakerStats("cognito.verifyJwt", "OPEN", NOW - 420))],
        caches=[Cache(CacheStats("signingKeys", size=9, hit_rate=0.25, approx_bytes=900, memory_warning=True))],
        latency=tracker_with("s3", [2.0, 1.0], timeouts=1),
        memory_budget_bytes=1000,
    )

    by_name = {alert.name: alert for alert in snap.alerts if alert.subject != "caches"}
    assert (by_name["BREAKER_OPEN_TOO_LONG"].value, by_name["BREAKER_OPEN_TOO_LONG"].threshold) == (420.0, 300.0)
    assert (by_name["CACHE_HIT_RATE_LOW"].value, by_name["CACHE_HIT_RATE_LOW"].threshold) == (25.0, 50.0)
    assert (by_name["MEMORY_HIGH"].value, by_name["MEMORY_HIGH"].threshold) == (90.0, 80.0)
    assert (by_name["LATENCY_HIGH"].value, by_name["LATENCY_HIGH"].threshold) == (1500.0, 1000.0)
    assert (by_name["TIMEOUT_RATE_HIGH"].value, by_name["TIMEOUT_RATE_HIGH"].threshold) == (50.0, 10.0)


# --------------------------------------------------------------------------- overall status

CRITICALITY: dict[str, Criticality] = {
    "dynamodb": "critical",
    "cognito": "important",
    "ratelimits": "optional",
    "apigateway.postToConnection": "critical",
}


@pytest.mark.parametrize(
    ("sources", "status", "http"),
    [
        pytest.param({}, "healthy", 200, id="nothing-configured"),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("dynamodb.putItem")), Breaker(BreakerStats("cognito.verifyJwt"))]},
            "healthy",
            200,
            id="all-closed",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("cognito.verifyJwt", "OPEN", NOW - 10))]},
            "degraded",
            200,
            id="important-open",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("ratelimits.consume", "OPEN", NOW - 10))]},
            "degraded",
            200,
            id="optional-open",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("unlisted.call", "OPEN", NOW - 10))]},
            "degraded",
            200,
            id="unlisted-counts-as-important",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("dynamodb.putItem", "OPEN", NOW - 10))]},
            "unhealthy",
            503,
            id="critical-open",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("dynamodb.putItem", "HALF_OPEN", NOW - 10))]},
            "degraded",
            200,
            id="critical-half-open-is-recovering",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("apigateway.postToConnection", "OPEN", NOW - 10))]},
            "unhealthy",
            503,
            id="critical-by-full-breaker-name",
        ),
        pytest.param(
            {"breakers": [Breaker(BreakerStats("apigateway.deleteConnection", "OPEN", NOW - 10))]},
            "degraded",
            200,
            id="full-name-entry-does-not-cover-siblings",
        ),
        pytest.param({"degradations": [Degraded("ratelimits", NOW - 5)]}, "degraded", 200, id="optional-degraded"),
        pytest.param({"degradations": [Degraded("dynamodb", NOW - 5)]}, "unhealthy", 503, id="critical-degraded"),
        pytest.param(_hit_rate(0.1), "degraded", 200, id="alert-only"),
        pytest.param({"breakers": [BrokenBreaker()]}, "degraded", 200, id="breaker-stats-unreadable"),
    ],
)
def test_overall_status_and_http_code(sources: dict[str, Any], status: str, http: int) -> None:
    snap = snapshot(criticality=CRITICALITY, **sources)

    assert snap.status == status
    assert snap.http_status == http


class Level(StrEnum):
    """Stands in for degradation.py's Criticality enum: levels may arrive as StrEnum members."""

    CRITICAL = "critical"
    OPTIONAL = "optional"


@dataclass(frozen=True)
class DegradedDependency:
    dependency: str
    criticality: Level
    since: float
    reason: str
    failures: int


def test_a_degradations_own_criticality_wins_over_the_mapping() -> None:
    degraded = DegradedDependency("tokenBlacklist", Level.CRITICAL, NOW - 30, "ServiceTimeoutError", 3)

    snap = snapshot(degradations=[degraded], criticality={"tokenBlacklist": Level.OPTIONAL})

    assert (snap.status, snap.http_status) == ("unhealthy", 503)
    assert snap.to_dict()["degradations"][0] == {
        "dependency": "tokenBlacklist",
        "criticality": "critical",
        "since": "2023-11-14T22:12:50.000Z",
        "forSeconds": 30.0,
        "reason": "ServiceTimeoutError",
    }


def test_criticality_mapping_accepts_enum_members_and_rejects_unknown_levels() -> None:
    open_breaker = [Breaker(BreakerStats("rateLimits.consume", "OPEN", NOW))]

    assert snapshot(breakers=open_breaker, criticality={"rateLimits": Level.CRITICAL}).status == "unhealthy"
    with pytest.raises(ValueError, match="rateLimits"):
        snapshot(breakers=open_breaker, criticality={"rateLimits": "vital"})


def test_unreadable_breaker_is_shown_and_flagged() -> None:
    snap = snapshot(breakers=[BrokenBreaker(), Breaker(BreakerStats("cognito.verifyJwt"))], criticality=CRITICALITY)

    assert [(b.name, b.state) for b in snap.breakers] == [
        ("cognito.verifyJwt", "CLOSED"),
        ("dynamodb.getItem", "UNKNOWN"),
    ]
    assert alert_names(snap) == [("STATS_UNAVAILABLE", "dynamodb.getItem")]


# --------------------------------------------------------------------------- output


def test_to_dict_is_json_ready_with_iso_timestamps() -> None:
    snap = snapshot(
        clock=FakeClock(NOW),
        breakers=[
            Breaker(BreakerStats("cognito.verifyJwt", "OPEN", NOW - 600, failure_rate=0.8, calls=10, failures=8)),
            Breaker(BreakerStats("dynamodb.putItem", failure_rate=math.nan)),
        ],
        caches=[Cache(CacheStats("signingKeys", size=3, hit_rate=0.75, approx_bytes=2048))],
        timeouts={"dynamodb": (3, 5), "secretsmanager": (2, 3), "s3": (2, 3)},
        degradations=[Degraded("cognito", NOW - 120, reason="breaker open")],
        latency=tracker_with("dynamodb", [0.02, 0.04]),
        criticality=CRITICALITY,
        memory_budget_bytes=256 * 1024 * 1024,
    )

    body = snap.to_dict()
    decoded = json.loads(json.dumps(body, allow_nan=False))

    assert decoded == body
    assert body["status"] == "degraded"
    assert body["checkedAt"] == "2023-11-14T22:13:20.000Z"
    assert body["breakers"][0] == {
        "name": "cognito.verifyJwt",
        "dependency": "cognito",
        "criticality": "important",
        "state": "OPEN",
        "openedAt": "2023-11-14T22:03:20.000Z",
        "openSeconds": 600.0,
        "failureRate": 0.8,
        "calls": 10,
        "failures": 8,
    }
    assert body["breakers"][1]["failureRate"] is None  # NaN would not be JSON
    assert body["caches"] == [
        {
            "name": "signingKeys",
            "size": 3,
            "maxItems": 1000,
            "usagePercent": 0.3,
            "hitRate": 0.75,
            "approxBytes": 2048,
            "memoryWarning": False,
        }
    ]
    assert body["memory"]["cacheBytes"] == 2048
    assert body["timeouts"] == {
        "dynamodb": {"connectSeconds": 3.0, "readSeconds": 5.0},
        "s3": {"connectSeconds": 2.0, "readSeconds": 3.0},
        "secretsmanager": {"connectSeconds": 2.0, "readSeconds": 3.0},
    }
    assert body["degradations"] == [
        {
            "dependency": "cognito",
            "criticality": "important",
            "since": "2023-11-14T22:11:20.000Z",
            "forSeconds": 120.0,
            "reason": "breaker open",
        }
    ]
    assert body["latency"] == [{"dependency": "dynamodb", "samples": 2, "averageMs": 30.0, "timeoutRate": 0.0}]
    assert body["alerts"] == [
        {"name": "BREAKER_OPEN_TOO_LONG", "subject": "cognito.verifyJwt", "value": 600.0, "threshold": 300.0}
    ]


def test_unreadable_sources_still_serialize() -> None:
    class BrokenCache:
        def stats(self) -> CacheStatsLike:
            raise RuntimeError("bug")

    snap = snapshot(breakers=[BrokenBreaker()], caches=[BrokenCache()], memory_budget_bytes=1024)

    decoded = json.loads(json.dumps(snap.to_dict(), allow_nan=False))
    assert decoded["caches"][0]["name"] == "BrokenCache"
    assert decoded["breakers"][0]["openedAt"] is None
    assert [a["name"] for a in decoded["alerts"]] == ["STATS_UNAVAILABLE", "STATS_UNAVAILABLE"]


def test_checked_at_and_durations_use_the_injected_clock() -> None:
    clock = FakeClock(NOW)
    breakers = [Breaker(BreakerStats("cognito.verifyJwt", "OPEN", NOW))]

    first = snapshot(clock=clock, breakers=breakers)
    clock.now += 301
    later = snapshot(clock=clock, breakers=breakers)

    assert first.checked_at == NOW
    assert first.alerts == ()
    assert later.checked_at == NOW + 301
    assert alert_names(later) == [("BREAKER_OPEN_TOO_LONG", "cognito.verifyJwt")]


def test_latency_stats_can_be_passed_directly() -> None:
    stats = [LatencyStats("cognito", samples=4, average_ms=1200.0, timeouts=0)]

    assert alert_names(snapshot(latency=stats)) == [("LATENCY_HIGH", "cognito")]


def test_function_memory_bytes() -> None:
    assert function_memory_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256"}) == 256 * 1024 * 1024
    assert function_memory_bytes({}) is None
    assert function_memory_bytes({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}) is None


# --------------------------------------------------------------------------- latency tracker


def test_tracker_window_is_bounded_and_rolls() -> None:
    tracker = LatencyTracker(FakeClock(), window=3)
    for duration in (10.0, 0.1, 0.2, 0.3):
        tracker.record("s3", duration)

    (stats,) = tracker.stats()
    assert stats.samples == 3
    assert stats.average_ms == pytest.approx(200.0)


def test_tracker_keeps_at_most_max_dependencies_dropping_the_least_recent() -> None:
    tracker = LatencyTracker(FakeClock(), max_dependencies=2)
    tracker.record("a", 0.1)
    tracker.record("b", 0.1)
    tracker.record("a", 0.1)
    tracker.record("c", 0.1)

    assert [s.dependency for s in tracker.stats()] == ["a", "c"]


def test_tracker_measure_uses_the_clock_and_flags_timeouts() -> None:
    clock = FakeClock(100.0)
    tracker = LatencyTracker(clock)

    def call(seconds: float, error: Exception | None = None) -> None:
        clock.now += seconds
        if error is not None:
            raise error

    with tracker.measure("dynamodb"):
        call(0.25)
    with pytest.raises(ServiceTimeoutError), tracker.measure("dynamodb"):
        call(5.0, ServiceTimeoutError())
    with pytest.raises(KeyError), tracker.measure("dynamodb"):
        call(0.05, KeyError("not a timeout"))

    (stats,) = tracker.stats()
    assert (stats.samples, stats.timeouts) == (3, 1)
    assert stats.average_ms == pytest.approx((250 + 5000 + 50) / 3)
    assert stats.timeout_rate == pytest.approx(1 / 3)


def test_tracker_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="window"):
        LatencyTracker(FakeClock(), window=0)
