"""An execution as one self-contained HTML page, drawn like the Step Functions console.

The page has three parts: a header (execution, status, injected faults), the
state machine graph coloured by how each state ended, and the timeline table
with a Gantt-like bar per state visit. The graph is laid out here in Python
(layers top-down, Map/Parallel as boxes around their inner states) and drawn
as inline SVG, so the page needs no library, no CDN and no network: it is
meant to be attached to a CI run and opened years later.

Why not a layout library (issue 14 asked, for the console): dagre (@dagrejs/dagre
3.1, 49 KB minified) and elkjs (0.12, 1.6 MB bundled) lay out in JavaScript, so
the graph would only exist once a script ran (today the SVG is in the file and
``--dump-dom`` tests read it as sent); dagre's compound graphs (Map/Parallel as
boxes with edges into them) are its weak part (edges to a cluster node are not
supported: dagrejs/dagre-d3#152, open since 2015), elkjs would make a 90 KB page
2 MB, and graphviz is a system binary for CI and every user. The layered
layout below is ~250 lines with its tests; the console reuses this page as is.

The trace itself is embedded as JSON and read by a little inline script that
fills the details panel when a state is clicked. The script writes through
``textContent`` only, so nothing from the execution is ever parsed as markup.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from itertools import pairwise
from typing import Any

from local_runtime.trace import StateRow, Trace, _short

__all__ = ["render_html"]

# Sentinel keys for the console's Start/End markers and for the invisible
# waypoints of long edges; ASL state names cannot contain NUL, so no clash.
_START = "\x00start"
_END = "\x00end"
_DUMMY = "\x00dummy"

_NODE_HEIGHT = 46.0
_NODE_MIN_WIDTH = 150.0
_NODE_MAX_WIDTH = 290.0
_CHAR_WIDTH = 7.4  # 13px sans-serif, generous so names never overflow their box
_NAME_LIMIT = 36
_TERMINAL_WIDTH = 84.0
_TERMINAL_HEIGHT = 34.0
_GAP_X = 36.0
_GAP_Y = 50.0
_CONTAINER_PAD = 18.0
_CONTAINER_HEADER = 34.0
_BACK_LANE = 14.0
_MARGIN = 24.0

# Which visit decides a state's colour when it ran several times (Map
# iterations, loops): the worst one, as the console does.
_SEVERITY = {
    "notrun": -1,
    "succeeded": 0,
    "running": 1,
    "retried": 2,
    "caught": 3,
    "aborted": 4,
    "timedout": 5,
    "timed_out": 5,
    "failed": 6,
}

_CONTAINERS = ("Map", "Parallel")
_TERMINAL_TYPES = ("Succeed", "Fail")


@dataclass
class _Node:
    key: str
    kind: str  # "state", "start", "end" or "dummy"
    width: float
    height: float
    state: dict[str, Any] = field(default_factory=dict)
    inner: list[_Block] = field(default_factory=list)
    layer: int = 0
    x: float = 0.0
    y: float = 0.0

    @property
    def centre(self) -> float:
        return self.x + self.width / 2


@dataclass
class _Edge:
    source: str
    target: str
    kind: str  # "next", "choice", "default", "catch", "start" or "end"
    label: str
    back: bool = False
    chain: list[str] = field(default_factory=list)
    lane: float = 0.0


@dataclass
class _Block:
    nodes: dict[str, _Node]
    edges: list[_Edge]
    width: float = 0.0
    height: float = 0.0


# -- graph ---------------------------------------------------------------------------


def _transitions(state: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """Every way out of a state: (target, kind, tooltip)."""
    out: list[tuple[str, str, str]] = []
    if isinstance(state.get("Next"), str):
        out.append((state["Next"], "next", ""))
    for rule in state.get("Choices") or []:
        if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
            out.append((rule["Next"], "choice", _condition(rule)))
    if isinstance(state.get("Default"), str):
        out.append((state["Default"], "default", "Default"))
    for catcher in state.get("Catch") or []:
        if isinstance(catcher, dict) and isinstance(catcher.get("Next"), str):
            errors = catcher.get("ErrorEquals") or []
            out.append((catcher["Next"], "catch", "Catch " + ", ".join(str(e) for e in errors)))
    return out


def _condition(rule: Mapping[str, Any]) -> str:
    if "Condition" in rule:
        return str(rule["Condition"])
    operators = [
        f"{key} {json.dumps(value, default=str)}"
        for key, value in rule.items()
        if key not in ("Variable", "Next", "Comment", "Assign", "Output")
    ]
    text = " ".join([str(rule.get("Variable", "")), *operators]).strip()
    return text if len(text) <= 120 else text[:119] + "…"


def _is_terminal(state: Mapping[str, Any]) -> bool:
    return bool(state.get("End")) or state.get("Type") in _TERMINAL_TYPES


def _inner_machines(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sub-machines a Map (ItemProcessor, or the older Iterator) or a Parallel (Branches) runs."""
    if state.get("Type") == "Map":
        processor = state.get("ItemProcessor") or state.get("Iterator")
        return [processor] if isinstance(processor, dict) else []
    if state.get("Type") == "Parallel":
        return [b for b in state.get("Branches") or [] if isinstance(b, dict)]
    return []


