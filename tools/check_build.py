"""Check that ``sam build`` really packaged the template's code.

Usage: ``python tools/check_build.py TEMPLATE BUILD_DIR`` (``make build``, after
``sam build -t TEMPLATE --build-dir BUILD_DIR``).

``sam build`` exits 0 in cases that still deploy broken code -- a handler file
left out of CodeUri, a layer whose packages end up outside ``python/`` (where
the Lambda runtime never looks), a requirements.txt that was not installed.
For each function and each built layer this checks the files the runtime will
actually import, and that the built template points at those folders.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["check_build", "main"]

_SKIPPED_DIRS = frozenset({"__pycache__", "tests", ".aws-sam", ".venv", ".mypy_cache", ".pytest_cache"})
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _load(path: Path) -> dict[str, Any]:
    # samcli's parser understands the CloudFormation short tags (!Ref, !GetAtt, !Sub).
    from samcli.yamlhelper import yaml_parse

    parsed = yaml_parse(path.read_text(encoding="utf-8"))
    if not isinstance(parsed, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return parsed


def _canonical(name: str) -> str:
    # PEP 503 normalisation: dist-info folders use underscores, requirements often dashes.
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(code_dir: Path) -> list[str]:
    """Distribution names listed in the requirements.txt that SAM's Python builder installs."""
    path = code_dir / "requirements.txt"
    if not path.is_file():
        return []
    names: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        # Options (-r, --index-url, -e) and URLs have no plain distribution name to look for.
        if not line or line.startswith("-") or "://" in line:
            continue
        match = _REQUIREMENT_NAME.match(line)
        if match:
            names.append(match.group(1))
    return names


def _check_requirements(
    logical_id: str, code_dir: Path, built_dir: Path, checked: list[str], errors: list[str]
) -> None:
    required = _requirements(code_dir)
    if not required:
        return
    installed = {_canonical(entry.name.split("-", 1)[0]) for entry in built_dir.glob("*.dist-info") if entry.is_dir()}
    missing = [name for name in required if _canonical(name) not in installed]
    if missing:
        errors.append(f"{logical_id}: requirements.txt not installed in {built_dir}: {', '.join(missing)}")
    else:
        checked.append(f"{logical_id}: requirements.txt installed in {built_dir} ({', '.join(required)})")


def _is_python(runtime: Any) -> bool:
    return isinstance(runtime, str) and runtime.startswith("python")


def _handler_module(handler: str) -> list[str]:
    """Files that can provide a Python handler's module (``pkg.mod.fn`` -> pkg/mod.py)."""
    module = handler.rsplit(".", 1)[0].replace(".", "/")
    return [f"{module}.py", f"{module}/__init__.py"]


def _source_modules(content_dir: Path) -> list[Path]:
    """The .py files a layer ships, relative to its ContentUri (or to its python/ if laid out for AWS)."""
    files: list[Path] = []
    for path in sorted(content_dir.rglob("*.py")):
        relative = path.relative_to(content_dir)
        if _SKIPPED_DIRS.intersection(relative.parts[:-1]):
            continue
        # Top-level scripts (setup.py, conftest.py) are not part of a layer's importable packages.
        if len(relative.parts) == 1:
            continue
        files.append(relative)
    return files


def _points_at(built: dict[str, Any], logical_id: str, prop: str, build_dir: Path, target: Path) -> str | None:
    """An error if the built template does not send ``prop`` of ``logical_id`` to ``target``."""
    resource = (built.get("Resources") or {}).get(logical_id)
    if not isinstance(resource, dict):
        return f"{logical_id} is missing from {build_dir / 'template.yaml'}"
    uri = (resource.get("Properties") or {}).get(prop)
    if not isinstance(uri, str) or (build_dir / uri).resolve() != target.resolve():
        return f"{logical_id}: built template has {prop}={uri!r}, expected the built folder {target}"
    return None


