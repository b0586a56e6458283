"""render_html escapes everything an execution carries: names, errors, causes, payloads, faults."""

from __future__ import annotations

import json
import re

from local_runtime import StateRow, Trace, render_html

EVIL = "<script>alert(1)</script>"
DATA_BLOCK = re.compile(r'<script type="application/json" id="trace-data">(.*?)</script>', re.DOTALL)


def _evil_trace() -> Trace:
    definition = {
        "StartAt": EVIL,
        "States": {
            EVIL: {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Boom"},
            "Boom": {"Type": "Fail", "Error": EVIL, "Cause": EVIL},
        },
    }
    rows = [
        StateRow(
            name=EVIL,
            type="Task",
            start=0.0,
            end=1.5,
            status="caught",
            attempts=2,
            retry_delays=[1.0],
            error=EVIL,
            cause=f'{{"errorMessage": "{EVIL}"}}',
            input={"payload": EVIL, EVIL: "<!-- not a comment -->"},
            output={"html": '"><img src=x onerror=alert(2)>'},
            failures=[{"at": 0.5, "error": EVIL, "cause": EVIL}],
        ),
        StateRow(name="Boom", type="Fail", start=1.5, end=1.5, status="failed", error=EVIL, cause=EVIL),
    ]
    faults = [
        {
            "at": 1_700_000_000.0,
            "rule": EVIL,
            "service": "lambda",
            "operation": "Invoke",
            "resource": EVIL,
            "error": EVIL,
            "latency": 0.0,
        }
    ]
    return Trace(
        name=f"exec-{EVIL}",
        state_machine=f"Machine-{EVIL}",
        status="FAILED",
        error=EVIL,
        cause=EVIL,
        duration=1.5,
        rows=rows,
        definition=definition,
        faults=faults,
        output=None,
    )


def test_UserDataIsEscapedEverywhere():
    page = render_html(_evil_trace())

    blocks = DATA_BLOCK.findall(page)
    assert len(blocks) == 1
    data = blocks[0]
    outside = DATA_BLOCK.sub("", page)

    # Nothing can close the script element early or open a comment inside the data.
    assert EVIL not in page
    assert "</script" not in data
    assert "<!--" not in data
    # Outside the data block the payload only appears escaped.
    assert "<script>alert" not in outside
    assert "<img" not in outside
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in outside
    assert f'data-state="{"&lt;script&gt;alert(1)&lt;/script&gt;"}"' in outside
    # The escaped JSON still decodes to the original values.
    decoded = json.loads(data)
    assert decoded["trace"]["rows"][0]["name"] == EVIL
    assert decoded["trace"]["rows"][0]["input"][EVIL] == "<!-- not a comment -->"
    assert EVIL in decoded["states"]


def test_PageIsSelfContained():
    page = render_html(_evil_trace())

    # No CDN, font or image fetch: the page must open offline years later.
    assert "http://" not in page
    assert "https://" not in page
    outside = DATA_BLOCK.sub("", page)
    assert " src=" not in outside
    assert len(DATA_BLOCK.findall(page)) == 1
    assert outside.count("<script") == 1  # besides the JSON data, only the inline script
    assert '<aside id="details"' in page
    assert '<table id="timeline"' in page


def test_GraphHasEveryStateWithItsStatus():
    page = render_html(_evil_trace())

    nodes = dict(re.findall(r'<g class="state[^"]*" data-state="([^"]*)" data-status="([^"]*)"', page))
    assert nodes == {"&lt;script&gt;alert(1)&lt;/script&gt;": "caught", "Boom": "failed"}


def test_tokens_and_secrets_never_reach_the_page():
    from local_runtime.trace import StateRow, Trace

    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    row = StateRow(
        name="Verify token",
        type="Task",
        start=0.0,
        end=1.0,
        status="caught",
        error="TokenInvalidError",
        cause=f"bad token {jwt}",
        input={"token": jwt, "headers": {"Authorization": f"Bearer {jwt}"}},
        output={"SecretString": "s3cr3t-signing-key"},
    )
    trace = Trace("run", "Flow", "SUCCEEDED", None, None, 1.0, [row], {"StartAt": "Verify token", "States": {}}, [])
    from local_runtime.html import render_html

    page = render_html(trace)
    assert jwt not in page
    assert "s3cr3t-signing-key" not in page
    assert "Verify token" in page
