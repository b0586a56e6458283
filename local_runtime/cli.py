"""``bw``: the offline ``sam local invoke`` and Step Functions console.

bw invoke FlakyFunction -e events/flaky/first.json
bw run RetryFlow -e events/retry_flow/basic.json --faults faults/throttle.yaml --html trace.html
bw trace last --html trace.html
bw token --role speaker --tenant acme
bw env --serve -o .bw/env.json   (sam local invoke ... --env-vars .bw/env.json)
bw demo
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from local_runtime.runtime import ExecutionResult, LocalRuntime
from local_runtime.template import TemplateError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="breakwater offline runtime: the SAM template, its ASL and its handlers, on moto, in virtual time.",
)
console = Console(width=max(Console().width, 150))
err = Console(stderr=True, soft_wrap=True)

STORE = Path(".bw") / "executions"
STATE = Path(".bw") / "state"
BREAKERS_TABLE = "BreakersTable"
STACK_DATA = Path("events") / "local_data.yaml"
FIXTURE_APP = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "app"

TemplateOption = Annotated[Path, typer.Option("--template", "-t", help="SAM template to run.")]
ParamOption = Annotated[list[str] | None, typer.Option("--param", "-p", help="Parameter override K=V (repeatable).")]
EventOption = Annotated[str | None, typer.Option("--event", "-e", help="Event JSON file, or - for stdin.")]
DataOption = Annotated[
    list[Path] | None, typer.Option("--data", help="More stack data to load (YAML, like events/local_data.yaml).")
]


def _parameters(values: list[str] | None) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for value in values or []:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {value!r}", param_hint="--param")
        parsed[key] = val
    return parsed


def _event(source: str | None) -> Any:
    if source is None:
        return {}
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise typer.BadParameter(f"cannot read event: {exc}", param_hint="--event") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"event is not JSON: {exc}", param_hint="--event") from exc


def _fail(message: str) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(2)


def save_execution(result: ExecutionResult, store: Path = STORE) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    path = store / f"{result.name}.json"
    path.write_text(json.dumps(result.to_json(), indent=1, default=str), encoding="utf-8")
    (store / "last").write_text(result.name, encoding="utf-8")
    return path


def load_execution(ref: str, store: Path = STORE) -> ExecutionResult:
    name = ref
    if ref == "last":
        marker = store / "last"
        if not marker.is_file():
            raise FileNotFoundError("no execution recorded yet; run `bw run` first")
        name = marker.read_text(encoding="utf-8").strip()
    name = name.rsplit(":", 1)[-1] if name.startswith("arn:") else name
    path = store / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in store.glob("*.json")) if store.is_dir() else []
        raise FileNotFoundError(f"no recorded execution {ref!r}; known: {', '.join(known[-10:]) or 'none'}")
    return ExecutionResult.from_json(json.loads(path.read_text(encoding="utf-8")))


def _persistence(template: Path, extra_data: list[Path] | None = None) -> dict[str, Any]:
    """Breaker state outlives one command, as the real table outlives one invocation; stack data is loaded."""
    from local_runtime.template import LocalTemplate

    options: dict[str, Any] = {}
    # What the deployment would already hold (tenant configs, revoked token ids), if the app ships it.
    default = template.resolve().parent / STACK_DATA
    data = ([default] if default.is_file() else []) + list(extra_data or [])
    if data:
        options["data"] = data
    try:
        tables = LocalTemplate.load(template).of_type("AWS::DynamoDB::Table")
    except TemplateError:
        return options
    if BREAKERS_TABLE in tables:
        options.update(state_dir=STATE, persist_tables=[BREAKERS_TABLE])
    return options


def _write_html(result: ExecutionResult, target: Path) -> None:
    from local_runtime.html import render_html

    target.write_text(render_html(result.trace()), encoding="utf-8")
    console.print(f"HTML trace: [bold]{target}[/]")


@app.command()
def invoke(
    function: Annotated[str, typer.Argument(help="Logical id of the function in the template.")],
    event: EventOption = None,
    template: TemplateOption = Path("template.yaml"),
    param: ParamOption = None,
    data: DataOption = None,
) -> None:
    """Run one handler in-process (the offline ``sam local invoke``); prints its return value."""
    payload = _event(event)
    try:
        with LocalRuntime(template, parameters=_parameters(param), **_persistence(template, data)) as runtime:
            invocation = runtime.invoke(function, payload)
            _report_refusals(runtime)
    except TemplateError as exc:
        _fail(str(exc))
        return
    if invocation.errored:
        err.print_json(json.dumps({"errorType": invocation.error_type, "errorMessage": invocation.error_message}))
        raise typer.Exit(1)
    print(json.dumps(invocation.payload, default=str, indent=2))


def _report_refusals(runtime: LocalRuntime) -> None:
    """Calls IAM refused during the command: a missing grant in the template, as AWS would refuse it."""
    if runtime.iam is None:
        return
    for refusal in runtime.iam.usage()["denied"]:
        err.print(
            f"[red]AccessDenied[/]: {refusal['role']} may not {refusal['action']} on {refusal['resource']} "
            f"({refusal['calls']} call{'s' if refusal['calls'] != 1 else ''}); add the grant to the template's Policies"
        )


@app.command()
def run(
    state_machine: Annotated[str, typer.Argument(help="Logical id of the state machine in the template.")],
    event: EventOption = None,
    template: TemplateOption = Path("template.yaml"),
    param: ParamOption = None,
    faults: Annotated[Path | None, typer.Option("--faults", "-f", help="Fault rules (YAML/JSON).")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML trace here.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for jitter and fault probabilities.")] = 0,
    data: DataOption = None,
) -> None:
    """Start an execution, wait for it, print its timeline. Exits 1 unless it SUCCEEDED."""
    payload = _event(event)
    try:
        with LocalRuntime(
            template, parameters=_parameters(param), faults=faults, seed=seed, **_persistence(template, data)
        ) as runtime:
            result = runtime.run(state_machine, payload)
    except (TemplateError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
        return
    save_execution(result)
    result.trace().render(console)
    _report_refusals(runtime)
    console.print_json(json.dumps(result.output, default=str)) if result.output is not None else None
    if html:
        _write_html(result, html)
    if not result.succeeded:
        raise typer.Exit(1)


@app.command()
def trace(
    execution: Annotated[str, typer.Argument(help="Execution name or ARN, or 'last'.")] = "last",
    html: Annotated[Path | None, typer.Option("--html", help="Write the HTML trace here.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON.")] = False,
) -> None:
    """Show a recorded execution like the Step Functions console."""
    try:
        result = load_execution(execution)
    except FileNotFoundError as exc:
        _fail(str(exc))
        return
    if as_json:
        print(json.dumps(result.trace().to_json(), default=str, indent=1))
    else:
        result.trace().render(console)
    if html:
        _write_html(result, html)


@app.command()
def demo(
    html: Annotated[Path, typer.Option("--html", help="Where to write the HTML trace.")] = Path("bw-demo-trace.html"),
) -> None:
    """A dependency that throttles and a flaky one, recovered by ASL Retry with backoff, offline."""
    template = FIXTURE_APP / "template.yaml"
    faults = [
        {"name": "dynamodb-throttle", "service": "dynamodb", "operation": "PutItem", "throttle": True, "count": 1},
    ]
    console.rule("[bold]breakwater demo[/]: RetryFlow with an injected DynamoDB throttle")
    console.print(
        "The workflow records a request (DynamoDB putItem, direct integration), calls a dependency that fails\n"
        "twice with RetryableError, and records the outcome. Retry, backoff and the fallback are in the ASL;\n"
        "time is virtual, so the 1 s + 2 s of backoff take no real time.\n"
    )
    with LocalRuntime(template, faults=faults, seed=7) as runtime:
        result = runtime.run("RetryFlow", {"key": "demo"})
        save_execution(result)
        result.trace().render(console)
        console.print("Items in AttemptsTable:")
        for item in sorted(runtime.items("AttemptsTable"), key=lambda i: str(i["pk"])):
            console.print(f"  {json.dumps(item, default=str)}")
        _write_html(result, html)
        console.rule("TimeoutFlow: a dependency that hangs for 10 s; TimeoutSeconds 3 then a fallback")
        timed = runtime.run("TimeoutFlow", {"seconds": 10})
        save_execution(timed)
        timed.trace().render(console)
    console.rule("A WebSocket session rides out an API Gateway outage (the real template)")
    from local_runtime.demo import delivery_demo

    delivery_html = html.with_name(html.stem + "-delivery" + html.suffix)
    survived = delivery_demo(console, delivery_html)
    console.rule("Cognito goes down: speakers are refused, anonymous listeners still get in (the real template)")
    from local_runtime.demo import admission_demo, idle_demo

    degraded = admission_demo(console)
    console.rule("An idle listener is timed out by the scheduled IdleSweep (the real template)")
    swept = idle_demo(console)
    if not (result.succeeded and timed.succeeded and survived and degraded and swept):
        raise typer.Exit(1)
    console.print(f"\nReplay the timeline with [bold]bw trace {result.name}[/], open [bold]{html}[/] in a browser.")


@app.command()
def token(
    role: Annotated[str, typer.Option(help="speaker or listener (the roles the token grants).")] = "speaker",
    tenant: Annotated[str | None, typer.Option(help="Tenant claim (custom:tenant / tenant).")] = "acme",
    subject: Annotated[str, typer.Option("--sub", help="Subject (user id).")] = "speaker-1",
    issuer: Annotated[str, typer.Option(help="cognito (the user pool's RS256) or breakwater (HS256).")] = "cognito",
    lifetime: Annotated[int, typer.Option(help="Seconds until exp.")] = 3600,
    jti: Annotated[str | None, typer.Option(help="Token id (the revocation list's key); random by default.")] = None,
    template: TemplateOption = Path("template.yaml"),
    event: Annotated[
        Path | None,
        typer.Option("--event", "-e", help="Print this AuthorizeConnection/$connect event with the token in."),
    ] = None,
) -> None:
    """Issue a test token the offline stack accepts (never valid on AWS: local keys)."""
    if issuer not in ("cognito", "breakwater"):
        raise typer.BadParameter("cognito or breakwater", param_hint="--issuer")
    claims: dict[str, Any] = {"subject": subject, "tenant": tenant, "lifetime_seconds": lifetime, "jti": jti}
    try:
        with LocalRuntime(template, **_persistence(template)) as runtime:
            if issuer == "cognito":
                issued = runtime.cognito_token(groups=(role,), **claims)
            else:
                issued = runtime.breakwater_token(roles=(role,), **claims)
    except (TemplateError, KeyError) as exc:
        _fail(f"{template} cannot issue tokens offline: {exc}")
        return
    if event is None:
        print(issued)
        return
    document = _event(str(event))
    if "requestContext" in document:  # a $connect event
        document.setdefault("headers", {})["Authorization"] = f"Bearer {issued}"
    else:
        document["token"] = issued
    print(json.dumps(document, indent=2))


breakers_app = typer.Typer(help="Circuit breakers of the local stack: list, reset, force open.")
app.add_typer(breakers_app, name="breakers")


@contextmanager
def _breaker_store(template: Path) -> Iterator[Any]:
    from resilience.breaker import DynamoDBBreakerStore

    persistence = _persistence(template)
    if not persistence:
        _fail(f"{template} has no {BREAKERS_TABLE}; breakers live in that DynamoDB table")
    with LocalRuntime(template, **persistence) as runtime:
        yield DynamoDBBreakerStore(BREAKERS_TABLE, runtime.client("dynamodb"))


def _breaker(name: str, store: Any) -> Any:
    """A breaker with its own policy (window, thresholds), so stats read as it acts."""
    from resilience.breaker import CircuitBreaker, policy_for

    return CircuitBreaker(name, store, policy_for(name))


@breakers_app.callback(invoke_without_command=True)
def breakers_list(
    ctx: typer.Context,
    template: TemplateOption = Path("template.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the breakers as JSON.")] = False,
) -> None:
    """List every breaker: state, window counts, failure rate, when it opened and may be probed."""
    if ctx.invoked_subcommand is not None:
        return
    with _breaker_store(template) as store:
        stats = [_breaker(name, store).stats() for name in store.names()]
    if as_json:
        print(json.dumps([s.to_dict() for s in stats], indent=1))
        return
    from rich.table import Table

    table = Table(title=f"Circuit breakers ({len(stats)})", title_justify="left", header_style="bold")
    for column in ("Breaker", "State", "Calls", "Failures", "Rate", "Failing envs", "Opened", "Next attempt"):
        table.add_column(column)
    colours = {"CLOSED": "green", "OPEN": "red", "HALF_OPEN": "yellow"}
    for item in stats:
        data = item.to_dict()
        state = f"[{colours[data['state']]}]{data['state']}[/]" + (" (forced)" if item.forced else "")
        table.add_row(
            item.name,
            state,
            str(item.calls),
            str(item.failures),
            f"{item.failure_rate:.0%}",
            str(item.failing_environments),
            data["openedAt"] or "",
            data["nextAttemptAt"] or "",
        )
    console.print(table)


@breakers_app.command("reset")
def breakers_reset(
    name: Annotated[str, typer.Argument(help="Breaker name, e.g. apigateway.postToConnection.")],
    template: TemplateOption = Path("template.yaml"),
) -> None:
    """Close a breaker now, with a fresh window."""
    with _breaker_store(template) as store:
        _breaker(name, store).reset()
    console.print(f"{name}: [green]CLOSED[/] (reset)")


@breakers_app.command("force-open")
def breakers_force_open(
    name: Annotated[str, typer.Argument(help="Breaker name, e.g. apigateway.postToConnection.")],
    template: TemplateOption = Path("template.yaml"),
) -> None:
    """Open a breaker and keep it open (no probes) until it is reset."""
    with _breaker_store(template) as store:
        _breaker(name, store).force_open()
    console.print(f"{name}: [red]OPEN[/] (forced until `bw breakers reset {name}`)")


@app.command("iam")
def iam_report(
    template: TemplateOption = Path("template.yaml"),
    params: ParamOption = None,
    usage: Annotated[
        list[Path] | None,
        typer.Option("--usage", help="Usage recorded by runs with BW_IAM_USAGE=FILE (repeatable)."),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 if any recorded call was refused.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Least privilege: per role, the grants the template gives vs the grants recorded runs used."""
    from rich.table import Table

    from local_runtime import iam, limits
    from local_runtime.template import LocalTemplate

    try:
        loaded = LocalTemplate.load(template, parameter_overrides=_parameters(params))
        model = iam.template_model(loaded)
    except (TemplateError, iam.IamError) as exc:
        _fail(str(exc))
    records = iam.read_usage(usage or [])
    reports = iam.report(model, records)
    warnings = limits.timeout_warnings(loaded)
    missing = [(r.role, a, res, n) for r in reports for a, res, n in r.denied]
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "roles": [
                        {
                            "role": r.role,
                            "callers": list(r.callers),
                            "granted": len(r.granted) - len(r.platform),
                            "used": [
                                {"action": g.action, "resource": g.resource, "calls": n} for g, n in r.used.items()
                            ],
                            "unused": [
                                {"action": g.action, "resource": g.resource, "policy": g.policy} for g in r.unused
                            ],
                            "missing": [{"action": a, "resource": res, "calls": n} for a, res, n in r.denied],
                        }
                        for r in reports
                    ],
                    "timeoutWarnings": warnings,
                }
            )
        )
    else:
        table = Table(title=f"IAM: granted vs used ({len(records)} recorded runs of {template})")
        for column in ("role", "acts for", "granted", "used", "unused (never called)", "missing (refused)"):
            table.add_column(column, overflow="fold")
        for r in reports:
            table.add_row(
                r.role,
                ", ".join(r.callers),
                str(len(r.granted) - len(r.platform)),
                str(len(r.used)),
                "\n".join(f"{g.action} {g.resource}" for g in r.unused) or "-",
                "\n".join(f"[red]{a} {res}[/] x{n}" for a, res, n in r.denied) or "-",
            )
        console.print(table)
        console.print(
            "Grants the Lambda service uses for the function (logs:*, xray:*) are not counted. "
            "Used/unused need recorded runs: BW_IAM_USAGE=FILE before `make test` or `bw run`."
        )
        for warning in warnings:
            console.print(f"[yellow]timeout warning:[/] {warning}")
    if check and missing:
        for role, action, resource, n in missing:
            err.print(f"missing grant: {role} needs {action} on {resource} ({n} refused calls)")
        raise typer.Exit(1)


