"""Value summaries: bounded, typed, never running user code unless asked, secrets redacted.

The expected renderings are computed from the values themselves (``repr`` of
the stored prefix, ``id()`` of the object) wherever the test can, so a test
fails if the recorder stores anything else.
"""

from __future__ import annotations

import contextlib

from tests.harness import load, record

SOURCE = """
def take(value):
    return value

def fails(value):
    raise ValueError(value)

def login(user, password, api_key=None, **options):
    return user

class Account:
    def __init__(self, owner, secret_token):
        self.owner = owner
        self.token = secret_token
        self.balance: int = 0

    def deposit(self, amount):
        self.balance = self.balance + amount
        self.history = [amount]
        return self.balance

class Watched:
    "Counts every dunder scope could be tempted to call."
    calls = 0

    def __repr__(self):
        Watched.calls += 1
        return "Watched!"

    def __eq__(self, other):
        Watched.calls += 1
        return False

    def __hash__(self):
        Watched.calls += 1
        return 1

    def __len__(self):
        Watched.calls += 1
        return 0

    def __getattr__(self, name):
        Watched.calls += 1
        raise AttributeError(name)

class Text(str):
    pass
"""


def summaries(level: str, values: list[object], **options: object) -> list[str | None]:
    module = load(SOURCE, level=level)
    rec = record(module, lambda m: [m.take(v) for v in values], **options)  # type: ignore[arg-type]
    calls = sorted(rec.named("take"), key=lambda c: c.id)
    assert len(calls) == len(values)
    for call in calls:
        assert call.returned == call.args["value"]  # the same object both ways
    return [c.args["value"] for c in calls]


def test_primitives_are_stored_by_value():
    values = [None, True, False, 0, -7, 2**62, 2**70, -(2**80), 1.5, float("inf"), -0.0, 1e-300]
    got = summaries("args", values)
    assert got[:7] == ["None", "True", "False", "0", "-7", str(2**62), "<int of 71 bits>"]
    assert got[7] == "<-int of 81 bits>"
    assert got[8:] == [repr(v) for v in values[8:]]


def test_strings_and_bytes_are_truncated_to_the_configured_bound():
    long_text = "abcdefghij" * 10
    values = ["", "short", long_text, "héllo wörld ✓ 𝄞", b"\x00\xffbytes", b"b" * 100]
    got = summaries("args", values, max_bytes=16)
    assert got[:2] == ["''", "'short'"]
    assert got[2] == repr(long_text[:16]) + "…"
    # Cut at a character boundary: the longest prefix whose UTF-8 fits in 16 bytes.
    fits = max(n for n in range(len(values[3])) if len(values[3][:n].encode()) <= 16)
    assert got[3] == repr(values[3][:fits]) + "…"
    assert got[4] == repr(b"\x00\xffbytes")
    assert got[5] == repr(b"b" * 16) + "…"


def test_containers_by_type_and_length_then_first_items_at_full():
    values = [[1, 2, 3], (1,), {"a": 1, "b": [2]}, {5}, frozenset(), list(range(10))]
    assert summaries("args", values) == [
        "list[3]",
        "tuple[1]",
        "dict[2]",
        "set[1]",
        "frozenset[0]",
        "list[10]",
    ]
    assert summaries("full", values, items=4) == [
        "[1, 2, 3]",
        "(1,)",
        "{'a': 1, 'b': list[1]}",
        "set({5})",
        "frozenset({})",
        "[0, 1, 2, 3, …]",
    ]


def test_other_objects_by_type_and_identity_without_running_their_code():
    module = load(SOURCE, level="full")
    watched = module.Watched()
    text = module.Text("x")
    rec = record(module, lambda m: [m.take(watched), m.take(text), m.take(m.Watched)])
    assert module.Watched.calls == 0
    got = [c.args["value"] for c in sorted(rec.named("take"), key=lambda c: c.id)]
    assert got == [
        f"<Watched at {id(watched):#x}>",
        f"<Text at {id(text):#x}>",  # a str subclass could override anything
        "<class 'Watched'>",
    ]


def test_repr_is_used_only_when_asked_and_its_calls_are_not_recorded():
    module = load(SOURCE, level="full")
    watched = module.Watched()
    rec = record(module, lambda m: m.take(watched), call_repr=True)
    assert module.Watched.calls == 2  # the argument, then the return value
    (take,) = rec.named("take")
    assert take.args["value"] == take.returned == "Watched!"
    # Watched.__repr__ is instrumented, but ran on scope's behalf: not a call of the program.
    assert rec.named("Watched.__repr__") == []
    assert rec.stats.unmatched_exits == 0


def test_a_raised_exception_is_summarised_with_its_message():
    module = load(SOURCE, level="args")
    rec = record(module, lambda m: _swallow(m.fails, "bad input"))
    (call,) = rec.named("fails")
    assert call.raised == "ValueError('bad input')" and call.returned is None


def _swallow(func, *args):
    with contextlib.suppress(Exception):
        func(*args)


def test_secret_arguments_attributes_and_keys_never_leave_the_process():
    module = load(SOURCE, level="full", redact=("pin*",))
    rec = record(
        module,
        lambda m: (
            m.login("ann", "hunter2", api_key="k-123", pin_code=1234, authorization="Bearer x"),
            m.Account("ann", "tok-456"),
        ),
        redact=("pin*",),  # the same pattern, matched by the same rule, as the plan's
    )
    (login,) = rec.named("login")
    assert login.args["user"] == "'ann'"
    assert login.args["password"] == "<redacted>" and login.args["api_key"] == "<redacted>"
    options = login.args["options"]
    assert "1234" not in options and "Bearer" not in options
    assert options == "{'pin_code': <redacted>, 'authorization': <redacted>}"
    (init,) = rec.named("Account.__init__")
    assert init.args["secret_token"] == "<redacted>"
    assert dict(init.attributes) == {"owner": "'ann'", "token": "<redacted>", "balance": "0"}
    everything = repr(rec.calls)
    for secret in ("hunter2", "k-123", "tok-456", "Bearer"):
        assert secret not in everything


def test_attribute_writes_on_self_in_order():
    module = load(SOURCE, level="args")
    rec = record(module, lambda m: m.Account("bo", "t").deposit(5))
    (deposit,) = rec.named("Account.deposit")
    assert deposit.attributes == [("balance", "5"), ("history", "list[1]")]
    assert deposit.args == {"self": deposit.args["self"], "amount": "5"}
    assert deposit.args["self"].startswith("<Account at 0x") and deposit.returned == "5"


def test_calls_level_records_no_values():
    module = load(SOURCE, level="calls")
    rec = record(module, lambda m: m.login("ann", "pw"))
    (login,) = rec.named("login")
    assert login.args == {} and login.returned is None


def test_a_full_arena_keeps_every_value_as_lost_and_counts_it():
    module = load(SOURCE, level="args")
    count = 200
    rec = record(
        module,
        lambda m: [m.take("x" * 500) for _ in range(count)],
        max_bytes=500,
        arena_bytes=4096,
    )
    calls = rec.named("take")
    assert len(calls) == count
    stored = [c.args["value"] for c in calls] + [c.returned for c in calls]
    lost = stored.count("<lost>")
    # Nothing is drained while the program runs here: the arena holds a few values only.
    assert lost > 0 and lost == rec.stats.values_lost
    assert all(v == repr("x" * 500) or v == "<lost>" for v in stored)
