"""Property tests: random DynamoDB items through the transform match the documented mapping."""

import base64
import calendar
import json
import os
from datetime import date, datetime, timezone
from decimal import Decimal
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3tstream.transform import (
    ENV_SETTINGS,
    ENV_SETTINGS_Z,
    Settings,
    dumps_exact,
    encode_settings,
    handler,
    map_item,
    plain_value,
    transform_records,
)

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def norm(x):
    """Type-tagged form so True != 1 and 1.50 == 1.5 (numbers compare as exact decimals)."""
    if isinstance(x, dict):
        return {k: norm(v) for k, v in x.items()}
    if isinstance(x, list):
        return [norm(v) for v in x]
    if x is None:
        return ("null",)
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, str):
        return ("str", x)
    if isinstance(x, (int, float, Decimal)):
        return ("num", Decimal(repr(x)) if isinstance(x, float) else Decimal(x))
    raise TypeError(type(x))


def parse(text):
    return json.loads(text, parse_float=Decimal)


# ------------------------------------------------------------------ typed values + reference
def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


numbers = st.one_of(
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    st.decimals(min_value=-(10**20), max_value=10**20, places=9, allow_nan=False),
).map(lambda d: format(Decimal(d), "f"))

leaves = st.one_of(
    st.text(max_size=12).map(lambda s: ({"S": s}, s)),
    numbers.map(lambda n: ({"N": n}, Decimal(n))),
    st.booleans().map(lambda b: ({"BOOL": b}, b)),
    st.just(({"NULL": True}, None)),
    st.binary(max_size=12).map(lambda b: ({"B": b64(b)}, b64(b))),
    st.sets(st.text(max_size=6), min_size=1, max_size=4).map(
        lambda s: ({"SS": list(s)}, sorted(s))),
    st.sets(st.integers(-1000, 1000), min_size=1, max_size=4).map(
        lambda s: ({"NS": [str(x) for x in s]}, [Decimal(x) for x in sorted(s)])),
    st.sets(st.binary(min_size=1, max_size=4), min_size=1, max_size=3).map(
        lambda s: ({"BS": [b64(x) for x in s]}, [b64(x) for x in sorted(s)])),
)


def _containers(children):
    return st.one_of(
        st.dictionaries(st.text(max_size=6), children, max_size=4).map(
            lambda d: ({"M": {k: v[0] for k, v in d.items()}}, {k: v[1] for k, v in d.items()})),
        st.lists(children, max_size=4).map(lambda xs: ({"L": [x[0] for x in xs]}, [x[1] for x in xs])),
    )


typed_values = st.recursive(leaves, _containers, max_leaves=12)


@FAST
@given(typed_values)
def test_plain_json_text_matches_reference(pair):
    typed, expected = pair
    text = dumps_exact(plain_value(typed), sort_keys=True)
    assert norm(parse(text)) == norm(expected)


STRING_COL = Settings.from_dict({"database": "db", "table": "t", "mode": "upsert", "keys": ["pk"],
                                 "columns": [{"name": "pk", "type": "string", "required": True},
                                             {"name": "doc", "type": "string"}],
                                 "extra_column": "extra"})


@FAST
@given(typed_values, st.dictionaries(st.text(min_size=1, max_size=6).filter(
    lambda k: k not in ("pk", "doc")), typed_values, max_size=3))
def test_string_column_and_extra_column_hold_json_text_of_plain_values(doc, extras):
    item = {"pk": {"S": "k"}, "doc": doc[0], **{k: v[0] for k, v in extras.items()}}
    row = map_item(item, STRING_COL)
    typed, expected = doc
    tag = next(iter(typed))
    if tag in ("M", "L", "SS", "NS", "BS"):
        assert norm(parse(row["doc"])) == norm(expected)
    elif tag == "N":
        assert row["doc"] == typed["N"]
    elif tag == "BOOL":
        assert row["doc"] == ("true" if expected else "false")
    else:
        assert row["doc"] == expected
    if extras:
        assert norm(parse(row["extra"])) == norm({k: v[1] for k, v in extras.items()})
    else:
        assert row["extra"] is None


