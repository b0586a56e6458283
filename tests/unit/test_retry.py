"""The in-call retry policy: ASL's numbers and formula, injected sleep and randomness, no real waiting."""

from __future__ import annotations

import itertools
import random
from dataclasses import FrozenInstanceError

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from hypothesis import given
from hypothesis import strategies as st

from resilience.errors import (
    CircuitOpenError,
    ConfigurationError,
    RetryableError,
    ServiceTimeoutError,
    ThrottledError,
    TokenRevokedError,
)
from resilience.retry import RetryPolicy, is_retryable, retry, retrying


class FakeSleep:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Flaky:
    """Fails with the given errors in order, then returns 'ok'."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


NO_JITTER = RetryPolicy(jitter="NONE")


# -- the schedule ----------------------------------------------------------------------------------------


def test_the_default_schedule_is_seed_002s_1_2_4() -> None:
    assert list(NO_JITTER.delays()) == [1, 2, 4]
    assert (NO_JITTER.interval_seconds, NO_JITTER.backoff_rate, NO_JITTER.max_attempts) == (1, 2, 3)
    assert NO_JITTER.max_delay_seconds == 30


def test_the_schedule_is_the_asl_formula_capped_at_max_delay() -> None:
    policy = RetryPolicy(max_attempts=8, jitter="NONE")
    assert list(policy.delays()) == [1, 2, 4, 8, 16, 30, 30, 30]
    # delay_n = min(interval * rate ** (n - 1), max_delay), n counted from 1.
    odd = RetryPolicy(interval_seconds=3, backoff_rate=1.5, max_attempts=4, max_delay_seconds=7, jitter="NONE")
    assert list(odd.delays()) == [3, 4.5, 6.75, 7]
    assert RetryPolicy().backoff(10_000) == 30  # no overflow far past the cap


def test_no_retries_means_an_empty_schedule() -> None:
    assert list(RetryPolicy(max_attempts=0).delays()) == []


def test_full_jitter_stays_within_zero_and_the_backoff() -> None:
    policy = RetryPolicy(max_attempts=6)
    rng = random.Random(1234)
    draws = [list(policy.delays(rng)) for _ in range(500)]
    for schedule in draws:
        assert len(schedule) == 6
        for n, delay in enumerate(schedule, start=1):
            assert 0.0 <= delay <= policy.backoff(n)
    # Really jittered: the draws spread over the range rather than sitting at the ceiling.
    firsts = [schedule[0] for schedule in draws]
    assert min(firsts) < 0.1
    assert max(firsts) > 0.9


def test_a_seed_replays_the_same_jitter() -> None:
    policy = RetryPolicy()
    assert list(policy.delays(random.Random(7))) == list(policy.delays(random.Random(7)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"interval_seconds": 0},
        {"backoff_rate": 0.5},
        {"max_attempts": -1},
        {"max_delay_seconds": 0},
        {"jitter": "DECORRELATED"},
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_the_policy_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        NO_JITTER.max_attempts = 9  # type: ignore[misc]


# -- configuration ---------------------------------------------------------------------------------------------


def test_the_environment_sets_the_policy() -> None:
    assert RetryPolicy.from_env({}) == RetryPolicy()
    policy = RetryPolicy.from_env(
        {
            "BW_RETRY_INTERVAL_SECONDS": "2",
            "BW_RETRY_BACKOFF_RATE": "3",
            "BW_RETRY_MAX_ATTEMPTS": "0",
            "BW_RETRY_MAX_DELAY_SECONDS": "10",
        },
        jitter="NONE",
    )
    assert policy == RetryPolicy(
        interval_seconds=2, backoff_rate=3, max_attempts=0, max_delay_seconds=10, jitter="NONE"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BW_RETRY_INTERVAL_SECONDS", "fast"),
        ("BW_RETRY_BACKOFF_RATE", "0.5"),
        ("BW_RETRY_MAX_ATTEMPTS", "1.5"),
        ("BW_RETRY_MAX_ATTEMPTS", "-1"),
        ("BW_RETRY_MAX_DELAY_SECONDS", "0"),
    ],
)
def test_a_bad_environment_is_a_configuration_error(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy.from_env({name: value})


# -- retrying ----------------------------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_the_schedule_and_reported() -> None:
    first, second = ServiceTimeoutError("t1"), ThrottledError("t2")
    fn, sleep = Flaky(first, second), FakeSleep()
    seen: list[tuple[int, float, BaseException]] = []

    result = retry(fn, policy=NO_JITTER, sleep=sleep, on_retry=lambda a, d, e: seen.append((a, d, e)))

    assert result == "ok"
    assert fn.calls == 3
    assert sleep.calls == [1, 2]
    assert seen == [(1, 1, first), (2, 2, second)]


def test_after_the_last_retry_the_last_error_propagates_unchanged() -> None:
    errors = [RetryableError(f"attempt {n}") for n in range(1, 5)]
    fn, sleep = Flaky(*errors), FakeSleep()

    with pytest.raises(RetryableError) as caught:
        retry(fn, policy=NO_JITTER, sleep=sleep)

    # 1 attempt + MaxAttempts (3) retries, as in ASL; the error is the 4th one itself, not a wrapper.
    assert fn.calls == 4
    assert caught.value is errors[-1]
    assert sleep.calls == [1, 2, 4]


@pytest.mark.parametrize(
    "error",
    [
        TokenRevokedError(),
        CircuitOpenError(),
        ValueError("a bug"),
        ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "PutItem"),
        KeyboardInterrupt(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_non_retryable_errors_propagate_at_once(error: BaseException) -> None:
    fn, sleep = Flaky(error), FakeSleep()
    seen: list[object] = []
    with pytest.raises(type(error)) as caught:
        retry(fn, policy=NO_JITTER, sleep=sleep, on_retry=lambda *args: seen.append(args))
    assert caught.value is error
    assert fn.calls == 1
    assert sleep.calls == []
    assert seen == []


def test_raw_transient_provider_errors_are_retried_by_default() -> None:
    fn, sleep = Flaky(ReadTimeoutError(endpoint_url="https://dynamodb"), ThrottledError()), FakeSleep()
    assert retry(fn, policy=NO_JITTER, sleep=sleep) == "ok"
    assert fn.calls == 3
    assert is_retryable(ReadTimeoutError(endpoint_url="https://dynamodb"))
    assert not is_retryable(CircuitOpenError())


def test_max_attempts_zero_tries_once() -> None:
    fn, sleep = Flaky(ServiceTimeoutError()), FakeSleep()
    with pytest.raises(ServiceTimeoutError):
        retry(fn, policy=RetryPolicy(max_attempts=0), sleep=sleep)
    assert fn.calls == 1
    assert sleep.calls == []


def test_a_custom_predicate_decides_what_is_retried() -> None:
    fn, sleep = Flaky(KeyError("a"), KeyError("b")), FakeSleep()
    assert retry(fn, policy=NO_JITTER, sleep=sleep, retry_on=lambda e: isinstance(e, KeyError)) == "ok"
    assert fn.calls == 3


def test_jittered_waits_come_from_the_injected_random() -> None:
    policy = RetryPolicy()
    fn, sleep = Flaky(*(RetryableError() for _ in range(3))), FakeSleep()
    delays: list[float] = []
    retry(fn, policy=policy, sleep=sleep, random=random.Random(99), on_retry=lambda a, d, e: delays.append(d))
    expected = list(policy.delays(random.Random(99)))
    assert sleep.calls == expected
    assert delays == expected
    assert all(0 <= d <= policy.backoff(n) for n, d in enumerate(sleep.calls, start=1))


def test_the_policy_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BW_RETRY_MAX_ATTEMPTS", "1")
    fn, sleep = Flaky(RetryableError(), RetryableError()), FakeSleep()
    with pytest.raises(RetryableError):
        retry(fn, sleep=sleep, random=random.Random(0))
    assert fn.calls == 2


def test_the_decorator_keeps_the_signature_and_retries() -> None:
    sleep = FakeSleep()
    calls: list[tuple[str, int]] = []

    @retrying(RetryPolicy(max_attempts=2, jitter="NONE"), sleep=sleep)
    def store(key: str, *, version: int) -> str:
        """Store one item."""
        calls.append((key, version))
        if len(calls) < 3:
            raise ServiceTimeoutError()
        return f"{key}@{version}"

    assert store("k", version=2) == "k@2"
    assert calls == [("k", 2)] * 3
    assert sleep.calls == [1, 2]
    assert store.__name__ == "store"
    assert store.__doc__ == "Store one item."


# -- properties ---------------------------------------------------------------------------------------------------

policies = st.builds(
    RetryPolicy,
    interval_seconds=st.floats(min_value=0.001, max_value=100, allow_nan=False),
    backoff_rate=st.floats(min_value=1.0, max_value=10, allow_nan=False),
    max_attempts=st.integers(min_value=0, max_value=40),
    max_delay_seconds=st.floats(min_value=0.001, max_value=1000, allow_nan=False),
    jitter=st.just("NONE"),
)


@given(policies)
def test_without_jitter_delays_never_shrink_and_never_pass_the_cap(policy: RetryPolicy) -> None:
    delays = list(policy.delays())
    assert len(delays) == policy.max_attempts
    assert all(0 < d <= policy.max_delay_seconds for d in delays)
    assert all(a <= b for a, b in itertools.pairwise(delays))
    if delays:
        assert delays[0] == min(policy.interval_seconds, policy.max_delay_seconds)


@given(policies, st.integers(min_value=0, max_value=2**32))
def test_with_full_jitter_each_delay_is_within_zero_and_its_backoff(policy: RetryPolicy, seed: int) -> None:
    jittered = RetryPolicy(
        interval_seconds=policy.interval_seconds,
        backoff_rate=policy.backoff_rate,
        max_attempts=policy.max_attempts,
        max_delay_seconds=policy.max_delay_seconds,
        jitter="FULL",
    )
    for n, delay in enumerate(jittered.delays(random.Random(seed)), start=1):
        assert 0 <= delay <= jittered.backoff(n) <= jittered.max_delay_seconds
