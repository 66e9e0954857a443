"""verify.py: canonical values across engines, the comparison, repair records and PutRecords retries."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, timezone
from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber

from s3tstream.config import model as c
from s3tstream.data import verify as V
from s3tstream.data.changes import change_record
from s3tstream.errors import AwsError
from s3tstream.data.items import ItemSchema, from_boto, item_from_plain, to_boto
from s3tstream.lake.query import QueryResult
from s3tstream.transform import map_item
from s3tstream.transform import types as T

COLUMNS = [
    {"name": "id", "type": "long", "required": True, "source": "Id"},
    {"name": "price", "type": "decimal(10,2)"},
    {"name": "at", "type": "timestamptz"},
    {"name": "day", "type": "date"},
    {"name": "f", "type": "float"},
    {"name": "blob", "type": "binary"},
    {"name": "tags", "type": "list<string>"},
    {"name": "addr", "type": "struct<city:string,zip:int>"},
    {"name": "m", "type": "map<string,long>"},
]


def make_cfg(mode="upsert", **extra):
    return c.build({
        "stack": {"name": "shop", "region": "eu-west-1"},
        "source": {"partition_key": {"name": "Id", "type": "N"}},
        "stream": {"timestamp_precision": "MILLISECOND"},
        "table": {"columns": COLUMNS, "mode": mode, "extra_column": "extra", **extra},
    })


@pytest.fixture(scope="module")
def cfg():
    return make_cfg()


@pytest.fixture(scope="module")
def schema(cfg):
    return ItemSchema.from_config(cfg)


# ------------------------------------------------------------------ canonical values
P = T.parse_type


@pytest.mark.parametrize("typ,a,b", [
    ("timestamptz", 1714564800123456, "2024-05-01 12:00:00.123456 UTC"),
    ("timestamptz", 1714564800123456, "2024-05-01T12:00:00.123456+00:00"),
    ("timestamptz", 1714564800000000, datetime(2024, 5, 1, 12, tzinfo=timezone.utc)),
    ("timestamp", 1714564800000000, "2024-05-01 12:00:00.000"),
    ("date", 19844, "2024-05-01"),
    ("date", 19844, date(2024, 5, 1)),
    ("decimal(10,2)", Decimal("1.5"), "1.50"),
    ("float", 1.1, "1.1"),
    ("double", 1e10, "1.0E10"),
    ("binary", "aGk=", b"hi"),
    ("binary", "aGk=", "aGk="),
    ("boolean", True, "true"),
    ("long", 3, "3"),
    ("list<string>", ["a", "b"], '["a","b"]'),
    ("map<string,long>", {"b": 2, "a": 1}, '{"a":1,"b":2}'),
    ("map<string,long>", {"a": 1}, [("a", 1)]),
    ("struct<city:string,zip:int>", {"city": "Oslo", "zip": 150}, '{"city":"Oslo","zip":150}'),
    ("struct<city:string,zip:int>", {"city": "Oslo", "zip": 150}, '["Oslo",150]'),  # ROW cast to JSON as an array
    ("struct<city:string,zip:int>", {"city": "Oslo", "zip": None}, {"city": "Oslo"}),
    ("list<timestamp>", [0], '["1970-01-01 00:00:00.000000"]'),
])
def test_canon_agrees_across_representations(typ, a, b):
    t = P(typ)
    assert V.canon(t, a) == V.canon(t, b)


def test_canon_tells_differences_apart():
    assert V.canon(P("decimal(10,2)"), "1.51") != V.canon(P("decimal(10,2)"), Decimal("1.5"))
    assert V.canon(P("timestamp"), 1) != V.canon(P("timestamp"), 0)
    assert V.canon(P("string"), None) is None


# ------------------------------------------------------------------ the comparison with fakes
class FakeDdb:
    """DynamoDB stand-in: items in boto3 form, Scan pages (with segments), DescribeTable."""

    def __init__(self, items):
        self.items = [to_boto(i) for i in items]
        self.scans = []

    def describe_table(self, TableName):
        return {"Table": {"ItemCount": len(self.items)}}

    def get_paginator(self, op):
        assert op == "scan"
        fake = self

        class P:
            def paginate(self, **kw):
                fake.scans.append(kw)
                seg, total = kw.get("Segment", 0), kw.get("TotalSegments", 1)
                mine = fake.items[seg::total]
                for i in range(0, len(mine), 2):
                    yield {"Items": mine[i:i + 2]}

        return P()


class FakeEngine:
    """Lake rows as an engine returns them; records the SQL."""

    name = "fake"

    def __init__(self, rows):
        self.rows = rows
        self.sql = []

    @staticmethod
    def select_expr(col, typ):
        return f'"{col}"'

    def run(self, sql):
        self.sql.append(sql)
        cols = list(self.rows[0]) if self.rows else []
        return QueryResult(cols, [], [[r.get(k) for k in cols] for r in self.rows], 42, "q", "fake")


def plain_items(schema, n):
    return [item_from_plain({"Id": i, "price": Decimal(f"{i}.25"), "at": "2024-05-01T12:00:00Z", "day": "2024-05-01",
                             "f": Decimal("1.1"), "blob": "aGk=", "tags": ["x"], "addr": {"city": "Oslo", "zip": i},
                             "m": {"k": i}, "other": "o"}, schema) for i in range(n)]


def athena_row(row):
    """A mapped row the way Athena returns it (after query.py's typing)."""
    ts = datetime.fromtimestamp(row["at"] / 1e6, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"
    return {**row, "at": ts, "day": "2024-05-01", "price": Decimal(row["price"]), "f": float(str(row["f"])),
            "tags": json.dumps(row["tags"]), "addr": json.dumps(row["addr"]), "m": json.dumps(row["m"])}


def test_matching_tables_are_ok_across_segments(cfg, schema):
    items = plain_items(schema, 7)
    rows = [athena_row(map_item(i, schema.settings)) for i in items]
    ddb, eng = FakeDdb(items), FakeEngine(rows)
    rep, layout = V.compare(cfg, schema.settings, eng, ddb, segments=3)
    assert rep.ok and rep.matching == 7 and rep.source_items == 7 and rep.lake_rows == 7
    assert [s["Segment"] for s in ddb.scans] == [0, 1, 2]
    assert layout.names[0] == "id" and "extra" in layout.names
    assert eng.sql[0].startswith('SELECT "id", "price"') and eng.sql[0].endswith('FROM "shop"')


def test_missing_extra_differing_duplicate_and_unmappable(cfg, schema):
    items = plain_items(schema, 6)
    rows = [athena_row(map_item(i, schema.settings)) for i in items]
    del rows[1]  # missing: 1
    rows[1] = {**rows[1], "price": Decimal("9.99")}  # differing: 2 (price)
    rows.append({**rows[2], "tags": '["y"]'})  # duplicate: 3 (a second row for the key)
    rows.append({**rows[0], "id": 100})  # extra: 100
    bad = {**items[4], "Id": {"N": "4"}, "f": {"S": "not a number"}}  # unmappable, its lake row is not "extra"
    items[4] = bad
    rep, layout = V.compare(cfg, schema.settings, FakeEngine(rows), FakeDdb(items), segments=1)
    assert not rep.ok
    assert rep.missing == [(1,)] and rep.extra == [(100,)] and rep.duplicates == [(3,)]
    assert rep.differing == [((2,), ["price"])]
    assert [k for k, _ in rep.unmappable] == [(4,)] and "column 'f'" in rep.unmappable[0][1]
    doc = rep.to_json(layout)
    assert doc["counts"] == {"source_items": 6, "lake_rows": 7, "matching": 3, "missing": 1, "extra": 1,
                             "differing": 1, "duplicates": 1, "unmappable": 1, "ttl_kept": 0,
                             "dropped_fields": 0}
    assert doc["examples"]["differing"] == [{"key": {"id": 2}, "columns": ["price"]}]

    recs = V.repair_records(cfg, rep, layout)
    assert [(r["eventName"], r["dynamodb"]["Keys"]) for r in recs] == [
        ("INSERT", {"Id": {"N": "1"}}), ("INSERT", {"Id": {"N": "2"}}), ("INSERT", {"Id": {"N": "3"}}),
        ("REMOVE", {"Id": {"N": "100"}})]
    assert recs[0]["dynamodb"]["NewImage"] == items[1]
    assert "NewImage" not in recs[3]["dynamodb"]
    assert len(V.repair_records(cfg, rep, layout, removes=False)) == 3


def test_nested_fields_a_struct_column_drops_are_reported(cfg, schema):
    plain = make_cfg(extra_column=None)
    sch = ItemSchema.from_config(plain)
    items = plain_items(sch, 3)
    items[1]["addr"]["M"]["floor"] = {"N": "3"}  # not declared in struct<city:string,zip:int>
    rows = [athena_row(map_item(i, sch.settings)) for i in items]
    rep, layout = V.compare(plain, sch.settings, FakeEngine(rows), FakeDdb(items), segments=1)
    assert rep.matching == 3 and not rep.ok  # the row matches, but the lake lacks the field
    assert rep.dropped_fields == [((1,), ["$.addr.floor"])]
    doc = rep.to_json(layout)
    assert doc["counts"]["dropped_fields"] == 1
    assert doc["examples"]["dropped_fields"] == [{"key": {"id": 1}, "paths": ["$.addr.floor"]}]
    # with a catch-all column the field is carried there: nothing to report
    rows = [athena_row(map_item(i, schema.settings)) for i in items]
    assert json.loads(rows[1]["extra"]) == {"addr": {"floor": 3}, "other": "o"}
    rep, _ = V.compare(cfg, schema.settings, FakeEngine(rows), FakeDdb(items), segments=1)
    assert rep.ok and rep.dropped_fields == []


def test_change_record_format(cfg, schema):
    item = plain_items(schema, 1)[0]
    r = change_record(cfg, "INSERT", {"Id": item["Id"]}, item)
    assert r["eventSource"] == "s3tstream:repair" and r["eventName"] == "INSERT"
    assert r["awsRegion"] == "eu-west-1" and r["tableName"] == "shop" and r["recordFormat"] == "application/json"
    assert r["userIdentity"] is None and len(r["eventID"]) == 36
    d = r["dynamodb"]
    assert d["ApproximateCreationDateTimePrecision"] == "MILLISECOND"
    assert abs(d["ApproximateCreationDateTime"] / 1000 - datetime.now().timestamp()) < 60
    assert d["SizeBytes"] > 0 and d["NewImage"]["blob"] == {"B": "aGk="}
    us = c.build({"stack": {"name": "shop"}})  # MICROSECOND by default
    assert change_record(us, "REMOVE", {"pk": {"S": "a"}})["dynamodb"]["ApproximateCreationDateTime"] > 10**15

    # the transform takes the repair record like DynamoDB's own
    from s3tstream.transform import transform_records

    data = base64.b64encode(json.dumps(r).encode()).decode()
    [out] = transform_records([{"recordId": "1", "data": data}], schema.settings)
    assert out["result"] == "Ok" and out["metadata"]["otfMetadata"]["operation"] == "update"


def test_changelog_mode_reads_the_latest_change_per_key():
    cfg = make_cfg("changelog")
    settings = ItemSchema.from_config(cfg).settings
    layout = V.Layout.from_config(cfg, settings)
    sql = V.current_rows_sql(layout, ['"id"'], "\"id\" > 1")
    assert "PARTITION BY \"id\" ORDER BY \"_event_time\" DESC" in sql and "\"_op\" NOT IN ('remove', 'ttl_remove')" in sql
    assert "WHERE \"id\" > 1" in sql and "_op" not in layout.names


def test_typed_key_values():
    assert V.typed_key_value("N", 12) == {"N": "12"}
    assert V.typed_key_value("N", "12.50") == {"N": "12.5"}
    assert V.typed_key_value("N", "1" * 38) == {"N": "1" * 38}  # never rounded
    assert V.typed_key_value("B", "aGk=") == {"B": "aGk="}
    assert V.typed_key_value("S", "x") == {"S": "x"}


def test_scan_source_reads_every_segment_in_wire_json(schema):
    items = plain_items(schema, 5)
    got = []
    n = V.scan_source(FakeDdb(items), "shop", 2, got.append)
    assert n == 5 and sorted(got, key=lambda i: int(i["Id"]["N"])) == items
    assert from_boto(to_boto(items[0])) == items[0]


# ------------------------------------------------------------------ in flight: the settle window
def test_differences_that_converge_within_the_window_are_not_reported(cfg, schema):
    """A key missing at first (still in Firehose's buffer) and present a round later is not a
    difference; a key missing in every comparison is; a key that starts to differ after verify
    started (a change made meanwhile) is not reported either."""
    items = plain_items(schema, 4)
    rows = [athena_row(map_item(i, schema.settings)) for i in items]
    first, _ = V.compare(cfg, schema.settings, FakeEngine(rows[2:]), FakeDdb(items), segments=1)
    assert first.missing == [(0,), (1,)]
    rounds = [[rows[0], rows[2], rows[3]], [rows[0], rows[2]]]  # key 0 arrives; then key 3 seems to go
    t = [0.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        t[0] += s

    def recheck():
        lake = rounds[min(len(slept), len(rounds)) - 1]
        return V.compare(cfg, schema.settings, FakeEngine(lake), FakeDdb(items), segments=1)[0]

    rep, info = V.settle(first, recheck, 10.0, interval=2.0, sleep=sleep, clock=lambda: t[0])
    assert rep.missing == [(1,)] and not rep.extra  # 3 is not reported: it differed only later (in flight)
    assert rep.matching == 3 and rep.to_json(V.Layout.from_config(cfg, schema.settings))["counts"]["missing"] == 1
    assert info["rounds"] == 5 and info["converged"] == 1 and slept == [2.0] * 5


def test_the_window_ends_the_rechecks_and_a_clean_first_pass_waits_for_nothing(cfg, schema):
    items = plain_items(schema, 2)
    rows = [athena_row(map_item(i, schema.settings)) for i in items]
    lost, _ = V.compare(cfg, schema.settings, FakeEngine(rows[1:]), FakeDdb(items), segments=1)
    t = [0.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        t[0] += s

    rep, info = V.settle(lost, lambda: V.compare(cfg, schema.settings, FakeEngine(rows[1:]), FakeDdb(items), segments=1)[0],
                         5.0, interval=2.0, sleep=sleep, clock=lambda: t[0])
    assert rep.missing == [(0,)] and slept == [2.0, 2.0, 1.0] and info["rounds"] == 3  # never past the window
    clean, _ = V.compare(cfg, schema.settings, FakeEngine(rows), FakeDdb(items), segments=1)
    assert V.settle(clean, lambda: pytest.fail("no recheck"), 5.0, interval=1.0, sleep=slept.append)[1]["rounds"] == 0


def test_ttl_kept_rows_are_expected_not_extra():
    cfg = make_cfg(ttl_deletes="keep")
    schema = ItemSchema.from_config(cfg)
    items = plain_items(schema, 2)
    rows = [athena_row(map_item(i, schema.settings)) for i in items]
    gone = [{**rows[0], "id": 50, "price": Decimal("1000.00")}, {**rows[0], "id": 51, "price": Decimal("99999999.00")}]
    settings = schema.settings
    # the TTL attribute is no lake column: every row the source lacks counts as kept on purpose
    rule = V.ttl_kept_rule(settings, "expires", now=2_000)
    rep, _ = V.compare(cfg, settings, FakeEngine(rows + gone), FakeDdb(items), segments=1, ttl_kept=rule)
    assert rep.ok and rep.ttl_kept == [(50,), (51,)] and rep.extra == []
    # with the TTL attribute in a lake column (here price, epoch seconds): only rows whose expiry passed
    rule = V.ttl_kept_rule(settings, "price", now=2_000)
    assert rule == V.TtlKept("price", 2_000)
    rep, layout = V.compare(cfg, settings, FakeEngine(rows + gone), FakeDdb(items), segments=1, ttl_kept=rule)
    assert rep.ttl_kept == [(50,)] and rep.extra == [(51,)] and not rep.ok
    assert rep.to_json(layout)["counts"]["ttl_kept"] == 1
    assert V.ttl_kept_rule(settings, None, now=0) is None  # TTL off: nothing expires
    assert V.ttl_kept_rule(ItemSchema.from_config(make_cfg()).settings, "expires", 0) is None  # ttl_deletes = delete
