"""IAM offline: every call acts with the role SAM generates for its caller.

On AWS a function's SDK calls are signed with its execution role and a state
machine's integrations with its role; IAM answers ``AccessDeniedException``
to a call no statement allows. Here the roles come from SAM's own translator
(``samtranslator``: policy templates such as ``DynamoDBCrudPolicy`` expanded
exactly as ``sam deploy`` expands them, inline ``Statement`` policies, managed
policies), their intrinsics are resolved against the local stack, and every
SDK call a handler or an ASL integration makes is evaluated against them
before it reaches moto:

* explicit ``Deny`` wins, then an ``Allow`` whose Action/NotAction,
  Resource/NotResource and Condition all match, else the implicit deny;
* actions match case-insensitively with ``*``/``?`` wildcards, resources
  case-sensitively;
* the resource of a call is the ARN IAM evaluates (a table, a table's index
  for a Query on it, an object for GetObject, the bucket for HeadBucket, the
  ``@connections`` route for the management API, ...).

A denied call answers as AWS does, in the service's own protocol, with AWS's
message naming the assumed role, the action and the resource. Calls made by
the runtime itself and by tests (no caller role) are the administrator's and
always allowed. Every decision is recorded so ``bw iam`` can report, per
role, which grants a run used and which calls were refused.
"""

from __future__ import annotations

import contextvars
import fnmatch
import functools
import hashlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from local_runtime.user_cache import cache_dir

__all__ = [
    "AccessRequest",
    "Allowance",
    "Decision",
    "Grant",
    "IamModel",
    "Role",
    "RoleReport",
    "Statement",
    "acting_as",
    "install",
    "load_allowance",
    "load_roles",
    "normalise_resource",
    "read_usage",
    "report",
    "requests_for",
    "stale_allowances",
    "template_model",
]

#: Managed policies SAM attaches to the roles it generates. Their documents are
#: AWS's (IAM console, "AWS managed policies"); a template naming another one is
#: refused rather than guessed.
MANAGED_POLICIES: Mapping[str, dict[str, Any]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": ["*"],
            }
        ],
    },
    "arn:aws:iam::aws:policy/service-role/AWSLambdaRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": ["*"]}],
    },
}
#: What SAM's translator asks for when it resolves a managed policy by name.
_MANAGED_BY_NAME = {arn.rsplit("/", 1)[-1]: arn for arn in MANAGED_POLICIES}
#: Grants the Lambda service itself uses on the function's behalf (its log
#: stream, the X-Ray daemon): never called by handler code, so never "unused".
PLATFORM_ACTIONS = ("logs:", "xray:")

#: IAM's service prefix where it is not botocore's signing name.
_PREFIX = {"monitoring": "cloudwatch"}


class IamError(ValueError):
    """The template's IAM cannot be evaluated offline (the message says why)."""


# -- policies -----------------------------------------------------------------
@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    not_actions: tuple[str, ...]
    resources: tuple[str, ...]
    not_resources: tuple[str, ...]
    conditions: Mapping[str, Mapping[str, tuple[str, ...]]]
    policy: str  # where it came from: the role's inline policy name or a managed policy ARN

    @classmethod
    def parse(cls, raw: Mapping[str, Any], policy: str) -> Statement:
        def strings(key: str) -> tuple[str, ...]:
            value = raw.get(key)
            if value is None:
                return ()
            values = value if isinstance(value, list) else [value]
            for item in values:
                if not isinstance(item, str):
                    raise IamError(f"{policy}: {key} {item!r} did not resolve to a string")
            return tuple(values)

        conditions = {
            operator: {key: tuple(v if isinstance(v, list) else [v]) for key, v in (pairs or {}).items()}
            for operator, pairs in (raw.get("Condition") or {}).items()
        }
        effect = str(raw.get("Effect", ""))
        if effect not in ("Allow", "Deny"):
            raise IamError(f"{policy}: Effect must be Allow or Deny, got {effect!r}")
        return cls(
            effect,
            strings("Action"),
            strings("NotAction"),
            strings("Resource"),
            strings("NotResource"),
            {op: {k: tuple(str(x) for x in v) for k, v in pairs.items()} for op, pairs in conditions.items()},
            policy,
        )

    def matches(self, request: AccessRequest) -> bool:
        if self.actions and not any(_action_match(p, request.action) for p in self.actions):
            return False
        if self.not_actions and any(_action_match(p, request.action) for p in self.not_actions):
            return False
        if self.resources and not any(_resource_match(p, request.resource) for p in self.resources):
            return False
        if self.not_resources and any(_resource_match(p, request.resource) for p in self.not_resources):
            return False
        return all(
            _condition(operator, key, values, request.context)
            for operator, pairs in self.conditions.items()
            for key, values in pairs.items()
        )

    @functools.cached_property
    def grants(self) -> tuple[Grant, ...]:
        """(action, resource) pairs this statement allows, for the least-privilege report."""
        if self.effect != "Allow":
            return ()
        actions = self.actions or tuple(f"NotAction:{a}" for a in self.not_actions)
        resources = self.resources or tuple(f"NotResource:{r}" for r in self.not_resources)
        return tuple(Grant(a, r, self.policy) for a in actions for r in resources)


