"""The Firehose data plane end to end: DynamoDB -> Kinesis -> Firehose (deployed transform zip)
-> Iceberg table in S3 Tables, and everything that fails -> the error bucket.

Nothing sleeps: pipelines buffer for 900 s at time scale 1 (the worker never flushes on its
own) and ``drain()`` flushes; the time-scale knob itself is shown by
test_time_scale_zero_flushes_at_the_next_tick."""

from __future__ import annotations

import base64
import datetime
import json
from decimal import Decimal
from typing import Any

import pytest
from test_dataplane_helpers import b64, destroy_created, product_pipeline, scripted_pipeline

from s3tstream.sandbox import client as sbc

pytestmark = pytest.mark.sandbox


@pytest.fixture(autouse=True)
def _aws_speed(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "1")
    yield
    destroy_created()  # other tests share this sandbox (and `up` counts table buckets)


def _item(pk: str, **attrs: Any) -> dict[str, Any]:
    return {"pk": {"S": pk}, **attrs}


def test_insert_modify_remove_reach_the_table_with_exact_values(sandbox, client) -> None:
    p = product_pipeline(sandbox, client)
    ddb = p.lake.c("dynamodb")
    ddb.put_item(TableName=p.ddb_table, Item=_item(
        "a",
        amount={"N": "12345678.90"},
        ts={"S": "2024-05-01T12:34:56.123456Z"},
        day={"S": "2024-02-29"},
        tags={"SS": ["zeta", "alpha"]},
        nums={"NS": ["10", "-2", "3"]},
        blob={"B": b"\x00\xffbin"},
        info={"M": {"a": {"S": "x"}, "b": {"N": "9007199254740993"}}},
        attrs={"M": {"k1": {"S": "v1"}, "k2": {"S": "v2"}}},
        flag={"BOOL": True},
        score={"N": "0.1"},
    ))
    ddb.put_item(TableName=p.ddb_table, Item=_item("b", amount={"N": "1"}))
    ddb.put_item(TableName=p.ddb_table, Item=_item("c", amount={"N": "7.5"}))
    ddb.update_item(TableName=p.ddb_table, Key={"pk": {"S": "b"}}, UpdateExpression="SET amount = :v, flag = :f",
                    ExpressionAttributeValues={":v": {"N": "-0.01"}, ":f": {"BOOL": False}})
    ddb.delete_item(TableName=p.ddb_table, Key={"pk": {"S": "c"}})

    status = p.drain()

    assert status["totals"]["read"] == 5 and status["drained"]
    assert status.get("totals", {}).get("iceberg_failed", 0) == 0 and status["totals"].get("processing_failed", 0) == 0
    rows = p.lake.rows()
    assert [r["pk"] for r in rows] == ["a", "b"]
    a, b = rows
    assert a == {
        "pk": "a",
        "amount": Decimal("12345678.90"),
        "ts": datetime.datetime(2024, 5, 1, 12, 34, 56, 123456),
        "day": datetime.date(2024, 2, 29),
        "tags": ["alpha", "zeta"],
        "nums": [-2, 3, 10],
        "blob": b"\x00\xffbin",
        "info": {"a": "x", "b": 9007199254740993},
        "attrs": [("k1", "v1"), ("k2", "v2")],
        "flag": True,
        "score": 0.1,
    }
    assert b["amount"] == Decimal("-0.01") and b["flag"] is False and b["ts"] is None
    assert p.lake.error_lines() == []


def test_a_change_delivered_twice_leaves_one_row_in_upsert_mode(sandbox, client) -> None:
    p = product_pipeline(sandbox, client)
    ddb = p.lake.c("dynamodb")
    ddb.put_item(TableName=p.ddb_table, Item=_item("dup", amount={"N": "1.00"}))
    ddb.update_item(TableName=p.ddb_table, Key={"pk": {"S": "dup"}}, UpdateExpression="SET amount = :v",
                    ExpressionAttributeValues={":v": {"N": "2.00"}})
    p.drain()
    # Kinesis delivers the MODIFY again (at-least-once): same bytes, same partition key
    modify = next(r for r in p.source_records() if json.loads(r["Data"])["eventName"] == "MODIFY")
    p.lake.c("kinesis").put_record(StreamName=p.stream, Data=modify["Data"], PartitionKey=modify["PartitionKey"])
    status = p.drain()

    assert status["totals"]["read"] == 3
    assert p.lake.rows() == [{**p.lake.rows()[0], "pk": "dup", "amount": Decimal("2.00")}]
    assert len(p.lake.rows()) == 1


