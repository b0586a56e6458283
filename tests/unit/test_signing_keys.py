"""No signing key, no token: the key is cached, served stale within a bound, never logged."""

from __future__ import annotations

import json
import logging

import pytest

from resilience.clients import Clients, ClientSettings
from resilience.errors import JwtKeyError
from resilience.signing_keys import SigningKeyProvider, parse_signing_key, parse_signing_keys
from resilience.tokens import SigningKey

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


OLD, NEW = "o" * 40, "n" * 40


@pytest.mark.parametrize(
    "secret",
    [
        '{"kid": "v1"}',
        "{broken",
        "short",
        '{"kid": "v1", "key": 42}',
        json.dumps({"kid": 7, "key": NEW}),
        json.dumps({"kid": "v2", "key": NEW, "previous": "v1"}),
        json.dumps({"kid": "v2", "key": NEW, "previous": {"kid": "v1", "key": "short"}}),
        json.dumps({"kid": "v2", "key": NEW, "previous": {"kid": "v2", "key": OLD}}),
    ],
    ids=[
        "no-key",
        "not-json",
        "too-short",
        "key-not-a-string",
        "kid-not-a-string",
        "previous-not-an-object",
        "previous-too-short",
        "previous-same-kid",
    ],
)
def test_a_secret_that_is_not_a_usable_key_ring_is_jwt_key_error(secret):
    with pytest.raises(JwtKeyError) as refused:
        parse_signing_keys(secret)
    assert NEW not in str(refused.value)
    assert OLD not in str(refused.value)


def test_a_plain_string_secret_is_one_key_named_default():
    assert parse_signing_keys(NEW) == (SigningKey("default", NEW.encode()),)


def test_during_a_rotation_the_secret_holds_the_current_and_the_previous_version():
    secret = json.dumps({"kid": "v2", "key": NEW, "previous": {"kid": "v1", "key": OLD}})

    assert [k.kid for k in parse_signing_keys(secret)] == ["v2", "v1"]
    assert parse_signing_key(secret) == SigningKey("v2", NEW.encode())  # tokens are issued with v2 only


def test_a_rotated_secret_is_picked_up_after_the_cache_ttl(stack, clock):
    keys = provider(clock)
    first = keys.current()
    rotated = {"kid": "v2", "key": NEW, "previous": {"kid": first.kid, "key": first.key.decode()}}
    stack.client("secretsmanager").put_secret_value(SecretId=SECRET, SecretString=json.dumps(rotated))

    assert keys.current() == first  # cached
    clock.now += 301
    assert keys.current().kid == "v2"
    assert [k.kid for k in keys.accepted()] == ["v2", first.kid]


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
