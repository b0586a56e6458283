"""Tenant validation fails closed; configuration degrades to a bounded stale copy."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError, IncompleteReadError, ReadTimeoutError
from hypothesis import given, settings
from hypothesis import strategies as st

from resilience.clients import Clients, ClientSettings
from resilience.errors import TenantRejectedError
from resilience.tenants import MAPPING_KEY, TenantAdmission, TenantDirectory, config_key

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "tenantconfigbucket"


def directory(clock) -> TenantDirectory:
    return TenantDirectory(Clients(settings=ClientSettings(max_attempts=1)).s3(), BUCKET, clock=clock)


def put(stack, key: str, document: object) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    stack.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)


def test_a_known_enabled_tenant_is_admitted_with_its_config(stack, clock):
    admission = directory(clock).admit("acme.example.com", token_tenant=None, anonymous=True)

    assert admission.to_json() == {
        "tenantId": "acme",
        "config": {"allowAnonymousListeners": True, "maxListenersPerSession": 1000},
    }


@pytest.mark.parametrize(
    ("hint", "token_tenant", "anonymous", "reason"),
    [
        ("umbrella", None, True, "unknown tenant"),
        ("acme", "globex", False, "another tenant"),
        ("globex", None, True, "tenant disabled"),
        ("initech", None, True, "does not admit anonymous listeners"),
    ],
)
def test_a_tenant_that_does_not_admit_the_client_is_rejected(stack, clock, hint, token_tenant, anonymous, reason):
    with pytest.raises(TenantRejectedError, match=reason):
        directory(clock).admit(hint, token_tenant=token_tenant, anonymous=anonymous)


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{not json", "is not JSON"),
        ({"tenantId": "acme", "enabled": "yes", "allowAnonymousListeners": True}, "TENANT_CONFIG_INVALID: enabled"),
        ({"tenantId": "acme", "enabled": True}, "TENANT_CONFIG_INVALID"),
        ({"tenantId": "other", "enabled": True, "allowAnonymousListeners": True}, "does not match its key"),
    ],
)
def test_a_malformed_config_is_a_clear_rejection(stack, clock, document, reason):
    put(stack, config_key("acme"), document)

    with pytest.raises(TenantRejectedError, match=reason):
        directory(clock).admit("acme", token_tenant="acme", anonymous=False)


def test_a_signed_in_client_whose_token_names_no_tenant_is_refused_everywhere(stack, clock):
    tenants = directory(clock)
    with pytest.raises(TenantRejectedError, match="the token names no tenant"):
        tenants.admit("acme", token_tenant=None, anonymous=False)
    assert tenants.admit("acme", token_tenant="acme", anonymous=False).tenant_id == "acme"


def test_a_negative_answer_is_never_cached(stack, clock):
    tenants = directory(clock)
    with pytest.raises(TenantRejectedError):
        tenants.admit("umbrella", token_tenant="acme", anonymous=False)
    put(stack, MAPPING_KEY, {"umbrella": "acme"})
    tenants.objects.invalidate(MAPPING_KEY)  # the mapping's own cache: a new upload is read after its TTL

    assert tenants.admit("umbrella", token_tenant="acme", anonymous=False).tenant_id == "acme"


def test_stale_config_is_served_during_an_s3_outage_only_up_to_its_bound(stack, clock):
    tenants = directory(clock)
    tenants.admit("acme", token_tenant=None, anonymous=True)
    stack.faults.add({"service": "s3", "error": "InternalError", "status": 500})

    clock.now += 121  # the 2 min validation is gone; the objects are still fresh (10 min)
    assert tenants.admit("acme", token_tenant=None, anonymous=True).tenant_id == "acme"
    clock.now += 600  # past the objects' TTL, within one more TTL of staleness
    assert tenants.admit("acme", token_tenant=None, anonymous=True).tenant_id == "acme"
    assert tenants.objects.stats().stale_served >= 1
    clock.now += 600  # past the bound: unverifiable
    with pytest.raises(TenantRejectedError, match="cannot be verified"):
        tenants.admit("acme", token_tenant=None, anonymous=True)


@pytest.mark.parametrize(
    "fault",
    [{"timeout": True}, {"throttle": True}, {"error": "InternalError", "status": 500}, {"error": "AccessDenied"}],
    ids=["timeout", "throttle", "5xx", "access-denied"],
)
def test_an_unverifiable_tenant_with_nothing_cached_is_rejected(stack, clock, fault):
    stack.faults.add({"service": "s3", **fault})

    with pytest.raises(TenantRejectedError, match="cannot be verified"):
        directory(clock).admit("acme", token_tenant=None, anonymous=True)


def test_the_deployed_schema_is_the_published_one():
    deployed = ROOT / "layers" / "resilience" / "resilience" / "schemas" / "tenant_config.json"
    published = ROOT / "events" / "schemas" / "tenant_config.json"
    assert json.loads(deployed.read_text()) == json.loads(published.read_text())


@pytest.mark.parametrize(
    "path", sorted((ROOT / "events" / "tenants").glob("*/config.json")), ids=lambda p: p.parent.name
)
def test_the_sample_tenant_configs_are_valid(path):
    from resilience.tenants import validate_config

    validate_config(json.loads(path.read_text()))


# -- the object body can fail after the response ------------------------------------------------


class _BrokenBody:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, amount: int | None = None) -> bytes:
        raise self.error


class _BodyFails:
    """The real (moto) S3 client, but every object body fails while streaming."""

    def __init__(self, s3: Any, error: Exception) -> None:
        self.s3, self.error, self.failing = s3, error, False

    def get_object(self, **kwargs: Any) -> Any:
        response = self.s3.get_object(**kwargs)
        if self.failing:
            response["Body"] = _BrokenBody(self.error)
        return response


@pytest.mark.parametrize(
    "error",
    [ReadTimeoutError(endpoint_url="https://s3"), IncompleteReadError(actual_bytes=1, expected_bytes=9)],
    ids=["read-timeout", "cut-short"],
)
def test_a_body_that_fails_while_streaming_is_an_outage_served_stale_then_rejected(stack, clock, error):
    s3 = _BodyFails(Clients(settings=ClientSettings(max_attempts=1)).s3(), error)
    tenants = TenantDirectory(cast("Any", s3), BUCKET, clock=clock)
    tenants.admit("acme", token_tenant=None, anonymous=True)
    s3.failing = True

    clock.now += 601  # the objects are stale: the read fails, the stale copy answers
    assert tenants.admit("acme", token_tenant=None, anonymous=True).tenant_id == "acme"
    with pytest.raises(TenantRejectedError, match="cannot be verified"):
        TenantDirectory(cast("Any", s3), BUCKET, clock=clock).admit("acme", token_tenant=None, anonymous=True)


# -- malformed configuration: a clear rejection, never a crash, never an admission ---------------


class _MemoryS3:
    """Just enough of an S3 client: objects in a dict, NoSuchKey otherwise."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": "no"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}


