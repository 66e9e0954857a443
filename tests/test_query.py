"""query.py: the Athena polling state machine (stubbed client), paging, typing, the local engine."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

import boto3
import pyarrow as pa
import pytest
from botocore.stub import ANY, Stubber

from s3tstream.lake import exactjson, query as Q
from s3tstream.errors import Interrupted, UsageError, WaitTimeout

QID = "11111111-2222-3333-4444-555555555555"
START_PARAMS = {
    "QueryString": "SELECT 1",
    "ClientRequestToken": ANY,
    "QueryExecutionContext": {"Catalog": "s3tablescatalog/shop-lake", "Database": "shop"},
    "WorkGroup": "primary",
    "ResultConfiguration": {"OutputLocation": "s3://results/x/"},
}


def athena():
    return boto3.client("athena", region_name="us-east-1")


def engine(client, sleeps, **kw):
    return Q.AthenaEngine(client, catalog="s3tablescatalog/shop-lake", database="shop", workgroup="primary",
                          output_location="s3://results/x/", poll=0.1, max_poll=0.3, sleep=sleeps.append, **kw)


def execution(state, reason=None, scanned=None, stype="DML"):
    status = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    qe = {"QueryExecutionId": QID, "Status": status, "StatementType": stype}
    if scanned is not None:
        qe["Statistics"] = {"DataScannedInBytes": scanned}
    return {"QueryExecution": qe}


def col(name, typ, **kw):
    return {"Name": name, "Label": name, "Type": typ, **kw}


def row(*vals):
    return {"Data": [{} if v is None else {"VarCharValue": v} for v in vals]}


COLS = [col("id", "bigint"), col("price", "decimal", Precision=12, Scale=4), col("at", "timestamp"),
        col("ok", "boolean"), col("name", "varchar")]


def test_succeeded_pages_and_types():
    c = athena()
    sleeps = []
    with Stubber(c) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": QID}, START_PARAMS)
        for state in ("QUEUED", "RUNNING", "RUNNING"):
            stub.add_response("get_query_execution", execution(state), {"QueryExecutionId": QID})
        stub.add_response("get_query_execution", execution("SUCCEEDED", scanned=1234), {"QueryExecutionId": QID})
        stub.add_response("get_query_results", {
            "ResultSet": {"ResultSetMetadata": {"ColumnInfo": COLS},
                          "Rows": [row("id", "price", "at", "ok", "name"),
                                   row("1", "12.3400", "2024-05-01 12:00:00.123456", "true", "a"),
                                   row("2", None, None, "false", "")]},
            "NextToken": "t1"}, {"QueryExecutionId": QID, "MaxResults": 1000})
        # the second page's first row is data even when it looks like the header
        stub.add_response("get_query_results", {
            "ResultSet": {"ResultSetMetadata": {"ColumnInfo": COLS},
                          "Rows": [row("id", "price", "at", "ok", "name")]}},
            {"QueryExecutionId": QID, "MaxResults": 1000, "NextToken": "t1"})
        res = engine(c, sleeps).run("SELECT 1")
        stub.assert_no_pending_responses()
    assert res.columns == ["id", "price", "at", "ok", "name"]
    assert res.types[:2] == ["bigint", "decimal(12,4)"]
    assert res.rows[0] == [1, Decimal("12.3400"), "2024-05-01T12:00:00.123456", True, "a"]
    assert res.rows[1] == [2, None, None, False, ""]
    assert res.rows[2][0] == "id" and len(res.rows) == 3  # not a bigint: kept as text, never a crash
    assert res.data_scanned_bytes == 1234 and res.query_id == QID
    assert sleeps == pytest.approx([0.1, 0.15, 0.225])  # backoff, capped at max_poll
    doc = json.loads(exactjson.exact_json(res.to_json()), parse_float=Decimal)
    assert doc["rows"][0]["price"] == Decimal("12.3400")
    assert '"price": 12.3400' in exactjson.exact_json(res.to_json())


@pytest.mark.parametrize("state,reason,words", [
    ("FAILED", "SYNTAX_ERROR: line 1:8: Column 'nope' cannot be resolved", ["failed", "cannot be resolved"]),
    ("CANCELLED", "Query cancelled by user", ["was cancelled", "cancelled by user"]),
])
def test_failed_and_cancelled_exit_1_with_athenas_reason(state, reason, words):
    c = athena()
    with Stubber(c) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": QID}, START_PARAMS)
        stub.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": QID})
        stub.add_response("get_query_execution", execution(state, reason), {"QueryExecutionId": QID})
        with pytest.raises(Q.QueryError) as e:
            engine(c, []).run("SELECT 1")
        stub.assert_no_pending_responses()
    assert e.value.exit_code == 1
    for w in words:
        assert w in e.value.message


def test_ctrl_c_stops_the_query_and_exits_130():
    c = athena()

    def interrupt(_):
        raise KeyboardInterrupt

    with Stubber(c) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": QID}, START_PARAMS)
        stub.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": QID})
        stub.add_response("stop_query_execution", {}, {"QueryExecutionId": QID})
        eng = Q.AthenaEngine(c, catalog="s3tablescatalog/shop-lake", database="shop", workgroup="primary",
                             output_location="s3://results/x/", sleep=interrupt)
        with pytest.raises(Interrupted) as e:
            eng.run("SELECT 1")
        stub.assert_no_pending_responses()
    assert e.value.exit_code == 130 and QID in e.value.message


def test_timeout_stops_the_query():
    c = athena()
    now = [0.0]

    def sleep(s):
        now[0] += s

    with Stubber(c) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": QID}, START_PARAMS)
        for _ in range(3):
            stub.add_response("get_query_execution", execution("RUNNING"), {"QueryExecutionId": QID})
        stub.add_response("stop_query_execution", {}, {"QueryExecutionId": QID})
        eng = Q.AthenaEngine(c, catalog="s3tablescatalog/shop-lake", database="shop", workgroup="primary",
                             output_location="s3://results/x/", poll=1, max_poll=1, timeout=2.5, sleep=sleep,
                             clock=lambda: now[0])
        with pytest.raises(WaitTimeout):
            eng.run("SELECT 1")
        stub.assert_no_pending_responses()


def test_no_result_configuration_when_the_workgroup_has_one():
    c = athena()
    params = {k: v for k, v in START_PARAMS.items() if k != "ResultConfiguration"}
    with Stubber(c) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": QID}, params)
        eng = Q.AthenaEngine(c, catalog="s3tablescatalog/shop-lake", database="shop", workgroup="primary",
                             output_location=None)
        assert eng.start("SELECT 1") == QID


def test_refused_query_is_a_query_error():
    c = athena()
    with Stubber(c) as stub:
        stub.add_client_error("start_query_execution", "InvalidRequestException", "line 1:1: mismatched input")
        with pytest.raises(Q.QueryError, match="mismatched input"):
            engine(c, []).start("SELEC 1")


@pytest.mark.parametrize("typ,text,want", [
    ("tinyint", "7", 7), ("smallint", "-7", -7), ("integer", "7", 7), ("bigint", "9007199254740993", 9007199254740993),
    ("double", "1.0E10", 1e10), ("float", "1.5", 1.5), ("real", "NaN", "nan"),
    ("decimal(38,10)", "12345678901234567890.0123456789", Decimal("12345678901234567890.0123456789")),
    ("boolean", "true", True), ("boolean", "false", False),
    ("date", "2024-05-01", "2024-05-01"),
    ("timestamp", "2024-05-01 12:00:00.000", "2024-05-01T12:00:00.000"),
    ("timestamp with time zone", "2024-05-01 12:00:00.123456 UTC", "2024-05-01T12:00:00.123456+00:00"),
    ("varbinary", "68 65 6c 6c 6f", "aGVsbG8="),
    ("array", "[1, 2]", "[1, 2]"), ("map", "{a=1}", "{a=1}"), ("row", "{x=1}", "{x=1}"),
    ("varchar", "", ""), ("bigint", None, None),
])
def test_value_typing(typ, text, want):
    got = Q.convert_athena(typ, text)
    if want == "nan":
        assert got != got
    else:
        assert got == want and type(got) is type(want)


def test_exact_json_and_csv_keep_decimals():
    doc = {"a": Decimal("0.10"), "b": [Decimal("-1E+3"), float("inf")], "s": "x\u0000y"}
    text = exactjson.exact_json(doc)
    assert json.loads(text, parse_float=Decimal) == {"a": Decimal("0.10"), "b": [-1000, "inf"], "s": "x\u0000y"}
    assert '"a": 0.10' in text
    buf = io.StringIO()
    csv.writer(buf).writerow([exactjson.csv_value(v) for v in (Decimal("1.50"), None, True, {"k": Decimal("2.0")}, "x")])
    assert buf.getvalue().strip() == '1.50,,true,"{""k"":2.0}",x'


# ------------------------------------------------------------------ local engine
class FakeManifest:
    def __init__(self, content, n):
        from pyiceberg.manifest import ManifestContent

        self.content = ManifestContent.DELETES if content == "deletes" else ManifestContent.DATA
        self.added_files_count, self.existing_files_count = n, 0


class FakeSnapshot:
    def __init__(self, manifests):
        self._m = manifests

    def manifests(self, io):
        return self._m


class FakeTable:
    io = None

    def __init__(self, data, manifests=None):
        self.data = data
        self.snap = FakeSnapshot(manifests) if manifests is not None else None

    def current_snapshot(self):
        return self.snap

    def scan(self):
        return self

    def to_arrow(self):
        return self.data


DATA = pa.table({
    "pk": ["a", "b"],
    "price": pa.array([Decimal("1.50"), None], pa.decimal128(10, 2)),
    "at": pa.array([1714564800123456, None], pa.timestamp("us", tz="UTC")),
    "blob": pa.array([b"hi", None]),
    "m": pa.array([[("k", 1)], None], pa.map_(pa.string(), pa.int64())),
})


def test_local_engine_runs_sql_on_the_table_by_name():
    eng = Q.LocalEngine(lambda: FakeTable(DATA, [FakeManifest("data", 1)]), "orders", "shop")
    res = eng.run('SELECT * FROM "orders" ORDER BY pk')
    assert res.columns == ["pk", "price", "at", "blob", "m"]
    assert res.types == ["varchar", "decimal(10,2)", "timestamp with time zone", "varbinary", "map"]
    assert res.rows[0] == ["a", Decimal("1.50"), "2024-05-01T12:00:00.123456+00:00", "aGk=", {"k": 1}]
    assert res.rows[1] == ["b", None, None, None, None]
    assert eng.run("SELECT count(*) AS n FROM shop.orders").rows == [[2]]


def test_local_engine_applies_delete_files_through_merge_on_read(monkeypatch):
    """A table holding delete files is read by lake.merge_on_read (its own planning), not by
    PyIceberg's scan, which would raise or ignore them; deletion vectors are refused."""
    from s3tstream.lake import merge_on_read

    applied = pa.table({"pk": ["a"]})
    monkeypatch.setattr(merge_on_read, "scan", lambda table: (applied, 1))
    eng = Q.LocalEngine(lambda: FakeTable(DATA, [FakeManifest("data", 1), FakeManifest("deletes", 2)]), "orders", "shop")
    assert eng.run("SELECT count(*) FROM orders").rows == [[1]]

    def refuse(table):
        raise merge_on_read.UnsupportedDeletes("deletion vector x.puffin")

    monkeypatch.setattr(merge_on_read, "scan", refuse)
    with pytest.raises(UsageError, match="deletion vector") as e:
        eng.run("SELECT 1")
    assert "athena" in e.value.hint


