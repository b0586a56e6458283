"""The runtime's hooks into pinned moto/botocore internals."""

from __future__ import annotations

from typing import Any

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


_IN_A_FRESH_INTERPRETER = """
import json, sys
import boto3
from moto import mock_aws
from local_runtime.moto_imports import preload_batch_utils

preload_batch_utils()
import moto.stepfunctions.parser.backend.execution_worker  # the interpreter, as a runtime start imports it

imported = {name: name in sys.modules for name in ("moto.batch.models", "moto.ec2")}
with mock_aws():
    queues = boto3.client("batch", region_name="us-east-1").describe_job_queues()["jobQueues"]
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_batch
import moto.batch.utils
same = state_task_service_batch.JobStatus is moto.batch.utils.JobStatus
print(json.dumps({"imported": imported, "queues": queues, "same_enum": same}))
"""


def test_the_interpreter_loads_without_batch_and_ec2_and_batch_still_answers():
    # A fresh interpreter: this test process has long imported moto's services.
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _IN_A_FRESH_INTERPRETER], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] == {"moto.batch.models": False, "moto.ec2": False}
    assert result["queues"] == []  # the first real use of Batch imports it in full
    assert result["same_enum"] is True


def test_batch_modules_that_moved_fail_loudly_naming_the_seam(monkeypatch, tmp_path):
    import importlib.machinery
    import importlib.util
    import sys

    from local_runtime import moto_imports

    for name in ("moto.batch", "moto.batch.utils", "moto.batch.exceptions"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")  # a moto.batch without utils.py
    moved = importlib.util.spec_from_file_location(
        "moto.batch", tmp_path / "__init__.py", submodule_search_locations=[str(tmp_path)]
    )
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, package=None: moved if name == "moto.batch" else find_spec(name)
    )
    with pytest.raises(seams.SeamMissingError, match=r"moto.batch.utils:JobStatus"):
        moto_imports.preload_batch_utils()
    assert "moto.batch" not in sys.modules  # nothing half-loaded stays behind


def test_every_attribute_type_comes_back_from_dynamodb_as_written():
    # moto's response serializer works out each member's keys once per shape (a seam):
    # every AttributeValue type must still come back as it was written.
    import boto3
    from moto import mock_aws

    seams.install_seams()
    item: dict[str, Any] = {
        "id": {"S": "a"},
        "n": {"N": "1.5"},
        "b": {"B": b"\x00\xff"},
        "ss": {"SS": ["x", "y"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": [b"\x01"]},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": False}, {"M": {}}]}}},
    }
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName="t", Item=item)
        for _ in range(2):  # the second answer comes from the remembered keys
            got: dict[str, Any] = dict(dynamodb.get_item(TableName="t", Key={"id": {"S": "a"}})["Item"])
            sets = {"ss": "SS", "ns": "NS"}  # sets come back in any order
            assert {k: v for k, v in got.items() if k not in sets} == {k: v for k, v in item.items() if k not in sets}
            for name, kind in sets.items():
                assert sorted(got[name][kind]) == item[name][kind]
            page = dynamodb.query(
                TableName="t", KeyConditionExpression="id = :a", ExpressionAttributeValues={":a": {"S": "a"}}
            )
            assert page["Count"] == 1
            assert page["Items"][0]["m"] == item["m"]


def test_finished_interpreter_threads_are_let_go(runtime_factory):
    """moto lists every worker thread it starts and never drops one: a long ``bw up`` (whose
    ticker calls this every tick) would keep each finished Map iteration's thread."""
    from moto.stepfunctions.parser.utils import TMP_THREADS

    from local_runtime.seams import forget_finished_threads

    runtime = runtime_factory()
    assert runtime.run("MapFlow", {"items": [{"id": 1}, {"id": 2}]}).status == "SUCCEEDED"

    assert forget_finished_threads() >= 3  # the program and two iterations
    assert all(thread.is_alive() for thread in TMP_THREADS)
