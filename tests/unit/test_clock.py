"""The virtual clock: overlapping branches, deadlines, process-wide patches."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from local_runtime.clock import LambdaTimeoutInterrupt, VirtualClock


def test_sleep_moves_time_without_waiting():
    clock = VirtualClock(start=1_000.0)
    started = time.perf_counter()
    clock.sleep(3600)
    assert clock.now() == 4_600.0
    assert time.perf_counter() - started < 1


def test_branches_that_sleep_concurrently_overlap():
    clock = VirtualClock(start=0.0)
    clock.install()
    try:

        def branch(seconds: float) -> None:
            time.sleep(seconds)

        threads = [threading.Thread(target=branch, args=(s,)) for s in (4, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # The parent waited for all of them: it is at the longest, not the sum.
        assert clock.now() == 4.0
    finally:
        clock.uninstall()


def test_time_and_datetime_read_the_clock_while_installed():
    clock = VirtualClock(start=datetime(2030, 1, 1, tzinfo=UTC))
    with clock:
        clock.sleep(90)
        assert time.time() == pytest.approx(datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC).timestamp())
        assert datetime.now(UTC) == datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC)
        time.sleep(30)
        assert datetime.now(UTC) == datetime(2030, 1, 1, 0, 2, tzinfo=UTC)
    assert datetime.now(UTC).year < 2030


def test_sleeping_past_a_deadline_interrupts_at_the_deadline():
    clock = VirtualClock(start=0.0)
    with clock.deadline(10):
        clock.sleep(4)
        with pytest.raises(LambdaTimeoutInterrupt):
            clock.sleep(30)
    assert clock.now() == 10.0


def test_branch_runs_on_a_private_timeline():
    clock = VirtualClock(start=0.0)
    with clock.branch() as private:
        clock.sleep(50)
    assert private.now == 50.0
    assert clock.now() == 0.0


def test_detached_threads_do_not_pull_their_starter_forward():
    clock = VirtualClock(start=0.0)
    done = threading.Event()

    def background() -> None:
        clock.sleep(100)
        done.set()

    thread = threading.Thread(target=clock.wrap_thread_target(background, detached=True))
    thread.start()
    thread.join()
    assert done.is_set()
    assert clock.now() == 0.0


def test_negative_sleep_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        VirtualClock().sleep(-1)
