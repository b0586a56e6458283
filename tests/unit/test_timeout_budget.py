"""The delivery path's timeout budget, read from the template: every caller waits longer than its callee runs.

If one of these fails, a caller gives up on work that goes on without it —
the root of duplicate deliveries (a sender retrying a run that is still
posting) — so change the numbers together, as the README's delivery contract
table states them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_runtime.template import LocalTemplate
from resilience.clients import ClientSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template() -> LocalTemplate:
    return LocalTemplate.load(ROOT / "template.yaml")


def test_send_message_hears_the_outcome_of_every_run(template):
    send = template.function("SendMessageFunction")
    read = ClientSettings.from_env(send.environment).timeouts_for("stepfunctions").read
    workflow = template.state_machine("DeliverMessage").definition["TimeoutSeconds"]
    # One attempt (a second would start a second run), waiting longer than the run may last...
    assert read > workflow
    # ...with time left to answer the sender.
    assert send.timeout >= read + 1


def test_a_batch_ends_by_its_own_deadline_never_by_step_functions(template):
    delivery = template.function("MessageDeliveryFunction")
    states = template.state_machine("DeliverMessage").definition["States"]
    task = states["Deliver to each batch"]["ItemProcessor"]["States"]["Deliver batch"]
    assert task["TimeoutSeconds"] > delivery.timeout
    reserve = float(delivery.environment["BW_DELIVERY_RESERVE_SECONDS"])
    post = ClientSettings.from_env(delivery.environment).timeouts_for("apigatewaymanagementapi")
    # A post started just before the reserve ends before the sandbox does.
    assert reserve >= post.connect + post.read
    assert delivery.timeout > reserve


def test_a_retry_never_runs_beside_a_run_that_may_still_post(template):
    send = template.function("SendMessageFunction")
    delivery = template.function("MessageDeliveryFunction")
    workflow = template.state_machine("DeliverMessage").definition["TimeoutSeconds"]
    # A run stops at its TimeoutSeconds, but a batch it started may post for its whole Timeout after.
    assert float(send.environment["BW_DELIVERY_MAX_RUN_SECONDS"]) >= workflow + delivery.timeout


def test_every_lambda_task_waits_at_least_as_long_as_its_function_runs(template):
    checked = 0
    for machine in ("DeliverMessage", "AuthorizeConnection", "DisconnectCleanup", "IdleSweep"):
        for state in _task_states(template.state_machine(machine).definition):
            if state.get("Resource", "").endswith(":lambda:invoke") and "TimeoutSeconds" in state:
                spec = template.function(str(state["Parameters"]["FunctionName"]))
                assert state["TimeoutSeconds"] >= spec.timeout, (machine, spec.logical_id)
                checked += 1
    assert checked >= 1


def _task_states(definition: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for state in definition.get("States", {}).values():
        if state.get("Type") == "Task":
            found.append(state)
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                found.extend(_task_states(nested))
    return found


@pytest.mark.parametrize(
    ("caller", "workflow"), [("SendMessageFunction", "DeliverMessage"), ("ConnectFunction", "AuthorizeConnection")]
)
def test_every_synchronous_caller_outwaits_its_express_workflow(template, caller, workflow):
    function = template.function(caller)
    settings = ClientSettings.from_env(function.environment)
    limit = template.state_machine(workflow).definition["TimeoutSeconds"]
    assert settings.max_attempts == 1 or caller == "SendMessageFunction"  # SendMessage builds its own 1-attempt client
    assert settings.timeouts_for("stepfunctions").read > limit
    assert function.timeout >= settings.timeouts_for("stepfunctions").read + 1
