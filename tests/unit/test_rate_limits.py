"""Rate limits: one atomic write per request; a RateLimits outage turns limiting off, never refuses."""

from __future__ import annotations

import pytest

from resilience.clients import Clients, ClientSettings
from resilience.errors import RateLimitedError
from resilience.rate_limits import RateLimiter, RateLimitPolicy


def limiter(limit: int = 3, window: int = 60) -> RateLimiter:
    client = Clients(settings=ClientSettings(max_attempts=1)).dynamodb()
    return RateLimiter(client, "RateLimitsTable", RateLimitPolicy(limit=limit, window_seconds=window))


def test_over_the_limit_is_refused_with_the_seconds_left_in_the_window(stack):
    limits = limiter()
    now = 1_795_519_990.0  # 10 s into a 60 s window
    assert [limits.check("ip#1", now).count for _ in range(3)] == [1, 2, 3]

    with pytest.raises(RateLimitedError) as refused:
        limits.check("ip#1", now)

    assert refused.value.retry_after == 50
    assert limits.check("ip#2", now).count == 1  # another subject has its own budget
    assert limits.check("ip#1", now + 50).count == 1  # the next window


@pytest.mark.parametrize(
    "fault",
    [
        {"timeout": True},
        {"throttle": True},
        {"error": "InternalServerError", "status": 500},
        {"error": "AccessDeniedException"},
    ],
    ids=["timeout", "throttle", "5xx", "access-denied"],
)
def test_when_the_table_cannot_answer_limiting_is_off(stack, fault):
    stack.faults.add({"service": "dynamodb", "resource": "RateLimitsTable", **fault})

    decision = limiter(limit=1).check("ip#1", 1_795_520_010.0)

    assert (decision.enforced, decision.count) == (False, None)


def test_a_policy_needs_a_positive_limit_and_window():
    with pytest.raises(ValueError, match="limit >= 1"):
        RateLimitPolicy(limit=0, window_seconds=10)


def test_each_window_is_one_item_that_expires_two_windows_later(stack):
    limiter(window=60).check("ip#1", 1_795_519_990.0)

    (item,) = stack.items("RateLimitsTable")
    assert item["subject"] == "ip#1#1795519980"
    assert (item["requests"], item["expiresAt"]) == (1, 1_795_519_980 + 120)


def test_a_corrupted_counter_turns_limiting_off_instead_of_refusing(stack):
    stack.client("dynamodb").put_item(
        TableName="RateLimitsTable",
        Item={"subject": {"S": "ip#1#1795519980"}, "requests": {"S": "lots"}},
    )

    decision = limiter(limit=1).check("ip#1", 1_795_519_990.0)

    assert (decision.enforced, decision.count) == (False, None)
