"""A small calculator: tokenises, parses and evaluates arithmetic expressions.

It is scope's bundled example: a generator (the tokenizer), classes, recursion
(the recursive-descent parser, the evaluator and ``fib``) and an exception
that is raised several calls deep and caught (division by zero).

    python examples/calc.py "2 * (3 + 4)" "1 / (2 - 2)"
    python -m scope run examples/calc.py      # the same, recorded
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

DEFAULT_EXPRESSIONS = ["1 + 2 * 3", "2 * (3 + 4) - -5", "(1 + 2) * (3 + 4) / 7", "10 / (4 - 2 * 2)"]


class CalcError(Exception):
    """The expression cannot be read or evaluated."""


def tokenize(text: str) -> Iterator[str]:
    """Yield numbers, operators and parentheses, skipping spaces."""
    number = ""
    for char in text:
        if char.isdigit() or char == ".":
            number += char
            continue
        if number:
            yield number
            number = ""
        if char in "+-*/()":
            yield char
        elif not char.isspace():
            raise CalcError(f"unexpected character {char!r}")
    if number:
        yield number


class Number:
    def __init__(self, value: float) -> None:
        self.value = value

    def evaluate(self) -> float:
        return self.value


class Negate:
    def __init__(self, operand: Number | Negate | BinaryOp) -> None:
        self.operand = operand

    def evaluate(self) -> float:
        return -self.operand.evaluate()


class BinaryOp:
    def __init__(self, op: str, left: Node, right: Node) -> None:
        self.op, self.left, self.right = op, left, right

    def evaluate(self) -> float:
        left, right = self.left.evaluate(), self.right.evaluate()
        if self.op == "+":
            return left + right
        if self.op == "-":
            return left - right
        if self.op == "*":
            return left * right
        return divide(left, right)


Node = Number | Negate | BinaryOp


def divide(left: float, right: float) -> float:
    if right == 0:
        raise CalcError("division by zero")
    return left / right


class Parser:
    """Recursive descent: expression = term (('+'|'-') term)*, and so on down."""

    def __init__(self, tokens: Iterator[str]) -> None:
        self.tokens = list(tokens)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise CalcError("unexpected end of expression")
        self.pos += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while self.peek() in ("+", "-"):
            node = BinaryOp(self.take(), node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while self.peek() in ("*", "/"):
            node = BinaryOp(self.take(), node, self.factor())
        return node

    def factor(self) -> Node:
        token = self.take()
        if token == "-":
            return Negate(self.factor())
        if token == "(":
            node = self.expression()
            if self.take() != ")":
                raise CalcError("expected ')'")
            return node
        try:
            return Number(float(token))
        except ValueError:
            raise CalcError(f"expected a number, found {token!r}") from None


def evaluate(text: str) -> float:
    parser = Parser(tokenize(text))
    tree = parser.expression()
    if parser.peek() is not None:
        raise CalcError(f"unexpected {parser.peek()!r}")
    return tree.evaluate()


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def main(argv: list[str]) -> int:
    failures = 0
    for text in argv or DEFAULT_EXPRESSIONS:
        try:
            print(f"{text} = {evaluate(text):g}")
        except CalcError as exc:
            failures += 1
            print(f"{text}: error: {exc}")
    print(f"fib(15) = {fib(15)}")
    return 1 if argv and failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
