"""Folding repetitive call trees: a loop's thousand alike calls shown as one, counted.

Two calls look alike when they are of the same function, ended the same way
and made calls that look alike, in the same order (how many times each
repeated aside).  A run of consecutive sibling calls that look alike is kept
as its first call, which counts the others (``CallNode.similar``) and their
time (``CallNode.similar_ns``).  Calls that must stay visible (an exception's
path) are never folded away and break runs.
"""

from __future__ import annotations

from collections.abc import Collection

from scope.query.results.calls import CallNode


def fold_similar(roots: list[CallNode], keep: Collection[int] = ()) -> list[CallNode]:
    """``roots`` with every run of alike siblings folded into its first call (in place
    below them; iteratively, so that deep recursion folds too)."""
    preorder: list[CallNode] = []
    pending = list(roots)
    while pending:
        node = pending.pop()
        preorder.append(node)
        pending.extend(node.children)
    looks: dict[int, int] = {}
    # calls in a node's subtree, folded ones and those counted below the depth included
    sizes: dict[int, int] = {}
    for node in reversed(preorder):  # every call after the calls it made
        node.children = _fold(node.children, looks, sizes, keep)
        shape = tuple(looks[id(child)] for child in node.children)
        looks[id(node)] = hash((node.module, node.qualname, node.phase, node.outcome, shape))
        below = node.below + sum(sizes[id(c)] + c.similar_calls for c in node.children)
        sizes[id(node)] = 1 + below
    return _fold(roots, looks, sizes, keep)


def _fold(
    siblings: list[CallNode], looks: dict[int, int], sizes: dict[int, int], keep: Collection[int]
) -> list[CallNode]:
    kept: list[CallNode] = []
    for node in siblings:
        last = kept[-1] if kept else None
        alike = last is not None and looks[id(last)] == looks[id(node)]
        if alike and last is not None and node.id not in keep and last.id not in keep:
            last.similar += 1 + node.similar
            last.similar_ns += max(node.duration_ns, 0) + node.similar_ns
            last.similar_calls += sizes[id(node)] + node.similar_calls
            continue
        kept.append(node)
    return kept
