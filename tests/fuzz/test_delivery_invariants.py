"""Random fault sequences over a session: no (message, listener) pair is lost or doubled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_runtime import LocalRuntime
from local_runtime.sessions import join_session

ROOT = Path(__file__).resolve().parents[2]
SPEAKER, SESSION = "Speaker0=", "fuzz"

faults = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from(["5xx", "throttle", "latency"]),
            "probability": st.sampled_from([0.2, 0.5, 1.0]),
        }
    ),
    max_size=2,
)


def rule(fault: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {"service": "apigatewaymanagementapi", "resource": "L*", "probability": fault["probability"]}
    if fault["kind"] == "5xx":
        return {**base, "error": "InternalServerError", "status": 500}
    if fault["kind"] == "throttle":
        return {**base, "throttle": True}
    return {**base, "latency": 4}  # past the 3 s read timeout: the SDK times out


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    listeners=st.integers(min_value=1, max_value=5),
    messages=st.integers(min_value=1, max_value=4),
    injected=faults,
    leaving=st.sets(st.integers(min_value=0, max_value=4), max_size=2),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_every_pair_is_delivered_parked_or_gone(listeners, messages, injected, leaving, seed):
    with LocalRuntime(ROOT / "template.yaml", faults=[rule(f) for f in injected], seed=seed) as runtime:
        join_session(
            runtime, SESSION, [(SPEAKER, "speaker", "u"), *((f"L{i}=", "listener", "u") for i in range(listeners))]
        )
        gone = {f"L{i}=" for i in leaving if i < listeners}
        for connection_id in gone:
            runtime.connections.disconnect(connection_id)
        for n in range(messages):
            body = {"action": "sendMessage", "sessionId": SESSION, "clientMessageId": f"{n:08x}-0000", "body": {"n": n}}
            event = {"requestContext": {"connectionId": SPEAKER, "requestId": f"r{n}"}, "body": json.dumps(body)}
            assert runtime.invoke("SendMessageFunction", event).payload["statusCode"] == 200
            runtime.clock.advance(3)

        stored = {item["messageId"] for item in runtime.items("MessagesTable")}
        assert len(stored) == messages
        parked = {(item["connectionId"], item["messageId"]) for item in runtime.items("OutboxTable")}
        for i in range(listeners):
            listener = f"L{i}="
            received = [m["messageId"] for m in runtime.connections.received(listener) if isinstance(m, dict)]
            assert len(received) == len(set(received)), f"{listener} got a message twice"
            for message_id in stored:
                delivered = message_id in received
                waiting = (listener, message_id) in parked
                assert delivered != waiting or listener in gone, (listener, message_id, delivered, waiting)
                if listener in gone:
                    assert not delivered
