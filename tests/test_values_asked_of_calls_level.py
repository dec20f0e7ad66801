"""Asking a calls-level run for values says it recorded none, and how to record them."""

from __future__ import annotations

APP = """
class Account:
    def __init__(self):
        self.balance = 0

    def deposit(self, amount):
        self.balance += amount
        return self.balance

account = Account()
account.deposit(5)
"""


def test_value_queries_of_a_run_without_values_say_so(write, scope):  # type: ignore[no-untyped-def]
    write("app.py", APP)
    assert scope("run", "app.py").returncode == 0
    for query in (["calls", "--arg", "amount=5"], ["calls", "--returned", "5"], ["history"]):
        answer = scope(*query)
        assert answer.returncode == 0, answer.stderr
        assert "run 1 recorded no values (every function at calls level)" in answer.stderr
        assert "--level args" in answer.stderr
    assert scope("calls").stderr == ""  # nothing asked of values: nothing said
    assert scope("run", "--level", "args", "app.py").returncode == 0
    found = scope("calls", "--arg", "amount=5")
    assert found.stderr == "" and "Account.deposit" in found.stdout
    assert scope("history").stderr == ""
