"""A workflow whose Lambda is throttled by its reserved concurrency sees Lambda's own error,
as on AWS: ``Lambda.TooManyRequestsException``, which its Retry then handles."""

from __future__ import annotations

from pathlib import Path

from local_runtime import LocalRuntime

ROOT = Path(__file__).resolve().parents[2]


def test_a_paused_sweep_fails_with_lambdas_throttling_error_after_its_retries() -> None:
    # IdleSweepReservedConcurrency 0 pauses the sweep: Lambda refuses every invocation.
    with LocalRuntime(ROOT / "template.yaml", parameters={"IdleSweepReservedConcurrency": "0"}) as runtime:
        result = runtime.run("IdleSweep", {})
        throttles = runtime.function("IdleSweepFunction").throttles
        invocations = runtime.function("IdleSweepFunction").invocations

    assert result.status == "FAILED"
    assert result.error == "Lambda.TooManyRequestsException"
    assert "Status Code: 429" in (result.cause or "")
    # "Begin sweep" retries Lambda.TooManyRequestsException 3 times (seed 002): 4 refusals.
    assert throttles == 4
    assert invocations == []
