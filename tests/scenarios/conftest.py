"""A session of one speaker and N listeners on a fresh local stack, for the delivery scenarios."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime import LocalRuntime
from local_runtime.sessions import join_session

ROOT = Path(__file__).resolve().parents[2]
SPEAKER = "Speaker0="
SESSION = "town-hall"


@pytest.fixture
def stack() -> Iterator[Callable[..., LocalRuntime]]:
    """``stack(listeners=3, faults=None, parameters=None)``: listeners are ``L0=``, ``L1=``, …"""
    started: list[LocalRuntime] = []

    def make(
        listeners: int = 3, faults: list[dict[str, Any]] | None = None, parameters: dict[str, str] | None = None
    ) -> LocalRuntime:
        runtime = LocalRuntime(ROOT / "template.yaml", faults=faults, parameters=parameters).start()
        started.append(runtime)
        members = [(SPEAKER, "speaker", "u-speaker")] + [(f"L{i}=", "listener", "anonymous") for i in range(listeners)]
        join_session(runtime, SESSION, members)
        return runtime

    yield make
    for runtime in started:
        runtime.stop()
