"""The container tier's one build on this host's architecture, shared by its modules
(``sam local start-lambda`` for every function, and ``bw up --containers``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def native_template() -> tuple[Path, Path]:
    """The build every case runs on (this host's architecture), and its layer cache."""
    from local_runtime.lambda_containers import on_architecture
    from tests.containers.test_sam_local_invoke import NATIVE, ROOT, WORK, _docker_ready, _layer_by_arn, _sam_build

    _docker_ready(NATIVE)
    source = (
        ROOT / "template.yaml" if NATIVE == "arm64" else on_architecture(ROOT / "template.yaml", WORK / NATIVE, NATIVE)
    )
    return _layer_by_arn(_sam_build(source, WORK / NATIVE / "build", emulated=False))
