"""How VizTracer's viewer and speedscope fare on the runs ``scope view`` is measured on.

    python benchmarks/view_peers.py [--session PATH] [--ten-million PATH] [--out DIR]
                                    [--max-calls N,N] [--timeout S] [--memory-cap GB]

Exports both recordings of the viewer's benchmarks (``view_session.py``'s
pytest session of sqlparse's suite, ``query_speed.py``'s 10 million calls) with
``scope export --format chrome`` and ``--format speedscope``, whole and cut to
each ``--max-calls``, then opens each file as its viewer's user would, in
Debian's chromium (Playwright), once:

* VizTracer's ``vizviewer`` (the ``bench`` extra) on the chrome file: it reads the
  whole file in Python, then serves its bundled Perfetto UI, whose WebAssembly
  trace processor loads the file again.  Timed from the command's start until a
  track is drawn, or until an error dialog, its exit or ``--timeout``.
* speedscope (its npm package's static build, fetched with ``npm pack`` once into
  the cache) on the speedscope file, given as ``#profileURL=`` from a local HTTP
  server.  Timed from the page's load until the flame chart is drawn, or until an
  error, or ``--timeout``.

Requests to other hosts are blocked and counted: a viewer that needs the
internet shows it.  Each row gives the file's size, the export's time, the time
until drawn (or what failed), and the peak memory: the browser's processes'
proportional set sizes summed (sampled, as ``view_window.py`` counts them), and
vizviewer's own peak resident size.  vizviewer runs under an
address-space cap (``--memory-cap``), so a file too large for it fails instead of
exhausting the shared machine.  Exports are kept in ``--out`` and reused.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import http.server
import os
import resource
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.query_speed import BATCH, build
from benchmarks.view_session import session, stored_calls
from benchmarks.view_window import browser_memory, chromium, resident

SPEEDSCOPE = "speedscope@1.25.0"
#: where downloaded viewers are kept between runs (never in the repository)
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "scope-bench"
#: the Perfetto UI has drawn a track of the trace
PERFETTO_DRAWN = "document.querySelector('.pf-track__canvas') !== null"
PERFETTO_ERROR = "(document.querySelector('.pf-modal-dialog, .modal-dialog') || {}).innerText || ''"
SPEEDSCOPE_DRAWN = "document.title.endsWith(' - speedscope')"


@dataclass
class Outcome:
    """What opening one file in one viewer came to."""

    seconds: float | None  # until drawn; None when it failed
    browser: int  # peak resident bytes of the browser's processes
    server: int  # vizviewer's peak resident bytes (0 for speedscope)
    note: str  # why it failed, or what else was seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", metavar="PATH", help="view_session.py's recording")
    parser.add_argument("--ten-million", metavar="PATH", help="query_speed.py's recording")
    parser.add_argument("--calls", type=int, default=10_000_000, help="the synthetic run's size")
    parser.add_argument("--out", metavar="DIR", help="keep (and reuse) the exports here")
    parser.add_argument(
        "--max-calls", type=counts, default="100000,1000000", help="also cut to these (N,N)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds a viewer gets")
    parser.add_argument("--memory-cap", type=float, default=8, help="GB vizviewer may map")
    parser.add_argument("--skip-ten-million", action="store_true")
    args = parser.parse_args(argv)
    limits: list[int] = args.max_calls
    out = Path(args.out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    recordings = [("pytest session", session(args.session)[0])]
    if not args.skip_ten_million:
        path = args.ten_million or str(out / "ten-million.duckdb")
        if not os.path.exists(path):
            build(path, max(args.calls // BATCH, 1))
        recordings.append(("10M calls", path))
    vizviewer = shutil.which("vizviewer", path=os.path.dirname(sys.executable))
    release = speedscope_release()
    rows: list[PeerRow] = []
    for label, path in recordings:
        calls = stored_calls(path)
        for limit in [None, *(n for n in limits if n < calls)]:
            kept = limit or calls
            for fmt in ("chrome", "speedscope"):
                file = out / f"{Path(path).stem}-{kept}.{fmt}.json"
                seconds = export(path, fmt, limit, file, args.timeout * 4)
                if not file.exists():
                    rows.append(
                        (label, kept, fmt, None, seconds, "-", Outcome(None, 0, 0, "export failed"))
                    )
                    continue
                if fmt == "chrome":
                    viewer = "vizviewer"
                    if vizviewer is None:
                        outcome = Outcome(None, 0, 0, "not installed (pip install -e '.[bench]')")
                    else:
                        outcome = in_vizviewer(vizviewer, file, args.timeout, args.memory_cap)
                else:
                    viewer = "speedscope"
                    outcome = in_speedscope(release, file, args.timeout)
                rows.append((label, kept, fmt, file.stat().st_size, seconds, viewer, outcome))
                print(row_text(rows[-1]), flush=True)
    print()
    print(header())
    for row in rows:
        print(row_text(row))
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


def counts(text: str) -> list[int]:
    """``--max-calls``: positive whole numbers, comma-separated."""
    try:
        numbers = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        numbers = [0]
    if any(n < 1 for n in numbers):
        raise argparse.ArgumentTypeError(f"not a list of positive numbers: {text!r}")
    return numbers


def header() -> str:
    """The table's header."""
    return (
        f"{'run':<16}{'calls':>12}  {'file':<11}{'MB':>8}{'export s':>10}  {'viewer':<11}"
        f"{'drawn s':>9}{'browser MB':>12}{'server MB':>11}  note"
    )


