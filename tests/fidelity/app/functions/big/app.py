"""Returns a string of event["bytes"] ASCII characters: a result over the 256 KiB payload quota."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"blob": "a" * int(event.get("bytes", 257 * 1024))}
