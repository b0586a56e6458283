"""Bounded TTL+LRU caches with stale-on-error and positive-only modes (seed 000).

Storage is ``cachetools.TLRUCache`` (a time-aware LRU: every entry has its own
expiry, and when the cache is full the least recently used live entry goes).
On top of it:

* **stale-on-error** -- an entry is kept ``max_stale_seconds`` beyond its TTL.
  During that window a plain lookup treats it as a miss, but if the loader
  fails the remembered value is served, marked stale and counted. Staleness is
  measured from the entry's expiry, as ``stale-if-error`` does in RFC 5861, so
  a value is at most ``ttl + max_stale_seconds`` old when served. Remembered
  entries live in the same bounded structure as fresh ones (they hold
  ``max_items`` slots between them), so the memory bound holds in every mode.
* **positive-only** -- what may be stored is a policy predicate. A value it
  rejects is never stored, and it also withdraws whatever was remembered for
  the key: a tenant that has just been found invalid must not be served from a
  stale positive entry during the next outage.
* Only loader errors that mean "could not find out" are answered from stale
  (``CachePolicy.stale_on``): by default a ``BreakwaterError`` with a 4xx status
  (tenant rejected, token revoked, ...) is a definitive answer and propagates
  even when a stale value exists. A loader that gets a definitive *negative*
  answer should return it rather than raise, so positive-only can drop the key.

Thread safety: one lock guards the cachetools structure and the counters; the
loader runs outside the lock. Concurrent misses of the same key may therefore
both call the loader and the later result wins. That is deliberate: loaders are
idempotent reads behind a breaker, a Lambda container serves one request at a
time, and single-flight would make a slow loader block every reader of the key.

Every clock read goes through the injected ``clock`` (default
``time.monotonic`` looked up at call time), so tests and the offline runtime's
virtual clock drive expiry without sleeping.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

import cachetools

from resilience.errors import BreakwaterError
from resilience.settings import env_number

__all__ = [
    "DEFAULT_ALERT_MEMORY_PERCENT",
    "DEFAULT_LAMBDA_MEMORY_MB",
    "DEFAULT_MAX_ITEMS",
    "CachePolicy",
    "CachePresets",
    "CacheResult",
    "CacheStats",
    "MemoryBudget",
    "ResilientCache",
    "always_cacheable",
    "approx_size",
    "blacklist_policy",
    "cache_presets",
    "is_dependency_failure",
    "positive_only",
    "signing_key_policy",
    "tenant_config_policy",
    "tenant_validation_policy",
]

DEFAULT_MAX_ITEMS = 1000
DEFAULT_LAMBDA_MEMORY_MB = 128
DEFAULT_ALERT_MEMORY_PERCENT = 80.0

# Per-entry bookkeeping that getsizeof of key and value does not see: the entry
# object, the TLRUCache heap item and the slots in cachetools' dicts. Measured
# roughly on CPython 3.13; it only has to keep small entries from counting as free.
_ENTRY_OVERHEAD_BYTES = 300
# approx_size walks at most this deep and samples this many children per
# container, so one estimate costs at most ~4k getsizeof calls whatever the value.
_SIZE_MAX_DEPTH = 3
_SIZE_MAX_CHILDREN = 16


def _monotonic() -> float:
    # Looked up at call time so a patched time.monotonic (tests, offline runtime) is honoured.
    return time.monotonic()


# -- predicates -------------------------------------------------------------------


def always_cacheable(value: object) -> bool:
    """Every answer may be cached."""
    return True


def positive_only(value: object) -> bool:
    """Only a positive answer may be cached: ``None`` and ``False`` never are (seed 000, tenant validation)."""
    return value is not None and value is not False


def is_dependency_failure(exc: Exception) -> bool:
    """Whether a loader error means "could not find out" (so a stale value may stand in).

    A ``BreakwaterError`` with a 4xx status is the dependency's definitive answer
    (rejected, revoked, invalid) and must never be masked by an older value.
    Everything else -- timeouts, throttling, an open breaker, SDK errors -- is not.
    """
    return not (isinstance(exc, BreakwaterError) and exc.status < 500)


# -- policy, stats, results -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one cache behaves. ``max_stale_seconds=0`` turns stale-on-error off."""

    name: str
    ttl_seconds: float
    max_items: int = DEFAULT_MAX_ITEMS
    max_stale_seconds: float = 0.0
    #: What may be stored; ``positive_only`` never stores a negative security answer.
    cacheable: Callable[[Any], bool] = always_cacheable
    #: Which loader errors a stale value may answer (see ``is_dependency_failure``).
    stale_on: Callable[[Exception], bool] = is_dependency_failure

    def __post_init__(self) -> None:
        if self.ttl_seconds < 0:
            raise ValueError(f"cache {self.name!r}: ttl_seconds must be >= 0, got {self.ttl_seconds}")
        if self.max_items < 1:
            raise ValueError(f"cache {self.name!r}: max_items must be >= 1, got {self.max_items}")
        if self.max_stale_seconds < 0:
            raise ValueError(f"cache {self.name!r}: max_stale_seconds must be >= 0, got {self.max_stale_seconds}")


