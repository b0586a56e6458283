"""The stack from the template: every resource created in moto, or emptied on a warm start.

Tables (keys, GSIs, TTL), buckets, secrets, queues, the IAM roles SAM generates,
Lambda functions, state machines and schedules are created from the template.
When the previous runtime in this process ran the same template and parameters
and nothing else touched moto since, its resources are kept and only their data
goes back to a new stack's (a warm start costs a few table resets instead of
dozens of API calls). Stack data (``events/local_data.yaml``) is loaded last.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from local_runtime import packaging
from local_runtime.iam import load_roles
from local_runtime.lambdas import LocalFunction
from local_runtime.template import ACCOUNT_ID, PARTITION, ScheduleSpec

__all__ = ["WARM", "Provisioner"]

LAMBDA_ROLE = "bw-local-lambda-role"
STATES_ROLE = "bw-local-states-role"
#: What the last stopped runtime left in moto (see LocalRuntime.stop): its key.
WARM: dict[str, Any] = {}
#: Services whose resources a warm start keeps (their data is emptied by Provisioner.reuse).
_PROVISIONED_SERVICES = frozenset(
    {"dynamodb", "s3", "secretsmanager", "sqs", "iam", "lambda", "stepfunctions", "events", "scheduler"}
)


class Provisioner:
    """Creates (or resets) the resources of ``stack``, a LocalRuntime, in moto."""

    def __init__(self, stack: Any) -> None:
        self._stack = stack

    def warm_key(self) -> tuple[Any, ...]:
        stamps = tuple(
            (str(p), p.stat().st_mtime_ns)
            for p in (
                self._stack.template_path,
                *(sm.definition_path for sm in self._stack.template.state_machines.values()),
            )
            if p is not None and p.exists()
        )
        return (
            str(self._stack.template_path.resolve()),
            stamps,
            tuple(sorted(self._stack.parameters.items())),
            self._stack.region,
            self._stack.enforce_iam,
        )

    def provisioned_here(self) -> bool:
        """moto still holds what the last runtime of this template created (nothing reset it since)."""
        from moto.dynamodb.models import dynamodb_backends
        from moto.s3.models import s3_backends
        from moto.secretsmanager.models import secretsmanager_backends
        from moto.stepfunctions.parser.models import stepfunctions_parser_backends

        tables = set(self._stack.template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"))
        machines = {spec.arn for spec in self._stack.template.state_machines.values()}
        buckets = {lid.lower() for lid in self._stack.template.of_type("AWS::S3::Bucket")}
        secrets = set(self._stack.template.of_type("AWS::SecretsManager::Secret"))
        # Exactly the stack's resources: anything a run added (a test's own table) means a cold start.
        return (
            set(dynamodb_backends[ACCOUNT_ID][self._stack.region].tables) == tables
            and {sm.arn for sm in stepfunctions_parser_backends[ACCOUNT_ID][self._stack.region].state_machines}
            == machines
            and set(s3_backends[ACCOUNT_ID][PARTITION].buckets) == buckets
            and {secret.name for secret in secretsmanager_backends[ACCOUNT_ID][self._stack.region].secrets.values()}
            == secrets
        )

    def reuse(self) -> None:
        """A warm start: the resources exist; their data goes back to a new stack's, and every
        service the stack does not provision (CloudWatch metrics, logs, ...) starts empty."""
        from moto.core.base_backend import BackendDict

        services: list[Any] = list(BackendDict._instances)  # type: ignore[misc]
        for service in services:
            if service.service_name not in _PROVISIONED_SERVICES:
                for account in service.values():
                    account.reset()
                service.clear()

        self.empty_tables()
        s3 = self._stack.client("s3")
        for logical_id in self._stack.template.of_type("AWS::S3::Bucket"):
            bucket = logical_id.lower()
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        secrets = self._stack.client("secretsmanager")
        self._stack.secret_arns = {}
        for logical_id, value in self._secret_values():
            arn = str(secrets.put_secret_value(SecretId=logical_id, SecretString=value)["ARN"])
            self._stack.secret_arns[logical_id] = arn
        # Emptied in the backend, not with PurgeQueue: a reset is not the user's purge, and AWS
        # allows one PurgeQueue per queue per 60 s, which shared stacks reset far more often.
        from moto.sqs.models import sqs_backends

        for queue in sqs_backends[ACCOUNT_ID][self._stack.region].queues.values():
            queue._messages = []
            queue._pending_messages = set()
            queue.last_purged_at = None
        for state_machine in self._stack.executions.backend().state_machines:
            state_machine.executions.clear()
        self._create_log_groups()  # CloudWatch Logs was reset above: the groups, empty, as deployed
        if self._stack.enforce_iam:
            self._load_iam()
        for logical_id, spec in self._stack.template.functions.items():
            self._stack.functions[logical_id] = self._local_function(logical_id, spec)
        self._load_stack_data()

    def empty_tables(self) -> None:
        """Every table of the template without its items (the tables themselves stay)."""
        from collections import defaultdict

        from moto.dynamodb.models import dynamodb_backends

        tables = dynamodb_backends[ACCOUNT_ID][self._stack.region].tables
        for name in self._stack.template.of_type("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable"):
            tables[name].items = defaultdict(dict)

    def reload_data(self) -> None:
        """Empty tables, then the stack data again: a live stack between two tests."""
        self.empty_tables()
        self._load_stack_data()

    def _local_function(self, logical_id: str, spec: Any) -> LocalFunction:
        role = self.role_of(logical_id, LAMBDA_ROLE)
        return LocalFunction(
            spec,
            self._stack.clock,
            role=role if self._stack.iam is not None else None,
            view=packaging.package_view(logical_id, spec.code_dir, spec.layer_dirs),
        )

    def _load_stack_data(self) -> None:
        self._load_tables()
        for path in self._stack.data_paths:
            self._load_data(path)
        self._stack._next_fire = {
            spec.name: self._stack.clock.now() + period
            for spec in self._stack.template.schedules
            if spec.enabled and (period := spec.rate_seconds) is not None
        }

    def provision(self) -> None:
        self._create_tables()
        self._create_buckets()
        self._create_secrets()
        self._create_queues()
        self._create_log_groups()
        self._create_roles()
        self._create_functions()
        self._create_state_machines()
        self._create_schedules()
        self._load_stack_data()

    def _create_tables(self) -> None:
        ddb = self._stack.client("dynamodb")
        for logical_id, resource in self._stack.template.of_type("AWS::DynamoDB::Table").items():
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
            pitr = props.get("PointInTimeRecoverySpecification") or {}
            if str(pitr.get("PointInTimeRecoveryEnabled")).lower() == "true":
                ddb.update_continuous_backups(
                    TableName=logical_id, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
                )
            ttl = props.get("TimeToLiveSpecification")
            if ttl and str(ttl.get("Enabled")).lower() == "true":
                ddb.update_time_to_live(
                    TableName=logical_id,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        for logical_id, resource in self._stack.template.of_type("AWS::Serverless::SimpleTable").items():
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
        if self._stack.state_dir is None or table not in self._stack.persist_tables:
            return None
        return Path(self._stack.state_dir) / f"{table}.json"

    def _load_tables(self) -> None:
        ddb = self._stack.client("dynamodb")
        for table in self._stack.persist_tables:
            path = self._table_file(table)
            if path is None or not path.is_file():
                continue
            for item in json.loads(path.read_text(encoding="utf-8")):
                ddb.put_item(TableName=table, Item=item)

    def save_tables(self) -> None:
        ddb = self._stack.client("dynamodb")
        for table in self._stack.persist_tables:
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
        s3 = self._stack.client("s3")
        for logical_id in self._stack.template.of_type("AWS::S3::Bucket"):
            s3.create_bucket(Bucket=logical_id.lower())

    def _secret_values(self) -> Iterator[tuple[str, str]]:
        """(logical id, initial value) of every secret: its SecretString, or one generated."""
        for logical_id, resource in self._stack.template.of_type("AWS::SecretsManager::Secret").items():
            props = resource.get("Properties") or {}
            value = props.get("SecretString")
            if not isinstance(value, str):
                value = self.generated_secret(logical_id, props.get("GenerateSecretString") or {})
            yield logical_id, value

    def _create_secrets(self) -> None:
        secrets = self._stack.client("secretsmanager")
        for logical_id, value in self._secret_values():
            created = secrets.create_secret(Name=logical_id, SecretString=value)
            self._stack.secret_arns[logical_id] = str(created["ARN"])

    def _load_iam(self) -> None:
        stack = self._stack
        # On AWS a secret's Ref is its ARN: so it is in the policies that name it.
        resolver = stack.template.resolver({lid: {"Ref": arn} for lid, arn in stack.secret_arns.items()})
        stack.iam = load_roles(
            stack.template.path, stack.template.raw, resolver, stack_name=stack.template.stack_name, account=ACCOUNT_ID
        )

    def _create_roles(self) -> None:
        """The roles SAM generates, as IAM would hold them; each caller acts with its own."""
        iam = self._stack.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        for default in (LAMBDA_ROLE, STATES_ROLE):
            iam.create_role(RoleName=default, AssumeRolePolicyDocument=trust)
        if not self._stack.enforce_iam:
            return
        self._load_iam()
        for role in self._stack.iam.roles.values():
            iam.create_role(RoleName=role.name, AssumeRolePolicyDocument=trust)

    def role_of(self, logical_id: str, default: str) -> str:
        role = self._stack.iam.role_for(logical_id) if self._stack.iam is not None else None
        return role.arn if role is not None else f"arn:aws:iam::{ACCOUNT_ID}:role/{default}"

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
        s3 = self._stack.client("s3")
        for bucket, objects in (spec.get("s3") or {}).items():
            name = bucket.lower()  # as _create_buckets names them
            for key, source in (objects or {}).items():
                s3.put_object(Bucket=name, Key=key, Body=(path.parent / source).read_bytes())
        ddb, serializer = self._stack.client("dynamodb"), TypeSerializer()
        now_ms = int(self._stack.clock.now() * 1000)
        for table, items in (spec.get("dynamodb") or {}).items():
            for item in items or []:
                resolved = {
                    k: now_ms - int(v[4:]) * 1000 if isinstance(v, str) and v.startswith("now-") else v
                    for k, v in item.items()
                }
                ddb.put_item(TableName=table, Item={k: serializer.serialize(v) for k, v in resolved.items()})
        for connection_id in spec.get("websockets") or []:
            self._stack.connections.connect(str(connection_id))

    def generated_secret(self, logical_id: str, spec: Mapping[str, Any]) -> str:
        """GenerateSecretString as CloudFormation does it (the template's JSON plus one
        generated key), but derived from the seed: `bw token` and a later `bw run` are
        separate processes and must agree on a local signing key. Never used on AWS."""
        generated = hashlib.sha256(f"breakwater-local:{self._stack.seed}:{logical_id}".encode()).hexdigest()
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
        sqs = self._stack.client("sqs")
        for logical_id, resource in self._stack.template.of_type("AWS::SQS::Queue").items():
            attributes = {
                k: str(v)
                for k, v in (resource.get("Properties") or {}).items()
                if k in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "FifoQueue")
            }
            name = logical_id + (".fifo" if attributes.get("FifoQueue") == "True" else "")
            sqs.create_queue(QueueName=name, Attributes=attributes)

    def _create_log_groups(self) -> None:
        """The template's log groups exist from deployment, empty: FilterLogEvents on an access
        log no request has reached yet answers no events, not ResourceNotFoundException.
        Made in moto's backend, as the access logs write to it: through the API, its twenty
        calls were half of every warm start."""
        from moto.logs.models import logs_backends

        backend = logs_backends[ACCOUNT_ID][self._stack.region]
        resolver = self._stack.template.resolver()
        for resource in self._stack.template.of_type("AWS::Logs::LogGroup").values():
            props = resource.get("Properties") or {}
            resolved = resolver.intrinsic_property_resolver(
                {"name": props.get("LogGroupName"), "days": props.get("RetentionInDays")}, ignore_errors=True
            )
            name = resolved.get("name")
            if not isinstance(name, str):
                continue  # unnamed: CloudFormation would name it after the stack; nothing here writes to it
            backend.create_log_group(name, tags={})
            if resolved.get("days") is not None:
                # An int, as PutRetentionPolicy's JSON hands it to moto (its annotation says str).
                backend.put_retention_policy(name, int(resolved["days"]))  # type: ignore[arg-type]

    def _create_functions(self) -> None:
        lam = self._stack.client("lambda")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("README.txt", "handlers run in-process by the breakwater local runtime")
        for logical_id, spec in self._stack.template.functions.items():
            role = self.role_of(logical_id, LAMBDA_ROLE)
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
            self._stack.functions[logical_id] = self._local_function(logical_id, spec)

    def _create_state_machines(self) -> None:
        sfn = self._stack.client("stepfunctions")
        for spec in self._stack.template.state_machines.values():
            role = self.role_of(spec.logical_id, STATES_ROLE)
            sfn.create_state_machine(
                name=spec.name, definition=json.dumps(spec.definition), roleArn=role, type=spec.type
            )

    def _create_schedules(self) -> None:
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/{STATES_ROLE}"
        for spec in self._stack.template.schedules:
            target = self.target_arn(spec)
            if spec.kind == "ScheduleV2":
                target_spec: dict[str, Any] = {"Arn": target, "RoleArn": role}
                if spec.input is not None:
                    target_spec["Input"] = spec.input
                self._stack.client("scheduler").create_schedule(
                    Name=spec.name,
                    ScheduleExpression=spec.expression,
                    FlexibleTimeWindow={"Mode": "OFF"},
                    Target=target_spec,
                    State="ENABLED" if spec.enabled else "DISABLED",
                )
            else:
                events = self._stack.client("events")
                events.put_rule(
                    Name=spec.name,
                    ScheduleExpression=spec.expression,
                    State="ENABLED" if spec.enabled else "DISABLED",
                )
                target_entry: dict[str, Any] = {"Id": spec.target, "Arn": target}
                if spec.input is not None:
                    target_entry["Input"] = spec.input
                events.put_targets(Rule=spec.name, Targets=[target_entry])

    def target_arn(self, spec: ScheduleSpec) -> str:
        if spec.target_type == "function":
            return str(self._stack.template.function(spec.target).arn)
        return str(self._stack.template.state_machine(spec.target).arn)