@app.command("env")
def env_command(
    endpoint: Annotated[
        str, typer.Option(help="Where the functions find AWS (AWS_ENDPOINT_URL); the stack `--serve` runs.")
    ] = "http://bw-stack:4566",
    websocket_endpoint: Annotated[
        str | None, typer.Option(help="API Gateway management endpoint (BW_WEBSOCKET_ENDPOINT); --endpoint if unset.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the file here (default: stdout).")
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Also serve the stack (moto, provisioned from the template) at http://bw-stack:4566 on the "
            "Docker network bw-local until interrupted; needs Docker (make lambda-image) and root.",
        ),
    ] = False,
    template: TemplateOption = Path("template.yaml"),
    param: ParamOption = None,
) -> None:
    """The --env-vars file for `sam local invoke`: every function pointed at a stack, with fake credentials.

    bw env --serve -o .bw/env.json   (then, in another shell:)
    sam local invoke HealthFunction -e events/health/health.json --env-vars .bw/env.json
        --docker-network bw-local --skip-pull-image
    """
    from local_runtime.containers import Gateway, MotoStack, env_vars
    from local_runtime.template import LocalTemplate

    def emit(document: dict[str, Any]) -> None:
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        if output is None:
            sys.stdout.write(text)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
            err.print(f"--env-vars file: [bold]{output}[/]")

    parameters = _parameters(param)
    if not serve:
        try:
            local = LocalTemplate.load(template, parameter_overrides=parameters)
        except TemplateError as exc:
            _fail(str(exc))
            return
        emit(env_vars(local, endpoint, websocket_endpoint=websocket_endpoint))
        return
    import signal
    import threading

    with MotoStack(template, parameters=parameters) as stack, Gateway(stack.port) as gateway:
        emit(env_vars(stack.template, gateway.endpoint, websocket_endpoint=websocket_endpoint))
        err.print(f"stack: moto on {stack.endpoint}, reached from containers at {gateway.endpoint} (Ctrl-C stops)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
