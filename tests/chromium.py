"""How the browser tests start headless Chromium (the same flags for every page they check)."""

from __future__ import annotations

__all__ = ["HEADLESS_FLAGS"]

HEADLESS_FLAGS = [
    "--headless",
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
