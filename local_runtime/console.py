"""The console of a live stack (``bw up``): one local web page, polling JSON.

Served on 127.0.0.1 next to the other endpoints (``"console"`` in ``.bw/up.json``):

* ``/`` the page: self-contained HTML + JS (no external resource), polling every second;
* ``/api/executions`` every execution of every state machine, newest first;
* ``/api/executions/<name>`` one execution: its events, Map iterations, trace rows;
* ``/executions/<name>.html`` its trace page (:func:`local_runtime.html.render_html`, live
  while it runs: the page reloads it);
* ``/api/breakers`` the breakers; ``POST /api/breakers/<name>/reset|force-open`` the same
  code path as ``bw breakers reset|force-open`` (:func:`breaker`);
* ``/api/connections`` the registry and the Connections table; ``/api/outbox`` the Outbox;
* ``/api/metrics`` recent EMF metrics; ``/api/logs`` and ``/api/logs/<function>`` recent lines.

Functions write their logs and EMF documents to stdout, as on Lambda. While the console
runs it listens to them (:func:`local_runtime.logs.listening`, the same capture as
``.bw/logs/``): a function's lines are also kept, in a bounded ring buffer per function
(:class:`RecentOutput`).

Everything shown comes from the stack's own data and is drawn with ``textContent``
(message bodies, log lines and errors are never parsed as HTML).
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from local_runtime import logs
from local_runtime.html import render_html
from local_runtime.trace import Trace

__all__ = ["BREAKERS_TABLE", "CONNECTIONS_TABLE", "OUTBOX_TABLE", "Console", "RecentOutput", "breaker"]

BREAKERS_TABLE = "BreakersTable"
CONNECTIONS_TABLE = "ConnectionsTable"
OUTBOX_TABLE = "OutboxTable"
#: Lines kept per function, EMF documents kept in all, executions listed.
LINES_KEPT = 500
METRICS_KEPT = 500
EXECUTIONS_LISTED = 100


def breaker(name: str, store: Any, clock: Callable[[], float] | None = None) -> Any:
    """A breaker with its own policy (window, thresholds), so stats read as it acts."""
    from resilience.breaker import CircuitBreaker, policy_for

    return CircuitBreaker(name, store, policy_for(name), clock=clock)


class RecentOutput:
    """A :class:`~local_runtime.logs.Sink` of the console: recent lines per function, recent EMF metrics."""

    def __init__(self, functions: Callable[[], Iterable[str]], now: Callable[[], float]) -> None:
        self._functions = functions
        self._now = now
        self._lock = threading.Lock()
        self.lines: dict[str, deque[dict[str, Any]]] = {}
        self.metrics: deque[dict[str, Any]] = deque(maxlen=METRICS_KEPT)

    def keep(self, function: str, line: str, kind: str) -> None:
        if function not in self._functions():  # another stack's function, in the same process
            return
        at = self._now()
        metric = _emf(line)
        with self._lock:
            self.lines.setdefault(function, deque(maxlen=LINES_KEPT)).append({"at": at, "line": line})
            if metric is not None:
                self.metrics.append({"function": function, "at": at, **metric})

    def recent_metrics(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.metrics)

    def recent_lines(self, function: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines.get(function, ()))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {name: len(kept) for name, kept in self.lines.items()}


def _emf(line: str) -> dict[str, Any] | None:
    """An EMF document's namespace, dimensions and metric values; None for any other line."""
    if not line.startswith("{") or '"_aws"' not in line:
        return None
    try:
        document = json.loads(line)
        directives = document["_aws"]["CloudWatchMetrics"]
    except (ValueError, KeyError, TypeError):
        return None
    found: dict[str, Any] = {"namespace": None, "dimensions": {}, "metrics": {}}
    for directive in directives:
        found["namespace"] = directive.get("Namespace")
        for names in directive.get("Dimensions") or []:
            for name in names:
                found["dimensions"][name] = document.get(name)
        for metric in directive.get("Metrics") or []:
            name = metric.get("Name")
            found["metrics"][name] = {"value": document.get(name), "unit": metric.get("Unit")}
    return found


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else None


def _status(execution: Any) -> str:
    status = execution.exec_status
    return str(getattr(status, "value", status) or "RUNNING")


