"""plaintext.py renders typed values to exactly the text plain_value + dumps_exact give (or raises what they raise)."""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3tstream.transform import dumps_exact, plain_value
from s3tstream.transform import plaintext

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(fn, *args):
    try:
        return "ok", fn(*args)
    except Exception as exc:  # noqa: BLE001 - compared as (type, message)
        return "error", type(exc).__name__, str(exc)


def reference_members(m, skip=frozenset()):
    return dumps_exact({k: plain_value(x) for k, x in m.items() if k not in skip}, True)


def reference_elements(items):
    return dumps_exact([plain_value(x) for x in items], True)


def same(value):
    """members_text and elements_text agree with the reference on one typed value."""
    assert outcome(plaintext.members_text, {"a": value, "b": {"S": "x"}}) == \
        outcome(reference_members, {"a": value, "b": {"S": "x"}})
    assert outcome(plaintext.elements_text, [value, {"N": "1"}]) == \
        outcome(reference_elements, [value, {"N": "1"}])


NUMBERS = ["0", "-0", "7", "-7", "007", "00", "\u00b2", "1\u00b2", "+5", " 5", "5 ", "1_000", "\u0663", "1e5", "1E+3", "1.5e3",
           "0.0", "-0.0", "1.0", "10.0", "1.10", "123.10", "-0.50", "0.1", "0.30000000000000004",
           "0.0000001", "0.00000010", "1e-07", ".5", "5.", "00.5", "-", "", "inf", "-Infinity", "NaN",
           "9" * 40, "9" * 5000, "1." + "9" * 5000, "12345678901234567890.123456789"]
ODD = [
    {}, {"X": 1}, {"S": 1}, {"S": None}, {"N": 5}, {"N": None}, {"BOOL": "true"}, {"BOOL": 1},
    {"NULL": False}, {"NULL": "x"}, {"M": []}, {"M": "x"}, {"L": {}}, {"L": "x"}, {"SS": "x"},
    {"SS": ["b", 1]}, {"SS": []}, {"NS": []}, {"NS": ["2", "1.5", "1"]}, {"NS": ["x"]}, {"NS": [1]},
    {"NS": "1"}, {"B": "not base64!"}, {"B": "YQ=="}, {"B": ""}, {"BS": ["Yg==", "YQ=="]},
    {"N": "1", "S": "a"}, {"S": "a", "N": "1"}, {"M": {}, "L": []}, {"BOOL": True, "S": "x"},
    {"M": {"k": {"S": "v"}, "e": {}}}, {"M": {"k": "raw"}}, {"L": [None]}, {"L": ["S"]},
    {"L": [{"S": "a"}, {"N": "1e5"}, {"BOOL": False}]}, {"M": {"S": {"S": "x"}, "N": {"N": "1"}}},
    "S", ["N"], None, 5,
]
STRINGS = ["", "plain", 'quo"te', "back\\slash", "ctl\x00\x1f", "é ü 日本", "\u2028\u2029", "\ud800",
           "S3T" + "0" * 16 + "<"]


@pytest.mark.parametrize("n", NUMBERS)
def test_numbers_render_as_the_reference_does(n):
    same({"N": n})
    same({"NS": [n, "3"]})


@pytest.mark.parametrize("value", ODD, ids=repr)
def test_odd_values_render_or_fail_as_the_reference_does(value):
    same(value)


@pytest.mark.parametrize("s", STRINGS)
def test_strings_and_keys_are_escaped_as_the_encoder_does(s):
    same({"S": s})
    same({"SS": [s, "a"]})
    same({"M": {s: {"S": s}, "z": {"N": "1"}}})
    assert plaintext.members_text({s: {"S": "v"}}) == reference_members({s: {"S": "v"}})


def test_nesting_deeper_than_dynamodb_allows_still_matches():
    deep = {"S": "x"}
    for i in range(40):
        deep = {"M": {"k": deep}} if i % 2 else {"L": [deep]}
    same(deep)


