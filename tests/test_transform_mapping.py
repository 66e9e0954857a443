"""map_item: DynamoDB typed JSON -> Iceberg row, per column type."""

import base64
import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest

from s3tstream.transform import RecordError, Settings, dumps_exact, keys_row, map_item, plain_value


def settings_for(*columns, extra=None, date_format="days", keys=("pk",)):
    cols = [{"name": "pk", "type": "string", "required": True}]
    for c in columns:
        cols.append(c if isinstance(c, dict) else {"name": c[0], "type": c[1]})
    doc = {"database": "db", "table": "t", "mode": "upsert", "keys": list(keys), "columns": cols,
           "extra_column": extra, "date_format": date_format}
    return Settings.from_dict(doc)


def one(type_text, value, **kw):
    """Map a single attribute 'v' of the given column type."""
    s = settings_for(("v", type_text), **kw)
    return map_item({"pk": {"S": "k"}, "v": value}, s)["v"]


def fails(type_text, value, fragment="", **kw):
    with pytest.raises(RecordError) as info:
        one(type_text, value, **kw)
    assert "column 'v'" in info.value.reason
    assert fragment in info.value.reason
    return info.value.reason


# ----------------------------------------------------------------- numbers
def test_int_and_long_exact_and_ranged():
    assert one("int", {"N": "2147483647"}) == 2147483647
    assert one("int", {"N": "-2147483648"}) == -2147483648
    fails("int", {"N": "2147483648"}, "out of range for int")
    assert one("long", {"N": "9223372036854775807"}) == 2**63 - 1
    fails("long", {"N": "9223372036854775808"}, "out of range for long")
    assert one("long", {"N": "1.000"}) == 1
    assert one("long", {"N": "1E3"}) == 1000
    fails("long", {"N": "1.5"}, "not an integer")
    fails("long", {"N": "abc"}, "not a number")
    fails("long", {"N": 5}, "JSON string")  # numbers arrive as text, never as JSON numbers
    fails("long", {"S": "5"}, "cannot convert a DynamoDB S value to long")
    fails("long", {"N": "1E+99999"}, "out of range")


def test_decimal_is_exact_and_never_rounded():
    big = "12345678901234567890.123456789"
    value = one("decimal(38,9)", {"N": big})
    assert value == Decimal(big) and isinstance(value, Decimal)
    assert dumps_exact({"v": value}) == '{"v":' + big + "}"
    # the declared scale is always written out
    assert dumps_exact({"v": one("decimal(38,12)", {"N": big})}) == '{"v":' + big + "000}"
    assert str(one("decimal(5,2)", {"N": "1.5"})) == "1.50"
    assert str(one("decimal(5,2)", {"N": "-0.10"})) == "-0.10"
    assert str(one("decimal(5,2)", {"N": "1.50000"})) == "1.50"  # trailing zeros are not digits lost
    fails("decimal(5,2)", {"N": "1.505"}, "more than 2 fractional digits")
    fails("decimal(5,2)", {"N": "1000.5"}, "more than 5 digits")
    fails("decimal(38,0)", {"N": "1" + "0" * 38}, "more than 38 digits")
    assert one("decimal(38,0)", {"N": "9" * 38}) == Decimal("9" * 38)
    assert dumps_exact([one("decimal(10,8)", {"N": "1E-7"})]) == "[0.00000010]"  # no exponent


def test_float_and_double():
    assert one("double", {"N": "0.1"}) == 0.1
    assert one("double", {"N": "1E+125"}) == 1e125
    assert one("float", {"N": "0.5"}) == 0.5
    assert one("float", {"N": "0.1"}) == pytest.approx(0.1, rel=1e-7)
    assert one("float", {"N": "0.1"}) != 0.1  # rounded to single precision, as Iceberg stores it
    fails("float", {"N": "1E+39"}, "out of range for float")
    fails("double", {"N": "NaN"}, "")
    fails("double", {"N": "Infinity"}, "")


# ----------------------------------------------------------------- time
def micros(dt):
    return (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // __import__("datetime").timedelta(microseconds=1)


@pytest.mark.parametrize("t", ["timestamp", "timestamptz"])
def test_timestamps_are_epoch_microseconds(t):
    exp = micros(datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc))
    assert one(t, {"S": "2024-05-01T12:30:15.123456Z"}) == exp
    assert one(t, {"S": "2024-05-01T12:30:15.123456"}) == exp  # naive means UTC
    assert one(t, {"S": "2024-05-01T14:30:15.123456+02:00"}) == exp
    assert one(t, {"N": "1714566615"}) == exp // 1_000_000 * 1_000_000  # seconds
    assert one(t, {"N": "1714566615123"}) == exp // 1000 * 1000  # milliseconds
    assert one(t, {"N": "1714566615.123456"}) == exp  # fractional seconds
    assert one(t, {"N": "0"}) == 0
    assert one(t, {"N": "-1"}) == -1_000_000
    fails(t, {"S": "yesterday"}, "not an ISO-8601 timestamp")
    fails(t, {"N": "1" + "0" * 20}, "out of range")
    fails(t, {"BOOL": True}, "cannot convert")


