"""DynamoDB point-in-time recovery, as strict as AWS (moto's is a copy of the table as it is now).

moto's ``RestoreTableToPointInTime`` copies the source's *current* items
whatever the ``RestoreDateTime``, restores tables that have PITR off, and its
``DescribeContinuousBackups`` reports the moment PITR was enabled as both the
earliest and the latest restorable time. A restore drill on it would "work"
and prove nothing. This module, called by the DynamoDB seam (see
:mod:`local_runtime.seams`) around every DynamoDB request:

* keeps the item history of every PITR-enabled table on the virtual clock:
  before each write, the previous version of every item it touches (or
  nothing, for a new item) is journalled with the time, so the state at any
  second since the runtime started is the current items with the later
  writes undone (one-second granularity, as AWS's ``RestoreDateTime``: a
  restore at T includes every write made during T's second);
* answers ``DescribeContinuousBackups`` with AWS's window:
  ``EarliestRestorableDateTime`` is when PITR was enabled (or the runtime
  started, if later: no history before it; or 35 days ago, the retention),
  ``LatestRestorableDateTime`` is 5 minutes before now (AWS: "typically 5
  minutes before the current time" — the RPO of a restore);
* refuses a restore as AWS does: ``PointInTimeRecoveryUnavailableException``
  when the source has PITR off, ``InvalidRestoreTimeException`` for a time
  outside the window, ``TableAlreadyExistsException`` for an existing target,
  ``SourceTableNotFoundException`` for a missing source, and
  ``ValidationException`` for neither or both of ``RestoreDateTime`` and
  ``UseLatestRestorableTime`` — and for the overrides (indexes, billing, SSE),
  which moto would silently ignore;
* fills the restored table with the items as they were at the restore time
  and reports that time in its ``RestoreSummary``.

Memory is bounded: at most ``MAX_SNAPSHOTS`` journal entries per table;
beyond that the oldest go and the table's ``EarliestRestorableDateTime``
moves past them, so an older restore is refused, never answered wrongly.

PartiQL writes cannot be attributed to items cheaply, so they journal a copy
of every PITR-enabled table. Writes made straight into moto's backend (provisioning,
test set-up) are not requests and are not in the history.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local_runtime.template import ACCOUNT_ID

__all__ = ["MAX_SNAPSHOTS", "PITR_LAG_SECONDS", "ContinuousBackups"]

#: AWS: LatestRestorableDateTime "is typically 5 minutes before the current time".
PITR_LAG_SECONDS = 300.0
#: Journal entries kept per table (see the module's docstring).
MAX_SNAPSHOTS = 100_000
_DAY = 86_400.0
_TARGET_PREFIX = "DynamoDB_20120810."
_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
_PARTIQL_WRITES = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})
_UNSUPPORTED_OVERRIDES = (
    "BillingModeOverride",
    "GlobalSecondaryIndexOverride",
    "LocalSecondaryIndexOverride",
    "ProvisionedThroughputOverride",
    "OnDemandThroughputOverride",
    "SSESpecificationOverride",
)

Refusal = tuple[int, dict[str, str], str]


def _refusal(code: str, message: str) -> Refusal:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message})
    return 400, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": str(uuid.uuid4())}, body


@dataclass(frozen=True, slots=True)
class _Entry:
    """What one write replaced: an item's previous version (None: it did not exist), or the whole table."""

    second: int
    hash_key: Any = None
    range_key: Any = None
    previous: Any = None
    whole_table: bool = False


@dataclass
class _History:
    journal: list[_Entry] = field(default_factory=list)
    #: The first second still restorable once old entries were dropped (0: none dropped).
    earliest: float = 0.0


