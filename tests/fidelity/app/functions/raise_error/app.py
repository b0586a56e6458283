"""Raises an exception whose class is named by the event: {"error": "CustomError", "message": "boom"}."""

from __future__ import annotations

from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    error = type(str(event.get("error", "CustomError")), (Exception,), {})
    raise error(str(event.get("message", "")))
