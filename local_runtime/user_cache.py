"""Where the runtime keeps what it derives from files and can derive again, shared by
checkouts: ``~/.cache/breakwater/<kind>`` (``BW_BUILD_CACHE`` or ``XDG_CACHE_HOME`` move it).

No imports of the runtime's own: :mod:`local_runtime.bytecode` reads it before any other
module of the package is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached result (templates read, definitions validated, bytecode...)."""
    base = os.environ.get("BW_BUILD_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "breakwater" / kind