def test_skip_leaves_out_those_attributes_and_nothing_left_is_an_empty_object():
    item = {"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"N": "2.50"}}
    assert plaintext.members_text(item, frozenset({"pk", "sk"})) == '{"x":2.50}'
    assert plaintext.members_text(item, frozenset(item)) == "{}"


def test_usual_values_render_without_the_reference(monkeypatch):
    """The shapes DynamoDB sends every day take the fast path (the speed this module is for)."""
    item = {
        "s": {"S": "Zürich \"q\""}, "i": {"N": "42"}, "neg": {"N": "-17"}, "f": {"N": "3.25"},
        "d": {"N": "123.10"}, "tiny": {"N": "0.0000001"}, "z": {"N": "0"}, "t": {"BOOL": True},
        "n": {"NULL": True}, "b": {"B": base64.b64encode(b"\x00\xff").decode()},
        "ss": {"SS": ["b", "a"]}, "ns": {"NS": ["10", "9", "-1"]}, "e": {"M": {}}, "el": {"L": []},
        "m": {"M": {"geo": {"M": {"lat": {"N": "38.7223"}, "lon": {"N": "-9.1393"}}},
                    "ok": {"BOOL": False}}},
        "l": {"L": [{"N": "1"}, {"S": "x"}, {"M": {"at": {"N": "5"}}}, {"L": [{"NULL": True}]}]},
    }
    expected = reference_members(item)

    def refuse(*_args):
        raise AssertionError("took the reference path")

    monkeypatch.setattr(plaintext, "plain_value", refuse)
    monkeypatch.setattr(plaintext, "dumps_exact", refuse)
    assert plaintext.members_text(item) == expected
    assert plaintext.elements_text(list(item.values())) == reference_elements(list(item.values()))


# ---- random typed values, the odd ones included
n_text = st.one_of(
    st.sampled_from(NUMBERS),
    st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,20})?", fullmatch=True),
    st.from_regex(r"[-+ ]?[0-9_]{0,4}(\.[0-9]{0,4})?([eE][-+]?[0-9]{1,3})? ?", fullmatch=True),
    st.text(max_size=4),
)
b64 = st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())
junk = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=3))
leaf = st.one_of(
    st.builds(lambda s: {"S": s}, st.one_of(st.text(max_size=8), junk)),
    st.builds(lambda n: {"N": n}, st.one_of(n_text, junk)),
    st.builds(lambda b: {"BOOL": b}, st.one_of(st.booleans(), junk)),
    st.builds(lambda x: {"NULL": x}, junk),
    st.builds(lambda b: {"B": b}, st.one_of(b64, junk)),
    st.builds(lambda xs: {"SS": xs}, st.lists(st.one_of(st.text(max_size=4), junk), max_size=4)),
    st.builds(lambda xs: {"NS": xs}, st.lists(st.one_of(n_text, junk), max_size=4)),
    st.builds(lambda xs: {"BS": xs}, st.lists(b64, max_size=3)),
    st.dictionaries(st.sampled_from(["S", "N", "BOOL", "NULL", "M", "X"]), junk, max_size=3),
    junk,
)
typed = st.recursive(
    leaf,
    lambda inner: st.one_of(
        st.builds(lambda m: {"M": m}, st.dictionaries(st.text(max_size=4), inner, max_size=4)),
        st.builds(lambda xs: {"L": xs}, st.lists(inner, max_size=4)),
    ),
    max_leaves=12,
)


@FAST
@given(st.dictionaries(st.text(max_size=5), typed, max_size=6), st.sets(st.text(max_size=5), max_size=2))
def test_random_values_render_or_fail_as_the_reference_does(item, skip):
    skip = frozenset(skip) | frozenset(list(item)[:1])
    assert outcome(plaintext.members_text, item, skip) == outcome(reference_members, item, skip)
    values = list(item.values())
    assert outcome(plaintext.elements_text, values) == outcome(reference_elements, values)
