"""The offline stack: the template's resources in moto, handlers in-process.

    with LocalRuntime("template.yaml", faults=[{"service": "dynamodb", "throttle": True, "count": 2}]) as rt:
        result = rt.run("RetryFlow", {"key": "k1"})
        print(result.status, result.trace().rows)

Everything runs against moto (``mock_aws`` with its ASL interpreter) under
fake credentials, so no call can reach a real account.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_runtime import iam as iam_hooks
from local_runtime import limits, packaging, seams
from local_runtime.clock import VirtualClock
from local_runtime.environ import ThreadEnviron
from local_runtime.faults import Fault, FaultInjector, FaultRule, load_fault_rules, request_resources
from local_runtime.iam import AccessRequest, IamModel, load_roles
from local_runtime.identity import IdentityProvider
from local_runtime.lambdas import Invocation, LocalFunction
from local_runtime.models import ExecutionResult
from local_runtime.template import ACCOUNT_ID, PARTITION, LocalTemplate, ScheduleSpec, TemplateError
from local_runtime.trace import maybe_json
from local_runtime.websockets import ConnectionRegistry
from resilience.signing_keys import parse_signing_key
from resilience.tokens import TokenPolicy

__all__ = ["ExecutionResult", "LocalRuntime", "fake_aws_environment"]

_LAMBDA_ROLE = "bw-local-lambda-role"
_STATES_ROLE = "bw-local-states-role"
_USAGE_LOCK = threading.Lock()
#: What the last stopped runtime left in moto (see LocalRuntime.stop): its key and secret ARNs.
_WARM: dict[str, Any] = {}
#: Services whose resources a warm start keeps (their data is emptied by _reuse).
_PROVISIONED_SERVICES = frozenset(
    {"dynamodb", "s3", "secretsmanager", "sqs", "iam", "lambda", "stepfunctions", "events", "scheduler"}
)

#: Set before anything creates a boto3 session, so no call can find real credentials.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "POWERTOOLS_DEV": "false",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def fake_aws_environment(region: str = "us-east-1") -> None:
    for key, value in FAKE_AWS_ENV.items():
        os.environ[key] = value
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ["AWS_REGION"] = region
    os.environ.pop("AWS_PROFILE", None)


class LocalRuntime:
    """The template's stack, offline, on one virtual clock."""

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        parameters: Mapping[str, str] | None = None,
        faults: str | Path | Iterable[FaultRule | Mapping[str, Any]] | None = None,
        clock: VirtualClock | None = None,
        seed: int | None = 0,
        region: str = "us-east-1",
        state_dir: str | Path | None = None,
        persist_tables: Iterable[str] = (),
        data: str | Path | Iterable[str | Path] | None = None,
        iam: bool | None = None,
    ) -> None:
        self.template_path = Path(template)
        self.parameters = dict(parameters or {})
        self.region = region
        self.seed = seed
        self.clock = clock or VirtualClock(seed=seed)
        self.faults = FaultInjector()
        if faults is not None:
            rules = load_fault_rules(faults) if isinstance(faults, (str, Path)) else list(faults)
            self.faults.extend(rules)
        self.connections = ConnectionRegistry(self.clock.now)
        #: Tables whose items survive between runtimes (e.g. breaker state between `bw` commands).
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.persist_tables = tuple(persist_tables)
        #: Objects and items a deployment would already hold (see :func:`load_stack_data`).
        self.data_paths = [Path(data)] if isinstance(data, (str, Path)) else [Path(p) for p in data or ()]
        self.template: LocalTemplate
        self.functions: dict[str, LocalFunction] = {}
        self._mock: Any = None
        self._clients: dict[str, Any] = {}
        self._started = False
        self._lock = threading.Lock()
        self._next_fire: dict[str, float] = {}
        self._provisioning = False
        #: AWS requests made after provisioning, by (service, operation): what a run costs.
        self.requests: Counter[tuple[str, str]] = Counter()
        #: The offline Cognito: JWKS for every user pool, and test tokens (see :mod:`local_runtime.identity`).
        self.identity = IdentityProvider(self.state_dir)
        #: Every call acts with its caller's role (see :mod:`local_runtime.iam`); ``iam=False``
        #: (or ``BW_IAM=off``) is the escape hatch for a test that wants it off.
        self.enforce_iam = (
            iam if iam is not None else os.environ.get("BW_IAM", "on").lower() not in ("off", "0", "false")
        )
        self.iam: IamModel | None = None
        self.account_id = ACCOUNT_ID
        self._secret_arns: dict[str, str] = {}
        self._warm_candidate: tuple[Any, ...] | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> LocalRuntime:
        if self._started:
            return self
        fake_aws_environment(self.region)
        self.template = LocalTemplate.load(self.template_path, parameter_overrides=self.parameters, region=self.region)
        from moto import mock_aws

        key = self._warm_key()
        warm = _WARM.get("key") == key and not _mock_in_use()
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start(reset=not warm)
        if warm and not self._provisioned_here():
            self._mock.reset()  # something else changed moto's state: start from nothing
            warm = False
        _WARM.clear()
        seams.activate(self)
        iam_hooks.install(seams.active)
        packaging.install_guard()
        seams.configure_clock(self.clock)
        self.clock.install()
        ThreadEnviron.install()
        self._started = True
        self._provisioning = True
        try:
            if warm:
                self._reuse()
            else:
                self._provision()
        except Exception:
            self.stop()
            raise
        finally:
            self._provisioning = False
        self._warm_candidate = key
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._save_tables()
        self._record_iam_usage()
        self._started = False
        ThreadEnviron.uninstall()
        self.clock.uninstall()
        seams.deactivate(self)
        # moto keeps the stack's resources: the next runtime of the same template and
        # parameters in this process empties their data instead of creating them again.
        self._mock.stop(remove_data=False)
        if self._warm_candidate is not None and not self.persist_tables:
            _WARM.update(key=self._warm_candidate, secrets=dict(self._secret_arns))
        self._clients.clear()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- clients -----------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client on the local stack (created once per runtime)."""
        import boto3

        with self._lock:
            if service not in self._clients:
                client = boto3.client(service, region_name=self.region)  # type: ignore[call-overload]
                setattr(client, iam_hooks.ADMINISTRATOR, True)
                self._clients[service] = client
            return self._clients[service]

    def management_api(self, endpoint: str = "https://local.execute-api.us-east-1.amazonaws.com/local") -> Any:
        import boto3

        client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, region_name=self.region)
        setattr(client, iam_hooks.ADMINISTRATOR, True)
        return client

    # -- provisioning --------------------------------------------------------------
    def _warm_key(self) -> tuple[Any, ...]:
        stamps = tuple(
            (str(p), p.stat().st_mtime_ns)
            for p in (self.template_path, *(sm.definition_path for sm in self.template.state_machines.values()))
            if p is not None and p.exists()
        )
        return (
            str(self.template_path.resolve()),
            stamps,
            tuple(sorted(self.parameters.items())),
            self.region,
            self.enforce_iam,
        )

    def _provisioned_here(self) -> bool:
        """moto still holds what the last runtime of this template created (nothing reset it since)."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends
        from moto.secretsmanager.models import secretsmanager_backends
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        tables = set(self.template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"))
        machines = {spec.arn for spec in self.template.state_machines.values()}
        buckets = {lid.lower() for lid in self.template.of_type("AWS::S3::Bucket")}
        secrets = set(self.template.of_type("AWS::SecretsManager::Secret"))
        # Exactly the stack's resources: anything a run added (a test's own table) means a cold start.
        return (
            set(dynamodb_backends[ACCOUNT_ID][self.region].tables) == tables
            and {sm.arn for sm in stepfunctions_parser_backends[ACCOUNT_ID][self.region].state_machines} == machines
            and set(s3_backends[ACCOUNT_ID][PARTITION].buckets) == buckets
            and {secret.name for secret in secretsmanager_backends[ACCOUNT_ID][self.region].secrets.values()} == secrets
        )

    def _reuse(self) -> None:
        """A warm start: the resources exist; their data goes back to a new stack's, and every
        service the stack does not provision (CloudWatch metrics, logs, ...) starts empty."""
        from collections import defaultdict

        from moto.core.base_backend import BackendDict
        from moto.dynamodb.models import dynamodb_backends

        services: list[Any] = list(BackendDict._instances)  # type: ignore[misc]
        for service in services:
            if service.service_name not in _PROVISIONED_SERVICES:
                for account in service.values():
                    account.reset()
                service.clear()

        tables = dynamodb_backends[ACCOUNT_ID][self.region].tables
        for name in self.template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            tables[name].items = defaultdict(dict)
        s3 = self.client("s3")
        for logical_id in self.template.of_type("AWS::S3::Bucket"):
            bucket = logical_id.lower()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        secrets = self.client("secretsmanager")
        self._secret_arns = {}
        for logical_id, resource in self.template.of_type("AWS::SecretsManager::Secret").items():
            props = resource.get("Properties") or {}
            value = props.get("SecretString")
            if not isinstance(value, str):
                value = self._generated_secret(logical_id, props.get("GenerateSecretString") or {})
            arn = str(secrets.put_secret_value(SecretId=logical_id, SecretString=value)["ARN"])
            self._secret_arns[logical_id] = arn
        sqs = self.client("sqs")
        for url in sqs.list_queues().get("QueueUrls", []):
            sqs.purge_queue(QueueUrl=url)
        for state_machine in self._backend().state_machines:
            state_machine.executions.clear()
        if self.enforce_iam:
            resolver = self.template.resolver({lid: {"Ref": arn} for lid, arn in self._secret_arns.items()})
            self.iam = load_roles(
                self.template.path, self.template.raw, resolver, stack_name=self.template.stack_name, account=ACCOUNT_ID
            )
        for logical_id, spec in self.template.functions.items():
            self.functions[logical_id] = self._local_function(logical_id, spec)
        self._load_stack_data()

    def _local_function(self, logical_id: str, spec: Any) -> LocalFunction:
        role = self._role_of(logical_id, _LAMBDA_ROLE)
        return LocalFunction(
            spec,
            self.clock,
            role=role if self.iam is not None else None,
            view=packaging.package_view(logical_id, spec.code_dir, spec.layer_dirs),
        )

    def _load_stack_data(self) -> None:
        self._load_tables()
        for path in self.data_paths:
            self._load_data(path)
        self._next_fire = {
            spec.name: self.clock.now() + period
            for spec in self.template.schedules
            if spec.enabled and (period := spec.rate_seconds) is not None
        }

    def _provision(self) -> None:
        self._create_tables()
        self._create_buckets()
        self._create_secrets()
        self._create_queues()
        self._create_roles()
        self._create_functions()
        self._create_state_machines()
        self._create_schedules()
        self._load_stack_data()

    def _create_tables(self) -> None:
        ddb = self.client("dynamodb")
        for logical_id, resource in self.template.of_type("AWS::DynamoDB::Table").items():
            props = resource.get("Properties") or {}
            kwargs: dict[str, Any] = {
                "TableName": logical_id,
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PROVISIONED"),
            }
            if kwargs["BillingMode"] == "PROVISIONED":
                kwargs["ProvisionedThroughput"] = props.get(
                    "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
                )
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification"):
                if props.get(key):
                    kwargs[key] = props[key]
            ddb.create_table(**kwargs)
            ttl = props.get("TimeToLiveSpecification")
            if ttl and str(ttl.get("Enabled")).lower() == "true":
                ddb.update_time_to_live(
                    TableName=logical_id,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        for logical_id, resource in self.template.of_type("AWS::Serverless::SimpleTable").items():
            primary: dict[str, str] = (resource.get("Properties") or {}).get("PrimaryKey") or {
                "Name": "id",
                "Type": "String",
            }
            short = {"String": "S", "Number": "N", "Binary": "B"}.get(primary.get("Type", "String"), "S")
            ddb.create_table(
                TableName=logical_id,
                AttributeDefinitions=[{"AttributeName": primary["Name"], "AttributeType": short}],
                KeySchema=[{"AttributeName": primary["Name"], "KeyType": "HASH"}],
                BillingMode="PAY_PER_REQUEST",
            )

    def _table_file(self, table: str) -> Path | None:
        if self.state_dir is None or table not in self.persist_tables:
            return None
        return self.state_dir / f"{table}.json"

    def _load_tables(self) -> None:
        ddb = self.client("dynamodb")
        for table in self.persist_tables:
            path = self._table_file(table)
            if path is None or not path.is_file():
                continue
            for item in json.loads(path.read_text(encoding="utf-8")):
                ddb.put_item(TableName=table, Item=item)

    def _save_tables(self) -> None:
        ddb = self.client("dynamodb")
        for table in self.persist_tables:
            path = self._table_file(table)
            if path is None:
                continue
            items: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {"TableName": table}
            while True:
                page = ddb.scan(**kwargs)
                items.extend(page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(items, indent=1), encoding="utf-8")

    def _create_buckets(self) -> None:
        s3 = self.client("s3")
        for logical_id in self.template.of_type("AWS::S3::Bucket"):
            s3.create_bucket(Bucket=logical_id.lower())

    def _create_secrets(self) -> None:
        secrets = self.client("secretsmanager")
        for logical_id, resource in self.template.of_type("AWS::SecretsManager::Secret").items():
            props = resource.get("Properties") or {}
            value = props.get("SecretString")
            if not isinstance(value, str):
                value = self._generated_secret(logical_id, props.get("GenerateSecretString") or {})
            created = secrets.create_secret(Name=logical_id, SecretString=value)
            self._secret_arns[logical_id] = str(created["ARN"])

    def _create_roles(self) -> None:
        """The roles SAM generates, as IAM would hold them; each caller acts with its own."""
        iam = self.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        for default in (_LAMBDA_ROLE, _STATES_ROLE):
            iam.create_role(RoleName=default, AssumeRolePolicyDocument=trust)
        if not self.enforce_iam:
            return
        # On AWS a secret's Ref is its ARN: so it is in the policies that name it.
        resolver = self.template.resolver({lid: {"Ref": arn} for lid, arn in self._secret_arns.items()})
        self.iam = load_roles(
            self.template.path, self.template.raw, resolver, stack_name=self.template.stack_name, account=ACCOUNT_ID
        )
        for role in self.iam.roles.values():
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=trust)

    def _role_of(self, logical_id: str, default: str) -> str:
        role = self.iam.role_for(logical_id) if self.iam is not None else None
        return role.arn if role is not None else f"arn:aws:iam::{ACCOUNT_ID}:role/{default}"

    def physical_request(self, request: AccessRequest) -> AccessRequest:
        """The ARN IAM sees for a resource the caller named by name (a secret)."""
        if request.action.lower().startswith("secretsmanager:") and request.resource in self._secret_arns:
            return AccessRequest(request.action, self._secret_arns[request.resource], request.context)
        return request

    def _record_iam_usage(self) -> None:
        """Append this run's grants used and calls refused to ``BW_IAM_USAGE`` (read by ``bw iam``)."""
        target = os.environ.get("BW_IAM_USAGE")
        if not target or self.iam is None:
            return
        usage = self.iam.usage()
        if not usage["used"] and not usage["denied"]:
            return
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _USAGE_LOCK, path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(usage) + "\n")

    def _load_data(self, path: Path) -> None:
        """Load a stack-data file: S3 objects per bucket and DynamoDB items per table, by logical id.

        ``s3: {Bucket: {key: file relative to the data file}}``,
        ``dynamodb: {Table: [item, ...]}`` (plain JSON items; a string ``"now-<s>"`` in
        a ``*Time``/``*At`` attribute is the virtual clock minus s, in epoch ms) and
        ``websockets: [connection id, ...]`` (clients with an open socket).
        """
        import yaml
        from boto3.dynamodb.types import TypeSerializer

        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        s3 = self.client("s3")
        for bucket, objects in (spec.get("s3") or {}).items():
            name = bucket.lower()  # as _create_buckets names them
            for key, source in (objects or {}).items():
                s3.put_object(Bucket=name, Key=key, Body=(path.parent / source).read_bytes())
        ddb, serializer = self.client("dynamodb"), TypeSerializer()
        now_ms = int(self.clock.now() * 1000)
        for table, items in (spec.get("dynamodb") or {}).items():
            for item in items or []:
                resolved = {
                    k: now_ms - int(v[4:]) * 1000 if isinstance(v, str) and v.startswith("now-") else v
                    for k, v in item.items()
                }
                ddb.put_item(TableName=table, Item={k: serializer.serialize(v) for k, v in resolved.items()})
        for connection_id in spec.get("websockets") or []:
            self.connections.connect(str(connection_id))

    def _generated_secret(self, logical_id: str, spec: Mapping[str, Any]) -> str:
        """GenerateSecretString as CloudFormation does it (the template's JSON plus one
        generated key), but derived from the seed: `bw token` and a later `bw run` are
        separate processes and must agree on a local signing key. Never used on AWS."""
        generated = hashlib.sha256(f"breakwater-local:{self.seed}:{logical_id}".encode()).hexdigest()
        length = spec.get("PasswordLength")
        if isinstance(length, int) and 0 < length <= len(generated):
            generated = generated[:length]
        template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
        if isinstance(template, str) and isinstance(key, str):
            document = json.loads(template)
            document[key] = generated
            return json.dumps(document)
        return generated

    def _create_queues(self) -> None:
        sqs = self.client("sqs")
        for logical_id, resource in self.template.of_type("AWS::SQS::Queue").items():
            attributes = {
                k: str(v)
                for k, v in (resource.get("Properties") or {}).items()
                if k in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "FifoQueue")
            }
            name = logical_id + (".fifo" if attributes.get("FifoQueue") == "True" else "")
            sqs.create_queue(QueueName=name, Attributes=attributes)

    def _create_functions(self) -> None:
        lam = self.client("lambda")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("README.txt", "handlers run in-process by the breakwater local runtime")
        for logical_id, spec in self.template.functions.items():
            role = self._role_of(logical_id, _LAMBDA_ROLE)
            lam.create_function(
                FunctionName=spec.function_name,
                Runtime="python3.13",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": buffer.getvalue()},
                Timeout=spec.timeout,
                MemorySize=spec.memory,
                Environment={"Variables": dict(spec.environment)},
            )
            self.functions[logical_id] = self._local_function(logical_id, spec)

    def _create_state_machines(self) -> None:
        sfn = self.client("stepfunctions")
        for spec in self.template.state_machines.values():
            role = self._role_of(spec.logical_id, _STATES_ROLE)
            sfn.create_state_machine(
                name=spec.name, definition=json.dumps(spec.definition), roleArn=role, type=spec.type
            )

    def _create_schedules(self) -> None:
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/{_STATES_ROLE}"
        for spec in self.template.schedules:
            target = self._target_arn(spec)
            if spec.kind == "ScheduleV2":
                target_spec: dict[str, Any] = {"Arn": target, "RoleArn": role}
                if spec.input is not None:
                    target_spec["Input"] = spec.input
                self.client("scheduler").create_schedule(
                    Name=spec.name,
                    ScheduleExpression=spec.expression,
                    FlexibleTimeWindow={"Mode": "OFF"},
                    Target=target_spec,
                    State="ENABLED" if spec.enabled else "DISABLED",
                )
            else:
                events = self.client("events")
                events.put_rule(
                    Name=spec.name,
                    ScheduleExpression=spec.expression,
                    State="ENABLED" if spec.enabled else "DISABLED",
                )
                target_entry: dict[str, Any] = {"Id": spec.target, "Arn": target}
                if spec.input is not None:
                    target_entry["Input"] = spec.input
                events.put_targets(Rule=spec.name, Targets=[target_entry])

    def _target_arn(self, spec: ScheduleSpec) -> str:
        if spec.target_type == "function":
            return self.template.function(spec.target).arn
        return self.template.state_machine(spec.target).arn

    # -- schedules -----------------------------------------------------------------------
    def advance(self, seconds: float) -> list[ExecutionResult | Invocation]:
        """Let ``seconds`` of virtual time pass, firing due ``rate(...)`` schedules in order.

        Each firing runs to completion at its own time (an execution that is
        still running when the next one is due would overlap on AWS; the
        workflows guard against that themselves, and the tests prove it).
        """
        end = self.clock.now() + seconds
        fired: list[ExecutionResult | Invocation] = []
        while True:
            due = [(when, name) for name, when in self._next_fire.items() if when <= end]
            if not due:
                break
            when, name = min(due)
            spec = next(s for s in self.template.schedules if s.name == name)
            self.clock.advance_to(when)
            self._next_fire[name] = when + (spec.rate_seconds or 0)
            fired.append(self._fire(spec, when))
        self.clock.advance_to(end)
        return fired

    def _fire(self, spec: ScheduleSpec, when: float) -> ExecutionResult | Invocation:
        if spec.input is not None:
            payload: Any = json.loads(spec.input)
        elif spec.kind == "Schedule":
            payload = {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": ACCOUNT_ID,
                "time": datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "region": self.region,
                "resources": [f"arn:aws:events:{self.region}:{ACCOUNT_ID}:rule/{spec.name}"],
                "detail": {},
            }
        else:
            payload = {}
        if spec.target_type == "function":
            return self.invoke(spec.target, payload)
        return self.run(spec.target, payload)

    # -- Lambda ------------------------------------------------------------------------
    def function(self, name: str) -> LocalFunction:
        spec = self.template.function(name)
        return self.functions[spec.logical_id]

    def invoke(self, name: str, event: Any = None) -> Invocation:
        """Run one handler, as ``sam local invoke`` does."""
        return self.function(name).invoke({} if event is None else event)

    def invoke_in_process(self, function_name: str, event: str | Any) -> tuple[str, bool, str]:
        """moto's Lambda invoke, answered by the handler itself (seam)."""
        payload = json.loads(event) if isinstance(event, str) else event
        invocation = self.function(function_name).invoke({} if payload is None else payload)
        # A synchronous caller gets Lambda's error instead of a response over the quota.
        too_large = limits.check_invoke_response(len(invocation.response_payload().encode("utf-8")))
        if too_large is not None and not invocation.errored:
            invocation.error_type, invocation.error_message = too_large["errorType"], too_large["errorMessage"]
            invocation.payload = too_large
        return invocation.response_payload(), invocation.errored, ""

    def count_request(self, service: str, operation: str) -> None:
        if not self._provisioning:
            with self._lock:
                self.requests[(service, operation)] += 1

    # -- faults -------------------------------------------------------------------------
    def decide_fault(self, *, service: str, operation: str, body: Any, url: str) -> Fault | None:
        # Faults are about running the stack, not creating it: provisioning never meets them.
        if not self.faults.rules or self._provisioning:
            return None
        return self.faults.decide(
            service, operation, request_resources(body, url), self.clock.random.random, self.clock.now()
        )

    # -- Step Functions -----------------------------------------------------------------------
    def _backend(self) -> Any:
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        return stepfunctions_parser_backends[ACCOUNT_ID][self.region]

    def start_execution(self, state_machine: str, input: Any = None, *, name: str | None = None) -> str:
        spec = self.template.state_machine(state_machine)
        name = name or f"{spec.logical_id}-{uuid.uuid4().hex[:12]}"
        response = self.client("stepfunctions").start_execution(
            stateMachineArn=spec.arn, name=name, input=json.dumps({} if input is None else input)
        )
        return str(response["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 300.0) -> ExecutionResult:
        """Wait (in real time, bounded) for an execution and collect its history."""
        execution = self._backend().describe_execution(execution_arn)
        thread: threading.Thread | None = getattr(execution.exec_worker, "_bw_thread", None)
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"{execution_arn} still running after {timeout}s of real time")
        if execution.stop_date is not None:
            self.clock.advance_to(execution.stop_date)
        return self.describe(execution_arn)

    def run(
        self, state_machine: str, input: Any = None, *, name: str | None = None, timeout: float = 300.0
    ) -> ExecutionResult:
        """Start an execution and wait for it: the offline ``StartExecution`` + console view."""
        return self.wait(self.start_execution(state_machine, input, name=name), timeout)

    def describe(self, execution_arn: str) -> ExecutionResult:
        sfn = self.client("stepfunctions")
        described = sfn.describe_execution(executionArn=execution_arn)
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        spec = self.template.state_machine(described["stateMachineArn"])
        return ExecutionResult(
            arn=execution_arn,
            name=described.get("name") or execution_arn.rsplit(":", 1)[-1],
            state_machine=spec.logical_id,
            status=described["status"],
            input=maybe_json(described.get("input")),
            output=maybe_json(described.get("output")),
            error=described.get("error"),
            cause=described.get("cause"),
            start=described["startDate"],
            stop=described.get("stopDate"),
            events=[_jsonable(e) for e in events],
            definition=spec.definition,
            faults=[f for f in self.faults.log if _within(f["at"], described["startDate"], described.get("stopDate"))],
        )

    def describe_sync(self, execution: Any) -> ExecutionResult:
        """A finished synchronous (Express) execution, read from moto's record of it."""
        spec = self.template.state_machine(execution.state_machine.arn)
        history = execution.exec_worker.env.event_manager.get_event_history()
        return ExecutionResult(
            arn=execution.exec_arn,
            name=execution.name,
            state_machine=spec.logical_id,
            status=str(
                execution.exec_status.value if hasattr(execution.exec_status, "value") else execution.exec_status
            ),
            input=maybe_json(execution.input_data),
            output=maybe_json(execution.output) if isinstance(execution.output, str) else execution.output,
            error=execution.error,
            cause=execution.cause,
            start=execution.start_date,
            stop=execution.stop_date,
            events=[_jsonable(_parse_timestamps(e)) for e in history],
            definition=spec.definition,
            faults=[f for f in self.faults.log if _within(f["at"], execution.start_date, execution.stop_date)],
        )

    def start_sync_execution(self, state_machine: str, input: Any = None, *, name: str | None = None) -> dict[str, Any]:
        """StartSyncExecution for EXPRESS workflows, as AWS answers it."""
        spec = self.template.state_machine(state_machine)
        response = self.client("stepfunctions").start_sync_execution(
            stateMachineArn=spec.arn, name=name or uuid.uuid4().hex, input=json.dumps({} if input is None else input)
        )
        return dict(response)

    def handle_sync_states(self, request: Any) -> tuple[int, dict[str, str], str]:
        """The ``sync-states`` endpoint moto does not serve (seam)."""
        from moto.stepfunctions.parser.backend.execution import SyncExecution

        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else str(target)
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        if not target.endswith("StartSyncExecution"):
            return 400, headers, json.dumps({"__type": "UnknownOperationException", "message": target})
        body = json.loads(request.body or b"{}")
        try:
            spec = self.template.state_machine(body.get("stateMachineArn", ""))
        except TemplateError:
            return (
                400,
                headers,
                json.dumps({"__type": "StateMachineDoesNotExist", "message": "State Machine Does Not Exist"}),
            )
        if spec.type != "EXPRESS":
            return (
                400,
                headers,
                json.dumps(
                    {
                        "__type": "StateMachineTypeNotSupported",
                        "message": "This operation is not supported by this type of state machine",
                    }
                ),
            )
        backend = self._backend()
        state_machine = backend.describe_state_machine(spec.arn)
        name = body.get("name") or uuid.uuid4().hex
        input_data = body.get("input") or "{}"
        try:
            json.loads(input_data)
        except ValueError:
            return 400, headers, json.dumps({"__type": "InvalidExecutionInput", "message": "Invalid input JSON"})
        arn = f"arn:aws:states:{self.region}:{ACCOUNT_ID}:express:{state_machine.name}:{name}:{uuid.uuid4()}"
        execution = SyncExecution(
            name=name,
            sm_type=state_machine.sm_type,
            role_arn=state_machine.roleArn,
            exec_arn=arn,
            account_id=ACCOUNT_ID,
            region_name=self.region,
            state_machine=state_machine,
            start_date=self.clock.now_datetime(),
            cloud_watch_logging_session=None,
            input_data=input_data,
            trace_header=None,
            activity_store={},
        )
        state_machine.executions.append(execution)
        execution.start()
        output = execution.to_start_sync_execution_output()
        return 200, headers, json.dumps(_jsonable(dict(output)))

    # -- data ---------------------------------------------------------------------------------
    # -- tokens ------------------------------------------------------------------------------------
    def token_policy(self, function: str = "VerifyTokenFunction") -> TokenPolicy:
        """The issuers and audiences ``function`` trusts, from its template environment."""
        environment = {k: str(v) for k, v in self.template.function(function).environment.items()}
        return TokenPolicy.from_env({"AWS_REGION": self.region, **environment})

    def cognito_token(self, *, function: str = "VerifyTokenFunction", **claims: Any) -> str:
        """A speaker's token as the stack's user pool would issue it (now = the virtual clock)."""
        return self.identity.cognito_token(self.token_policy(function), now=self.clock.now(), **claims)

    def breakwater_token(self, *, function: str = "VerifyTokenFunction", **claims: Any) -> str:
        """A token signed with the stack's own signing key (``SigningKeySecret``)."""
        environment = self.template.function(function).environment
        secret = self.client("secretsmanager").get_secret_value(SecretId=str(environment["BW_SIGNING_KEY_SECRET"]))
        key = parse_signing_key(secret["SecretString"])
        return IdentityProvider.breakwater_token(self.token_policy(function), key, now=self.clock.now(), **claims)

    def items(self, table: str) -> list[dict[str, Any]]:
        """Every item of a table, as plain Python values (for tests and the demo)."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        ddb = self.client("dynamodb")
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = ddb.scan(**kwargs)
            found.extend({k: deserializer.deserialize(v) for k, v in item.items()} for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _mock_in_use() -> bool:
    """Another mock (a test's own ``mock_aws``) is running: it owns moto's state."""
    from moto.core.models import MockAWS

    return bool(getattr(MockAWS, "_nested_count", 0))


def _parse_timestamps(event: dict[str, Any]) -> dict[str, Any]:
    """moto keeps history events with ISO strings and enum types; the API (and Trace) has
    datetimes and plain strings."""
    plain = dict(event)
    stamp = plain.get("timestamp")
    if isinstance(stamp, str):
        plain["timestamp"] = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    kind = plain.get("type")
    plain["type"] = str(getattr(kind, "value", kind))
    return plain


def _within(at: float, start: datetime, stop: datetime | None) -> bool:
    # The API reports dates to the millisecond; a fault may land within that first millisecond.
    return start.timestamp() - 1e-3 <= at and (stop is None or at <= stop.timestamp() + 1e-3)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
