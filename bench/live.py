"""Messages through the live stack (`bw up`, issue 14) with real WebSocket clients.

The real template behind the live gateway, in this process; 200 listeners and one
speaker connect over 127.0.0.1 with the ``websockets`` library (each through
``$connect`` and the AuthorizeConnection workflow). The speaker then sends
messages one after another, each waiting for its ack (the client contract), and
every listener reads every message. Measured:

* start-up: the whole live stack, and the runtime's part of it (moto, provisioning);
* connects/s: 200 listeners connecting, 25 at a time;
* messages/s: speaker messages accepted and acked per second (each is a fan-out
  of 200 postToConnection calls), and frames/s delivered to listeners;
* ack latency p50 / p95 (speaker send to ack).

The clients run in a child process (``--clients``), so their own frame handling
does not share the stack's GIL; ``--in-process`` runs them beside the stack instead.
Rate limits are raised (every client is 127.0.0.1). Each figure is printed beside
REFERENCE, the same bench at an earlier commit on the same machine (no older path
runs in this process to measure it beside). Prints, asserts nothing. Last line:
``startup_s=… connects_per_s=… messages_per_s=… deliveries_per_s=… ack_p50_ms=… ack_p95_ms=…``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "resilience")]

from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from local_runtime import LocalRuntime  # noqa: E402
from local_runtime.gateway import RealTimeLoop  # noqa: E402
from local_runtime.live import LiveStack  # noqa: E402

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
LISTENERS = int(ARGS[0]) if ARGS else 200
MESSAGES = int(ARGS[1]) if len(ARGS) > 1 else 20
SESSION = "bench"
#: The per-IP and per-sender limits and the stage's throttling are lifted: the figures are
#: the gateway's and the handlers' throughput, not the limits'.
PARAMETERS = {
    "ConnectRateLimit": "1000000",
    "RateLimitMessages": "1000000",
    "ConnectThrottlingBurstLimit": "1000000",
    "WebSocketThrottlingBurstLimit": "1000000",
}


#: The same bench (200 listeners, 20 messages, clients in a child process) at 502c483, before
#: the runtime kept parsed programs, copied JSON values without ``copy.deepcopy``, remembered
#: moto's response keys and the functions compiled their schemas once: median of 3 runs,
#: interleaved with 3 runs of the newer code on the same (shared, 2-core) machine; the load
#: of that machine moves single runs by 30 % (a quieter run of 502c483: 0.40 messages/s).
REFERENCE_COMMIT = "502c483"
REFERENCE_RUN = (200, 20)
REFERENCE = {
    "connects_per_s": 9.1,
    "messages_per_s": 0.32,
    "deliveries_per_s": 65.0,
    "ack_p50_ms": 3033.0,
    "ack_p95_ms": 4025.0,
}


def versus(key: str, value: float, unit: str, digits: int) -> str:
    """``value`` beside the reference, with the factor (higher is better for rates, lower for latency)."""
    if (LISTENERS, MESSAGES) != REFERENCE_RUN:
        return f"{value:.{digits}f}{unit}"  # the reference is of another size of run
    reference = REFERENCE[key]
    better = value / reference if not key.endswith("_ms") else reference / value
    return f"{value:.{digits}f}{unit} ({REFERENCE_COMMIT}: {reference:.{digits}f}{unit}, x{better:.2f})"


def frame(n: int) -> str:
    return json.dumps(
        {
            "action": "sendMessage",
            "sessionId": SESSION,
            "clientMessageId": f"{n:08x}-0000-4000-8000-000000000000",
            "body": {"n": n, "text": "x" * 200},
        }
    )


async def bench(base_url: str, token: str) -> dict[str, float]:
    url = f"{base_url}/?tenant=acme&session={SESSION}"
    speaker = await connect(f"{url}&role=speaker", additional_headers={"Authorization": f"Bearer {token}"})
    gate = asyncio.Semaphore(25)

    async def listener() -> ClientConnection:
        async with gate:
            return await connect(f"{url}&role=listener", open_timeout=300)

    began = time.perf_counter()
    listeners = await asyncio.gather(*(listener() for _ in range(LISTENERS)))
    connect_seconds = time.perf_counter() - began

    async def read(client: ClientConnection) -> int:
        got = 0
        while got < MESSAGES:
            json.loads(await asyncio.wait_for(client.recv(), 300))
            got += 1
        return got

    readers = [asyncio.ensure_future(read(client)) for client in listeners]
    latencies: list[float] = []
    began = time.perf_counter()
    for n in range(1, MESSAGES + 1):
        sent = time.perf_counter()
        await speaker.send(frame(n))
        ack = json.loads(await asyncio.wait_for(speaker.recv(), 300))
        latencies.append(time.perf_counter() - sent)
        if ack.get("type") != "ack":
            print(f"message {n}: {ack}")
    acked_seconds = time.perf_counter() - began
    delivered = sum(await asyncio.gather(*readers))
    delivered_seconds = time.perf_counter() - began
    await asyncio.gather(*(client.close() for client in (speaker, *listeners)))
    latencies.sort()
    return {
        "connects_per_s": LISTENERS / connect_seconds,
        "messages_per_s": MESSAGES / acked_seconds,
        "deliveries_per_s": delivered / delivered_seconds,
        "ack_p50_ms": 1000 * statistics.median(latencies),
        "ack_p95_ms": 1000 * latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
    }


def clients() -> None:
    """The child process: ``--clients URL TOKEN`` prints the figures as JSON."""
    url, token = sys.argv[sys.argv.index("--clients") + 1 : sys.argv.index("--clients") + 3]
    print(json.dumps(asyncio.run(bench(url, token))))


def main() -> None:
    if "--clients" in sys.argv:
        clients()
        return
    logging.disable(logging.WARNING)
    runtime = LocalRuntime(ROOT / "template.yaml", parameters=PARAMETERS, data=ROOT / "events" / "local_data.yaml")
    stack = LiveStack(runtime).start()
    try:
        print(f"start-up: {stack.started_in:.2f} s (runtime {stack.runtime_started_in:.2f} s)")
        assert stack.gateway is not None
        token = runtime.cognito_token()
        if "--in-process" in sys.argv:
            with asyncio.Runner(loop_factory=RealTimeLoop) as runner:
                figures = runner.run(bench(stack.gateway.url, token))
        else:
            child = subprocess.run(
                [sys.executable, __file__, str(LISTENERS), str(MESSAGES), "--clients", stack.gateway.url, token],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        began = time.perf_counter()
        stack.stop()
        print(f"shutdown: {time.perf_counter() - began:.2f} s")
    where = "beside the stack" if "--in-process" in sys.argv else "in a child process"
    print(f"{LISTENERS} listeners, {MESSAGES} messages of one speaker, each acked before the next; clients {where}")
    print(f"connects: {versus('connects_per_s', figures['connects_per_s'], '/s', 1)}")
    print(f"messages: {versus('messages_per_s', figures['messages_per_s'], '/s', 2)} acked")
    print(f"frames delivered: {versus('deliveries_per_s', figures['deliveries_per_s'], '/s', 0)}")
    print(f"ack latency p50: {versus('ack_p50_ms', figures['ack_p50_ms'], ' ms', 0)}")
    print(f"ack latency p95: {versus('ack_p95_ms', figures['ack_p95_ms'], ' ms', 0)}")
    print(
        f"startup_s={stack.started_in:.2f} connects_per_s={figures['connects_per_s']:.1f} "
        f"messages_per_s={figures['messages_per_s']:.2f} deliveries_per_s={figures['deliveries_per_s']:.0f} "
        f"ack_p50_ms={figures['ack_p50_ms']:.0f} ack_p95_ms={figures['ack_p95_ms']:.0f}"
    )


if __name__ == "__main__":
    main()
