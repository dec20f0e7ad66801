"""The local server behind ``scope view``: the page, and the window on screen as JSON.

It listens on 127.0.0.1 only, on a port the system picks, and answers only
requests whose path begins with a random token made for this session (the URL
it prints holds it): another user of the machine, or a web page in the user's
browser, cannot read the recording through it.  It sends no CORS headers, so
no other origin can read its answers; it refuses a ``Host`` other than its
own address (DNS rebinding); every page carries a Content-Security-Policy
that lets the page fetch from the server and nothing else.  It stops on
Ctrl-C, or once nobody has asked it anything for ``idle_seconds``.  For
``scope view`` it closes the recording whenever the page has been quiet for a
moment, so the page left open does not stop ``scope run`` storing runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb
from scope.query.api import Recording
from scope.query.ids import PROCESS_SHIFT, parse_call_id, short_id
from scope.query.results import Call
from scope.query.viewer import aggregates
from scope.query.viewer import flame as flames
from scope.query.viewer import tasks as task_lanes
from scope.query.viewer import window as windows

from scope.errors import QueryError, ScopeError

#: what a page of the viewer may do: its own scripts and styles, fetch from here
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: headers on every answer
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: seconds without a request after which the server stops
IDLE_SECONDS = 30 * 60
#: seconds between findings of a live run's span
LIVE_REFRESH = 1.0
#: seconds without a request under way after which the file is let go (DuckDB lets
#: no program write it while it is open): the next request opens it again
LET_GO_AFTER = 2.0

Answer = tuple[int, str, bytes]


class ViewServer:
    """Serves one run of one recording to the browser, until stopped or idle."""

    def __init__(
        self,
        recording: Recording,
        run: int,
        idle_seconds: float = IDLE_SECONDS,
        let_go: bool = False,
    ) -> None:
        """Serve ``run`` of ``recording``.  ``let_go``: the recording is the server's
        to close while no request is under way, and to open again (see LET_GO_AFTER)."""
        self.recording = recording
        self.let_go = let_go
        self.run = run
        self.token = secrets.token_urlsafe(24)
        self.idle_seconds = idle_seconds
        #: guards the first finding of the run's span
        self._lock = threading.Lock()
        #: guards the counting of the overview (seconds for a big run: apart from
        #: _lock, which every request takes, so that the others go on meanwhile)
        self._overview_lock = threading.Lock()
        #: each request thread's own cursor: requests run side by side, so a slow
        #: question (top functions of 10M calls) does not hold up a zoom step
        self._local = threading.local()
        self._last_request = time.monotonic()
        self._frame: windows.Frame | None = None
        self._overview: windows.Overview | None = None
        #: the whole run's flame graph, made once (a finished run's), and its lock
        self._whole_flame: flames.Flame | None = None
        self._flame_lock = threading.Lock()
        #: the run's tasks, and the span they were found for (a live run's grow)
        self._tasks: tuple[windows.Frame, task_lanes.Tasks] | None = None
        self._tasks_lock = threading.Lock()
        #: whether the run has suspensions to draw as gaps (None: not asked yet)
        self._gaps: bool | None = None
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        #: stopping waits for the requests under way, once their queries are interrupted
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        #: when the span was last found, for a run still growing
        self._frame_at = 0.0
        self._live = False
        #: requests under way, when the last ended, and whether the file is let go
        #: (all three under _cursors_lock)
        self._under_way = 0
        self._last_done = time.monotonic()
        self._let_go = False
        #: set as the server stops: no request begins a long query after it
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        """The port the system gave the server."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The page's address, token included: what the user opens."""
        return f"http://127.0.0.1:{self.port}/{self.token}/"

    def serve(self) -> str:
        """Serve until ``stop``, Ctrl-C or idleness; returns why it stopped."""
        why = ["stopped"]
        watcher = threading.Thread(target=self._watch_idle, args=(why,), daemon=True)
        watcher.start()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            why[0] = "interrupted"
        finally:
            self._stopping.set()
            with self._cursors_lock:
                cursors = list(self._cursors)
            for cursor in cursors:
                interrupt = getattr(cursor, "interrupt", None)  # a service's has none
                with contextlib.suppress(duckdb.Error):
                    if interrupt is not None:
                        interrupt()
            self._httpd.server_close()
            for cursor in cursors:
                with contextlib.suppress(duckdb.Error):
                    cursor.close()
        return why[0]

    def stop(self) -> None:
        """Stop serving (from another thread)."""
        self._stopping.set()
        self._httpd.shutdown()

    def _watch_idle(self, why: list[str]) -> None:
        while True:
            self._let_go_if_quiet()
            idle = time.monotonic() - self._last_request
            if idle >= self.idle_seconds:
                why[0] = f"idle for {int(self.idle_seconds)} s"
                self._httpd.shutdown()
                return
            time.sleep(min(LET_GO_AFTER / 2, self.idle_seconds - idle))

    def _let_go_if_quiet(self) -> None:
        """Close the file once no request has been under way for LET_GO_AFTER: the
        page may stay open for long, and meanwhile ``scope run`` must store runs."""
        with self._cursors_lock:
            quiet = time.monotonic() - self._last_done >= LET_GO_AFTER
            if self.let_go and quiet and not self._under_way and not self._let_go:
                with contextlib.suppress(duckdb.Error, OSError):
                    self.recording.con.close()
                self._let_go = True

    def _begin(self) -> None:
        """Count a request under way, opening the file again if it was let go."""
        with self._cursors_lock:
            if self._let_go:
                self.recording.con = Recording(self.recording.path).con
                self._let_go = False
            self._under_way += 1

    def _end(self) -> None:
        with self._cursors_lock:
            self._under_way -= 1
            self._last_done = time.monotonic()

    def answer(self, method: str, target: str, host: str | None) -> Answer:
        """The status, content type and body for one request."""
        if host != f"127.0.0.1:{self.port}":
            return _error(HTTPStatus.MISDIRECTED_REQUEST, "not this server's address")
        if method != "GET":
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET")
        parts = urlsplit(target)
        prefix = f"/{self.token}/"
        # As bytes: compare_digest refuses str that is not ASCII (a path may be anything).
        if not secrets.compare_digest(parts.path[: len(prefix)].encode(), prefix.encode()):
            return _error(HTTPStatus.FORBIDDEN, "no or wrong token")
        self._last_request = time.monotonic()
        route = parts.path[len(prefix) :]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if route in _STATIC:
            name, kind = _STATIC[route]
            return HTTPStatus.OK, kind, (STATIC / name).read_bytes()
        handler = _ROUTES.get(route)
        if handler is None:
            return _error(HTTPStatus.NOT_FOUND, f"no such thing: {route}")
        try:
            self._begin()
        except ScopeError as exc:  # held by a program writing it, or gone
            return _error(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
        try:
            body = handler(self, query)
        except ValueError as exc:
            return _error(HTTPStatus.BAD_REQUEST, str(exc))
        except QueryError as exc:
            return _error(HTTPStatus.NOT_FOUND, str(exc))
        except duckdb.Error as exc:  # interrupted as the server stops, or a broken file
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")
        finally:
            self._release()
            self._end()
        return HTTPStatus.OK, "application/json", json.dumps(body).encode()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the recording.  A run being recorded is read through its
        recording service, which leaves a moment after the run ends: then the file
        is opened again, directly."""
        with self._cursors_lock:
            try:
                cursor = self.recording.con.cursor()
            except OSError:  # the service's socket is gone
                with contextlib.suppress(OSError):
                    self.recording.con.close()
                self.recording.con = Recording(self.recording.path).con
                cursor = self.recording.con.cursor()
            self._cursors.append(cursor)
            return cursor

    def _release(self) -> None:
        """Close this request's cursor: a thread serves one request, so a cursor kept
        per thread would pile up, one per zoom step, until the server stops."""
        mine: Recording | None = getattr(self._local, "recording", None)
        if mine is None:
            return
        del self._local.recording
        with self._cursors_lock:
            self._cursors = [c for c in self._cursors if c is not mine.con]
        with contextlib.suppress(duckdb.Error):
            mine.con.close()

    @property
    def rec(self) -> Recording:
        """The recording, through this request thread's own DuckDB cursor."""
        mine: Recording | None = getattr(self._local, "recording", None)
        if mine is None:
            mine = copy.copy(self.recording)
            mine.con = self._cursor()
            mine.why_empty = {}
            self._local.recording = mine
        return mine

    def overview(self) -> windows.Overview | None:
        """The run's calls counted per bucket, made once: zoomed-out windows use it
        (None while the run is being recorded: it would be out of date at once)."""
        span = self.frame()
        if self.live():
            return None
        with self._overview_lock:
            if self._stopping.is_set():  # the count of the one before was interrupted
                raise duckdb.InterruptException("the server is stopping")
            if self._overview is None:
                self._overview = windows.overview(self.rec.con, self.run, span, self.tasks())
            return self._overview

    def tasks(self) -> task_lanes.Tasks:
        """The run's tasks and which calls are theirs, found once (again for each new
        span of a run being recorded)."""
        span = self.frame()
        with self._tasks_lock:
            found = self._tasks
            if found is None or found[0] is not span:
                found = (span, task_lanes.tasks(self.rec.con, self.run))
                self._tasks = found
            return found[1]

    def gaps(self) -> bool:
        """Whether the run has rows in ``suspension`` (a file of schema version 8 or
        older has no such table), asked once (always again for a live run)."""
        if self._gaps is None or self.live():
            row = self.rec.con.execute(
                """SELECT count(*) FROM duckdb_tables() WHERE table_name = 'suspension'"""
            ).fetchone()
            has = bool(row and row[0]) and bool(
                self.rec.con.execute(
                    "SELECT 1 FROM suspension WHERE run = ? LIMIT 1", [self.run]
                ).fetchall()
            )
            self._gaps = has
        return self._gaps

    def frame(self) -> windows.Frame:
        """The run's span, found once (a finished run's does not change; a run still
        being recorded has it found again every second)."""
        with self._lock:
            stale = self._frame is None or (
                self._live and time.monotonic() - self._frame_at > LIVE_REFRESH
            )
            if stale:
                self._live = self._still_recording()
                self._frame = windows.frame(self.rec.con, self.run)
                self._frame_at = time.monotonic()
            assert self._frame is not None
            return self._frame

    def live(self) -> bool:
        """Whether the run was still being recorded when its span was last found."""
        self.frame()
        return self._live

    def _still_recording(self) -> bool:
        row = self.rec.con.execute("SELECT status FROM run WHERE id = ?", [self.run]).fetchone()
        return bool(row and row[0] == "running")

    def _run_info(self, query: dict[str, str]) -> dict[str, Any]:
        con = self.rec.con
        span = self.frame()
        names = con.execute(
            "SELECT id, module || '.' || qualname FROM function WHERE run = ?", [self.run]
        ).fetchall()
        argv = con.execute("SELECT argv FROM run WHERE id = ?", [self.run]).fetchone()
        return {
            "run": self.run,
            "argv": list(argv[0] or []) if argv else [],
            "span_ns": span.span_ns,
            "live": self.live(),
            "lanes": [asdict(lane) for lane in windows.lanes(con, self.run, self.tasks())],
            "functions": dict(names),
        }

    def _window(self, query: dict[str, str]) -> dict[str, Any]:
        since, until = _integer(query, "since"), _integer(query, "until")
        pixel = _integer(query, "pixel")
        span = self.frame()
        # Zoomed out (a pixel no finer than the overview's buckets): merged from it.
        zoomed_out = self.overview() if pixel >= span.span_ns // windows.OVERVIEW_BUCKETS else None
        found = windows.window(
            self.rec.con,
            self.run,
            since,
            until,
            pixel,
            span,
            zoomed_out,
            self.tasks(),
            self.gaps(),
        )
        # Its fields as they are: the lists are the answer's own (``asdict`` would copy
        # every row, as long as the window's query on a session of many blocks).
        answer = {f.name: getattr(found, f.name) for f in fields(found)}
        for call in answer["calls"]:
            call[5] = _page_id(call[5])
        for gap in answer["gaps"]:
            gap[0] = _page_id(gap[0])
        return answer

    def _call(self, query: dict[str, str]) -> dict[str, Any]:
        call_id = parse_call_id(query.get("id", ""))
        call = self.rec.call(call_id, self.run)
        path = self.rec.path_to(call_id, self.run)
        details = asdict(call)
        details.pop("children", None)
        details["short_id"] = short_id(call_id)
        details["start"] = call.start_ns - self.frame().start_ns
        con = self.rec.con
        row = con.execute(
            """SELECT suspended_ns, suspensions, end_id,
                      (SELECT name FROM thread t WHERE t.run = c.run AND t.id = c.thread),
                      (SELECT pid FROM process p WHERE p.run = c.run
                         AND coalesce(p.number, 0) = c.id >> $shift)
               FROM call c WHERE run = $run AND id = $id""",
            {"run": self.run, "id": call_id, "shift": PROCESS_SHIFT},
        ).fetchone()
        if row:
            suspended, suspensions, end_id, thread_name, pid = row
            details.update(
                suspended_ns=max(suspended or 0, 0),
                active_ns=max(call.duration_ns - max(suspended or 0, 0), -1),
                suspensions=suspensions,
                thread_name=thread_name,
                pid=pid,
                callees=max((end_id or call_id) - call_id, 0),
            )
        task = self.tasks().of(call_id)
        details["task"] = (
            None
            if task is None
            else {"id": _page_id(task.id), "short_id": short_id(task.id), "name": task.name}
        )
        details["values"] = [
            {"role": role, "name": name, "type": kind, "value": value}
            for role, name, kind, value in con.execute(
                """SELECT role, name, type, value FROM value WHERE run = ? AND call = ?
                   ORDER BY CASE role WHEN 'argument' THEN 0 WHEN 'attribute' THEN 1
                                      WHEN 'return' THEN 2 ELSE 3 END, position""",
                [self.run, call_id],
            ).fetchall()
        ]
        origin = self.frame().start_ns
        details["path"] = [
            {
                "id": _page_id(p.id),
                "short_id": short_id(p.id),
                "name": f"{p.module}.{p.qualname}",
                "start": p.start_ns - origin,
                "duration_ns": p.duration_ns,
            }
            for p in path
        ]
        return details

    def _search(self, query: dict[str, str]) -> dict[str, Any]:
        return {"functions": self._matching(query.get("pattern", ""))}

    def _matching(self, pattern: str) -> list[int]:
        """The run's functions whose ``module.qualname`` the regular expression finds.

        DuckDB matches (RE2: no backreferences or lookarounds, but time linear in
        the name): Python's ``re`` can backtrack for ages on a pattern such as
        ``(\\w|\\w)*Z``, holding the GIL, so every request and Ctrl-C would wait."""
        try:
            rows = self.rec.con.execute(
                """SELECT id FROM function
                   WHERE run = $run AND regexp_matches(module || '.' || qualname, $pattern)
                   ORDER BY id""",
                {"run": self.run, "pattern": pattern},
            ).fetchall()
        except duckdb.InvalidInputException as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return [int(number) for (number,) in rows]

    def _find(self, query: dict[str, str]) -> dict[str, Any]:
        """The first call of a matching function that begins after ``after`` (or the
        last that begins before it, ``direction=back``): for stepping through matches."""
        functions = self._matching(query.get("pattern", ""))
        after = _integer(query, "after")
        back = query.get("direction") == "back"
        origin = self.frame().start_ns
        row = self.rec.con.execute(
            f"""SELECT id, start_ns - $origin, duration_ns FROM call
                WHERE run = $run AND function IN (SELECT unnest($functions::BIGINT[]))
                  AND start_ns {"<" if back else ">"} $at
                ORDER BY start_ns {"DESC" if back else ""}, id LIMIT 1""",
            {"run": self.run, "functions": functions, "at": origin + after, "origin": origin},
        ).fetchone()
        return {"call": [_page_id(row[0]), *row[1:]] if row else None}

    def _top(self, query: dict[str, str]) -> dict[str, Any]:
        """The functions with the most self time (``by=total``: total time) in the run,
        or, given ``since`` and ``until``, in that window (calls clipped to it)."""
        by = query.get("by", "self")
        if by not in ("self", "total"):
            raise ValueError("by must be self or total")
        window = _window_of(query)
        if window is not None:
            origin, span = self.frame().start_ns, self.frame()
            since, until = window
            top = aggregates.window_top(
                self.rec.con, self.run, origin + since, origin + until, span.end_ns, by
            )
            return {"functions": top, "since": since, "until": until}
        stats = self.rec.function_stats(self.run, limit=50, by=by)
        return {"functions": [asdict(s) for s in stats]}

    def _flame(self, query: dict[str, str]) -> dict[str, Any]:
        """The flame graph of the run, of the window ``since``..``until``, or of the
        calls under the call ``within``; ``by=self``: sized by self time (bottom up)."""
        by = query.get("by", "total")
        if by not in ("self", "total"):
            raise ValueError("by must be self or total")
        window = _window_of(query)
        span = self.frame()
        within = parse_call_id(query["within"]) if query.get("within") else None
        if within is not None:
            self.rec.call(within, self.run)  # a clear 404 for a call not in the run
            graph = flames.flame(self.rec.con, self.run, span.start_ns, span.end_ns, within=within)
        elif window is not None and (window[0] > 0 or window[1] < span.span_ns):
            graph = flames.flame(self.rec.con, self.run, span.start_ns, span.end_ns, *window)
        else:  # the whole run, or a window that holds all of it
            graph = self._whole_run_flame()
        answer = asdict(graph)
        if by == "self":
            answer["nodes"] = flames.bottom_up(graph.nodes)
        answer.update(by=by, within=None if within is None else _page_id(within))
        return answer

    def _whole_run_flame(self) -> flames.Flame:
        """The whole run's flame graph: made once for a finished run (seconds for
        ten million calls), every time for a run still being recorded."""
        span = self.frame()
        if self.live():
            return flames.flame(self.rec.con, self.run, span.start_ns, span.end_ns)
        with self._flame_lock:
            if self._stopping.is_set():
                raise duckdb.InterruptException("the server is stopping")
            if self._whole_flame is None:
                self._whole_flame = flames.flame(self.rec.con, self.run, span.start_ns, span.end_ns)
            return self._whole_flame

    def _children(self, query: dict[str, str]) -> dict[str, Any]:
        """A page of the calls a call made, in call order, and how many there are."""
        call_id = parse_call_id(query.get("id", ""))
        offset, limit = _count(query, "offset", 0), _count(query, "limit", 50)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.rec.call(call_id, self.run)  # a clear 404 for a call not in the run
        count, page = aggregates.children(self.rec.con, self.run, call_id, offset, limit)
        origin = self.frame().start_ns
        return {
            "count": count,
            "offset": offset,
            "limit": min(limit, aggregates.MAX_PAGE),
            "children": [
                [_page_id(child), function, start - origin, duration, outcome]
                for child, function, start, duration, outcome in page
            ],
        }

    def _exceptions(self, query: dict[str, str]) -> dict[str, Any]:
        """Exceptions grouped as ``scope exceptions`` groups them, newest group first."""
        kinds = self.rec.exception_kinds(self.run, limit=100)
        origin = self.frame().start_ns
        return {
            "kinds": [
                {
                    "count": kind.count,
                    "shape": kind.shape,
                    "type": kind.example.type,
                    "summary": kind.example.summary,
                    "raised_in": _call_brief(kind.example.raised_in, origin),
                    "caught_in": _call_brief(kind.example.caught_in, origin),
                    "uncaught": kind.example.uncaught,
                }
                for kind in kinds
            ]
        }

    def _tests(self, query: dict[str, str]) -> dict[str, Any]:
        """The run's tests (pytest --scope), failing ones first, each with its phases'
        root calls to zoom to."""
        tests = self.rec.tests(self.run)
        roots = [p.call for t in tests for p in t.phases if p.call is not None]
        starts = dict(
            (call_id, (start - self.frame().start_ns, duration))
            for call_id, start, duration in self.rec.con.execute(
                """SELECT id, start_ns, duration_ns FROM call
                   WHERE run = ? AND id IN (SELECT unnest(?::BIGINT[]))""",
                [self.run, roots],
            ).fetchall()
        )
        listed = sorted(tests, key=lambda t: not t.failed)  # stable: in run order otherwise
        return {
            "tests": [
                {
                    "nodeid": t.nodeid,
                    "outcome": t.outcome,
                    "failed": t.failed,
                    "duration_ns": t.duration_ns,
                    "phases": [
                        {
                            "phase": p.phase,
                            "outcome": p.outcome,
                            "call": None if p.call is None else _page_id(p.call),
                            "start": starts.get(p.call, (None, None))[0],
                            "duration_ns": p.duration_ns,
                            "message": p.message,
                        }
                        for p in t.phases
                    ],
                }
                for t in listed
            ]
        }


def _call_brief(call: Call | None, origin: int) -> dict[str, Any] | None:
    """What the page shows of a call in a list, and how to zoom to it."""
    if call is None:
        return None
    return {
        "id": _page_id(call.id),
        "short_id": short_id(call.id),
        "name": f"{call.module}.{call.qualname}",
        "start": call.start_ns - origin,
        "duration_ns": call.duration_ns,
    }


_ROUTES: dict[str, Callable[[ViewServer, dict[str, str]], dict[str, Any]]] = {
    "api/run": ViewServer._run_info,
    "api/window": ViewServer._window,
    "api/call": ViewServer._call,
    "api/search": ViewServer._search,
    "api/find": ViewServer._find,
    "api/top": ViewServer._top,
    "api/exceptions": ViewServer._exceptions,
    "api/tests": ViewServer._tests,
    "api/flame": ViewServer._flame,
    "api/children": ViewServer._children,
}
#: the page's own files: route -> file in STATIC, content type
STATIC = Path(__file__).resolve().parent / "static"
_STATIC = {
    "": ("index.html", "text/html; charset=utf-8"),
    "view.js": ("view.js", "text/javascript; charset=utf-8"),
    "aggregates.js": ("aggregates.js", "text/javascript; charset=utf-8"),
    "view.css": ("view.css", "text/css; charset=utf-8"),
}


def _page_id(call_id: int) -> int | str:
    """A call id as the page can send it back: a JavaScript number is exact only up
    to 2**53, and a call of the third process or later has a larger id (its
    process's number is its top bits), so such an id goes as a string."""
    return call_id if call_id < _JAVASCRIPT_EXACT else str(call_id)


#: the integers a JavaScript number holds exactly are those below this
_JAVASCRIPT_EXACT = 2**53


def _window_of(query: dict[str, str]) -> tuple[int, int] | None:
    """``since`` and ``until`` (ns since the run began) if the query names a window
    (both or neither), else None."""
    if "since" not in query and "until" not in query:
        return None
    since, until = _integer(query, "since"), _integer(query, "until")
    if since < 0 or until <= since:
        raise ValueError("a window needs 0 <= since < until")
    return since, until


def _count(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name, str(default))
    if not text.isdigit():
        raise ValueError(f"{name} must be a whole number")
    return int(text)


def _integer(query: dict[str, str], name: str) -> int:
    try:
        return int(query[name])
    except (KeyError, ValueError):
        raise ValueError(f"{name} must be a whole number of ns") from None


def _error(status: HTTPStatus, why: str) -> Answer:
    return status, "text/plain; charset=utf-8", f"{status.value} {why}\n".encode()


def _handler_for(server: ViewServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``server``."""

    class Handler(BaseHTTPRequestHandler):
        """Hands every request to the server's ``answer``."""

        server_version = "scope-view"
        sys_version = ""

        def _respond(self) -> None:
            # The page may go away (closed, or on to another window) meanwhile.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._answer()

        def _answer(self) -> None:
            status, kind, body = server.answer(self.command, self.path, self.headers.get("Host"))
            self.send_response(status)
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _respond

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the terminal shows the URL, not every request."""

    return Handler
