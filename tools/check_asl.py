"""Validate every Step Functions definition in SAM templates with ``asl-validator``.

Usage: ``python tools/check_asl.py TEMPLATE...`` (``make asl``; needs ``npm ci`` first).

Each ``AWS::Serverless::StateMachine`` is read and substituted by
``LocalTemplate.load`` -- the same SAM resolution the offline runtime uses -- so
the validator sees real-looking ARNs and table names instead of ``${...}``
placeholders (it accepts a bare ``${X}`` as a Task ``Resource``, which would
hide a missing substitution).

asl-validator's Retry schema leaves retrier fields open: it accepts
``JitterStrategy`` and ``MaxDelaySeconds`` but does not check their values, nor
does it reject unknown fields. ``retrier_errors`` adds those checks, following
the Amazon States Language rules for retriers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = ROOT / "node_modules" / ".bin" / "asl-validator"
BATCH = ROOT / "tools" / "asl_validate.js"

_RETRIER_FIELDS = frozenset(
    {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"}
)
_JITTER_STRATEGIES = ("FULL", "NONE")
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def _is_int(value: Any) -> bool:
    # bool is an int subclass, but JSON true is not a number of seconds.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _states(states: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, including those nested in Map and Parallel, with a readable path."""
    if not isinstance(states, dict):
        return
    for name, state in states.items():
        if not isinstance(state, dict):
            continue
        where = f"{path}/{name}"
        yield where, state
        # Map: ItemProcessor (current) or Iterator (legacy); Parallel: Branches.
        for key in ("ItemProcessor", "Iterator"):
            inner = state.get(key)
            if isinstance(inner, dict):
                yield from _states(inner.get("States"), f"{where}/{key}")
        branches = state.get("Branches")
        if isinstance(branches, list):
            for index, branch in enumerate(branches):
                if isinstance(branch, dict):
                    yield from _states(branch.get("States"), f"{where}/Branches[{index}]")


def retrier_errors(definition: dict[str, Any]) -> list[str]:
    """What asl-validator lets through in Retry: unknown fields and out-of-range values."""
    errors: list[str] = []
    for where, state in _states(definition.get("States"), ""):
        retry = state.get("Retry")
        if not isinstance(retry, list):
            continue  # absent, or the validator already reports a wrong type
        for index, retrier in enumerate(retry):
            if not isinstance(retrier, dict):
                continue
            at = f"{where}/Retry[{index}]"
            unknown = sorted(set(retrier) - _RETRIER_FIELDS)
            if unknown:
                errors.append(f"{at}: unknown field(s) {', '.join(unknown)}")
            if "JitterStrategy" in retrier and retrier["JitterStrategy"] not in _JITTER_STRATEGIES:
                errors.append(f"{at}/JitterStrategy must be one of {', '.join(_JITTER_STRATEGIES)}")
            for name in ("MaxDelaySeconds", "IntervalSeconds"):
                if name in retrier and not (_is_int(retrier[name]) and retrier[name] >= 1):
                    errors.append(f"{at}/{name} must be a positive integer")
            if "MaxAttempts" in retrier and not (_is_int(retrier["MaxAttempts"]) and retrier["MaxAttempts"] >= 0):
                errors.append(f"{at}/MaxAttempts must be a non-negative integer")
            if "BackoffRate" in retrier and not (_is_number(retrier["BackoffRate"]) and retrier["BackoffRate"] >= 1):
                errors.append(f"{at}/BackoffRate must be a number >= 1.0")
    return errors


def run_validator(definition_files: list[Path]) -> dict[Path, tuple[bool, str]]:
    """asl-validator's verdict on each file: (valid, its errors), in one Node process
    (``tools/asl_validate.js``; the CLI is a process, about 1.4 s of CPU, per file)."""
    if not definition_files:
        return {}
    result = subprocess.run(
        ["node", str(BATCH), *map(str, definition_files)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    verdicts: dict[Path, tuple[bool, str]] = {}
    for line in result.stdout.splitlines():
        if line.strip():
            verdict = json.loads(line)
            verdicts[Path(verdict["path"])] = (bool(verdict["valid"]), str(verdict["errors"]))
    crash = result.stderr.strip() or f"exit status {result.returncode}"
    # A file without a verdict (the validator itself crashed) fails with what Node printed.
    return {path: verdicts.get(path, (False, crash)) for path in definition_files}


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def check_template(template: Path, workdir: Path) -> int:
    """Validate the state machines of one template; return how many failed."""
    from local_runtime.template import LocalTemplate, TemplateError

    try:
        loaded = LocalTemplate.load(template)
    except TemplateError as exc:
        # Raised for an undefined ${X} in a definition, among others; it names the state machine.
        print(f"FAIL {template}: {exc}")
        return 1
    if not loaded.state_machines:
        print(f"--   {template}: no AWS::Serverless::StateMachine")
        return 0
    checked: list[tuple[str, Path, list[str], dict[str, Any]]] = []
    for logical_id, spec in loaded.state_machines.items():
        source = _relative(spec.definition_path) if spec.definition_path else "inline Definition"
        label = f"{template} {logical_id} ({source})"
        text = json.dumps(spec.definition, indent=2)
        problems: list[str] = []
        # LocalTemplate only substitutes ${Name}; anything else shaped like a placeholder
        # would reach AWS verbatim.
        leftover = sorted(set(_PLACEHOLDER.findall(text)))
        if leftover:
            problems.append(f"left unsubstituted after DefinitionSubstitutions: {', '.join(leftover)}")
        definition_file = workdir / f"{logical_id}.asl.json"
        definition_file.write_text(text, encoding="utf-8")
        checked.append((label, definition_file, problems, spec.definition))
    verdicts = run_validator([definition_file for _, definition_file, _, _ in checked])
    failures = 0
    for label, definition_file, problems, definition in checked:
        valid, output = verdicts[definition_file]
        if not valid:
            problems.append(output or "asl-validator failed without output")
        problems.extend(retrier_errors(definition))
        if problems:
            failures += 1
            print(f"FAIL {label}")
            for problem in problems:
                for line in problem.splitlines():
                    print(f"     {line}")
        else:
            print(f"OK   {label}")
    return failures


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: check_asl.py TEMPLATE...", file=sys.stderr)
        return 2
    if not VALIDATOR.is_file():
        print(f"{VALIDATOR} not found: run `npm ci` (or `make asl`) first", file=sys.stderr)
        return 2
    # Imported from the repository, whichever directory this runs from.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    failures = 0
    for name in argv:
        template = Path(name)
        if not template.is_file():
            print(f"FAIL {template}: no such template")
            failures += 1
            continue
        # One directory per template: two templates may use the same logical ids.
        with tempfile.TemporaryDirectory(prefix="check-asl-") as tmp:
            failures += check_template(template, Path(tmp))
    if failures:
        print(f"{failures} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
