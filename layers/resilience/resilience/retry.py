"""The in-call retry policy: ASL's Retry block, for the few places a Lambda must retry inside one call.

Workflows state their retries in ASL (DESIGN: "Python retries only where a
Lambda must retry inside one call"). When Python does retry, it uses the same
numbers and the same formula as the ``Retry`` blocks, so an operator reads
one policy everywhere (seed 002: 1 s, 2 s, 4 s, capped at 30 s, 3 retries)::

    delay(n) = min(IntervalSeconds * BackoffRate ** (n - 1), MaxDelaySeconds)   # n = 1, 2, ...
    FULL jitter: uniform(0, delay(n))

``MaxAttempts`` counts retries after the first attempt, as in ASL: 3 means
up to 4 calls, 0 means one call and no retry.

The loop is tenacity's (stop/wait/retry/before_sleep/reraise map one to one
onto the policy); the delay formula is ours, because tenacity's jittered
waits draw from the global ``random`` module and tests need a seeded source.

Mind the multiplication: SDK calls already retry inside botocore
(``BW_SDK_MAX_ATTEMPTS``); wrapping one in :func:`retry` multiplies the
attempts. Use it around a unit of work that botocore does not retry as a
whole (a read-modify-write, a conditional write sequence), not around one call.
"""

from __future__ import annotations

import functools
import os
import random as _random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

import tenacity

from resilience.clients import is_transient
from resilience.errors import ConfigurationError
from resilience.settings import env_number

__all__ = ["JitterStrategy", "OnRetry", "RetryDecorator", "RetryPolicy", "is_retryable", "retry", "retrying"]

JitterStrategy = Literal["FULL", "NONE"]


class RetryDecorator(Protocol):
    """What :func:`retrying` returns: keeps the decorated function's signature."""

    def __call__[**P, T](self, fn: Callable[P, T], /) -> Callable[P, T]: ...


class OnRetry(Protocol):
    """Told before each retry: the attempt that just failed (1-based), the wait, and its error."""

    def __call__(self, attempt: int, delay: float, exc: BaseException) -> None: ...


#: Used only when the caller injects no random source (production); tests pass a seeded one.
_DEFAULT_RANDOM = _random.Random()


@dataclass(frozen=True)
class RetryPolicy:
    """One ASL Retrier: IntervalSeconds, BackoffRate, MaxAttempts, MaxDelaySeconds, JitterStrategy."""

    interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    #: Retries after the first attempt (ASL ``MaxAttempts``): 0 = try once.
    max_attempts: int = 3
    max_delay_seconds: float = 30.0
    jitter: JitterStrategy = "FULL"

    def __post_init__(self) -> None:
        # The same bounds Step Functions enforces on a Retrier, so a policy valid
        # here can be written into a definition unchanged.
        if not self.interval_seconds > 0:
            raise ValueError(f"interval_seconds must be positive, got {self.interval_seconds}")
        if not self.backoff_rate >= 1.0:
            raise ValueError(f"backoff_rate must be >= 1.0, got {self.backoff_rate}")
        if self.max_attempts < 0:
            raise ValueError(f"max_attempts must be >= 0, got {self.max_attempts}")
        if not self.max_delay_seconds > 0:
            raise ValueError(f"max_delay_seconds must be positive, got {self.max_delay_seconds}")
        if self.jitter not in ("FULL", "NONE"):
            raise ValueError(f"jitter must be 'FULL' or 'NONE', got {self.jitter!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, jitter: JitterStrategy = "FULL") -> RetryPolicy:
        """The deployment's policy, from ``BW_RETRY_{INTERVAL_SECONDS,BACKOFF_RATE,MAX_ATTEMPTS,MAX_DELAY_SECONDS}``.

        ``environ`` defaults to ``os.environ`` as it is at call time (the local
        runtime swaps it per function, so it cannot be bound at import).
        """
        env: Mapping[str, str] = os.environ if environ is None else environ
        defaults = cls()
        attempts = env_number(env, "BW_RETRY_MAX_ATTEMPTS", defaults.max_attempts)
        if attempts != int(attempts):
            raw = env["BW_RETRY_MAX_ATTEMPTS"]
            raise ConfigurationError(f"BW_RETRY_MAX_ATTEMPTS must be a whole number, got {raw!r}")
        try:
            return cls(
                interval_seconds=env_number(env, "BW_RETRY_INTERVAL_SECONDS", defaults.interval_seconds),
                backoff_rate=env_number(env, "BW_RETRY_BACKOFF_RATE", defaults.backoff_rate),
                max_attempts=int(attempts),
                max_delay_seconds=env_number(env, "BW_RETRY_MAX_DELAY_SECONDS", defaults.max_delay_seconds),
                jitter=jitter,
            )
        except ValueError as exc:
            raise ConfigurationError(f"invalid retry policy in the environment: {exc}") from exc

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1-based), before jitter: ASL's computed interval."""
        if retry < 1:
            raise ValueError(f"retries are numbered from 1, got {retry}")
        try:
            raw = self.interval_seconds * self.backoff_rate ** (retry - 1)
        except OverflowError:
            # rate ** n left float range long after it passed the cap.
            return self.max_delay_seconds
        return min(raw, self.max_delay_seconds)

    def delay(self, retry: int, random: _random.Random | None = None) -> float:
        """The wait before retry number ``retry``: the backoff, FULL-jittered to uniform(0, backoff)."""
        ceiling = self.backoff(retry)
        if self.jitter == "NONE":
            return ceiling
        return (random or _DEFAULT_RANDOM).uniform(0.0, ceiling)

    def delays(self, random: _random.Random | None = None) -> Iterator[float]:
        """The waits before each of the ``max_attempts`` retries, in order."""
        for retry_number in range(1, self.max_attempts + 1):
            yield self.delay(retry_number, random)