class Console:
    """The console of ``stack`` (a :class:`local_runtime.live.LiveStack`); :meth:`start` / :meth:`stop`."""

    def __init__(self, stack: Any, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stack = stack
        self.runtime = stack.runtime
        self.host = host
        self.port = port
        self.output: RecentOutput | None = None
        self._server: ThreadingHTTPServer | None = None
        self._undo = ExitStack()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> Console:
        """Listen to the functions' lines, then serve; :meth:`stop` undoes both, whatever failed."""
        with ExitStack() as undo:
            self.output = RecentOutput(lambda: self.runtime.functions, self._now)
            undo.enter_context(logs.listening(logs.Sink(self.output.keep)))
            server = ThreadingHTTPServer((self.host, self.port), _handler(self))
            undo.callback(server.server_close)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, args=(0.1,), name="bw-console", daemon=True).start()
            undo.callback(server.shutdown)
            self._server = server
            undo.callback(setattr, self, "_server", None)
            self._undo = undo.pop_all()
        return self

    def stop(self) -> None:
        self._undo.close()

    # -- what the page shows --------------------------------------------------------------
    def _now(self) -> float:
        # The stack's present: each page request runs on a thread whose own timeline stopped
        # where the console's server thread did (a breaker forced open here was opened at start).
        return float(self.runtime.clock.present())

    def _executions(self) -> list[Any]:
        backend = self.runtime.executions.backend()
        found = [e for machine in list(backend.state_machines) for e in list(machine.executions)]
        return sorted(found, key=lambda e: e.start_date, reverse=True)

    def _machine(self, execution: Any) -> str:
        try:
            return str(self.runtime.template.state_machine(execution.state_machine.arn).logical_id)
        except Exception:  # noqa: BLE001 - a machine created outside the template
            return str(execution.state_machine.name)

    def executions(self) -> list[dict[str, Any]]:
        return [
            {
                "name": e.name,
                "arn": e.exec_arn,
                "machine": self._machine(e),
                "status": _status(e),
                "start": _iso(e.start_date),
                "stop": _iso(e.stop_date),
                "error": e.error,
                "cause": e.cause,
            }
            for e in self._executions()[:EXECUTIONS_LISTED]
        ]

    def _trace(self, name: str) -> tuple[Any, Trace] | None:
        execution = next((e for e in self._executions() if e.name == name), None)
        if execution is None or execution.exec_worker is None:
            return None
        result = self.runtime.executions.describe_sync(execution)
        if result.stop is None:  # running: its states so far, up to now
            result.status = "RUNNING"
        return result, Trace.from_result(result)

    def execution(self, name: str) -> dict[str, Any] | None:
        found = self._trace(name)
        if found is None:
            return None
        result, trace = found
        t0 = result.start.timestamp()
        events = [
            {
                "id": event.get("id"),
                "type": event.get("type"),
                "at": round(float(event.get("timestamp") or t0) - t0, 3),
                "details": next((v for k, v in event.items() if k.endswith("EventDetails")), None),
            }
            for event in sorted(result.events, key=lambda e: int(e["id"]))
        ]
        redacted = trace.redacted()
        return {
            "name": result.name,
            "machine": result.state_machine,
            "status": result.status,
            "error": result.error,
            "cause": result.cause,
            "events": events,
            "iterations": [row.to_json() for row in redacted.rows if row.iteration is not None],
            "states": [row.to_json() for row in redacted.rows],
        }

    def trace_page(self, name: str) -> str | None:
        found = self._trace(name)
        return None if found is None else render_html(found[1])

    def _store(self) -> Any:
        from resilience.breaker import DynamoDBBreakerStore

        return DynamoDBBreakerStore(BREAKERS_TABLE, self.runtime.client("dynamodb"))

    def breakers(self) -> list[dict[str, Any]]:
        store = self._store()
        return [breaker(name, store, self._now).stats().to_dict() for name in sorted(store.names())]

    def breaker_action(self, name: str, action: str) -> dict[str, Any]:
        subject = breaker(name, self._store(), self._now)
        if action == "reset":
            subject.reset()
        elif action == "force-open":
            subject.force_open()
        else:
            raise KeyError(action)
        return dict(subject.stats().to_dict())

    def connections(self) -> dict[str, Any]:
        return {
            "registry": [
                {
                    "connectionId": c.connection_id,
                    "open": c.open,
                    "connectedAt": c.connected_at,
                    "lastActiveAt": c.last_active_at,
                    "closedAt": c.closed_at,
                    "sourceIp": c.source_ip,
                    "frames": len(c.received),
                }
                for c in self.runtime.connections.all()
            ],
            "table": self.runtime.items(CONNECTIONS_TABLE),
        }

    def outbox(self) -> list[dict[str, Any]]:
        return list(self.runtime.items(OUTBOX_TABLE))

    def metrics(self) -> list[dict[str, Any]]:
        return self.output.recent_metrics() if self.output is not None else []

    def logs(self, function: str | None = None) -> dict[str, Any]:
        if function is None:
            counts = self.output.counts() if self.output is not None else {}
            return {"functions": {name: counts.get(name, 0) for name in sorted(self.runtime.functions)}}
        return {"function": function, "lines": self.output.recent_lines(function) if self.output is not None else []}