def check_build(template_path: Path, build_dir: Path) -> tuple[list[str], list[str]]:
    """Return (what was checked, what is wrong)."""
    checked: list[str] = []
    errors: list[str] = []
    built_template = build_dir / "template.yaml"
    if not built_template.is_file():
        return checked, [f"{built_template} does not exist: did `sam build --build-dir {build_dir}` run?"]
    checked.append(f"{built_template} exists")
    source = _load(template_path)
    built = _load(built_template)
    base = template_path.parent
    resources: dict[str, Any] = source.get("Resources") or {}
    function_globals: dict[str, Any] = (source.get("Globals") or {}).get("Function") or {}

    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**function_globals, **(resource.get("Properties") or {})}
        if props.get("PackageType") == "Image" or "InlineCode" in props:
            checked.append(f"{logical_id}: skipped (not a zip from CodeUri)")
            continue
        built_dir = build_dir / logical_id
        if not built_dir.is_dir():
            errors.append(f"{logical_id}: no built folder {built_dir}")
            continue
        handler = props.get("Handler")
        if _is_python(props.get("Runtime")) and isinstance(handler, str):
            candidates = _handler_module(handler)
            found = next((name for name in candidates if (built_dir / name).is_file()), None)
            if found is None:
                errors.append(f"{logical_id}: handler {handler!r} needs {' or '.join(candidates)} in {built_dir}")
            else:
                checked.append(f"{logical_id}: {built_dir / found} (handler {handler})")
        elif not any(built_dir.iterdir()):
            errors.append(f"{logical_id}: built folder {built_dir} is empty")
        else:
            checked.append(f"{logical_id}: {built_dir} is not empty (runtime {props.get('Runtime')})")
        code_uri = props.get("CodeUri")
        if isinstance(code_uri, str):
            _check_requirements(logical_id, base / code_uri, built_dir, checked, errors)
        problem = _points_at(built, logical_id, "CodeUri", build_dir, built_dir)
        if problem:
            errors.append(problem)

    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::LayerVersion":
            continue
        build_method = (resource.get("Metadata") or {}).get("BuildMethod")
        if not _is_python(build_method):
            checked.append(f"{logical_id}: skipped (BuildMethod {build_method!r}, not a Python build)")
            continue
        content_uri = (resource.get("Properties") or {}).get("ContentUri")
        if not isinstance(content_uri, str):
            errors.append(f"{logical_id}: ContentUri {content_uri!r} is not a local folder")
            continue
        content_dir = base / content_uri
        # SAM's Python builder installs the layer into python/, the only folder of a layer on sys.path.
        site = build_dir / logical_id / "python"
        if not site.is_dir():
            errors.append(f"{logical_id}: no {site}; the Lambda runtime only imports a layer's python/ folder")
            continue
        if (content_dir / "python").is_dir():
            # Already laid out for AWS: the builder would nest it as python/python/, off sys.path.
            errors.append(
                f"{logical_id}: ContentUri {content_dir} has a python/ folder; with BuildMethod "
                f"{build_method} put the packages at the ContentUri root"
            )
            continue
        modules = _source_modules(content_dir)
        if not modules:
            errors.append(f"{logical_id}: no Python packages found in ContentUri {content_dir}")
        absent = [str(module) for module in modules if not (site / module).is_file()]
        if absent:
            errors.append(f"{logical_id}: missing under {site}: {', '.join(absent)}")
        elif modules:
            checked.append(f"{logical_id}: {len(modules)} module(s) under {site} ({', '.join(map(str, modules))})")
        _check_requirements(logical_id, content_dir, site, checked, errors)
        problem = _points_at(built, logical_id, "ContentUri", build_dir, build_dir / logical_id)
        if problem:
            errors.append(problem)
    return checked, errors


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_build.py TEMPLATE BUILD_DIR", file=sys.stderr)
        return 2
    template, build_dir = Path(argv[0]), Path(argv[1])
    if not template.is_file():
        print(f"FAIL {template}: no such template", file=sys.stderr)
        return 2
    checked, errors = check_build(template, build_dir)
    for line in checked:
        print(f"ok   {line}")
    for line in errors:
        print(f"FAIL {line}")
    if errors:
        print(f"{template}: {len(errors)} packaging problem(s) in {build_dir}")
        return 1
    print(f"{template}: build output in {build_dir} is packaged")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
