"""The `bw` verbs on the fixture app, as a user types them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from local_runtime.cli import app

APP = Path(__file__).resolve().parents[1] / "fixtures" / "app"
TEMPLATE = str(APP / "template.yaml")


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def call(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return call


def test_invoke_prints_the_return_value(cli):
    result = cli("invoke", "SlowFunction", "-e", str(APP / "events" / "slow.json"), "-t", TEMPLATE)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"slept": 4.0}


def test_invoke_reports_an_unhandled_error_and_exits_non_zero(cli):
    result = cli("invoke", "ItemFunction", "-e", str(APP / "events" / "item_poison.json"), "-t", TEMPLATE)
    assert result.exit_code == 1
    assert '"errorType": "ValidationError"' in result.output
    assert "item 13 is malformed" in result.output


def test_invoke_rejects_an_unknown_function_clearly(cli):
    result = cli("invoke", "NoSuchFunction", "-t", TEMPLATE)
    assert result.exit_code == 2
    assert "no function 'NoSuchFunction'" in result.output


def test_invoke_rejects_an_event_that_is_not_json(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    result = cli("invoke", "SlowFunction", "-e", str(bad), "-t", TEMPLATE)
    assert result.exit_code == 2
    assert "event is not JSON" in result.output


def test_run_with_faults_prints_the_timeline_and_writes_html(cli, tmp_path):
    page = tmp_path / "trace.html"
    result = cli(
        "run",
        "RetryFlow",
        "-e",
        str(APP / "events" / "retry_flow.json"),
        "-t",
        TEMPLATE,
        "--faults",
        str(APP / "faults" / "throttle_putitem.yaml"),
        "--html",
        str(page),
    )
    assert result.exit_code == 0, result.output
    for state in ("Record request", "Call flaky dependency", "Record success"):
        assert state in result.output
    assert "1.00s, 2.00s" in result.output  # retry delays of the flaky call
    assert "faults injected: 1" in result.output
    assert page.is_file()
    assert "Call flaky dependency" in page.read_text(encoding="utf-8")


def test_run_exits_non_zero_when_the_execution_fails(cli):
    result = cli(
        "run", "RetryFlow", "-e", str(APP / "events" / "retry_flow.json"), "-t", TEMPLATE, "-p", "FlakyFailures=9"
    )
    assert result.exit_code == 1
    assert "FAILED" in result.output
    assert "DependencyUnavailableError" in result.output


def test_run_rejects_a_bad_parameter_override(cli):
    result = cli("run", "RetryFlow", "-t", TEMPLATE, "-p", "FlakyFailures")
    assert result.exit_code == 2
    assert "expected K=V" in result.output


def test_trace_replays_the_last_run(cli, tmp_path):
    assert cli("run", "TimeoutFlow", "-e", str(APP / "events" / "slow.json"), "-t", TEMPLATE).exit_code == 0
    result = cli("trace", "last", "--json")
    assert result.exit_code == 0, result.output
    trace = json.loads(result.stdout)
    assert trace["stateMachine"] == "TimeoutFlow"
    assert [row["name"] for row in trace["rows"]] == ["Call slow dependency", "Use cached answer", "Done"]
    assert trace["rows"][0]["error"] == "States.Timeout"
    page = tmp_path / "again.html"
    assert cli("trace", trace["name"], "--html", str(page)).exit_code == 0
    assert page.is_file()


def test_trace_of_an_unknown_execution_says_so(cli):
    result = cli("trace", "nope")
    assert result.exit_code == 2
    assert "no recorded execution" in result.output or "no execution recorded" in result.output


def test_demo_runs_a_workflow_with_an_injected_fault(cli, tmp_path):
    result = cli("demo", "--html", str(tmp_path / "demo.html"))
    assert result.exit_code == 0, result.output
    assert "ProvisionedThroughputExceededException" in result.output
    assert "SUCCEEDED" in result.output
    assert (tmp_path / "demo.html").is_file()
    # Part two: an API Gateway outage on the real template, nothing lost.
    assert "breaker: OPEN" in result.output
    assert "After recovery: breaker CLOSED, Outbox drained in order" in result.output
    assert result.output.count("1, 2, 3") == 3
    assert (tmp_path / "demo-delivery.html").is_file()
    # Part three: a Cognito outage refuses speakers (503) and admits anonymous listeners.
    assert "Spk1=  │ speaker  │ Cognito │ 503    │ SERVICE_UNAVAILABLE" in result.output
    assert "Ana=   │ listener │ -       │ 200    │ admitted" in result.output
    # Part four: the idle listener is told and closed; the busy one stays.
    assert "Idle=    │ no   │ connectionTimeout" in result.output
    assert "Busy=    │ yes  │ -" in result.output
    # A story, not a log: the functions' records and EMF lines went to .bw/logs/, the end points onwards.
    raw = [line for line in result.output.splitlines() if line.lstrip().startswith(('{"_aws"', '{"level"'))]
    assert raw == []
    assert '"_aws"' not in result.output
    assert '"level":' not in result.output
    assert "MessagesParked=3" not in result.output
    assert (tmp_path / ".bw" / "logs" / "MessageDeliveryFunction.log").is_file()
    assert "bw up" in result.output
    assert "bw logs" in result.output


MAIN_TEMPLATE = str(Path(__file__).resolve().parents[2] / "template.yaml")


def test_breakers_force_open_list_and_reset(cli):
    name = "apigateway.postToConnection"
    assert json.loads(cli("breakers", "-t", MAIN_TEMPLATE, "--json").stdout) == []

    forced = cli("breakers", "force-open", name, "-t", MAIN_TEMPLATE)
    assert forced.exit_code == 0, forced.output
    listed = json.loads(cli("breakers", "-t", MAIN_TEMPLATE, "--json").stdout)
    assert [(b["name"], b["state"], b["forced"]) for b in listed] == [(name, "OPEN", True)]

    assert cli("breakers", "reset", name, "-t", MAIN_TEMPLATE).exit_code == 0
    (after,) = json.loads(cli("breakers", "-t", MAIN_TEMPLATE, "--json").stdout)
    assert (after["state"], after["forced"]) == ("CLOSED", False)
    table = cli("breakers", "-t", MAIN_TEMPLATE)
    assert name in table.output
    assert "CLOSED" in table.output


def test_breakers_need_a_breakers_table(cli, tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Notes:\n    Type: AWS::Serverless::SimpleTable\n",
        encoding="utf-8",
    )
    result = cli("breakers", "-t", str(template))
    assert result.exit_code == 2
    assert "has no BreakersTable" in result.output


REAL = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("issuer", ["cognito", "breakwater"])
def test_token_issues_what_a_later_run_admits(cli, issuer):
    # Two commands, two processes' worth of stack: they agree on the local keys (.bw/state, the seed).
    template = str(REAL / "template.yaml")
    issued = cli("token", "--issuer", issuer, "--role", "speaker", "--tenant", "acme", "-t", template)
    assert issued.exit_code == 0, issued.output
    event = json.loads((REAL / "events" / "authorize_connection" / "speaker.json").read_text())
    event["token"] = issued.stdout.strip()
    Path("event.json").write_text(json.dumps(event))

    result = cli("run", "AuthorizeConnection", "-e", "event.json", "-t", template)

    assert result.exit_code == 0, result.output
    assert '"decision": "allow"' in result.output
    assert "Validate tenant and load its config" in result.output


def test_token_fills_an_event(cli):
    template = str(REAL / "template.yaml")
    source = REAL / "events" / "connect" / "speaker_without_token.json"

    result = cli("token", "-e", str(source), "-t", template)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["headers"]["Authorization"].startswith("Bearer ey")


def test_run_idle_sweep_shows_the_map_of_notify_close_and_cleanup(cli):
    template = str(REAL / "template.yaml")
    data = str(REAL / "events" / "idle_sweep" / "idle_connections.yaml")

    result = cli(
        "run", "IdleSweep", "-e", str(REAL / "events" / "idle_sweep" / "scheduled.json"), "-t", template, "--data", data
    )

    assert result.exit_code == 0, result.output
    for state in ("Still idle?", "Tell the client it timed out", "Close the connection", "Clean up", "Finish sweep"):
        assert state in result.output


def test_readme_send_message_sample_is_delivered(cli):
    """The README's one-shot `bw invoke SendMessageFunction -e events/send_message/hello.json --data ...`."""
    result = cli(
        "invoke",
        "SendMessageFunction",
        "-e",
        str(REAL / "events" / "send_message" / "hello.json"),
        "--data",
        str(REAL / "events" / "send_message" / "town_hall.yaml"),
        "-t",
        MAIN_TEMPLATE,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"statusCode": 200}
    assert '"delivered": 3' in result.output  # the speaker's ack
    for listener in ("Ana1ZEcabcDE=", "Ben1ZEcabcDE=", "Chi1ZEcabcDE="):
        assert f'→ {listener} {{"type": "message"' in result.output
    assert result.output.count('"text": "Welcome, everyone"') == 3
    assert '"_aws"' not in result.output  # the EMF lines are in the functions' log files
    logs = cli("logs", "MessageDeliveryFunction")
    assert logs.exit_code == 0, logs.output
    assert "METRIC" in logs.output
    assert "MessagesDelivered=3" in logs.output
    assert "[corr-send-1]" in logs.output


