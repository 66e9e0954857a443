"""records._encode: the row's JSON without dumps_exact's Decimal bookkeeping when no Decimal can be left."""

import base64
import json
from decimal import Decimal

import pytest

from s3tstream.transform import Settings
from s3tstream.transform.exactjson import dumps_exact, dumps_no_decimal
from s3tstream.transform.records import _encode, _out_for


def text(payload):
    return base64.b64decode(payload).decode("utf-8")


ROWS = [
    {"a": 1, "b": "x\u00e9\"", "c": [1.5, None, True], "d": {"e": "f"}},
    {"a": Decimal("1.50"), "b": [Decimal("-0.00"), Decimal("1E+2")]},  # Decimals the splice does not take
    {"s": "S3T" + "0" * 16 + "<", "n": Decimal("2.5")},
    {},
]


@pytest.mark.parametrize("row", ROWS, ids=repr)
def test_rows_encode_the_same_with_or_without_the_bookkeeping(row):
    assert text(_encode(row, (), exact=False)) == text(_encode(row, (), exact=True)) == dumps_exact(row)


def test_the_decimal_splice_and_a_stray_decimal_elsewhere_stay_exact():
    row = {"x": 1, "dec": Decimal("12.30"), "other": Decimal("0.10"), "none": None}
    out = text(_encode(row, ("dec",), exact=False))
    assert out == '{"x":1,"other":0.10,"none":null,"dec":12.30}'
    assert out == text(_encode(row, ("dec",), exact=True))
    assert row["dec"] == Decimal("12.30")  # the caller's row is left as it was


def test_dumps_no_decimal_refuses_a_decimal_and_what_json_cannot_write():
    assert dumps_no_decimal({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(TypeError):
        dumps_no_decimal({"a": Decimal("1")})
    for exact in (True, False):
        with pytest.raises(TypeError):
            _encode({"a": object()}, (), exact=exact)
        with pytest.raises(ValueError):
            _encode({"a": float("nan")}, (), exact=exact)


def doc(*cols):
    return {"database": "db", "table": "t", "mode": "upsert", "keys": ["pk"],
            "columns": [{"name": "pk", "type": "string", "required": True}, *cols]}


def test_only_settings_with_nested_decimals_keep_the_bookkeeping():
    top = _out_for(Settings.from_dict(doc({"name": "d", "type": "decimal(5,2)"})))
    assert (top.decimals, top.exact) == (("d",), False)
    nested = _out_for(Settings.from_dict(doc({"name": "d", "type": "decimal(5,2)"},
                                             {"name": "l", "type": "list<decimal(4,1)>"})))
    assert (nested.decimals, nested.exact) == ((), True)
    plain = _out_for(Settings.from_dict(doc({"name": "n", "type": "long"})))
    assert (plain.decimals, plain.exact) == ((), False)
    row = {"pk": "k", "d": Decimal("1.50"), "l": [Decimal("2.0"), None]}
    assert json.loads(text(_encode(row, nested.decimals, nested.exact)), parse_float=Decimal) == row


def test_several_decimal_columns_are_spliced_in_order():
    row = {"x": "a", "d1": Decimal("1.50"), "d2": None, "d3": Decimal("1E+2")}
    for exact in (True, False):
        assert text(_encode(row, ("d1", "d2", "d3"), exact)) == '{"x":"a","d1":1.50,"d2":null,"d3":100}'
    assert text(_encode({"d1": Decimal("-0.00")}, ("d1",), False)) == '{"d1":-0.00}'
