"""Deliver one message to a batch of recipients, losing none, posting none twice.

Every recipient ends in exactly one outcome:

* ``delivered`` — postToConnection succeeded;
* ``gone`` — API Gateway answered 410: the client left; its cleanup is due;
* ``parked`` — not delivered now (breaker open, retries spent, refused, time
  running out): the caller writes it to the recipient's Outbox;
* ``dropped`` — API Gateway refuses this frame for good (413): retrying or
  parking it would only block the recipient's later messages.

Each recipient is classified on its own: one bad recipient never fails the
batch. Retries happen here, in rounds, not in ASL: a Retry on the batch task
would post again to the recipients already served. Each round tries every
recipient still pending once, then waits the policy's next delay (the same
numbers as the ASL Retry blocks), so a batch never waits longer than one
recipient would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from resilience.breaker import CircuitBreaker, CircuitOpenError
from resilience.clients import error_code
from resilience.outbox import PERMANENT_POST_ERRORS
from resilience.retry import RetryPolicy, is_retryable

__all__ = ["BatchResult", "deliver_batch"]


@dataclass
class BatchResult:
    delivered: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    parked: dict[str, str] = field(default_factory=dict)  # connection id -> reason
    dropped: list[str] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)

    def outcomes(self) -> dict[str, list[str]]:
        return {"delivered": self.delivered, "gone": self.gone, "parked": sorted(self.parked), "dropped": self.dropped}

    def to_json(self) -> dict[str, Any]:
        outcomes = self.outcomes()
        return {**outcomes, "counts": {name: len(ids) for name, ids in outcomes.items()}}


def deliver_batch(
    recipients: Iterable[str],
    post: Callable[[str], None],
    breaker: CircuitBreaker,
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    remaining_seconds: Callable[[], float],
    reserve_seconds: float = 5.0,
) -> BatchResult:
    """Post to every recipient through the breaker; sort each into an outcome.

    ``reserve_seconds`` is kept back from the Lambda's remaining time for
    parking and recording: a recipient is parked rather than risk the sandbox
    timing out with nobody knowing what was delivered.
    """
    result = BatchResult()
    pending = list(dict.fromkeys(recipients))
    failed: list[str] = []
    for round_ in range(policy.max_attempts + 1):
        failed = []
        for connection_id in pending:
            if remaining_seconds() < reserve_seconds:
                result.parked[connection_id] = "deadline"
                continue
            result.attempts[connection_id] = result.attempts.get(connection_id, 0) + 1
            try:
                breaker.call(post, connection_id)
            except CircuitOpenError:
                result.parked[connection_id] = "circuit_open"
            except Exception as exc:  # noqa: BLE001 - every recipient is classified, none fails the batch
                code = error_code(exc)
                if code == "GoneException":
                    result.gone.append(connection_id)
                elif code in PERMANENT_POST_ERRORS:
                    result.dropped.append(connection_id)
                elif is_retryable(exc):
                    failed.append(connection_id)
                else:
                    # 403 and other refusals: not worth a retry now; parked until the recipient's next frame.
                    result.parked[connection_id] = f"refused:{code or type(exc).__name__}"
            else:
                result.delivered.append(connection_id)
        if not failed or round_ == policy.max_attempts:
            break
        delay = policy.delay(round_ + 1)
        if remaining_seconds() - delay < reserve_seconds:
            break
        sleep(delay)
        pending = failed
    for connection_id in failed:
        result.parked[connection_id] = "retries_exhausted"
    return result
