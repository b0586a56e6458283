"""Security scanners over the template, held to a checked-in baseline.

Usage: ``python tools/scan.py [--checkov PATH] [--baseline FILE] [--write-findings FILE] TEMPLATE``
(``make scan``, part of ``make test``).

Two scanners run on the template as written (SAM) and as CloudFormation sees it after the
SAM transform (the generated roles and policies are only visible there):

- **checkov**, every CloudFormation check;
- **cfn-lint** with its informational and experimental rules (``--include-checks I
  --include-experimental``), beyond the errors and warnings ``make cfn-lint`` already fails on.

A finding is a (scanner, rule, logical resource) triple. Each one the project accepts is
listed in the baseline (``security/scan-baseline.yaml``) under its rule, with *why* it is
accepted. The build fails on a finding the baseline does not list (a new weakness) and on
a baseline entry no scanner reports any more (fixed: delete it, so the baseline only
shrinks and never hides a later regression).

checkov lives in its own virtual environment (``.venv/checkov``): it pins boto3/botocore
versions older than the ones the runtime needs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Baseline", "Finding", "Verdict", "cfn_lint_findings", "checkov_findings", "compare", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = ROOT / "security" / "scan-baseline.yaml"
#: Findings that name the template rather than one resource (cfn-lint's top-level rules).
TEMPLATE = "(template)"


@dataclass(frozen=True, order=True)
class Finding:
    scanner: str
    rule: str
    resource: str
    message: str = field(default="", compare=False)


@dataclass(frozen=True)
class Accepted:
    why: str
    resources: frozenset[str]


@dataclass(frozen=True)
class Baseline:
    """``{scanner: {rule: Accepted}}`` read from the YAML file."""

    rules: Mapping[str, Mapping[str, Accepted]]

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> Baseline:
        rules: dict[str, dict[str, Accepted]] = {}
        for scanner, entries in document.items():
            if scanner not in ("checkov", "cfn-lint"):
                raise ValueError(f"baseline: unknown scanner {scanner!r} (checkov, cfn-lint)")
            for rule, entry in (entries or {}).items():
                why = str((entry or {}).get("why", "")).strip()
                resources = (entry or {}).get("resources") or []
                if not why:
                    raise ValueError(f"baseline: {scanner} {rule} says no why; every accepted finding needs one")
                if not resources or not all(isinstance(r, str) and r for r in resources):
                    raise ValueError(f"baseline: {scanner} {rule} names no resources")
                rules.setdefault(scanner, {})[rule] = Accepted(why, frozenset(resources))
        return cls(rules)

    @classmethod
    def load(cls, path: Path) -> Baseline:
        return cls.parse(yaml.safe_load(path.read_text(encoding="utf-8")) or {})

    def accepts(self, finding: Finding) -> bool:
        entry = self.rules.get(finding.scanner, {}).get(finding.rule)
        return entry is not None and finding.resource in entry.resources

    def entries(self) -> Iterable[tuple[str, str, str]]:
        for scanner, rules in self.rules.items():
            for rule, accepted in rules.items():
                for resource in sorted(accepted.resources):
                    yield scanner, rule, resource


@dataclass(frozen=True)
class Verdict:
    accepted: tuple[Finding, ...]
    new: tuple[Finding, ...]
    #: Baseline entries (scanner, rule, resource) that no scanner reported.
    stale: tuple[tuple[str, str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.new and not self.stale


def compare(findings: Iterable[Finding], baseline: Baseline) -> Verdict:
    unique = sorted(set(findings))
    seen = {(f.scanner, f.rule, f.resource) for f in unique}
    return Verdict(
        accepted=tuple(f for f in unique if baseline.accepts(f)),
        new=tuple(f for f in unique if not baseline.accepts(f)),
        stale=tuple(e for e in baseline.entries() if e not in seen),
    )


def checkov_findings(report: Any) -> list[Finding]:
    """Failed checks from ``checkov -o json`` (one report, or a list when several frameworks ran)."""
    reports = report if isinstance(report, list) else [report]
    found = []
    for one in reports:
        for failed in one.get("results", {}).get("failed_checks", []):
            # "AWS::Serverless::Function.ConnectFunction" -> ConnectFunction
            resource = str(failed["resource"]).rsplit(".", 1)[-1]
            found.append(Finding("checkov", str(failed["check_id"]), resource, str(failed.get("check_name", ""))))
    return found


def cfn_lint_findings(matches: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Matches from ``cfn-lint --format json``."""
    found = []
    for match in matches:
        path = match.get("Location", {}).get("Path") or []
        resource = str(path[1]) if len(path) > 1 and path[0] == "Resources" else TEMPLATE
        found.append(Finding("cfn-lint", str(match["Rule"]["Id"]), resource, str(match.get("Message", ""))))
    return found


def _translated(template: Path, workdir: Path) -> Path:
    """The template after the SAM transform, as CloudFormation will see it."""
    from local_runtime.iam import translate
    from local_runtime.template import LocalTemplate

    loaded = LocalTemplate.load(template)
    out = workdir / "translated.json"
    out.write_text(json.dumps(translate(loaded.path, loaded.raw), indent=1, default=str), encoding="utf-8")
    return out


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    # checkov and cfn-lint exit non-zero whenever they find something; only no output is an error.
    if not done.stdout.strip():
        raise RuntimeError(f"{command[0]} printed nothing (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def scan(template: Path, checkov: str) -> list[Finding]:
    findings: list[Finding] = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in (template, _translated(template, Path(tmp))):
            report = _run([checkov, "-f", str(target), "--framework", "cloudformation", "-o", "json", "--quiet"])
            findings += checkov_findings(json.loads(report))
            lint = _run(
                [
                    str(Path(sys.executable).parent / "cfn-lint"),
                    "--include-checks",
                    "I",
                    "--include-experimental",
                    "--format",
                    "json",
                    "--",
                    str(target),
                ]
            )
            findings += cfn_lint_findings(json.loads(lint))
    return findings


def render(verdict: Verdict, baseline: Baseline) -> str:
    lines = []
    counts: dict[tuple[str, str], int] = {}
    for finding in verdict.accepted:
        counts[(finding.scanner, finding.rule)] = counts.get((finding.scanner, finding.rule), 0) + 1
    lines.append(f"accepted: {len(verdict.accepted)} finding(s) under {len(counts)} rule(s) in the baseline")
    for (scanner, rule), count in sorted(counts.items()):
        why = baseline.rules[scanner][rule].why.split("\n", 1)[0]
        lines.append(f"  {scanner:8} {rule:12} x{count:<3} {why[:110]}")
    for finding in verdict.new:
        lines.append(f"NEW     {finding.scanner} {finding.rule} on {finding.resource}: {finding.message[:160]}")
    for scanner, rule, resource in verdict.stale:
        lines.append(f"STALE   {scanner} {rule} on {resource}: no longer reported, delete it from the baseline")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("--checkov", default=str(ROOT / ".venv" / "checkov" / "bin" / "checkov"))
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    args = parser.parse_args(argv)
    baseline = Baseline.load(args.baseline)
    verdict = compare(scan(args.template, args.checkov), baseline)
    print(render(verdict, baseline))
    if not verdict.ok:
        print(
            f"scan: {len(verdict.new)} new finding(s), {len(verdict.stale)} stale baseline entr(ies) -- "
            f"fix the template, or accept a finding in {args.baseline.relative_to(ROOT)} with why"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
