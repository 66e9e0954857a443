"""Athena in the sandbox: queries over S3 Tables' Iceberg tables, paged like Athena."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from botocore.exceptions import ClientError
from test_dataplane_helpers import RICH_COLUMNS, Lake, table_payload

from s3tstream.sandbox import client as sbc

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def lake(sandbox) -> Any:
    """A table of 2,500 rows (every type) written with PyIceberg, and a results bucket."""
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, region_name="us-east-1", endpoint_url=sandbox.endpoint_url)

    lk = Lake(endpoint=sandbox.endpoint_url, make_client=make, bucket=f"lake-{uuid.uuid4().hex[:10]}")
    lk.create(table_payload(RICH_COLUMNS, ["pk"]))
    tbl = lk.load()
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    rows = [{
        "pk": f"k{i:04d}",
        "amount": Decimal(i) / 100,
        "ts": datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i, microseconds=i),
        "day": datetime.date(2024, 1, 1) + datetime.timedelta(days=i % 365),
        "tags": ["a", "b"] if i % 2 else [],
        "nums": [i, -i],
        "blob": bytes([i % 256, 255]),
        "info": {"a": f"s{i}", "b": i},
        "attrs": [("k", str(i))],
        "flag": i % 3 == 0,
        "score": i / 4,
    } for i in range(2500)]
    rows[7]["amount"] = None
    with tbl.transaction() as tx:
        tx.append(pa.Table.from_pylist(rows, schema=schema_to_pyarrow(tbl.schema())))
    lk.c("s3").create_bucket(Bucket=f"res-{lk.bucket}")
    yield lk
    lk.destroy()  # the sandbox is shared (and `up` counts table buckets)


@pytest.fixture
def athena(client) -> Any:
    return client("athena")


def _start(athena: Any, lake: Lake, sql: str, **kw: Any) -> str:
    args: dict[str, Any] = {
        "QueryString": sql,
        "QueryExecutionContext": {"Catalog": f"s3tablescatalog/{lake.bucket}", "Database": lake.namespace},
        "ResultConfiguration": {"OutputLocation": f"s3://res-{lake.bucket}/athena/"},
    }
    args.update(kw)
    return athena.start_query_execution(**args)["QueryExecutionId"]


def _final(athena: Any, qid: str) -> dict[str, Any]:
    return athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]


def test_results_page_like_athena(athena, lake) -> None:
    qid = _start(athena, lake, "SELECT pk, amount FROM t ORDER BY pk")
    qe = _final(athena, qid)
    assert qe["Status"]["State"] == "SUCCEEDED"
    assert qe["Statistics"]["DataScannedInBytes"] > 0 and qe["StatementType"] == "DML"
    assert qe["ResultConfiguration"]["OutputLocation"] == f"s3://res-{lake.bucket}/athena/{qid}.csv"
    pages, token = [], None
    while True:
        kw = {"NextToken": token} if token else {}
        page = athena.get_query_results(QueryExecutionId=qid, MaxResults=1000, **kw)
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            break
    assert [len(p["ResultSet"]["Rows"]) for p in pages] == [1000, 1000, 501]
    rows = [[d.get("VarCharValue") for d in r["Data"]] for p in pages for r in p["ResultSet"]["Rows"]]
    assert rows[0] == ["pk", "amount"]  # the first row of a SELECT holds the column names
    assert rows[1] == ["k0000", "0.00"] and rows[8] == ["k0007", None] and rows[-1] == ["k2499", "24.99"]
    info = pages[0]["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]
    assert [(c["Name"], c["Type"]) for c in info] == [("pk", "varchar"), ("amount", "decimal")]
    assert (info[1]["Precision"], info[1]["Scale"]) == (12, 2)
    assert pages[0]["ResultSet"]["Rows"][8]["Data"][1] == {}  # NULL: no VarCharValue
    csv = lake.c("s3").get_object(Bucket=f"res-{lake.bucket}", Key=f"athena/{qid}.csv")["Body"].read().decode()
    lines = csv.splitlines()
    assert lines[0] == '"pk","amount"' and lines[1] == '"k0000","0.00"' and lines[8] == '"k0007",' and len(lines) == 2501


def test_every_type_as_athena_text(athena, lake) -> None:
    qid = _start(athena, lake, "SELECT * FROM t WHERE pk = 'k0003'")
    assert _final(athena, qid)["Status"]["State"] == "SUCCEEDED"
    rs = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]
    types = {c["Name"]: c["Type"] for c in rs["ResultSetMetadata"]["ColumnInfo"]}
    assert types == {"pk": "varchar", "amount": "decimal", "ts": "timestamp", "day": "date", "tags": "array",
                     "nums": "array", "blob": "varbinary", "info": "row", "attrs": "map", "flag": "boolean",
                     "score": "double"}
    header, row = ([d.get("VarCharValue") for d in r["Data"]] for r in rs["Rows"])
    assert dict(zip(header, row)) == {
        "pk": "k0003", "amount": "0.03", "ts": "2024-01-01 00:00:03.000003", "day": "2024-01-04",
        "tags": "[a, b]", "nums": "[3, -3]", "blob": "03 ff", "info": "{a=s3, b=3}", "attrs": "{k=3}",
        "flag": "true", "score": "0.75",
    }


def test_names_resolve_like_athena(athena, lake) -> None:
    cat = f'"s3tablescatalog/{lake.bucket}"'
    for sql in (f"SELECT count(*) FROM {cat}.ns.t", "SELECT count(*) FROM ns.t", "SELECT COUNT(*) FROM T",
                "WITH x AS (SELECT * FROM t) SELECT count(*) FROM x"):
        qid = _start(athena, lake, sql)
        rs = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]
        assert [[d.get("VarCharValue") for d in r["Data"]] for r in rs["Rows"]] == [["_col0"], ["2500"]], sql
        assert rs["ResultSetMetadata"]["ColumnInfo"][0]["Type"] == "bigint"
    # fully qualified without any context
    qid = athena.start_query_execution(QueryString=f"SELECT max(pk) AS top FROM {cat}.ns.t",
                                       ResultConfiguration={"OutputLocation": f"s3://res-{lake.bucket}/x"})["QueryExecutionId"]
    rows = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"]
    assert [r["Data"][0]["VarCharValue"] for r in rows] == ["top", "k2499"]


@pytest.mark.parametrize(("sql", "reason"), [
    ("SELECT * FROM\n  nope", "TABLE_NOT_FOUND: line 2:3: Table 's3tablescatalog/{b}.ns.nope' does not exist"),
    ("SELECT * FROM other.t", "SCHEMA_NOT_FOUND: line 1:15: Schema 'other' does not exist"),
    ('SELECT * FROM "s3tablescatalog/missing-bucket".ns.t', "CATALOG_NOT_FOUND: line 1:15: Catalog 's3tablescatalog/missing-bucket' does not exist"),
    ("SELECT nope FROM t", "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved"),
    ("SELEC 1", "SYNTAX_ERROR: line 1:1: syntax error at or near \"SELEC\""),
])
def test_failures_carry_athenas_reason(athena, lake, sql, reason) -> None:
    qid = _start(athena, lake, sql)
    status = _final(athena, qid)["Status"]
    expected = reason.format(b=lake.bucket)
    assert status["State"] == "FAILED" and status["StateChangeReason"] == expected
    assert status["AthenaError"]["ErrorMessage"] == expected and status["AthenaError"]["ErrorCategory"] == 2
    with pytest.raises(ClientError) as err:
        athena.get_query_results(QueryExecutionId=qid)
    assert err.value.response["Error"]["Code"] == "InvalidRequestException"


def test_validation_like_athena(athena, lake, client) -> None:
    with pytest.raises(ClientError) as err:
        athena.start_query_execution(QueryString="SELECT 1")
    assert err.value.response["Error"] == {
        "Code": "InvalidRequestException",
        "Message": "No output location provided. An output location is required either through the Workgroup "
                   "result configuration setting or as an API input."}
    with pytest.raises(ClientError) as err:
        athena.start_query_execution(QueryString="SELECT 1", WorkGroup="nope",
                                     ResultConfiguration={"OutputLocation": "s3://x/"})
    assert err.value.response["Error"]["Code"] == "InvalidRequestException"
    qid = _start(athena, lake, "SELECT 1 AS one")
    with pytest.raises(ClientError) as err:
        athena.get_query_results(QueryExecutionId=qid, MaxResults=1001)
    assert err.value.response["Error"]["Code"] == "InvalidRequestException"
    with pytest.raises(ClientError):
        athena.get_query_results(QueryExecutionId=qid, NextToken="garbage")
    with pytest.raises(ClientError) as err:
        athena.get_work_group(WorkGroup="nope")
    assert err.value.response["Error"]["Message"] == "WorkGroup nope is not found."
    assert athena.get_work_group(WorkGroup="primary")["WorkGroup"]["State"] == "ENABLED"


def test_the_workgroups_output_location(athena, lake) -> None:
    wg = f"wg-{uuid.uuid4().hex[:8]}"
    athena.create_work_group(Name=wg, Configuration={
        "ResultConfiguration": {"OutputLocation": f"s3://res-{lake.bucket}/wg/"}, "EnforceWorkGroupConfiguration": True})
    qid = athena.start_query_execution(QueryString="SELECT 2 AS two", WorkGroup=wg,
                                       ResultConfiguration={"OutputLocation": f"s3://res-{lake.bucket}/ignored/"})["QueryExecutionId"]
    qe = _final(athena, qid)
    assert qe["ResultConfiguration"]["OutputLocation"] == f"s3://res-{lake.bucket}/wg/{qid}.csv" and qe["WorkGroup"] == wg
    assert athena.list_query_executions(WorkGroup=wg)["QueryExecutionIds"] == [qid]


def test_a_missing_output_bucket_fails_the_query(athena, lake) -> None:
    qid = _start(athena, lake, "SELECT 1", ResultConfiguration={"OutputLocation": "s3://no-such-results-bucket/x/"})
    status = _final(athena, qid)["Status"]
    assert status["State"] == "FAILED" and status["StateChangeReason"] == "Unable to verify/create output bucket no-such-results-bucket"


def test_queued_queries_can_be_cancelled(athena, lake, sandbox) -> None:
    sbc.athena_hold(sandbox.endpoint_url, True)
    try:
        qid = _start(athena, lake, "SELECT count(*) FROM t")
        token_qid = _start(athena, lake, "SELECT 1", ClientRequestToken="same-token-0123456789012345678901")
        again = _start(athena, lake, "SELECT 1", ClientRequestToken="same-token-0123456789012345678901")
        assert again == token_qid  # idempotent with a ClientRequestToken
        assert _final(athena, qid)["Status"]["State"] == "QUEUED"
        athena.stop_query_execution(QueryExecutionId=qid)
        status = _final(athena, qid)["Status"]
        assert status["State"] == "CANCELLED" and "CompletionDateTime" in status
        with pytest.raises(ClientError) as err:
            athena.get_query_results(QueryExecutionId=qid)
        assert "CANCELLED" in err.value.response["Error"]["Message"]
    finally:
        sbc.athena_hold(sandbox.endpoint_url, False)
    assert _final(athena, token_qid)["Status"]["State"] == "SUCCEEDED"
    batch = athena.batch_get_query_execution(QueryExecutionIds=[qid, token_qid, "not-a-query"])
    assert sorted(q["Status"]["State"] for q in batch["QueryExecutions"]) == ["CANCELLED", "SUCCEEDED"]
    assert [u["QueryExecutionId"] for u in batch["UnprocessedQueryExecutionIds"]] == ["not-a-query"]
    athena.stop_query_execution(QueryExecutionId=token_qid)  # a finished query stays finished
    assert _final(athena, token_qid)["Status"]["State"] == "SUCCEEDED"


def test_only_read_queries_run(athena, lake) -> None:
    qid = _start(athena, lake, "DELETE FROM t WHERE pk = 'k0001'")
    status = _final(athena, qid)["Status"]
    assert status["State"] == "FAILED" and status["StateChangeReason"].startswith("NOT_SUPPORTED:")