class ContinuousBackups:
    """The PITR history of one runtime's tables (moto's backend is reached through ``backend``)."""

    def __init__(self, now: Callable[[], float], region: str) -> None:
        self._now = now
        self._region = region
        self._started_at = now()
        self._lock = threading.Lock()
        self._history: dict[str, _History] = {}
        #: Restore time of each restore moto is running, by target table (computed once, before moto).
        self._pending: dict[str, float] = {}

    def _backend(self) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[ACCOUNT_ID][self._region]

    def _enabled(self, table: Any) -> bool:
        description = table.continuous_backups.get("PointInTimeRecoveryDescription", {})
        return bool(description.get("PointInTimeRecoveryStatus") == "ENABLED")

    def window(self, table: Any) -> tuple[float, float]:
        """(EarliestRestorableDateTime, LatestRestorableDateTime) of a PITR-enabled table, now."""
        now = self._now()
        description = table.continuous_backups["PointInTimeRecoveryDescription"]
        enabled_at = float(description.get("EarliestRestorableDateTime") or self._started_at)
        period = float(description.get("RecoveryPeriodInDays") or 35) * _DAY
        with self._lock:
            history = self._history.get(table.name)
            dropped = history.earliest if history else 0.0
        earliest = max(enabled_at, self._started_at, now - period, dropped)
        return earliest, max(earliest, now - PITR_LAG_SECONDS)

    # -- the seam's entry points ------------------------------------------------------------

    def before(self, request: Any) -> Refusal | None:
        """Called (under the DynamoDB lock) before moto sees ``request``; a refusal answers it instead."""
        action, body = self._parse(request)
        if action in _WRITES or action in _PARTIQL_WRITES:
            self._record(self._writes(action, body))
        elif action == "DescribeContinuousBackups":
            self._refresh_window(body.get("TableName"))
        elif action == "RestoreTableToPointInTime":
            return self._check_restore(body)
        return None

    def after(self, request: Any, status: int) -> None:
        """Called (under the DynamoDB lock) after moto answered ``request`` with ``status``."""
        action, body = self._parse(request)
        if action == "RestoreTableToPointInTime":
            when = self._pending.pop(str(body.get("TargetTableName")), None)
            if status == 200 and when is not None:
                self._fill_restored(body, when)

    # -- history --------------------------------------------------------------------------------

    def _parse(self, request: Any) -> tuple[str, dict[str, Any]]:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        if not target.startswith(_TARGET_PREFIX):
            return "", {}
        raw = request.body or b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            return "", {}
        return target.removeprefix(_TARGET_PREFIX), body if isinstance(body, dict) else {}

    def _writes(self, action: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None]]:
        """(table, key or item) of every item a write request may change; None: the whole table."""
        if action in _PARTIQL_WRITES:
            return [(name, None) for name in self._backend().tables]
        if action == "BatchWriteItem":
            found: list[tuple[str, dict[str, Any] | None]] = []
            for name, requests in (body.get("RequestItems") or {}).items():
                for request in requests if isinstance(requests, list) else ():
                    put, delete = request.get("PutRequest") or {}, request.get("DeleteRequest") or {}
                    found.append((name, put.get("Item") or delete.get("Key") or None))
            return found
        if action == "TransactWriteItems":
            found = []
            for entry in body.get("TransactItems") or []:
                for kind in ("Put", "Update", "Delete"):
                    operation = entry.get(kind) if isinstance(entry, dict) else None
                    if isinstance(operation, dict) and isinstance(operation.get("TableName"), str):
                        found.append((operation["TableName"], operation.get("Item") or operation.get("Key")))
            return found
        name = body.get("TableName")
        if not isinstance(name, str):
            return []
        return [(name, body.get("Item") if action == "PutItem" else body.get("Key"))]

    def _table(self, name: str | None) -> Any:
        if not isinstance(name, str):
            return None
        # A table ARN is accepted wherever a name is.
        return self._backend().tables.get(name.rsplit("/", 1)[-1])

    @staticmethod
    def _key_of(table: Any, item: dict[str, Any]) -> tuple[Any, Any]:
        from moto.dynamodb.models.dynamo_type import DynamoType

        hash_key = DynamoType(item[table.hash_key_attr])
        range_key = DynamoType(item[table.range_key_attr]) if table.range_key_attr else None
        return hash_key, range_key

    def _record(self, writes: list[tuple[str, dict[str, Any] | None]]) -> None:
        second = math.floor(self._now())
        with self._lock:
            for name, item in writes:
                table = self._table(name)
                if table is None or not self._enabled(table):
                    continue
                history = self._history.setdefault(table.name, _History())
                if item is None:
                    entry = _Entry(second, previous=copy.deepcopy(table.items), whole_table=True)
                else:
                    try:
                        hash_key, range_key = self._key_of(table, item)
                    except (KeyError, TypeError, AttributeError):
                        continue  # moto refuses a request without the key; nothing changes
                    found = table.items.get(hash_key)
                    if range_key is not None:
                        found = found.get(range_key) if isinstance(found, dict) else None
                    entry = _Entry(second, hash_key, range_key, copy.deepcopy(found))
                history.journal.append(entry)
                if len(history.journal) > MAX_SNAPSHOTS:
                    dropped = history.journal.pop(0)
                    history.earliest = float(dropped.second + 1)

    def _items_at(self, table: Any, when: float) -> Any:
        """The table's items as they were at the end of ``when``'s second: later writes undone, newest first."""
        second = math.floor(when)
        with self._lock:
            items = copy.deepcopy(table.items)
            history = self._history.get(table.name)
            for entry in reversed(history.journal if history else []):
                if entry.second <= second:
                    continue  # not break: threads on forked timelines may journal slightly out of order
                if entry.whole_table:
                    items = copy.deepcopy(entry.previous)
                elif entry.range_key is None:
                    if entry.previous is None:
                        items.pop(entry.hash_key, None)
                    else:
                        items[entry.hash_key] = copy.deepcopy(entry.previous)
                else:
                    rows = items.setdefault(entry.hash_key, {})
                    if entry.previous is None:
                        rows.pop(entry.range_key, None)
                        if not rows:
                            items.pop(entry.hash_key, None)
                    else:
                        rows[entry.range_key] = copy.deepcopy(entry.previous)
            return items

    # -- DescribeContinuousBackups ----------------------------------------------------------------

    def _refresh_window(self, name: Any) -> None:
        table = self._table(name)
        if table is not None and self._enabled(table):
            description = table.continuous_backups["PointInTimeRecoveryDescription"]
            earliest, latest = self.window(table)
            description["EarliestRestorableDateTime"] = earliest
            description["LatestRestorableDateTime"] = latest

    # -- RestoreTableToPointInTime ----------------------------------------------------------------

    def _check_restore(self, body: dict[str, Any]) -> Refusal | None:
        for override in _UNSUPPORTED_OVERRIDES:
            if override in body:
                return _refusal("ValidationException", f"{override} is not supported by the offline runtime")
        source_name = body.get("SourceTableName") or body.get("SourceTableArn")
        source = self._table(source_name)
        if source is None:
            return _refusal("SourceTableNotFoundException", f"Source table not found: {source_name}")
        target = body.get("TargetTableName")
        if target in self._backend().tables:
            return _refusal("TableAlreadyExistsException", f"Table already exists: {target}")
        if not self._enabled(source):
            return _refusal(
                "PointInTimeRecoveryUnavailableException",
                f"Point in time recovery is not enabled for table '{source.name}'",
            )
        when = self._restore_time(body, source)
        if isinstance(when, tuple):
            return when
        self._pending[str(target)] = when
        return None

    def _restore_time(self, body: dict[str, Any], source: Any) -> float | Refusal:
        latest_flag = body.get("UseLatestRestorableTime") is True
        requested = body.get("RestoreDateTime")
        if latest_flag == (requested is not None):
            return _refusal(
                "ValidationException", "Specify exactly one of RestoreDateTime and UseLatestRestorableTime=true"
            )
        earliest, latest = self.window(source)
        if latest_flag:
            return latest
        if not isinstance(requested, int | float) or isinstance(requested, bool):
            return _refusal("ValidationException", "RestoreDateTime is not a timestamp")
        when = float(requested)
        if not earliest <= when <= latest:
            return _refusal(
                "InvalidRestoreTimeException",
                f"RestoreDateTime must be between {earliest:.0f} and {latest:.0f} (epoch seconds)",
            )
        return when

    def _fill_restored(self, body: dict[str, Any], when: float) -> None:
        source = self._table(body.get("SourceTableName") or body.get("SourceTableArn"))
        restored = self._table(body.get("TargetTableName"))
        if source is None or restored is None:
            raise RuntimeError("moto restored a table the runtime cannot find")
        restored.items = self._items_at(source, when)
        restored.restore_date_time = when
