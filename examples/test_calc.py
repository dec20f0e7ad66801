"""Tests of the bundled calculator, for trying ``pytest --scope`` on.

One of them fails on purpose (it expects the wrong precedence), so that
``scope tests --failed`` and ``scope test`` have something to show:

    pytest --scope examples/test_calc.py
    scope tests
    scope test test_precedence

The project's own test run does not collect this file (its ``testpaths`` is
``tests``); name it on the command line as above.
"""

from __future__ import annotations

import pytest
from calc import CalcError, evaluate, fib


def test_addition():
    assert evaluate("1 + 2") == 3


def test_parentheses():
    assert evaluate("2 * (3 + 4)") == 14


def test_precedence():
    assert evaluate("1 + 2 * 3") == 9  # wrong on purpose: it is 7


def test_division_by_zero():
    with pytest.raises(CalcError, match="division by zero"):
        evaluate("1 / (2 - 2)")


def test_fib():
    assert [fib(n) for n in range(8)] == [0, 1, 1, 2, 3, 5, 8, 13]
