"""Disaster recovery drill (docs/runbook.md): a point-in-time restore on the offline runtime, end to end.

The runtime's point-in-time recovery keeps item history on the virtual clock
and refuses what AWS refuses (local_runtime.backups), so restoring "to 2 minutes
ago" here returns the items of 2 minutes ago, not the table as it is now.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_runtime import LocalRuntime, backups
from local_runtime.backups import PITR_LAG_SECONDS
from tools.restore_table import copy_back

ROOT = Path(__file__).resolve().parents[2]
TABLE = "TokenBlacklistTable"


@pytest.fixture
def runtime() -> Iterator[LocalRuntime]:
    started = LocalRuntime(ROOT / "template.yaml", data=ROOT / "events" / "local_data.yaml").start()
    yield started
    started.stop()


def connect(runtime: LocalRuntime, connection_id: str, token: str) -> tuple[int, dict[str, Any]]:
    event = {
        "requestContext": {
            "routeKey": "$connect",
            "eventType": "CONNECT",
            "connectionId": connection_id,
            "requestId": f"req-{connection_id}",
            "identity": {"sourceIp": "203.0.113.10"},
        },
        "headers": {"x-correlation-id": f"corr-{connection_id}", "Authorization": f"Bearer {token}"},
        "queryStringParameters": {"role": "speaker", "tenant": "acme", "session": "town-hall"},
    }
    invocation = runtime.invoke("ConnectFunction", event)
    assert invocation.error_type is None, invocation.error_message
    answer = invocation.payload
    return int(answer["statusCode"]), json.loads(answer["body"])["error"] if "body" in answer else {}


def revocation(jti: str, expires_at: float) -> dict[str, Any]:
    return {"jti": {"S": jti}, "expiresAt": {"N": str(int(expires_at))}}


def jtis(ddb: Any, table: str) -> set[str]:
    return {item["jti"]["S"] for item in ddb.scan(TableName=table, ConsistentRead=True)["Items"]}


def test_a_lost_revocation_is_restored_to_a_point_in_time_and_enforced_again(runtime):
    ddb, clock = runtime.client("dynamodb"), runtime.clock
    stolen = runtime.cognito_token(jti="stolen-1", lifetime_seconds=7200)
    stack_data = jtis(ddb, TABLE)  # the demo revocation events/local_data.yaml loads
    ddb.put_item(TableName=TABLE, Item=revocation("stolen-1", clock.now() + 7200))
    ddb.put_item(TableName=TABLE, Item=revocation("old-1", clock.now() + 7200))
    clock.sleep(60)
    good = clock.now()
    clock.sleep(60)

    # The incident: a bad script deletes revocations and writes junk; the stolen token gets in.
    ddb.delete_item(TableName=TABLE, Key={"jti": {"S": "stolen-1"}})
    ddb.put_item(TableName=TABLE, Item=revocation("junk", clock.now() + 7200))
    assert connect(runtime, "C2=", stolen)[0] == 200

    # Runbook: the restorable window lags 5 minutes; restore the moment before the incident into a new table.
    clock.sleep(PITR_LAG_SECONDS + 30)
    window = ddb.describe_continuous_backups(TableName=TABLE)["ContinuousBackupsDescription"]
    pitr = window["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    assert pitr["EarliestRestorableDateTime"].timestamp() <= good <= pitr["LatestRestorableDateTime"].timestamp()
    restored = ddb.restore_table_to_point_in_time(
        SourceTableName=TABLE, TargetTableName=f"{TABLE}-restored", RestoreDateTime=good
    )["TableDescription"]
    assert restored["RestoreSummary"]["RestoreDateTime"].timestamp() == pytest.approx(good)
    assert jtis(ddb, f"{TABLE}-restored") == stack_data | {"stolen-1", "old-1"}  # as it was, not as it is now

    # The swap: the restored items go back into the stack's table; the incident's writes go.
    assert copy_back(ddb, source=f"{TABLE}-restored", target=TABLE, delete_extra=True).deleted == 1
    assert jtis(ddb, TABLE) == stack_data | {"stolen-1", "old-1"}
    # Validation: the revoked token is refused again (C2's cached 'not revoked', 5 min, expired during the wait).
    assert connect(runtime, "C3=", stolen)[1]["code"] == "TOKEN_REVOKED"


def test_the_latest_restorable_time_is_five_minutes_ago_not_now(runtime):
    ddb, clock = runtime.client("dynamodb"), runtime.clock
    stack_data = jtis(ddb, TABLE)
    ddb.put_item(TableName=TABLE, Item=revocation("early", clock.now() + 7200))
    clock.sleep(PITR_LAG_SECONDS + 10)
    ddb.put_item(TableName=TABLE, Item=revocation("recent", clock.now() + 7200))

    ddb.restore_table_to_point_in_time(SourceTableName=TABLE, TargetTableName="Latest", UseLatestRestorableTime=True)

    assert jtis(ddb, "Latest") == stack_data | {"early"}  # the last 5 minutes are the RPO


def _refusal(call: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    return str(refused.value.response["Error"]["Code"])


def test_restores_aws_would_refuse_are_refused(runtime):
    ddb, clock = runtime.client("dynamodb"), runtime.clock
    start = clock.now()
    clock.sleep(PITR_LAG_SECONDS + 60)

    def restore(**kwargs: Any) -> Any:
        return lambda: ddb.restore_table_to_point_in_time(
            **{"SourceTableName": TABLE, "TargetTableName": "Restored2"} | kwargs
        )

    # RateLimits has no PITR (docs/runbook.md): nothing to restore from.
    assert _refusal(restore(SourceTableName="RateLimitsTable", UseLatestRestorableTime=True)) == (
        "PointInTimeRecoveryUnavailableException"
    )
    assert _refusal(restore(RestoreDateTime=clock.now() - 60)) == "InvalidRestoreTimeException"  # inside the lag
    assert _refusal(restore(RestoreDateTime=start - 3600)) == "InvalidRestoreTimeException"  # before PITR began
    assert _refusal(restore(TargetTableName="MessagesTable", UseLatestRestorableTime=True)) == (
        "TableAlreadyExistsException"
    )
    assert _refusal(restore(SourceTableName="NoSuchTable", UseLatestRestorableTime=True)) == (
        "SourceTableNotFoundException"
    )
    assert _refusal(restore()) == "ValidationException"  # neither a time nor "latest"
    assert _refusal(restore(RestoreDateTime=start + 30, UseLatestRestorableTime=True)) == "ValidationException"
    assert _refusal(restore(UseLatestRestorableTime=True, BillingModeOverride="PROVISIONED")) == ("ValidationException")
    assert "Restored2" not in ddb.list_tables()["TableNames"]


def test_when_old_history_is_dropped_the_window_shrinks_and_older_restores_are_refused(runtime, monkeypatch):
    monkeypatch.setattr(backups, "MAX_SNAPSHOTS", 3)
    ddb, clock = runtime.client("dynamodb"), runtime.clock
    times = []
    for n in range(5):
        times.append(clock.now())
        ddb.put_item(TableName=TABLE, Item=revocation(f"r{n}", clock.now() + 7200))
        clock.sleep(10)
    clock.sleep(PITR_LAG_SECONDS)

    def restore(when: float, target: str) -> Any:
        return lambda: ddb.restore_table_to_point_in_time(
            SourceTableName=TABLE, TargetTableName=target, RestoreDateTime=when
        )

    assert _refusal(restore(times[0], "TooOld")) == "InvalidRestoreTimeException"
    restore(times[3], "Kept")()
    assert {"r0", "r1", "r2", "r3"} <= jtis(ddb, "Kept")
    assert "r4" not in jtis(ddb, "Kept")


def test_a_deleted_signing_key_is_restored_within_its_recovery_window(runtime):
    secrets, clock = runtime.client("secretsmanager"), runtime.clock
    secret = str(runtime.template.function("VerifyTokenFunction").environment["BW_SIGNING_KEY_SECRET"])
    token = runtime.breakwater_token(jti="bot-1", tenant="acme", roles=["speaker"], lifetime_seconds=7200)
    assert connect(runtime, "B1=", token)[0] == 200

    secrets.delete_secret(SecretId=secret, RecoveryWindowInDays=7)
    with pytest.raises(ClientError) as refused:
        secrets.get_secret_value(SecretId=secret)
    assert refused.value.response["Error"]["Code"] == "InvalidRequestException"
    # Detection (docs/runbook.md): once the cached key (5 min) and its stale allowance (5 min) are gone, 500.
    clock.sleep(601)
    status, body = connect(runtime, "B2=", token)
    assert (status, body["code"]) == (500, "JWT_KEY_ERROR")

    secrets.restore_secret(SecretId=secret)

    assert connect(runtime, "B3=", token)[0] == 200  # the same key: tokens issued before the incident work again


def test_every_kind_of_write_is_undone_by_a_restore_on_a_table_with_a_sort_key(runtime):
    ddb, clock = runtime.client("dynamodb"), runtime.clock

    def message(n: int, text: str) -> dict[str, Any]:
        return {"sessionId": {"S": "s1"}, "messageId": {"S": f"m{n}"}, "text": {"S": text}}

    def messages(table: str) -> dict[str, str]:
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
        return {item["messageId"]["S"]: item["text"]["S"] for item in items}

    ddb.put_item(TableName="MessagesTable", Item=message(1, "one"))
    ddb.put_item(TableName="MessagesTable", Item=message(2, "two"))
    clock.sleep(5)
    good = clock.now()
    clock.sleep(5)
    ddb.update_item(
        TableName="MessagesTable",
        Key={"sessionId": {"S": "s1"}, "messageId": {"S": "m1"}},
        UpdateExpression="SET #t = :t",
        ExpressionAttributeNames={"#t": "text"},
        ExpressionAttributeValues={":t": {"S": "garbled"}},
    )
    ddb.batch_write_item(
        RequestItems={
            "MessagesTable": [
                {"DeleteRequest": {"Key": {"sessionId": {"S": "s1"}, "messageId": {"S": "m2"}}}},
                {"PutRequest": {"Item": message(3, "junk")}},
            ]
        }
    )
    ddb.transact_write_items(TransactItems=[{"Put": {"TableName": "MessagesTable", "Item": message(4, "junk")}}])
    assert messages("MessagesTable") == {"m1": "garbled", "m3": "junk", "m4": "junk"}
    clock.sleep(PITR_LAG_SECONDS)

    ddb.restore_table_to_point_in_time(
        SourceTableName="MessagesTable", TargetTableName="MessagesRestored", RestoreDateTime=good
    )

    assert messages("MessagesRestored") == {"m1": "one", "m2": "two"}
