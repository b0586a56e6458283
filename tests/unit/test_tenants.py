"""Tenant validation fails closed; configuration degrades to a bounded stale copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resilience.clients import Clients, ClientSettings
from resilience.errors import TenantRejectedError
from resilience.tenants import MAPPING_KEY, TenantDirectory, config_key

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
        directory(clock).admit("acme", token_tenant=None, anonymous=False)


def test_a_negative_answer_is_never_cached(stack, clock):
    tenants = directory(clock)
    with pytest.raises(TenantRejectedError):
        tenants.admit("umbrella", token_tenant=None, anonymous=False)
    put(stack, MAPPING_KEY, {"umbrella": "acme"})
    tenants.objects.invalidate(MAPPING_KEY)  # the mapping's own cache: a new upload is read after its TTL

    assert tenants.admit("umbrella", token_tenant=None, anonymous=False).tenant_id == "acme"


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
