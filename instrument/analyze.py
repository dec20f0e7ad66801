"""Describe every function of a module from its source, using libcst.

The analyzer reads the concrete syntax tree once and reports, for each ``def``
in source order, what the planner needs to decide how to instrument it: its
qualified name (as ``__qualname__`` will be), its kind, its decorators and
whether it is a dunder that scope itself might end up calling.  It uses no
metadata providers: positions come from the ``ast`` the rewriter lowers onto,
matched by source order, which keeps analysis close to libcst's parse speed.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field

import libcst as cst
from scope.instrument.plan import comprehension_name

#: The deepest nesting analysed, in levels of libcst's tree.  libcst's parser takes
#: time growing with the square of the nesting (400 subscripts: 0.15 s; 1,000:
#: 1 s; 3,000: 18 s), holding the GIL, so that even SIGTERM waits, and its native
#: stack overflows (the process dies of SIGSEGV) past 5,000 to 8,000 levels; the
#: walk below takes one or two Python frames a level, within the program's
#: recursion limit (1,000 by default) and under the frames of the import that
#: asked.  Hand-written code nests 20 to 30 levels deep.
MAX_NESTING = 400
#: The most ``ast`` nodes analysed.  libcst's tree costs about 2 KB and 15 to 40 us
#: a node: 250,000 nodes (ten times the standard library's biggest module,
#: ``_pydecimal``) would take 0.5 GB and several seconds.
MAX_NODES = 250_000


class TooComplex(ValueError):
    """A module nested too deep or too big for scope to analyse in reasonable time.

    Raised before libcst sees the source, so that the module is loaded as
    Python loads it, uninstrumented, instead of hanging or crashing the program.
    """


#: Dunders that scope's own machinery could trigger while recording a value.
SCOPE_SENSITIVE_DUNDERS = frozenset(
    {
        "__repr__",
        "__str__",
        "__format__",
        "__eq__",
        "__ne__",
        "__hash__",
        "__getattr__",
        "__getattribute__",
        "__setattr__",
        "__delattr__",
        "__del__",
        "__len__",
        "__bool__",
        "__iter__",
        "__class_getitem__",
        "__instancecheck__",
        "__subclasscheck__",
    }
)


@dataclass(frozen=True)
class FunctionInfo:
    """What the source says about one ``def``, or about the lambdas of one scope.

    ``analyze_source`` lists the defs in the order they appear, then one entry of
    kind ``lambda`` per scope that holds lambdas: they share the qualified name
    ``<scope>.<lambda>`` and so one id (``params`` then holds every parameter name
    any of them has, for redaction).
    """

    name: str
    qualname: str
    #: plain, method, staticmethod, classmethod, property, generator, coroutine,
    #: async_generator, lambda
    kind: str
    decorators: tuple[str, ...]
    class_name: str | None
    is_async: bool
    is_generator: bool
    is_dunder: bool
    scope_sensitive: bool
    #: parameter names in signature order (positional-only, positional, ``*args``,
    #: keyword-only, ``**kwargs``): the order in which arguments are recorded
    params: tuple[str, ...] = ()
    #: attributes the body assigns on its first parameter (``self.x = ...``), sorted
    self_attributes: tuple[str, ...] = ()


@dataclass
class _Def:
    """A ``def`` being visited; ``yields`` is settled when its body has been seen."""

    name: str
    qualname: str
    decorators: tuple[str, ...]
    class_name: str | None
    is_async: bool
    params: tuple[str, ...] = ()
    yields: bool = False
    attributes: set[str] = field(default_factory=set)


@dataclass
class _Scope:
    kind: str  # "class", "function", "lambda" or "comprehension"
    qualname: str
    definition: _Def | None = None
    globals: set[str] = field(default_factory=set)
    yields: bool = False


def parameter_names(params: cst.Parameters) -> tuple[str, ...]:
    """The names of a signature's parameters, in the order arguments are recorded."""
    names = [p.name.value for p in (*params.posonly_params, *params.params)]
    if isinstance(params.star_arg, cst.Param):
        names.append(params.star_arg.name.value)
    names.extend(p.name.value for p in params.kwonly_params)
    if params.star_kwarg is not None:
        names.append(params.star_kwarg.name.value)
    return tuple(names)


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    if isinstance(node, cst.Call):
        return _dotted(node.func)
    return type(node).__name__