# ------------------------------------------------------------------ typed columns
EPOCH_DAY = date(1970, 1, 1)
TYPED = Settings.from_dict({
    "database": "db", "table": "t", "mode": "upsert", "keys": ["pk", "sk"],
    "extra_column": "extra",
    "columns": [
        {"name": "pk", "type": "string", "required": True},
        {"name": "sk", "type": "long", "required": True},
        {"name": "i", "type": "int"},
        {"name": "d", "type": "double"},
        {"name": "amount", "type": "decimal(38,9)"},
        {"name": "flag", "type": "boolean"},
        {"name": "at", "type": "timestamptz", "source": "atIso"},
        {"name": "at_ms", "type": "timestamp"},
        {"name": "day", "type": "date"},
        {"name": "blob", "type": "binary"},
        {"name": "nums", "type": "list<long>"},
        {"name": "tags", "type": "list<string>"},
        {"name": "scores", "type": "map<string,double>"},
        {"name": "info", "type": "struct<name:string,price:decimal(10,2),sizes:list<int>>"},
    ],
})

finite = st.floats(allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.just(timezone.utc))
moments_ms = st.datetimes(min_value=datetime(1973, 3, 4), max_value=datetime(9999, 12, 30))


def ref_micros(dt: datetime) -> int:
    return calendar.timegm(dt.utctimetuple()) * 1_000_000 + dt.microsecond


def column_values():
    """name -> strategy of (typed value, expected mapped value)."""
    money = st.decimals(min_value=-(10**7) + 1, max_value=10**7 - 1, places=2, allow_nan=False)
    return {
        "i": st.integers(-(2**31), 2**31 - 1).map(lambda x: ({"N": str(x)}, x)),
        "d": finite.map(lambda f: ({"N": repr(f)}, f)),
        "amount": st.decimals(min_value=-(10**29) + 1, max_value=10**29 - 1, places=9,
                              allow_nan=False).map(lambda x: ({"N": format(x, "f")}, x)),
        "flag": st.booleans().map(lambda b: ({"BOOL": b}, b)),
        "atIso": moments.map(lambda dt: ({"S": dt.isoformat()}, ref_micros(dt))),
        "at_ms": moments_ms.map(lambda dt: (
            {"N": str(ref_micros(dt.replace(tzinfo=timezone.utc)) // 1000)},
            ref_micros(dt.replace(tzinfo=timezone.utc)) // 1000 * 1000)),
        "day": st.dates().map(lambda d: ({"S": d.isoformat()}, (d - EPOCH_DAY).days)),
        "blob": st.binary(max_size=20).map(lambda b: ({"B": b64(b)}, b64(b))),
        "nums": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=5).map(
            lambda xs: ({"L": [{"N": str(x)} for x in xs]}, xs)),
        "tags": st.sets(st.text(max_size=5), min_size=1, max_size=5).map(
            lambda s: ({"SS": list(s)}, sorted(s))),
        "scores": st.dictionaries(st.text(max_size=5), finite, max_size=4).map(
            lambda d: ({"M": {k: {"N": repr(v)} for k, v in d.items()}}, d)),
        "info": st.tuples(st.text(max_size=8), money, st.lists(st.integers(-5, 5), max_size=3)).map(
            lambda t: ({"M": {"name": {"S": t[0]}, "price": {"N": format(t[1], "f")},
                              "sizes": {"L": [{"N": str(x)} for x in t[2]]}}},
                       {"name": t[0], "price": t[1], "sizes": t[2]})),
    }


NAME_OF = {c.source: c.name for c in TYPED.columns}


@st.composite
def items(draw):
    item = {"pk": {"S": draw(st.text(min_size=1, max_size=8))}}
    sk = draw(st.integers(-(2**63), 2**63 - 1))
    item["sk"] = {"N": str(sk)}
    expected = {"pk": item["pk"]["S"], "sk": sk}
    for source, strategy in column_values().items():
        presence = draw(st.sampled_from(["value", "value", "absent", "null"]))
        if presence == "value":
            typed, exp = draw(strategy)
            item[source] = typed
        elif presence == "null":
            item[source], exp = {"NULL": True}, None
        else:
            exp = None
        expected[NAME_OF[source]] = exp
    extras = draw(st.dictionaries(st.sampled_from(["x1", "x2", "x3"]), typed_values, max_size=2))
    item.update({k: v[0] for k, v in extras.items()})
    expected["extra"] = {k: v[1] for k, v in extras.items()} or None
    return item, expected


def check_row(row, expected):
    extra = row.pop("extra")
    want_extra = expected.pop("extra")
    assert (extra is None) == (want_extra is None)
    if extra is not None:
        assert norm(parse(extra)) == norm(want_extra)
    assert norm(row) == norm(expected)


@FAST
@given(items())
def test_random_items_map_to_the_documented_row(pair):
    item, expected = pair
    row = map_item(item, TYPED)
    assert list(row) == [c.name for c in TYPED.columns if c.name != "extra"] + ["extra"]
    assert isinstance(row["amount"], (Decimal, type(None)))
    check_row(dict(row), dict(expected))


@FEW
@given(st.lists(items(), min_size=1, max_size=4))
def test_random_items_through_the_handler(batch):
    records = []
    for i, (item, _) in enumerate(batch):
        change = {"eventID": str(i), "eventName": "INSERT", "eventSource": "aws:dynamodb",
                  "dynamodb": {"Keys": {"pk": item["pk"], "sk": item["sk"]}, "NewImage": item,
                               "ApproximateCreationDateTime": 1}}
        records.append({"recordId": f"id-{i}", "data": b64(json.dumps(change).encode())})
    # A random batch may hold one key twice: the collapse is tested in test_transform_collapse.py.
    env = encode_settings({**TYPED.to_dict(), "collapse_per_key": False})
    with mock.patch.dict(os.environ, env):
        for name in (ENV_SETTINGS, ENV_SETTINGS_Z):
            if name not in env:
                os.environ.pop(name, None)
        out = handler({"records": records}, None)["records"]
    assert [r["recordId"] for r in out] == [r["recordId"] for r in records]
    for rec, (_, expected) in zip(out, batch):
        assert rec["result"] == "Ok"
        assert rec["metadata"]["otfMetadata"]["operation"] == "update"
        check_row(parse(base64.b64decode(rec["data"]).decode()), dict(expected))


# ------------------------------------------------------------------ robustness
json_junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(
                                   ["S", "N", "M", "L", "B", "SS", "NS", "BS", "BOOL", "NULL",
                                    "pk", "sk", "i", "info", "nums", "x"]), children, max_size=3)),
    max_leaves=10,
)


