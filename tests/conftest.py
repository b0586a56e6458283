"""Shared fixtures. Fake AWS credentials are set before anything imports boto3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runtime.runtime import fake_aws_environment

fake_aws_environment()

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_TEMPLATE = ROOT / "tests" / "fixtures" / "app" / "template.yaml"


@pytest.fixture
def fixture_template() -> Path:
    return FIXTURE_TEMPLATE


@pytest.fixture
def runtime_factory() -> Iterator[object]:
    """Start LocalRuntimes on the fixture app; each is stopped after the test."""
    from local_runtime import LocalRuntime

    started: list[LocalRuntime] = []

    def make(**kwargs: object) -> LocalRuntime:
        runtime = LocalRuntime(FIXTURE_TEMPLATE, **kwargs)  # type: ignore[arg-type]
        started.append(runtime.start())
        return runtime

    yield make
    for runtime in reversed(started):
        runtime.stop()


@pytest.fixture
def stack() -> Iterator[object]:
    """The real template on the local runtime, with its stack data (tenant configs, revoked ids)."""
    from local_runtime import LocalRuntime

    with LocalRuntime(ROOT / "template.yaml", data=ROOT / "events" / "local_data.yaml") as runtime:
        yield runtime


class FakeClock:
    """A clock tests move by hand: ``clock.now += 60``."""

    def __init__(self, now: float = 1_795_520_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
