"""What a killed ``bw up --containers`` left is removed by the next ``bw up`` / ``bw down``
(``local_runtime.leftovers``); a live owner's stack is never touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from local_runtime import leftovers


def _dead_pid() -> tuple[int, str]:
    """A pid whose process has exited, and that process's start time."""
    process = subprocess.Popen(["sleep", "30"])
    started = leftovers.process_started(process.pid) or ""
    process.kill()
    process.wait()
    return process.pid, started


def test_a_dead_owner_s_sam_and_record_are_removed(tmp_path: Path) -> None:
    # Stands in for its `sam local start-lambda`: a session of its own, outliving its owner.
    sam = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        pid, started = _dead_pid()
        owner = leftovers.Owner(pid, started, "bw-up-test-dead", "", sam.pid, leftovers.process_started(sam.pid) or "")
        record = leftovers.write_record(tmp_path, owner)

        removed = leftovers.reap(tmp_path)

        assert sam.wait(timeout=10) == -9
        assert f"process {sam.pid} (sam local start-lambda)" in removed
        assert not record.exists()
    finally:
        if sam.poll() is None:
            sam.kill()
            sam.wait()


def test_a_live_owner_s_stack_is_left_alone(tmp_path: Path) -> None:
    sam = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        owner = leftovers.owner_of_this_process("bw-up-test-live", "bw-up-test-live")
        owner.sam_pid, owner.sam_started = sam.pid, leftovers.process_started(sam.pid) or ""
        record = leftovers.write_record(tmp_path, owner)

        assert leftovers.reap(tmp_path) == []

        assert sam.poll() is None
        assert record.exists()
    finally:
        sam.kill()
        sam.wait()


def test_a_reused_pid_is_not_its_owner(tmp_path: Path) -> None:
    """A pid alone may name another process by now: the start time tells them apart."""
    owner = leftovers.Owner(os.getpid(), "1", "bw-up-test-reused")
    assert not owner.alive
    record = leftovers.write_record(tmp_path, owner)
    leftovers.reap(tmp_path)
    assert not record.exists()
