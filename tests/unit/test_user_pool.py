"""Who may set a speaker's tenant: an operator only (issue 12, tenant isolation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_runtime.template import LocalTemplate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return LocalTemplate.load(ROOT / "template.yaml").resources


def test_nobody_signs_themselves_up(resources):
    pool = resources["SpeakersUserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True


def test_the_tenant_attribute_is_immutable_and_not_writable_by_the_app(resources):
    pool = resources["SpeakersUserPool"]["Properties"]
    (tenant,) = [a for a in pool["Schema"] if a["Name"] == "tenant"]
    assert tenant["Mutable"] is False
    client = resources["SpeakersUserPoolClient"]["Properties"]
    assert "custom:tenant" in client["ReadAttributes"]
    assert not [a for a in client["WriteAttributes"] if a.startswith("custom:")]