def memory_directory(config: bytes, clock) -> TenantDirectory:
    objects = {MAPPING_KEY: json.dumps({"acme": "acme"}).encode(), config_key("acme"): config}
    return TenantDirectory(cast("Any", _MemoryS3(objects)), BUCKET, clock=clock)


def test_a_config_nested_too_deep_to_parse_is_a_clear_rejection(clock):
    deep = b"[" * 100_000 + b"]" * 100_000

    with pytest.raises(TenantRejectedError, match="TENANT_CONFIG_INVALID"):
        memory_directory(deep, clock).admit("acme", token_tenant="acme", anonymous=False)


def test_an_oversized_config_is_a_clear_rejection(clock):
    with pytest.raises(TenantRejectedError, match=r"TENANT_CONFIG_INVALID: .* too large"):
        memory_directory(b" " * 300_000, clock).admit("acme", token_tenant="acme", anonymous=False)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_almost_configs = st.fixed_dictionaries(
    {},
    optional={
        "tenantId": st.sampled_from(["acme", "other", ""]) | _json,
        "enabled": st.booleans() | _json,
        "allowAnonymousListeners": st.booleans() | _json,
        "maxListenersPerSession": st.integers(min_value=-5, max_value=200_000) | _json,
        "allowedOrigins": st.lists(st.sampled_from(["https://a.example", "not a uri", ""]), max_size=3) | _json,
        "extra": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        _almost_configs.map(lambda d: json.dumps(d).encode()),
        _json.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    ),
    st.booleans(),
)
def test_any_config_object_is_either_a_valid_admitting_config_or_a_rejection(document, anonymous):
    from tests.conftest import FakeClock

    try:
        admission = memory_directory(document, FakeClock()).admit("acme", token_tenant=None, anonymous=anonymous)
    except TenantRejectedError:
        return
    assert isinstance(admission, TenantAdmission)
    config = json.loads(document)
    assert config["tenantId"] == "acme"
    assert config["enabled"] is True
    assert not anonymous or config["allowAnonymousListeners"] is True


def test_rejections_do_not_log_or_echo_the_tenant_hint_as_a_tenant(clock, caplog):
    caplog.set_level(logging.DEBUG)
    hint = "evil.example.com<script>"

    with pytest.raises(TenantRejectedError) as refused:
        memory_directory(b"{}", clock).admit(hint, token_tenant=None, anonymous=True)

    assert hint not in str(refused.value)
    assert hint not in caplog.text
