"""Sleeps event["seconds"] then answers: a task that outlives its TimeoutSeconds."""

from __future__ import annotations

import time
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(float(event.get("seconds", 3)))
    return {"slept": True}
