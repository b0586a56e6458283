"""No signing key, no token: the key is cached, served stale within a bound, never logged."""

from __future__ import annotations

import json
import logging

import pytest

from resilience.clients import Clients, ClientSettings
from resilience.errors import JwtKeyError
from resilience.signing_keys import SigningKeyProvider, parse_signing_key

SECRET = "SigningKeySecret"


def provider(clock) -> SigningKeyProvider:
    return SigningKeyProvider(Clients(settings=ClientSettings(max_attempts=1)).secretsmanager(), SECRET, clock=clock)


def test_the_stack_key_is_read_from_the_generated_secret(stack, clock):
    key = provider(clock).current()

    assert key.kid == "v1"
    assert len(key.key) == 64
    assert "key=" not in repr(key)


def test_the_key_is_served_from_cache_then_stale_within_one_more_ttl_then_refused(stack, clock):
    keys = provider(clock)
    first = keys.current()
    stack.faults.add({"service": "secretsmanager", "error": "InternalServiceError", "status": 500})

    clock.now += 299
    assert keys.current() == first
    clock.now += 200  # expired, within the stale bound (one more TTL)
    assert keys.current() == first
    clock.now += 200
    with pytest.raises(JwtKeyError, match="unavailable"):
        keys.current()


@pytest.mark.parametrize(
    "fault",
    [
        {"timeout": True},
        {"throttle": True},
        {"error": "InternalServiceError", "status": 500},
        {"error": "AccessDeniedException"},
    ],
    ids=["timeout", "throttle", "5xx", "access-denied"],
)
def test_with_nothing_cached_an_outage_is_jwt_key_error(stack, clock, fault):
    stack.faults.add({"service": "secretsmanager", **fault})

    with pytest.raises(JwtKeyError):
        provider(clock).current()


@pytest.mark.parametrize("secret", ['{"kid": "v1"}', "{broken", "short", '{"kid": "v1", "key": 42}'])
def test_a_secret_that_is_not_a_usable_key_is_jwt_key_error(secret):
    with pytest.raises(JwtKeyError):
        parse_signing_key(secret)


def test_the_key_is_in_no_error_message_and_no_application_log(stack, clock, caplog):
    # botocore's own DEBUG wire log would show any response; Lambda runs it at WARNING.
    caplog.set_level(logging.DEBUG, logger="breakwater")
    weak = "0123456789abcdef"
    stack.client("secretsmanager").put_secret_value(
        SecretId=SECRET, SecretString=json.dumps({"kid": "v2", "key": weak})
    )

    with pytest.raises(JwtKeyError) as refused:
        provider(clock).current()

    assert weak not in str(refused.value)
    assert weak not in caplog.text