def test_dates():
    assert one("date", {"S": "1970-01-02"}) == 1
    assert one("date", {"S": "1969-12-31"}) == -1
    assert one("date", {"S": "2024-05-01"}) == (date(2024, 5, 1) - date(1970, 1, 1)).days
    assert one("date", {"N": "86399"}) == 0  # epoch seconds, floored to the day
    assert one("date", {"N": "86400000"}) == 1000  # < 1e11: seconds
    assert one("date", {"N": "172800000"}) == 2000
    assert one("date", {"N": "172800000000"}) == 2000  # >= 1e11: milliseconds
    assert one("date", {"S": "2024-05-01"}, date_format="iso") == "2024-05-01"
    assert one("date", {"N": "0"}, date_format="iso") == "1970-01-01"
    fails("date", {"S": "2024-02-30"}, "not an ISO-8601 date")


# ----------------------------------------------------------------- strings, binary, bool, null
def test_strings_take_any_scalar_and_json_text_for_containers():
    assert one("string", {"S": "héllo"}) == "héllo"
    assert one("string", {"N": "1.10"}) == "1.10"  # the number text, verbatim
    assert one("string", {"BOOL": False}) == "false"
    assert one("string", {"B": "AAE="}) == "AAE="
    assert one("string", {"M": {"b": {"N": "2"}, "a": {"S": "x"}}}) == '{"a":"x","b":2}'
    assert one("string", {"L": [{"N": "1.10"}, {"NULL": True}]}) == "[1.10,null]"
    assert one("string", {"SS": ["b", "a"]}) == '["a","b"]'
    assert one("string", {"NS": ["10", "9", "-1.5"]}) == "[-1.5,9,10]"
    fails("string", {"N": "x1"}, "not a number")
    fails("string", {"S": 1}, "JSON string")


def test_binary_is_validated_base64():
    raw = bytes(range(256))
    b64 = base64.b64encode(raw).decode()
    assert base64.b64decode(one("binary", {"B": b64})) == raw
    fails("binary", {"B": "not base64!"}, "base64")
    fails("binary", {"S": "AAE="}, "cannot convert")


def test_boolean():
    assert one("boolean", {"BOOL": True}) is True
    assert one("boolean", {"BOOL": False}) is False
    fails("boolean", {"BOOL": "true"}, "true or false")
    fails("boolean", {"N": "1"}, "cannot convert")


@pytest.mark.parametrize("t", ["string", "long", "decimal(5,2)", "timestamptz", "date", "binary",
                               "boolean", "list<string>", "map<string,long>", "struct<a:int>"])
def test_null_is_none_never_true(t):
    assert one(t, {"NULL": True}) is None
    row = map_item({"pk": {"S": "k"}, "v": {"NULL": True}}, settings_for(("v", t)))
    assert '"v":null' in dumps_exact(row)


# ----------------------------------------------------------------- containers
def test_declared_list_map_struct_are_typed_recursively():
    t = "struct<id:long,tags:list<string>,scores:map<string,decimal(6,3)>,inner:struct<at:timestamp>>"
    value = one(t, {"M": {
        "id": {"N": "7"},
        "tags": {"L": [{"S": "x"}, {"NULL": True}]},
        "scores": {"M": {"a": {"N": "1.5"}, "b": {"N": "-0.125"}}},
        "inner": {"M": {"at": {"N": "1"}}},
        "ignored": {"S": "not a field"},
    }})
    assert value == {"id": 7, "tags": ["x", None],
                     "scores": {"a": Decimal("1.500"), "b": Decimal("-0.125")},
                     "inner": {"at": 1_000_000}}
    assert str(value["scores"]["a"]) == "1.500"
    # values off the generated fast path still map (or fail with a reason), also nested
    assert one("struct<a:int,b:double,c:boolean>",
               {"M": {"a": {"N": "1E3"}, "b": {"N": "2"}, "c": {"NULL": True}}}) == \
        {"a": 1000, "b": 2.0, "c": None}
    fails("struct<a:int>", {"M": {"a": {"N": "2147483648"}}}, "out of range for int")
    fails("struct<a:double>", {"M": {"a": {"N": "1E+400"}}}, "out of range for double")
    # missing struct fields are present as None
    assert one("struct<a:int,b:string>", {"M": {"a": {"N": "1"}}}) == {"a": 1, "b": None}
    fails("struct<a:int>", {"M": {"a": {"S": "1"}}}, "cannot convert a DynamoDB S value to int")
    fails("list<long>", {"L": [{"N": "1"}, {"N": "1.5"}]}, "not an integer")
    fails("map<string,long>", {"L": []}, "cannot convert a DynamoDB L value")


