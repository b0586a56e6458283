"""ASL conformance: each case of tests/fidelity/cases.py on plain moto and on the LocalRuntime.

Every case carries the outcome AWS Step Functions records for it (status,
error, cause, output, key history events, and for waits and retries the
duration) and the source of that expectation. This runs each case twice:

  * ``moto``: plain moto 5 (``mock_aws`` with ``execute_state_machine``) in a
    new interpreter where no LocalRuntime ever started, so none of the runtime's
    hooks is installed. Waits and retries take real seconds; the cases start together
    and are polled, so the column costs about as long as its slowest case.
    Cases that invoke a Lambda function are not runnable (plain moto would run
    the handler in Docker) and count as a fail.
  * ``runtime``: ``LocalRuntime(tests/fidelity/app/template.yaml).run(...)``.

Prints one row per case and ends with one line of key=value pairs:
``cases=… moto_pass=… runtime_pass=… runtime_worse=… known_gaps=… wall_s=…``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_runtime import LocalRuntime, fake_aws_environment  # noqa: E402
from local_runtime.executions import execution_history  # noqa: E402
from tests.fidelity.cases import APP, CASES, Case, Outcome, mismatches  # noqa: E402

TEMPLATE = APP / "template.yaml"
ROLE = "arn:aws:iam::123456789012:role/fidelity"
REAL_TIMEOUT = 60.0


def _event_types(events: Iterable[dict[str, Any]]) -> list[str]:
    return [str(event["type"]) for event in events]


def _maybe_json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_plain_moto(cases: Iterable[Case]) -> dict[str, Outcome]:
    """Every case on plain moto: started together, then polled until each one stops (real time)."""
    import boto3
    from moto import mock_aws

    from local_runtime import seams

    assert seams.active() is None, "plain moto must run with no LocalRuntime active"
    fake_aws_environment()
    outcomes: dict[str, Outcome] = {}
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        running: dict[str, str] = {}
        for item in cases:
            if item.functions:
                outcomes[item.name] = Outcome("NOT_RUN", note="not runnable: plain moto runs Lambda in Docker")
                continue
            machine = sfn.create_state_machine(name=item.machine, definition=json.dumps(item.definition), roleArn=ROLE)
            started = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(item.input))
            running[item.name] = started["executionArn"]
        deadline = time.monotonic() + REAL_TIMEOUT
        while running and time.monotonic() < deadline:
            for name, arn in list(running.items()):
                described = sfn.describe_execution(executionArn=arn)
                if described["status"] == "RUNNING":
                    continue
                del running[name]
                events: list[Any] = execution_history(sfn, arn)
                stop = described.get("stopDate")
                outcomes[name] = Outcome(
                    status=described["status"],
                    error=described.get("error"),
                    cause=described.get("cause"),
                    output=_maybe_json(described.get("output")),
                    events=_event_types(events),
                    duration=(stop - described["startDate"]).total_seconds() if stop else None,
                )
            time.sleep(0.05)
        for name in running:
            outcomes[name] = Outcome("RUNNING", note=f"still running after {REAL_TIMEOUT:.0f} s of real time")
    return outcomes


def run_runtime(cases: Iterable[Case]) -> dict[str, Outcome]:
    """Every case on one LocalRuntime over the fixture app (virtual time)."""
    outcomes: dict[str, Outcome] = {}
    with LocalRuntime(TEMPLATE) as runtime:
        for item in cases:
            try:
                result = runtime.run(item.machine, item.input, timeout=REAL_TIMEOUT)
            except Exception as exc:  # noqa: BLE001 - a crash is this side's outcome for the case
                outcomes[item.name] = Outcome("CRASHED", note=f"{type(exc).__name__}: {exc}")
                continue
            outcomes[item.name] = Outcome(
                status=result.status,
                error=result.error,
                cause=result.cause,
                output=result.output,
                events=_event_types(result.events),
                duration=result.duration if result.stop else None,
            )
    return outcomes


def run_plain_moto_isolated(cases: Iterable[Case]) -> dict[str, Outcome]:
    """:func:`run_plain_moto` in a new interpreter. The runtime's hooks, once installed in a
    process, stay installed (inert only where they check for an active runtime), so plain
    moto is measured where no LocalRuntime ever started."""
    import multiprocessing

    names = [item.name for item in cases]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        outcomes: dict[str, Outcome] = pool.apply(_plain_moto_by_name, (names,))
    return outcomes


def _plain_moto_by_name(names: list[str]) -> dict[str, Outcome]:
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    by_name = {item.name: item for item in CASES}
    return run_plain_moto([by_name[name] for name in names])


def compare(cases: Iterable[Case] = CASES) -> list[tuple[Case, list[str], list[str]]]:
    """(case, moto mismatches, runtime mismatches) for every case; empty lists pass."""
    chosen = list(cases)
    moto = run_plain_moto_isolated(chosen)
    runtime = run_runtime(chosen)
    return [
        (item, mismatches(item.expected, moto[item.name]), mismatches(item.expected, runtime[item.name]))
        for item in chosen
    ]


def _mark(problems: list[str]) -> str:
    return "pass" if not problems else "FAIL"


def main(argv: list[str]) -> int:
    # moto's interpreter logs every failure it meets (with the whole state tree): noise here.
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    verbose = "-v" in argv
    names = [arg for arg in argv if not arg.startswith("-")]
    chosen = [item for item in CASES if not names or item.name in names]
    started = time.perf_counter()
    rows = compare(chosen)
    wall = time.perf_counter() - started
    width = max(len(item.name) for item in chosen)
    print(f"{'case':<{width}}  {'moto':<4}  {'runtime':<7}  source")
    for item, moto, runtime in rows:
        gap = "  [known gap]" if item.known_gap else ""
        print(f"{item.name:<{width}}  {_mark(moto):<4}  {_mark(runtime):<7}  {item.source}{gap}")
        if verbose or runtime:
            for problem in moto:
                print(f"{'':<{width}}    moto:    {problem}")
            for problem in runtime:
                print(f"{'':<{width}}    runtime: {problem}")
    moto_pass = sum(1 for _, moto, _ in rows if not moto)
    runtime_pass = sum(1 for _, _, runtime in rows if not runtime)
    worse = [item.name for item, moto, runtime in rows if runtime and not moto]
    gaps = [item.name for item, _, runtime in rows if runtime and item.known_gap]
    print(
        f"cases={len(rows)} moto_pass={moto_pass} runtime_pass={runtime_pass} runtime_worse={len(worse)} "
        f"known_gaps={len(gaps)} wall_s={wall:.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
