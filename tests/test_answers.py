"""Query results as JSON carries them from the recording service (``scope.storage.answers``)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid

from hypothesis import given
from hypothesis import strategies as st
from scope.storage.answers import decode_value, encode_value

#: every kind of value a DuckDB row can hold that the service sends back
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.timedeltas()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.uuids()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(VALUES)
def test_a_value_comes_back_as_it_was_sent(value):
    assert decode_value(json.loads(json.dumps(encode_value(value)))) == value


def test_each_kind_comes_back_with_its_type():
    row = [
        dt.datetime(2026, 12, 4, 17, 5, 1, 250),
        dt.date(2026, 12, 4),
        dt.time(17, 5),
        dt.timedelta(days=2, microseconds=7),
        decimal.Decimal("1.10"),
        uuid.UUID(int=7),
        b"\x00\xff",
    ]
    back = decode_value(json.loads(json.dumps(encode_value(row))))
    assert back == row and [type(v) for v in back] == [type(v) for v in row]


def test_a_tuple_comes_back_as_a_list_and_an_unknown_object_as_its_text():
    assert decode_value(encode_value((1, "a"))) == [1, "a"]
    assert decode_value(encode_value(object)) == str(object)