def _state_width(name: str) -> float:
    shown = min(len(name), _NAME_LIMIT)
    return max(_NODE_MIN_WIDTH, min(_NODE_MAX_WIDTH, shown * _CHAR_WIDTH + 44))


def _layout(machine: Mapping[str, Any], *, top: bool) -> _Block:
    """Lay one (sub-)state machine out in layers, top-down.

    Layers start as the BFS depth from StartAt and are then pushed down so
    every state sits below all the states that lead to it (longest path over
    the forward edges): a join then lands under both of its branches instead
    of beside one of them. Edges that loop back are routed up the right side.
    """
    states: dict[str, dict[str, Any]] = {
        str(k): v for k, v in (machine.get("States") or {}).items() if isinstance(v, dict)
    }
    start_at = machine.get("StartAt")
    nodes: dict[str, _Node] = {}
    for name, state in states.items():
        inner = [_layout(sub, top=False) for sub in _inner_machines(state)]
        if inner:
            width = sum(b.width for b in inner) + _GAP_X * (len(inner) - 1) + 2 * _CONTAINER_PAD
            width = max(width, _state_width(name) + 60)
            height = max(b.height for b in inner) + _CONTAINER_HEADER + _CONTAINER_PAD
            nodes[name] = _Node(name, "state", width, height, state, inner)
        else:
            nodes[name] = _Node(name, "state", _state_width(name), _NODE_HEIGHT, state)

    edges: list[_Edge] = []
    seen: set[tuple[str, str, str]] = set()
    for name, state in states.items():
        for target, kind, label in _transitions(state):
            # Two Choice rules into the same state draw as one arrow, like the console.
            dedupe = (name, target, "catch" if kind == "catch" else "flow")
            if target in nodes and dedupe not in seen:
                seen.add(dedupe)
                edges.append(_Edge(name, target, kind, label))

    order = _bfs_order(states, start_at)
    roots = [start_at] if isinstance(start_at, str) and start_at in nodes else []
    if top:
        nodes[_START] = _Node(_START, "start", _TERMINAL_WIDTH, _TERMINAL_HEIGHT)
        if roots:
            edges.insert(0, _Edge(_START, roots[0], "start", ""))
        roots = [_START]
        order.insert(0, _START)
        terminals = [name for name in order if name in states and _is_terminal(states[name])]
        if terminals:
            nodes[_END] = _Node(_END, "end", _TERMINAL_WIDTH, _TERMINAL_HEIGHT)
            edges.extend(_Edge(name, _END, "end", "") for name in terminals)
            order.append(_END)

    _mark_back_edges(order, roots, edges)
    _assign_layers(order, roots, nodes, edges)
    layers = _insert_dummies(nodes, edges, order)
    _order_layers(layers, edges, nodes)
    return _place(layers, nodes, edges)


def _bfs_order(states: Mapping[str, Any], start_at: Any) -> list[str]:
    """States in BFS order from StartAt; unreachable ones follow in definition order."""
    order: list[str] = []
    seen: set[str] = set()
    for root in [start_at, *states]:
        if not isinstance(root, str) or root not in states or root in seen:
            continue
        queue = deque([root])
        seen.add(root)
        while queue:
            name = queue.popleft()
            order.append(name)
            for target, _, _ in _transitions(states[name]):
                if target in states and target not in seen:
                    seen.add(target)
                    queue.append(target)
    return order


def _successors(edges: list[_Edge], *, forward_only: bool) -> dict[str, list[_Edge]]:
    out: dict[str, list[_Edge]] = {}
    for edge in edges:
        if not (forward_only and edge.back):
            out.setdefault(edge.source, []).append(edge)
    return out


def _mark_back_edges(order: list[str], roots: list[str], edges: list[_Edge]) -> None:
    """An edge into a state still on the DFS stack closes a loop: it is drawn going back up."""
    succ = _successors(edges, forward_only=False)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in [*roots, *order]:
        if root in state:
            continue
        state[root] = 1
        stack: list[tuple[str, Iterator[_Edge]]] = [(root, iter(succ.get(root, [])))]
        while stack:
            name, children = stack[-1]
            edge = next(children, None)
            if edge is None:
                state[name] = 2
                stack.pop()
            elif state.get(edge.target) == 1:
                edge.back = True
            elif edge.target not in state:
                state[edge.target] = 1
                stack.append((edge.target, iter(succ.get(edge.target, []))))