@dataclass(frozen=True)
class Grant:
    action: str
    resource: str
    policy: str

    def covers(self, request: AccessRequest) -> bool:
        if self.action.startswith("NotAction:") or self.resource.startswith("NotResource:"):
            return False
        return _action_match(self.action, request.action) and _resource_match(self.resource, request.resource)

    @property
    def platform(self) -> bool:
        return self.action.lower().startswith(PLATFORM_ACTIONS)


@dataclass(frozen=True)
class Role:
    logical_id: str
    name: str
    arn: str
    statements: tuple[Statement, ...]

    def session_arn(self, session: str) -> str:
        account = self.arn.split(":")[4]
        partition = self.arn.split(":")[1]
        return f"arn:{partition}:sts::{account}:assumed-role/{self.name}/{session}"


@dataclass(frozen=True)
class AccessRequest:
    """One authorisation IAM makes for a call (a call may need several)."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    request: AccessRequest
    explicit_deny: bool = False
    #: The Allow statements that matched (what the least-privilege report counts as used).
    allowed_by: tuple[Statement, ...] = ()

    def message(self, principal: str) -> str:
        action, resource = self.request.action, self.request.resource
        if self.explicit_deny:
            why = "with an explicit deny in an identity-based policy"
        else:
            why = f"because no identity-based policy allows the {action} action"
        if action.lower().startswith("s3:"):
            resource = f'"{resource}"'  # S3 quotes the resource in its message
        return f"User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"


def evaluate(statements: Sequence[Statement], request: AccessRequest) -> Decision:
    allowing: list[Statement] = []
    for statement in statements:
        if not statement.matches(request):
            continue
        if statement.effect == "Deny":
            return Decision(False, request, explicit_deny=True)
        allowing.append(statement)
    return Decision(bool(allowing), request, allowed_by=tuple(allowing))


@functools.lru_cache(maxsize=4096)
def _glob(pattern: str, case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run (also across ':' and '/'), ? one character; nothing else is special.
    return re.compile(fnmatch.translate(pattern).replace("[", r"\[").replace("]", r"\]"), 0 if case else re.I)


def _action_match(pattern: str, action: str) -> bool:
    return _glob(pattern, False).match(action) is not None


def _resource_match(pattern: str, resource: str) -> bool:
    return pattern == "*" or _glob(pattern, True).match(resource) is not None


def _condition(operator: str, key: str, values: tuple[str, ...], context: Mapping[str, str]) -> bool:
    """The condition operators the template can use; an unknown one never matches (no silent allow)."""
    base, if_exists = (operator[: -len("IfExists")], True) if operator.endswith("IfExists") else (operator, False)
    actual = context.get(key.lower())
    if base == "Null":
        return (actual is None) == (values[0].lower() == "true")
    if actual is None:
        return if_exists
    if base in ("StringEquals", "ArnEquals"):
        return actual in values
    if base == "StringEqualsIgnoreCase":
        return actual.lower() in {v.lower() for v in values}
    if base in ("StringNotEquals", "ArnNotEquals"):
        return actual not in values
    if base in ("StringLike", "ArnLike"):
        return any(_resource_match(v, actual) for v in values)
    if base in ("StringNotLike", "ArnNotLike"):
        return not any(_resource_match(v, actual) for v in values)
    if base == "Bool":
        return actual.lower() in {v.lower() for v in values}
    return False


# -- the calls: action and resource --------------------------------------------
def requests_for(
    service_model: Any, operation: str, params: Mapping[str, Any], *, region: str, account: str, endpoint: str
) -> list[AccessRequest]:
    """What IAM authorises for ``operation`` with ``params``: one request per resource it touches."""
    service = service_model.service_name
    prefix = _PREFIX.get(service_model.signing_name, service_model.signing_name)
    partition = "aws"
    action = f"{prefix}:{operation}"
    context = {"aws:requestedregion": region, "aws:securetransport": "true"}

    def arn(service_part: str, rest: str, *, with_region: bool = True, with_account: bool = True) -> str:
        return (
            f"arn:{partition}:{service_part}:{region if with_region else ''}:{account if with_account else ''}:{rest}"
        )

    if service == "dynamodb":

        def table(name: str) -> str:
            return name if name.startswith("arn:") else arn("dynamodb", f"table/{name}")

        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [AccessRequest(action, table(t), context) for t in (params.get("RequestItems") or {})] or [
                AccessRequest(action, "*", context)
            ]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            # There is no Transact* action: IAM authorises each item's own action on its table.
            kinds = {
                "Put": "PutItem",
                "Update": "UpdateItem",
                "Delete": "DeleteItem",
                "ConditionCheck": "ConditionCheckItem",
            }
            found = []
            for entry in params.get("TransactItems") or []:
                for kind, body in entry.items():
                    item_action = "GetItem" if kind == "Get" else kinds.get(kind, kind)
                    found.append(AccessRequest(f"dynamodb:{item_action}", table(body.get("TableName", "")), context))
            return found
        name = params.get("TableName") or params.get("TableArn") or params.get("ResourceArn")
        if not isinstance(name, str):
            return [AccessRequest(action, "*", context)]
        resource = table(name)
        if params.get("IndexName") and operation in ("Query", "Scan"):
            resource += f"/index/{params['IndexName']}"
        return [AccessRequest(action, resource, context)]
    if service == "stepfunctions":
        target = params.get("stateMachineArn") or params.get("executionArn") or params.get("activityArn") or "*"
        return [AccessRequest(action, str(target), context)]
    if service == "lambda":
        if operation in ("Invoke", "InvokeAsync", "InvokeWithResponseStream"):
            action = "lambda:InvokeFunction"
        name = str(params.get("FunctionName", "*"))
        if not name.startswith("arn:"):
            name = arn("lambda", f"function:{name}")
        if params.get("Qualifier"):
            name += f":{params['Qualifier']}"
        return [AccessRequest(action, name, context)]
    if service == "s3":
        bucket, key = params.get("Bucket"), params.get("Key")
        object_actions = {"HeadObject": "s3:GetObject", "GetObject": "s3:GetObject"}
        bucket_actions = {
            "HeadBucket": "s3:ListBucket",
            "ListObjects": "s3:ListBucket",
            "ListObjectsV2": "s3:ListBucket",
        }
        if operation in bucket_actions:
            return [AccessRequest(bucket_actions[operation], f"arn:{partition}:s3:::{bucket}", context)]
        action = object_actions.get(operation, action)
        resource = f"arn:{partition}:s3:::{bucket}/{key}" if key is not None else f"arn:{partition}:s3:::{bucket}"
        return [AccessRequest(action, resource, context)]
    if service == "secretsmanager":
        return [AccessRequest(action, str(params.get("SecretId", "*")), context)]
    if service == "apigatewaymanagementapi":
        method = {"PostToConnection": "POST", "GetConnection": "GET", "DeleteConnection": "DELETE"}.get(operation, "*")
        url = urlparse(endpoint)
        api_id = url.hostname.split(".", 1)[0] if url.hostname else "*"
        stage = url.path.strip("/") or "*"
        connection = params.get("ConnectionId", "*")
        return [
            AccessRequest(
                "execute-api:ManageConnections",
                arn("execute-api", f"{api_id}/{stage}/{method}/@connections/{connection}"),
                context,
            )
        ]
    if service == "cloudwatch":
        namespace = params.get("Namespace")
        extra = {"cloudwatch:namespace": str(namespace)} if namespace is not None else {}
        return [AccessRequest(action, "*", {**context, **extra})]
    if service == "sqs":
        queue_url = str(params.get("QueueUrl", ""))
        name = queue_url.rstrip("/").rsplit("/", 1)[-1] if queue_url else "*"
        return [AccessRequest(action, arn("sqs", name), context)]
    if service == "sts" and operation == "GetCallerIdentity":
        return []  # needs no permission on AWS either
    return [AccessRequest(action, "*", context)]


# -- the roles of a template ----------------------------------------------------------
@dataclass
class IamModel:
    """Every role of a template and who acts with which, with what a run used."""

    template: Path
    roles: dict[str, Role]  # by role ARN
    by_caller: dict[str, str]  # function / state machine / schedule logical id -> role ARN
    used: Counter[tuple[str, Grant]] = field(default_factory=Counter)
    #: (role, action, resource) of every allowed request: what the report matches a later
    #: template's grants against (the grants above are the template of the run).
    requested: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    denied: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def role_for(self, caller: str) -> Role | None:
        arn = self.by_caller.get(caller)
        return self.roles.get(arn) if arn else None

    def authorize(self, role_arn: str, requests: Sequence[AccessRequest]) -> Decision | None:
        """The first refused request, or None when every one is allowed (and recorded)."""
        role = self.roles.get(role_arn)
        if role is None:
            return None  # not one of the template's roles: the runtime's own calls
        for request in requests:
            decision = evaluate(role.statements, request)
            with self._lock:
                if not decision.allowed:
                    self.denied[(role.logical_id, request.action, request.resource)] += 1
                    return decision
                self.requested[(role.logical_id, request.action, request.resource)] += 1
                for statement in decision.allowed_by:
                    for grant in statement.grants:
                        if grant.covers(request):
                            self.used[(role.logical_id, grant)] += 1
        return None

    def usage(self) -> dict[str, Any]:
        """What this run used and was refused, by role (JSON, merged across runs by ``bw iam``)."""
        with self._lock:
            return {
                "template": str(self.template),
                "used": [
                    {"role": role, "action": g.action, "resource": g.resource, "policy": g.policy, "calls": n}
                    for (role, g), n in sorted(self.used.items(), key=lambda kv: (kv[0][0], kv[0][1].action))
                ],
                "requested": [
                    {"role": role, "action": action, "resource": resource, "calls": n}
                    for (role, action, resource), n in sorted(self.requested.items())
                ],
                "denied": [
                    {"role": role, "action": action, "resource": resource, "calls": n}
                    for (role, action, resource), n in sorted(self.denied.items())
                ],
            }


def load_roles(
    template_path: Path, raw_template: Mapping[str, Any], resolver: Any, *, stack_name: str, account: str
) -> IamModel:
    """The template's roles as ``sam deploy`` would create them, resolved against the local stack."""
    translated = translate(template_path, raw_template)
    resources: dict[str, Any] = translated.get("Resources") or {}
    roles: dict[str, Role] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::IAM::Role":
            continue
        props = resource.get("Properties") or {}
        name = str(props.get("RoleName") or f"{stack_name}-{logical_id}")[:64]
        arn = f"arn:aws:iam::{account}:role/{name}"
        statements: list[Statement] = []
        for policy in props.get("Policies") or []:
            document = _resolve(resolver, policy.get("PolicyDocument") or {})
            statements.extend(Statement.parse(s, str(policy.get("PolicyName"))) for s in _statements(document))
        for managed in props.get("ManagedPolicyArns") or []:
            managed_arn = resolver.intrinsic_property_resolver({"a": managed}, ignore_errors=False)["a"]
            document = MANAGED_POLICIES.get(str(managed_arn))
            if document is None:
                raise IamError(
                    f"{logical_id}: managed policy {managed_arn} is not known offline "
                    f"(known: {', '.join(sorted(MANAGED_POLICIES))}); add its document to local_runtime/iam.py"
                )
            statements.extend(Statement.parse(s, str(managed_arn)) for s in _statements(document))
        roles[arn] = Role(logical_id, name, arn, tuple(statements))
    by_logical = {role.logical_id: arn for arn, role in roles.items()}
    by_caller: dict[str, str] = {}
    for logical_id, resource in resources.items():
        props = resource.get("Properties") or {}
        role_ref = None
        if resource.get("Type") == "AWS::Lambda::Function":
            role_ref = props.get("Role")
        elif resource.get("Type") == "AWS::StepFunctions::StateMachine":
            role_ref = props.get("RoleArn")
        elif resource.get("Type") == "AWS::Scheduler::Schedule":
            role_ref = (props.get("Target") or {}).get("RoleArn")
        elif resource.get("Type") == "AWS::Events::Rule":
            # A rule that starts a state machine does so with its target's role (a Lambda target has none).
            role_ref = next((t.get("RoleArn") for t in props.get("Targets") or [] if t.get("RoleArn")), None)
        if role_ref is None:
            continue
        if isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref:
            target = role_ref["Fn::GetAtt"]
            target_id = target[0] if isinstance(target, list) else str(target).split(".", 1)[0]
            if target_id in by_logical:
                by_caller[logical_id] = by_logical[target_id]
                continue
        raise IamError(f"{logical_id}: role {role_ref!r} is not a role of this template; cannot evaluate it offline")
    return IamModel(template_path, roles, by_caller)


