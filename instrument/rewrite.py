"""Lower an instrumentation plan onto a module's ``ast`` and compile it.

Each instrumented function's body becomes::

    def f(a, b):
        "docstring stays first"
        pass                       # on the line of the body's first instruction
        with __scope_call__[TAG]:  # at args level: __scope_call__[TAG, a, b]
            <original body, every node at its original line and column>

``__scope_call__[...]`` reports that the call begins and returns the block the
body runs in; leaving the block by any path reports that it ended, and how.
``TAG`` is the function's id with its flags in the high byte (see
``FunctionPlan.tagged_id``).  Inside the original body, expressions are
wrapped in pass-through calls that return their argument unchanged:

* generators and coroutines report each suspension point, so their calls keep
  their place in the call tree across ``yield`` and ``await``:
  ``yield v`` becomes ``__scope_resume__(TAG, (yield __scope_yield__(TAG, v)))``,
  and the same for ``yield from`` and ``await``;
* at ``args`` level, ``return v`` becomes ``return __scope_return__(TAG, v)``
  and a statement that stores to ``self.x`` (``=``, ``+=``, unpacking, chained
  targets) is followed by ``__scope_wrote__(TAG, INDEX, self, "x")``, which
  reads the stored value back; the target of a ``for`` or ``with`` gets that
  call first in its body.  Only stores that completed are recorded.

No original node moves, and every new node takes the position of the node it
wraps, so tracebacks, PEP 657 carets, ``co_firstlineno`` and ``inspect``
answers stay those of the original source.  Tracers, debuggers and coverage
see the ``line``, ``return`` and ``exception`` events they would see without
scope: the ``pass`` gives the beginning the line of the body's first
instruction (the compiler drops it, and lends its line to what follows), the
``with`` has no position (its exits take the line of what ran before them),
and its exceptional exit puts the frame back on the instruction that raised.
A ``try``/``finally`` could do neither: its exits run on a line of their own.
The wrapper adds no local variable, no closure cell, no frame and no level of
recursion, and an exception leaves with the traceback it had.  The names are builtins installed by
``scope.capture.runtime``, so the rewritten module imports nothing and gains no
global.  Nested functions, classes and lambdas are left to their own plans.
An ``await`` inside a list, set or dict comprehension is wrapped with a flag
(``FLAG_IN_COMPREHENSION``) that tells the native side to look past the
comprehension's own frame (3.11 gives it one) for the call it suspends.  The
awaits of a generator expression suspend whoever iterates it, and the implicit
awaits of ``async for`` and ``async with`` have no expression to wrap: the
native side notices those suspensions on its own.
"""

from __future__ import annotations

import ast
import dis
from types import CodeType

from scope.instrument.plan import (
    FLAG_IN_COMPREHENSION,
    FLAG_SHIFT,
    FunctionPlan,
    ModulePlan,
    comprehension_name,
)

#: Raised whenever the rewriter's output changes, so that cached code made by an
#: earlier one (under the same scope version, in a source checkout) is remade.
REWRITE_REVISION = 8

ENTER_NAME = "__scope_enter__"
CALL_NAME = "__scope_call__"
LEAVE_NAME = "__scope_leave__"
RETURN_NAME = "__scope_return__"
WROTE_NAME = "__scope_wrote__"
YIELD_NAME = "__scope_yield__"
RESUME_NAME = "__scope_resume__"
REDACTED_NAME = "__scope_redacted__"
#: an attribute index with this bit names a redacted attribute (SCOPE_ATTR_REDACTED)
ATTR_REDACTED = 1 << 15

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
Comprehension = ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp


class PlanMismatch(Exception):
    """The plan does not describe this source (it was made from another version)."""


def function_nodes(tree: ast.Module) -> list[FunctionNode]:
    """Every ``def`` of the tree in source order, the order the analyzer reports."""
    nodes = [n for n in ast.walk(tree) if isinstance(n, FunctionNode)]
    nodes.sort(key=lambda n: (n.lineno, n.col_offset))
    return nodes


def _call(name: str, *args: ast.expr) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), list(args), [])


def _call_stmt(name: str, *args: ast.expr) -> ast.Expr:
    return ast.Expr(_call(name, *args))


def _place_nowhere(node: ast.AST) -> None:
    """Give a new node no position of its own (the compiler lends it its predecessor's line).

    Only ``node`` itself: a statement's body keeps the positions it has.
    """
    for name in ("lineno", "end_lineno", "col_offset", "end_col_offset"):
        if name in node._attributes:
            setattr(node, name, -1)