def test_local_engine_bad_sql_is_a_query_error():
    eng = Q.LocalEngine(lambda: FakeTable(DATA), "orders", "shop")
    with pytest.raises(Q.QueryError, match="local query failed"):
        eng.run("SELECT nope FROM orders")


def test_select_expressions_make_values_comparable():
    assert Q.AthenaEngine.select_expr("b", "binary") == 'to_base64("b") AS "b"'
    for t in ("list<string>", "map<string,long>", "struct<a:int>"):
        assert Q.AthenaEngine.select_expr("c", t) == 'json_format(CAST("c" AS JSON)) AS "c"'
    assert Q.AthenaEngine.select_expr("p", "decimal(10,2)") == '"p"'
    assert Q.LocalEngine.select_expr("b", "binary") == '"b"'
    assert Q.base_type("decimal(12,4)") == "decimal" and Q.base_type("list<string>") == "list"


@pytest.mark.parametrize("conf,want", [
    ({"ResultConfiguration": {"OutputLocation": "s3://wg/out/"}}, None),
    ({"ManagedQueryResultsConfiguration": {"Enabled": True}}, None),
])
def test_results_location_uses_the_workgroups_own(conf, want):
    from types import SimpleNamespace

    from s3tstream.config import model as c

    cfg = c.build({"stack": {"name": "shop"}})
    a = athena()
    with Stubber(a) as stub:
        stub.add_response("get_work_group", {"WorkGroup": {"Name": "primary", "Configuration": conf}}, {"WorkGroup": "primary"})
        aws = SimpleNamespace(client=lambda s: a, region="us-east-1")
        assert Q.results_location(cfg, aws) == want
    cfg2 = c.build({"stack": {"name": "shop"}, "athena": {"output_location": "s3://mine/q"}})
    assert Q.results_location(cfg2, None) == "s3://mine/q/"  # config wins, no call


def test_results_location_unknown_workgroup_is_a_usage_error():
    from types import SimpleNamespace

    from s3tstream.config import model as c

    cfg = c.build({"stack": {"name": "shop"}, "athena": {"workgroup": "nope"}})
    a = athena()
    with Stubber(a) as stub:
        stub.add_client_error("get_work_group", "InvalidRequestException", "WorkGroup nope is not found.")
        with pytest.raises(UsageError, match="'nope' was not found"):
            Q.results_location(cfg, SimpleNamespace(client=lambda s: a, region="us-east-1"))