@dataclass(frozen=True, slots=True)
class MemoryBudget:
    """The memory a cache is compared against for the health alert (seed 000: warn at 80 %)."""

    budget_bytes: int
    alert_percent: float = DEFAULT_ALERT_MEMORY_PERCENT

    @property
    def threshold_bytes(self) -> float:
        return self.budget_bytes * self.alert_percent / 100.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MemoryBudget:
        """The Lambda's memory (``AWS_LAMBDA_FUNCTION_MEMORY_SIZE``, MB, 128 if unset), ``BW_ALERT_MEMORY_PERCENT``."""
        env = _environ(env)
        memory_mb = env_number(env, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", DEFAULT_LAMBDA_MEMORY_MB, minimum=1)
        percent = env_number(env, "BW_ALERT_MEMORY_PERCENT", DEFAULT_ALERT_MEMORY_PERCENT, minimum=0)
        return cls(budget_bytes=int(memory_mb * 1024 * 1024), alert_percent=percent)


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A snapshot for the health endpoint.

    ``size`` counts every entry held, including expired ones still remembered
    for stale-on-error (they occupy memory and ``max_items`` slots). Stale
    serves count as misses; ``hit_rate`` (0..1) is None before the first lookup,
    so an idle cache does not raise a low-hit-rate alert. ``approx_bytes`` is an
    estimate made when each entry is stored (see ``approx_size``).
    """

    name: str
    size: int
    max_items: int
    hits: int
    misses: int
    hit_rate: float | None
    stale_served: int
    load_errors: int
    evictions: int
    approx_bytes: int
    memory_warning: bool
    loads: int = 0

    @property
    def lookups(self) -> int:
        return self.hits + self.misses


@dataclass(frozen=True, slots=True)
class CacheResult[V]:
    """What ``fetch`` found: the value and where it came from."""

    value: V
    source: Literal["hit", "load", "stale"]
    #: For a stale value: how long past its expiry it was served.
    stale_for_seconds: float = 0.0

    @property
    def stale(self) -> bool:
        return self.source == "stale"


# -- the cache --------------------------------------------------------------------


@dataclass(slots=True)
class _Entry[V]:
    value: V
    fresh_until: float
    keep_until: float
    nbytes: int


def _keep_until(_key: object, entry: _Entry[Any], _now: float) -> float:
    return entry.keep_until


class _Store[K: Hashable, V](cachetools.TLRUCache[K, _Entry[V], float]):
    """TLRUCache that counts LRU evictions (expiry is not an eviction)."""

    def __init__(self, maxsize: int, timer: Callable[[], float]) -> None:
        super().__init__(maxsize, ttu=_keep_until, timer=timer)
        self.evictions = 0

    def popitem(self) -> tuple[K, _Entry[V]]:
        # cachetools calls popitem only to make room, after dropping expired entries.
        item = super().popitem()
        self.evictions += 1
        return item


class ResilientCache[K: Hashable, V]:
    """A bounded TTL+LRU cache with per-key TTL, stale-on-error and a cacheable predicate."""

    def __init__(
        self,
        policy: CachePolicy,
        *,
        clock: Callable[[], float] | None = None,
        memory: MemoryBudget | None = None,
    ) -> None:
        self._policy = policy
        self._clock: Callable[[], float] = clock if clock is not None else _monotonic
        self._memory = memory if memory is not None else MemoryBudget.from_env()
        self._lock = threading.Lock()
        self._data: _Store[K, V] = _Store(policy.max_items, self._clock)
        self._hits = 0
        self._misses = 0
        self._stale_served = 0
        self._loads = 0
        self._load_errors = 0

    @property
    def name(self) -> str:
        return self._policy.name

    @property
    def policy(self) -> CachePolicy:
        return self._policy

    # -- lookups ----------------------------------------------------------------

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get[D](self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The fresh value for ``key``, else ``default``. Never serves stale (that needs a failed load)."""
        with self._lock:
            try:
                entry = self._data[key]
            except KeyError:
                self._misses += 1
                return default
            if self._clock() < entry.fresh_until:
                self._hits += 1
                return entry.value
            self._misses += 1
            return default

    def __contains__(self, key: K) -> bool:
        """Whether a fresh value is held (neither counted as a lookup nor moved in LRU order)."""
        with self._lock:
            try:
                # cachetools' raw read: TLRUCache.__getitem__ would mark the key as recently used.
                entry = cachetools.Cache.__getitem__(self._data, key)
            except KeyError:
                return False
            return self._clock() < entry.fresh_until

    def get_or_load(self, key: K, loader: Callable[[], V], *, ttl: float | None = None) -> V:
        """The cached value, or ``loader()``'s, or a stale one if the loader fails (see ``fetch``)."""
        return self.fetch(key, loader, ttl=ttl).value

    def fetch(self, key: K, loader: Callable[[], V], *, ttl: float | None = None) -> CacheResult[V]:
        """Like ``get_or_load`` but says whether the value was a hit, a fresh load or stale.

        On a miss ``loader()`` runs outside the lock. If it raises and the policy
        allows stale-on-error for that error, the last good value is served while it
        is less than ``max_stale_seconds`` past its expiry; otherwise the loader's
        exception propagates unchanged. A value the policy's ``cacheable`` rejects is
        returned but not stored, and the key's remembered value is dropped.
        """
        started = self._clock()
        with self._lock:
            try:
                entry: _Entry[V] | None = self._data[key]
            except KeyError:
                entry = None
            if entry is not None and started < entry.fresh_until:
                self._hits += 1
                return CacheResult(entry.value, "hit")
            self._misses += 1
            self._loads += 1
        try:
            value = loader()
        except Exception as exc:
            stale = self._stale_after_error(key, exc)
            if stale is None:
                raise
            return stale
        # Stamped with the time the load started: the answer may be that old already,
        # and for security caches (revocations) erring towards a shorter life is right.
        self._store(key, value, ttl, now=started)
        return CacheResult(value, "load")

    def _stale_after_error(self, key: K, exc: Exception) -> CacheResult[V] | None:
        now = self._clock()
        with self._lock:
            self._load_errors += 1
            if self._policy.max_stale_seconds <= 0 or not self._policy.stale_on(exc):
                return None
            try:
                entry = self._data[key]
            except KeyError:
                return None
            if now < entry.fresh_until:
                # Another thread refreshed the key while our load was failing.
                return CacheResult(entry.value, "hit")
            stale_for = now - entry.fresh_until
            if stale_for >= self._policy.max_stale_seconds:
                return None
            self._stale_served += 1
            return CacheResult(entry.value, "stale", stale_for)

    # -- writes -----------------------------------------------------------------

    def set(self, key: K, value: V, *, ttl: float | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds (default: the policy's TTL); False if the policy rejects it.

        A per-key ``ttl`` may exceed the policy's (a revoked token stays cached until
        its own expiry); a negative one is treated as 0 (already expired), so passing
        ``exp - now`` for a token that has just expired is harmless.
        """
        return self._store(key, value, ttl, now=self._clock())

    def _store(self, key: K, value: V, ttl: float | None, *, now: float) -> bool:
        if not self._policy.cacheable(value):
            self.invalidate(key)
            return False
        lifetime = self._policy.ttl_seconds if ttl is None else max(0.0, ttl)
        fresh_until = now + lifetime
        # Sized outside the lock: it is the only non-trivial cost of a write.
        nbytes = approx_size(key) + approx_size(value) + _ENTRY_OVERHEAD_BYTES
        entry = _Entry(value, fresh_until, fresh_until + self._policy.max_stale_seconds, nbytes)
        with self._lock:
            # TLRUCache drops (rather than stores) an entry whose keep_until has passed.
            self._data[key] = entry
        return True

    def invalidate(self, key: K) -> bool:
        """Forget ``key`` entirely, including its stale-on-error value. True if something was held."""
        with self._lock:
            try:
                del self._data[key]
            except KeyError:
                return False
            return True

    def clear(self) -> None:
        """Forget every entry; counters are kept (they describe the container's life)."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    # -- observability ------------------------------------------------------------

    def stats(self) -> CacheStats:
        """Counters and size. Cost is O(entries held) additions, bounded by ``max_items``."""
        with self._lock:
            self._data.expire()
            size = len(self._data)
            # Raw reads: going through TLRUCache.__getitem__ (as .values() does) would
            # reorder every entry and make the next eviction pick the wrong key.
            approx_bytes = sum(cachetools.Cache.__getitem__(self._data, key).nbytes for key in self._data)
            lookups = self._hits + self._misses
            return CacheStats(
                name=self._policy.name,
                size=size,
                max_items=self._policy.max_items,
                hits=self._hits,
                misses=self._misses,
                hit_rate=self._hits / lookups if lookups else None,
                stale_served=self._stale_served,
                load_errors=self._load_errors,
                evictions=self._data.evictions,
                approx_bytes=approx_bytes,
                memory_warning=approx_bytes > self._memory.threshold_bytes,
                loads=self._loads,
            )


# -- memory estimate --------------------------------------------------------------


def approx_size(obj: object, _depth: int = 0) -> int:
    """A bounded-cost estimate of the bytes ``obj`` holds.

    ``sys.getsizeof`` alone sees only a container's own array, so a config dict
    would look almost free. This walks containers (mappings, sequences, sets and
    instance ``__dict__``) up to ``_SIZE_MAX_DEPTH`` levels, sizing at most
    ``_SIZE_MAX_CHILDREN`` children per container and extrapolating from their
    mean. Shared objects are counted each time they are reached, which errs high:
    the right direction for a memory warning. It runs once per stored entry.
    """
    size = sys.getsizeof(obj)
    if _depth >= _SIZE_MAX_DEPTH or isinstance(obj, str | bytes | bytearray | int | float | complex | bool):
        return size
    children: list[object]
    count: int
    if isinstance(obj, Mapping):
        count = len(obj)
        children = []
        for index, (key, value) in enumerate(obj.items()):
            if index >= _SIZE_MAX_CHILDREN:
                break
            children.extend((key, value))
    elif isinstance(obj, list | tuple | set | frozenset):
        count = len(obj)
        children = []
        for index, item in enumerate(obj):
            if index >= _SIZE_MAX_CHILDREN:
                break
            children.append(item)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        return size + approx_size(vars(obj), _depth + 1)
    else:
        return size
    if not children:
        return size
    sampled = sum(approx_size(child, _depth + 1) for child in children)
    visited = len(children) // 2 if isinstance(obj, Mapping) else len(children)
    return size + sampled * count // visited


# -- presets (seed 000) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachePresets:
    """The four caches of seed 000, as configured by template.yaml's Globals."""

    signing_key: CachePolicy
    tenant_config: CachePolicy
    tenant_validation: CachePolicy
    blacklist: CachePolicy

    def policies(self) -> tuple[CachePolicy, ...]:
        return (self.signing_key, self.tenant_config, self.tenant_validation, self.blacklist)


def signing_key_policy(env: Mapping[str, str] | None = None) -> CachePolicy:
    """JWT signing key: 5 min (``BW_SIGNING_KEY_CACHE_TTL``), stale-on-error for one more TTL.

    Serving a key that was valid minutes ago while Secrets Manager is down is safe:
    it is a real key, and with rotation the previous version stays valid, so the
    worst case is tokens a verifier rejects. What must never happen -- signing
    without a key -- cannot come from the cache: it only ever holds a loaded key.
    """
    env = _environ(env)
    ttl = env_number(env, "BW_SIGNING_KEY_CACHE_TTL", 300, minimum=0)
    return CachePolicy(
        name="signing_key",
        ttl_seconds=ttl,
        max_items=_max_items(env),
        max_stale_seconds=ttl,
        cacheable=positive_only,
    )


def tenant_config_policy(env: Mapping[str, str] | None = None) -> CachePolicy:
    """Tenant configuration: 10 min (``BW_TENANT_CONFIG_CACHE_TTL``), stale-on-error for one more TTL.

    Configuration is not a security decision (tenant validation is, separately),
    so an S3 outage should degrade to the last known configuration rather than a 503.
    A missing configuration (``None``) is not cached, so a new tenant's upload is seen at once.
    """
    env = _environ(env)
    ttl = env_number(env, "BW_TENANT_CONFIG_CACHE_TTL", 600, minimum=0)
    return CachePolicy(
        name="tenant_config",
        ttl_seconds=ttl,
        max_items=_max_items(env),
        max_stale_seconds=ttl,
        cacheable=positive_only,
    )


def tenant_validation_policy(env: Mapping[str, str] | None = None) -> CachePolicy:
    """Tenant validation: 2 min (``BW_TENANT_VALIDATION_CACHE_TTL``), positive-only, never stale.

    Fail-closed (seed 000): only a positive answer is cached, and once it expires an
    outage rejects the tenant instead of trusting an answer older than the short TTL.
    """
    env = _environ(env)
    return CachePolicy(
        name="tenant_validation",
        ttl_seconds=env_number(env, "BW_TENANT_VALIDATION_CACHE_TTL", 120, minimum=0),
        max_items=_max_items(env),
        max_stale_seconds=0.0,
        cacheable=positive_only,
    )


def blacklist_policy(env: Mapping[str, str] | None = None) -> CachePolicy:
    """Token blacklist: "not revoked" cached 5 min (``BW_BLACKLIST_CACHE_TTL``), never stale.

    Both answers are cacheable: "revoked" is the fail-closed one and is stored with
    the token's own remaining lifetime (``set(jti, True, ttl=exp - now)``). A lookup
    that fails after expiry treats the token as revoked (seed 000), so no stale window.
    """
    env = _environ(env)
    return CachePolicy(
        name="blacklist",
        ttl_seconds=env_number(env, "BW_BLACKLIST_CACHE_TTL", 300, minimum=0),
        max_items=_max_items(env),
        max_stale_seconds=0.0,
        cacheable=always_cacheable,
    )


def cache_presets(env: Mapping[str, str] | None = None) -> CachePresets:
    """All four presets from one environment (default ``os.environ``, read now)."""
    env = _environ(env)
    return CachePresets(
        signing_key=signing_key_policy(env),
        tenant_config=tenant_config_policy(env),
        tenant_validation=tenant_validation_policy(env),
        blacklist=blacklist_policy(env),
    )


# -- configuration helpers ------------------------------------------------------------


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    # os.environ is looked up per call: the offline runtime replaces it with a per-thread view.
    return os.environ if env is None else env


def _max_items(env: Mapping[str, str]) -> int:
    return int(env_number(env, "BW_CACHE_MAX_ITEMS", DEFAULT_MAX_ITEMS, minimum=1))