def test_sets_become_sorted_lists():
    assert one("list<string>", {"SS": ["b", "a", "C"]}) == ["C", "a", "b"]
    assert one("list<long>", {"NS": ["10", "9", "-3"]}) == [-3, 9, 10]
    assert one("list<decimal(4,1)>", {"NS": ["2", "10.5", "1"]}) == [Decimal("1.0"), Decimal("2.0"),
                                                                     Decimal("10.5")]
    assert one("list<string>", {"NS": ["10", "9"]}) == ["9", "10"]  # numeric order, not text order
    b1, b2 = base64.b64encode(b"\xff").decode(), base64.b64encode(b"\x00\x01").decode()
    assert one("list<binary>", {"BS": [b1, b2]}) == [b2, b1]  # by bytes
    assert one("list<timestamp>", {"NS": ["2", "1"]}) == [1_000_000, 2_000_000]
    fails("list<boolean>", {"SS": ["true"]}, "cannot convert a DynamoDB SS value")
    fails("list<string>", {"SS": ["a", 1]}, "")


@pytest.mark.parametrize("typ,value,expected", [
    ("list<int>", {"L": [{"N": "1"}, {"NULL": True}, {"N": "2147483647"}]}, [1, None, 2147483647]),
    ("list<long>", {"L": [{"N": "1.0"}, {"N": "1E2"}, {"N": " 3"}]}, [1, 100, 3]),
    ("list<long>", {"L": []}, []),
    ("list<double>", {"L": [{"N": "1.5"}, {"N": "-0"}, {"NULL": True}]}, [1.5, -0.0, None]),
    ("list<string>", {"L": [{"S": "a"}, {"N": "2"}, {"BOOL": True}]}, ["a", "2", "true"]),
    ("list<boolean>", {"L": [{"BOOL": False}, {"NULL": True}]}, [False, None]),
    ("list<int>", {"NS": ["3", "-1", "2"]}, [-1, 2, 3]),
    ("list<double>", {"NS": ["3", "-1.5"]}, [-1.5, 3.0]),
    ("map<string,long>", {"M": {"a": {"N": "9223372036854775807"}, "b": {"NULL": True}}},
     {"a": 9223372036854775807, "b": None}),
    ("map<string,double>", {"M": {"a": {"N": "2.5"}}}, {"a": 2.5}),
    ("map<string,string>", {"M": {"a": {"S": "x"}, "b": {"N": "1"}}}, {"a": "x", "b": "1"}),
])
def test_generated_list_and_map_converters_agree_with_the_rules(typ, value, expected):
    assert one(typ, value) == expected


@pytest.mark.parametrize("typ,value,fragment", [
    ("list<int>", {"L": [{"N": "1"}, {"N": "2147483648"}]}, "out of range for int"),
    ("list<int>", {"NS": ["1", "-2147483649"]}, "out of range for int"),
    ("list<long>", {"L": [{"N": 5}]}, "must be a JSON string"),  # a JSON number is not an N text
    ("list<long>", {"NS": [5]}, "must be a JSON string"),
    ("list<double>", {"L": [{"N": "1e999"}]}, "out of range for double"),
    ("list<double>", {"L": [{"N": True}]}, "must be a JSON string"),
    ("list<string>", {"L": [{"S": 5}]}, "must be a JSON string"),
    ("list<boolean>", {"L": [{"BOOL": "yes"}]}, "BOOL value must be true or false"),
    ("map<string,int>", {"M": {"a": {"N": "-2147483649"}}}, "out of range for int"),
    ("map<string,double>", {"M": {"a": {"N": "nan"}}}, ""),
])
def test_generated_list_and_map_converters_report_what_the_rules_refuse(typ, value, fragment):
    fails(typ, value, fragment)


def test_undeclared_attributes_go_to_the_extra_column_as_plain_json():
    s = settings_for(("n", "long"), extra="extra")
    row = map_item({
        "pk": {"S": "k"}, "n": {"N": "1"},
        "zeta": {"M": {"deep": {"L": [{"N": "12345678901234567890.123456789"}, {"B": "AAE="}]}}},
        "alpha": {"SS": ["y", "x"]}, "flag": {"BOOL": True}, "gone": {"NULL": True},
    }, s)
    assert row["extra"] == ('{"alpha":["x","y"],"flag":true,"gone":null,'
                            '"zeta":{"deep":[12345678901234567890.123456789,"AAE="]}}')
    assert json.loads(row["extra"], parse_float=Decimal)["zeta"]["deep"][0] == \
        Decimal("12345678901234567890.123456789")
    assert map_item({"pk": {"S": "k"}}, s) == {"pk": "k", "n": None, "extra": None}
    # without an extra column, undeclared attributes are dropped
    assert map_item({"pk": {"S": "k"}, "zzz": {"S": "x"}}, settings_for()) == {"pk": "k"}


