"""The interpreter's copy of JSON values (local_runtime.json_copy)."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from local_runtime.json_copy import json_deepcopy


def _containers(value: object) -> list[object]:
    found: list[object] = []
    if isinstance(value, dict):
        found.append(value)
        for item in value.values():
            found.extend(_containers(item))
    elif isinstance(value, list):
        found.append(value)
        for item in value:
            found.extend(_containers(item))
    return found


def test_a_json_value_is_copied_whole_and_shares_no_container():
    value: dict[str, Any] = {
        "page": {"Items": [{"connectionId": {"S": "L0="}}, {"n": 1.5, "ok": True, "none": None}]},
        "x": [],
    }

    copied = json_deepcopy(value)

    assert copied == value
    originals = {id(c) for c in _containers(value)}
    assert not originals & {id(c) for c in _containers(copied)}
    copied["page"]["Items"][0]["connectionId"]["S"] = "changed"
    assert value["page"]["Items"][0]["connectionId"]["S"] == "L0="


def test_what_is_not_json_is_copied_as_deepcopy_copies_it():
    class Frame:
        def __init__(self) -> None:
            self.stack = [{"a": 1}]

    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    value: list[Any] = [Frame(), ({"t": [1]},), {1, 2}, when]

    copied = json_deepcopy(value)

    assert copied[0] is not value[0]
    assert copied[0].stack == value[0].stack
    assert copied[0].stack is not value[0].stack
    assert copied[1] == copy.deepcopy(value[1])
    assert copied[1][0] is not value[1][0]
    assert copied[2] == {1, 2}
    assert copied[3] == when
