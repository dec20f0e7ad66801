"""Lower an instrumentation plan onto a module's ``ast`` and compile it.

Each instrumented function's body becomes::

    def f(...):
        "docstring stays first"
        __scope_enter__(ID)
        try:
            <original body, every node at its original line and column>
        except __scope_catch__:
            __scope_unwind__(ID)
            raise
        finally:
            __scope_exit__(ID)

No original node moves, so tracebacks, PEP 657 carets, ``co_firstlineno`` and
``inspect`` answers stay those of the original source.  The wrapper adds no
local variable, no closure cell and no frame; a bare ``raise`` keeps the
exception's traceback as it was.  The four names are builtins installed by
``scope.capture.runtime``, so the rewritten module imports nothing and gains no
global.
"""

from __future__ import annotations

import ast
from types import CodeType

from scope.instrument.plan import ModulePlan

ENTER_NAME = "__scope_enter__"
EXIT_NAME = "__scope_exit__"
UNWIND_NAME = "__scope_unwind__"
CATCH_NAME = "__scope_catch__"

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


class PlanMismatch(Exception):
    """The plan does not describe this source (it was made from another version)."""


def function_nodes(tree: ast.Module) -> list[FunctionNode]:
    """Every ``def`` of the tree in source order, the order the analyzer reports."""
    nodes = [n for n in ast.walk(tree) if isinstance(n, FunctionNode)]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return nodes


def _call_stmt(name: str, func_id: int) -> ast.Expr:
    return ast.Expr(ast.Call(ast.Name(name, ast.Load()), [ast.Constant(func_id)], []))


def _place(node: ast.AST, anchor: ast.stmt) -> None:
    """Give a new node and its children the (zero-width) position of ``anchor``'s start."""
    for child in ast.walk(node):
        if "lineno" in child._attributes:
            child.lineno = child.end_lineno = anchor.lineno  # type: ignore[attr-defined]
            child.col_offset = child.end_col_offset = anchor.col_offset  # type: ignore[attr-defined]


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def wrap_function(node: FunctionNode, func_id: int) -> None:
    """Rewrite ``node``'s body in place to report entry, exit and unwinding."""
    body = list(node.body)
    docstring = body[:1] if _is_docstring(body[0]) else []
    rest = body[len(docstring) :]
    anchor = rest[0] if rest else body[0]
    handler = ast.ExceptHandler(
        type=ast.Name(CATCH_NAME, ast.Load()),
        name=None,
        body=[_call_stmt(UNWIND_NAME, func_id), ast.Raise(exc=None, cause=None)],
    )
    wrapper = ast.Try(
        body=rest or [ast.Pass()],
        handlers=[handler],
        orelse=[],
        finalbody=[_call_stmt(EXIT_NAME, func_id)],
    )
    enter = _call_stmt(ENTER_NAME, func_id)
    for new in (enter, handler, wrapper.finalbody[0]):
        _place(new, anchor)
    if not rest:
        _place(wrapper.body[0], anchor)
    wrapper.lineno = wrapper.end_lineno = anchor.lineno
    wrapper.col_offset = wrapper.end_col_offset = anchor.col_offset
    node.body = [*docstring, enter, wrapper]


def rewrite_tree(tree: ast.Module, plan: ModulePlan) -> ast.Module:
    """Apply ``plan`` to ``tree`` (in place) and return it."""
    nodes = function_nodes(tree)
    if len(nodes) != len(plan.functions):
        raise PlanMismatch(f"plan has {len(plan.functions)} functions, source has {len(nodes)}")
    for node, function in zip(nodes, plan.functions, strict=True):
        if node.name != function.name:
            raise PlanMismatch(f"plan says {function.name!r} where source has {node.name!r}")
        if function.level != "off":
            wrap_function(node, function.id)
    return tree


def compile_instrumented(source: bytes | str, path: str, plan: ModulePlan) -> CodeType:
    """Compile ``source`` with ``plan`` applied, as ``compile(source, path, 'exec')`` would."""
    tree = ast.parse(source, filename=path)
    return compile(rewrite_tree(tree, plan), path, "exec", dont_inherit=True)