def _placed_on_line(node: ast.stmt, line: int) -> ast.stmt:
    """``node``, given ``line`` and no columns."""
    node.lineno = node.end_lineno = line
    node.col_offset = node.end_col_offset = -1
    return node


def _place_over(new: ast.expr, original: ast.expr) -> ast.expr:
    """Give ``new`` and the nodes it adds the span of ``original``, which it wraps."""
    for child in ast.walk(new):
        if child is original:
            continue
        if "lineno" in child._attributes and not hasattr(child, "lineno"):
            ast.copy_location(child, original)
    ast.copy_location(new, original)
    return new


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


class _BodyRewriter(ast.NodeTransformer):
    """Wraps one function's suspension points, returns and attribute writes."""

    def __init__(self, function: FunctionPlan, self_name: str | None) -> None:
        self.tag = function.tagged_id
        self.resumable = function.kind in ("generator", "coroutine", "async_generator")
        self.values = function.level in ("args", "full")
        self.is_async_generator = function.kind == "async_generator"
        self.self_name = self_name if function.attributes else None
        self.attributes = {name: i for i, name in enumerate(function.attributes)}
        self.redacted = function.redacted
        #: how many comprehensions the node being visited is inside
        self.comprehensions = 0

    def _tag(self) -> ast.Constant:
        return ast.Constant(self.tag)

    def _suspension_tag(self) -> ast.Constant:
        if self.comprehensions:
            return ast.Constant(self.tag | FLAG_IN_COMPREHENSION << FLAG_SHIFT)
        return self._tag()

    def _leave_alone(self, node: ast.AST) -> ast.AST:
        return node  # another code object: its own plan decides

    visit_FunctionDef = _leave_alone
    visit_AsyncFunctionDef = _leave_alone
    visit_Lambda = _leave_alone
    visit_ClassDef = _leave_alone

    def _comprehension(self, node: Comprehension) -> ast.AST:
        """Wrap the awaits of a comprehension (not of a generator expression)."""
        if not self.resumable:
            return node
        # The first iterable is evaluated by the function itself, outside.
        first = node.generators[0]
        first.iter = self.visit(first.iter)
        if isinstance(node, ast.GeneratorExp):
            return node  # its awaits suspend whoever iterates it
        self.comprehensions += 1
        if isinstance(node, ast.DictComp):
            node.key = self.visit(node.key)
            node.value = self.visit(node.value)
        else:
            node.elt = self.visit(node.elt)
        first.ifs = [self.visit(condition) for condition in first.ifs]
        for inner in node.generators[1:]:
            self.visit(inner)
        self.comprehensions -= 1
        return node

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_DictComp = _comprehension
    visit_GeneratorExp = _comprehension

    def _suspension(self, node: ast.Yield | ast.YieldFrom | ast.Await) -> ast.AST:
        self.generic_visit(node)
        if not self.resumable:
            return node
        inner = node.value if node.value is not None else ast.Constant(None)
        placed_inner = inner if node.value is not None else _place_over(inner, node)
        tag = self._suspension_tag
        node.value = _place_over(_call(YIELD_NAME, tag(), placed_inner), node)
        return _place_over(_call(RESUME_NAME, tag(), node), node)

    visit_Yield = _suspension
    visit_YieldFrom = _suspension
    visit_Await = _suspension

    def visit_Return(self, node: ast.Return) -> ast.AST:
        self.generic_visit(node)
        # A bare return in an async generator cannot be given a value.
        if self.values and (node.value is not None or not self.is_async_generator):
            value = node.value if node.value is not None else _place_over_stmt(node)
            node.value = _place_over(_call(RETURN_NAME, self._tag(), value), value)
        return node

    def _attribute_index(self, target: ast.expr) -> int | None:
        if (
            self.self_name is not None
            and isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id == self.self_name
            and target.attr in self.attributes
        ):
            index = self.attributes[target.attr]
            return index | ATTR_REDACTED if target.attr in self.redacted else index
        return None

    def _written(self, targets: list[ast.expr]) -> list[tuple[ast.Attribute, int]]:
        """The attributes of ``self`` that ``targets`` store to (unpacking included)."""
        found: list[tuple[ast.Attribute, int]] = []
        stack = list(reversed(targets))
        while stack:
            target = stack.pop()
            if isinstance(target, ast.Tuple | ast.List):
                stack.extend(reversed(target.elts))
            elif isinstance(target, ast.Starred):
                stack.append(target.value)
            else:
                index = self._attribute_index(target)
                if index is not None and isinstance(target, ast.Attribute):
                    found.append((target, index))
        return found

    def _records(self, targets: list[ast.expr]) -> list[ast.stmt]:
        """``__scope_wrote__`` calls for the attribute writes ``targets`` just made.

        Each takes the position of the first target's start, where the store's own
        instructions already are, so a tracer sees no line it would not see anyway.
        """
        records: list[ast.stmt] = []
        if not targets:
            return records
        for target, index in self._written(targets):
            call = _call_stmt(
                WROTE_NAME,
                self._tag(),
                ast.Constant(index),
                ast.Name(self.self_name or "self", ast.Load()),
                ast.Constant(target.attr),
            )
            for child in ast.walk(call):
                if "lineno" in child._attributes:
                    ast.copy_location(child, target)
                    child.end_lineno = child.lineno  # type: ignore[attr-defined]
                    child.end_col_offset = child.col_offset  # type: ignore[attr-defined]
            records.append(call)
        return records

    def visit_Assign(self, node: ast.Assign) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)
        return [node, *self._records(node.targets)]

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)
        return [node, *self._records([node.target])]

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST | list[ast.stmt]:
        self.generic_visit(node)
        return [node, *self._records([node.target] if node.value is not None else [])]

    def _loop(self, node: ast.For | ast.AsyncFor) -> ast.AST:
        self.generic_visit(node)
        node.body = [*self._records([node.target]), *node.body]
        return node

    visit_For = _loop
    visit_AsyncFor = _loop

    def _with(self, node: ast.With | ast.AsyncWith) -> ast.AST:
        self.generic_visit(node)
        targets = [item.optional_vars for item in node.items if item.optional_vars is not None]
        node.body = [*self._records(targets), *node.body]
        return node

    visit_With = _with
    visit_AsyncWith = _with


