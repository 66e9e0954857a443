"""items.py: plain JSON <-> DynamoDB typed values by the schema, key checks, batch writes."""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3tstream.config import model as c
from s3tstream.data import items as I
from s3tstream.errors import AwsError
from s3tstream.transform import map_item

COLUMNS = [
    {"name": "pk", "type": "string", "required": True},
    {"name": "sk", "type": "long", "required": True},
    {"name": "name", "type": "string"},
    {"name": "price", "type": "decimal(12,4)"},
    {"name": "qty", "type": "int"},
    {"name": "ratio", "type": "double"},
    {"name": "ok", "type": "boolean"},
    {"name": "day", "type": "date"},
    {"name": "at", "type": "timestamptz"},
    {"name": "blob", "type": "binary"},
    {"name": "tags", "type": "list<string>"},
    {"name": "attrs", "type": "map<string,decimal(10,2)>"},
    {"name": "addr", "type": "struct<city:string,zip:int>"},
]


def make_cfg(columns=COLUMNS, **table):
    return c.build({
        "stack": {"name": "shop"},
        "source": {"partition_key": {"name": "pk", "type": "S"}, "sort_key": {"name": "sk", "type": "N"}},
        "table": {"columns": columns, "extra_column": "extra", **table},
    })


@pytest.fixture(scope="module")
def schema():
    return I.ItemSchema.from_config(make_cfg())


def test_plain_item_is_typed_by_columns_with_exact_numbers(schema):
    text = ('{"pk": "a", "sk": 7, "name": "x", "price": 12.3400, "qty": "5", "ratio": 0.1, "ok": true,'
            ' "day": "2024-05-01", "at": "2024-05-01T12:00:00.123456+02:00", "blob": "AAE=",'
            ' "tags": ["t1", "t2"], "attrs": {"w": 1.50}, "addr": {"city": "Oslo", "zip": 150, "note": "n"},'
            ' "free": {"deep": [1, null, false]}, "gone": null}')
    [item] = I.parse_items([("--item", text)], schema)
    assert item["price"] == {"N": "12.3400"}  # the literal, never through float
    assert item["sk"] == {"N": "7"} and item["qty"] == {"N": "5"} and item["ratio"] == {"N": "0.1"}
    assert item["at"] == {"S": "2024-05-01T12:00:00.123456+02:00"}  # ISO strings kept as S
    assert item["day"] == {"S": "2024-05-01"}
    assert item["blob"] == {"B": "AAE="}
    assert item["tags"] == {"L": [{"S": "t1"}, {"S": "t2"}]}
    assert item["attrs"] == {"M": {"w": {"N": "1.50"}}}
    assert item["addr"] == {"M": {"city": {"S": "Oslo"}, "zip": {"N": "150"}, "note": {"S": "n"}}}
    assert item["free"] == {"M": {"deep": {"L": [{"N": "1"}, {"NULL": True}, {"BOOL": False}]}}}
    assert item["gone"] == {"NULL": True}
    row = map_item(item, schema.settings)
    assert row["price"] == Decimal("12.3400") and row["at"] == 1714557600123456


@pytest.mark.parametrize("text,words", [
    ('{"sk": 1}', ["line 3", "partition key attribute 'pk' is missing"]),
    ('{"pk": "a"}', ["line 3", "sort key attribute 'sk' is missing"]),
    ('{"pk": "", "sk": 1}', ["'pk' must not be empty"]),
    ('{"pk": 5, "sk": 1}', ["pk", "column type is string", "quote it"]),
    ('{"pk": "a", "sk": "x"}', ["sk", "expected a number"]),
    ('{"pk": "a", "sk": 1.5}', ["column 'sk'", "not an integer"]),
    ('{"pk": "a", "sk": 1, "price": 1.23456}', ["column 'price'", "fractional digits"]),
    ('{"pk": "a", "sk": 1, "ok": "yes"}', ["ok", "boolean"]),
    ('{"pk": "a", "sk": 1, "day": "May 1"}', ["day", "ISO-8601 date"]),
    ('{"pk": "a", "sk": 1, "blob": "***"}', ["blob", "base64"]),
    ('{"pk": "a", "sk": 1, "qty": 1e400}', ["qty"]),
    ('{"pk": "a", "sk": 1, "ratio": NaN}', ["not valid JSON"]),
    ('[1, 2]', ["must be a JSON object"]),
    ('{"pk": "a", "sk": 1', ["not valid JSON"]),
    ('{"pk": "' + "x" * 2049 + '", "sk": 1}', ["2049 bytes", "2048"]),
])
def test_bad_items_name_the_line_and_attribute(schema, text, words):
    lines = ['{"pk": "ok1", "sk": 1}', "", text, '{"pk": "ok2", "sk": 2}']
    with pytest.raises(I.ItemError) as e:
        I.parse_items(I.jsonl_sources(lines, "items.jsonl"), schema)
    msg = e.value.message
    assert e.value.exit_code == 2 and "1 bad item" in msg
    for w in words:
        assert w in msg, msg


def test_many_bad_items_are_counted_and_five_shown(schema):
    lines = ['{"sk": 1}'] * 8
    with pytest.raises(I.ItemError) as e:
        I.parse_items(I.jsonl_sources(lines, "f"), schema)
    assert "8 bad item(s)" in e.value.message and "and 3 more" in e.value.message


def test_item_over_400kb_is_refused(schema):
    big = '{"pk": "a", "sk": 1, "name": "' + "x" * (400 * 1024) + '"}'
    with pytest.raises(I.ItemError, match="DynamoDB allows 409600"):
        I.parse_items([("--item", big)], schema)


