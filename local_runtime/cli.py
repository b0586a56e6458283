"""``bw``: the offline ``sam local invoke`` and Step Functions console.

bw invoke FlakyFunction -e events/flaky/first.json
bw logs FlakyFunction --follow   (its log records and EMF metrics, from .bw/logs/)
bw run RetryFlow -e events/retry_flow/basic.json --faults faults/throttle.yaml --html trace.html
bw trace last --html trace.html
bw token --role speaker --tenant acme
bw up --speed 10
bw fault add events/faults/apigateway_outage.yaml
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
AlarmsOption = Annotated[
    bool, typer.Option("--alarms", help="Then print every alarm's state on the metrics the run emitted (stderr).")
]
LogsOption = Annotated[
    str,
    typer.Option(
        "--logs",
        help="Where the functions' log records and EMF metrics go: files (.bw/logs/FUNCTION.log, "
        "read with `bw logs FUNCTION`) or terminal (interleaved with this command's output).",
    ),
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


@contextmanager
def _function_logs(where: str) -> Iterator[None]:
    """The functions' stdout to .bw/logs/ (``files``) or left on the terminal (``terminal``)."""
    from local_runtime.logs import to_files

    if where not in ("files", "terminal"):
        raise typer.BadParameter("expected files or terminal", param_hint="--logs")
    if where == "terminal":
        yield
        return
    with to_files():
        yield


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
    alarms: AlarmsOption = False,
    logs: LogsOption = "files",
) -> None:
    """Run one handler in-process (the offline ``sam local invoke``); prints its return value."""
    payload = _event(event)
    try:
        with (
            _function_logs(logs),
            LocalRuntime(template, parameters=_parameters(param), **_persistence(template, data)) as runtime,
        ):
            invocation = runtime.invoke(function, payload)
            _report_refusals(runtime)
            if alarms:
                _print_alarms(runtime)
    except TemplateError as exc:
        _fail(str(exc))
        return
    if invocation.errored:
        err.print_json(json.dumps({"errorType": invocation.error_type, "errorMessage": invocation.error_message}))
        raise typer.Exit(1)
    print(json.dumps(invocation.payload, default=str, indent=2))
    _report_deliveries(runtime)
    if logs == "files":
        err.print(f"logs: [bold]bw logs {function}[/]")


def _report_deliveries(runtime: LocalRuntime) -> None:
    """What the WebSocket clients of the stack received during the command (acks, messages, notices)."""
    for connection in runtime.connections.all():
        for message in connection.messages():
            text = json.dumps(message, default=str) if not isinstance(message, str) else message
            err.print(f"[cyan]→ {connection.connection_id}[/] {text}", markup=True, highlight=False)


def _print_alarms(runtime: LocalRuntime) -> None:
    """Every alarm of the template on what this run emitted (ALARM first), on stderr."""
    states = sorted(runtime.alarm_states(), key=lambda e: (e.state != "ALARM", e.alarm.logical_id))
    for evaluation in states:
        colour = "red" if evaluation.state == "ALARM" else "green"
        err.print(f"[{colour}]{evaluation.state:5}[/] {evaluation.alarm.logical_id}: {evaluation.reason}")


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
    alarms: AlarmsOption = False,
    logs: LogsOption = "files",
) -> None:
    """Start an execution, wait for it, print its timeline. Exits 1 unless it SUCCEEDED."""
    payload = _event(event)
    try:
        with (
            _function_logs(logs),
            LocalRuntime(
                template, parameters=_parameters(param), faults=faults, seed=seed, **_persistence(template, data)
            ) as runtime,
        ):
            result = runtime.run(state_machine, payload)
            if alarms:
                _print_alarms(runtime)
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
    logs: LogsOption = "files",
) -> None:
    """A dependency that throttles and a flaky one, recovered by ASL Retry with backoff, offline."""
    with _function_logs(logs):
        _demo(html)
    console.print(
        "\nEvery function's log records and metrics: [bold]bw logs FUNCTION[/] (e.g. [bold]bw logs "
        "SendMessageFunction[/], files in .bw/logs/).\nNext, the whole stack live on real sockets: [bold]bw up[/] "
        "(then connect a WebSocket client; `bw token` gives a speaker's token)."
    )


def _demo(html: Path) -> None:
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


