"""IdleSweep's steps (seed 001): one function, one ``action`` per state of the workflow.

``begin`` / ``page`` / ``notify`` / ``close`` / ``finish`` are states of
``statemachines/idle_sweep.asl.json``; ``backfill`` is the one-off that
indexes connections stored before the ``ByIdleShard`` index existed
(``bw invoke IdleSweepFunction -e events/idle_sweep/backfill.json``, or
``aws lambda invoke`` after the first deploy). Metrics (Powertools EMF):
``ConnectionsChecked``, ``IdleConnectionsDetected``, ``ConnectionsClosed``,
``ConnectionTimeout`` by Role and Reason, ``SweepDurationMs``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from sweep import SweepPolicy, backfill, begin, close, finish, notify, page

from resilience.activity import ActivityPolicy, idle_cutoff_ms
from resilience.clients import default_clients
from resilience.errors import ValidationError
from resilience.inputs import parse_json, validate_event
from resilience.observability import default_observability, with_observability
from resilience.settings import env_int

_SCHEMA: dict[str, Any] = json.loads((Path(__file__).parent / "schema.json").read_text(encoding="utf-8"))
_observability = default_observability()
_logger, _metrics = _observability.logger, _observability.metrics
_clients = default_clients()


def _policy() -> SweepPolicy:
    env = os.environ
    return SweepPolicy(
        activity=ActivityPolicy.from_env(),
        page_size=env_int(env, "BW_IDLE_SWEEP_PAGE_SIZE", 100, positive=True),
        pages_per_execution=env_int(env, "BW_IDLE_SWEEP_PAGES_PER_EXECUTION", 4, positive=True),
        lock_seconds=env_int(env, "BW_IDLE_SWEEP_LOCK_SECONDS", 300, positive=True),
    )


def _management() -> Any:
    return _clients.apigateway_management(os.environ["BW_WEBSOCKET_ENDPOINT"])


def _timeout_metric(role: str, reason: str) -> None:
    # Its own EMF document: Role and Reason are dimensions of this metric only (seed 001).
    with single_metric(
        name="ConnectionTimeout",
        unit=MetricUnit.Count,
        value=1,
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Breakwater"),
    ) as metric:
        metric.add_dimension(name="Role", value=role)
        metric.add_dimension(name="Reason", value=reason)


def _start_key(cursor: dict[str, Any]) -> dict[str, Any] | None:
    """The cursor's index key (a LastEvaluatedKey as JSON), or ValidationError for any other text."""
    if not cursor.get("startKey"):
        return None
    key = parse_json(cursor["startKey"], what="cursor.startKey", max_bytes=4096)
    if not isinstance(key, dict) or not key or not all(_key_attribute(value) for value in key.values()):
        raise ValidationError("cursor.startKey must be an index key of string and number attributes")
    return key


def _key_attribute(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("S", value.get("N")), str)


def _begin(event: dict[str, Any], now: float) -> dict[str, Any]:
    policy = _policy()
    # A scheduled start has no input; a continuation carries the lock, the cutoff and the cursor.
    continuation: dict[str, Any] = event.get("continuation") or {}
    if continuation:
        _start_key(continuation["cursor"])  # refused before the lock is taken
    owner = str(continuation.get("lockOwner") or event["executionName"])
    continuing = bool(continuation.get("lockOwner"))
    taken = begin(
        _clients.dynamodb(), os.environ["BW_LOCKS_TABLE"], owner=owner, now=now, policy=policy, continuing=continuing
    )
    if not taken["locked"]:
        _logger.info("another sweep is running; this one exits")
        return {"locked": False}
    cursor = continuation.get("cursor") or {"shard": 0, "startKey": None, "done": False}
    now_ms = int(now * 1000)
    return {
        "locked": True,
        "lockOwner": owner,
        # One cutoff for the whole sweep (continuations included); it allows for bounded activity writes.
        "cutoffMs": int(continuation.get("cutoffMs") or idle_cutoff_ms(now_ms, policy.activity)),
        "startedAtMs": int(continuation.get("startedAtMs") or now_ms),
        "cursor": cursor,
        "pagesLeft": policy.pages_this_execution(),
        "maxConcurrency": env_int(os.environ, "BW_IDLE_SWEEP_MAX_CONCURRENCY", 10, positive=True),
    }