def _place_over_stmt(node: ast.stmt) -> ast.Constant:
    """A ``None`` constant spanning a bare ``return``."""
    value = ast.Constant(None)
    ast.copy_location(value, node)
    return value


def _arguments(node: FunctionNode | ast.Lambda) -> list[ast.arg]:
    a = node.args
    names = [*a.posonlyargs, *a.args]
    if a.vararg is not None:
        names.append(a.vararg)
    names.extend(a.kwonlyargs)
    if a.kwarg is not None:
        names.append(a.kwarg)
    return names


def wrap_function(
    node: FunctionNode, function: FunctionPlan, first_line: int | None = None
) -> None:
    """Rewrite ``node``'s body in place to report entry, exit, unwinding and values.

    ``first_line`` is the line of the body's first instruction in the plain
    compiled function (``first_body_lines``): the beginning takes it, so that a
    tracer's first ``line`` event is the one it would see without scope.
    Everything else the wrapper adds has no position, so the compiler gives it
    the line of the instruction before it: a ``return`` keeps its own line and
    an exception leaving the body keeps the line that raised.
    """
    tag = function.tagged_id
    arguments = _arguments(node)
    values = function.level in ("args", "full")
    if values and tuple(a.arg for a in arguments) != function.params:
        raise PlanMismatch(f"plan has parameters {function.params} for {node.name!r}")
    self_name = arguments[0].arg if arguments and function.attributes else None
    rewriter = _BodyRewriter(function, self_name)
    visited = [rewriter.visit(stmt) for stmt in node.body]
    body = [s for v in visited for s in (v if isinstance(v, list) else [v])]

    docstring = body[:1] if _is_docstring(body[0]) else []
    rest = body[len(docstring) :]
    passed: list[ast.expr] = []
    if values:
        passed = [
            ast.Name(REDACTED_NAME if a.arg in function.redacted else a.arg, ast.Load())
            for a in arguments
        ]
    key: ast.expr = (
        ast.Tuple([ast.Constant(tag), *passed], ast.Load()) if passed else ast.Constant(tag)
    )
    begin = ast.Subscript(ast.Name(CALL_NAME, ast.Load()), key, ast.Load())
    block = ast.With(
        items=[ast.withitem(context_expr=begin, optional_vars=None)], body=rest or [ast.Pass()]
    )
    for new in (block, *ast.walk(begin)):
        _place_nowhere(new)
    if not rest:
        _place_nowhere(block.body[0])
    # The compiler drops a ``pass``, and gives its line to the instruction after it.
    lend_line = [_placed_on_line(ast.Pass(), first_line)] if first_line is not None else []
    node.body = [*docstring, *lend_line, block]