@app.command("logs")
def logs_command(
    function: Annotated[str, typer.Argument(help="Logical id of the function (its .bw/logs/FUNCTION.log).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many of the last lines to show (0: all).")] = 50,
    raw: Annotated[bool, typer.Option("--raw", help="Print the JSON lines as written.")] = False,
) -> None:
    """A function's log records and EMF metrics from `bw invoke`, `bw run`, `bw up` and `bw demo`: time, level,
    message, correlation id."""
    import time

    from local_runtime.logs import LOG_DIR, log_file

    path = log_file(function)
    if not path.is_file() and not follow:
        known = sorted(p.stem for p in LOG_DIR.glob("*.log")) if LOG_DIR.is_dir() else []
        _fail(f"no logs for {function!r} in {LOG_DIR}; known: {', '.join(known) or 'none (run bw invoke/run/up/demo)'}")
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    last = text.splitlines()
    for line in last[-lines:] if lines > 0 else last:
        _print_log_line(line, raw)
    if not follow:
        return
    offset = len(text.encode("utf-8"))
    try:
        while True:
            time.sleep(0.5)
            if not path.is_file():
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.decode("utf-8", "replace").splitlines():
                _print_log_line(line, raw)
    except KeyboardInterrupt:
        pass


_LEVEL_STYLES = {"ERROR": "red", "CRITICAL": "bold red", "WARNING": "yellow", "METRIC": "magenta", "DEBUG": "dim"}


def _print_log_line(line: str, raw: bool) -> None:
    from rich.text import Text

    from local_runtime.logs import describe

    if not line.strip():
        return
    if raw:
        print(line)
        return
    when, level, message, correlation = describe(line)
    text = Text()
    text.append(f"{when:<23} ", style="dim")
    text.append(f"{level:<7} ", style=_LEVEL_STYLES.get(level, "cyan"))
    text.append(message)
    if correlation:
        text.append(f"  [{correlation}]", style="dim")
    console.print(text, soft_wrap=True)


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
    """A breaker with its own policy (window, thresholds), so stats read as it acts (as the console's)."""
    from local_runtime.console import breaker

    return breaker(name, store)


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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="With --check: exit 1 also on a grant no recorded run used that the allowance does not keep "
            "(needs the whole suite's usage), and on an allowance entry that keeps no grant.",
        ),
    ] = False,
    allowance: Annotated[
        Path | None,
        typer.Option(
            "--allowance",
            help="Grants no offline run can use, each with its reason (default: iam-allowance.yaml "
            "next to the template, if there is one).",
        ),
    ] = None,
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
    allowance_path = allowance or template.parent / "iam-allowance.yaml"
    try:
        allowed = iam.load_allowance(allowance_path) if allowance or allowance_path.is_file() else []
    except (OSError, iam.IamError) as exc:
        _fail(str(exc))
    records = iam.read_usage(usage or [])
    reports = iam.report(model, records, allowed)
    stale = iam.stale_allowances(reports, allowed)
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
                            "allowed": [
                                {"action": g.action, "resource": g.resource, "reason": why} for g, why in r.allowed
                            ],
                            "missing": [{"action": a, "resource": res, "calls": n} for a, res, n in r.denied],
                        }
                        for r in reports
                    ],
                    "staleAllowance": [{"role": a.role, "action": a.action, "resource": a.resource} for a in stale],
                    "timeoutWarnings": warnings,
                }
            )
        )
    else:
        table = Table(title=f"IAM: granted vs used ({len(records)} recorded runs of {template})")
        for column in (
            "role",
            "acts for",
            "granted",
            "used",
            "unused (never called)",
            "allowed unused (why)",
            "missing (refused)",
        ):
            table.add_column(column, overflow="fold")
        for r in reports:
            table.add_row(
                r.role,
                ", ".join(r.callers),
                str(len(r.granted) - len(r.platform)),
                str(len(r.used)),
                "\n".join(f"{g.action} {g.resource}" for g in r.unused) or "-",
                "\n".join(f"{g.action} {g.resource} ({why})" for g, why in r.allowed) or "-",
                "\n".join(f"[red]{a} {res}[/] x{n}" for a, res, n in r.denied) or "-",
            )
        console.print(table)
        console.print(
            "Grants the Lambda service uses for the function (logs:*, xray:*) are not counted. "
            "Used/unused need recorded runs: BW_IAM_USAGE=FILE before `make test` or `bw run`."
        )
        for warning in warnings:
            console.print(f"[yellow]timeout warning:[/] {warning}")
    unused = [(r.role, g) for r in reports for g in r.unused] if strict else []
    if check and (missing or unused or (strict and stale)):
        for role, action, resource, n in missing:
            err.print(f"missing grant: {role} needs {action} on {resource} ({n} refused calls)")
        for role, grant in unused:
            err.print(
                f"unused grant: {role} is granted {grant.action} on {grant.resource} ({grant.policy}) and no run "
                f"used it: remove it, add a test that reaches it, or keep it in {allowance_path} with a reason"
            )
        for entry in stale if strict else []:
            err.print(f"stale allowance: {entry.role} has no grant {entry.action} on {entry.resource}")
        raise typer.Exit(1)