def test_dynamodb_json_is_validated(schema):
    ok = '{"pk": {"S": "a"}, "sk": {"N": "1"}, "ss": {"SS": ["b", "a"]}, "b": {"B": "AAE="}}'
    [item] = I.parse_items([("x", ok)], schema, dynamodb_json=True)
    assert item["ss"] == {"SS": ["b", "a"]}
    get_item_output = '{"Item": {"pk": {"S": "a"}, "sk": {"N": "2"}}}'
    assert I.parse_items([("x", get_item_output)], schema, dynamodb_json=True)[0]["sk"] == {"N": "2"}
    for bad, word in [('{"pk": {"S": "a"}, "sk": {"N": 1}}', "N takes a number as a string"),
                      ('{"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"Q": 1}}', "unknown DynamoDB type"),
                      ('{"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"SS": []}}', "non-empty"),
                      ('{"pk": {"S": "a"}, "sk": {"N": "1"}, "x": {"SS": ["a", "a"]}}', "duplicates"),
                      ('{"pk": "a", "sk": {"N": "1"}}', "one type key")]:
        with pytest.raises(I.ItemError, match=word):
            I.parse_items([("x", bad)], schema, dynamodb_json=True)


def test_number_limits():
    I.check_number(Decimal("9.9E+125"), "n")
    I.check_number(Decimal("1E-130"), "n")
    for bad in ("1E+126", "1E-131", "1" * 39, "Infinity"):
        with pytest.raises(I._Bad):
            I.check_number(Decimal(bad), "n")


# ------------------------------------------------------------------ both ways (hypothesis)
decimals = st.decimals(min_value=Decimal("-99999999.9999"), max_value=Decimal("99999999.9999"), places=4,
                       allow_nan=False, allow_infinity=False)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
plain_any = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.text(max_size=20) | decimals,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=12,
)


def exact(v):
    """Numbers as exact Decimals (item_to_plain gives int, float when its repr is the N text, or Decimal)."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, (int, Decimal)):
        return Decimal(v)
    if isinstance(v, list):
        return [exact(x) for x in v]
    return {k: exact(x) for k, x in v.items()}


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(pk=st.text(min_size=1, max_size=30), sk=st.integers(-(2**63), 2**63 - 1), price=decimals,
       tags=st.lists(st.text(max_size=10), max_size=4), free=plain_any,
       blob=st.binary(max_size=40))
def test_plain_typed_plain_round_trip(schema, pk, sk, price, tags, free, blob):
    plain = {"pk": pk, "sk": sk, "price": price, "tags": tags, "free": free,
             "blob": base64.b64encode(blob).decode()}
    item = I.item_from_plain(plain, schema)
    I.check_item(item, schema)
    back = I.item_to_plain(item)
    assert back["pk"] == pk and back["sk"] == sk and back["tags"] == tags
    assert exact(back["price"]) == price  # exact, whatever the exponent form
    assert exact(back["free"]) == exact(free)
    assert base64.b64decode(back["blob"]) == blob
    # wire <-> boto3 (bytes) round trip
    assert I.from_boto(I.to_boto(item)) == item
    assert I.to_boto(item)["blob"] == {"B": blob}


@settings(max_examples=100)
@given(st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: d.is_finite()))
def test_numbers_are_never_rounded(d):
    try:
        text = I._number_text(d, "n")
    except I._Bad:
        return  # outside DynamoDB's range: refused, never rounded
    assert Decimal(text) == d


# ------------------------------------------------------------------ batch writes
def _ddb():
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1")


def test_batch_write_retries_unprocessed_items_then_succeeds(schema):
    ddb = _ddb()
    items = [{"pk": {"S": f"k{i}"}, "sk": {"N": str(i)}, "blob": {"B": "AAE="}} for i in range(30)]
    sleeps = []
    with Stubber(ddb) as stub:
        first = [{"PutRequest": {"Item": I.to_boto(i)}} for i in items[:25]]
        stub.add_response("batch_write_item", {"UnprocessedItems": {"shop": first[20:]}},
                          {"RequestItems": {"shop": first}})
        stub.add_response("batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {"shop": first[20:]}})
        rest = [{"PutRequest": {"Item": I.to_boto(i)}} for i in items[25:]]
        stub.add_response("batch_write_item", {}, {"RequestItems": {"shop": rest}})
        assert I.put_items(ddb, schema, items, sleep=sleeps.append) == 30
        stub.assert_no_pending_responses()
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 0.05


def test_batch_write_gives_up_after_bounded_attempts(schema):
    ddb = _ddb()
    item = {"pk": {"S": "k"}, "sk": {"N": "1"}}
    req = [{"PutRequest": {"Item": item}}]
    sleeps = []
    with Stubber(ddb) as stub:
        for _ in range(3):
            stub.add_response("batch_write_item", {"UnprocessedItems": {"shop": req}}, {"RequestItems": {"shop": req}})
        with pytest.raises(AwsError, match="unprocessed after 3 attempts") as e:
            I.put_items(ddb, schema, [item], sleep=sleeps.append, max_attempts=3)
    assert e.value.exit_code == 1 and len(sleeps) == 2 and sleeps[1] > sleeps[0] * 1.0 / 2


def test_repeated_key_starts_a_new_batch_so_the_last_write_wins(schema):
    calls = []

    class Fake:
        def batch_write_item(self, RequestItems):
            calls.append([r["PutRequest"]["Item"]["name"]["S"] for r in RequestItems["shop"]])
            return {}

    items = [{"pk": {"S": "a"}, "sk": {"N": "1"}, "name": {"S": n}} for n in ("v1", "v2")]
    I.put_items(Fake(), schema, items + [{"pk": {"S": "b"}, "sk": {"N": "1"}, "name": {"S": "v3"}}])
    assert calls == [["v1"], ["v2", "v3"]]