def wrap_lambda(node: ast.Lambda, function: FunctionPlan) -> None:
    """Rewrite ``lambda a: body`` as ``lambda a: leave(TAG, enter(TAG[, a]) or body)``.

    ``enter`` returns ``None``, so ``body`` runs as before.  An expression has no
    ``finally``: the native side notices that a lambda raised when its thread next
    reports anything from a caller of it.
    """
    passed: list[ast.expr] = []
    if function.level in ("args", "full"):
        passed = [
            ast.Name(REDACTED_NAME if a.arg in function.redacted else a.arg, ast.Load())
            for a in _arguments(node)
        ]
    enter = _call(ENTER_NAME, ast.Constant(function.tagged_id), *passed)
    body = node.body
    leave = _call(LEAVE_NAME, ast.Constant(function.tagged_id), ast.BoolOp(ast.Or(), [enter, body]))
    node.body = _place_over(leave, body)


def _yields(expression: ast.expr) -> bool:
    """Whether a lambda's body makes it a generator (a yield outside nested scopes)."""
    stack: list[ast.AST] = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(node, ast.Lambda | Comprehension):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _declared_globals(body: list[ast.stmt]) -> frozenset[str]:
    """Names a scope's own ``global`` statements declare (nested scopes left out)."""
    names: set[str] = set()
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Global):
            names.update(node.names)
        elif not isinstance(node, FunctionNode | ast.ClassDef):
            stack.extend(
                child
                for child in ast.iter_child_nodes(node)
                if isinstance(child, ast.stmt | ast.excepthandler | ast.match_case)
            )
    return frozenset(names)