@app.command()
def up(
    template: TemplateOption = Path("template.yaml"),
    param: ParamOption = None,
    faults: Annotated[Path | None, typer.Option("--faults", "-f", help="Fault rules active from the start.")] = None,
    data: DataOption = None,
    seed: Annotated[int, typer.Option(help="Seed for jitter and fault probabilities.")] = 0,
    speed: Annotated[float, typer.Option(help="Run the virtual clock N times faster than the wall clock.")] = 1.0,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="WebSocket API port (0: any free port).")] = 0,
    http_port: Annotated[int, typer.Option(help="HTTP API port (0: any free port).")] = 0,
    aws_port: Annotated[int, typer.Option(help="moto's AWS endpoint for outside tools (0: any free port).")] = 0,
    console_port: Annotated[int, typer.Option(help="The console web page (0: any free port).")] = 0,
    logs: LogsOption = "files",
    no_aws: Annotated[bool, typer.Option("--no-aws", help="Do not serve the AWS endpoint.")] = False,
    idle_timeout: Annotated[float, typer.Option(help="WebSocket idle timeout, stack seconds.")] = 600.0,
    max_connection: Annotated[float, typer.Option(help="WebSocket maximum duration, stack seconds.")] = 7200.0,
    containers: Annotated[
        bool,
        typer.Option(
            "--containers",
            help="Run every function in a real Lambda container (sam local start-lambda; needs Docker and "
            "the image `make lambda-image` builds).",
        ),
    ] = False,
) -> None:
    """Run the whole template live on 127.0.0.1 until Ctrl-C (the strict runtime behind real sockets)."""
    import signal
    import threading

    from local_runtime.gateway import GatewayLimits
    from local_runtime.live import UP_FILE, LiveStack
    from local_runtime.logs import LOG_DIR

    if speed <= 0:
        raise typer.BadParameter("must be > 0", param_hint="--speed")
    running = _running_stack(UP_FILE)
    if running is not None:
        _fail(f"a stack is already running here (control {running}); stop it first, or run from another directory")
    _reap_leftovers()
    with _function_logs(logs):
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        limits = GatewayLimits(idle_seconds=idle_timeout, max_seconds=max_connection)
        try:
            runtime = LocalRuntime(
                template, parameters=_parameters(param), faults=faults, seed=seed, **_persistence(template, data)
            )
            stack = LiveStack(
                runtime,
                host=host,
                websocket_port=port,
                http_port=http_port,
                aws_port=None if no_aws else aws_port,
                console_port=console_port,
                speed=speed,
                limits=limits,
                up_file=UP_FILE,
                containers=containers,
            ).start()
        except (TemplateError, ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _fail(str(exc))
            return
        try:
            endpoints = stack.endpoints()
            console.print(
                f"[bold]breakwater[/] live on {host} (started in {stack.started_in:.2f} s, of which the runtime "
                f"{stack.runtime_started_in:.2f} s; speed {speed:g}x)"
            )
            for name, url in endpoints.items():
                console.print(f"  {name:<10} {url}")
            if stack.gateway is not None:
                console.print(
                    f"  WebSocket API {stack.gateway.spec.logical_id}, stage {stack.gateway.spec.stage}: "
                    f"routes {', '.join(sorted(stack.gateway.spec.routes))}"
                )
            if stack.http is not None:
                console.print(f"  HTTP API: {', '.join(r.route_key for r in stack.http.routes)}")
            if stack.containers is not None:
                console.print(
                    f"  functions in Lambda containers ({stack.containers.architecture}, sam build in "
                    f"{stack.containers.build_seconds:.1f} s); their logs: {stack.containers.log_path}"
                )
            if logs == "files":
                console.print(f"  logs       {LOG_DIR}/FUNCTION.log (`bw logs FUNCTION`, and the console's Logs tab)")
            console.print(
                f"Endpoints written to {UP_FILE}; `bw fault add|list|clear` acts on this stack. Ctrl-C stops it."
            )
            while not stop.wait(0.5):
                pass
            console.print("stopping: closing connections ($disconnect for each), ports, the runtime")
        finally:
            stack.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _report_refusals(runtime)


def _reap_leftovers() -> list[str]:
    """Remove what a killed `bw up --containers` left (its SAM, containers, network); say what."""
    import shutil

    from local_runtime.leftovers import CONTAINERS_DIR, reap

    if shutil.which("docker") is None and not (CONTAINERS_DIR / "owners").is_dir():
        return []
    removed = reap(CONTAINERS_DIR)
    if removed:
        console.print(f"removed what a stopped `bw up --containers` left: {', '.join(removed)}")
    return removed


@app.command()
def down() -> None:
    """Remove what a `bw up --containers` that was killed (kill -9, a crash) left behind: its
    `sam local start-lambda`, its containers and Docker network. A running stack is left alone
    (Ctrl-C stops it, and stopping leaves nothing)."""
    from local_runtime.live import UP_FILE

    removed = _reap_leftovers()
    running = _running_stack(UP_FILE)
    if running is not None:
        console.print(f"a stack is still running here (control {running}): Ctrl-C in its terminal stops it")
    elif not removed:
        console.print("nothing left behind")


def _running_stack(up_file: Path) -> str | None:
    """The control endpoint of a `bw up` that still answers, per ``up_file``; None if there is none."""
    import urllib.request

    try:
        control = str(json.loads(up_file.read_text(encoding="utf-8"))["control"])
        with urllib.request.urlopen(f"{control}/endpoints", timeout=2):
            return control
    except (OSError, ValueError, KeyError):
        return None  # no file, or a stack that was killed: its file is stale


fault_app = typer.Typer(help="Faults of the running `bw up` stack: add, list, clear.")
app.add_typer(fault_app, name="fault")


def _control(method: str, path: str, body: Any = None) -> Any:
    """A request to the running stack's control endpoint (its address is in .bw/up.json)."""
    import urllib.error
    import urllib.request

    from local_runtime.live import UP_FILE

    try:
        endpoint = json.loads(UP_FILE.read_text(encoding="utf-8"))["control"]
    except (OSError, ValueError, KeyError):
        _fail(f"no running stack: {UP_FILE} is missing; start one with `bw up`")
    raw = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(f"{endpoint}{path}", data=raw, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        _fail(f"the stack refused it: {exc.read().decode('utf-8', 'replace')}")
    except OSError as exc:
        _fail(f"the stack at {endpoint} does not answer ({exc}); is `bw up` still running?")
    return None


def _print_faults(faults: list[dict[str, Any]]) -> None:
    if not faults:
        console.print("no faults")
        return
    for rule in faults:
        fired = rule.pop("fired", 0)
        console.print(f"  {json.dumps(rule)}  [dim](fired {fired}x)[/]")


@fault_app.command("add")
def fault_add(
    rules: Annotated[Path | None, typer.Argument(help="Rules file (YAML/JSON), the --faults format.")] = None,
    service: Annotated[str | None, typer.Option(help="botocore service name (glob).")] = None,
    operation: Annotated[str, typer.Option(help="Operation (glob).")] = "*",
    resource: Annotated[str, typer.Option(help="Table / function / connection id / URL path (glob).")] = "*",
    error: Annotated[str | None, typer.Option(help="AWS error code to answer with.")] = None,
    status: Annotated[int | None, typer.Option(help="HTTP status of that error.")] = None,
    latency: Annotated[float, typer.Option(help="Virtual seconds of added latency.")] = 0.0,
    count: Annotated[int | None, typer.Option(help="Fire at most this often.")] = None,
    probability: Annotated[float, typer.Option(help="Chance each matching call fails.")] = 1.0,
    name: Annotated[str | None, typer.Option(help="A name for the rule.")] = None,
) -> None:
    """Add fault rules to the running stack (a file, or one rule from the options)."""
    from local_runtime.faults import load_fault_rules

    if rules is not None:
        import yaml

        try:
            document: Any = yaml.safe_load(rules.read_text(encoding="utf-8"))
            load_fault_rules(document)  # refused here, with the same message, rather than by the stack
        except (OSError, ValueError, yaml.YAMLError) as exc:
            _fail(str(exc))
            return
    elif service is not None:
        rule: dict[str, Any] = {"service": service, "operation": operation, "resource": resource}
        optional = {"error": error, "status": status, "count": count, "name": name}
        rule.update({k: v for k, v in optional.items() if v is not None})
        if latency:
            rule["latency"] = latency
        if probability != 1.0:
            rule["probability"] = probability
        document = [rule]
    else:
        raise typer.BadParameter("give a rules file or --service")
    answer = _control("POST", "/faults", document)
    console.print(f"added {answer['added']}; active:")
    _print_faults(answer["faults"])


@fault_app.command("list")
def fault_list(as_json: Annotated[bool, typer.Option("--json", help="Print the rules as JSON.")] = False) -> None:
    """The running stack's fault rules and how often each fired."""
    answer = _control("GET", "/faults")
    if as_json:
        print(json.dumps(answer["faults"], indent=1))
    else:
        _print_faults(answer["faults"])


@fault_app.command("clear")
def fault_clear() -> None:
    """Remove every fault rule from the running stack."""
    answer = _control("DELETE", "/faults")
    console.print(f"cleared {answer['cleared']} rule(s)")


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
