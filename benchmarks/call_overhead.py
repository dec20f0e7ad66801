"""What one recorded call costs, side by side with plain Python and the peers.

    python benchmarks/call_overhead.py [--calls N] [--repeat R]

Every variant calls ``def g(x): return x + 1`` (``g(x, y)`` for the two-argument
rows) N times from a plain loop, R times round-robin, and reports the best
time per call with the loop's own cost (measured the same way, calling
nothing) taken off, and its ratio to the plain call measured in the same run:

* plain: no recorder;
* scope at ``calls`` level, and at ``args`` level with two small arguments,
  with the writer thread draining the rings as in a real run (its sink
  discards the batches: storage has its own benchmark);
* the same two hot entry points bound through cffi's generated wrappers
  instead of the METH_FASTCALL functions scope uses (the design comparison);
* the body wrapped in ``enter; try/finally: exit`` (what scope did before its
  ``with`` block), which costs less but gives tracers, pdb and coverage.py a
  line event of its own on the way out (the design comparison);
* VizTracer (with and without argument logging) and cProfile, the peers.

The second table repeats the scope and cffi rows while another thread keeps
the GIL busy, which is where cffi's GIL release on every call costs most.
Ratios, not absolute times, are what to compare across machines.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from scope.capture import runtime
from scope.capture.pipeline import Pipeline
from scope.instrument.analyze import analyze_source
from scope.instrument.plan import PlanSettings, make_plan
from scope.instrument.rewrite import compile_instrumented

from scope import native

ONE_ARG = "def g(x):\n    return x + 1\n"
TWO_ARGS = "def g(x, y):\n    return x + y\n"
CFFI_SOURCE = """
def g(x):
    enter(ID)
    try:
        return x + 1
    finally:
        exit(ID, 0)
"""
TRY_FINALLY_SOURCE = """
def g(x):
    __scope_enter__(ID)
    try:
        return x + 1
    except:
        __scope_unwind__(ID)
        raise
    finally:
        __scope_exit__(ID)
"""
LOOP_SOURCE = """
from itertools import repeat

def loop_one(g, n):
    for _ in repeat(None, n):
        g(1)

def loop_two(g, n):
    for _ in repeat(None, n):
        g(1, 2)

def loop_empty(g, n):
    for _ in repeat(None, n):
        pass