#: The default ``retry_on``: what the breaker counts as a failure is what is worth retrying
#: (a retryable taxonomy error, or a transient provider error); ``CircuitOpenError`` and
#: caller errors propagate on the first attempt.
is_retryable = is_transient


def retry[T](
    fn: Callable[[], T],
    *,
    policy: RetryPolicy | None = None,
    retry_on: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], None] | None = None,
    random: _random.Random | None = None,
    on_retry: OnRetry | None = None,
) -> T:
    """Call ``fn`` until it succeeds, a non-retryable error escapes, or the policy's retries are spent.

    A non-retryable error propagates at once; after the last retry the last
    error propagates unchanged (never wrapped), so callers and ASL see the
    taxonomy name. ``policy`` defaults to :meth:`RetryPolicy.from_env`;
    ``sleep`` to ``time.sleep`` looked up at call time (so the local runtime's
    virtual clock applies); ``random`` to a process-wide source.
    """
    active = policy if policy is not None else RetryPolicy.from_env()
    do_sleep: Callable[[float], None] = sleep if sleep is not None else time.sleep

    def wait(state: tenacity.RetryCallState) -> float:
        return active.delay(state.attempt_number, random)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is None or state.outcome is None or state.next_action is None:
            return
        error = state.outcome.exception()
        if error is not None:
            on_retry(state.attempt_number, state.next_action.sleep, error)

    retrier = tenacity.Retrying(
        sleep=do_sleep,
        stop=tenacity.stop_after_attempt(active.max_attempts + 1),
        wait=wait,
        retry=tenacity.retry_if_exception(retry_on),
        before_sleep=before_sleep,
        # The last error itself, not tenacity's RetryError: its class name is the ASL contract.
        reraise=True,
    )
    return retrier(fn)


def retrying(
    policy: RetryPolicy | None = None,
    *,
    retry_on: Callable[[BaseException], bool] = is_retryable,
    sleep: Callable[[float], None] | None = None,
    random: _random.Random | None = None,
    on_retry: OnRetry | None = None,
) -> RetryDecorator:
    """Decorator form of :func:`retry`: ``@retrying(RetryPolicy(max_attempts=2), sleep=clock.sleep)``."""

    def decorate[**P, T](fn: Callable[P, T], /) -> Callable[P, T]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return retry(
                functools.partial(fn, *args, **kwargs),
                policy=policy,
                retry_on=retry_on,
                sleep=sleep,
                random=random,
                on_retry=on_retry,
            )

        return wrapper

    return decorate
