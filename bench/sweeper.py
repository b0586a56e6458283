"""The idle sweep at scale (issue 7): 100 000 connections, 100 idle.

Loads the Connections table of the real template on the offline runtime, runs
one IdleSweep execution (ByIdleShard index Query, paged), and beside it a full
Scan of the same table — what seed 001's sweeper did — in the same run. Prints
items read, read capacity (as DynamoDB would bill it: 4 KB units, eventually
consistent reads at half a unit) and wall time for both. Asserts nothing.
Goal: items read <= 2 x idle. Last line:
``connections=… idle=… items_read=… scan_items_read=… wall_s=…``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "resilience")]

from local_runtime import LocalRuntime  # noqa: E402
from local_runtime.template import ACCOUNT_ID  # noqa: E402
from resilience.activity import idle_shard  # noqa: E402

CONNECTIONS = 100_000
IDLE = 100
SHARDS = 4


def _item(n: int, now_ms: int) -> dict[str, Any]:
    connection_id = f"C{n:06d}="
    idle = n % (CONNECTIONS // IDLE) == 0
    last = now_ms - (600_000 if idle else 5_000)
    return {
        "connectionId": {"S": connection_id},
        "tenantId": {"S": "acme"},
        "sessionId": {"S": f"session-{n % 500}"},
        "role": {"S": "listener"},
        "userId": {"S": "anonymous"},
        "connectedAt": {"N": str(last)},
        "lastActivityTime": {"N": str(last)},
        "expiresAt": {"N": str(now_ms // 1000 + 10_800)},
        "idleShard": {"S": idle_shard(connection_id, SHARDS)},
    }


def _read_units(item_bytes: int) -> float:
    return math.ceil(max(item_bytes, 1) / 4096) * 0.5


def main() -> None:
    with LocalRuntime(ROOT / "template.yaml", parameters={"IdleSweepPagesPerExecution": "200"}) as runtime:
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[ACCOUNT_ID][runtime.region]
        now_ms = int(runtime.clock.now() * 1000)
        started = time.perf_counter()
        for n in range(CONNECTIONS):
            item = _item(n, now_ms)
            backend.put_item("ConnectionsTable", item)
            if n % (CONNECTIONS // IDLE) == 0:
                runtime.connections.connect(item["connectionId"]["S"])
        load_s = time.perf_counter() - started

        started = time.perf_counter()
        result = runtime.run("IdleSweep", {})
        sweep_s = time.perf_counter() - started
        pages = [row for row in result.trace().rows if row.name == "Read a page of idle connections"]
        sweep_read = sum(len(row.output["page"]["connections"]) for row in pages)
        sweep_bytes = sum(len(json.dumps(c)) for row in pages for c in row.output["page"]["connections"])

        ddb = runtime.client("dynamodb")
        started = time.perf_counter()
        scan_read, scan_bytes, key = 0, 0, None
        while True:
            request: dict[str, Any] = {"TableName": "ConnectionsTable"}
            if key:
                request["ExclusiveStartKey"] = key
            page = ddb.scan(**request)
            scan_read += page["ScannedCount"]
            scan_bytes += sum(len(json.dumps(item)) for item in page["Items"])
            key = page.get("LastEvaluatedKey")
            if not key:
                break
        scan_s = time.perf_counter() - started
        still_idle = sum(1 for c in runtime.connections.all() if c.open)

    # Query and Scan bill the bytes read, rounded up per 4 KB, per page: estimate per item set.
    sweep_units = _read_units(sweep_bytes)
    scan_units = _read_units(scan_bytes)
    print(f"loaded {CONNECTIONS} connections ({IDLE} idle) in {load_s:.1f} s; sweep result {result.status}")
    print(f"{'':<26}{'items read':>12}{'read units':>12}{'wall s':>10}")
    print(f"{'IdleSweep (index Query)':<26}{sweep_read:>12}{sweep_units:>12.1f}{sweep_s:>10.2f}")
    print(f"{'full Scan (seed 001)':<26}{scan_read:>12}{scan_units:>12.1f}{scan_s:>10.2f}")
    print(f"index pages: {len(pages)}; idle connections closed: {IDLE - still_idle}, left open: {still_idle}")
    ratio = scan_read / max(sweep_read, 1)
    print(f"items read / idle = {sweep_read / IDLE:.2f} (goal <= 2); scan / sweep items = {ratio:.0f}x")
    print("(wall time is moto's: its index Query walks the table in Python; DynamoDB reads only the index range)")
    figures = f"connections={CONNECTIONS} idle={IDLE} items_read={sweep_read} scan_items_read={scan_read}"
    print(f"{figures} wall_s={sweep_s:.2f}")


if __name__ == "__main__":
    main()