"""


class DiscardingSink:
    """A pipeline sink that drops batches: measures capture, not storage."""

    def attach(self, batch: Any) -> None:
        """Nothing to prepare."""

    def write_batch(self, batch: Any) -> None:
        """Forget the batch."""


def compiled(source: str, level: str | None, extra: dict[str, Any] | None = None) -> Callable:
    """``g`` compiled plainly (level None) or instrumented at ``level``."""
    namespace: dict[str, Any] = dict(extra or {})
    if level is None:
        code = compile(source, "bench_g.py", "exec")
    else:
        plan = make_plan("bench_g", "bench_g.py", analyze_source(source), PlanSettings(level))
        code = compile_instrumented(source, "bench_g.py", plan)
    exec(code, namespace)
    return namespace["g"]


LOOPS: dict[str, Any] = {}
exec(compile(LOOP_SOURCE, "bench_loop.py", "exec"), LOOPS)


class Variant:
    """One row: how to start and stop its recorder around a loop."""

    def __init__(
        self,
        name: str,
        func: Callable,
        two_args: bool = False,
        start: Callable[[], Any] = lambda: None,
        stop: Callable[[Any], None] = lambda state: None,
        loop: str | None = None,
    ) -> None:
        self.name = name
        self.func = func
        self.loop = LOOPS[loop or ("loop_two" if two_args else "loop_one")]
        self.start = start
        self.stop = stop
        self.best = float("inf")

    def measure(self, calls: int) -> None:
        gc.collect()
        state = self.start()
        began = time.perf_counter_ns()
        self.loop(self.func, calls)
        elapsed = time.perf_counter_ns() - began
        self.stop(state)
        self.best = min(self.best, elapsed / calls)


def viztracer_variant(name: str, func: Callable, two_args: bool, log_args: bool) -> Variant | None:
    try:
        from viztracer import VizTracer
    except ImportError:
        return None

    def start() -> Any:
        tracer = VizTracer(
            tracer_entries=4_000_000, log_func_args=log_args, verbose=0, log_gc=False
        )
        tracer.start()
        return tracer

    def stop(tracer: Any) -> None:
        tracer.stop()
        tracer.clear()

    return Variant(name, func, two_args, start, stop)


def cprofile_variant(func: Callable) -> Variant:
    def start() -> cProfile.Profile:
        profile = cProfile.Profile()
        profile.enable()
        return profile

    def stop(profile: cProfile.Profile) -> None:
        profile.disable()

    return Variant("cProfile", func, False, start, stop)


def scope_recording() -> tuple[Callable[[], Any], Callable[[Any], None]]:
    def start() -> Pipeline:
        pipeline = Pipeline(DiscardingSink())
        pipeline.start()
        native.set_enabled(True)
        return pipeline

    def stop(pipeline: Pipeline) -> None:
        native.set_enabled(False)
        pipeline.stop()

    return start, stop


def build_variants(with_peers: bool) -> list[Variant]:
    start, stop = scope_recording()
    tag = (
        make_plan("bench_g", "bench_g.py", analyze_source(ONE_ARG), PlanSettings()).functions[0].id
    )
    cffi_g = compiled(
        CFFI_SOURCE.replace("ID", str(tag)),
        None,
        {"enter": native.lib.scope_emit_enter, "exit": native.lib.scope_emit_exit},
    )
    try_finally_g = compiled(
        TRY_FINALLY_SOURCE.replace("ID", str(tag)),
        None,
        {
            "__scope_enter__": native.enter,
            "__scope_exit__": native.exit,
            "__scope_unwind__": native.unwind,
        },
    )
    variants = [
        Variant("(the loop alone)", compiled(ONE_ARG, None), loop="loop_empty"),
        Variant("plain call", compiled(ONE_ARG, None)),
        Variant("scope, calls level", compiled(ONE_ARG, "calls"), False, start, stop),
        Variant("scope body in try/finally (before)", try_finally_g, False, start, stop),
        Variant("scope entry points bound by cffi", cffi_g, False, start, stop),
        Variant("plain call, 2 args", compiled(TWO_ARGS, None), True),
        Variant("scope, args level, 2 args", compiled(TWO_ARGS, "args"), True, start, stop),
    ]
    if with_peers:
        peers = [
            viztracer_variant("VizTracer", compiled(ONE_ARG, None), False, False),
            viztracer_variant("VizTracer, log_func_args", compiled(TWO_ARGS, None), True, True),
            cprofile_variant(compiled(ONE_ARG, None)),
        ]
        if peers[0] is None:
            print("VizTracer is not installed (pip install -e '.[bench]'): its rows are left out")
        variants.extend(v for v in peers if v is not None)
    return variants


class BusyThread:
    """Another Python thread that always wants the GIL (a CPU-bound worker)."""

    def __init__(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        x = 0
        while self.running:
            x += 1

    def __enter__(self) -> BusyThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def run(variants: list[Variant], calls: int, repeat: int) -> None:
    for _ in range(repeat):
        for variant in variants:
            variant.measure(calls)


def table(title: str, variants: list[Variant]) -> None:
    loop = variants[0].best
    plain = {
        v.loop is LOOPS["loop_two"]: v.best - loop for v in variants if v.name.startswith("plain")
    }
    print(f"\n{title} (the loop's {loop:.1f} ns taken off each row)")
    print(f"{'variant':<36} {'ns/call':>9} {'x plain':>8}")
    for v in variants[1:]:
        net = v.best - loop
        base = plain[v.loop is LOOPS["loop_two"]]
        # On a loaded machine the plain call may measure no slower than the bare loop.
        ratio = f"{net / base:>8.2f}" if base > 0 else f"{'-':>8}"
        print(f"{v.name:<36} {net:>9.1f} {ratio}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    runtime.install_entry_points()
    native.configure(1 << 20, "drop", 0, 1 << 16)
    print(f"Python {sys.version.split()[0]}, clock {native.clock().source}")
    variants = build_variants(with_peers=True)
    run(variants, args.calls, args.repeat)
    table(f"{args.calls:,} calls, best of {args.repeat}", variants)
    busy = build_variants(with_peers=False)
    with BusyThread():
        run(busy, args.calls // 20, args.repeat)
    table("the same, while another thread keeps the GIL busy", busy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