def test_changelog_mode_keeps_every_change(sandbox, client) -> None:
    p = product_pipeline(sandbox, client, mode="changelog", columns=[("pk", "string", True), ("amount", "decimal(10,2)", False)])
    ddb = p.lake.c("dynamodb")
    ddb.put_item(TableName=p.ddb_table, Item=_item("x", amount={"N": "1"}))
    ddb.put_item(TableName=p.ddb_table, Item=_item("x", amount={"N": "2"}))
    ddb.delete_item(TableName=p.ddb_table, Key={"pk": {"S": "x"}})
    p.drain()

    rows = sorted(p.lake.load().scan().to_arrow().to_pylist(), key=lambda r: r["_event_time"])
    assert [(r["pk"], r["_op"], r["amount"]) for r in rows] == [
        ("x", "insert", Decimal("1.00")), ("x", "modify", Decimal("2.00")), ("x", "remove", Decimal("2.00"))]
    assert len({r["_event_id"] for r in rows}) == 3
    assert all(r["_event_time"].tzinfo is not None for r in rows)


def test_a_record_the_transform_fails_lands_in_the_error_bucket(sandbox, client) -> None:
    p = product_pipeline(sandbox, client)
    ddb = p.lake.c("dynamodb")
    ddb.put_item(TableName=p.ddb_table, Item=_item("ok", amount={"N": "1.5"}))
    ddb.put_item(TableName=p.ddb_table, Item=_item("bad", amount={"N": "1.234"}))  # 3 decimals into decimal(12,2)
    status = p.drain()

    assert [r["pk"] for r in p.lake.rows()] == ["ok"]
    assert status["totals"]["processing_failed"] == 1
    (key, lines), = p.lake.error_objects()
    assert key.startswith("errors/processing-failed/") and f"/{p.delivery}-1-" in key
    line, = lines
    assert set(line) == {"attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp",
                         "rawData", "lambdaArn"}
    assert line["errorCode"] == "Lambda.ProcessingFailedStatus"
    assert line["lambdaArn"] == p.function_arn and line["attemptsMade"] == 1
    assert line["attemptEndingTimestamp"] >= line["arrivalTimestamp"]
    original = json.loads(base64.b64decode(line["rawData"]))  # the change record as it came in
    assert original["eventName"] == "INSERT" and original["dynamodb"]["Keys"] == {"pk": {"S": "bad"}}


def test_without_the_table_grant_deliveries_fail_into_the_error_bucket(sandbox, client) -> None:
    p = product_pipeline(sandbox, client)
    ddb = p.lake.c("dynamodb")
    ddb.put_item(TableName=p.ddb_table, Item=_item("before", amount={"N": "1"}))
    p.drain()
    p.lake.revoke()
    ddb.put_item(TableName=p.ddb_table, Item=_item("denied", amount={"N": "2"}))
    status = p.drain()

    assert [r["pk"] for r in p.lake.rows()] == ["before"]
    assert status["totals"]["iceberg_failed"] == 1
    (key, (line,)), = p.lake.error_objects()
    assert key.startswith("errors/iceberg-failed/")
    assert line["errorCode"] == "Glue.AccessDenied" and p.lake.role_arn in line["errorMessage"]
    assert json.loads(base64.b64decode(line["rawData"]))["pk"] == "denied"  # the row the transform made
    assert line["dataCatalogTable"] == {"catalogArn": p.lake.catalog_arn, "databaseName": "ns", "tableName": "t",
                                        "region": "us-east-1"}
    # granted again: the next change is delivered
    p.lake.grant()
    ddb.put_item(TableName=p.ddb_table, Item=_item("after", amount={"N": "3"}))
    p.drain()
    assert [r["pk"] for r in p.lake.rows()] == ["after", "before"]


@pytest.mark.parametrize(("mode", "code"), [
    ("drop_id", "Lambda.MissingRecordId"),
    ("dup_id", "Lambda.DuplicatedRecordId"),
    ("bad_result", "Lambda.JsonProcessingException"),
    ("not_json", "Lambda.JsonProcessingException"),
    ("raise", "Lambda.FunctionError"),
])
def test_a_response_that_breaks_the_contract_fails_the_whole_batch(sandbox, client, mode: str, code: str) -> None:
    p = scripted_pipeline(sandbox, client, mode=mode, retries=2)
    for i in range(3):
        p.put({"row": {"pk": f"r{i}", "n": i}}, key="same-shard")
    status = p.drain()

    assert p.lake.rows() == []
    lines = p.lake.error_lines()
    assert len(lines) == 3 and status["totals"]["processing_failed"] == 3
    assert {line["errorCode"] for line in lines} == {code}
    assert {line["attemptsMade"] for line in lines} == {3}  # NumberOfRetries 2 -> 3 invocations
    assert sorted(json.loads(base64.b64decode(line["rawData"]))["row"]["pk"] for line in lines) == ["r0", "r1", "r2"]


def test_rows_that_do_not_fit_the_table_fail_one_by_one(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client)
    p.put({"row": {"pk": "good", "n": 1}})
    p.put({"row": {"n": 2}})  # no pk (required)
    p.put({"row": {"pk": "PK-case", "N": 3}})  # wrong case: n is null, fine
    p.put({"row": {"pk": "typed", "n": "three"}})  # a string for a long
    p.put({"row": {"pk": "gone", "n": 4}, "op": "delete"})  # delete of an absent key: nothing to do
    p.put({"result": "Dropped"})
    status = p.drain()

    assert [(r["pk"], r["n"]) for r in p.lake.rows()] == [("PK-case", None), ("good", 1)]
    codes = sorted(line["errorCode"] for line in p.lake.error_lines())
    assert codes == ["Iceberg.InvalidColumnValue", "Iceberg.MissingColumnWithinRecord"]
    assert status["totals"]["dropped"] == 1


