"""DynamoDB point-in-time recovery, as strict as AWS (moto's is a copy of the table as it is now).

moto's ``RestoreTableToPointInTime`` copies the source's *current* items
whatever the ``RestoreDateTime``, restores tables that have PITR off, and its
``DescribeContinuousBackups`` reports the moment PITR was enabled as both the
earliest and the latest restorable time. A restore drill on it would "work"
and prove nothing. This module, called by the DynamoDB seam (see
:mod:`local_runtime.seams`) around every DynamoDB request:

* keeps the item history of every PITR-enabled table on the virtual clock:
  before the first write of a new second, the table's items are copied, so
  the state at any second since the runtime started can be restored
  (one-second granularity, as AWS's ``RestoreDateTime``: a restore at T
  includes every write made during T's second);
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

Memory is bounded: at most ``MAX_SNAPSHOTS`` copies per table (an hour of
writes every second); beyond that the oldest go and the table's
``EarliestRestorableDateTime`` moves forward with them, so an older restore
is refused, never answered from the wrong copy.

PartiQL writes cannot be attributed to a table cheaply, so they copy every
PITR-enabled table. Writes made straight into moto's backend (provisioning,
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
#: Copies kept per table (see the module's docstring).
MAX_SNAPSHOTS = 3600
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


@dataclass
class _History:
    #: (s, items): the table's items as they were for every second before s (since the previous entry's s).
    snapshots: list[tuple[int, Any]] = field(default_factory=list)
    #: The first second still restorable once old copies were dropped (0: none dropped).
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
            self._record(self._written_tables(action, body))
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

    def _written_tables(self, action: str, body: dict[str, Any]) -> set[str]:
        if action in _PARTIQL_WRITES:
            return set(self._backend().tables)
        if action == "BatchWriteItem":
            return set(body.get("RequestItems") or {})
        if action == "TransactWriteItems":
            names = set()
            for entry in body.get("TransactItems") or []:
                for operation in entry.values() if isinstance(entry, dict) else ():
                    if isinstance(operation, dict) and isinstance(operation.get("TableName"), str):
                        names.add(operation["TableName"])
            return names
        name = body.get("TableName")
        return {name} if isinstance(name, str) else set()

    def _table(self, name: str | None) -> Any:
        if not isinstance(name, str):
            return None
        # A table ARN is accepted wherever a name is.
        return self._backend().tables.get(name.rsplit("/", 1)[-1])

    def _record(self, names: set[str]) -> None:
        second = math.floor(self._now())
        with self._lock:
            for name in names:
                table = self._table(name)
                if table is None or not self._enabled(table):
                    continue
                history = self._history.setdefault(table.name, _History())
                if not history.snapshots or history.snapshots[-1][0] < second:
                    history.snapshots.append((second, copy.deepcopy(table.items)))
                    if len(history.snapshots) > MAX_SNAPSHOTS:
                        until, _ = history.snapshots.pop(0)
                        history.earliest = float(until)

    def _items_at(self, table: Any, when: float) -> Any:
        second = math.floor(when)
        with self._lock:
            history = self._history.get(table.name)
            for until, items in history.snapshots if history else ():
                if until > second:
                    return copy.deepcopy(items)
        return copy.deepcopy(table.items)

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
