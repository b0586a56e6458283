"""The runtime's hooks into pinned moto/botocore internals."""

from __future__ import annotations

import pytest

from local_runtime import seams


def test_every_seam_exists_in_the_pinned_versions():
    seams.verify_seams()


def test_a_moved_seam_fails_loudly_naming_it(monkeypatch):
    moved = (*seams.SEAMS, ("moto.awslambda.models", "LambdaFunction._invoke_in_docker_v2"))
    monkeypatch.setattr(seams, "SEAMS", moved)
    with pytest.raises(seams.SeamMissingError, match=r"moto.awslambda.models:LambdaFunction._invoke_in_docker_v2"):
        seams.verify_seams()


def test_moto_is_the_pinned_version():
    from importlib.metadata import version

    assert version("moto") == "5.2.5", "local_runtime.seams is written against moto 5.2.5"
