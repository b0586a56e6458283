"""Per-thread environment overlays for in-process Lambda sandboxes."""

from __future__ import annotations

import os
import threading

from local_runtime.environ import ThreadEnviron


def test_each_thread_sees_only_its_own_overlay():
    ThreadEnviron.install()
    try:
        seen: dict[str, str | None] = {}
        barrier = threading.Barrier(2)

        def sandbox(name: str, value: str) -> None:
            with ThreadEnviron.overlay({"TABLE": value}):
                barrier.wait()
                seen[name] = os.environ.get("TABLE")
                os.environ["WRITTEN"] = value  # stays inside this sandbox

        threads = [threading.Thread(target=sandbox, args=(n, v)) for n, v in (("a", "A"), ("b", "B"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == {"a": "A", "b": "B"}
        assert "TABLE" not in os.environ
        assert "WRITTEN" not in os.environ
        assert os.getenv("AWS_DEFAULT_REGION") == "us-east-1"  # the process environment shows through
    finally:
        ThreadEnviron.uninstall()
    assert type(os.environ).__name__ == "_Environ"
