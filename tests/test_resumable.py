"""Generators, coroutines and async generators keep their place in the call tree.

Each test records a program whose call structure is known from its arguments
(``rec(n)`` creates two ``rec(n - 1)``), and checks every recorded parent,
depth and suspension count against that structure exactly.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.harness import Recorded, load, record

RETURNED, RAISED = 0, 1


def assert_tree_is_consistent(rec: Recorded) -> None:
    """Every parent is recorded and sits exactly one level above its child."""
    for call in rec.calls.values():
        parent = rec.parent_of(call)
        if call.parent:
            assert parent is not None, call
            assert call.depth == parent.depth + 1, (call, parent)
        else:
            assert call.depth == 0, call
    assert rec.unfinished == 0 and rec.stats.dropped == 0 and rec.stats.unmatched_exits == 0


def test_asyncio_gather_of_recursive_coroutines():
    module = load(
        """
        import asyncio

        def leaf_work(n):
            return n

        async def rec(n):
            if n == 0:
                await asyncio.sleep(0)
                return leaf_work(1)
            a, b = await asyncio.gather(rec(n - 1), rec(n - 1))
            return a + b

        async def main():
            return await rec(4)
        """,
        level="args",
    )
    rec = record(module, lambda m: asyncio.run(m.main()))
    assert_tree_is_consistent(rec)
    calls = rec.named("rec")
    assert len(calls) == 31  # 1 + 2 + 4 + 8 + 16
    for call in calls:
        n = int(call.args["n"])
        parent = rec.parent_of(call)
        assert parent is not None
        if n == 4:
            assert parent.qualname == "main"
        else:
            # Created by rec(n + 1), run as a task by the event loop.
            assert parent.qualname == "rec" and int(parent.args["n"]) == n + 1
        kids = rec.children(call)
        if n == 0:
            assert [k.qualname for k in kids] == ["leaf_work"]
        else:
            assert sorted(int(k.args["n"]) for k in kids) == [n - 1, n - 1]
        assert call.suspensions == 1 and call.suspended_ns >= 0
        assert call.returned == str(2**n)


def test_tasks_interleaving_on_one_thread_keep_their_own_children():
    module = load(
        """
        import asyncio

        def step(name, i):
            return i

        async def worker(name):
            total = 0
            for i in range(5):
                total += step(name, i)
                await asyncio.sleep(0)
                total += step(name, i)
            return total

        async def main():
            return await asyncio.gather(*(worker(n) for n in "abc"))
        """,
        level="args",
    )
    rec = record(module, lambda m: asyncio.run(m.main()))
    assert_tree_is_consistent(rec)
    workers = rec.named("worker")
    assert len(workers) == 3
    main = rec.named("main")[0]
    for worker in workers:
        # The generator expression inside main created them: main is the parent.
        assert worker.parent == main.id
        steps = rec.children(worker)
        assert len(steps) == 10
        assert {s.args["name"] for s in steps} == {worker.args["name"]}
        assert worker.suspensions == 5


def test_async_for_and_async_with_suspend_without_being_reported():
    module = load(
        """
        import asyncio

        def note(who):
            return who

        class Gate:
            async def __aenter__(self):
                await asyncio.sleep(0)
                return self

            async def __aexit__(self, *exc):
                await asyncio.sleep(0)

        async def ticks(who):
            for i in range(3):
                await asyncio.sleep(0)
                yield i

        async def consumer(who):
            async with Gate():
                async for i in ticks(who):
                    note(who)
            note(who)

        async def main():
            await asyncio.gather(consumer("x"), consumer("y"))
        """,
        level="args",
    )
    rec = record(module, lambda m: asyncio.run(m.main()))
    assert_tree_is_consistent(rec)
    for consumer in rec.named("consumer"):
        who = consumer.args["who"]
        notes = [c for c in rec.children(consumer) if c.qualname == "note"]
        assert len(notes) == 4 and {n.args["who"] for n in notes} == {who}
        ticks = [c for c in rec.children(consumer) if c.qualname == "ticks"]
        assert len(ticks) == 1 and ticks[0].args["who"] == who
    assert len(rec.named("Gate.__aenter__")) == 2 and len(rec.named("Gate.__aexit__")) == 2


def test_awaits_inside_comprehensions_keep_each_task_apart():
    # On 3.11 a comprehension is a function of its own: its awaits suspend the
    # coroutine around it without the coroutine's wrapper seeing them.
    module = load(
        """
        import asyncio

        def note(who, i):
            return i

        async def fetch(who, i):
            await asyncio.sleep(0)
            return note(who, i)

        async def ticks(who):
            for i in range(3):
                await asyncio.sleep(0)
                yield i

        async def consumer(who):
            got = [await fetch(who, i) for i in range(3)]
            got += [note(who, i) async for i in ticks(who)]
            got += [i async for i in ticks(who) if await fetch(who, i) >= 0]
            return sum(got)

        async def main():
            return await asyncio.gather(consumer("x"), consumer("y"))
        """,
        level="args",
    )
    rec = record(module, lambda m: asyncio.run(m.main()))
    assert_tree_is_consistent(rec)
    for consumer in rec.named("consumer"):
        who = consumer.args["who"]
        kids = rec.children(consumer)
        assert sorted(k.qualname for k in kids) == ["fetch"] * 6 + ["note"] * 3 + ["ticks"] * 2
        assert {k.args["who"] for k in kids} == {who}
        for fetch in (k for k in kids if k.qualname == "fetch"):
            assert [c.args["who"] for c in rec.children(fetch)] == [who]
        assert consumer.returned == str(3 * (0 + 1 + 2))
        assert 0 <= consumer.suspended_ns <= consumer.duration_ns
        # Six awaits of fetch inside comprehensions, reported; and ticks' six
        # suspensions under the comprehensions' implicit awaits, noticed.
        assert consumer.suspensions == 12


def test_a_generator_consumed_by_another_generator():
    module = load(
        """
        def numbers(n):
            for i in range(n):
                yield square(i)

        def square(i):
            return i * i

        def doubled(n):
            for x in numbers(n):
                yield x * 2

        def total(n):
            return sum(doubled(n))
        """,
        level="args",
    )
    rec = record(module, lambda m: m.total(4))
    assert_tree_is_consistent(rec)
    (total,) = rec.named("total")
    (doubled,) = rec.named("doubled")
    (numbers,) = rec.named("numbers")
    assert doubled.parent == total.id and numbers.parent == doubled.id
    squares = rec.named("square")
    assert len(squares) == 4 and all(s.parent == numbers.id for s in squares)
    assert numbers.suspensions == 4 and doubled.suspensions == 4
    assert 0 <= numbers.suspended_ns <= numbers.duration_ns
    assert total.returned == str(2 * (0 + 1 + 4 + 9))


def test_an_exception_thrown_into_a_generator():
    module = load(
        """
        def helper(x):
            return x

        def worker():
            try:
                yield 1
            except ValueError:
                helper(2)
                yield 2
            yield 3

        def drive():
            g = worker()
            next(g)
            assert g.throw(ValueError("in")) == 2
            helper(3)
            g.close()
        """,
        level="args",
    )
    rec = record(module, lambda m: m.drive())
    assert_tree_is_consistent(rec)
    (drive,) = rec.named("drive")
    (worker,) = rec.named("worker")
    helpers = {c.args["x"]: c for c in rec.named("helper")}
    assert worker.parent == drive.id
    # Called after throw() resumed the generator, before any report of resumption.
    assert helpers["2"].parent == worker.id
    assert helpers["3"].parent == drive.id
    # close() raised GeneratorExit at the second yield.
    assert worker.outcome == RAISED and worker.raised == "GeneratorExit()"
    assert worker.suspensions == 2


def test_a_generator_resumed_from_different_callers_keeps_its_parent():
    module = load(
        """
        def gen():
            yield 1
            yield 2

        def make():
            g = gen()
            first = next(g)
            return g, first

        def later(g):
            return next(g)

        def main():
            g, first = make()
            return first + later(g)
        """
    )
    rec = record(module, lambda m: m.main())
    assert_tree_is_consistent(rec)
    (gen,) = rec.named("gen")
    (make,) = rec.named("make")
    # The call that first advanced it (here also the one that created it).
    assert gen.parent == make.id
    assert gen.suspensions == 2 and rec.unfinished == 0


def test_yield_from_delegation_and_return_values():
    module = load(
        """
        def inner():
            x = yield 1
            return x * 10

        def outer():
            result = yield from inner()
            return result + 1

        def drive():
            g = outer()
            next(g)
            try:
                g.send(4)
            except StopIteration as stop:
                return stop.value
        """,
        level="args",
    )
    rec = record(module, lambda m: m.drive())
    assert_tree_is_consistent(rec)
    (outer,) = rec.named("outer")
    (inner,) = rec.named("inner")
    assert inner.parent == outer.id and inner.returned == "40" and outer.returned == "41"
    assert rec.named("drive")[0].returned == "41"


def test_deep_recursion_through_generators_matches_plain_python():
    source = """
    import sys

    def walk(n):
        if n:
            yield from walk(n - 1)
        yield n

    def deepest():
        depth = 0
        try:
            def down(n):
                nonlocal depth
                depth = n
                down(n + 1)
            down(0)
        except RecursionError:
            return depth
    """
    import types

    plain = types.ModuleType("plain")
    exec(compile(__import__("textwrap").dedent(source), "/virtual/p.py", "exec"), plain.__dict__)
    module = load(source)
    results: list[object] = []
    rec = record(module, lambda m: results.extend([list(m.walk(50)), m.deepest(), plain.deepest()]))
    assert results[0] == list(range(51))
    # Recorded generators and functions cost the program no recursion depth.
    assert results[1] == results[2]
    walks = rec.named("walk")
    assert len(walks) == 51
    assert max(w.depth for w in walks) == 50
    assert rec.unfinished == 0


@pytest.mark.parametrize("level", ["calls", "args", "full"])
def test_coroutines_behave_the_same_recorded(level):
    source = """
    import asyncio

    async def fails(n):
        await asyncio.sleep(0)
        raise KeyError(n)

    async def main():
        results = await asyncio.gather(fails(1), fails(2), return_exceptions=True)
        return [type(r).__name__ for r in results]
    """
    import textwrap
    import types

    plain = types.ModuleType("plain")
    exec(compile(textwrap.dedent(source), "/virtual/p.py", "exec"), plain.__dict__)
    expected = asyncio.run(plain.main())
    module = load(source, level=level)
    got: list[object] = []
    rec = record(module, lambda m: got.append(asyncio.run(m.main())))
    assert got == [expected]
    assert [c.outcome for c in rec.named("fails")] == [RAISED, RAISED]


def test_recursion_deeper_than_the_stack_bound_is_counted_not_crashed():
    import sys
    import threading

    module = load(
        """
        def down(n):
            if n == 0:
                return 0
            return 1 + down(n - 1)

        def gen_down(n):
            if n:
                yield from gen_down(n - 1)
            yield n
        """
    )
    results: list[object] = []

    def deep(m) -> None:
        # A thread with room for a recursion limit of 20,000 frames.
        old_limit, old_size = sys.getrecursionlimit(), threading.stack_size(512 * 1024 * 1024)
        sys.setrecursionlimit(20_000)
        try:
            worker = threading.Thread(
                target=lambda: results.extend([m.down(15_000), sum(m.gen_down(3_000))])
            )
            worker.start()
            worker.join()
        finally:
            sys.setrecursionlimit(old_limit)
            threading.stack_size(old_size)

    rec = record(module, deep, max_depth=1_000)
    assert results == [15_000, sum(range(3_001))]
    # The first 1,000 levels are recorded; the rest are counted, and nothing is unmatched.
    assert len(rec.named("down")) == 1_000
    assert max(c.depth for c in rec.named("down")) == 999
    assert rec.stats.stack_overflow == 15_001 - 1_000
    # A generator delegating with yield from is parked, not stacked: the whole
    # chain is recorded, each level one deeper than the one that delegates to it.
    gens = rec.named("gen_down")
    assert len(gens) == 3_001 and sorted(c.depth for c in gens) == list(range(3_001))
    assert rec.stats.unmatched_exits == 0 and rec.unfinished == 0


def test_a_generator_finished_on_another_thread_keeps_its_subtree_on_its_own():
    import threading

    from scope import native

    module = load(
        """
        def helper(x):
            return x

        def gen():
            helper(1)
            yield 1
            helper(2)
            yield 2
        """
    )

    def run(m) -> None:
        g = m.gen()
        next(g)  # starts here
        other = threading.Thread(target=lambda: list(g))  # resumes and ends there
        other.start()
        other.join()

    rec = record(module, run)
    (gen,) = rec.named("gen")
    first, second = sorted(rec.named("helper"), key=lambda c: c.id)
    slot = gen.id >> native.SLOT_SHIFT
    # Its subtree on its own thread is [id, end_id]: the first helper, not the second.
    assert gen.end_id >> native.SLOT_SHIFT == slot
    assert gen.id < first.id <= gen.end_id
    assert second.id >> native.SLOT_SHIFT != slot and second.parent == gen.id
    assert gen.outcome == RETURNED and rec.unfinished == 0