def _assign_layers(order: list[str], roots: list[str], nodes: dict[str, _Node], edges: list[_Edge]) -> None:
    forward = _successors(edges, forward_only=True)
    depth: dict[str, int] = {}
    queue = deque((root, 0) for root in roots)
    while queue:
        name, d = queue.popleft()
        if name in depth:
            continue
        depth[name] = d
        queue.extend((edge.target, d + 1) for edge in forward.get(name, []))
    deepest = max(depth.values(), default=-1)
    for name in order:
        if name not in depth:  # unreachable: parked below everything else
            deepest += 1
            depth[name] = deepest
    indegree = dict.fromkeys(order, 0)
    for edge in edges:
        if not edge.back:
            indegree[edge.target] += 1
    ready = deque(name for name in order if indegree[name] == 0)
    while ready:
        name = ready.popleft()
        for edge in forward.get(name, []):
            depth[edge.target] = max(depth[edge.target], depth[name] + 1)
            indegree[edge.target] -= 1
            if indegree[edge.target] == 0:
                ready.append(edge.target)
    if _END in nodes:
        depth[_END] = max(d for name, d in depth.items() if name != _END) + 1
    for name in order:
        nodes[name].layer = depth[name]


def _insert_dummies(nodes: dict[str, _Node], edges: list[_Edge], order: list[str]) -> list[list[str]]:
    """Give long edges a waypoint per layer they cross, so they are routed around states, not through them."""
    layers: list[list[str]] = [[] for _ in range(max((n.layer for n in nodes.values()), default=-1) + 1)]
    for name in order:
        layers[nodes[name].layer].append(name)
    for index, edge in enumerate(edges):
        edge.chain = [edge.source, edge.target]
        if edge.back:
            continue
        first, last = nodes[edge.source].layer, nodes[edge.target].layer
        waypoints = []
        for layer in range(first + 1, last):
            key = f"{_DUMMY}{index}:{layer}"
            nodes[key] = _Node(key, "dummy", 0.0, 0.0, layer=layer)
            layers[layer].append(key)
            waypoints.append(key)
        edge.chain = [edge.source, *waypoints, edge.target]
    return layers


def _segments(edges: list[_Edge]) -> Iterator[tuple[str, str]]:
    for edge in edges:
        if not edge.back:
            yield from pairwise(edge.chain)


def _order_layers(layers: list[list[str]], edges: list[_Edge], nodes: dict[str, _Node]) -> None:
    """A few barycentre sweeps: each state moves towards the average position of its neighbours."""
    up: dict[str, list[str]] = {}
    down: dict[str, list[str]] = {}
    for a, b in _segments(edges):
        down.setdefault(a, []).append(b)
        up.setdefault(b, []).append(a)

    def sweep(indices: range, neighbours: dict[str, list[str]], reference: int) -> None:
        for i in indices:
            position = {name: p for p, name in enumerate(layers[i + reference])}
            current = {name: p for p, name in enumerate(layers[i])}

            def weight(name: str, position: dict[str, int] = position, current: dict[str, int] = current) -> float:
                linked = [position[n] for n in neighbours.get(name, []) if n in position]
                return sum(linked) / len(linked) if linked else float(current[name])

            layers[i].sort(key=weight)

    for _ in range(2):
        sweep(range(1, len(layers)), up, -1)
        sweep(range(len(layers) - 2, -1, -1), down, 1)
    sweep(range(1, len(layers)), up, -1)


def _place(layers: list[list[str]], nodes: dict[str, _Node], edges: list[_Edge]) -> _Block:
    up: dict[str, list[str]] = {}
    for a, b in _segments(edges):
        up.setdefault(b, []).append(a)
    y = 0.0
    for layer in layers:
        height = max((nodes[n].height for n in layer), default=0.0)
        for name in layer:
            node = nodes[name]
            # Waypoints span their whole layer so the edge runs straight through it.
            node.height = height if node.kind == "dummy" else node.height
            node.y = y + (height - node.height) / 2
        y += height + _GAP_Y
    for index, layer in enumerate(layers):
        wanted: list[float | None] = []
        for name in layer:
            parents = [nodes[p].centre for p in up.get(name, [])] if index else []
            wanted.append(sum(parents) / len(parents) if parents else None)
        right = -float("inf")
        for name, centre in zip(layer, wanted, strict=True):
            node = nodes[name]
            gap = _GAP_X / 2 if node.kind == "dummy" else _GAP_X
            if centre is not None:
                node.x = max(centre - node.width / 2, right)
            else:  # nothing above it to line up with: next free slot
                node.x = right if right > -float("inf") else 0.0
            right = node.x + node.width + gap
        # Pushing right to avoid overlaps drifts the layer; shift it back so it is balanced under its parents.
        drift = [nodes[n].centre - c for n, c in zip(layer, wanted, strict=True) if c is not None]
        shift = sum(drift) / len(drift) if drift else 0.0
        for name in layer:
            nodes[name].x -= shift
    left = min((n.x for n in nodes.values()), default=0.0)
    for node in nodes.values():
        node.x -= left
    width = max((n.x + n.width for n in nodes.values()), default=0.0)
    height = max(y - _GAP_Y, 0.0)
    for lane, edge in enumerate(e for e in edges if e.back):
        edge.lane = width + _BACK_LANE * (lane + 1)
    if any(e.back for e in edges):
        width = max(e.lane for e in edges) + _BACK_LANE
    return _Block(nodes, edges, width, height)


