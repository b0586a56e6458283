"""A slow dependency on the offline runtime: the read timeout makes it a ServiceTimeoutError, in virtual time."""

from __future__ import annotations

import boto3
import pytest

from local_runtime.clock import real_monotonic
from resilience.clients import Clients, ClientSettings, translate_errors
from resilience.errors import ServiceTimeoutError

SLOW_GET_ITEM = {"service": "dynamodb", "operation": "GetItem", "latency": 8}


def _get_item(clients: Clients) -> None:
    with translate_errors("dynamodb", "GetItem"):
        clients.dynamodb().get_item(TableName="AttemptsTable", Key={"pk": {"S": "x"}})


def test_LatencyAboveTheReadTimeoutIsAServiceTimeoutAfterExactlyTheReadTimeout(runtime_factory):
    runtime = runtime_factory(faults=[SLOW_GET_ITEM])
    clients = Clients(
        boto3.session.Session(region_name=runtime.region), ClientSettings.from_env({"BW_SDK_MAX_ATTEMPTS": "1"})
    )

    before, real_before = runtime.clock.now(), real_monotonic()
    with pytest.raises(ServiceTimeoutError) as caught:
        _get_item(clients)

    # The client gave up at DynamoDB's 5 s read timeout, not after the 8 s of latency.
    assert runtime.clock.now() - before == pytest.approx(5.0)
    assert runtime.faults.fired(runtime.faults.rules[0]) == 1
    assert "dynamodb.GetItem" in str(caught.value)
    assert caught.value.retry_after == 5
    assert real_monotonic() - real_before < 5.0


def test_EachSdkAttemptWaitsItsOwnReadTimeout(runtime_factory):
    runtime = runtime_factory(faults=[SLOW_GET_ITEM])
    clients = Clients(
        boto3.session.Session(region_name=runtime.region), ClientSettings.from_env({"BW_SDK_MAX_ATTEMPTS": "3"})
    )

    before, real_before = runtime.clock.now(), real_monotonic()
    with pytest.raises(ServiceTimeoutError):
        _get_item(clients)

    elapsed = runtime.clock.now() - before
    # 3 attempts x 5 s, plus the SDK's jittered backoff between them (below 1 s, then below 2 s).
    assert 15.0 <= elapsed < 18.0
    assert runtime.faults.fired(runtime.faults.rules[0]) == 3
    assert real_monotonic() - real_before < 5.0
