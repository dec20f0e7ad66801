"""``scope view``: one self-contained HTML file to look at a run in any browser.

The page holds its data as JSON and draws it with its own script (no network,
no library; a Content-Security-Policy forbids fetching anything): a timeline
per thread (a flame chart of the calls, nested as ``scope.query.export.stream``
draws them), the call tree (folded, collapsible), the exceptions with the
calls each went through, and the functions with the most self time.  Large
runs are cut to their first ``max_calls`` calls on the timeline and
``tree_calls`` in the tree; the page says so.
"""

from __future__ import annotations

import html
import json
import shlex
from dataclasses import asdict

from scope.query.api import Recording
from scope.query.export.stream import DrawnCall, functions, nested, run_info
from scope.query.results.calls import CallNode
from scope.query.view_page import PAGE

#: calls drawn on the timeline, and fetched for the tree, by default
MAX_CALLS = 20_000
TREE_CALLS = 2_000


def _tree_json(nodes: list[CallNode]) -> list[dict[str, object]]:
    """The tree as nested lists, built without recursion (trees can be very deep)."""
    out: list[dict[str, object]] = []
    pending: list[tuple[list[dict[str, object]], CallNode]] = [(out, n) for n in reversed(nodes)]
    while pending:
        siblings, node = pending.pop()
        children: list[dict[str, object]] = []
        siblings.append(
            {
                "id": node.id,
                "name": f"{node.module}.{node.qualname}",
                "ns": node.duration_ns,
                "outcome": node.outcome,
                "similar": node.similar,
                "similar_ns": node.similar_ns,
                "children": children,
            }
        )
        pending.extend((children, child) for child in reversed(node.children))
    return out


def page_data(
    recording: Recording, run: int, max_calls: int = MAX_CALLS, tree_calls: int = TREE_CALLS
) -> dict[str, object]:
    """Everything the page shows, as JSON-ready data."""
    con = recording.con
    info = run_info(con, run)
    names = functions(con, run)
    drawn: list[DrawnCall] = []
    for call in nested(con, info):
        if len(drawn) >= max_calls:
            break
        drawn.append(call)
    # The timeline spans the drawn calls, not the recorder's start-up and shutdown.
    first = min((c.start for c in drawn), default=0)
    last = max((c.end for c in drawn), default=first + 1)
    threads: dict[int, list[list[object]]] = {}
    for c in drawn:
        f = names.get(c.function)
        name = f"{f.module}.{f.qualname}" if f else f"<function {c.function}>"
        threads.setdefault(c.thread, []).append(
            [c.start - first, c.end - c.start, c.depth, name, c.id, c.outcome]
        )
    tree = recording.tree(run=run, limit=tree_calls)
    exceptions = recording.exceptions(run=run, limit=200)
    top = recording.function_stats(run, limit=30, by="self")
    return {
        "run": run,
        "argv": info.argv,
        "span_ns": max(last - first, 1),
        "calls": info.calls,
        "drawn": len(drawn),
        "threads": [
            {"id": slot, "name": info.threads.get(slot, f"thread {slot}"), "calls": calls}
            for slot, calls in sorted(threads.items())
        ],
        "tree": {"roots": _tree_json(tree.roots), "shown": tree.shown, "total": tree.total},
        "exceptions": [
            {
                "summary": e.summary or e.type,
                "left": [[n.id, f"{n.module}.{n.qualname}"] for n in e.left],
                "caught_in": [e.caught_in.id, f"{e.caught_in.module}.{e.caught_in.qualname}"]
                if e.caught_in
                else None,
                "uncaught": e.uncaught,
            }
            for e in exceptions
        ],
        "top": [asdict(s) for s in top],
    }


def render_page(data: dict[str, object]) -> str:
    """The HTML page showing ``data`` (from ``page_data``)."""
    # Inside <script>, "</" would end the element: JSON lets "<" be escaped.
    payload = json.dumps(data).replace("<", "\\u003c")
    title = html.escape(f"scope: run {data['run']} of {shlex.join(map(str, data['argv']))}")  # type: ignore[call-overload]
    return PAGE.replace("{{title}}", title).replace("{{data}}", payload)


def write_view(recording: Recording, run: int, path: str, max_calls: int = MAX_CALLS) -> int:
    """Write the page for ``run`` to ``path``; returns how many calls the timeline draws."""
    data = page_data(recording, run, max_calls)
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_page(data))
    drawn: int = data["drawn"]  # type: ignore[assignment]
    return drawn
