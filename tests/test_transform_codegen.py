"""The generated code (codegen.py) maps exactly as the per-type converters do, or leaves it to them.

The reference is the same settings compiled without the generated mapper and
structs, and lists without the SS fast path: the hand-written converters of
converters.py and mapping's column loop (_map_slow).  For
every tricky value the generated mapper must give the same row (same types: 1 is not
1.0, Decimal("1.50") is not Decimal("1.5")) or raise, so that map_row redoes the row
and reports the reference's error.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3tstream.transform import Settings
from s3tstream.transform import converters, mapping
from s3tstream.transform.codegen import generate_list
from s3tstream.transform.mapping import map_row, plan_for

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TYPES = {
    "ts": "timestamptz", "tn": "timestamp", "d": "date", "dec": "decimal(5,2)", "big": "decimal(18,2)",
    "bin": "binary", "s": "string", "ls": "list<string>", "ll": "list<long>", "li": "list<int>",
    "ld": "list<double>", "lb": "list<boolean>", "md": "map<string,double>", "mi": "map<string,int>",
    "ms": "map<string,string>", "lf": "list<float>",
    "st": "struct<t:timestamptz,d:date,dec:decimal(5,2),b:binary,s:string>",
    "nst": "struct<a:struct<t:timestamptz,l:list<long>,z:struct<q:int>>,m:map<string,double>,b:boolean>",
}


def doc(date_format="days", extra="extra"):
    cols = [{"name": "pk", "type": "string", "required": True}]
    cols += [{"name": n, "type": t} for n, t in TYPES.items()]
    return {"database": "db", "table": "t", "mode": "upsert", "keys": ["pk"], "columns": cols,
            "extra_column": extra, "date_format": date_format}


def _never(image):
    raise RuntimeError("no generated mapper in the reference")


def reference(document):
    """The settings compiled without generated code (monkeypatched for the compile only)."""
    with pytest.MonkeyPatch.context() as m:
        # Lists as generated before the SS fast path: an NS converts whatever other tags the
        # value has (unlike the dispatch, which takes the first tag), and the mapper keeps that.
        m.setattr(converters, "generate_list", lambda name, elem_name, elem, slow, numeric_set, _ss: (
            generate_list(name, elem_name, elem, slow, numeric_set)))
        m.setattr(converters, "generate_map", lambda *a, **k: None)
        m.setattr(converters, "generate_struct", lambda name, fields, slow, loop, date_format: (
            lambda v: loop(val) if (val := v.get("M")).__class__ is dict else slow(v)))  # its outer shape
        m.setattr(mapping, "generate_mapper", lambda *a, **k: _never)
        s = Settings.from_dict(document)
        plan_for(s)
    return s


SETTINGS = [(Settings.from_dict(doc(f, e)), reference(doc(f, e)))
            for f in ("days", "iso") for e in ("extra", None)]


def outcome(fn, *args):
    try:
        return "ok", repr(fn(*args))
    except Exception as exc:  # noqa: BLE001 - compared as (type, message)
        return "error", type(exc).__name__, str(exc)


def same(column, value):
    for new, ref in SETTINGS:
        image = {"pk": {"S": "k"}, column: value, "other": {"N": "1"}}
        expected = outcome(map_row, image, ref)
        assert outcome(map_row, image, new) == expected, (column, value)
        fast = outcome(plan_for(new).fast, image)
        if fast[0] == "ok":  # the generated mapper may only give up, never differ
            assert fast == outcome(lambda: map_row(image, ref)[0]), (column, value)


def same_for_all(column, values):
    """same() for each value (one test per column, not per value: ~3,000 test ids cost the
    parallel suite more in bookkeeping than the checks themselves); every mismatch is listed."""
    failures = []
    for value in values:
        try:
            same(column, value)
        except AssertionError as e:
            failures.append(f"{value!r}: {e}")
    assert not failures, f"{len(failures)} value(s) differ:\n" + "\n".join(failures[:20])


TIMES = ["2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123456+05:30", "2024-05-01T10:00:00",
         "2024-05-01", "2024-05-01T10:00:00.1234567Z", "20240501T100000Z", "0001-01-01T00:00:00+01:00",
         "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999999-01:00",
         "2024-02-30", "bad", "", " 2024-05-01"]
EPOCHS = ["0", "-0", "1700000000", "1700000000000", "99999999999", "100000000000", "-100000000000",
          "253402300799", "253402300800", "253402300800000", "-62135596800", "-62135596801",
          "1.5", "-1.5", "1e3", "1E11", " 5", "5 ", "1_000", "\u0663", "99999999999999999999999", "abc", ""]
DECIMALS = ["0", "-0", "1", "1.5", "1.50", "1.505", "-0.00", "999.99", "1000", "-999.99", "1e2", "1E-2",
            "1.0E+2", "NaN", "sNaN", "-NaN", "Infinity", "-inf", " 1.5", "1.5 ", "1_0.5", "\u0663.5",
            "00001.00", "0.001", "0.010", "9999999999999999.99", "10000000000000000.00",
            "123456789012345678901234567890", "", "abc", ".5", "5."]
B64 = ["YQ==", "YQ", "YWJj", "not base64!", "", " YQ==", "YQ==\n", "YQ=a"]
OTHERS = [None, {}, {"NULL": True}, {"NULL": False}, {"BOOL": True}, {"S": 5}, {"N": 5}, {"B": 5},
          {"S": None}, {"N": None}, {"M": {}}, {"L": []}, {"SS": ["b", "a"]}, {"NS": ["2", "1"]},
          {"X": 1}, "S", ["N"], 5]


def values():
    out = list(OTHERS)
    out += [{"S": t} for t in TIMES + DECIMALS + B64]
    out += [{"N": n} for n in EPOCHS + DECIMALS]
    out += [{"B": b} for b in B64]
    out += [{"S": "2024-05-01", "N": "1"}, {"N": "1", "S": "2024-05-01"}, {"S": None, "N": "5"},
            {"S": 5, "N": "5"}, {"NULL": True, "S": "2024-05-01"}, {"N": "1.5", "S": 5},
            {"B": "YQ==", "S": "x"}, {"S": "x", "B": "YQ=="}]
    return out


@pytest.mark.parametrize("column", sorted(TYPES))
def test_scalar_columns_map_as_the_converters_do(column):
    same_for_all(column, values())


STRINGISH = [{"M": {"b": {"BOOL": True}, "a": {"NULL": True}, "c": {"N": "007"}}},
             {"L": [{"BOOL": False}, {"NULL": True}, {"N": "10"}, {"N": "0"}, {"N": "-3"}, {"BOOL": 1}]},
             {"NULL": True, "M": {"a": {"S": "x"}}}, {"M": {"a": {"S": "x"}}, "NULL": True},
             {"S": 5, "M": {"a": {"S": "x"}}}, {"S": 5, "L": [{"S": "x"}]}, {"M": "x"}, {"L": "x"},
             {"M": "x", "L": []}, {"N": "1.50"}, {"BOOL": False}, {"SS": ["b", "a"]}, {"B": "YQ=="},
             {"M": {"n": {"N": "\u0663"}, "m": {"N": "\u00b2"}, "z": {"N": "00"}}}]
LISTS = [{"SS": []}, {"SS": ["b", "a", "C"]}, {"SS": ["a", 1]}, {"SS": [1]}, {"SS": [1, 2]},
         {"SS": "ab"}, {"SS": ["a"], "NULL": True}, {"NULL": True, "SS": ["a"]}, {"L": [], "SS": ["a"]},
         {"SS": ["a"], "L": [{"S": "b"}]}, {"NS": ["3", "-1", "10"]}, {"NS": []},
         {"NS": ["2147483648", "1"]}, {"NS": ["-2147483649", "1"]}, {"NS": ["9223372036854775808"]},
         {"NS": ["-9223372036854775808", "9223372036854775807"]}, {"NS": ["1.0", "2"]},
         {"NS": ["x"]}, {"NS": [1]}, {"L": [{"N": "1"}, {"N": "2147483648"}]},
         {"NS": ["1e999"]}, {"NS": ["nan", "1"]}, {"NS": ["1.5", "-0"]}, {"NS": ["3"], "L": None},
         {"L": [{"N": "1.0"}, {"NULL": True}]}, {"L": [{"BOOL": True}, {"BOOL": 0}]},
         {"L": [{"S": "a"}, {"N": "1"}]}, {"L": [{"N": "-2147483649"}]}, {"L": [{"N": " 7"}, {"N": "1e3"}]},
         {"M": {"a": {"N": "2147483648"}}}, {"M": {"a": {"N": "1.5"}, "b": {"NULL": True}}},
         {"M": {"a": {"N": "inf"}}}, {"M": {"a": {"S": "x"}, "b": {"N": "1"}}}, {"M": {}},
         {"M": {"a": {"N": 5}}}, {"M": [], "L": []}]


@pytest.mark.parametrize("column", ["s", "ls", "ll", "li", "ld", "lb", "md", "mi", "ms", "lf"])
def test_strings_and_lists_map_as_the_converters_do(column):
    same_for_all(column, STRINGISH + LISTS)


STRUCTS = [
    {"M": {"t": {"S": "2024-05-01T10:00:00Z"}, "d": {"S": "2024-05-01"}, "dec": {"N": "1.5"},
           "b": {"B": "YQ=="}, "s": {"M": {"k": {"BOOL": True}}}}},
    {"M": {"t": {"N": "1700000000000"}, "d": {"N": "86400"}, "dec": {"N": "1.505"}}},
    {"M": {"t": {"S": "bad"}}}, {"M": {"dec": {"N": "NaN"}}}, {"M": {"b": {"B": "YQ"}}},
    {"M": {"d": {"S": 5}}}, {"M": {"extra": {"S": "x"}, "t": {"N": "1"}}}, {"M": {}}, {"M": "x"},
    {"NULL": True, "M": {"t": {"N": "1"}}}, {"M": {"t": {"NULL": True}, "s": {"NULL": True}}},
    {"M": {"a": {"M": {"t": {"S": "2024-05-01T10:00:00+02:00"}, "l": {"NS": ["2", "1"]},
                       "z": {"M": {"q": {"N": "7"}}}}},
           "m": {"M": {"x": {"N": "0.5"}}}, "b": {"BOOL": False}}},
    {"M": {"a": {"M": {"z": {"M": {"q": {"N": "2147483648"}}}}}}},
    {"M": {"a": {"M": {"z": {"M": {"q": {"N": "1"}, "undeclared": {"S": "x"}}}}}}},
    {"M": {"a": {"M": {"l": {"L": [{"N": "1.0"}]}, "undeclared": {"N": "1"}}}}},
    {"M": {"a": {"NULL": True}, "m": {"M": {"x": {"N": "1e999"}}}}},
    {"M": {"a": {"M": {"z": {"S": "not a struct"}}}, "b": {"BOOL": "yes"}}},
    {"M": {"a": {"L": []}}}, {"M": {"a": 5}},
]


@pytest.mark.parametrize("column", ["st", "nst"])
def test_struct_fields_map_as_the_converters_do(column):
    same_for_all(column, STRUCTS)


POOL = values() + STRINGISH + LISTS + STRUCTS
tags = st.sampled_from(["S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS"])
payloads = st.sampled_from(TIMES + EPOCHS + DECIMALS + B64 + [None, True, 5, [], {}, ["a"], ["1"]])


@FAST
@given(st.sampled_from(sorted(TYPES)),
       st.one_of(st.sampled_from(POOL), st.dictionaries(tags, payloads, min_size=1, max_size=2)))
def test_any_typed_value_maps_as_the_converters_do(column, value):
    same(column, value)
