"""Epoch seconds as the ISO-8601 UTC text Step Functions uses (milliseconds, ``Z``).

The breaker's ``nextAttemptAtIso`` is compared with ``$$.State.EnteredTime`` in
ASL, and the health snapshot and ``bw breakers`` show the same moments: one format.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

__all__ = ["iso_utc"]


def iso_utc(epoch_seconds: float | None) -> str | None:
    if epoch_seconds is None or not math.isfinite(epoch_seconds):
        return None
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