# -- SVG -----------------------------------------------------------------------------


def _visits(trace: Trace) -> dict[str, list[StateRow]]:
    visits: dict[str, list[StateRow]] = {}
    for row in trace.rows:
        visits.setdefault(row.name, []).append(row)
    return visits


def _worst(rows: list[StateRow]) -> str:
    if not rows:
        return "notrun"
    return max((row.status for row in rows), key=lambda s: _SEVERITY.get(s, 1))


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _edge_path(edge: _Edge, nodes: dict[str, _Node], dx: float, dy: float) -> str:
    source, target = nodes[edge.source], nodes[edge.target]
    if edge.back:
        # Leave low and come back in high, so a state looping onto itself still shows a visible loop.
        sx, sy = source.x + source.width + dx, source.y + source.height * 0.65 + dy
        tx, ty = target.x + target.width + dx, target.y + target.height * 0.35 + dy
        lane = edge.lane + dx
        return f"M{_fmt(sx)},{_fmt(sy)} H{_fmt(lane)} V{_fmt(ty)} H{_fmt(tx + 2)}"
    points: list[tuple[float, float]] = [(source.centre + dx, source.y + source.height + dy)]
    for key in edge.chain[1:-1]:
        waypoint = nodes[key]
        points += [(waypoint.centre + dx, waypoint.y + dy), (waypoint.centre + dx, waypoint.y + waypoint.height + dy)]
    points.append((target.centre + dx, target.y + dy - 2))
    path = [f"M{_fmt(points[0][0])},{_fmt(points[0][1])}"]
    for i, ((x0, y0), (x1, y1)) in enumerate(pairwise(points)):
        if i % 2 == 1:  # through a waypoint's layer: straight down
            path.append(f"L{_fmt(x1)},{_fmt(y1)}")
        else:
            bend = (y1 - y0) / 2
            path.append(f"C{_fmt(x0)},{_fmt(y0 + bend)} {_fmt(x1)},{_fmt(y1 - bend)} {_fmt(x1)},{_fmt(y1)}")
    return " ".join(path)


def _svg_block(block: _Block, dx: float, dy: float, visits: dict[str, list[StateRow]], out: list[str]) -> None:
    for edge in block.edges:
        dashed = " dashed" if edge.kind == "catch" else ""
        tooltip = f"<title>{escape(edge.label)}</title>" if edge.label else ""
        out.append(
            f'<path class="edge {edge.kind}{dashed}" d="{_edge_path(edge, block.nodes, dx, dy)}" '
            f'marker-end="url(#arrow)">{tooltip}</path>'
        )
    for node in block.nodes.values():
        x, y = node.x + dx, node.y + dy
        if node.kind in ("start", "end"):
            label = "Start" if node.kind == "start" else "End"
            out.append(
                f'<g class="terminal"><rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(node.width)}" '
                f'height="{_fmt(node.height)}" rx="{_fmt(node.height / 2)}"/>'
                f'<text x="{_fmt(x + node.width / 2)}" y="{_fmt(y + node.height / 2 + 4)}">{label}</text></g>'
            )
        elif node.kind == "state":
            _svg_state(node, x, y, visits.get(node.key, []), out)
            inner_x = x + (node.width - sum(b.width for b in node.inner) - _GAP_X * (len(node.inner) - 1)) / 2
            for index, inner in enumerate(node.inner):
                if index:
                    # Parallel branches, separated like the console's columns.
                    sep = inner_x - _GAP_X / 2
                    out.append(
                        f'<line class="branch-sep" x1="{_fmt(sep)}" y1="{_fmt(y + _CONTAINER_HEADER)}" '
                        f'x2="{_fmt(sep)}" y2="{_fmt(y + node.height - _CONTAINER_PAD / 2)}"/>'
                    )
                _svg_block(inner, inner_x, y + _CONTAINER_HEADER, visits, out)
                inner_x += inner.width + _GAP_X


