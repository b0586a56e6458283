"""Reading ``template.yaml`` the way SAM does.

SAM CLI's own providers parse the template, apply parameter overrides and
merge ``Globals`` into every function (``SamLocalStackProvider`` and
``SamFunctionProvider``, the code behind ``sam local invoke``); SAM's
``IntrinsicResolver`` resolves ``!Ref``/``!GetAtt``/``!Sub`` in
``DefinitionSubstitutions``. This module only adds what SAM local does not
need: the physical identity (names, ARNs) of tables, state machines and the
other resources the offline stack creates.

Locally every resource is named by its logical id, which is also what SAM
local resolves ``!Ref`` to, so handler environments and ASL substitutions
agree with the resources that exist.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_runtime.models import FunctionSpec
from local_runtime.user_cache import cache_dir

__all__ = ["LocalTemplate", "ScheduleSpec", "StateMachineSpec", "TemplateError"]

ACCOUNT_ID = "123456789012"
PARTITION = "aws"
_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")


class TemplateError(ValueError):
    """The template cannot be run locally; the message says what and where."""


@dataclass(frozen=True)
class StateMachineSpec:
    logical_id: str
    name: str
    arn: str
    type: str
    definition: dict[str, Any]
    definition_path: Path | None
    events: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScheduleSpec:
    """A ``Schedule``/``ScheduleV2`` event of a function or state machine."""

    name: str
    kind: str  # "Schedule" (EventBridge rule) or "ScheduleV2" (EventBridge Scheduler)
    target: str  # logical id
    #: The logical id SAM gives the schedule it generates (target + event id): its role's caller.
    logical_id: str
    target_type: str  # "function" or "state_machine"
    expression: str
    input: str | None
    enabled: bool

    @property
    def rate_seconds(self) -> float | None:
        """The period of a ``rate(...)`` expression; ``cron(...)`` is not simulated."""
        match = re.fullmatch(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)", self.expression.strip())
        if match is None:
            return None
        unit = {"minute": 60, "hour": 3600, "day": 86400}[match.group(2).rstrip("s")]
        return int(match.group(1)) * unit


@dataclass
class LocalTemplate:
    path: Path
    region: str
    stack_name: str
    parameters: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    functions: dict[str, FunctionSpec]
    state_machines: dict[str, StateMachineSpec]
    schedules: list[ScheduleSpec] = field(default_factory=list)
    #: The template as SAM CLI read it (parameters applied), for SAM's translator (IAM).
    raw: dict[str, Any] = field(default_factory=dict)

    def resolver(self, overrides: dict[str, dict[str, Any]] | None = None) -> Any:
        """SAM's IntrinsicResolver on the local stack; ``overrides`` replace a resource's
        attributes (e.g. a secret's Ref is its ARN, known once the secret exists). The one
        without overrides is built once per template: SAM's resolver copies the whole template
        when it is made (HTTP API, alarms and access logs each asked for one at every start)
        and keeps nothing from a resolution to the next."""
        if overrides:
            return _resolver(self.raw, self.resources, self.region, self.stack_name, self.parameters, overrides)
        made = self.__dict__.get("_resolver")
        if made is None:
            made = _resolver(self.raw, self.resources, self.region, self.stack_name, self.parameters)
            self.__dict__["_resolver"] = made
        return made

    def __getstate__(self) -> dict[str, Any]:
        # Copies and the disk cache hold the template, not a resolver made from it.
        return {k: v for k, v in self.__dict__.items() if k != "_resolver"}

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        parameter_overrides: dict[str, str] | None = None,
        region: str = "us-east-1",
        stack_name: str = "breakwater-local",
    ) -> LocalTemplate:
        """The template as SAM reads it; kept per process while neither it nor a definition
        file it names changes (SAM CLI's YAML reading alone costs about a second)."""
        key = (
            str(Path(path).resolve()),
            tuple(sorted((parameter_overrides or {}).items())),
            region,
            stack_name,
        )
        cached = _LOADED.get(key) or _read_disk_cache(key)
        if cached is not None and all(_stamp(p) == stamp for p, stamp in cached[1]):
            _LOADED[key] = cached
            # Kept pickled: every caller gets its own copy, and unpickling makes one several
            # times faster than copy.deepcopy of the template.
            return pickle.loads(cached[0])  # type: ignore[no-any-return]
        loaded = cls._load(path, parameter_overrides=parameter_overrides, region=region, stack_name=stack_name)
        sources = [loaded.path, *(s.definition_path for s in loaded.state_machines.values() if s.definition_path)]
        _LOADED[key] = (pickle.dumps(loaded), [(p, _stamp(p)) for p in sources])
        _write_disk_cache(key, _LOADED[key])
        return loaded

    @classmethod
    def _load(
        cls,
        path: str | Path,
        *,
        parameter_overrides: dict[str, str] | None,
        region: str,
        stack_name: str,
    ) -> LocalTemplate:
        # SAM CLI logs at INFO about every template it reads.
        logging.getLogger("samcli").setLevel(logging.WARNING)
        from samcli.lib.providers.sam_function_provider import SamFunctionProvider
        from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

        template_path = Path(path).resolve()
        if not template_path.is_file():
            raise TemplateError(f"template not found: {template_path}")
        overrides = {k: str(v) for k, v in (parameter_overrides or {}).items()}
        pseudo = {"AWS::Region": region, "AWS::AccountId": ACCOUNT_ID, "AWS::StackName": stack_name}
        try:
            stacks, _ = SamLocalStackProvider.get_stacks(
                str(template_path), parameter_overrides=overrides, global_parameter_overrides=pseudo
            )
        except Exception as exc:
            raise TemplateError(f"{template_path}: {exc}") from exc
        stack = stacks[0]
        template = stack.template_dict
        declared = template.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameter(s) {sorted(unknown)}; the template declares {sorted(declared)}")
        parameters = {name: overrides.get(name, spec.get("Default")) for name, spec in declared.items()}
        resources: dict[str, dict[str, Any]] = template.get("Resources") or {}
        base = template_path.parent

        resolver = _resolver(template, resources, region, stack_name, parameters)

        functions: dict[str, FunctionSpec] = {}
        provider = SamFunctionProvider(stacks, use_raw_codeuri=True, ignore_code_extraction_warnings=True)
        for function in provider.get_all():
            if function.packagetype != "Zip" or not function.codeuri or not function.handler:
                continue
            layer_dirs = tuple(_layer_root(base / layer.codeuri) for layer in function.layers if layer.codeuri)
            # Resolve the raw variables ourselves: SAM local resolves every !Ref to a logical
            # id, but a state machine's Ref is its ARN (a queue's, its URL) on AWS.
            variables = {
                **(((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
                    "Variables", {}
                ),
                **((resources.get(function.name, {}).get("Properties") or {}).get("Environment") or {}).get(
                    "Variables", {}
                ),
            }
            functions[function.name] = FunctionSpec(
                logical_id=function.name,
                function_name=function.functionname,
                handler=function.handler,
                code_dir=(base / function.codeuri).resolve(),
                layer_dirs=layer_dirs,
                timeout=int(function.timeout or 3),
                memory=int(function.memory or 128),
                environment={
                    k: _env_value(v)
                    for k, v in resolver.intrinsic_property_resolver(variables, ignore_errors=True).items()
                },
                arn=f"arn:{PARTITION}:lambda:{region}:{ACCOUNT_ID}:function:{function.functionname}",
                reserved_concurrency=_reserved_concurrency(resources.get(function.name, {}), resolver),
            )

        state_machines: dict[str, StateMachineSpec] = {}
        for logical_id, resource in resources.items():
            if resource.get("Type") != "AWS::Serverless::StateMachine":
                continue
            props = resource.get("Properties") or {}
            state_machines[logical_id] = _state_machine(logical_id, props, base, resolver, region)

        schedules = _schedules(resources, resolver)
        return cls(
            template_path, region, stack_name, parameters, resources, functions, state_machines, schedules, template
        )

    def of_type(self, *types: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items() if r.get("Type") in types}

    def function(self, name: str) -> FunctionSpec:
        if name in self.functions:
            return self.functions[name]
        for spec in self.functions.values():
            if name in (spec.function_name, spec.arn):
                return spec
        raise TemplateError(f"no function {name!r} in the template; functions: {', '.join(sorted(self.functions))}")

    def state_machine(self, name: str) -> StateMachineSpec:
        if name in self.state_machines:
            return self.state_machines[name]
        for spec in self.state_machines.values():
            if name in (spec.name, spec.arn):
                return spec
        raise TemplateError(
            f"no state machine {name!r} in the template; state machines: {', '.join(sorted(self.state_machines))}"
        )


_LOADED: dict[tuple[Any, ...], tuple[bytes, list[tuple[Path, tuple[int, int]]]]] = {}


def _disk_key(key: tuple[Any, ...]) -> Path:
    from importlib.metadata import version

    # The reader's own code and SAM CLI's version are part of what the result depends on.
    models = Path(__file__).with_name("models.py")
    salt = (Path(__file__).read_bytes(), models.read_bytes(), version("aws-sam-cli"), sys.version)
    digest = hashlib.sha256(pickle.dumps((key, salt))).hexdigest()[:32]
    return cache_dir("templates") / f"{digest}.pickle"


def _read_disk_cache(key: tuple[Any, ...]) -> Any:
    """A later process of the same checkout skips SAM CLI's template reading (about a second
    of imports and YAML); any change to the template or a definition file reads it again."""
    try:
        with _disk_key(key).open("rb") as cached:
            return pickle.load(cached)
    except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
        return None


def _write_disk_cache(key: tuple[Any, ...], entry: Any) -> None:
    target = _disk_key(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_suffix(f".{os.getpid()}.tmp")
        staging.write_bytes(pickle.dumps(entry))
        staging.replace(target)
    except OSError:
        return  # a read-only home: the cache is an optimisation only


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def _schedules(resources: dict[str, Any], resolver: Any) -> list[ScheduleSpec]:
    kinds = {"AWS::Serverless::StateMachine": "state_machine", "AWS::Serverless::Function": "function"}
    found: list[ScheduleSpec] = []
    for logical_id, resource in resources.items():
        target_type = kinds.get(resource.get("Type", ""))
        if target_type is None:
            continue
        for event_id, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") not in ("Schedule", "ScheduleV2"):
                continue
            props = resolver.intrinsic_property_resolver(event.get("Properties") or {}, ignore_errors=True)
            state = str(props.get("State", "ENABLED")).upper()
            enabled = bool(props.get("Enabled", True)) and state == "ENABLED"
            found.append(
                ScheduleSpec(
                    name=str(props.get("Name") or f"{logical_id}{event_id}"),
                    kind=event["Type"],
                    target=logical_id,
                    logical_id=f"{logical_id}{event_id}",
                    target_type=target_type,
                    expression=str(props["Schedule"] if "Schedule" in props else props.get("ScheduleExpression", "")),
                    input=props.get("Input"),
                    enabled=enabled,
                )
            )
    return found


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _layer_root(path: Path) -> Path:
    # A layer laid out for AWS keeps its packages under python/; a SAM-built one
    # (BuildMethod python3.13) has them at the ContentUri root.
    path = path.resolve()
    return path / "python" if (path / "python").is_dir() else path


def _arn(resource_type: str, logical_id: str, region: str) -> str | None:
    arns = {
        "AWS::DynamoDB::Table": f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT_ID}:table/{logical_id}",
        "AWS::Serverless::SimpleTable": f"arn:{PARTITION}:dynamodb:{region}:{ACCOUNT_ID}:table/{logical_id}",
        "AWS::Serverless::Function": f"arn:{PARTITION}:lambda:{region}:{ACCOUNT_ID}:function:{logical_id}",
        "AWS::Lambda::Function": f"arn:{PARTITION}:lambda:{region}:{ACCOUNT_ID}:function:{logical_id}",
        "AWS::Serverless::StateMachine": f"arn:{PARTITION}:states:{region}:{ACCOUNT_ID}:stateMachine:{logical_id}",
        "AWS::StepFunctions::StateMachine": f"arn:{PARTITION}:states:{region}:{ACCOUNT_ID}:stateMachine:{logical_id}",
        "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{region}:{ACCOUNT_ID}:{logical_id}",
        "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{logical_id.lower()}",
        "AWS::SecretsManager::Secret": f"arn:{PARTITION}:secretsmanager:{region}:{ACCOUNT_ID}:secret:{logical_id}",
        "AWS::Serverless::LayerVersion": f"arn:{PARTITION}:lambda:{region}:{ACCOUNT_ID}:layer:{logical_id}:1",
        "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT_ID}:role/{logical_id}",
        "AWS::ApiGatewayV2::Api": f"arn:{PARTITION}:apigateway:{region}::/apis/{logical_id.lower()}",
    }
    return arns.get(resource_type)


def _resolver(
    template: dict[str, Any],
    resources: dict[str, Any],
    region: str,
    stack_name: str,
    parameters: dict[str, Any],
    overrides: dict[str, dict[str, Any]] | None = None,
    *,
    named: bool = True,
) -> Any:
    from samcli.lib.intrinsic_resolver.intrinsic_property_resolver import IntrinsicResolver
    from samcli.lib.intrinsic_resolver.intrinsics_symbol_table import IntrinsicsSymbolTable

    translator: dict[str, Any] = {
        "AWS::Region": region,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::StackName": stack_name,
        "AWS::Partition": PARTITION,
        "AWS::URLSuffix": "amazonaws.com",
    }
    for name, value in parameters.items():
        translator[name] = value
    bootstrap: list[Any] = []

    def unnamed() -> Any:
        """One resolver with the state machines' names as their logical ids, for all their
        ``Name``s (made at most once: each one copies the whole template)."""
        if not bootstrap:
            bootstrap.append(_resolver(template, resources, region, stack_name, parameters, named=False))
        return bootstrap[0]

    for logical_id, resource in resources.items():
        rtype = resource.get("Type", "")
        entry: dict[str, Any] = {"Ref": logical_id}
        arn = _arn(rtype, logical_id, region)
        if arn:
            entry["Arn"] = arn
        if rtype == "AWS::SQS::Queue":
            entry["Ref"] = f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{logical_id}"
            entry["QueueUrl"] = entry["Ref"]
            entry["QueueName"] = logical_id
        if rtype == "AWS::S3::Bucket":
            entry["Ref"] = logical_id.lower()
        if rtype in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"):
            name = logical_id
            if named:
                name = _state_machine_name(logical_id, resource, unnamed)
                arn = f"arn:{PARTITION}:states:{region}:{ACCOUNT_ID}:stateMachine:{name}"
                entry["Arn"] = arn
            entry["Ref"] = arn
            entry["Name"] = name
        if rtype == "AWS::SecretsManager::Secret":
            entry["Ref"] = logical_id
        if rtype == "AWS::ApiGatewayV2::Api":
            entry["Ref"] = logical_id.lower()
            entry["ApiEndpoint"] = f"wss://{logical_id.lower()}.execute-api.{region}.amazonaws.com"
        entry.update((overrides or {}).get(logical_id, {}))
        translator[logical_id] = entry
    symbols = IntrinsicsSymbolTable(template=template, logical_id_translator=translator)
    return IntrinsicResolver(template=template, symbol_resolver=symbols)


def _state_machine_name(logical_id: str, resource: dict[str, Any], unnamed: Callable[[], Any]) -> str:
    """A state machine's ``Name`` as CloudFormation would create it (the logical id when unnamed)."""
    raw = (resource.get("Properties") or {}).get("Name")
    if raw is None:
        return logical_id
    if isinstance(raw, str):
        return raw
    bootstrap = unnamed()
    return str(bootstrap.intrinsic_property_resolver({"Name": raw}, ignore_errors=False)["Name"])


def _state_machine(logical_id: str, props: dict[str, Any], base: Path, resolver: Any, region: str) -> StateMachineSpec:
    definition_path: Path | None = None
    if "DefinitionUri" in props:
        uri = props["DefinitionUri"]
        if not isinstance(uri, str):
            raise TemplateError(f"{logical_id}: only a local DefinitionUri path is supported offline")
        definition_path = (base / uri).resolve()
        try:
            text = definition_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateError(f"{logical_id}: cannot read DefinitionUri {definition_path}: {exc}") from exc
    elif "Definition" in props:
        text = json.dumps(props["Definition"])
    else:
        raise TemplateError(f"{logical_id}: a state machine needs Definition or DefinitionUri")
    substitutions = resolver.intrinsic_property_resolver(
        props.get("DefinitionSubstitutions") or {}, ignore_errors=False
    )
    text = substitute(text, substitutions, where=f"{logical_id} ({definition_path or 'Definition'})")
    try:
        definition = json.loads(text)
    except ValueError as exc:
        raise TemplateError(f"{logical_id}: definition is not valid JSON: {exc}") from exc
    name = str(
        resolver.intrinsic_property_resolver({"Name": {"Fn::GetAtt": [logical_id, "Name"]}}, ignore_errors=False)[
            "Name"
        ]
    )
    arn = f"arn:{PARTITION}:states:{region}:{ACCOUNT_ID}:stateMachine:{name}"
    return StateMachineSpec(
        logical_id=logical_id,
        name=name,
        arn=arn,
        type=str(props.get("Type", "STANDARD")).upper(),
        definition=definition,
        definition_path=definition_path,
        events=dict(props.get("Events") or {}),
    )


def substitute(text: str, substitutions: dict[str, Any], *, where: str) -> str:
    """Apply DefinitionSubstitutions as SAM does; an undefined ``${Name}`` is an error."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in substitutions:
            raise TemplateError(f"{where}: ${{{key}}} has no DefinitionSubstitutions entry")
        value = substitutions[key]
        # Inside a JSON string: escape as JSON would.
        return json.dumps(value if isinstance(value, str) else json.dumps(value))[1:-1]

    return _SUBSTITUTION.sub(replace, text)


def _reserved_concurrency(resource: Mapping[str, Any], resolver: Any) -> int | None:
    """A function's ReservedConcurrentExecutions (its ceiling on concurrent invocations), if set."""
    raw = (resource.get("Properties") or {}).get("ReservedConcurrentExecutions")
    if raw is None:
        return None
    value = resolver.intrinsic_property_resolver({"v": raw}, ignore_errors=True).get("v")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"ReservedConcurrentExecutions {raw!r} does not resolve to a number") from None