def test_logs_pretty_prints_records_and_metrics(cli, tmp_path):
    folder = tmp_path / ".bw" / "logs"
    folder.mkdir(parents=True)
    record = {
        "level": "WARNING",
        "message": "breaker transition",
        "timestamp": "2026-12-02T01:13:31.770+00:00",
        "correlation_id": "corr-1",
    }
    emf = {
        "_aws": {
            "Timestamp": 1796174011000,
            "CloudWatchMetrics": [
                {"Namespace": "Breakwater", "Metrics": [{"Name": "MessagesParked", "Unit": "Count"}]}
            ],
        },
        "correlationId": "corr-2",
        "MessagesParked": [3.0],
    }
    lines = [json.dumps(record), json.dumps(emf), json.dumps({"level": "INFO", "message": "older"})]
    (folder / "DemoFunction.log").write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    shown = cli("logs", "DemoFunction", "-n", "2")
    assert shown.exit_code == 0, shown.output
    assert "older" not in shown.output
    assert "2026-12-02 01:13:31.770 WARNING breaker transition  [corr-1]" in shown.output
    assert "METRIC  MessagesParked=3  [corr-2]" in shown.output
    assert '"_aws"' not in shown.output
    assert "older" in cli("logs", "DemoFunction").output
    missing = cli("logs", "NoSuchFunction")
    assert missing.exit_code == 2
    assert "DemoFunction" in missing.output
