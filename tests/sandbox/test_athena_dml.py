"""Athena in the sandbox writes Iceberg tables: INSERT INTO and MERGE INTO ... WHEN NOT MATCHED
THEN INSERT, reading Glue text tables (the backfill export's shape) across catalogs, with the
Trino functions the backfill SQL uses. The central check: the export load SQL (backfill.load_sql)
gives, for items of every column type, the very rows the transform Lambda gives (map_item, then
the Firehose writer's conversion)."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from typing import Any

import pytest
from test_dataplane_helpers import RICH_COLUMNS, Lake, table_payload

pytestmark = pytest.mark.sandbox

DB = "exports_db"


@pytest.fixture(scope="module")
def lake(sandbox) -> Any:
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=sandbox.endpoint_url)

    lk = Lake(endpoint=sandbox.endpoint_url, make_client=make, bucket=f"dml-{uuid.uuid4().hex[:10]}")
    lk.create(table_payload(RICH_COLUMNS, ["pk"]))
    lk.c("s3").create_bucket(Bucket=f"res-{lk.bucket}")
    lk.c("glue").create_database(DatabaseInput={"Name": DB})
    yield lk
    lk.destroy()


def _cfg(lake: Lake, mode: str = "upsert") -> Any:
    from s3tstream.config import model as config

    cols = [{"name": n, "type": t, "required": r} for n, t, r in RICH_COLUMNS]
    return config.build({"stack": {"name": "dml"}, "source": {"partition_key": {"name": "pk", "type": "S"}},
                         "table": {"bucket": lake.bucket, "namespace": lake.namespace, "name": lake.table,
                                   "mode": mode, "columns": cols}})


def _glue_export(lake: Lake, items: list[dict[str, Any]]) -> str:
    """Items as a DynamoDB export writes them (gzip JSON lines under data/, a _started marker
    beside them), and a Glue table over them like backfill's; returns the table's name."""
    name = "export_" + uuid.uuid4().hex[:8]
    s3 = lake.c("s3")
    body = "\n".join(json.dumps({"Item": it}) for it in items).encode()
    s3.put_object(Bucket=lake.error_bucket, Key=f"{name}/data/part-0.json.gz", Body=gzip.compress(body))
    s3.put_object(Bucket=lake.error_bucket, Key=f"{name}/data/_started", Body=b"not a line of data")
    lake.c("glue").create_table(DatabaseName=DB, TableInput={
        "Name": name, "TableType": "EXTERNAL_TABLE",
        "StorageDescriptor": {
            "Columns": [{"Name": "line", "Type": "string"}], "Location": f"s3://{lake.error_bucket}/{name}/data/",
            "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
            "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"}}})
    return name


def _run(lake: Lake, sql: str) -> dict[str, Any]:
    athena = lake.c("athena")
    qid = athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Catalog": f"s3tablescatalog/{lake.bucket}", "Database": lake.namespace},
        ResultConfiguration={"OutputLocation": f"s3://res-{lake.bucket}/athena/"})["QueryExecutionId"]
    return athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]


def _rows(lake: Lake) -> dict[str, dict[str, Any]]:
    return {r["pk"]: r for r in lake.load().scan().to_arrow().to_pylist()}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


ITEMS: list[dict[str, Any]] = [
    {"pk": {"S": "m1"}, "amount": {"N": "12.5"}, "ts": {"S": "2026-11-01T10:00:00.123456Z"}, "day": {"S": "2026-01-02"},
     "tags": {"SS": ["b", "a"]}, "nums": {"L": [{"N": "1"}, {"N": "-2"}]}, "blob": {"B": _b64(b"\x00\xff")},
     "info": {"M": {"a": {"S": "x"}, "b": {"N": "7"}}}, "attrs": {"M": {"k": {"S": "v"}, "n": {"N": "3"}}},
     "flag": {"BOOL": True}, "score": {"N": "0.25"}},
    # epoch numbers: seconds for ts, milliseconds past 1e11; numbers given as strings; a number set
    {"pk": {"S": "m2"}, "amount": {"N": "-0.01"}, "ts": {"N": "1700000000.5"}, "day": {"N": "1700000000000"},
     "tags": {"L": [{"S": "z"}, {"N": "5"}]}, "nums": {"NS": ["3", "1"]}, "flag": {"BOOL": False}, "score": {"N": "1E+3"}},
    # NULLs, an empty list, an absent struct and map
    {"pk": {"S": "m3"}, "amount": {"NULL": True}, "tags": {"L": []}, "info": {"NULL": True}},
]


def test_the_export_load_gives_the_rows_the_transform_gives(lake) -> None:
    """load_sql (MERGE, the backfill export path) over the export-format Glue table writes, column
    for column, what map_item + the Firehose writer write for the same items."""
    from s3tstream.data.backfill import export_sql as bf
    from s3tstream.data.items import transform_settings
    from s3tstream.sandbox.dataplane.iceberg_writer import parse_record, to_row
    from s3tstream.transform import dumps_exact, map_item

    cfg = _cfg(lake)
    src = _glue_export(lake, ITEMS)
    qe = _run(lake, bf.load_sql(cfg, f'"awsdatacatalog"."{DB}"."{src}"', "exp-1", "2026-11-30T00:00:00Z"))
    assert qe["Status"]["State"] == "SUCCEEDED", qe["Status"]
    assert qe["StatementType"] == "DML" and qe["SubstatementType"] == "MERGE"
    assert qe["Statistics"]["DataScannedInBytes"] > 0
    got = _rows(lake)
    settings = transform_settings(cfg)
    schema = lake.load().schema()
    for item in ITEMS:
        # the row as the Lambda sends it (exact JSON), then as the Firehose writer reads it
        want = to_row(parse_record(dumps_exact(map_item(item, settings)).encode()), schema)
        assert got[item["pk"]["S"]] == want, item["pk"]


def test_merge_inserts_only_keys_not_in_the_table_and_a_rerun_adds_nothing(lake) -> None:
    from s3tstream.data.backfill import export_sql as bf

    cfg = _cfg(lake)
    # keys of this run only: the lake is the module's, and a key another test (or a rerun) wrote
    # would not be inserted
    g = f"g{uuid.uuid4().hex[:6]}-"
    items = [{"pk": {"S": f"{g}{i}"}, "score": {"N": str(i)}} for i in range(5)]
    with lake.load().transaction() as tx:  # key 0 is already there, with another value: MERGE keeps it
        import pyarrow as pa
        from pyiceberg.io.pyarrow import schema_to_pyarrow

        tx.append(pa.Table.from_pylist([{"pk": f"{g}0", "score": 99.0}], schema=schema_to_pyarrow(lake.load().schema())))
    src = _glue_export(lake, items)
    sql = bf.load_sql(cfg, f'"awsdatacatalog"."{DB}"."{src}"', "exp-2", "2026-11-30T00:00:00Z")
    before = len(_rows(lake))
    assert _run(lake, sql)["Status"]["State"] == "SUCCEEDED"
    rows = _rows(lake)
    assert len(rows) == before + 4 and rows[f"{g}0"]["score"] == 99.0 and rows[f"{g}4"]["score"] == 4.0
    snap = lake.load().current_snapshot().snapshot_id
    assert _run(lake, sql)["Status"]["State"] == "SUCCEEDED"
    assert len(_rows(lake)) == before + 4 and lake.load().current_snapshot().snapshot_id == snap  # no empty commit


def test_insert_into_with_a_column_list_and_trino_functions(lake) -> None:
    qe = _run(lake, "INSERT INTO t (pk, nums, attrs) SELECT concat('i', CAST(x AS VARCHAR)), transform(ARRAY[x, 2], v -> v * 10), "
                    "transform_values(MAP(ARRAY['a'], ARRAY[x]), (k, v) -> CAST(v + 1 AS VARCHAR)) FROM (VALUES 1, 2) AS v(x)")
    assert qe["Status"]["State"] == "SUCCEEDED", qe["Status"]
    assert qe["SubstatementType"] == "INSERT"
    rows = _rows(lake)
    assert rows["i1"]["nums"] == [10, 20] and rows["i2"]["attrs"] == [("a", "3")] and rows["i2"]["score"] is None


@pytest.mark.parametrize(("sql", "code"), [
    ("MERGE INTO t USING (SELECT 'x' AS pk) AS s ON (t.pk = s.pk) WHEN MATCHED THEN DELETE", "NOT_SUPPORTED"),
    ("INSERT INTO t (pk, nope) VALUES ('a', 1)", "COLUMN_NOT_FOUND"),
    ("INSERT INTO t (score) VALUES (1.5)", "CONSTRAINT_VIOLATION"),
    ("INSERT INTO t (pk, day) VALUES ('a', 'not a date')", "TYPE_MISMATCH"),
    (f"INSERT INTO t (pk) SELECT line FROM awsdatacatalog.{DB}.missing", "TABLE_NOT_FOUND"),
    ("INSERT INTO t (pk) SELECT line FROM awsdatacatalog.nodb.missing", "SCHEMA_NOT_FOUND"),
])
def test_bad_dml_fails_like_athena_and_writes_nothing(lake, sql, code) -> None:
    snap = lake.load().current_snapshot()
    status = _run(lake, sql)["Status"]
    assert status["State"] == "FAILED" and status["StateChangeReason"].startswith(code + ":"), status
    assert lake.load().current_snapshot() == snap


def test_a_read_query_in_trino_syntax_runs(lake) -> None:
    """A read query DuckDB refuses as written (a Trino lambda, ARRAY(JSON)) goes through the translation."""
    athena = lake.c("athena")
    qe = _run(lake, "SELECT transform(CAST(json_parse('[1,2]') AS ARRAY(JSON)), x -> json_format(x)) AS a")
    assert qe["Status"]["State"] == "SUCCEEDED", qe["Status"]
    rows = athena.get_query_results(QueryExecutionId=qe["QueryExecutionId"])["ResultSet"]["Rows"]
    assert rows[1]["Data"][0]["VarCharValue"] == "[1, 2]"


def test_a_glue_text_table_with_typed_columns_reads_unparseable_fields_as_null(lake) -> None:
    s3, glue = lake.c("s3"), lake.c("glue")
    name = "typed_" + uuid.uuid4().hex[:8]
    s3.put_object(Bucket=lake.error_bucket, Key=f"{name}/part", Body="a\x011\x01true\nb\x01x\x01nope\n".encode())
    glue.create_table(DatabaseName=DB, TableInput={"Name": name, "StorageDescriptor": {
        "Columns": [{"Name": "k", "Type": "string"}, {"Name": "n", "Type": "bigint"}, {"Name": "f", "Type": "boolean"}],
        "Location": f"s3://{lake.error_bucket}/{name}/",
        "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"}}})
    qe = _run(lake, f"SELECT k, n + 1 AS n, f FROM awsdatacatalog.{DB}.{name} ORDER BY k")
    assert qe["Status"]["State"] == "SUCCEEDED", qe["Status"]
    rows = lake.c("athena").get_query_results(QueryExecutionId=qe["QueryExecutionId"])["ResultSet"]["Rows"]
    assert [[d.get("VarCharValue") for d in r["Data"]] for r in rows] == [["k", "n", "f"], ["a", "2", "true"], ["b", None, None]]


def test_merge_honours_the_not_matched_condition(lake) -> None:
    qe = _run(lake, "MERGE INTO t USING (SELECT * FROM (VALUES 'c1', 'c2', 'c9') AS v(pk)) AS s ON (t.pk = s.pk) "
                    "WHEN NOT MATCHED AND s.pk > 'c5' THEN INSERT (pk) VALUES (s.pk)")
    assert qe["Status"]["State"] == "SUCCEEDED", qe["Status"]
    rows = _rows(lake)
    assert "c9" in rows and "c1" not in rows and "c2" not in rows


def test_an_insert_stopped_while_it_runs_commits_nothing(lake, monkeypatch) -> None:
    """StopQueryExecution after the rows are computed, before the commit: nothing is written."""
    import threading

    from s3tstream.sandbox.athena import dml as athena_dml

    athena = lake.c("athena")
    real, started, go = athena_dml.conform, {}, threading.Event()

    def stop_then_conform(rows, schema, table):
        assert go.wait(10)
        athena.stop_query_execution(QueryExecutionId=started["qid"])
        return real(rows, schema, table)

    monkeypatch.setattr(athena_dml, "conform", stop_then_conform)
    snap = lake.load().current_snapshot()
    started["qid"] = athena.start_query_execution(
        QueryString="INSERT INTO t (pk) VALUES ('stopped')",
        QueryExecutionContext={"Catalog": f"s3tablescatalog/{lake.bucket}", "Database": lake.namespace},
        ResultConfiguration={"OutputLocation": f"s3://res-{lake.bucket}/athena/"})["QueryExecutionId"]
    go.set()
    status = athena.get_query_execution(QueryExecutionId=started["qid"])["QueryExecution"]["Status"]
    assert status["State"] == "CANCELLED", status
    from s3tstream.sandbox.services import athena as athena_ext

    ex = next(e for store in list(athena_ext._executions.values()) for q, e in store.items() if q == started["qid"])
    ex.thread.join(10)  # the query's worker has finished (committed, or not)
    assert not ex.thread.is_alive()
    assert lake.load().current_snapshot() == snap and "stopped" not in _rows(lake)