def _svg_state(node: _Node, x: float, y: float, rows: list[StateRow], out: list[str]) -> None:
    status = _worst(rows)
    kind = str(node.state.get("Type", "?"))
    name = node.key
    shown = name if len(name) <= _NAME_LIMIT else name[: _NAME_LIMIT - 1] + "…"
    visits = f"&#215;{len(rows)}" if len(rows) > 1 else ""
    tip = f"{name} ({kind}): {status}" + (f", {len(rows)} visits" if visits else "")
    container = " container" if node.inner else ""
    out.append(
        f'<g class="state{container}" data-state="{escape(name)}" data-status="{escape(status)}" '
        f'data-type="{escape(kind)}" data-visits="{len(rows)}" tabindex="0" role="button">'
        f"<title>{escape(tip)}</title>"
        f'<rect class="box" x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(node.width)}" height="{_fmt(node.height)}" '
        f'rx="{6 if node.inner else 4}"/>'
    )
    if node.inner:
        badge = f'<tspan class="count" dx="6">{visits}</tspan>' if visits else ""
        out.append(
            f'<rect class="header" x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(node.width)}" '
            f'height="{_fmt(_CONTAINER_HEADER - 8)}" rx="6"/>'
            f'<text class="name" x="{_fmt(x + 12)}" y="{_fmt(y + 18)}">{escape(shown)}'
            f'<tspan class="kind" dx="8">{escape(kind)}</tspan>{badge}</text>'
        )
    else:
        cx = x + node.width / 2
        badge = f'<tspan class="count"> · {visits}</tspan>' if visits else ""
        out.append(
            f'<text class="name" x="{_fmt(cx)}" y="{_fmt(y + 20)}">{escape(shown)}</text>'
            f'<text class="kind" x="{_fmt(cx)}" y="{_fmt(y + 36)}">{escape(kind)}{badge}</text>'
        )
    out.append("</g>")


def _svg(trace: Trace, visits: dict[str, list[StateRow]]) -> str:
    block = _layout(trace.definition, top=True)
    width, height = block.width + 2 * _MARGIN, block.height + 2 * _MARGIN
    out = [
        f'<svg id="graph-svg" width="{_fmt(width)}" height="{_fmt(height)}" '
        f'viewBox="0 0 {_fmt(width)} {_fmt(height)}" role="img" aria-label="state machine graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>'
    ]
    _svg_block(block, _MARGIN, _MARGIN, visits, out)
    out.append("</svg>")
    return "".join(out)


def _state_definitions(machine: Mapping[str, Any], into: dict[str, Any]) -> dict[str, Any]:
    for name, state in (machine.get("States") or {}).items():
        if isinstance(state, dict):
            into[str(name)] = state
            for inner in _inner_machines(state):
                _state_definitions(inner, into)
    return into


# -- header and timeline ----------------------------------------------------------------


def _fault_time(at: Any) -> str:
    if isinstance(at, int | float):
        return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return str(at)


def _header(trace: Trace) -> str:
    parts = [
        '<header><div class="title">',
        f'<h1>{escape(trace.state_machine)} <span class="exec">{escape(trace.name)}</span></h1>',
        f'<span class="badge" data-status="{escape(trace.status.lower())}">{escape(trace.status)}</span>',
        f'<span class="meta">{trace.duration:.3f}s virtual · {len(trace.rows)} state visits</span></div>',
    ]
    if trace.error or trace.cause:
        parts.append(
            f'<div class="exec-error"><b>{escape(trace.error or "")}</b> '
            f'<span title="{escape(trace.cause or "")}">{escape(_short(trace.cause, 300))}</span></div>'
        )
    if trace.faults:
        parts.append(
            f'<details class="faults" open><summary>{len(trace.faults)} injected fault(s)</summary><table>'
            "<thead><tr><th>At (virtual)</th><th>Rule</th><th>Service</th><th>Operation</th>"
            "<th>Resource</th><th>Error</th><th>Latency</th></tr></thead><tbody>"
        )
        for fault in trace.faults:
            latency = fault.get("latency")
            cells = [
                _fault_time(fault.get("at")),
                fault.get("rule"),
                fault.get("service"),
                fault.get("operation"),
                fault.get("resource"),
                fault.get("error"),
                f"{latency:.3f}s" if isinstance(latency, int | float) else latency,
            ]
            parts.append("<tr>" + "".join(f"<td>{escape(str(c or ''))}</td>" for c in cells) + "</tr>")
        parts.append("</tbody></table></details>")
    else:
        parts.append('<div class="faults none">no faults injected</div>')
    parts.append("</header>")
    return "".join(parts)


