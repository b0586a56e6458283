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


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        ("$.results[*].gone[*]", {"results": [{"gone": []}, {"gone": []}]}, []),
        ("$.results[*].gone[*]", {"results": [{"gone": ["a"]}, {"gone": ["b", "c"]}]}, ["a", "b", "c"]),
        ("$.results[*].gone", {"results": []}, []),
        ("$..gone", {"results": []}, []),
        ("$.items[?(@.x)]", {"items": [{"y": 1}]}, []),
    ],
)
def test_indefinite_paths_yield_every_match_even_none(path, data, expected):
    # Jayway semantics, as on AWS: an indefinite path is an array of its matches.
    from moto.stepfunctions.parser.asl.utils.json_path import extract_json

    seams.install_seams()

    assert extract_json(path, data) == expected


def test_a_definite_path_that_matches_nothing_is_still_an_error():
    from moto.stepfunctions.parser.asl.utils.json_path import NoSuchJsonPathError, extract_json

    seams.install_seams()

    with pytest.raises(NoSuchJsonPathError):
        extract_json("$.page.LastEvaluatedKey", {"page": {}})