def _page(event: dict[str, Any], now: float) -> dict[str, Any]:
    cursor = event["cursor"]
    start_key = _start_key(cursor)  # refused before the lock is renewed
    policy = _policy()
    # Renewed per page, so a long sweep keeps its lock and a lost one (expired, taken over) stops here.
    renewed = begin(
        _clients.dynamodb(),
        os.environ["BW_LOCKS_TABLE"],
        owner=str(event["lockOwner"]),
        now=now,
        policy=policy,
        continuing=True,
    )
    if not renewed["locked"]:
        _logger.warning("the sweep lock was lost; another sweep carries on")
        return {"connections": [], "read": 0, "capacity": 0.0, "cursor": {**cursor, "done": True}, "lockLost": True}
    found = page(
        _clients.dynamodb(),
        os.environ["BW_CONNECTIONS_TABLE"],
        shard=int(cursor["shard"]),
        cutoff_ms=int(event["cutoffMs"]),
        start_key=start_key,
        now_ms=int(now * 1000),
        policy=policy,
    )
    _metrics.add_metric(name="ConnectionsChecked", unit=MetricUnit.Count, value=found["read"])
    _metrics.add_metric(name="IdleConnectionsDetected", unit=MetricUnit.Count, value=len(found["connections"]))
    return found


def _notify(event: dict[str, Any], now: float) -> dict[str, Any]:
    try:
        notify(_management(), event["connectionId"], idle_seconds=int(event["idleSeconds"]), now_ms=int(now * 1000))
    except Exception as exc:
        # Best effort (seed 001): logged, and the workflow closes the connection anyway.
        _logger.warning("connectionTimeout not delivered", extra={"error": type(exc).__name__})
        raise
    return {"notified": True}


def _close(event: dict[str, Any], now: float) -> dict[str, Any]:
    outcome = close(_management(), event["connectionId"])
    _metrics.add_metric(name="ConnectionsClosed", unit=MetricUnit.Count, value=1)
    _timeout_metric(str(event.get("role", "unknown")), "idle" if outcome == "closed" else "already_gone")
    _logger.info("idle connection closed", extra={"outcome": outcome, "idleSeconds": event.get("idleSeconds")})
    return {"closed": outcome}


def _finish(event: dict[str, Any], now: float) -> dict[str, Any]:
    released = finish(_clients.dynamodb(), os.environ["BW_LOCKS_TABLE"], owner=str(event["lockOwner"]))
    duration_ms = int(now * 1000) - int(event["startedAtMs"])
    _metrics.add_metric(name="SweepDurationMs", unit=MetricUnit.Milliseconds, value=duration_ms)
    return {"released": released, "durationMs": duration_ms}


def _backfill(event: dict[str, Any], now: float) -> dict[str, Any]:
    pages: list[int] = []
    updated = backfill(
        _clients.dynamodb(), os.environ["BW_CONNECTIONS_TABLE"], policy=ActivityPolicy.from_env(), on_page=pages.append
    )
    _logger.info("connections indexed for the idle sweep", extra={"updated": updated, "pages": len(pages)})
    return {"indexed": updated, "pages": len(pages)}


_ACTIONS = {
    "begin": _begin,
    "page": _page,
    "notify": _notify,
    "close": _close,
    "finish": _finish,
    "backfill": _backfill,
}


@with_observability
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # The whole step input is checked first: a malformed begin never takes the sweep lock.
    validate_event(event, _SCHEMA, "invalid idle sweep step")
    return _ACTIONS[event["action"]](event, time.time())
