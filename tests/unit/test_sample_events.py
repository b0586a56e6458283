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


def test_send_message_samples_match_the_frame_schema():
    schema = json.loads((EVENTS / "schemas" / "send_message.json").read_text(encoding="utf-8"))
    for path in (EVENTS / "send_message").glob("*.json"):
        jsonschema.validate(json.loads(json.loads(path.read_text(encoding="utf-8"))["body"]), schema)
