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


def _create_state_machine(name: str, definition: str) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("stepfunctions", region_name="us-east-1").create_state_machine(
            name=name, definition=definition, roleArn="arn:aws:iam::123456789012:role/StatesRole"
        )


_PASS = '{"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}}'


def test_a_definition_that_failed_validation_fails_on_every_start(monkeypatch, tmp_path):
    # A start remembers only the definitions that parsed: a broken one is refused each time.
    from botocore.exceptions import ClientError

    monkeypatch.setenv("BW_BUILD_CACHE", str(tmp_path))
    seams.install_seams()
    broken = _PASS.replace('"Pass"', '"Passs"')
    for _ in range(2):
        with pytest.raises(ClientError, match="Passs") as refused:
            _create_state_machine("broken", broken)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_a_definition_changed_after_it_was_validated_is_validated_again(monkeypatch, tmp_path):
    from botocore.exceptions import ClientError

    monkeypatch.setenv("BW_BUILD_CACHE", str(tmp_path))
    seams.install_seams()
    _create_state_machine("fine", _PASS)
    _create_state_machine("fine", _PASS)  # remembered: accepted again
    with pytest.raises(ClientError, match="Passs") as refused:
        _create_state_machine("fine", _PASS.replace('"Pass"', '"Passs"'))
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