def test_operations_apply_in_order_with_unique_keys(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client)
    for doc in (
        {"row": {"pk": "a", "n": 1}, "op": "insert"},
        {"row": {"pk": "a", "n": 2}, "op": "insert"},   # insert keeps duplicates
        {"row": {"pk": "b", "n": 1}, "op": "update"},   # update of an absent key inserts it
        {"row": {"pk": "b", "n": 2}, "op": "update"},
        {"row": {"pk": "c", "n": 1}, "op": "update"},
        {"row": {"pk": "c"}, "op": "delete"},
    ):
        p.put(doc, key="one-shard")
    p.drain()
    assert sorted((r["pk"], r["n"]) for r in p.lake.rows()) == [("a", 1), ("a", 2), ("b", 2)]
    p.put({"row": {"pk": "a", "n": 3}, "op": "update"}, key="one-shard")  # replaces both "a" rows
    p.drain()
    assert sorted((r["pk"], r["n"]) for r in p.lake.rows()) == [("a", 3), ("b", 2)]


def test_one_commit_per_flush_and_checkpoints(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client)
    for i in range(20):
        p.put({"row": {"pk": f"k{i:02d}", "n": i}, "op": "update"}, key=f"pk{i}")
    status = p.drain()
    table = p.lake.load()
    assert len(table.metadata.snapshots) == 1  # 20 records, one flush, one commit
    assert status["totals"]["commits"] == 1 and status["flushes"] == 1
    assert all(c["read"] == c["done"] for c in status["checkpoints"].values())
    # nothing new: draining again delivers nothing twice
    again = p.drain()
    assert again["totals"]["read"] == 20 and len(p.lake.load().metadata.snapshots) == 1


def test_buffering_hints_hold_records_until_the_interval(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client)  # a 900 s buffer at AWS speed
    p.put({"row": {"pk": "held", "n": 1}})
    sbc.run_workers(p.endpoint)  # a normal tick: read, not due
    (status,) = sbc.firehose_status(p.endpoint, p.delivery)
    assert status["buffered"] == 1 and not status["drained"] and p.lake.rows() == []
    (status,) = sbc.firehose_flush(p.endpoint, p.delivery)  # flush ignores the hints
    assert status["drained"] and [r["pk"] for r in p.lake.rows()] == ["held"]


def test_records_before_the_stream_existed_are_not_delivered(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client)
    status = p.drain()
    assert status["totals"].get("read", 0) == 0
    p.put({"row": {"pk": "new", "n": 1}})
    assert p.drain()["totals"]["read"] == 1


def test_drain_of_an_unknown_stream_is_an_error(sandbox) -> None:
    with pytest.raises(sbc.SandboxControlError, match="ResourceNotFoundException"):
        sbc.firehose_wait_drained(sandbox.endpoint_url, "no-such-stream", timeout=1)


def test_a_missing_error_bucket_keeps_the_records_until_it_exists(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client, mode="raise", retries=0)
    s3 = p.lake.c("s3")
    s3.delete_bucket(Bucket=p.lake.error_bucket)
    p.put({"row": {"pk": "a", "n": 1}})
    with pytest.raises(sbc.SandboxControlError, match="DrainTimeout.*does not exist"):
        p.drain(timeout=0.3)
    s3.create_bucket(Bucket=p.lake.error_bucket)
    p.drain()
    (line,) = p.lake.error_lines()
    assert line["errorCode"] == "Lambda.FunctionError" and line["rawData"] == b64(json.dumps({"row": {"pk": "a", "n": 1}}).encode())


def test_time_scale_zero_flushes_at_the_next_tick(sandbox, client, monkeypatch) -> None:
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
    p = scripted_pipeline(sandbox, client, interval=15)
    p.put({"row": {"pk": "soon", "n": 1}})
    sbc.run_workers(p.endpoint)  # one ordinary tick, no forced flush
    assert [r["pk"] for r in p.lake.rows()] == ["soon"]


def test_a_failing_table_is_retried_within_the_retry_window(sandbox, client, monkeypatch) -> None:
    p = scripted_pipeline(sandbox, client, retry_seconds=300)  # 300 s at AWS speed
    p.lake.revoke()
    p.put({"row": {"pk": "waits", "n": 1}})
    (status,) = sbc.firehose_flush(p.endpoint, p.delivery)
    assert status["pending"]["tables"] == ["ns.t"] and "Glue.AccessDenied" in status["last_error"]
    assert p.lake.error_lines() == []  # still retrying: nothing lost, nothing in the error bucket yet
    p.lake.grant()
    (status,) = sbc.firehose_flush(p.endpoint, p.delivery)
    assert status["drained"] and [r["pk"] for r in p.lake.rows()] == ["waits"]
