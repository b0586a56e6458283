"""The fleet-wide circuit breaker.

Shaped like Powertools' circuit breaker (decorator, config object, a
persistence store passed in, ``on_circuit_open`` fallback, ``on_transition``
hook), with one difference that matters in a fleet: the failure accounting
is shared. Consecutive failures stay a per-environment fact (only one
environment knows its own call order; another's successes reach the table up
to a refresh interval late, so a fleet-wide "streak" would open the breaker
on a 0.5 % error rate). What the fleet shares is *how many environments are
failing right now*: an environment that fails ``environment_streak`` times in
a row marks itself in the record, and ``failing_environments`` marks open the
breaker for everyone. When a dependency dies, the first few environments to
fail twice open it; every other environment learns it from the answer to its
first failure, or from the re-read that follows it, instead of paying the
whole threshold itself. A failure rate over the shared window is the second
rule.

Costs on the healthy path: an environment trusts its cached view for
``refresh_interval`` and aggregates its successes locally, so it makes at
most one store request per interval (the flush of its successes returns the
current record, which doubles as the refresh). A failure is written at once,
because it may be the one that crosses the threshold.

Costs when the Breakers table is slow or failing: its client has its own
tight timeouts and makes one attempt (:meth:`Clients.breaker_store`), a view
is dated from the moment the store *answered* (a slow answer is still fresh
on arrival), and a failed or timed-out request is remembered: the breaker acts
on its policy (``fail_closed_on_store_error``: refuse, else let calls through)
and asks the store again only after a refresh interval. A protected call thus
pays at most one short store timeout per refresh interval, never one per call.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from enum import Enum
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from resilience.breaker.config import BreakerPolicy, policy_for
from resilience.breaker.state import BreakerRecord, BreakerState, BreakerStats, CircuitInfo, Counts, Transition
from resilience.breaker.store.base import BreakerStore, CountUpdate, StateChange
from resilience.breaker.store.dynamodb import DynamoDBBreakerStore
from resilience.errors import BreakerStoreError, CircuitOpenError

if TYPE_CHECKING:
    from resilience.clients import Clients

__all__ = ["CircuitBreaker"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

logger = logging.getLogger(__name__)


class _Admission(Enum):
    CALL = "call"
    PROBE = "probe"


class _StoreRestingError(BreakerStoreError):
    """Not asked: the store failed less than a refresh interval ago (no request was made)."""


class CircuitBreaker:
    """One breaker (dependency + operation), as seen from one execution environment."""

    def __init__(
        self,
        name: str,
        store: BreakerStore,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] | None = None,
        on_transition: Callable[[Transition], None] | None = None,
        on_circuit_open: Callable[..., Any] | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.policy = policy or BreakerPolicy()
        # Looked up at call time so a patched clock (tests, the offline runtime) is honoured.
        self._clock = clock or (lambda: time.time())
        self.on_transition = on_transition
        self.on_circuit_open = on_circuit_open
        self.owner = owner or f"{os.getpid()}#{uuid.uuid4().hex[:12]}"
        # Environments started together would otherwise refresh in lock-step, all at once.
        self._rng = rng or random.Random(self.owner)
        self._lock = threading.Lock()
        self._record: BreakerRecord | None = None
        self._valid_until = float("-inf")
        self._pending = Counts()
        self._streak = 0
        self._marked = False
        self._probing = False
        #: After a failed store request: no other request before this (see _ask).
        self._store_rests_until = float("-inf")

    @classmethod
    def from_env(
        cls,
        name: str,
        clients: Clients,
        *,
        env: Mapping[str, str] | None = None,
        on_transition: Callable[[Transition], None] | None = None,
        on_circuit_open: Callable[..., Any] | None = None,
    ) -> CircuitBreaker:
        """The breaker ``name`` on the deployment's Breakers table (``BW_BREAKERS_TABLE``),
        with its dependency's policy from the template Parameters.

        The store gets the Breakers table's own client (``clients.breaker_store()``:
        tight timeouts, one attempt), never the caller's DynamoDB client, whose
        budget (3 attempts at 5 s) a protected call must not wait through.
        """
        env = os.environ if env is None else env
        store = DynamoDBBreakerStore(env["BW_BREAKERS_TABLE"], clients.breaker_store())
        return cls(name, store, policy_for(name, env), on_transition=on_transition, on_circuit_open=on_circuit_open)

    # -- public API -------------------------------------------------------------------
    def call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``function`` through the breaker.

        OPEN: the function is not called; ``on_circuit_open(*args, **kwargs,
        circuit=CircuitInfo)`` answers instead, or :class:`CircuitOpenError` is raised.
        """
        try:
            admission = self._admit()
        except CircuitOpenError as exc:
            if self.on_circuit_open is not None:
                return self.on_circuit_open(*args, **kwargs, circuit=exc.circuit)  # type: ignore[attr-defined, no-any-return]
            raise
        started = self._clock()
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            self._record_outcome(admission, started, exc)
            raise
        self._record_outcome(admission, started, None)
        return result

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """Use the breaker as a decorator."""

        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            return self.call(function, *args, **kwargs)

        return wrapper

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``with breaker.guard(): ...`` — raises CircuitOpenError instead of entering when open."""
        admission = self._admit()
        started = self._clock()
        try:
            yield
        except BaseException as exc:
            self._record_outcome(admission, started, exc)
            raise
        self._record_outcome(admission, started, None)

    def state(self) -> BreakerState:
        """The state this environment currently acts on (may be up to one refresh old)."""
        return self._view(self._clock()).state

    def stats(self) -> BreakerStats:
        """Fresh from the store: state, window counts, failure rate, timestamps."""
        now = self._clock()
        record = self.store.get(self.name) or BreakerRecord(self.name)
        window = record.window(now, self.policy.window_seconds)
        return BreakerStats(
            name=self.name,
            state=record.state,
            version=record.version,
            calls=window.calls,
            failures=window.failures,
            slow_calls=window.slow,
            failure_rate=window.failures / window.calls if window.calls else 0.0,
            failing_environments=record.failing_environments(now, self.policy.window_seconds),
            opened_at=record.opened_at,
            next_attempt_at=record.next_attempt_at,
            last_failure_at=record.last_failure_at,
            last_success_at=record.last_success_at,
            forced=record.forced,
        )

    def reset(self) -> None:
        """Operator action: close the breaker now, with a fresh window."""
        self._operator_change(StateChange(BreakerState.CLOSED, at=self._clock()), "manual reset")

    def force_open(self) -> None:
        """Operator action: open the breaker and keep it open (no probes) until reset."""
        now = self._clock()
        self._operator_change(StateChange(BreakerState.OPEN, opened_at=now, forced=True, at=now), "forced open")

    def flush(self) -> None:
        """Report aggregated successes now (e.g. before an environment is frozen).

        Nothing to report is no request: handlers flush after every invocation, and
        a refresh there would cost a store request (or, the store being slow, a
        store timeout) per invocation.
        """
        with self._lock:
            due = bool(self._pending)
        if due:
            self._flush(self._clock())

    # -- admission ----------------------------------------------------------------------
    def _admit(self) -> _Admission:
        now = self._clock()
        record = self._view(now)
        if record.state is BreakerState.CLOSED:
            return _Admission.CALL
        if record.forced:
            raise self._open_error(record)
        if record.state is BreakerState.OPEN:
            if record.next_attempt_at is not None and now < record.next_attempt_at:
                raise self._open_error(record)
            return self._try_probe(record, now)
        # HALF_OPEN: one probe at a time across the fleet, under a lease.
        with self._lock:
            probing_here = self._probing
        lease_free = record.probe_owner is None or (record.probe_lease_until or 0.0) <= now
        if lease_free and not probing_here:
            return self._try_probe(record, now)
        raise self._open_error(record)

    def _try_probe(self, record: BreakerRecord, now: float) -> _Admission:
        with self._lock:
            if self._probing:
                raise self._open_error(record)
            self._probing = True
        change = StateChange(
            BreakerState.HALF_OPEN,
            opened_at=record.opened_at,
            next_attempt_at=record.next_attempt_at,
            probe_owner=self.owner,
            probe_lease_until=now + self.policy.probe_lease_seconds,
            half_open_successes=record.half_open_successes if record.state is BreakerState.HALF_OPEN else 0,
            at=now,
        )
        try:
            won = self._ask(lambda: self.store.change(self.name, change, expected_version=record.version))
        except BreakerStoreError:
            won = None
        if won is None:
            with self._lock:
                self._probing = False
            self._refresh()
            current = self._record or record
            if current.state is BreakerState.CLOSED:
                # Closed meanwhile, or the store is down and the policy lets calls through.
                return _Admission.CALL
            raise self._open_error(current)
        self._remember(won, self._clock())
        if record.state is BreakerState.OPEN:
            self._notify(record.state, BreakerState.HALF_OPEN, now, "recovery timeout elapsed: probing")
        return _Admission.PROBE

    # -- outcomes ---------------------------------------------------------------------------
    def _record_outcome(self, admission: _Admission, started: float, exc: BaseException | None) -> None:
        now = self._clock()
        slow = self.policy.slow_call_seconds is not None and now - started > self.policy.slow_call_seconds
        failed = slow or (exc is not None and self.policy.is_failure(exc))
        if admission is _Admission.PROBE:
            self._probe_done(now, failed)
        elif failed:
            self._failure(now, slow)
        else:
            self._success(now)

    def _success(self, now: float) -> None:
        with self._lock:
            self._pending = self._pending + Counts(calls=1)
            self._streak = 0
            recovered, self._marked = self._marked, False
            due = recovered or now >= self._valid_until
        if due:
            # A failing environment that recovers says so at once: its mark must not linger.
            self._flush(now, unmark=recovered)

    def _failure(self, now: float, slow: bool) -> None:
        with self._lock:
            self._streak += 1
            streak = self._streak
            failing = streak >= self.policy.environment_streak
            self._marked = self._marked or failing
        pending, record = self._take_pending()
        update = CountUpdate(
            version=record.version,
            bucket=self._bucket(now),
            delta=pending + Counts(calls=1, failures=1, slow=1 if slow else 0),
            at=now,
            mark=self.owner if failing else None,
            prune=record.counters_outside(now, self.policy.window_seconds, self.policy.bucket_seconds),
        )
        try:
            written = self._ask(lambda: self.store.add(self.name, update))
        except BreakerStoreError:
            # Reported with the next flush once the store answers again.
            self._restore(update.delta)
            return
        self._remember(written, self._clock())
        if written.state is not BreakerState.CLOSED:
            return
        reason = self._open_reason(written, now, streak)
        if reason is not None:
            self._transition(written, self._open_change(now), reason)
        else:
            # The fleet may open the breaker any moment now: look again before the next call.
            with self._lock:
                self._valid_until = now

    def _probe_done(self, now: float, failed: bool) -> None:
        record = self._record or BreakerRecord(self.name)
        try:
            if failed:
                # openedAt keeps the start of the outage (health alerts on how long it lasts).
                self._transition(record, self._open_change(now, opened_at=record.opened_at), "probe failed")
            elif record.half_open_successes + 1 >= self.policy.success_threshold:
                self._transition(record, StateChange(BreakerState.CLOSED, at=now), "probes succeeded")
            else:
                # Release the lease: the next probe may come from any environment.
                change = StateChange(
                    BreakerState.HALF_OPEN,
                    opened_at=record.opened_at,
                    next_attempt_at=record.next_attempt_at,
                    half_open_successes=record.half_open_successes + 1,
                    at=now,
                )
                self._transition(record, change, "probe succeeded")
        finally:
            with self._lock:
                self._probing = False

    def _transition(self, record: BreakerRecord, change: StateChange, reason: str) -> None:
        now = change.at
        try:
            changed = self._ask(lambda: self.store.change(self.name, change, expected_version=record.version))
        except BreakerStoreError:
            logger.warning("breaker %s: transition to %s not stored (table unavailable)", self.name, change.state)
            return
        if changed is None:
            # Another environment transitioned first: adopt its result, never flap.
            self._refresh()
            return
        self._remember(changed, self._clock())
        if changed.state is not record.state:
            self._notify(record.state, changed.state, now, reason)

    def _open_change(self, now: float, opened_at: float | None = None) -> StateChange:
        return StateChange(
            BreakerState.OPEN,
            opened_at=opened_at if opened_at is not None else now,
            next_attempt_at=now + self.policy.recovery_timeout,
            at=now,
        )

    def _open_reason(self, record: BreakerRecord, now: float, streak: int) -> str | None:
        policy = self.policy
        if streak >= policy.failure_threshold:
            return f"{streak} consecutive failures"
        failing = record.failing_environments(now, policy.window_seconds)
        if failing >= policy.failing_environments_threshold:
            return f"{failing} environments failing"
        # Successes reach the table up to a refresh interval late: judge the rate only
        # once the window holds more history than that.
        if record.since is None or now - record.since < policy.refresh_interval + policy.bucket_seconds:
            return None
        window = record.window(now, policy.window_seconds)
        if (
            window.calls >= policy.minimum_calls
            and window.failures * 100 >= policy.failure_rate_threshold * window.calls
        ):
            return f"failure rate {window.failures}/{window.calls} over {policy.window_seconds:g}s"
        return None

    # -- the local view -------------------------------------------------------------------------
    def _view(self, now: float) -> BreakerRecord:
        with self._lock:
            if self._record is not None and now < self._valid_until:
                return self._record
            has_pending = bool(self._pending)
        if has_pending:
            self._flush(now)
        else:
            self._refresh()
        with self._lock:
            return self._record or BreakerRecord(self.name)

    def _refresh(self) -> None:
        try:
            record = self._ask(lambda: self.store.get(self.name)) or BreakerRecord(self.name)
        except BreakerStoreError:
            return  # _ask has put the policy's view in place
        self._remember(record, self._clock())

    def _ask(self, request: Callable[[], T]) -> T:
        """One store request — or none, while the store rests after a failure.

        A failed or timed-out request is remembered (dated when its answer came)
        together with the view the policy prescribes, so until the next refresh
        no call waits for the store again: one store timeout per interval at most.
        """
        with self._lock:
            resting = self._clock() < self._store_rests_until
        if resting:
            raise _StoreRestingError(f"Breakers table unavailable; {self.name} not asked until its next refresh")
        try:
            return request()
        except BreakerStoreError:
            self._store_failed(self._clock())
            raise

    def _store_failed(self, answered: float) -> None:
        self._remember(self._store_down(answered), answered)
        with self._lock:
            self._store_rests_until = self._valid_until

    def _restore(self, counts: Counts, *, unmark: bool = False) -> None:
        """Put back what a failed store request did not report."""
        with self._lock:
            self._pending = self._pending + counts
            self._marked = self._marked or unmark

    def _take_pending(self) -> tuple[Counts, BreakerRecord]:
        with self._lock:
            pending, self._pending = self._pending, Counts()
            return pending, self._record or BreakerRecord(self.name)

    def _flush(self, now: float, *, unmark: bool = False) -> None:
        pending, record = self._take_pending()
        if not pending and not unmark:
            self._refresh()
            return
        update = CountUpdate(
            version=record.version,
            bucket=self._bucket(now),
            delta=pending,
            at=now,
            unmark=self.owner if unmark else None,
            prune=record.counters_outside(now, self.policy.window_seconds, self.policy.bucket_seconds),
        )
        try:
            written = self._ask(lambda: self.store.add(self.name, update))
        except BreakerStoreError:
            # Reported with a later flush, once the store answers again.
            self._restore(update.delta, unmark=unmark)
            return
        self._remember(written, self._clock())

    def _store_down(self, now: float) -> BreakerRecord:
        if self.policy.fail_closed_on_store_error:
            logger.warning("breaker %s: Breakers table unavailable; failing closed", self.name)
            return BreakerRecord(self.name, BreakerState.OPEN, opened_at=now, forced=True)
        logger.warning("breaker %s: Breakers table unavailable; failing open", self.name)
        return replace(self._record or BreakerRecord(self.name), state=BreakerState.CLOSED)

    def _remember(self, record: BreakerRecord, now: float) -> None:
        """Act on ``record`` until a refresh interval after ``now``: the moment the store
        answered (dating it from before the request would let a slow answer arrive expired)."""
        with self._lock:
            previous = self._record
            if previous is not None and previous.version != record.version:
                # A transition starts afresh: streaks and marks belonged to the old version.
                self._streak, self._marked = 0, False
            self._record = record
            interval = self.policy.refresh_interval
            self._valid_until = now + interval * (1 - self.policy.refresh_jitter * self._rng.random())
        if previous is not None and previous.state is not record.state and previous.version < record.version:
            logger.info("breaker %s: %s -> %s (seen from the store)", self.name, previous.state, record.state)

    def _bucket(self, now: float) -> int:
        width = self.policy.bucket_seconds
        return int(now // width) * width

    def _operator_change(self, change: StateChange, reason: str) -> None:
        before = self.store.get(self.name) or BreakerRecord(self.name)
        after = self.store.change(self.name, change, expected_version=None)
        if after is not None:
            self._take_pending()
            with self._lock:
                self._probing = False
            self._remember(after, change.at)
            if after.state is not before.state:
                self._notify(before.state, after.state, change.at, reason)

    def _open_error(self, record: BreakerRecord) -> CircuitOpenError:
        info: CircuitInfo = record.info()
        retry_after = None
        if record.next_attempt_at is not None:
            retry_after = max(1, int(record.next_attempt_at - self._clock() + 0.999))
        error = CircuitOpenError(f"breaker {self.name} is {record.state}", retry_after=retry_after)
        error.circuit = info  # type: ignore[attr-defined]
        return error

    def _notify(self, from_state: BreakerState, to_state: BreakerState, at: float, reason: str) -> None:
        logger.info("breaker %s: %s -> %s (%s)", self.name, from_state, to_state, reason)
        if self.on_transition is None:
            return
        try:
            self.on_transition(Transition(self.name, from_state, to_state, at, reason))
        except Exception:  # observability must never break the protected call
            logger.warning("breaker %s: on_transition hook failed", self.name, exc_info=True)
