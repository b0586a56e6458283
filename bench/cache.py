"""Warm cache lookup latency (seed 000: blacklist checks < 10 ms; our target p99 < 50 µs).

Fills a ResilientCache, then times N hits one by one with ``perf_counter_ns``.
Reference columns, measured in the same run on the same keys: a plain ``dict``
lookup and a bare ``cachetools.TTLCache`` lookup, so the figures can be read
against the machine's noise and the cost of the lock, clock and counters.
Prints, asserts nothing (machines are shared and noisy).
Last line: ``warm_p50_us=… warm_p99_us=…`` for scripts.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cachetools

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "layers" / "resilience"))

from resilience.cache import CachePolicy, MemoryBudget, ResilientCache  # noqa: E402

ITEMS = 1000
LOOKUPS = 200_000
WARMUP = 5_000


def percentile(sorted_ns: list[int], fraction: float) -> float:
    index = min(len(sorted_ns) - 1, round(fraction * (len(sorted_ns) - 1)))
    return sorted_ns[index] / 1000.0


def time_lookups(lookup: Callable[[str], object], keys: list[str]) -> list[int]:
    """One timed call per key. The timer's own cost is included, equally in every column."""
    clock = time.perf_counter_ns
    for key in keys[:WARMUP]:
        lookup(key)
    samples = [0] * len(keys)
    gc.disable()  # a collection landing in one sample says nothing about the cache
    try:
        for index, key in enumerate(keys):
            started = clock()
            lookup(key)
            samples[index] = clock() - started
    finally:
        gc.enable()
    samples.sort()
    return samples


def main() -> None:
    keys = [f"tenant-{index:04d}" for index in range(ITEMS)]
    rng = random.Random(0)
    order = [rng.choice(keys) for _ in range(LOOKUPS)]
    value = {"valid": True, "plan": "pro"}

    cache: ResilientCache[str, object] = ResilientCache(
        CachePolicy(name="bench", ttl_seconds=3600, max_items=ITEMS), memory=MemoryBudget(budget_bytes=1 << 30)
    )
    plain: dict[str, object] = {}
    bare: cachetools.TTLCache[str, object] = cachetools.TTLCache(maxsize=ITEMS, ttl=3600)
    for key in keys:
        cache.set(key, value)
        plain[key] = value
        bare[key] = value

    columns = {
        "ResilientCache.get": time_lookups(cache.get, order),
        "dict.get": time_lookups(plain.get, order),
        "TTLCache.get": time_lookups(bare.get, order),
    }
    stats = cache.stats()
    if stats.size != ITEMS or stats.misses:
        print(f"warning: the cache did not stay warm (size={stats.size}, misses={stats.misses})")

    ours = columns["ResilientCache.get"]
    print(f"{LOOKUPS} warm hits over {ITEMS} keys (µs per lookup, timer overhead included)")
    print(f"{'':22} {'p50':>8} {'p99':>8} {'max':>9} {'ours/this p99':>14}")
    for name, samples in columns.items():
        p50, p99, worst = percentile(samples, 0.50), percentile(samples, 0.99), samples[-1] / 1000.0
        ratio = percentile(ours, 0.99) / p99 if p99 else float("inf")
        print(f"{name:22} {p50:8.3f} {p99:8.3f} {worst:9.1f} {ratio:13.1f}x")
    print(f"hit_rate={stats.hit_rate} approx_bytes={stats.approx_bytes} target: p99 < 50 µs")
    print(f"warm_p50_us={percentile(ours, 0.50):.3f} warm_p99_us={percentile(ours, 0.99):.3f}")


if __name__ == "__main__":
    main()