#: a row of the table: run, calls exported, format, file bytes, export seconds, viewer, outcome
PeerRow = tuple[str, int, str, int | None, float | None, str, Outcome]


def row_text(row: PeerRow) -> str:
    """One line of the table."""
    label, kept, fmt, size, seconds, viewer, outcome = row
    mb = f"{size / 1e6:.0f}" if size is not None else "-"
    took = f"{seconds:.1f}" if seconds is not None else "-"
    drawn = f"{outcome.seconds:.1f}" if outcome.seconds is not None else "-"
    browser = f"{outcome.browser / 2**20:.0f}" if outcome.browser else "-"
    server = f"{outcome.server / 2**20:.0f}" if outcome.server else "-"
    return (
        f"{label:<16}{kept:>12,}  {fmt:<11}{mb:>8}{took:>10}  {viewer:<11}"
        f"{drawn:>9}{browser:>12}{server:>11}  {outcome.note}"
    )


def export(path: str, fmt: str, limit: int | None, file: Path, timeout: float) -> float | None:
    """``scope export`` into ``file`` (kept if there); its seconds, None if reused or failed."""
    if file.exists():
        return None
    partial = file.with_suffix(".partial")
    command = [sys.executable, "-m", "scope", "export", "--db", path, "--format", fmt]
    command += ["-o", str(partial)] + (["--max-calls", str(limit)] if limit else [])
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        return None
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        print(f"view_peers.py: export failed: {done.stderr[-500:]}", file=sys.stderr)
        return None
    partial.rename(file)
    return seconds


def speedscope_release() -> Path:
    """speedscope's static build, from its npm package (fetched once into the cache,
    under a lock, unpacked aside and moved in whole)."""
    folder = CACHE / SPEEDSCOPE
    if (folder / "index.html").exists():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("view_peers.py: speedscope is fetched with npm (apt-get install npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".speedscope.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "index.html").exists():
            return folder
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            subprocess.run(
                [npm, "pack", SPEEDSCOPE, "--pack-destination", scratch],
                check=True,
                capture_output=True,
                timeout=300,
            )
            (tarball,) = Path(scratch).glob("speedscope-*.tgz")
            with tarfile.open(tarball) as archive:
                archive.extractall(scratch, filter="data")
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(Path(scratch) / "package" / "dist" / "release", folder)
    return folder


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def browser_page() -> Iterator[tuple[Any, list[str], list[str]]]:
    """A fresh chromium page; the requests to other hosts it made (blocked), and the
    errors and dialogs it showed."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []
    errors: list[str] = []

    def route(request_route: Any) -> None:
        host = request_route.request.url.split("/")[2] if "://" in request_route.request.url else ""
        if host.split(":")[0] in ("127.0.0.1", "localhost", ""):
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 800})
            page.route("**/*", route)
            page.on("pageerror", lambda error: errors.append(str(error)[:120]))
            page.on("crash", lambda _: errors.append("the page crashed"))

            def dialog(shown: Any) -> None:
                errors.append(f"dialog: {shown.message[:120]}")
                shown.dismiss()

            page.on("dialog", dialog)
            yield page, outside, errors
        finally:
            browser.close()


def until(
    page: Any, drawn: str, failed: Callable[[], str], timeout: float, began: float
) -> tuple[float | None, int, str]:
    """Poll until ``drawn`` holds in the page (seconds since ``began``), or ``failed()``
    says why not, or ``timeout``; and the browser's peak resident bytes meanwhile."""
    peak = 0
    deadline = began + timeout
    while True:
        peak = max(peak, browser_memory()[1])
        why = failed()
        if why:
            return None, peak, why
        try:
            if page.evaluate(drawn):
                return time.perf_counter() - began, max(peak, browser_memory()[1]), ""
        except Exception as error:  # the page crashed or navigated away
            return None, peak, f"page: {str(error).splitlines()[0][:100]}"
        if time.perf_counter() > deadline:
            return None, peak, f"not drawn after {timeout:.0f} s"
        time.sleep(0.05)


