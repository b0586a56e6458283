"""Clients in a session, for demos, benchmarks and tests of the real template.

A shortcut past admission for benchmarks and tests that are about delivery:
an open WebSocket in the runtime's registry plus the item that ``$connect``
would have stored in the Connections table (``bw demo`` connects through
``$connect`` itself).
"""

from __future__ import annotations

from collections.abc import Iterable

from local_runtime.runtime import LocalRuntime
from resilience.activity import ActivityPolicy, idle_shard

__all__ = ["join_session"]


def join_session(
    runtime: LocalRuntime,
    session: str,
    members: Iterable[tuple[str, str, str]],
    *,
    tenant: str = "acme",
    table: str = "ConnectionsTable",
) -> None:
    """Connect every (connection id, role, user id) to ``session``."""
    ddb = runtime.client("dynamodb")
    shards = ActivityPolicy.from_env(runtime.template.function("ConnectFunction").environment).shards
    now = str(int(runtime.clock.now() * 1000))
    for connection_id, role, user_id in members:
        runtime.connections.connect(connection_id)
        ddb.put_item(
            TableName=table,
            Item={
                "connectionId": {"S": connection_id},
                "sessionId": {"S": session},
                "role": {"S": role},
                "userId": {"S": user_id},
                "tenantId": {"S": tenant},
                "connectedAt": {"N": now},
                "lastActivityTime": {"N": now},
                "idleShard": {"S": idle_shard(connection_id, shards)},
            },
        )