def _handler(console: Console) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, raw: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(raw)

        def _json(self, status: int, body: Any) -> None:
            self._send(status, json.dumps(body, default=str).encode("utf-8"), "application/json")

        def _parts(self) -> list[str]:
            path = urllib.parse.urlsplit(self.path).path
            return [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]

        def do_GET(self) -> None:
            parts = self._parts()
            try:
                if not parts:
                    self._send(200, PAGE.encode("utf-8"), "text/html; charset=utf-8")
                    return
                if len(parts) == 2 and parts[0] == "executions" and parts[1].endswith(".html"):
                    page = console.trace_page(parts[1][: -len(".html")])
                    if page is None:
                        self._json(404, {"message": "no such execution"})
                    else:
                        self._send(200, page.encode("utf-8"), "text/html; charset=utf-8")
                    return
                if parts[0] != "api":
                    self._json(404, {"message": "Not Found"})
                    return
                route, rest = parts[1:2], parts[2:]
                body: Any
                if route == ["executions"] and not rest:
                    body = {"executions": console.executions()}
                elif route == ["executions"] and len(rest) == 1:
                    body = console.execution(rest[0])
                elif route == ["breakers"] and not rest:
                    body = {"breakers": console.breakers()}
                elif route == ["connections"] and not rest:
                    body = console.connections()
                elif route == ["outbox"] and not rest:
                    body = {"items": console.outbox()}
                elif route == ["metrics"] and not rest:
                    body = {"metrics": console.metrics()}
                elif route == ["logs"] and len(rest) <= 1:
                    body = console.logs(rest[0] if rest else None)
                else:
                    body = None
                if body is None:
                    self._json(404, {"message": "Not Found"})
                else:
                    self._json(200, body)
            except Exception as exc:  # noqa: BLE001 - the page shows the error and keeps polling
                self._json(500, {"message": f"{type(exc).__name__}: {exc}"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self._parts()
            if len(parts) == 4 and parts[:2] == ["api", "breakers"] and parts[3] in ("reset", "force-open"):
                try:
                    self._json(200, console.breaker_action(parts[2], parts[3]))
                except Exception as exc:  # noqa: BLE001
                    self._json(500, {"message": f"{type(exc).__name__}: {exc}"})
            else:
                self._json(404, {"message": "Not Found"})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


_CSS = """
:root{--ok:#1d8102;--bad:#d13212;--warn:#b7791f;--run:#0073bb;--line:#d5dbdb;--muted:#687078}
*{box-sizing:border-box}body{margin:0;font:13px/1.4 system-ui,sans-serif;color:#16191f;background:#f2f3f3}
header{background:#232f3e;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:baseline}
header h1{font-size:16px;margin:0}header small{color:#aab7b8}
nav{display:flex;gap:4px;padding:8px 16px 0}
nav button{border:1px solid var(--line);border-bottom:none;background:#fafafa;padding:6px 12px;cursor:pointer}
nav button[aria-selected=true]{background:#fff;font-weight:600}
section.tab{background:#fff;margin:0 16px 16px;padding:12px;border:1px solid var(--line)}
section.tab[hidden]{display:none}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);
vertical-align:top}th{background:#fafafa;font-weight:600}tr.pick{cursor:pointer}tr.pick:hover,tr.picked{background:#f1faff}
td pre,pre{margin:0;white-space:pre-wrap;word-break:break-all;max-height:12em;overflow:auto;font-size:12px}
.status{font-weight:600}.SUCCEEDED,.CLOSED{color:var(--ok)}.FAILED,.OPEN,.TIMED_OUT,.ABORTED{color:var(--bad)}
.RUNNING,.HALF_OPEN{color:var(--run)}
#execution iframe{width:100%;height:560px;border:1px solid var(--line)}
h2{font-size:14px;margin:12px 0 6px}.muted{color:var(--muted)}.error{color:var(--bad)}
#logs select{margin-bottom:8px}
"""

_JS = r"""
"use strict";
const $ = (s) => document.querySelector(s);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v); else node.setAttribute(k, String(v));
  }
  for (const child of children) node.append(child instanceof Node ? child : text(child));
  return node;
};
const text = (value) => document.createTextNode(
  value === undefined || value === null ? "" : typeof value === "string" ? value : JSON.stringify(value));
const pre = (value) => el("pre", {}, typeof value === "string" ? value : JSON.stringify(value, null, 1));
const table = (columns, rows, rowAttrs) => el("table", {},
  el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
  el("tbody", {}, ...rows.map((r, i) => el("tr", rowAttrs ? rowAttrs(i) : {}, ...r.map((cell) =>
    el("td", {}, cell instanceof Node ? cell : text(cell)))))));
const status = (s) => el("span", {class: "status " + s}, s);
async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.message || response.status);
  return body;
}
// The newest execution is shown until one is clicked; the page then stays on that one.
let picked = null, pickedStatus = null, following = true, logFunction = null;

async function executions() {
  const {executions} = await api("/api/executions");
  $("#executions-count").textContent = String(executions.length);
  const list = $("#executions-list");
  list.replaceChildren(table(["Name", "State machine", "Status", "Started", "Stopped", "Error"],
    executions.map((e) => [e.name, e.machine, status(e.status), e.start, e.stop || "", e.error || ""]),
    (i) => ({class: "pick" + (executions[i].name === picked ? " picked" : ""), "data-execution": executions[i].name,
             "data-status": executions[i].status,
             onclick: () => { following = false; pick(executions[i].name); }})));
  if (following && executions.length && executions[0].name !== picked) await pick(executions[0].name);
  else if (picked !== null) {
    const now = executions.find((e) => e.name === picked);
    if (now && (now.status === "RUNNING" || now.status !== pickedStatus)) await pick(picked);
  }
}

let picks = 0;
async function pick(name) {
  const ticket = ++picks;
  const e = await api("/api/executions/" + encodeURIComponent(name));
  // A later pick (a click while a poll was following the newest run) wins, whichever answer lands last.
  if (ticket !== picks) return;
  const changed = picked !== name || pickedStatus !== e.status;
  picked = name; pickedStatus = e.status;
  $("#execution-title").replaceChildren(text(e.machine + " · " + e.name + " · "), status(e.status));
  if (changed || e.status === "RUNNING") {
    $("#trace").src = "/executions/" + encodeURIComponent(name) + ".html";
  }
  $("#events").replaceChildren(table(["#", "Type", "At (s)", "Details"],
    e.events.map((v) => [String(v.id), v.type, String(v.at), v.details ? pre(v.details) : ""])));
  $("#iterations").replaceChildren(e.iterations.length
    ? table(["Iteration", "State", "Status", "Attempts", "Error"],
        e.iterations.map((r) => [r.iteration, r.name, status(r.status), String(r.attempts), r.error || ""]))
    : el("p", {class: "muted"}, "No Map iterations."));
  for (const row of document.querySelectorAll("#executions-list tr.pick"))
    row.classList.toggle("picked", row.dataset.execution === name);
}

async function breakers() {
  const {breakers} = await api("/api/breakers");
  const act = (name, action) => async () => {
    await api("/api/breakers/" + encodeURIComponent(name) + "/" + action, {method: "POST"});
    await breakers();
  };
  $("#breakers-list").replaceChildren(breakers.length ? table(
    ["Breaker", "State", "Calls", "Failures", "Rate", "Opened", "Next attempt", ""],
    breakers.map((b) => [b.name, el("span", {class: "status " + b.state, "data-state": b.state},
        b.state + (b.forced ? " (forced)" : "")), String(b.calls), String(b.failures),
      Math.round(b.failureRate * 100) + "%", b.openedAt || "", b.nextAttemptAt || "",
      el("span", {}, el("button", {class: "reset", "data-breaker": b.name, onclick: act(b.name, "reset")}, "Reset"),
        " ", el("button", {class: "force-open", "data-breaker": b.name, onclick: act(b.name, "force-open")},
        "Force open"))]),
    (i) => ({"data-breaker": breakers[i].name}))
    : el("p", {class: "muted"}, "No breaker has a record yet."));
}

async function connections() {
  const {registry, table: items} = await api("/api/connections");
  $("#connections-list").replaceChildren(
    el("h2", {}, "Gateway registry"),
    table(["Connection", "Open", "Source IP", "Frames sent"],
      registry.map((c) => [c.connectionId, c.open ? "open" : "closed", c.sourceIp, String(c.frames)])),
    el("h2", {}, "Connections table"),
    table(["Item"], items.map((item) => [pre(item)])));
}

async function outbox() {
  const {items} = await api("/api/outbox");
  $("#outbox-list").replaceChildren(items.length ? table(["Item"], items.map((item) => [pre(item)]))
    : el("p", {class: "muted"}, "The Outbox is empty."));
}

async function metrics() {
  const {metrics} = await api("/api/metrics");
  $("#metrics-list").replaceChildren(metrics.length ? table(["Function", "Namespace", "Dimensions", "Metrics"],
    metrics.slice(-100).reverse().map((m) => [m.function, m.namespace || "", pre(m.dimensions),
      pre(Object.entries(m.metrics).map(([k, v]) => k + " = " + JSON.stringify(v.value) + " " + (v.unit || ""))
        .join("\n"))]))
    : el("p", {class: "muted"}, "No EMF metrics yet."));
}

async function logs() {
  const {functions} = await api("/api/logs");
  const select = $("#log-function");
  const names = Object.keys(functions);
  if (select.options.length !== names.length) {
    select.replaceChildren(...names.map((n) => el("option", {value: n}, n)));
    if (logFunction) select.value = logFunction;
  }
  for (const option of select.options) option.textContent = option.value + " (" + functions[option.value] + ")";
  if (!logFunction) {  // first the function that logged most
    const busiest = names.reduce((a, b) => (functions[b] > functions[a] ? b : a), names[0]);
    if (busiest) select.value = busiest;
  }
  logFunction = select.value;
  if (!logFunction) return;
  const {lines} = await api("/api/logs/" + encodeURIComponent(logFunction));
  $("#log-lines").replaceChildren(pre(lines.slice(-200).map((l) => l.line).join("\n")));
}

const panels = {executions, breakers, connections, outbox, metrics, logs};
let current = "executions";
function show(name) {
  current = name;
  for (const b of document.querySelectorAll("nav button")) b.setAttribute("aria-selected", b.dataset.tab === name);
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== name;
  refresh();
}
let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try { await panels[current](); $("#problem").textContent = ""; }
  catch (error) { $("#problem").textContent = String(error); }
  finally { busy = false; }
}
for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.tab));
$("#log-function").addEventListener("change", (e) => { logFunction = e.target.value; refresh(); });
show(location.hash ? location.hash.slice(1) : "executions");
setInterval(refresh, 1000);
"""

PAGE = (
    "<!DOCTYPE html>\n"
    '<html lang="en"><head><meta charset="utf-8"><title>breakwater console</title>'
    f"<style>{_CSS}</style></head><body>"
    "<header><h1>breakwater console</h1><small>the live stack (bw up)</small>"
    '<small id="problem" class="error" role="status"></small></header>'
    "<nav>"
    + "".join(
        f'<button data-tab="{tab}">{label}</button>'
        for tab, label in (
            ("executions", "Executions"),
            ("breakers", "Breakers"),
            ("connections", "Connections"),
            ("outbox", "Outbox"),
            ("metrics", "Metrics"),
            ("logs", "Logs"),
        )
    )
    + "</nav>"
    '<section class="tab" id="executions"><h2>Executions (<span id="executions-count">0</span>)</h2>'
    '<div id="executions-list"></div><div id="execution"><h2 id="execution-title"></h2>'
    '<iframe id="trace" title="trace" sandbox="allow-scripts"></iframe>'
    '<h2>Map iterations</h2><div id="iterations"></div><h2>Events</h2><div id="events"></div></div></section>'
    '<section class="tab" id="breakers" hidden><div id="breakers-list"></div></section>'
    '<section class="tab" id="connections" hidden><div id="connections-list"></div></section>'
    '<section class="tab" id="outbox" hidden><div id="outbox-list"></div></section>'
    '<section class="tab" id="metrics" hidden><div id="metrics-list"></div></section>'
    '<section class="tab" id="logs" hidden><select id="log-function" aria-label="function"></select>'
    '<div id="log-lines"></div></section>'
    f"<script>{_JS}</script></body></html>\n"
)