def cap_memory(gigabytes: float) -> Callable[[], None]:
    """A pre-exec function limiting the child's address space."""
    limit = int(gigabytes * 2**30)
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def in_vizviewer(vizviewer: str, file: Path, timeout: float, memory_cap: float) -> Outcome:
    """Open the chrome file with ``vizviewer``, as its user would, in chromium."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            vizviewer,
            "--server_only",
            "--port",
            str(port),
            "--timeout",
            str(int(timeout)),
            str(file),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=cap_memory(memory_cap),
    )
    server_peak = 0
    try:
        while True:  # vizviewer parses the whole file before it listens
            server_peak = max(server_peak, resident(process.pid, "VmHWM"))
            if process.poll() is not None:
                said = (process.stdout.read() if process.stdout else b"").decode(errors="replace")
                last = said.strip().splitlines()[-1:] or [f"exit {process.returncode}"]
                return Outcome(None, 0, server_peak, f"vizviewer ended: {last[0][:100]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.perf_counter() - began > timeout:
                return Outcome(None, 0, server_peak, f"vizviewer not serving after {timeout:.0f} s")
            time.sleep(0.05)
        serving = time.perf_counter() - began
        with browser_page() as (page, outside, errors):
            page.goto(f"http://127.0.0.1:{port}/")

            def failed() -> str:
                if process.poll() is not None:
                    return "vizviewer ended"
                if errors:
                    return errors[0]
                dialog = page.evaluate(PERFETTO_ERROR)
                return " ".join(str(dialog).split())[:100] if dialog else ""

            left = max(timeout - (time.perf_counter() - began), 1)
            seconds, peak, why = until(page, PERFETTO_DRAWN, failed, left, began)
            server_peak = max(server_peak, resident(process.pid, "VmHWM"))
            note = why or f"serving after {serving:.1f} s"
            if outside:
                note += f"; asked {len(outside)} outside URL(s), blocked: {outside[0][:60]}"
            return Outcome(seconds, peak, server_peak, note)
    finally:
        process.kill()
        process.wait()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def in_speedscope(release: Path, file: Path, timeout: float) -> Outcome:
    """Open the speedscope file in speedscope's build, given as ``#profileURL=``."""
    with tempfile.TemporaryDirectory() as root:
        for entry in release.iterdir():
            (Path(root) / entry.name).symlink_to(entry)
        (Path(root) / "profile.json").symlink_to(file.resolve())
        handler = functools.partial(_Quiet, directory=root)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_address[1]
        try:
            with browser_page() as (page, outside, errors):
                began = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/index.html#profileURL=/profile.json")
                seconds, peak, why = until(
                    page, SPEEDSCOPE_DRAWN, lambda: errors[0] if errors else "", timeout, began
                )
                if seconds is not None:  # the title is set as the chart is laid out: one frame
                    page.evaluate("new Promise((r) => requestAnimationFrame(() => r(0)))")
                    seconds = time.perf_counter() - began
                note = why + (f"; asked {len(outside)} outside URL(s), blocked" if outside else "")
                return Outcome(seconds, peak, 0, note)
        finally:
            server.shutdown()
            thread.join(10)


if __name__ == "__main__":
    sys.exit(main())