def _timeline(trace: Trace) -> str:
    total = trace.duration or max((row.start + row.duration for row in trace.rows), default=0.0)
    parts = [
        '<table id="timeline"><thead><tr><th>#</th><th>State</th><th>Type</th><th>Start</th><th>Duration</th>'
        "<th>Status</th><th>Attempts</th><th>Retry delays</th><th>Error / cause</th>"
        f'<th class="gantt-head">0 &#8211; {total:.3f}s</th></tr></thead><tbody>'
    ]
    for index, row in enumerate(trace.rows):
        # With nothing to scale by (a run that took no virtual time) every bar is a sliver at the start.
        left = row.start / total * 100 if total else 0.0
        width = max(row.duration / total * 100 if total else 0.0, 0.4)
        ticks = "".join(
            f'<i class="tick" style="left:{(f["at"] - row.start) / row.duration * 100 if row.duration else 0:.2f}%" '
            f'title="{escape(str(f.get("error")))} at +{f["at"]:.3f}s"></i>'
            for f in row.failures
            if isinstance(f.get("at"), int | float)
        )
        iteration = f' <span class="iter">{escape(row.iteration)}</span>' if row.iteration else ""
        problem = ""
        if row.error:
            problem = f"<b>{escape(row.error)}</b>"
            if row.cause:
                problem += f' <span title="{escape(row.cause)}">{escape(_short(row.cause))}</span>'
        delays = ", ".join(f"{d:.2f}s" for d in row.retry_delays)
        iteration_attr = f' data-iteration="{escape(row.iteration)}"' if row.iteration else ""
        parts.append(
            f'<tr data-state="{escape(row.name)}" data-row="{index}" data-status="{escape(row.status)}"'
            f'{iteration_attr}><td class="num">{index + 1}</td>'
            f'<td class="name">{escape(row.name)}{iteration}</td><td>{escape(row.type)}</td>'
            f'<td class="num">+{row.start:.3f}s</td><td class="num">{row.duration:.3f}s</td>'
            f'<td><span class="badge" data-status="{escape(row.status)}">{escape(row.status)}</span></td>'
            f'<td class="num">{row.attempts or ""}</td><td>{escape(delays)}</td><td class="problem">{problem}</td>'
            f'<td class="gantt"><div class="track"><div class="bar" data-status="{escape(row.status)}" '
            f'style="left:{left:.2f}%;width:{min(width, 100 - left):.2f}%">{ticks}</div></div></td></tr>'
        )
    parts.append("</tbody></table>")
    return "".join(parts)


def _data_block(trace: Trace) -> str:
    data = {"trace": trace.to_json(), "states": _state_definitions(trace.definition, {})}
    text = json.dumps(data, default=str, ensure_ascii=False)
    # '<' only occurs inside JSON strings, where both escapes are valid JSON; they stop the
    # browser from ending the script element (or opening a comment) in the middle of the data.
    text = text.replace("</", "<\\/").replace("<!--", "\\u003c!--")
    return f'<script type="application/json" id="trace-data">{text}</script>'


