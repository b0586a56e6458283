"""`bw up` as a user runs it: a process that serves until Ctrl-C and leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from local_runtime.gateway import RealTimeLoop

ROOT = Path(__file__).resolve().parents[2]


def _port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


def test_bw_up_serves_until_ctrl_c_and_leaves_no_process_or_port(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "layers" / "resilience")])}
    command = [sys.executable, "-m", "local_runtime.cli", "up", "-t", str(ROOT / "template.yaml"), "--speed", "2"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    up_file = tmp_path / ".bw" / "up.json"
    try:
        deadline = time.monotonic() + 120
        while not up_file.exists():
            assert process.poll() is None, "bw up exited before serving"
            assert time.monotonic() < deadline, "bw up did not start within 120 s"
            time.sleep(0.1)
        endpoints = json.loads(up_file.read_text(encoding="utf-8"))
        assert set(endpoints) >= {"websocket", "http", "aws", "control", "console"}
        second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert "already running" in second.stderr
        assert up_file.exists()  # the second one left the first one's file alone

        with urllib.request.urlopen(endpoints["http"] + "/health", timeout=30) as health:
            assert health.status == 200
        # Still active at Ctrl-C: a rule must not break the shutdown (which scans the breaker state it saves).
        request = urllib.request.Request(
            endpoints["control"] + "/faults",
            data=json.dumps([{"service": "dynamodb", "operation": "Scan", "error": "InternalServerError"}]).encode(),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as added:
            assert json.loads(added.read())["added"] == 1

        # A speaker's token from `bw token` (another process): the running stack accepts it.
        token = subprocess.run(
            [sys.executable, "-m", "local_runtime.cli", "token", "-t", str(ROOT / "template.yaml")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout.strip()

        async def listen_until_stopped() -> int | None:
            url = f"{endpoints['websocket']}/?tenant=acme&session=up"
            speaker = await connect(
                f"{url}&role=speaker", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=60
            )
            client = await connect(f"{url}&role=listener", open_timeout=60)
            frame = {
                "action": "sendMessage",
                "sessionId": "up",
                "clientMessageId": "00000001-0000-4000-8000-000000000000",
            }
            await speaker.send(json.dumps({**frame, "body": {"text": "hello"}}))
            assert json.loads(await asyncio.wait_for(speaker.recv(), 60))["type"] == "ack"
            assert json.loads(await asyncio.wait_for(client.recv(), 60))["body"] == {"text": "hello"}
            process.send_signal(signal.SIGINT)
            try:
                while True:
                    await asyncio.wait_for(client.recv(), 60)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None

        with asyncio.Runner(loop_factory=RealTimeLoop) as runner:
            code = runner.run(listen_until_stopped())
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 1001  # the server went away: every client is closed (and its $disconnect runs)
    assert not up_file.exists()
    assert not any(_port_open(url) for url in endpoints.values())
    output = process.stdout.read().decode() if process.stdout else ""
    assert "websocket" in output
    assert re.search(r"started in \d+\.\d\d s", output), output  # how long start-up took
    assert "stopping" in output