@st.composite
def junk_records(draw):
    kind = draw(st.sampled_from(["text", "bytes", "json", "change"]))
    if kind == "text":
        return draw(st.text(max_size=20))
    if kind == "bytes":
        return b64(draw(st.binary(max_size=40)))
    if kind == "json":
        return b64(json.dumps(draw(json_junk)).encode())
    ddb = {"Keys": draw(json_junk), "NewImage": draw(json_junk), "OldImage": draw(json_junk),
           "ApproximateCreationDateTime": draw(json_junk)}
    change = {"eventName": draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE", "X", None])),
              "eventSource": draw(st.sampled_from(["aws:dynamodb", "s3tstream:backfill", "zz"])),
              "userIdentity": draw(json_junk), "eventID": draw(json_junk),
              "dynamodb": draw(st.one_of(st.just(ddb), json_junk))}
    return b64(json.dumps(change).encode())


@FAST
@given(st.lists(junk_records(), max_size=6), st.sampled_from(["upsert", "changelog"]))
def test_malformed_input_never_raises_and_every_id_comes_back_once(datas, mode):
    s = Settings.from_dict({**TYPED.to_dict(), "mode": mode})
    records = [{"recordId": f"r{i}", "data": d} for i, d in enumerate(datas)]
    out = transform_records(records, s)
    assert [r["recordId"] for r in out] == [r["recordId"] for r in records]
    for r in out:
        assert r["result"] in ("Ok", "Dropped", "ProcessingFailed")
        if r["result"] == "Ok":
            row = parse(base64.b64decode(r["data"]).decode())
            assert row["pk"] is not None and row["sk"] is not None


@FAST
@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.text(), st.integers(),
              st.decimals(allow_nan=False, allow_infinity=False)),
    lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=4), c, max_size=3)),
    max_leaves=10))
def test_dumps_exact_round_trips_decimals_exactly(obj):
    out = dumps_exact(obj)
    back = json.loads(out, parse_float=Decimal, parse_int=Decimal)
    assert norm(back) == norm(obj)
    # digits are kept too, not only the value (0.10 stays 0.10)
    for d in _decimals(obj):
        assert format(d, "f") in out


def _decimals(obj):
    if isinstance(obj, Decimal):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _decimals(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _decimals(v)