def render_html(trace: Trace) -> str:
    """The execution as a single HTML page: graph, details panel, timeline; no external resources."""
    trace = trace.redacted()
    visits = _visits(trace)
    legend = "".join(
        f'<span class="key" data-status="{s}"><i></i>{label}</span>'
        for s, label in (
            ("succeeded", "succeeded"),
            ("retried", "retried"),
            ("caught", "caught"),
            ("failed", "failed"),
            ("running", "running"),
            ("notrun", "not run"),
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(trace.state_machine)} · {escape(trace.name)} · {escape(trace.status)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"{_header(trace)}"
        '<main><section id="graph"><div class="legend">'
        f'{legend}<span class="key catch"><i></i>catch</span></div>'
        f"{_svg(trace, visits)}</section>"
        '<aside id="details" aria-live="polite"><p class="hint">Select a state to see its input and output.</p>'
        "</aside></main>"
        f'<section id="timeline-section"><h2>Timeline</h2>{_timeline(trace)}</section>'
        f"{_data_block(trace)}"
        f"<script>{_JS}</script></body></html>\n"
    )


_CSS = """
:root { --ok:#1d8102; --ok-bg:#e9f6e2; --warn:#d97706; --warn-bg:#fdebd3; --retry:#b58900; --retry-bg:#fff6cf;
  --bad:#d13212; --bad-bg:#fde4e0; --run:#0972d3; --run-bg:#e2f0fc; --idle:#879596; --idle-bg:#f2f3f3;
  --ink:#16191f; --muted:#5f6b7a; --line:#d5dbdb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif; color:var(--ink);
  background:#fafafa; }
header { padding:16px 24px 10px; background:#fff; border-bottom:1px solid var(--line); }
header .title { display:flex; align-items:baseline; gap:12px; flex-wrap:wrap; }
h1 { font-size:20px; margin:0; }
h1 .exec { font-weight:400; color:var(--muted); font-size:15px; }
h2 { font-size:16px; margin:0 0 8px; }
.meta { color:var(--muted); }
.exec-error { margin-top:6px; color:var(--bad); }
.faults { margin-top:8px; color:var(--muted); }
.faults summary { cursor:pointer; color:var(--ink); }
.faults table { margin-top:4px; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
  background:var(--idle-bg); color:var(--idle); border:1px solid currentColor; }
[data-status="succeeded"].badge { color:var(--ok); background:var(--ok-bg); }
[data-status="retried"].badge { color:var(--retry); background:var(--retry-bg); }
[data-status="caught"].badge { color:var(--warn); background:var(--warn-bg); }
[data-status="failed"].badge, [data-status="timedout"].badge, [data-status="timed_out"].badge,
[data-status="aborted"].badge { color:var(--bad); background:var(--bad-bg); }
[data-status="running"].badge { color:var(--run); background:var(--run-bg); }
main { display:flex; gap:16px; padding:16px 24px; align-items:flex-start; }
#graph { flex:1 1 auto; min-width:0; background:#fff; border:1px solid var(--line); border-radius:8px;
  overflow:auto; }
.legend { display:flex; gap:14px; padding:8px 12px; font-size:12px; color:var(--muted);
  border-bottom:1px solid var(--line); flex-wrap:wrap; }
.legend .key i { display:inline-block; width:12px; height:12px; border-radius:3px; margin-right:5px;
  vertical-align:-2px; border:2px solid var(--idle); background:var(--idle-bg); }
.legend [data-status="succeeded"] i { border-color:var(--ok); background:var(--ok-bg); }
.legend [data-status="retried"] i { border-color:var(--retry); background:var(--retry-bg); }
.legend [data-status="caught"] i { border-color:var(--warn); background:var(--warn-bg); }
.legend [data-status="failed"] i { border-color:var(--bad); background:var(--bad-bg); }
.legend [data-status="running"] i { border-color:var(--run); background:var(--run-bg); }
.legend .catch i { border:none; border-top:2px dashed var(--muted); border-radius:0; height:0; width:22px;
  background:none; vertical-align:3px; }
#graph-svg { display:block; margin:0 auto; }
svg text { font-size:13px; text-anchor:middle; fill:var(--ink); pointer-events:none; }
svg .kind { font-size:11px; fill:var(--muted); }
svg .count { font-size:11px; font-weight:700; fill:var(--ink); }
.edge { fill:none; stroke:#7d8998; stroke-width:1.5; }
.edge.dashed { stroke-dasharray:6 4; }
marker path { fill:#7d8998; }
.terminal rect { fill:#fff; stroke:var(--ink); stroke-width:1.5; }
.terminal text { font-weight:600; }
.state { cursor:pointer; outline:none; }
.state .box { fill:var(--idle-bg); stroke:var(--idle); stroke-width:2; }
.state.container .box { fill:#fff !important; stroke-dasharray:5 3; }
.state.container .name { text-anchor:start; }
.state .header { fill:var(--idle-bg); stroke:none; }
.state .name { font-weight:600; }
.state[data-status="succeeded"] .box, .state[data-status="succeeded"] .header { fill:var(--ok-bg); stroke:var(--ok); }
.state[data-status="retried"] .box, .state[data-status="retried"] .header { fill:var(--retry-bg); stroke:var(--retry); }
.state[data-status="caught"] .box, .state[data-status="caught"] .header { fill:var(--warn-bg); stroke:var(--warn); }
.state[data-status="failed"] .box, .state[data-status="failed"] .header,
.state[data-status="timedout"] .box, .state[data-status="timed_out"] .box,
.state[data-status="aborted"] .box { fill:var(--bad-bg); stroke:var(--bad); }
.state[data-status="running"] .box, .state[data-status="running"] .header { fill:var(--run-bg); stroke:var(--run); }
.state[data-status="notrun"] .name { fill:var(--muted); font-weight:400; }
.state.container .header { stroke:none; }
.state:hover .box, .state:focus .box { stroke-width:3; }
.state.selected > .box { stroke-width:3.5; filter:drop-shadow(0 0 5px rgba(9,114,211,.85)); }
.branch-sep { stroke:var(--line); stroke-dasharray:3 3; }
#details { flex:0 0 400px; position:sticky; top:8px; max-height:90vh; overflow:auto; background:#fff;
  border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
#details .hint { color:var(--muted); }
#details h3 { margin:0 0 6px; font-size:16px; word-break:break-word; }
#details h4 { margin:10px 0 4px; font-size:13px; color:var(--muted); text-transform:uppercase; letter-spacing:.03em; }
#details .visit { border-top:1px solid var(--line); padding-top:8px; margin-top:8px; }
#details dl { display:grid; grid-template-columns:max-content 1fr; gap:2px 10px; margin:0; }
#details dt { color:var(--muted); }
#details dd { margin:0; word-break:break-word; }
pre { margin:0; padding:8px; background:#f4f5f6; border-radius:4px; font-size:12px; overflow:auto;
  max-height:260px; white-space:pre-wrap; word-break:break-word; }
#timeline-section { padding:0 24px 24px; }
table { border-collapse:collapse; width:100%; background:#fff; font-size:13px; }
th, td { border-bottom:1px solid var(--line); padding:5px 8px; text-align:left; vertical-align:top; }
th { background:#f4f5f6; font-weight:600; white-space:nowrap; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
#timeline tbody tr { cursor:pointer; }
#timeline tbody tr:hover { background:#f7fafd; }
#timeline tbody tr.selected { background:var(--run-bg); }
.iter { color:var(--muted); font-size:12px; }
#timeline td.name { min-width:170px; }
.problem b { color:var(--bad); font-weight:600; }
.problem span { color:var(--muted); }
td.gantt { width:28%; min-width:180px; }
.track { position:relative; height:14px; background:#f4f5f6; border-radius:3px; }
.bar { position:absolute; top:0; bottom:0; border-radius:3px; background:var(--idle); min-width:3px; }
.bar[data-status="succeeded"] { background:var(--ok); }
.bar[data-status="retried"] { background:var(--retry); }
.bar[data-status="caught"] { background:var(--warn); }
.bar[data-status="failed"], .bar[data-status="timedout"], .bar[data-status="aborted"] { background:var(--bad); }
.bar[data-status="running"] { background:var(--run); }
.tick { position:absolute; top:-2px; bottom:-2px; width:2px; margin-left:-1px; background:var(--bad); }
"""

# Written against the DOM with textContent only: the trace is data, never markup.
_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("trace-data").textContent);
  var rows = data.trace.rows;
  var details = document.getElementById("details");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function pretty(value) {
    if (typeof value === "string") {
      try { return JSON.stringify(JSON.parse(value), null, 2); } catch (e) { return value; }
    }
    return JSON.stringify(value, null, 2);
  }
  function section(parent, title, value) {
    if (value === undefined || value === null) { return; }
    parent.appendChild(el("h4", null, title));
    parent.appendChild(el("pre", null, pretty(value)));
  }
  function fact(list, term, value) {
    if (value === undefined || value === null || value === "") { return; }
    list.appendChild(el("dt", null, term));
    list.appendChild(el("dd", null, value));
  }
  function visit(parent, row, index) {
    var box = el("div", "visit");
    box.dataset.row = String(index);
    var head = el("div");
    var badge = el("span", "badge", row.status);
    badge.dataset.status = row.status;
    head.appendChild(badge);
    head.appendChild(document.createTextNode(" #" + (index + 1) + (row.iteration ? " · " + row.iteration : "")));
    box.appendChild(head);
    var facts = el("dl");
    fact(facts, "Start", "+" + row.start.toFixed(3) + "s");
    fact(facts, "Duration", row.duration.toFixed(3) + "s");
    fact(facts, "Attempts", row.attempts || null);
    fact(facts, "Retry delays", row.retryDelays.length ? row.retryDelays.map(function (d) {
      return d.toFixed(2) + "s";
    }).join(", ") : null);
    fact(facts, "Error", row.error);
    box.appendChild(facts);
    section(box, "Cause", row.cause);
    section(box, "Input", row.input);
    section(box, "Output", row.output);
    if (row.failures && row.failures.length > 1) { section(box, "Failed attempts", row.failures); }
    parent.appendChild(box);
  }
  function select(name, only) {
    var picked = [];
    rows.forEach(function (row, index) {
      if (row.name === name && (only === undefined || only === index)) { picked.push([row, index]); }
    });
    details.textContent = "";
    details.dataset.selected = name;
    var definition = data.states[name] || {};
    details.appendChild(el("h3", null, name));
    var kind = el("div", "meta", (definition.Type || "") + (picked.length ? " · " + picked.length + " visit(s)"
      : " · did not run"));
    details.appendChild(kind);
    picked.forEach(function (pair) { visit(details, pair[0], pair[1]); });
    section(details, "Definition", definition);
    Array.prototype.forEach.call(document.querySelectorAll(".state"), function (node) {
      node.classList.toggle("selected", node.getAttribute("data-state") === name);
    });
    Array.prototype.forEach.call(document.querySelectorAll("#timeline tbody tr"), function (tr) {
      var same = tr.getAttribute("data-state") === name;
      tr.classList.toggle("selected", same && (only === undefined || Number(tr.dataset.row) === only));
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll(".state"), function (node) {
    var name = node.getAttribute("data-state");
    node.addEventListener("click", function () { select(name); });
    node.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(name); }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("#timeline tbody tr"), function (tr) {
    tr.addEventListener("click", function () { select(tr.getAttribute("data-state"), Number(tr.dataset.row)); });
  });
  if (rows.length) { select(rows[0].name); }
  document.body.dataset.ready = "true";
})();
"""