def test_source_names_map_to_columns():
    s = Settings.from_dict({
        "database": "db", "table": "t", "mode": "upsert", "keys": ["pk"], "extra_column": "extra",
        "columns": [{"name": "pk", "type": "string", "required": True, "source": "PK"},
                    {"name": "created", "type": "timestamptz", "source": "createdAt"}]})
    row = map_item({"PK": {"S": "a"}, "createdAt": {"N": "1"}, "other": {"N": "2"}}, s)
    assert row == {"pk": "a", "created": 1_000_000, "extra": '{"other":2}'}


# ----------------------------------------------------------------- required columns, errors
def test_required_column_missing_or_null():
    s = settings_for({"name": "n", "type": "long", "required": True})
    with pytest.raises(RecordError, match="'n'.*missing"):
        map_item({"pk": {"S": "k"}}, s)
    with pytest.raises(RecordError, match="'n'.*NULL"):
        map_item({"pk": {"S": "k"}, "n": {"NULL": True}}, s)
    assert map_item({"pk": {"S": "k"}, "n": {"N": "3"}}, s) == {"pk": "k", "n": 3}


@pytest.mark.parametrize("value", [5, "S", [], {}, {"X": "1"}, {"S": None}, {"M": []},
                                   {"L": {}}, {"SS": "ab"}, {"NS": [1]}, {"BS": ["!!"]}])
def test_malformed_values_raise_record_error_only(value):
    s = settings_for(("a", "string"), ("b", "list<long>"), ("c", "struct<x:int>"), extra="extra")
    for col in ("a", "b", "c", "other"):
        with pytest.raises(RecordError):
            map_item({"pk": {"S": "k"}, col: value}, s)


def test_json_null_instead_of_a_typed_value():
    s = settings_for(("a", "string"), extra="extra")
    assert map_item({"pk": {"S": "k"}, "a": None}, s)["a"] is None  # same as absent
    with pytest.raises(RecordError, match="'extra'"):
        map_item({"pk": {"S": "k"}, "other": None}, s)


def test_image_must_be_an_object():
    with pytest.raises(RecordError, match="JSON object"):
        map_item([], settings_for())  # type: ignore[arg-type]


def test_settings_dict_is_accepted():
    doc = settings_for(("n", "long")).to_dict()
    assert map_item({"pk": {"S": "k"}, "n": {"N": "5"}}, doc) == {"pk": "k", "n": 5}


def test_keys_row():
    s = settings_for(("sk", "long"), ("x", "string"), keys=("pk", "sk"), extra="extra")
    assert keys_row({"pk": {"S": "a"}, "sk": {"N": "2"}}, s) == \
        {"pk": "a", "sk": 2, "x": None, "extra": None}
    with pytest.raises(RecordError, match="'sk'"):
        keys_row({"pk": {"S": "a"}}, s)


def test_plain_value_and_dumps_exact():
    assert plain_value({"N": "1"}) == 1 and plain_value({"N": "0.5"}) == 0.5
    assert plain_value({"N": "1.10"}) == Decimal("1.10")
    assert dumps_exact({"a": Decimal("1.10"), "b": [Decimal("-2.000")]}) == '{"a":1.10,"b":[-2.000]}'
    with pytest.raises(RecordError):
        plain_value({"Q": "x"})
    assert plain_value({"NS": ["10", "-2", "3"]}) == [-2, 3, 10]
    assert plain_value({"NS": ["10", "-2", "1.5", "0.10"]}) == [-2, Decimal("0.10"), 1.5, 10]
    with pytest.raises(RecordError, match="JSON string"):
        plain_value({"NS": ["1", 2]})


def test_dumps_exact_is_exact_even_when_a_string_mimics_the_marker():
    from s3tstream.transform import exactjson

    tricky = exactjson._OPEN + "1" + exactjson._CLOSE
    obj = {"s": tricky, "d": Decimal("0.10"), "t": '"' + tricky + '"'}
    out = dumps_exact(obj)
    assert json.loads(out, parse_float=Decimal) == {"s": tricky, "d": Decimal("0.10"),
                                                   "t": '"' + tricky + '"'}
    assert '"d":0.10' in out
