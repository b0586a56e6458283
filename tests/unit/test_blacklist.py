"""The revocation list fails closed and never forgets a revocation before the token expires."""

from __future__ import annotations

import pytest

from resilience.blacklist import TokenBlacklist
from resilience.breaker import CircuitBreaker, MemoryBreakerStore
from resilience.breaker.config import BreakerPolicy
from resilience.clients import Clients, ClientSettings
from resilience.errors import TokenRevokedError

TABLE = "TokenBlacklistTable"


def blacklist(stack, clock, **kwargs) -> TokenBlacklist:
    client = Clients(settings=ClientSettings(max_attempts=1)).dynamodb()
    return TokenBlacklist(client, TABLE, clock=clock, **kwargs)


def test_a_token_never_revoked_passes(stack, clock):
    blacklist(stack, clock).check("fresh", clock.now + 3600)


def test_a_revoked_token_is_refused(stack, clock):
    with pytest.raises(TokenRevokedError, match="token revoked"):
        blacklist(stack, clock).check("revoked-demo-token", clock.now + 3600)


def test_a_revocation_stays_cached_until_the_token_expires_even_past_the_cache_ttl(stack, clock):
    checks = blacklist(stack, clock)
    checks.revoke("j-1", int(clock.now) + 3600, now=clock.now)
    stack.client("dynamodb").delete_item(TableName=TABLE, Key={"jti": {"S": "j-1"}})

    clock.now += 3000  # ten times the 300 s cache TTL, still before exp
    with pytest.raises(TokenRevokedError):
        checks.check("j-1", clock.now + 600)
    assert stack.requests[("dynamodb", "GetItem")] == 0


def test_not_revoked_is_cached_for_the_ttl_only(stack, clock):
    checks = blacklist(stack, clock)
    checks.check("j-2", clock.now + 3600)
    stack.client("dynamodb").put_item(TableName=TABLE, Item={"jti": {"S": "j-2"}, "expiresAt": {"N": "4102444800"}})

    checks.check("j-2", clock.now + 3600)  # cached "not revoked": the revocation is not seen yet
    clock.now += 301
    with pytest.raises(TokenRevokedError):
        checks.check("j-2", clock.now + 3600)


@pytest.mark.parametrize(
    "fault",
    [
        {"timeout": True},
        {"throttle": True},
        {"error": "InternalServerError", "status": 500},
        {"error": "AccessDeniedException", "status": 400},
    ],
    ids=["timeout", "throttle", "5xx", "access-denied"],
)
def test_when_dynamodb_cannot_answer_the_token_is_treated_as_revoked(stack, clock, fault):
    checks = blacklist(stack, clock)
    stack.faults.add({"service": "dynamodb", "resource": TABLE, **fault})

    with pytest.raises(TokenRevokedError, match="treated as revoked"):
        checks.check("fresh", clock.now + 3600)
    assert checks.failures == 1


def test_an_open_breaker_means_revoked_without_asking_dynamodb(stack, clock):
    breaker = CircuitBreaker("dynamodb.tokenBlacklist", MemoryBreakerStore(), BreakerPolicy(), clock=clock)
    breaker.force_open()
    checks = blacklist(stack, clock, breaker=breaker)

    with pytest.raises(TokenRevokedError):
        checks.check("fresh", clock.now + 3600)
    assert stack.requests[("dynamodb", "GetItem")] == 0
