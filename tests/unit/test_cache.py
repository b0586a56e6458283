"""The resilience caches: TTL, LRU bound, stale-on-error, positive-only, stats. Fake clock, no sleeping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.cache import (
    CachePolicy,
    MemoryBudget,
    ResilientCache,
    always_cacheable,
    approx_size,
    blacklist_policy,
    cache_presets,
    is_dependency_failure,
    positive_only,
    signing_key_policy,
    tenant_config_policy,
    tenant_validation_policy,
)
from resilience.errors import (
    CircuitOpenError,
    ConfigurationError,
    ServiceTimeoutError,
    TenantRejectedError,
    TokenRevokedError,
)

BIG_BUDGET = MemoryBudget(budget_bytes=1 << 40)


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_cache(
    clock: FakeClock,
    *,
    ttl: float = 60,
    max_items: int = 100,
    max_stale: float = 0,
    cacheable: Callable[[object], bool] = always_cacheable,
    memory: MemoryBudget = BIG_BUDGET,
) -> ResilientCache[str, object]:
    policy = CachePolicy(
        name="test", ttl_seconds=ttl, max_items=max_items, max_stale_seconds=max_stale, cacheable=cacheable
    )
    return ResilientCache(policy, clock=clock, memory=memory)


class Loader:
    """Counts calls; returns ``value`` or raises ``error`` (both may be changed between calls)."""

    def __init__(self, value: object = "v1") -> None:
        self.value = value
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.value


# -- TTL ----------------------------------------------------------------------------


def test_value_is_fresh_until_its_ttl_then_gone():
    clock = FakeClock()
    cache = make_cache(clock, ttl=60)
    cache.set("k", "v")
    clock.advance(59.9)
    assert cache.get("k") == "v"
    assert "k" in cache
    clock.advance(0.1)
    assert cache.get("k") is None
    assert cache.get("k", "default") == "default"
    assert "k" not in cache


def test_get_or_load_loads_once_per_ttl():
    clock = FakeClock()
    cache = make_cache(clock, ttl=300)
    loader = Loader("key-1")
    assert cache.get_or_load("k", loader) == "key-1"
    clock.advance(299)
    assert cache.get_or_load("k", loader) == "key-1"
    assert loader.calls == 1
    loader.value = "key-2"
    clock.advance(1)
    result = cache.fetch("k", loader)
    assert (result.value, result.source, result.stale) == ("key-2", "load", False)
    assert loader.calls == 2


def test_zero_ttl_caches_nothing():
    clock = FakeClock()
    cache = make_cache(clock, ttl=0)
    loader = Loader()
    cache.get_or_load("k", loader)
    cache.get_or_load("k", loader)
    assert loader.calls == 2
    assert len(cache) == 0


# -- LRU bound --------------------------------------------------------------------------


def test_least_recently_used_key_is_evicted_at_max_items():
    clock = FakeClock()
    cache = make_cache(clock, max_items=3)
    for key in ("a", "b", "c"):
        cache.set(key, key.upper())
    assert cache.get("a") == "A"  # "b" is now the least recently used
    cache.set("d", "D")
    assert cache.get("b") is None
    assert [cache.get(key) for key in ("a", "c", "d")] == ["A", "C", "D"]
    stats = cache.stats()
    assert (stats.size, stats.max_items, stats.evictions) == (3, 3, 1)


def test_expiry_frees_room_without_counting_an_eviction():
    clock = FakeClock()
    cache = make_cache(clock, ttl=10, max_items=2)
    cache.set("a", 1)
    cache.set("b", 2)
    clock.advance(10)
    cache.set("c", 3)
    cache.set("d", 4)
    assert cache.stats().evictions == 0
    assert cache.stats().size == 2


def test_stats_do_not_disturb_lru_order():
    clock = FakeClock()
    cache = make_cache(clock, max_items=2)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")
    cache.stats()
    assert "b" in cache  # neither stats() nor `in` marks "b" as used
    cache.set("c", 3)
    assert cache.get("b") is None
    assert cache.get("a") == 1


# -- stale-on-error -----------------------------------------------------------------------


def test_stale_value_is_served_while_the_loader_fails_up_to_its_bound():
    clock = FakeClock()
    cache = make_cache(clock, ttl=300, max_stale=120)
    loader = Loader("good")
    cache.get_or_load("k", loader)
    loader.error = ServiceTimeoutError("secrets manager timed out")

    clock.advance(300)  # expired: a plain get is a miss, a failed load serves stale
    assert cache.get("k") is None
    result = cache.fetch("k", loader)
    assert (result.value, result.stale, result.stale_for_seconds) == ("good", True, 0)

    clock.advance(119)
    assert cache.get_or_load("k", loader) == "good"
    assert loader.calls == 3  # every lookup during the outage still tries the dependency

    clock.advance(1)  # 120 s past expiry: the bound
    with pytest.raises(ServiceTimeoutError) as raised:
        cache.get_or_load("k", loader)
    assert raised.value is loader.error  # unchanged, not wrapped

    stats = cache.stats()
    assert (stats.stale_served, stats.load_errors, stats.loads, stats.hits) == (2, 3, 4, 0)


def test_recovery_replaces_the_stale_value():
    clock = FakeClock()
    cache = make_cache(clock, ttl=10, max_stale=100)
    loader = Loader("old")
    cache.get_or_load("k", loader)
    clock.advance(20)
    loader.error = CircuitOpenError()
    assert cache.fetch("k", loader).stale
    loader.error, loader.value = None, "new"
    assert cache.fetch("k", loader).source == "load"
    assert cache.fetch("k", loader).source == "hit"
    assert cache.get("k") == "new"


def test_without_a_last_good_value_the_loader_error_propagates():
    clock = FakeClock()
    cache = make_cache(clock, max_stale=600)
    loader = Loader()
    loader.error = ServiceTimeoutError()
    with pytest.raises(ServiceTimeoutError):
        cache.get_or_load("k", loader)
    assert cache.stats().load_errors == 1


def test_stale_on_error_off_by_default():
    clock = FakeClock()
    cache = make_cache(clock, ttl=10)
    loader = Loader()
    cache.get_or_load("k", loader)
    clock.advance(10)
    loader.error = ServiceTimeoutError()
    with pytest.raises(ServiceTimeoutError):
        cache.get_or_load("k", loader)


def test_a_definitive_answer_is_never_masked_by_a_stale_value():
    clock = FakeClock()
    cache = make_cache(clock, ttl=10, max_stale=600)
    loader = Loader({"tenant": "t1"})
    cache.get_or_load("t1", loader)
    clock.advance(11)
    loader.error = TenantRejectedError()
    with pytest.raises(TenantRejectedError):
        cache.get_or_load("t1", loader)
    assert cache.stats().stale_served == 0


def test_dependency_failure_classification():
    assert is_dependency_failure(ServiceTimeoutError())
    assert is_dependency_failure(CircuitOpenError())
    assert is_dependency_failure(ConnectionError("reset"))
    assert not is_dependency_failure(TenantRejectedError())
    assert not is_dependency_failure(TokenRevokedError())


def test_interrupts_are_not_caught():
    class Interrupt(BaseException):
        pass

    clock = FakeClock()
    cache = make_cache(clock, ttl=10, max_stale=600)
    cache.set("k", "v")
    clock.advance(11)

    def loader() -> object:
        raise Interrupt

    with pytest.raises(Interrupt):
        cache.get_or_load("k", loader)


# -- positive-only ----------------------------------------------------------------------


@pytest.mark.parametrize("negative", [False, None])
def test_positive_only_never_caches_a_negative_answer(negative: object):
    clock = FakeClock()
    cache = make_cache(clock, cacheable=positive_only)
    loader = Loader(negative)
    for _ in range(3):
        assert cache.get_or_load("tenant", loader) is negative
    assert loader.calls == 3
    assert cache.set("tenant", negative) is False
    assert len(cache) == 0
    loader.value = True
    cache.get_or_load("tenant", loader)
    cache.get_or_load("tenant", loader)
    assert loader.calls == 4


def test_a_negative_answer_withdraws_the_remembered_positive_one():
    clock = FakeClock()
    cache = make_cache(clock, ttl=120, max_stale=600, cacheable=positive_only)
    loader = Loader(True)
    cache.get_or_load("tenant", loader)
    clock.advance(120)
    loader.value = False  # the tenant was deactivated
    assert cache.get_or_load("tenant", loader) is False
    loader.error = ServiceTimeoutError()  # then the dependency goes down
    with pytest.raises(ServiceTimeoutError):
        cache.get_or_load("tenant", loader)


def test_custom_cacheable_predicate():
    clock = FakeClock()
    cache = make_cache(clock, cacheable=lambda value: value != {})
    assert cache.set("empty", {}) is False
    assert cache.set("full", {"a": 1}) is True
    assert cache.get("full") == {"a": 1}


# -- per-key TTL ----------------------------------------------------------------------------


def test_per_key_ttl_overrides_the_policy():
    clock = FakeClock()
    cache = make_cache(clock, ttl=300)
    cache.set("revoked-jti", True, ttl=3600)  # until the token's own expiry
    cache.set("short", "x", ttl=5)
    cache.set("not-revoked", False)
    clock.advance(5)
    assert cache.get("short") is None
    clock.advance(295)
    assert cache.get("not-revoked") is None
    assert cache.get("revoked-jti") is True
    clock.advance(3600 - 300)
    assert cache.get("revoked-jti") is None


def test_negative_per_key_ttl_is_already_expired():
    clock = FakeClock()
    cache = make_cache(clock)
    assert cache.set("expired-token", True, ttl=-5) is True
    assert cache.get("expired-token") is None


def test_get_or_load_takes_a_per_key_ttl():
    clock = FakeClock()
    cache = make_cache(clock, ttl=300)
    loader = Loader()
    cache.get_or_load("k", loader, ttl=10)
    clock.advance(10)
    cache.get_or_load("k", loader, ttl=10)
    assert loader.calls == 2


def test_invalidate_and_clear():
    clock = FakeClock()
    cache = make_cache(clock, ttl=10, max_stale=100)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.invalidate("a") is True
    assert cache.invalidate("a") is False
    clock.advance(20)
    cache.clear()
    loader = Loader()
    loader.error = ServiceTimeoutError()
    with pytest.raises(ServiceTimeoutError):  # the stale value went with clear()
        cache.get_or_load("b", loader)


# -- stats --------------------------------------------------------------------------------


def test_hit_rate():
    clock = FakeClock()
    cache = make_cache(clock)
    assert cache.stats().hit_rate is None
    assert cache.stats().lookups == 0
    cache.set("k", "v")
    for _ in range(3):
        cache.get("k")
    cache.get("missing")
    stats = cache.stats()
    assert (stats.hits, stats.misses, stats.hit_rate, stats.lookups) == (3, 1, 0.75, 4)
    assert stats.name == "test"


def test_memory_warning_flips_when_the_budget_is_small():
    clock = FakeClock()
    budget = MemoryBudget(budget_bytes=100_000, alert_percent=80)
    cache = make_cache(clock, memory=budget)
    cache.set("small", "x")
    assert not cache.stats().memory_warning
    for index in range(20):
        cache.set(f"config-{index}", {"blob": "x" * 4000, "index": index})
    stats = cache.stats()
    assert stats.approx_bytes > 80_000
    assert stats.memory_warning


def test_memory_budget_from_env():
    budget = MemoryBudget.from_env({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "BW_ALERT_MEMORY_PERCENT": "50"})
    assert budget.budget_bytes == 256 * 1024 * 1024
    assert budget.threshold_bytes == 128 * 1024 * 1024
    default = MemoryBudget.from_env({})
    assert (default.budget_bytes, default.alert_percent) == (128 * 1024 * 1024, 80)


def test_approx_size_sees_inside_containers_at_bounded_cost():
    nested = {"key": "x" * 10_000}
    assert approx_size(nested) > 10_000
    many = list(range(100_000))
    # Sampled and extrapolated: close to the real total, not a shallow getsizeof.
    assert approx_size(many) >= 100_000 * 28


# -- presets ----------------------------------------------------------------------------------


def test_presets_match_seed_000_defaults():
    presets = cache_presets({})
    assert [(p.name, p.ttl_seconds, p.max_items) for p in presets.policies()] == [
        ("signing_key", 300, 1000),
        ("tenant_config", 600, 1000),
        ("tenant_validation", 120, 1000),
        ("blacklist", 300, 1000),
    ]
    assert presets.signing_key.max_stale_seconds > 0
    assert presets.tenant_config.max_stale_seconds > 0
    assert presets.tenant_validation.max_stale_seconds == 0
    assert presets.blacklist.max_stale_seconds == 0
    assert presets.tenant_validation.cacheable is positive_only
    assert presets.blacklist.cacheable(False)


def test_presets_read_the_template_environment():
    env = {
        "BW_SIGNING_KEY_CACHE_TTL": "60",
        "BW_TENANT_CONFIG_CACHE_TTL": "61",
        "BW_TENANT_VALIDATION_CACHE_TTL": "62",
        "BW_BLACKLIST_CACHE_TTL": "63",
        "BW_CACHE_MAX_ITEMS": "50",
    }
    assert signing_key_policy(env).ttl_seconds == 60
    assert tenant_config_policy(env).ttl_seconds == 61
    assert tenant_validation_policy(env).ttl_seconds == 62
    assert blacklist_policy(env).ttl_seconds == 63
    assert {p.max_items for p in cache_presets(env).policies()} == {50}


def test_presets_default_to_os_environ(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BW_BLACKLIST_CACHE_TTL", "42")
    assert blacklist_policy().ttl_seconds == 42


@pytest.mark.parametrize(
    "env",
    [{"BW_CACHE_MAX_ITEMS": "lots"}, {"BW_CACHE_MAX_ITEMS": "0"}, {"BW_BLACKLIST_CACHE_TTL": "-1"}],
)
def test_bad_configuration_is_reported(env: dict[str, str]):
    with pytest.raises(ConfigurationError):
        cache_presets(env)


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError, match="max_items"):
        CachePolicy(name="x", ttl_seconds=1, max_items=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        CachePolicy(name="x", ttl_seconds=-1)


# -- concurrency -----------------------------------------------------------------------------------


def test_threads_hammering_get_set_keep_counters_consistent():
    clock = FakeClock()
    cache = make_cache(clock, max_items=50)
    threads_n, rounds = 8, 2_000
    barrier = threading.Barrier(threads_n)

    def worker(seed: int) -> None:
        barrier.wait()
        for index in range(rounds):
            key = f"k{(seed * 7 + index) % 80}"
            if index % 3 == 0:
                cache.set(key, index)
            elif index % 3 == 1:
                cache.get(key)
            else:
                cache.get_or_load(key, lambda: seed)

    with ThreadPoolExecutor(max_workers=threads_n) as pool:
        for future in [pool.submit(worker, seed) for seed in range(threads_n)]:
            future.result()  # re-raises a worker's exception here

    stats = cache.stats()
    lookups_per_thread = sum(1 for index in range(rounds) if index % 3 != 0)
    assert stats.hits + stats.misses == threads_n * lookups_per_thread
    loads_per_thread = sum(1 for index in range(rounds) if index % 3 == 2)
    assert stats.loads <= threads_n * loads_per_thread
    assert 0 < stats.loads <= stats.misses  # every load follows a miss of get_or_load
    assert stats.size <= 50
    assert stats.load_errors == 0


# -- property ------------------------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(0, 9), st.integers(), st.one_of(st.none(), st.floats(-5, 50))),
        st.tuples(st.just("get"), st.integers(0, 9)),
        st.tuples(st.just("load"), st.integers(0, 9), st.integers(), st.booleans()),
        st.tuples(st.just("advance"), st.floats(0, 40)),
        st.tuples(st.just("invalidate"), st.integers(0, 9)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, max_items=st.integers(1, 5), max_stale=st.sampled_from([0.0, 15.0]))
def test_size_is_bounded_and_lookups_never_return_an_expired_or_overwritten_value(
    ops: list[tuple[object, ...]], max_items: int, max_stale: float
):
    clock = FakeClock()
    cache = make_cache(clock, ttl=20, max_items=max_items, max_stale=max_stale)
    # The model ignores eviction: the cache may forget more, never answer differently.
    model: dict[int, tuple[object, float]] = {}

    for op in ops:
        match op:
            case ("set", int(key), value, (None | float()) as ttl):
                lifetime = 20.0 if ttl is None else max(0.0, ttl)
                cache.set(str(key), value, ttl=ttl)
                model[key] = (value, clock.now + lifetime)
            case ("get", int(key)):
                found = cache.get(str(key), "<miss>")
                if found != "<miss>":
                    value, fresh_until = model[key]
                    assert found == value
                    assert clock.now < fresh_until
            case ("load", int(key), value, fails):
                loader = Loader(value)
                if fails:
                    loader.error = ServiceTimeoutError()
                try:
                    result = cache.fetch(str(key), loader)
                except ServiceTimeoutError:
                    continue
                if result.source == "load":
                    model[key] = (value, clock.now + 20)
                else:
                    expected, fresh_until = model[key]
                    assert result.value == expected
                    bound = fresh_until if result.source == "hit" else fresh_until + max_stale
                    assert clock.now < bound
            case ("advance", float(seconds)):
                clock.advance(seconds)
            case ("invalidate", int(key)):
                cache.invalidate(str(key))
                model.pop(key, None)
            case _:
                raise AssertionError(f"unmatched op {op!r}")
        assert len(cache) <= max_items
        assert cache.stats().size <= max_items
