"""The HTML trace, opened in a real headless Chromium.

``--dump-dom`` prints the DOM after the page's scripts ran, so these tests
see what a user's browser shows: every state that ran is drawn with its
status, the timeline lists each visit, and the inline script filled the
details panel. Chromium is the Debian package (``make browser`` installs it);
without it the test fails rather than skips, so CI cannot go green silently.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from local_runtime import LocalRuntime, Trace, render_html
from tests.chromium import HEADLESS_FLAGS

TEMPLATE = Path(__file__).resolve().parents[1] / "fixtures" / "app" / "template.yaml"
CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.browser


class _Dom(HTMLParser):
    """The parts of the dumped DOM the assertions read."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.nodes: dict[str, dict[str, str | None]] = {}  # graph: state name -> attributes
        self.rows: list[dict[str, str | None]] = []  # timeline rows
        self.body: dict[str, str | None] = {}
        self.details: dict[str, str | None] = {}
        self.details_text: list[str] = []
        self.text: list[str] = []
        self._in_details = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "body":
            self.body = attributes
        elif tag == "g" and "state" in classes and attributes.get("data-state") is not None:
            self.nodes[str(attributes["data-state"])] = attributes
        elif tag == "tr" and attributes.get("data-state") is not None:
            self.rows.append(attributes)
        if self._in_details:
            self._in_details += 1
        elif attributes.get("id") == "details":
            self.details = attributes
            self._in_details = 1

    def handle_endtag(self, tag: str) -> None:
        if self._in_details:
            self._in_details -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_details:
            self.details_text.append(data)


def _chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found is None:
        pytest.fail(
            "Chromium is not installed, but the HTML trace must be checked in a real browser: "
            "run `make browser` (apt-get install -y chromium) and re-run the tests.",
            pytrace=False,
        )
    return found


def _dump_dom(page: Path, profile: Path) -> _Dom:
    command = [
        _chromium(),
        *HEADLESS_FLAGS,
        f"--user-data-dir={profile}",
        # Console messages (an uncaught exception in the page's script) go to stderr.
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.as_uri(),
    ]
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"chromium did not finish rendering {page} within {exc.timeout}s", pytrace=False)
    assert completed.returncode == 0, f"chromium exited with {completed.returncode}:\n{completed.stderr[-3000:]}"
    script_errors = [line for line in completed.stderr.splitlines() if "Uncaught" in line]
    assert not script_errors, "the page's script failed:\n" + "\n".join(script_errors)
    dom = _Dom()
    dom.feed(completed.stdout)
    dom.close()
    return dom


@pytest.fixture(scope="module")
def traces() -> Iterator[dict[str, Trace]]:
    faults = [{"service": "dynamodb", "operation": "PutItem", "throttle": True, "count": 1}]
    with LocalRuntime(TEMPLATE, faults=faults) as runtime:
        retry = runtime.run("RetryFlow", {"key": "html"})
        mapped = runtime.run("MapFlow", {"items": [{"id": 1}, {"id": 2, "fail": True}]})
        yield {"RetryFlow": retry.trace(), "MapFlow": mapped.trace()}


def _open(trace: Trace, tmp_path: Path) -> _Dom:
    page = tmp_path / f"{trace.state_machine}.html"
    page.write_text(render_html(trace), encoding="utf-8")
    return _dump_dom(page, tmp_path / "chromium-profile")


def _assert_page_shows(trace: Trace, dom: _Dom) -> None:
    assert trace.rows, "the execution ran no state"
    for row in trace.rows:
        assert row.name in dom.nodes, f"state {row.name!r} is not drawn in the graph"
    shown_rows = [(r.get("data-state"), r.get("data-status")) for r in dom.rows]
    assert shown_rows == [(row.name, row.status) for row in trace.rows]
    # The inline script ran to its end and filled the details panel with the first state.
    assert dom.body.get("data-ready") == "true"
    first = trace.rows[0]
    assert dom.details.get("data-selected") == first.name
    details = " ".join(dom.details_text)
    assert first.name in details
    assert "Input" in details
    assert "Definition" in details


def test_RetryFlowTraceRendersInChromium(traces, tmp_path):
    trace = traces["RetryFlow"]
    assert trace.status == "SUCCEEDED"

    dom = _open(trace, tmp_path)

    _assert_page_shows(trace, dom)
    statuses = {name: attrs.get("data-status") for name, attrs in dom.nodes.items()}
    assert statuses == {
        "Record request": "retried",  # the injected throttle, absorbed by the ASL Retry
        "Call flaky dependency": "retried",
        "Record success": "succeeded",
        "Record failure": "notrun",
        "Gave up": "notrun",
    }
    # The panel shows the first state's real input and its throttling error.
    details = " ".join(dom.details_text)
    assert '"key": "html"' in details
    assert "DynamoDB.ProvisionedThroughputExceededException" in details
    # The header lists the injected fault.
    text = " ".join(dom.text)
    assert "dynamodb:PutItem" in text
    assert "ProvisionedThroughputExceededException" in text


def test_MapFlowTraceRendersInChromium(traces, tmp_path):
    trace = traces["MapFlow"]
    assert trace.status == "SUCCEEDED"

    dom = _open(trace, tmp_path)

    _assert_page_shows(trace, dom)
    # Two iterations ran the same inner state: it takes the worst outcome and counts its visits.
    item = dom.nodes["Process one item"]
    assert item.get("data-status") == "caught"
    assert item.get("data-visits") == "2"
    assert dom.nodes["Set item aside"].get("data-status") == "succeeded"
    assert dom.nodes["Process items"].get("data-status") == "succeeded"
    assert "container" in (dom.nodes["Process items"].get("class") or "").split()
    poisoned = [r for r in dom.rows if r.get("data-iteration") == "Process items[1]"]
    assert [(r.get("data-state"), r.get("data-status")) for r in poisoned] == [
        ("Process one item", "caught"),
        ("Set item aside", "succeeded"),
    ]
