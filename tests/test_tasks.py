"""asyncio tasks: each one recorded once, with the call that created it and how it ended.

A program creates tasks in every common way (``asyncio.run``, ``gather``,
``TaskGroup``, ``create_task``, a task created inside another task) and ends
some by an exception and one by cancellation.  The ``task`` table must hold
each task once, named, with its root coroutine call and the coroutine call that
created it; the root call's outcome and exception say how it ended.
"""

from __future__ import annotations

PROGRAM = """
import asyncio

async def leaf(n):
    await asyncio.sleep(0)
    if n == 3:
        raise ValueError("three")
    return n

async def child(n):
    return await leaf(n)

async def spawner():
    inner = asyncio.create_task(child(5), name="inner")
    return await inner

async def sleeper():
    await asyncio.sleep(10)

async def main():
    results = await asyncio.gather(child(1), child(2))
    async with asyncio.TaskGroup() as group:
        grouped = group.create_task(child(4), name="grouped")
        spawned = group.create_task(spawner(), name="spawner")
    try:
        await asyncio.create_task(child(3), name="fails")
    except ValueError:
        pass
    sleeping = asyncio.create_task(sleeper(), name="cancelled")
    await asyncio.sleep(0)
    sleeping.cancel()
    try:
        await sleeping
    except asyncio.CancelledError:
        pass
    return results, grouped.result(), spawned.result()

print(asyncio.run(main()))
"""


def test_every_task_once_with_its_creator_and_ending(write, python, scope, query):
    write("tasks.py", PROGRAM)
    plain, recorded = python("tasks.py"), scope("run", "--level", "args", "tasks.py")
    assert plain.returncode == 0
    assert recorded == plain
    rows = query(
        """SELECT t.name, f.qualname, c.outcome, creator.qualname, t.id = c.id
           FROM task t JOIN call c ON c.id = t.id JOIN function f ON f.id = c.function
           LEFT JOIN (SELECT c2.id, f2.qualname FROM call c2 JOIN function f2
                      ON f2.id = c2.function) creator ON creator.id = t.created_by
           ORDER BY t.id"""
    )
    assert [row[:4] for row in rows] == [
        ("Task-1", "main", "returned", None),
        ("Task-2", "child", "returned", "main"),
        ("Task-3", "child", "returned", "main"),
        ("grouped", "child", "returned", "main"),
        ("spawner", "spawner", "returned", "main"),
        ("inner", "child", "returned", "spawner"),
        ("fails", "child", "raised", "main"),
        ("cancelled", "sleeper", "raised", "main"),
    ]
    # A task's root call hangs under the coroutine that created it.
    assert query(
        "SELECT count(*) FROM task t JOIN call c ON c.id = t.id "
        "WHERE t.created_by IS NOT NULL AND c.parent <> t.created_by"
    ) == [(0,)]
    ended = dict(
        query(
            """SELECT t.name, v.type FROM task t JOIN value v ON v.call = t.id
               WHERE v.role = 'raise'"""
        )
    )
    assert ended == {"fails": "ValueError", "cancelled": "CancelledError"}
