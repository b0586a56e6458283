"""The Breakers table: one item per breaker, shared by every environment.

Each operation is one ``UpdateItem`` with ``ReturnValues=ALL_NEW``: DynamoDB
applies it atomically to the item, so counter ADDs from many environments
never lose an update, and the conditional version check makes exactly one
of several racing transitions win.

Item shape (what an ASL ``dynamodb:getItem`` gate reads)::

    name (S, key) · state (S: CLOSED | OPEN | HALF_OPEN) · version (N)
    openedAt (N, epoch s) · nextAttemptAt (N) · nextAttemptAtIso (S, ISO-8601 UTC)
    probeOwner (S) · probeLeaseUntil (N) · forced (BOOL)
    lastFailureAt (N) · lastSuccessAt (N) · updatedAt (N: when the current version began)
    halfOpenSuccesses (N) · m<v>_<owner> (N: when a failing environment last failed)
    n<v>_<bucket> / f<v>_<bucket> / s<v>_<bucket> (N calls / failures / slow calls)
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from resilience.breaker.state import BreakerRecord, counter_name, marker_name, record_from_attributes
from resilience.breaker.store.base import BreakerStore, CountUpdate, StateChange
from resilience.clients import error_code
from resilience.errors import BreakerStoreError
from resilience.timestamps import iso_utc

__all__ = ["DynamoDBBreakerStore"]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _number(value: float) -> Decimal:
    return Decimal(repr(round(value, 6)))


class DynamoDBBreakerStore(BreakerStore):
    def __init__(self, table_name: str, client: Any) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

        self.table_name = table_name
        self._client = client
        self._serialize = TypeSerializer().serialize
        self._deserialize = TypeDeserializer().deserialize

    def _record(self, name: str, item: dict[str, Any]) -> BreakerRecord:
        return record_from_attributes(name, {k: _plain(self._deserialize(v)) for k, v in item.items()})

    def _update(
        self, name: str, expression: str, names: dict[str, str], values: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        """One atomic UpdateItem that answers with the whole item as it is after the write."""
        response = self._client.update_item(
            TableName=self.table_name,
            Key={"name": {"S": name}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            **kwargs,
        )
        return dict(response["Attributes"])

    def get(self, name: str) -> BreakerRecord | None:
        try:
            # Strongly consistent: a cache miss must not resurrect a breaker another environment just opened.
            response = self._client.get_item(TableName=self.table_name, Key={"name": {"S": name}}, ConsistentRead=True)
        except (BotoCoreError, ClientError) as exc:
            raise BreakerStoreError(f"Breakers table unavailable reading {name}") from exc
        item = response.get("Item")
        return self._record(name, item) if item else None

    def add(self, name: str, update: CountUpdate) -> BreakerRecord:
        names: dict[str, str] = {"#state": "state", "#version": "version"}
        values: dict[str, Any] = {":closed": {"S": "CLOSED"}, ":zero": {"N": "0"}}
        sets = [
            "#state = if_not_exists(#state, :closed)",
            "#version = if_not_exists(#version, :zero)",
            "updatedAt = if_not_exists(updatedAt, :now)",
        ]
        adds: list[str] = []
        removes: list[str] = []
        for index, (kind, amount) in enumerate(
            (("n", update.delta.calls), ("f", update.delta.failures), ("s", update.delta.slow))
        ):
            if amount:
                names[f"#c{index}"] = counter_name(kind, update.version, update.bucket)
                values[f":c{index}"] = {"N": str(amount)}
                adds.append(f"#c{index} :c{index}")
        values[":now"] = {"N": str(_number(update.at))}
        if update.mark is not None:
            names["#mark"] = marker_name(update.version, update.mark)
            sets.append("#mark = :now")
        if update.unmark is not None:
            names["#unmark"] = marker_name(update.version, update.unmark)
            removes.append("#unmark")
        if update.delta.failures:
            sets.append("lastFailureAt = :now")
        if update.delta.calls > update.delta.failures:
            sets.append("lastSuccessAt = :now")
        for index, key in enumerate(update.prune):
            names[f"#p{index}"] = key
            removes.append(f"#p{index}")
        expression = "SET " + ", ".join(sets)
        if adds:
            expression += " ADD " + ", ".join(adds)
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        try:
            attributes = self._update(name, expression, names, values)
        except (BotoCoreError, ClientError) as exc:
            raise BreakerStoreError(f"Breakers table unavailable recording {name}") from exc
        return self._record(name, attributes)

    def change(self, name: str, change: StateChange, *, expected_version: int | None) -> BreakerRecord | None:
        names = {"#state": "state", "#version": "version"}
        values: dict[str, Any] = {
            ":state": {"S": str(change.state)},
            ":one": {"N": "1"},
            ":zero": {"N": "0"},
            ":forced": {"BOOL": change.forced},
            ":at": {"N": str(_number(change.at))},
        }
        sets = [
            "#state = :state",
            "#version = if_not_exists(#version, :zero) + :one",
            "forced = :forced",
            "updatedAt = :at",
        ]
        removes: list[str] = []
        fields: dict[str, Any] = {
            "openedAt": change.opened_at,
            "nextAttemptAt": change.next_attempt_at,
            "probeOwner": change.probe_owner,
            "probeLeaseUntil": change.probe_lease_until,
            "halfOpenSuccesses": change.half_open_successes or None,
        }
        fields["nextAttemptAtIso"] = iso_utc(change.next_attempt_at)
        for key, value in fields.items():
            if value is None:
                removes.append(key)
            else:
                values[f":{key}"] = {"S": value} if isinstance(value, str) else {"N": str(_number(value))}
                sets.append(f"{key} = :{key}")
        kwargs: dict[str, Any] = {}
        if expected_version is not None:
            values[":expected"] = {"N": str(expected_version)}
            kwargs["ConditionExpression"] = (
                "attribute_not_exists(#version) OR #version = :expected"
                if expected_version == 0
                else "#version = :expected"
            )
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        try:
            attributes = self._update(name, expression, names, values, **kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise BreakerStoreError(f"Breakers table unavailable changing {name}") from exc
        except BotoCoreError as exc:
            raise BreakerStoreError(f"Breakers table unavailable changing {name}") from exc
        return self._record(name, attributes)

    def names(self) -> list[str]:
        found: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "ProjectionExpression": "#n",
            "ExpressionAttributeNames": {"#n": "name"},
        }
        try:
            while True:
                page = self._client.scan(**kwargs)
                found.extend(item["name"]["S"] for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return sorted(found)
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (BotoCoreError, ClientError) as exc:
            raise BreakerStoreError("Breakers table unavailable listing breakers") from exc
