"""The revocation list fails closed and never forgets a revocation before the token expires."""

from __future__ import annotations

import pytest

from resilience.blacklist import TokenBlacklist
from resilience.breaker import CircuitBreaker, MemoryBreakerStore
from resilience.breaker.config import BreakerPolicy
from resilience.cache import CachePolicy
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


def test_a_flood_of_not_revoked_answers_cannot_evict_a_revocation(stack, clock):
    checks = blacklist(stack, clock, policy=CachePolicy(name="blacklist", ttl_seconds=300, max_items=3))
    with pytest.raises(TokenRevokedError):
        checks.check("revoked-demo-token", clock.now + 3600)
    stack.client("dynamodb").delete_item(TableName=TABLE, Key={"jti": {"S": "revoked-demo-token"}})

    for n in range(20):  # many more "not revoked" answers than the LRU cache holds
        checks.check(f"fresh-{n}", clock.now + 3600)

    with pytest.raises(TokenRevokedError, match="token revoked"):
        checks.check("revoked-demo-token", clock.now + 3600)
    assert stack.requests[("dynamodb", "GetItem")] == 21


def test_once_the_token_has_expired_its_revocation_may_be_forgotten(stack, clock):
    checks = blacklist(stack, clock)
    checks.revoke("j-3", int(clock.now) + 600, now=clock.now)
    stack.client("dynamodb").delete_item(TableName=TABLE, Key={"jti": {"S": "j-3"}})  # what DynamoDB TTL does

    clock.now += 599
    with pytest.raises(TokenRevokedError):
        checks.check("j-3", clock.now + 1)
    clock.now += 2
    checks.check("j-3", clock.now + 3600)  # asked again (the verifier refuses the expired token anyway)
    assert stack.requests[("dynamodb", "GetItem")] == 1


def test_the_revocation_store_is_bounded_and_forgets_the_revocation_expiring_first(stack, clock):
    checks = blacklist(stack, clock, max_revocations=2)
    for jti, lifetime in (("short", 600), ("long", 7200), ("longer", 9000)):
        checks.revoke(jti, int(clock.now) + lifetime, now=clock.now)

    assert checks.revocations_cached == 2
    with pytest.raises(TokenRevokedError):
        checks.check("long", clock.now + 7200)
    assert stack.requests[("dynamodb", "GetItem")] == 0
    with pytest.raises(TokenRevokedError):  # forgotten locally, still in the table
        checks.check("short", clock.now + 600)
    assert stack.requests[("dynamodb", "GetItem")] == 1


def test_a_local_revocation_overrides_a_cached_not_revoked(stack, clock):
    checks = blacklist(stack, clock)
    checks.check("j-4", clock.now + 3600)

    checks.revoke("j-4", int(clock.now) + 3600, now=clock.now)

    with pytest.raises(TokenRevokedError):
        checks.check("j-4", clock.now + 3600)


def test_is_revoked_answers_the_same_question_as_a_bool_failing_closed(stack, clock):
    checks = blacklist(stack, clock)
    assert checks.is_revoked("fresh", clock.now + 3600) is False
    assert checks.is_revoked("revoked-demo-token", clock.now + 3600) is True

    stack.faults.add({"service": "dynamodb", "resource": TABLE, "throttle": True})
    assert checks.is_revoked("other", clock.now + 3600) is True
    assert checks.failures == 1