class _LambdaWrapper(ast.NodeVisitor):
    """Finds each lambda's ``__qualname__`` (CPython's rules) and wraps it by its plan."""

    def __init__(
        self,
        lambdas: dict[str, FunctionPlan],
        def_qualnames: dict[int, str],
        annotations_evaluated: bool = True,
    ) -> None:
        self.lambdas = lambdas
        self.def_qualnames = def_qualnames
        #: False under ``from __future__ import annotations``: the compiler turns
        #: annotations back into text, which must stay the program's own
        self.annotations_evaluated = annotations_evaluated
        #: (kind, qualname, names declared global) of each enclosing scope
        self.scopes: list[tuple[str, str, frozenset[str]]] = []
        #: the first line of each scope's first lambda
        self.first_lines: dict[str, int] = {}

    def _qualname(self, name: str) -> str:
        if not self.scopes:
            return name
        kind, qualname, declared = self.scopes[-1]
        if name != "<lambda>" and name in declared:
            return name
        suffix = ".<locals>" if kind in ("function", "lambda") else ""
        return f"{qualname}{suffix}.{name}"

    def _visit_in(self, scope: tuple[str, str, frozenset[str]], nodes: list[ast.AST]) -> None:
        self.scopes.append(scope)
        for node in nodes:
            self.visit(node)
        self.scopes.pop()

    def _visit_annotation(self, annotation: ast.expr | None) -> None:
        if annotation is not None and self.annotations_evaluated:
            self.visit(annotation)

    def _visit_function(self, node: FunctionNode) -> None:
        # Decorators, defaults and annotations belong to the enclosing scope.
        args = node.args
        for outer in (*node.decorator_list, *args.defaults, *args.kw_defaults):
            if outer is not None:
                self.visit(outer)
        every = [*args.posonlyargs, *args.args, args.vararg, *args.kwonlyargs, args.kwarg]
        for arg in every:
            if arg is not None:
                self._visit_annotation(arg.annotation)
        self._visit_annotation(node.returns)
        qualname = self.def_qualnames.get(id(node)) or self._qualname(node.name)
        scope = ("function", qualname, _declared_globals(node.body))
        self._visit_in(scope, list(node.body))

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for outer in (*node.decorator_list, *node.bases, *node.keywords):
            self.visit(outer)
        scope = ("class", self._qualname(node.name), _declared_globals(node.body))
        self._visit_in(scope, list(node.body))

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.target)
        # A variable annotation in a function is never evaluated, nor compiled.
        if not self.scopes or self.scopes[-1][0] == "class":
            self._visit_annotation(node.annotation)
        if node.value is not None:
            self.visit(node.value)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.visit(node.args)
        qualname = self._qualname("<lambda>")
        line = self.first_lines.setdefault(qualname, node.lineno)
        self.first_lines[qualname] = min(line, node.lineno)
        self._visit_in(("lambda", qualname, frozenset()), [node.body])
        function = self.lambdas.get(qualname)
        if function is not None and function.level != "off" and not _yields(node.body):
            wrap_lambda(node, function)

    def _visit_comprehension(self, node: Comprehension) -> None:
        # The first iterable is evaluated outside; the rest runs in its own scope.
        first, *rest = node.generators
        self.visit(first.iter)
        inside: list[ast.AST] = (
            [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        )
        inside += [first.target, *first.ifs, *rest]
        name = comprehension_name(type(node).__name__)
        if name is None:  # inlined (3.12+): what it defines belongs to the scope around it
            for part in inside:
                self.visit(part)
            return
        self._visit_in(("comprehension", self._qualname(name), frozenset()), inside)

    visit_ListComp = _visit_comprehension
    visit_SetComp = _visit_comprehension
    visit_DictComp = _visit_comprehension
    visit_GeneratorExp = _visit_comprehension


def annotations_evaluated(tree: ast.Module) -> bool:
    """False if the module has ``from __future__ import annotations`` (they stay text)."""
    return not any(
        isinstance(statement, ast.ImportFrom)
        and statement.module == "__future__"
        and any(alias.name == "annotations" for alias in statement.names)
        for statement in tree.body
    )


def first_body_lines(code: CodeType) -> dict[tuple[int, str], int | None]:
    """The line of each function's first instruction after its prologue, by
    ``(co_firstlineno, co_name)``, for every function compiled into ``code``.

    ``None`` where that instruction has no line (the compiler made it up).
    """
    lines: dict[tuple[int, str], int | None] = {}
    stack = [code]
    while stack:
        current = stack.pop()
        stack.extend(c for c in current.co_consts if isinstance(c, CodeType))
        after_resume = False
        for instruction in dis.get_instructions(current):
            if after_resume:
                lines[current.co_firstlineno, current.co_name] = instruction.positions.lineno  # type: ignore[union-attr]
                break
            after_resume = instruction.opname == "RESUME"
    return lines


def _first_line_of(node: FunctionNode) -> int:
    """Where a function's code object begins: its first decorator, else ``def``."""
    return node.decorator_list[0].lineno if node.decorator_list else node.lineno


def rewrite_tree(
    tree: ast.Module,
    plan: ModulePlan,
    body_lines: dict[tuple[int, str], int | None] | None = None,
) -> dict[int, int]:
    """Apply ``plan`` to ``tree`` (in place); return each function's first line by plan index.

    A scope's lambdas share a plan: theirs is the first line of the first one.
    ``body_lines`` is ``first_body_lines`` of the tree compiled as it was.
    """
    nodes = function_nodes(tree)
    defs = plan.defs
    if len(nodes) != len(defs):
        raise PlanMismatch(f"plan has {len(defs)} functions, source has {len(nodes)}")
    for node, function in zip(nodes, defs, strict=True):
        if node.name != function.name:
            raise PlanMismatch(f"plan says {function.name!r} where source has {node.name!r}")
    lines = {function.index: node.lineno for node, function in zip(nodes, defs, strict=True)}
    # Innermost first: a function's rewriter never descends into nested defs.
    for node, function in reversed(list(zip(nodes, defs, strict=True))):
        if function.level != "off":
            first = body_lines.get((_first_line_of(node), node.name)) if body_lines else None
            wrap_function(node, function, first)
    lambdas = plan.lambdas
    if lambdas:
        qualnames = {
            id(node): function.qualname for node, function in zip(nodes, defs, strict=True)
        }
        wrapper = _LambdaWrapper(lambdas, qualnames, annotations_evaluated(tree))
        wrapper.visit(tree)
        for qualname, line in wrapper.first_lines.items():
            lines[lambdas[qualname].index] = line
    return lines


def instrument_source(
    source: bytes | str, path: str, plan: ModulePlan
) -> tuple[CodeType, ModulePlan]:
    """Compile ``source`` with ``plan`` applied; also return the plan with first lines."""
    tree = ast.parse(source, filename=path)
    plain = compile(tree, path, "exec", dont_inherit=True)
    lines = rewrite_tree(tree, plan, first_body_lines(plain))
    code = compile(tree, path, "exec", dont_inherit=True)
    return code, plan.with_lines(lines)


def compile_instrumented(source: bytes | str, path: str, plan: ModulePlan) -> CodeType:
    """Compile ``source`` with ``plan`` applied, as ``compile(source, path, 'exec')`` would."""
    return instrument_source(source, path, plan)[0]