Comprehension = cst.ListComp | cst.SetComp | cst.DictComp | cst.GeneratorExp

#: Fields that hold only whitespace, comments and punctuation: never walked into.
_LAYOUT_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "leading_lines",
        "lines_after_decorators",
        "header",
        "footer",
        "comma",
        "semicolon",
        "equal",
        "colon",
        "star",
        "dot",
        "operator",
        "lbracket",
        "rbracket",
        "lbrace",
        "rbrace",
        "newline",
        "indent",
        "trailing_whitespace",
        "asynchronous",
    }
)
_child_fields: dict[type, tuple[str, ...]] = {}


def _fields_to_walk(node_type: type) -> tuple[str, ...]:
    names = _child_fields.get(node_type)
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(node_type)
            if f.name not in _LAYOUT_FIELDS and not f.name.startswith("whitespace")
        )
        _child_fields[node_type] = names
    return names


class _Collector:
    """Walks a libcst tree once, calling ``visit_X``/``leave_X`` as ``CSTVisitor`` would.

    libcst's own ``visit`` rebuilds every node it passes (it is shared with
    transformers), which cost as much as parsing; this walk only reads fields,
    in their declared order (source order for the statement bodies that hold
    defs), and skips layout fields.
    """

    def walk(self, node: cst.CSTNode) -> None:
        """Visit ``node`` and everything under it (a ``visit_X`` returning False prunes)."""
        name = type(node).__name__
        visit = getattr(self, f"visit_{name}", None)
        if visit is not None and visit(node) is False:
            return
        for field_name in _fields_to_walk(type(node)):
            value = getattr(node, field_name)
            if isinstance(value, cst.CSTNode):
                self.walk(value)
            elif isinstance(value, tuple | list):
                for item in value:
                    if isinstance(item, cst.CSTNode):
                        self.walk(item)
        leave = getattr(self, f"leave_{name}", None)
        if leave is not None:
            leave(node)

    def __init__(self) -> None:
        self.definitions: list[_Def] = []
        #: lambda qualname -> every parameter name its lambdas have (an ordered set)
        self.lambdas: dict[str, dict[str, None]] = {}
        self._scopes: list[_Scope] = []
        #: False under ``from __future__ import annotations``: annotations stay text
        self.annotations_evaluated = True

    def visit_Module(self, node: cst.Module) -> None:
        for statement in node.body:
            if not isinstance(statement, cst.SimpleStatementLine):
                continue
            for small in statement.body:
                if (
                    isinstance(small, cst.ImportFrom)
                    and isinstance(small.module, cst.Name)
                    and small.module.value == "__future__"
                    and not isinstance(small.names, cst.ImportStar)
                    and any(alias.evaluated_name == "annotations" for alias in small.names)
                ):
                    self.annotations_evaluated = False

    def _walk_annotation(self, annotation: cst.Annotation | None) -> None:
        """An annotation's lambdas, where CPython compiles the annotation at all."""
        if annotation is not None and self.annotations_evaluated:
            self.walk(annotation)

    def _qualname(self, name: str) -> str:
        """``__qualname__`` of a def, class or lambda named ``name`` here (CPython's rules)."""
        if not self._scopes:
            return name
        parent = self._scopes[-1]
        if name != "<lambda>" and name in parent.globals:
            return name
        suffix = ".<locals>" if parent.kind in ("function", "lambda") else ""
        return f"{parent.qualname}{suffix}.{name}"

    def _walk_parameter_parts(self, params: cst.Parameters) -> None:
        """Defaults and annotations, which the enclosing scope evaluates."""
        every = [*params.posonly_params, *params.params, *params.kwonly_params]
        for extra in (params.star_arg, params.star_kwarg):
            if isinstance(extra, cst.Param):
                every.append(extra)
        for param in every:
            if param.default is not None:
                self.walk(param.default)
            self._walk_annotation(param.annotation)

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        # Decorators, bases and keywords belong to the enclosing scope.
        for decorator in node.decorators:
            self.walk(decorator)
        for argument in (*node.bases, *node.keywords):
            self.walk(argument)
        self._scopes.append(_Scope("class", self._qualname(node.name.value)))
        self.walk(node.body)
        self._scopes.pop()
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        # Decorators, defaults and annotations belong to the enclosing scope.
        for decorator in node.decorators:
            self.walk(decorator)
        self._walk_parameter_parts(node.params)
        self._walk_annotation(node.returns)
        in_class = bool(self._scopes) and self._scopes[-1].kind == "class"
        definition = _Def(
            name=node.name.value,
            qualname=self._qualname(node.name.value),
            decorators=tuple(_dotted(d.decorator) for d in node.decorators),
            class_name=self._scopes[-1].qualname if in_class else None,
            is_async=node.asynchronous is not None,
            params=parameter_names(node.params),
        )
        self.definitions.append(definition)
        self._scopes.append(_Scope("function", definition.qualname, definition))
        self.walk(node.body)
        self._scopes.pop()
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        self._walk_parameter_parts(node.params)  # defaults: the enclosing scope's
        self._scopes.append(_Scope("lambda", self._qualname("<lambda>")))
        self.walk(node.body)
        scope = self._scopes.pop()
        if not scope.yields:  # a generator lambda is left as it is
            names = self.lambdas.setdefault(scope.qualname, {})
            names.update(dict.fromkeys(parameter_names(node.params)))
        return False

    def _comprehension(self, node: Comprehension) -> bool:
        # The first iterable is evaluated in the enclosing scope, the rest in the
        # comprehension's own (a function of its own on 3.11).
        self.walk(node.for_in.iter)
        name = comprehension_name(type(node).__name__)
        if name is None:  # inlined (3.12+): what it defines belongs to the scope around it
            self._walk_comprehension(node)
            return False
        self._scopes.append(_Scope("comprehension", self._qualname(name)))
        self._walk_comprehension(node)
        self._scopes.pop()
        return False

    def _walk_comprehension(self, node: Comprehension) -> None:
        if isinstance(node, cst.DictComp):
            self.walk(node.key)
            self.walk(node.value)
        else:
            self.walk(node.elt)
        self.walk(node.for_in.target)
        for condition in node.for_in.ifs:
            self.walk(condition)
        if node.for_in.inner_for_in is not None:
            self.walk(node.for_in.inner_for_in)

    visit_ListComp = _comprehension
    visit_SetComp = _comprehension
    visit_DictComp = _comprehension
    visit_GeneratorExp = _comprehension

    def visit_Global(self, node: cst.Global) -> None:
        if self._scopes:
            self._scopes[-1].globals.update(item.name.value for item in node.names)

    def _note_attribute_write(self, target: cst.BaseExpression) -> None:
        scope = self._scopes[-1] if self._scopes else None
        d = scope.definition if scope is not None else None
        if d is None or d.class_name is None or not d.params:
            return
        if (
            isinstance(target, cst.Attribute)
            and isinstance(target.value, cst.Name)
            and target.value.value == d.params[0]
        ):
            d.attributes.add(target.attr.value)

    def _note_attribute_writes(self, target: cst.BaseExpression) -> None:
        """Note the attributes of ``self`` a target stores to, unpacking included."""
        if isinstance(target, cst.Tuple | cst.List):
            for element in target.elements:
                self._note_attribute_writes(element.value)
        else:
            self._note_attribute_write(target)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._note_attribute_writes(target.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._note_attribute_write(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._note_attribute_writes(node.target)

    def visit_With(self, node: cst.With) -> None:
        for item in node.items:
            if item.asname is not None:
                self._note_attribute_writes(item.asname.name)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        if node.value is not None:
            self._note_attribute_write(node.target)
        self.walk(node.target)
        # A variable annotation in a function is never evaluated, nor compiled.
        if not self._scopes or self._scopes[-1].kind == "class":
            self._walk_annotation(node.annotation)
        if node.value is not None:
            self.walk(node.value)
        return False

    def visit_Yield(self, node: cst.Yield) -> None:
        if self._scopes:
            self._scopes[-1].yields = True
            if self._scopes[-1].definition is not None:
                self._scopes[-1].definition.yields = True


def _describe(d: _Def) -> FunctionInfo:
    last_parts = {name.rsplit(".", 1)[-1] for name in d.decorators}
    if d.is_async:
        kind = "async_generator" if d.yields else "coroutine"
    elif d.yields:
        kind = "generator"
    elif d.class_name is None:
        kind = "plain"
    elif "staticmethod" in last_parts:
        kind = "staticmethod"
    elif "classmethod" in last_parts:
        kind = "classmethod"
    elif "property" in last_parts or last_parts & {"setter", "getter", "deleter"}:
        kind = "property"
    else:
        kind = "method"
    is_dunder = d.name.startswith("__") and d.name.endswith("__") and len(d.name) > 4
    # Methods of every kind (async and generator ones too) get self first.
    bound = d.class_name is not None and not last_parts & {"staticmethod", "classmethod"}
    return FunctionInfo(
        name=d.name,
        qualname=d.qualname,
        kind=kind,
        decorators=d.decorators,
        class_name=d.class_name,
        is_async=d.is_async,
        is_generator=d.yields,
        is_dunder=is_dunder,
        scope_sensitive=is_dunder and d.name in SCOPE_SENSITIVE_DUNDERS,
        params=d.params,
        self_attributes=tuple(sorted(d.attributes)) if bound else (),
    )


def _describe_lambdas(qualname: str, params: tuple[str, ...]) -> FunctionInfo:
    """The lambdas of one scope, which share one description (and one id)."""
    return FunctionInfo(
        name="<lambda>",
        qualname=qualname,
        kind="lambda",
        decorators=(),
        class_name=None,
        is_async=False,
        is_generator=False,
        is_dunder=False,
        scope_sensitive=False,
        params=params,
    )


def libcst_nesting(node: ast.AST) -> int:
    """How many levels deep libcst's tree of ``node`` is nested, as ``ast`` tells it.

    ``ast`` and libcst nest alike, but for what ``ast`` keeps flat and libcst
    nests a level per part: the operands of ``and`` and ``or``, and the names
    of a dotted import.  Raises ``TooComplex`` past ``MAX_NESTING`` levels or
    ``MAX_NODES`` nodes; iterative, so that it never meets the recursion limit.
    """
    deepest = nodes = 0
    pending: list[tuple[ast.AST, int]] = [(node, 0)]
    while pending:
        current, depth = pending.pop()
        nodes += 1
        depth += 1
        if isinstance(current, ast.BoolOp):
            depth += len(current.values) - 1
        elif isinstance(current, ast.alias):
            depth += current.name.count(".")
        elif isinstance(current, ast.ImportFrom) and current.module:
            depth += current.module.count(".")
        if depth > deepest:
            deepest = depth
            if deepest > MAX_NESTING:
                raise TooComplex(
                    f"nested more than {MAX_NESTING} levels deep (the most scope analyses)"
                )
        if nodes > MAX_NODES:
            raise TooComplex(f"more than {MAX_NODES} syntax nodes (the most scope analyses)")
        for name in current._fields:
            value = getattr(current, name, None)
            if isinstance(value, ast.AST):
                pending.append((value, depth))
            elif isinstance(value, list):
                pending.extend((item, depth) for item in value if isinstance(item, ast.AST))
    return deepest


def analyze_source(source: str | bytes) -> list[FunctionInfo]:
    """Return a description of every ``def`` in ``source``, in source order.

    Python parses ``source`` first, so that what it refuses fails as Python
    fails (``SyntaxError``, ``RecursionError``, ``MemoryError``), and what is
    beyond the budget (``MAX_NESTING``, ``MAX_NODES``) raises ``TooComplex``,
    both before libcst sees it.  Raises ``libcst.ParserSyntaxError`` for source
    libcst does not parse.
    """
    libcst_nesting(ast.parse(source))
    module = cst.parse_module(source)
    collector = _Collector()
    collector.walk(module)
    functions = [_describe(d) for d in collector.definitions]
    functions.extend(
        _describe_lambdas(qualname, tuple(sorted(names)))
        for qualname, names in collector.lambdas.items()
    )
    return functions
