"""The delivery ledger: what each run of a message's delivery already settled, per recipient.

One item per (messageId, batch): the recipients the batch delivered, parked,
found gone or dropped, plus ``settled`` (their union, for the workflow's own
"park what the batch did not settle" path, which can only test membership).
A batch writes its item once, when it ends — not once per recipient — so the
ledger costs one small write per batch.

A second run of the same message (the sender retried, or the workflow was
started again) finds ``Store message`` already done, reads the ledger and
posts only to recipients no run has settled; those it reports as they were
settled. Two items are not batches:

* ``#report`` — the counts the workflow reported when it finished: a sender
  who lost its ack and retries gets them back without a new run;
* ``#lease`` — until when a run started by a sender's retry may still be
  posting. The first run holds an implicit lease (from its acceptance for the
  longest a run can post), so the common path writes no lease at all; two runs
  never post at the same time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from resilience.clients import error_code, translate_errors

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

__all__ = ["OUTCOMES", "DeliveryLedger", "Settlement"]

#: The outcomes a (message, recipient) pair can settle in, in the order they are reported.
OUTCOMES = ("delivered", "gone", "parked", "dropped")
_LEASE = "#lease"
_REPORT = "#report"


@dataclass
class Settlement:
    """Outcome per recipient; a recipient settles once, in the first outcome recorded for it."""

    outcome: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: str, connection_ids: Iterable[str]) -> None:
        for connection_id in connection_ids:
            self.outcome.setdefault(connection_id, outcome)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self.outcome


class DeliveryLedger:
    def __init__(self, dynamodb: DynamoDBClient, table: str, *, now: Callable[[], float]) -> None:
        self._ddb = dynamodb
        self._table = table
        self._now = now

    def record(self, message_id: str, batch: str, outcomes: Mapping[str, Iterable[str]], *, expires_at: int) -> None:
        """Add a batch's outcomes (idempotent: sets are merged, a re-run's batch adds to the same item)."""
        sets = {name: sorted(set(ids)) for name, ids in outcomes.items() if name in OUTCOMES}
        sets = {name: ids for name, ids in sets.items() if ids}
        settled = sorted({c for ids in sets.values() for c in ids})
        if not settled:
            return
        names = {f"#{name}": name for name in sets}
        values: dict[str, Any] = {f":{name}": {"SS": ids} for name, ids in sets.items()}
        values[":settled"] = {"SS": settled}
        values[":expires"] = {"N": str(expires_at)}
        adds = ", ".join([f"#{name} :{name}" for name in sets] + ["settled :settled"])
        with translate_errors("dynamodb", "UpdateItem"):
            self._ddb.update_item(
                TableName=self._table,
                Key={"messageId": {"S": message_id}, "batch": {"S": batch}},
                UpdateExpression=f"ADD {adds} SET expiresAt = :expires",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )

    def settled(self, message_id: str) -> Settlement:
        """Every recipient any run of this message settled (strongly consistent, all pages)."""
        settlement = Settlement()
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "KeyConditionExpression": "messageId = :m",
                "ExpressionAttributeValues": {":m": {"S": message_id}},
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            with translate_errors("dynamodb", "Query"):
                page = self._ddb.query(**kwargs)
            for item in page.get("Items", []):
                for outcome in OUTCOMES:
                    settlement.add(outcome, item.get(outcome, {}).get("SS", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return settlement

    def report(self, message_id: str) -> dict[str, int] | None:
        """The counts a finished run recorded, if any."""
        with translate_errors("dynamodb", "GetItem"):
            item = self._ddb.get_item(
                TableName=self._table,
                Key={"messageId": {"S": message_id}, "batch": {"S": _REPORT}},
                ConsistentRead=True,
            ).get("Item")
        if not item:
            return None
        return {outcome: int(item.get(outcome, {}).get("N", "0")) for outcome in OUTCOMES}

    def take_lease(self, message_id: str, *, seconds: float, first_run_ends: float, expires_at: int) -> float | None:
        """Claim the right to run this message's delivery for ``seconds``.

        Returns None when claimed, else when the current holder's lease ends
        (``first_run_ends`` while only the first run's implicit lease exists).
        """
        now = self._now()
        try:
            self._put_lease(
                message_id,
                until=now + seconds,
                expires_at=expires_at,
                ConditionExpression="(attribute_not_exists(leaseUntil) AND :now >= :first) OR leaseUntil <= :now",
                ExpressionAttributeValues={":now": {"N": f"{now:.3f}"}, ":first": {"N": f"{first_run_ends:.3f}"}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            old: dict[str, Any] = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
            return float(old["leaseUntil"]["N"]) if "leaseUntil" in old else first_run_ends
        return None

    def release(self, message_id: str, *, expires_at: int) -> None:
        """The run that holds the lease has ended with nothing left running: a retry may go now."""
        self._put_lease(message_id, until=0, expires_at=expires_at)

    def _put_lease(self, message_id: str, *, until: float, expires_at: int, **condition: Any) -> None:
        with translate_errors("dynamodb", "PutItem"):
            self._ddb.put_item(
                TableName=self._table,
                Item={
                    "messageId": {"S": message_id},
                    "batch": {"S": _LEASE},
                    "leaseUntil": {"N": f"{until:.3f}"},
                    "expiresAt": {"N": str(expires_at)},
                },
                **condition,
            )
