"""Sample events are valid JSON, and entry events match their schemas."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from local_runtime.faults import load_fault_rules

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_event_is_json(path: Path):
    json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted((EVENTS / "faults").glob("*.yaml")), ids=lambda p: p.name)
def test_every_fault_file_loads(path: Path):
    assert load_fault_rules(path)


ROOT = EVENTS.parent

#: Entry events and the schema they must match; "body" means the schema is for the
#: WebSocket frame inside the API Gateway event's body.
ENTRY_SCHEMAS = {
    "send_message": ("send_message.json", "body"),
    "disconnect": ("disconnect.json", None),
    "disconnect_cleanup": ("disconnect_cleanup.json", None),
    "deliver_message": ("deliver_message.json", None),
    "message_delivery": ("message_delivery.json", None),
    "connect": ("connect.json", None),
    "authorize_connection": ("authorize_connection.json", None),
    "idle_sweep": ("idle_sweep.json", None),
    "health": ("health.json", None),
}

#: A function validates with its own copy (events/ is not deployed); the copies must not drift.
DEPLOYED_COPIES = {
    "functions/send_message/schema.json": "send_message.json",
    "functions/disconnect/schema.json": "disconnect.json",
    "functions/message_delivery/schema.json": "message_delivery.json",
}


def _samples() -> list[tuple[str, Path]]:
    return [(target, path) for target in ENTRY_SCHEMAS for path in sorted((EVENTS / target).glob("*.json"))]


@pytest.mark.parametrize(("target", "path"), _samples(), ids=lambda v: v if isinstance(v, str) else v.name)
def test_entry_samples_match_their_schema(target: str, path: Path):
    schema_name, mode = ENTRY_SCHEMAS[target]
    schema = json.loads((EVENTS / "schemas" / schema_name).read_text(encoding="utf-8"))
    sample = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(sample["body"]) if mode == "body" else sample, schema)


def test_every_entry_target_has_samples():
    assert all(list((EVENTS / target).glob("*.json")) for target in ENTRY_SCHEMAS)


@pytest.mark.parametrize(("deployed", "published"), sorted(DEPLOYED_COPIES.items()))
def test_a_function_validates_with_the_published_schema(deployed: str, published: str):
    assert json.loads((ROOT / deployed).read_text(encoding="utf-8")) == json.loads(
        (EVENTS / "schemas" / published).read_text(encoding="utf-8")
    )
