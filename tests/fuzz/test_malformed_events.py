"""Events of shapes no caller sends: every entry function answers a clear error and writes nothing.

One stack is shared by every example (a listener and a speaker connected, a message
stored); each example sends one malformed event to one function of the template and
checks the answer for that kind of caller:

* a WebSocket route answers 400 (the house error shape in the body where it has one,
  and an error frame on the socket when the connection is known);
* the HTTP API answers 400 with the house JSON error shape;
* a function a workflow invokes fails with a declared error of the taxonomy
  (``ValidationError``, or the step's own fail-closed refusal), never a Python crash;

and every DynamoDB table of the template holds exactly what it held before, with no
write call and no workflow started. Examples are derandomized: the same events run
on every machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from samtranslator.yaml_helper import yaml_parse

from local_runtime import LocalRuntime
from local_runtime.sessions import join_session
from resilience.errors import all_error_classes

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TEMPLATE = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
TABLES = sorted(name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table")
FUNCTIONS = sorted(name for name, r in TEMPLATE["Resources"].items() if r["Type"] == "AWS::Serverless::Function")
#: Calls that change something: none of them may follow a malformed event.
WRITES = {
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "ExecuteStatement",
    "StartExecution",
    "StartSyncExecution",
}
SPEAKER, LISTENER, SESSION = "Speaker0=", "Xy1ZEcabcDEFg=", "town-hall"
EXAMPLES = 25


def sample(path: str) -> Any:
    return json.loads((EVENTS / path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- building blocks

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
#: Any JSON value, nested a little.
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
not_object = junk.filter(lambda v: not isinstance(v, dict))
not_text = junk.filter(lambda v: not isinstance(v, str))
#: Not an integer, for JSON Schema too (which counts 2.0 as one).
not_integer = junk.filter(lambda v: isinstance(v, bool) or not isinstance(v, int | float) or not float(v).is_integer())
not_list = junk.filter(lambda v: not isinstance(v, list))
#: Text no id pattern of the service admits: a stray character, a trailing newline, too long.
bad_id = st.one_of(
    st.just(""),
    st.sampled_from(["Xy1ZEcabcDEFg=\n", "Xy1Z Ecab", "Xy1Z#1", "Xy1Zé=", "..\\x", "a\nb", "a\x00", "*"]),
    st.builds(lambda n: "A" * n, st.integers(min_value=129, max_value=400)),
)


def huge_text(min_size: int = 33 * 1024) -> st.SearchStrategy[str]:
    """Text over the frame limit, built without asking hypothesis for a huge draw."""
    return st.builds(
        lambda n, c: c * n, st.integers(min_value=min_size, max_value=min_size * 3), st.sampled_from("x[{é")
    )


deep_json = st.builds(
    lambda depth, opener: (opener * depth) + ("]" * depth if opener == "[" else "1" + "}" * depth),
    st.integers(min_value=33, max_value=20_000),
    st.sampled_from(["[", '{"a":']),
)
#: A frame body that is not a JSON object (or not parseable at all, or too costly to parse).
bad_body = st.one_of(
    not_text,
    st.text(max_size=40).filter(lambda t: not _is_json_object(t)),
    junk.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
    huge_text(),
    deep_json,
)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def with_path(event: Any, path: tuple[str, ...], value: Any) -> Any:
    """A copy of ``event`` with ``value`` at ``path`` (missing parents created)."""
    copy = json.loads(json.dumps(event))
    node = copy
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return copy


def without(event: Any, path: tuple[str, ...]) -> Any:
    copy = json.loads(json.dumps(event))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)
    return copy


def mutations(
    base: Any, broken: dict[tuple[str, ...], st.SearchStrategy[Any]], optional: tuple[tuple[str, ...], ...] = ()
) -> st.SearchStrategy[Any]:
    """``base`` with one path replaced by a value that breaks it, or a required path removed, or no object at all."""
    replaced = [st.builds(lambda v, p=path: with_path(base, p, v), values) for path, values in broken.items()]
    removed = st.sampled_from(sorted(set(broken) - set(optional))).map(lambda p: without(base, p))
    return st.one_of(st.one_of(*replaced), removed, not_object)


# --------------------------------------------------------------------------- malformed events per function

CONNECT = sample("connect/listener.json")
DISCONNECT = sample("disconnect/client_disconnected.json")
DEFAULT = sample("default_route/ping.json")
SEND = with_path(sample("send_message/hello.json"), ("requestContext", "connectionId"), SPEAKER)
HEALTH = sample("health/health.json")
BATCH = sample("message_delivery/batch.json")
SWEEP_CURSOR = {"shard": 0, "startKey": None, "done": False}
SWEEP = {
    "begin": {"action": "begin", "executionName": "IdleSweep-fuzz"},
    "continue": {
        "action": "begin",
        "executionName": "IdleSweep-fuzz2",
        "continuation": sample("idle_sweep/continuation.json"),
    },
    "page": {"action": "page", "lockOwner": "IdleSweep-fuzz", "cutoffMs": 1_795_519_850_000, "cursor": SWEEP_CURSOR},
    "notify": {**sample("idle_sweep/close.json"), "action": "notify"},
    "close": sample("idle_sweep/close.json"),
    "finish": {"action": "finish", "lockOwner": "IdleSweep-fuzz", "startedAtMs": 1_795_520_000_000},
}
WEBSOCKET_CONTEXT: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("requestContext",): not_object,
    ("requestContext", "connectionId"): st.one_of(not_text, bad_id),
}
bad_send_body = st.one_of(
    bad_body,
    # JSON objects that break the sendMessage schema: ids not matched whole, wrong types, extra keys.
    st.builds(
        lambda key, value: json.dumps({**json.loads(SEND["body"]), key: value}),
        st.sampled_from(["sessionId", "clientMessageId"]),
        st.one_of(not_text, bad_id, st.just("6f1c2e9a-0000\n")),
    ),
    st.builds(lambda value: json.dumps({**json.loads(SEND["body"]), "body": value}), not_object),
    st.builds(lambda key: json.dumps({**json.loads(SEND["body"]), key: 1}), st.sampled_from(["extra", "admin"])),
)
sweep_names = st.one_of(
    not_text, bad_id.filter(lambda t: t == "" or len(t) > 80 or any(c in t for c in " \n#\\*\x00")), st.just("a:b")
)
bad_start_keys = st.one_of(
    st.text(max_size=20).filter(lambda t: t and not _is_json_object(t)),
    st.just('{"connectionId": {"S": 1}}'),
    st.just('{"connectionId": {"X": "a"}}'),
    st.just("[" * 5000),
    st.just("{}"),
)

MALFORMED: dict[str, st.SearchStrategy[Any]] = {
    "ConnectFunction": mutations(
        CONNECT,
        {
            **WEBSOCKET_CONTEXT,
            ("queryStringParameters",): junk.filter(lambda v: v and not isinstance(v, dict)),
            ("queryStringParameters", "role"): junk.filter(lambda v: v not in ("speaker", "listener")),
            ("queryStringParameters", "tenant"): st.one_of(not_text, st.sampled_from(["", "acme\n", "ac me", "a/b"])),
            ("queryStringParameters", "session"): st.one_of(not_text, bad_id),
            ("queryStringParameters", "token"): st.one_of(
                st.just(""), st.builds(lambda n: "e" * n, st.integers(8193, 20000))
            ),
            ("headers", "Authorization"): st.sampled_from(["Basic abc", "Bearer", "Bearer   ", "token"]),
        },
        optional=(("queryStringParameters", "role"), ("queryStringParameters", "token"), ("headers", "Authorization")),
    ),
    "DisconnectFunction": mutations(
        DISCONNECT,
        {
            **WEBSOCKET_CONTEXT,
            ("requestContext", "requestId"): st.one_of(not_text, bad_id),
            ("requestContext", "routeKey"): junk.filter(lambda v: v != "$disconnect"),
        },
    ),
    "DefaultRouteFunction": st.one_of(
        mutations(DEFAULT, WEBSOCKET_CONTEXT),
        st.builds(lambda body: with_path(DEFAULT, ("body",), body), bad_body),
    ),
    "SendMessageFunction": st.one_of(
        mutations(SEND, WEBSOCKET_CONTEXT),
        st.builds(lambda body: with_path(SEND, ("body",), body), bad_send_body),
        st.just(without(SEND, ("body",))),
    ),
    "HealthFunction": mutations(
        HEALTH,
        {
            ("requestContext",): not_object,
            ("requestContext", "http"): not_object,
            ("requestContext", "stage"): not_text,
            ("requestContext", "http", "method"): st.one_of(not_text, st.sampled_from(["get", "G ET", "", "GET\n"])),
            ("rawPath",): st.one_of(not_text, st.sampled_from(["health", "", "x/"]), huge_text(2049).map("/".__add__)),
            ("headers",): junk.filter(lambda v: v is not None and not isinstance(v, dict)),
            ("headers", "accept"): not_text.filter(lambda v: v is not None),
            ("cookies",): junk.filter(lambda v: v is not None and not isinstance(v, list)),
            ("body",): not_text.filter(lambda v: v is not None),
            ("isBase64Encoded",): junk.filter(lambda v: not isinstance(v, bool)),
        },
        optional=(("headers",), ("headers", "accept"), ("cookies",), ("body",), ("isBase64Encoded",)),
    ),
    "MessageDeliveryFunction": mutations(
        BATCH,
        {
            ("messageId",): st.one_of(not_text, bad_id),
            ("sessionId",): st.one_of(not_text, bad_id),
            ("frame",): not_object,
            ("recipients",): st.one_of(
                not_list, st.lists(st.one_of(bad_id, st.integers()), min_size=1, max_size=3).map(lambda r: ["Ana=", *r])
            ),
            ("correlationId",): st.one_of(not_text, st.just("")),
        },
    ),
    "IdleSweepFunction": st.one_of(
        st.builds(lambda action: {"action": action}, junk.filter(lambda v: v not in (*SWEEP, "backfill"))),
        mutations(SWEEP["begin"], {("executionName",): sweep_names}),
        mutations(
            SWEEP["continue"],
            {
                ("continuation",): junk.filter(lambda v: v not in (None, {})),
                ("continuation", "lockOwner"): sweep_names,
                ("continuation", "cutoffMs"): not_integer,
                ("continuation", "cursor"): not_object,
                ("continuation", "cursor", "startKey"): bad_start_keys,
            },
            optional=(("continuation",), ("continuation", "cursor", "startKey")),
        ),
        mutations(
            SWEEP["page"],
            {
                ("lockOwner",): sweep_names,
                ("cutoffMs",): not_integer,
                ("cursor",): not_object,
                ("cursor", "shard"): st.one_of(not_integer, st.integers(min_value=64), st.integers(max_value=-1)),
                ("cursor", "startKey"): bad_start_keys,
            },
            optional=(("cursor", "startKey"),),
        ),
        mutations(SWEEP["notify"], {("connectionId",): st.one_of(not_text, bad_id), ("idleSeconds",): not_integer}),
        mutations(
            SWEEP["close"], {("connectionId",): st.one_of(not_text, bad_id), ("role",): not_text}, optional=(("role",),)
        ),
        mutations(SWEEP["finish"], {("lockOwner",): sweep_names, ("startedAtMs",): not_integer}),
    ),
    "VerifyTokenFunction": st.one_of(
        not_object,
        st.builds(lambda role: {"token": "x.y.z", "role": role}, not_text.filter(lambda v: v is not None)),
        st.builds(lambda token: {"token": token, "role": "speaker"}, st.one_of(not_text, st.text(max_size=30))),
    ),
    "BlacklistCheckFunction": st.one_of(
        not_object,
        st.builds(lambda jti, exp: {"jti": jti, "exp": exp}, st.one_of(not_text, st.just("")), junk),
        st.builds(lambda exp: {"jti": "abc", "exp": exp}, junk.filter(lambda v: not isinstance(v, int | float))),
    ),
    "TenantConfigFunction": st.one_of(
        not_object,
        st.builds(
            lambda hint: {"tenantHint": hint, "role": "listener", "anonymous": True}, st.one_of(not_text, bad_id)
        ),
        st.builds(lambda t: {"tenantHint": "acme", "tokenTenant": t}, not_text.filter(lambda v: v is not None)),
    ),
}

#: What a workflow step may fail with on a malformed input: every name is a class of the taxonomy.
STEP_ERRORS: dict[str, set[str]] = {
    "MessageDeliveryFunction": {"ValidationError"},
    "IdleSweepFunction": {"ValidationError"},
    # The security steps keep their fail-closed refusals for a well-formed object with bad fields.
    "VerifyTokenFunction": {"ValidationError", "TokenInvalidError"},
    "BlacklistCheckFunction": {"ValidationError", "TokenRevokedError"},
    "TenantConfigFunction": {"ValidationError", "TenantRejectedError"},
}
WEBSOCKET = {"ConnectFunction", "DisconnectFunction", "DefaultRouteFunction", "SendMessageFunction"}


# --------------------------------------------------------------------------- the shared stack


class Stack:
    def __init__(self, runtime: LocalRuntime) -> None:
        self.runtime = runtime
        self.tables = self.snapshot()
        self.writes = self.write_calls()

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {table: self.runtime.items(table) for table in TABLES}

    def write_calls(self) -> int:
        return sum(count for (_, operation), count in self.runtime.requests.items() if operation in WRITES)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with LocalRuntime(ROOT / "template.yaml", data=EVENTS / "local_data.yaml") as runtime:
        join_session(runtime, SESSION, [(SPEAKER, "speaker", "host"), (LISTENER, "listener", "guest")])
        hello = runtime.invoke("SendMessageFunction", sample("send_message/hello.json"))
        assert hello.payload == {"statusCode": 200}, hello.payload
        assert runtime.items("ConnectionsTable")
        assert runtime.items("MessagesTable")
        yield Stack(runtime)


def test_every_entry_function_is_fuzzed():
    assert sorted(MALFORMED) == FUNCTIONS
    assert all(name in all_error_classes() for names in STEP_ERRORS.values() for name in names)


def check_websocket(stack: Stack, function: str, event: Any, frames_before: dict[str, int]) -> None:
    invocation = stack.runtime.invoke(function, event)
    assert not invocation.errored, (invocation.error_type, invocation.error_message)
    answer = invocation.payload
    assert isinstance(answer, dict)
    assert answer.get("statusCode") == 400, answer
    if "body" in answer:
        error = json.loads(answer["body"])["error"]
        assert error["code"] == "VALIDATION_ERROR", error
        assert error["message"]
    context = event.get("requestContext") if isinstance(event, dict) else None
    connection_id = context.get("connectionId") if isinstance(context, dict) else None
    if function in ("DefaultRouteFunction", "SendMessageFunction") and connection_id in (SPEAKER, LISTENER):
        # The client is told why on its socket.
        frames = stack.runtime.connections.received(connection_id)
        assert len(frames) == frames_before[connection_id] + 1, frames[frames_before[connection_id] :]
        assert frames[-1]["type"] == "error"
        assert frames[-1]["code"] in ("INVALID_MESSAGE", "VALIDATION_ERROR")


def check_http(stack: Stack, event: Any) -> None:
    invocation = stack.runtime.invoke("HealthFunction", event)
    assert not invocation.errored, (invocation.error_type, invocation.error_message)
    answer = invocation.payload
    assert answer["statusCode"] == 400, answer
    assert answer["headers"]["Content-Type"] == "application/json"
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "VALIDATION_ERROR", error
    assert error["message"]
    assert error["correlationId"]


def check_step(stack: Stack, function: str, event: Any) -> None:
    invocation = stack.runtime.invoke(function, event)
    assert invocation.errored, f"{function} accepted {event!r}: {invocation.payload!r}"
    assert invocation.error_type in STEP_ERRORS[function], (invocation.error_type, invocation.error_message)
    assert invocation.error_message
    assert len(invocation.error_message) <= 500, invocation.error_message


def check(stack: Stack, function: str, event: Any) -> None:
    frames_before = {cid: len(stack.runtime.connections.received(cid)) for cid in (SPEAKER, LISTENER)}
    if function in WEBSOCKET:
        check_websocket(stack, function, event, frames_before)
    elif function == "HealthFunction":
        check_http(stack, event)
    else:
        check_step(stack, function, event)
    assert stack.write_calls() == stack.writes, "a malformed event led to a write or a workflow start"
    assert stack.snapshot() == stack.tables


#: What the fuzz found before the fix (the crash, or what was written), one example each.
FOUND = [
    ("ConnectFunction", [], "AttributeError: 'list' object has no attribute 'get'"),
    ("DefaultRouteFunction", {"requestContext": None}, "TypeError"),
    ("DefaultRouteFunction", {"requestContext": {"connectionId": 5}}, "ParamValidationError posting the error frame"),
    ("DefaultRouteFunction", with_path(DEFAULT, ("body",), {"action": "ping"}), "TypeError: JSON object must be str"),
    ("SendMessageFunction", without(SEND, ("requestContext",)), "KeyError: 'requestContext'"),
    ("SendMessageFunction", with_path(SEND, ("body",), 5), "AttributeError: 'int' object has no attribute 'encode'"),
    ("SendMessageFunction", with_path(SEND, ("requestContext", "connectionId"), ""), "ClientError from GetItem"),
    ("DisconnectFunction", with_path(DISCONNECT, ("requestContext", "connectionId"), "Xy1Z#1"), "cleanup started"),
    ("HealthFunction", without(HEALTH, ("rawPath",)), "KeyError: 'rawPath'"),
    ("HealthFunction", with_path(HEALTH, ("requestContext", "http"), 5), "TypeError"),
    (
        "MessageDeliveryFunction",
        with_path(BATCH, ("recipients",), ["Ana=\n"]),
        "accepted an id with a trailing newline",
    ),
    ("IdleSweepFunction", {"action": "begin", "executionName": 5}, "took the sweep lock as owner '5'"),
    ("IdleSweepFunction", {"action": "begin"}, "KeyError: 'executionName'"),
    ("IdleSweepFunction", {"action": "page"}, "KeyError: 'cursor'"),
    (
        "IdleSweepFunction",
        with_path(SWEEP["page"], ("cursor", "startKey"), "{not json"),
        "JSONDecodeError once the lock is held",
    ),
    ("IdleSweepFunction", {"action": "finish", "lockOwner": "x", "startedAtMs": "y"}, "ValueError from int()"),
    ("IdleSweepFunction", {"action": "notify"}, "KeyError: 'connectionId'"),
    ("BlacklistCheckFunction", "x", "AttributeError: 'str' object has no attribute 'get'"),
    ("TenantConfigFunction", 5, "AttributeError: 'int' object has no attribute 'get'"),
    ("VerifyTokenFunction", {"token": "x.y.z", "role": ["speaker"]}, "role silently ignored"),
]


@pytest.mark.parametrize(("function", "event", "before"), FOUND, ids=[f"{f}-{b}" for f, _, b in FOUND])
def test_what_the_fuzz_found_is_a_clear_error(stack: Stack, function: str, event: Any, before: str):
    check(stack, function, event)


@pytest.mark.parametrize("function", sorted(MALFORMED))
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_malformed_event_is_a_clear_error_and_changes_nothing(stack: Stack, function: str, data: st.DataObject):
    check(stack, function, data.draw(MALFORMED[function], label="event"))