def _resolve(resolver: Any, value: Any) -> Any:
    """Intrinsics resolved with SAM CLI's resolver, except ``Fn::Sub`` with a variable map:
    SAM CLI resolves a variable's *value* again as a logical id (a state machine's
    ``!GetAtt X.Name`` becomes its ARN), so the map is substituted here."""
    if isinstance(value, list):
        return [_resolve(resolver, v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], list) and len(value["Fn::Sub"]) == 2:
        text, variables = value["Fn::Sub"]
        resolved = {k: str(_resolve(resolver, v)) for k, v in (variables or {}).items()}
        text = re.sub(r"\$\{([^}!]+)\}", lambda m: resolved.get(m.group(1), m.group(0)), str(text))
        return resolver.intrinsic_property_resolver({"v": {"Fn::Sub": text}}, ignore_errors=False)["v"]
    if len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
        return resolver.intrinsic_property_resolver({"v": value}, ignore_errors=False)["v"]
    return {k: _resolve(resolver, v) for k, v in value.items()}


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement") or []
    return list(statements if isinstance(statements, list) else [statements])


_TRANSLATED: dict[str, dict[str, Any]] = {}


def translate(template_path: Path, raw_template: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's translator on the template (what ``sam deploy`` sends CloudFormation), cached per content."""
    import samtranslator

    text = json.dumps(raw_template, sort_keys=True, default=str)
    key = hashlib.sha256(f"{samtranslator.__version__}\n{text}".encode()).hexdigest()
    on_disk = cache_dir("translated") / f"{key[:32]}.json"
    if key not in _TRANSLATED and on_disk.is_file():
        try:
            _TRANSLATED[key] = json.loads(on_disk.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    if key not in _TRANSLATED:
        import copy

        import boto3
        from samtranslator.parser.parser import Parser  # type: ignore[import-untyped]
        from samtranslator.translator.translator import Translator  # type: ignore[import-untyped]

        template = copy.deepcopy(dict(raw_template))
        for resource in (template.get("Resources") or {}).values():
            props = resource.get("Properties") or {}
            # Local paths are uploaded by `sam deploy`; the translator wants the S3 form it would see.
            for uri in ("CodeUri", "DefinitionUri", "ContentUri"):
                if isinstance(props.get(uri), str) and not props[uri].startswith("s3://"):
                    props[uri] = f"s3://bw-local-artifacts/{uri}"
        translator = Translator(
            managed_policy_map={}, sam_parser=Parser(), boto_session=boto3.Session(region_name="us-east-1")
        )
        try:
            _TRANSLATED[key] = translator.translate(template, {}, get_managed_policy_map=lambda: _MANAGED_BY_NAME)
        except Exception as exc:
            raise IamError(f"{template_path}: SAM's translator refused the template: {exc}") from exc
        try:  # a later process skips the translator (its import and run cost about a second)
            on_disk.parent.mkdir(parents=True, exist_ok=True)
            staging = on_disk.with_suffix(f".{os.getpid()}.tmp")
            staging.write_text(json.dumps(_TRANSLATED[key]), encoding="utf-8")
            staging.replace(on_disk)
        except OSError:
            pass
    return _TRANSLATED[key]


# -- who is calling ------------------------------------------------------------------
_ROLE: contextvars.ContextVar[str | None] = contextvars.ContextVar("bw_iam_role", default=None)
_SESSION: contextvars.ContextVar[str] = contextvars.ContextVar("bw_iam_session", default="")


@contextmanager
def acting_as(role_arn: str | None, session: str) -> Iterator[None]:
    """Calls made inside (and by threads started inside) are signed with ``role_arn``."""
    role_token, session_token = _ROLE.set(role_arn), _SESSION.set(session)
    try:
        yield
    finally:
        _ROLE.reset(role_token)
        _SESSION.reset(session_token)


# -- hooks ------------------------------------------------------------------------------
#: (module, attribute) of the hooks below, verified like the seams.
SEAMS: tuple[tuple[str, str], ...] = (
    ("botocore.client", "BaseClient._make_api_call"),
    ("moto.stepfunctions.parser.backend.execution_worker", "ExecutionWorker._execution_logic"),
)
_installed = False
_install_lock = threading.Lock()
_local = threading.local()
#: Set on a client whose calls are the administrator's (the runtime's own and its user's, e.g.
#: ``LocalRuntime.client()``), whichever thread makes them: a test's hook running inside an
#: execution does not act with that state machine's role.
ADMINISTRATOR = "_bw_administrator"


def pending_denial() -> tuple[int, dict[str, str], str] | None:
    """The AccessDenied response the current thread's next request answers with, if any."""
    return getattr(_local, "pending", None)


def take_pending_denial() -> tuple[int, dict[str, str], str] | None:
    pending = getattr(_local, "pending", None)
    _local.pending = None
    return pending


def install(active: Any) -> None:
    """Hook botocore (every client, whenever created) and the ASL interpreter. ``active``
    returns the running LocalRuntime or None; with none, nothing is checked."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _install_client_check(active)
        _install_execution_role()
        _installed = True


def _install_client_check(active: Any) -> None:
    from botocore.client import BaseClient

    original = BaseClient._make_api_call  # type: ignore[attr-defined]

    def _make_api_call(self: BaseClient, operation_name: str, api_params: dict[str, Any]) -> Any:
        runtime = active()
        role_arn = _ROLE.get()
        model: IamModel | None = getattr(runtime, "iam", None) if runtime is not None else None
        if model is None or role_arn is None or getattr(self, ADMINISTRATOR, False):
            return original(self, operation_name, api_params)
        refused = refusal(
            runtime,
            role_arn,
            _SESSION.get(),
            self.meta.service_model,
            operation_name,
            api_params,
            region=self.meta.region_name,
            endpoint=self.meta.endpoint_url,
        )
        if refused is None:
            return original(self, operation_name, api_params)
        status_code, headers, body = refused
        _local.pending = (status_code, headers, body)
        try:
            return original(self, operation_name, api_params)
        finally:
            _local.pending = None

    BaseClient._make_api_call = _make_api_call  # type: ignore[attr-defined]


def _missing_object(account: str, params: Mapping[str, Any], requests: Sequence[AccessRequest]) -> list[AccessRequest]:
    """S3 answers a missing key 404 NoSuchKey only to a caller allowed s3:ListBucket on the
    bucket; to anyone else 403 AccessDenied (it will not say whether the key exists)."""
    from moto.s3.models import s3_backends

    bucket, key = params.get("Bucket"), params.get("Key")
    if not isinstance(bucket, str) or not isinstance(key, str):
        return []
    try:
        found = s3_backends[account]["aws"].get_object(bucket, key, version_id=params.get("VersionId"))
    except Exception:  # noqa: BLE001 - a missing bucket and the like: S3's own answer, not IAM's
        return []
    if found is not None:
        return []
    context = requests[0].context if requests else {}
    return [AccessRequest("s3:ListBucket", f"arn:aws:s3:::{bucket}", context)]


def refusal(
    runtime: Any,
    role_arn: str,
    session: str,
    service_model: Any,
    operation: str,
    params: Mapping[str, Any],
    *,
    region: str,
    endpoint: str,
) -> tuple[int, dict[str, str], str] | None:
    """AWS's AccessDenied answer (status, headers, body) when ``role_arn`` may not make this
    call, None when it may (the grants it used are recorded). Shared by the runtime's own
    botocore clients and the ``aws`` endpoint that containers call."""
    model: IamModel | None = getattr(runtime, "iam", None)
    if model is None:
        return None
    requests = requests_for(
        service_model, operation, params, region=region, account=runtime.account_id, endpoint=endpoint
    )
    requests = [runtime.physical_request(r) for r in requests]
    if service_model.service_name == "s3" and operation in ("GetObject", "HeadObject"):
        requests += _missing_object(runtime.account_id, params, requests)
    decision = model.authorize(role_arn, requests)
    if decision is None:
        return None
    from local_runtime.protocols import error_response

    role = model.roles[role_arn]
    message = decision.message(role.session_arn(session or role.name))
    code, status, key = _denied_shape(service_model.service_name)
    status_code, headers, body = error_response(
        service_model.operation_model(operation), code, message, status, message_key=key
    )
    if service_model.metadata.get("awsQueryCompatible") is not None:
        # JSON services that grew out of the query protocol name the code in this header.
        headers["x-amzn-query-error"] = f"{code};Sender"
    return status_code, headers, body


def _denied_shape(service: str) -> tuple[str, int, str]:
    """(error code, HTTP status, message member) of AWS's refusal, per service."""
    if service == "s3":
        return "AccessDenied", 403, "message"
    if service in ("lambda", "apigatewaymanagementapi"):
        return "AccessDeniedException", 403, "Message"
    if service in ("dynamodb", "stepfunctions"):
        return "AccessDeniedException", 400, "Message"
    if service in ("sqs", "cloudwatch"):
        return "AccessDenied", 403, "message"
    return "AccessDeniedException", 400, "message"


def _install_execution_role() -> None:
    """An execution's integrations are signed with its state machine's role."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    original = ExecutionWorker._execution_logic

    def _execution_logic(self: Any) -> Any:
        details = self._evaluation_details
        role = details.aws_execution_details.role_arn
        # Step Functions assumes the role with a session of its own naming.
        session = hashlib.sha256(str(details.execution_details.arn).encode()).hexdigest()[:32]
        with acting_as(role, session):
            return original(self)  # type: ignore[no-untyped-call]

    ExecutionWorker._execution_logic = _execution_logic  # type: ignore[method-assign]


# -- least privilege ------------------------------------------------------------------
_SECRET_SUFFIX = re.compile(r"^(arn:[^:]+:secretsmanager:[^:]*:\d*:secret:.+)-[A-Za-z0-9]{6}$")


def normalise_resource(resource: str) -> str:
    """A secret's ARN ends in six random characters per creation: compare runs without them."""
    return _SECRET_SUFFIX.sub(r"\1-*", resource)


@dataclass(frozen=True)
class RoleReport:
    role: str
    callers: tuple[str, ...]
    granted: tuple[Grant, ...]
    used: Mapping[Grant, int]
    unused: tuple[Grant, ...]
    platform: tuple[Grant, ...]
    denied: tuple[tuple[str, str, int], ...]  # (action, resource, calls)
    #: Unused grants the allowance keeps, with its reason (not in ``unused``).
    allowed: tuple[tuple[Grant, str], ...] = ()


@dataclass(frozen=True)
class Allowance:
    """A grant no offline run can use that the role still needs on AWS, and why."""

    role: str
    action: str
    resource: str
    reason: str

    def keeps(self, role: str, grant: Grant) -> bool:
        return role == self.role and grant.action == self.action and grant.resource == self.resource


def load_allowance(path: Path) -> list[Allowance]:
    """The checked-in allowance (YAML list of role/action/resource/reason); every entry needs a reason."""
    import yaml

    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    entries: list[Allowance] = []
    for number, entry in enumerate(raw if isinstance(raw, list) else [raw], start=1):
        keys = ("role", "action", "resource", "reason")
        fields = {k: entry.get(k) if isinstance(entry, dict) else None for k in keys}
        missing = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if missing:
            raise IamError(f"{path}: entry {number} needs {', '.join(missing)}")
        entries.append(Allowance(**{k: str(v).strip() for k, v in fields.items()}))
    return entries


def stale_allowances(reports: Sequence[RoleReport], allowance: Sequence[Allowance]) -> list[Allowance]:
    """Entries that keep no grant of the template: the grant went or was renamed, so the entry must too."""
    granted = {(r.role, g.action, g.resource) for r in reports for g in r.granted}
    return [a for a in allowance if (a.role, a.action, a.resource) not in granted]


def report(
    model: IamModel, records: Sequence[Mapping[str, Any]], allowance: Sequence[Allowance] = ()
) -> list[RoleReport]:
    """Per role: what the template grants, what the recorded runs used, what they were refused
    (an unused grant the allowance keeps is listed with its reason, apart from ``unused``)."""
    template = str(model.template.resolve())
    used: Counter[tuple[str, str, str]] = Counter()
    requested: dict[str, Counter[tuple[str, str]]] = {}
    denied: Counter[tuple[str, str, str]] = Counter()
    for record in records:
        if str(Path(record.get("template", "")).resolve()) != template:
            continue
        for entry in record.get("used", []):
            # By what was granted, not by the policy granting it: SAM numbers a role's policies
            # by position, so a usage file outlives an edit that moves one.
            key = (entry["role"], entry["action"], normalise_resource(entry["resource"]))
            used[key] += int(entry.get("calls", 1))
        for entry in record.get("requested", []):
            calls = requested.setdefault(entry["role"], Counter())
            calls[(entry["action"], normalise_resource(entry["resource"]))] += int(entry.get("calls", 1))
        for entry in record.get("denied", []):
            denied[(entry["role"], entry["action"], normalise_resource(entry["resource"]))] += int(entry["calls"])
    callers: dict[str, list[str]] = {}
    for caller, arn in model.by_caller.items():
        callers.setdefault(model.roles[arn].logical_id, []).append(caller)
    reports: list[RoleReport] = []
    for role in sorted(model.roles.values(), key=lambda r: r.logical_id):
        granted: list[Grant] = []
        for statement in role.statements:
            for grant in statement.grants:
                normal = Grant(grant.action, normalise_resource(grant.resource), grant.policy)
                if normal not in granted:
                    granted.append(normal)
        calls = requested.get(role.logical_id, Counter())
        counts = {
            # A grant of this template is used if a recorded run used it, or made a request it
            # covers (a run of an earlier template whose grant was broader).
            g: used[(role.logical_id, g.action, g.resource)]
            or sum(n for (action, resource), n in calls.items() if g.covers(AccessRequest(action, resource)))
            for g in granted
        }
        never = [g for g in granted if not counts[g] and not g.platform]
        kept = {g: next((a.reason for a in allowance if a.keeps(role.logical_id, g)), None) for g in never}
        reports.append(
            RoleReport(
                role=role.logical_id,
                callers=tuple(sorted(callers.get(role.logical_id, []))),
                granted=tuple(granted),
                used={g: n for g, n in counts.items() if n},
                unused=tuple(g for g in never if kept[g] is None),
                platform=tuple(g for g in granted if g.platform),
                denied=tuple(
                    (action, resource, n) for (r, action, resource), n in sorted(denied.items()) if r == role.logical_id
                ),
                allowed=tuple((g, reason) for g, reason in kept.items() if reason is not None),
            )
        )
    return reports


def read_usage(paths: Sequence[Path]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in paths:
        if not path.is_file():
            continue
        records.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return records


def template_model(template: Any) -> IamModel:
    """The roles of a loaded :class:`~local_runtime.template.LocalTemplate`, without a running stack
    (a secret's ARN suffix, random per creation, is a wildcard here as in :func:`normalise_resource`)."""
    secrets = {
        lid: {"Ref": f"arn:aws:secretsmanager:{template.region}:{_ACCOUNT}:secret:{lid}-*"}
        for lid in template.of_type("AWS::SecretsManager::Secret")
    }
    return load_roles(
        template.path, template.raw, template.resolver(secrets), stack_name=template.stack_name, account=_ACCOUNT
    )


_ACCOUNT = "123456789012"
