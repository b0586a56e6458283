"""The offline stack: the template's resources in moto, handlers in-process.

    with LocalRuntime("template.yaml", faults=[{"service": "dynamodb", "throttle": True, "count": 2}]) as rt:
        result = rt.run("RetryFlow", {"key": "k1"})
        print(result.status, result.trace().rows)

Everything runs against moto (``mock_aws`` with its ASL interpreter) under
fake credentials, so no call can reach a real account.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_runtime import alarms as cloudwatch_alarms
from local_runtime import aws_metrics, emf, limits, moto_imports, packaging, seams
from local_runtime import iam as iam_hooks
from local_runtime.backups import ContinuousBackups
from local_runtime.clock import VirtualClock
from local_runtime.environ import ThreadEnviron
from local_runtime.executions import Executions
from local_runtime.faults import Fault, FaultInjector, FaultRule, load_fault_rules, request_resources
from local_runtime.iam import AccessRequest, IamModel
from local_runtime.identity import IdentityProvider
from local_runtime.lambdas import Invocation, LocalFunction, install_sandbox_loggers
from local_runtime.models import Datapoint, ExecutionResult, LambdaThrottledError
from local_runtime.provisioning import WARM, Provisioner
from local_runtime.sigv4 import Key
from local_runtime.template import ACCOUNT_ID, LocalTemplate, ScheduleSpec
from local_runtime.websockets import ConnectionRegistry
from resilience.signing_keys import parse_signing_key
from resilience.tokens import TokenPolicy

__all__ = ["ExecutionResult", "LocalRuntime", "fake_aws_environment"]

_USAGE_LOCK = threading.Lock()

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
        #: Point-in-time recovery of the PITR-enabled tables (item history on the virtual clock).
        self.backups = ContinuousBackups(self.clock.now, region)
        #: Tables whose items survive between runtimes (e.g. breaker state between `bw` commands).
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.persist_tables = tuple(persist_tables)
        #: Objects and items a deployment would already hold (see :func:`load_stack_data`).
        self.data_paths = [Path(data)] if isinstance(data, (str, Path)) else [Path(p) for p in data or ()]
        self.template: LocalTemplate
        self.functions: dict[str, LocalFunction] = {}
        #: Set while ``bw up --containers`` runs (:class:`~local_runtime.lambda_containers.LambdaContainers`):
        #: every invocation goes to the function's Lambda container instead of in-process.
        self.containers: Any = None
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
        #: Each secret's ARN by logical id (moto gives it a random suffix, as AWS does).
        self.secret_arns: dict[str, str] = {}
        self._warm_candidate: tuple[Any, ...] | None = None
        #: Step Functions on this stack (see :mod:`local_runtime.executions`).
        self.executions = Executions(self)
        self._provisioner = Provisioner(self)
        #: Stage of each WebSocket API of the template, by API id (the management API's 403).
        self._websocket_stages: dict[str, str] | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> LocalRuntime:
        if self._started:
            return self
        fake_aws_environment(self.region)
        self.template = LocalTemplate.load(self.template_path, parameter_overrides=self.parameters, region=self.region)
        self._websocket_stages = None
        moto_imports.preload_batch_utils()  # before anything imports moto's ASL interpreter
        from moto import mock_aws

        key = self._provisioner.warm_key()
        warm = WARM.get("key") == key and not _mock_in_use()
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start(reset=not warm)
        if warm and not self._provisioner.provisioned_here():
            self._mock.reset()  # something else changed moto's state: start from nothing
            warm = False
        WARM.clear()
        seams.activate(self)
        iam_hooks.install(seams.active)
        packaging.install_guard()
        install_sandbox_loggers()
        seams.configure_clock(self.clock)
        self.clock.install()
        ThreadEnviron.install()
        self._started = True
        self._provisioning = True
        try:
            if warm:
                self._provisioner.reuse()
            else:
                self._provisioner.provision()
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
        # Saving state is the runtime's own business, like provisioning: no fault rule meets it.
        self._provisioning = True
        try:
            self._provisioner.save_tables()
        finally:
            self._provisioning = False
        self._record_iam_usage()
        self._started = False
        ThreadEnviron.uninstall()
        self.clock.uninstall()
        seams.deactivate(self)
        # moto keeps the stack's resources: the next runtime of the same template and
        # parameters in this process empties their data instead of creating them again.
        self._mock.stop(remove_data=False)
        if self._warm_candidate is not None and not self.persist_tables:
            WARM.update(key=self._warm_candidate)
        self._clients.clear()

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reload_data(self) -> None:
        """Empty every table and load the stack data again, schedules restarting from now
        (a live stack between two tests); the resources and loaded handlers stay."""
        self._provisioner.reload_data()

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

    def management_api_refusal(self, url: str) -> tuple[int, dict[str, str], bytes] | None:
        """API Gateway's answer to a management API call on one of the template's WebSocket
        APIs but another stage than its own: 403 ForbiddenException (seam). Endpoints of no
        API of the template (tests' ``management_api()``) are left alone."""
        from urllib.parse import urlsplit

        if self._websocket_stages is None:
            stages: dict[str, str] = {}
            for logical_id, api in self.template.of_type("AWS::ApiGatewayV2::Api").items():
                if (api.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET":
                    from local_runtime.gateway import WebSocketApiSpec

                    spec = WebSocketApiSpec.from_template(self.template, logical_id)
                    stages[spec.api_id] = spec.stage
            self._websocket_stages = stages
        parts = urlsplit(url)
        api_id = (parts.hostname or "").split(".", 1)[0]
        stage = parts.path.split("/@connections/", 1)[0].strip("/")
        if api_id not in self._websocket_stages or stage == self._websocket_stages[api_id]:
            return None
        headers = {"x-amzn-ErrorType": "ForbiddenException", "Content-Type": "application/json"}
        return 403, headers, b'{"message":"Forbidden"}'

    # -- provisioning --------------------------------------------------------------
    def physical_request(self, request: AccessRequest) -> AccessRequest:
        """The ARN IAM sees for a resource the caller named by name (a secret)."""
        if request.action.lower().startswith("secretsmanager:") and request.resource in self.secret_arns:
            return AccessRequest(request.action, self.secret_arns[request.resource], request.context)
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
        line = (json.dumps(usage) + "\n").encode("utf-8")
        # Several processes append to one file (pytest's workers, a `bw up` a test starts): a
        # line runs to hundreds of KB, more than one write() may carry, so each process holds
        # an exclusive lock on the file for its whole line and no two lines interleave.
        with _USAGE_LOCK, path.open("ab") as out:
            fcntl.flock(out.fileno(), fcntl.LOCK_EX)
            try:
                out.write(line)
                out.flush()
            finally:
                fcntl.flock(out.fileno(), fcntl.LOCK_UN)

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
        if self.iam is None:
            return self.run(spec.target, payload)
        role = self.iam.role_for(spec.logical_id)
        if role is None:
            # Never fall back to the administrator: a schedule with no role could start nothing on AWS.
            raise RuntimeError(f"schedule {spec.name} ({spec.logical_id}) has no role in the template")
        # EventBridge Scheduler starts the execution with the schedule's role (its target RoleArn).
        import boto3

        scheduler = boto3.client("stepfunctions", region_name=self.region)
        machine = self.template.state_machine(spec.target)
        with iam_hooks.acting_as(role.arn, uuid.uuid4().hex):
            started = scheduler.start_execution(
                stateMachineArn=machine.arn,
                name=f"{machine.logical_id}-{uuid.uuid4().hex[:12]}",
                input=json.dumps(payload),
            )
        return self.wait(str(started["executionArn"]))

    def signing_keys(self) -> dict[str, Key]:
        """The access keys a SigV4-signed request to the stack's APIs may use: the runtime's own
        fake credentials, the administrator's (every action allowed, execute-api:Invoke too)."""
        admin = Key(
            FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"], FAKE_AWS_ENV["AWS_SESSION_TOKEN"], f"arn:aws:iam::{ACCOUNT_ID}:root"
        )
        return {FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"]: admin}

    # -- metrics and alarms ----------------------------------------------------------------
    def metric_datapoints(self) -> list[Datapoint]:
        """What CloudWatch would hold after this run: every function's EMF, and what AWS publishes."""
        points: list[Datapoint] = []
        for function in self.functions.values():
            invocations = list(function.invocations)
            points += emf.all_datapoints(document for invocation in invocations for document in invocation.emf)
            points += aws_metrics.lambda_datapoints(
                function.spec.function_name, invocations, list(function.throttled_at)
            )
        for machine in self._backend().state_machines:
            points += aws_metrics.states_datapoints(machine.arn, list(machine.executions))
        return points

    def alarms(self) -> list[cloudwatch_alarms.Alarm]:
        """The template's ``AWS::CloudWatch::Alarm`` resources, intrinsics resolved as on this stack."""
        return cloudwatch_alarms.template_alarms(self.template)

    def alarm_states(self, at: float | None = None) -> list[cloudwatch_alarms.AlarmEvaluation]:
        """Every alarm's state at ``at`` (default: now on the virtual clock)."""
        return cloudwatch_alarms.evaluate_all(
            self.alarms(), self.metric_datapoints(), self.clock.now() if at is None else at
        )

    # -- Lambda ------------------------------------------------------------------------
    def function(self, name: str) -> LocalFunction:
        spec = self.template.function(name)
        local = self.functions[spec.logical_id]
        containers = self.containers
        return local if containers is None else containers.function(local)  # type: ignore[no-any-return]

    def invoke(self, name: str, event: Any = None) -> Invocation:
        """Run one handler, as ``sam local invoke`` does."""
        return self.function(name).invoke({} if event is None else event)

    def invoke_in_process(self, function_name: str, event: str | Any) -> tuple[str, bool, str]:
        """moto's Lambda invoke, answered by the handler itself (seam)."""
        payload = json.loads(event) if isinstance(event, str) else event
        invocation = self.function(function_name).invoke({} if payload is None else payload)
        if invocation.throttled:
            # Not a function error: Lambda refuses the call itself (429), and callers see
            # TooManyRequestsException (Step Functions: Lambda.TooManyRequestsException).
            raise LambdaThrottledError(invocation.error_message or "Rate Exceeded.")
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
        return self.executions.backend()

    def start_execution(self, state_machine: str, input: Any = None, *, name: str | None = None) -> str:
        return self.executions.start_execution(state_machine, input, name=name)

    def wait(self, execution_arn: str, timeout: float = 300.0) -> ExecutionResult:
        """Wait (in real time, bounded) for an execution and collect its history."""
        return self.executions.wait(execution_arn, timeout)

    def run(
        self, state_machine: str, input: Any = None, *, name: str | None = None, timeout: float = 300.0
    ) -> ExecutionResult:
        """Start an execution and wait for it: the offline ``StartExecution`` + console view."""
        return self.executions.run(state_machine, input, name=name, timeout=timeout)

    def describe(self, execution_arn: str) -> ExecutionResult:
        return self.executions.describe(execution_arn)

    def describe_sync(self, execution: Any) -> ExecutionResult:
        """A finished synchronous (Express) execution, read from moto's record of it."""
        return self.executions.describe_sync(execution)

    def start_sync_execution(self, state_machine: str, input: Any = None, *, name: str | None = None) -> dict[str, Any]:
        """StartSyncExecution for EXPRESS workflows, as AWS answers it."""
        return self.executions.start_sync_execution(state_machine, input, name=name)

    def handle_sync_states(self, request: Any) -> tuple[int, dict[str, str], str]:
        """The ``sync-states`` endpoint moto does not serve (seam)."""
        return self.executions.handle_sync_states(request)

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
