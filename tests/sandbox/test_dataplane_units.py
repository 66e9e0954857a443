"""Unit tests of the data plane's parts: time scale, buffering, checkpoints, the Lambda contract,
error records and object keys, row conversion and operation planning (no server)."""

from __future__ import annotations

import base64
import datetime
import json
import re
from decimal import Decimal

import pytest

from s3tstream.sandbox.dataplane import contract, error_output, iceberg_writer, timescale
from s3tstream.sandbox.dataplane.buffering import MIB, Buffer, Checkpoints, chunks, positions
from s3tstream.sandbox.dataplane.contract import ContractViolation, SourceRecord


def rec(seq: int, data: bytes = b"{}", shard: str = "shardId-000000000000", arrival: int = 1_700_000_000_000) -> SourceRecord:
    return SourceRecord(shard, str(seq), 0, "pk", base64.b64encode(data).decode(), arrival, contract.record_id(0, str(seq)))


# ------------------------------------------------------------------ time scale
@pytest.mark.parametrize(("text", "value"), [(None, 1 / 15), ("", 1 / 15), ("1/15", 1 / 15), ("0", 0.0), ("0.5", 0.5), ("1", 1.0)])
def test_time_scale_parses_numbers_and_fractions(text, value) -> None:
    assert timescale.parse(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["fast", "-1", "1/0"])
def test_time_scale_refuses_junk(text) -> None:
    with pytest.raises(ValueError, match="S3TSTREAM_SANDBOX_TIME_SCALE"):
        timescale.parse(text)


def test_scaled_durations_follow_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(timescale.ENV, "1/15")
    assert timescale.scaled(15) == pytest.approx(1.0)
    monkeypatch.setenv(timescale.ENV, "nonsense")  # invalid: the default, never a crash
    assert timescale.scaled(300) == pytest.approx(20.0)
    monkeypatch.setenv(timescale.ENV, "0")
    assert timescale.scaled(900) == 0.0


# ------------------------------------------------------------------ buffering
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_buffer_flushes_at_the_scaled_interval(monkeypatch) -> None:
    monkeypatch.setenv(timescale.ENV, "1/15")
    clock = Clock()
    buf = Buffer(clock)
    assert not buf.due(1, 15)  # empty: never due
    buf.add([rec(1)])
    clock.now += 0.9
    assert not buf.due(1, 15)
    clock.now += 0.1  # 15 s / 15 = 1 s after the first record
    assert buf.due(1, 15)
    taken = buf.take()
    assert [r.sequence_number for r in taken] == ["1"] and len(buf) == 0 and buf.bytes == 0


def test_buffer_flushes_at_the_size_hint_and_interval_zero_at_once(monkeypatch) -> None:
    monkeypatch.setenv(timescale.ENV, "1")
    buf = Buffer(Clock())
    buf.add([rec(1, b"x" * (MIB // 2))])
    assert not buf.due(1, 900)
    buf.add([rec(2, b"x" * (MIB // 2))])
    assert buf.bytes == MIB and buf.due(1, 900)
    small = Buffer(Clock())
    small.add([rec(3)])
    assert small.due(128, 0)


def test_record_size_is_the_decoded_size() -> None:
    for n in range(0, 7):
        assert rec(1, b"a" * n).size == n


def test_chunks_respect_the_processor_buffer_size() -> None:
    records = [rec(i, b"x" * 400) for i in range(1, 6)]
    assert [len(c) for c in chunks(records, 1000)] == [2, 2, 1]
    assert [len(c) for c in chunks([rec(1, b"x" * 5000)], 1000)] == [1]  # one big record still goes alone


# ------------------------------------------------------------------ checkpoints
def test_checkpoints_never_read_twice_and_never_complete_unread_records() -> None:
    cp = Checkpoints()
    cp.mark_read("s0", 3)
    with pytest.raises(ValueError, match="read twice"):
        cp.mark_read("s0", 3)
    with pytest.raises(ValueError, match="before reading"):
        cp.mark_done({"s0": 4})
    cp.mark_done({"s0": 3})
    cp.mark_done({"s0": 2})  # never backwards
    assert cp.shards["s0"].done == 3 and cp.pending() == {}
    cp.mark_read("s0", 4)
    assert cp.pending() == {"s0": (4, 3)}
    assert cp.to_json() == {"s0": {"read": "4", "done": "3"}}


def test_positions_are_the_highest_sequence_per_shard() -> None:
    records = [rec(5), rec(7), rec(2, shard="s1"), rec(6)]
    assert positions(records) == {"shardId-000000000000": 7, "s1": 2}


# ------------------------------------------------------------------ the Lambda contract
def test_the_event_has_firehoses_shape() -> None:
    r = rec(42, b'{"a":1}')
    ev = contract.build_event([r], "arn:ds", "arn:ks", "us-east-1")
    assert set(ev) == {"invocationId", "deliveryStreamArn", "sourceKinesisStreamArn", "region", "records"}
    (item,) = ev["records"]
    assert item == {
        "recordId": r.record_id,
        "approximateArrivalTimestamp": r.arrival_ms,
        "data": r.data_b64,
        "kinesisRecordMetadata": {"sequenceNumber": "42", "subsequenceNumber": 0, "partitionKey": "pk",
                                  "shardId": "shardId-000000000000", "approximateArrivalTimestamp": r.arrival_ms},
    }
    assert contract.record_id(0, "42") != contract.record_id(1, "42")


def _ok(r: SourceRecord, data: bytes = b'{"x":1}', **extra) -> dict:
    return {"recordId": r.record_id, "result": "Ok", "data": base64.b64encode(data).decode(), **extra}


def test_a_valid_response_maps_every_record() -> None:
    a, b, c = rec(1), rec(2), rec(3)
    meta = {"otfMetadata": {"operation": "update"}}
    out = contract.check_response([a, b, c], {"records": [
        {"recordId": c.record_id, "result": "ProcessingFailed", "data": ""},
        _ok(a, metadata=meta),
        {"recordId": b.record_id, "result": "Dropped"},
    ]})
    assert [o.result for o in out] == ["Ok", "Dropped", "ProcessingFailed"]
    assert out[0].data == b'{"x":1}' and out[0].metadata == meta
    assert out[2].error_code == "Lambda.ProcessingFailedStatus"


@pytest.mark.parametrize(("response", "code"), [
    ({"records": []}, "Lambda.MissingRecordId"),
    ({"records": "no"}, "Lambda.JsonProcessingException"),
    ("text", "Lambda.JsonProcessingException"),
    ({}, "Lambda.JsonProcessingException"),
])
def test_responses_that_break_the_contract(response, code) -> None:
    with pytest.raises(ContractViolation) as err:
        contract.check_response([rec(1)], response)
    assert err.value.code == code


def test_missing_extra_duplicate_and_malformed_records() -> None:
    a, b = rec(1), rec(2)
    cases = [
        ({"records": [_ok(a)]}, "Lambda.MissingRecordId"),
        ({"records": [_ok(a), _ok(b), {**_ok(a), "recordId": "stranger"}]}, "Lambda.MissingRecordId"),
        ({"records": [_ok(a), _ok(b), _ok(a)]}, "Lambda.DuplicatedRecordId"),
        ({"records": [_ok(a), {**_ok(b), "result": "ok"}]}, "Lambda.JsonProcessingException"),
        ({"records": [_ok(a), {"recordId": b.record_id, "result": "Ok"}]}, "Lambda.JsonProcessingException"),
        ({"records": [_ok(a), {**_ok(b), "data": "%%%"}]}, "Lambda.JsonProcessingException"),
        ({"records": [_ok(a), {**_ok(b), "metadata": "x"}]}, "Lambda.JsonProcessingException"),
        ({"records": [_ok(a), {"result": "Ok"}]}, "Lambda.JsonProcessingException"),
    ]
    for response, code in cases:
        with pytest.raises(ContractViolation) as err:
            contract.check_response([a, b], response)
        assert err.value.code == code, response
    assert contract.ERRORS["Lambda.MissingRecordId"].startswith("One or more record Ids were not returned.")


def test_a_failed_batch_names_every_record() -> None:
    out = contract.failed_batch([rec(1), rec(2)], "Lambda.FunctionError", "boom", 4)
    assert [(o.result, o.error_code, o.attempts) for o in out] == [("ProcessingFailed", "Lambda.FunctionError", 4)] * 2


# ------------------------------------------------------------------ error records and keys
def test_processing_failed_record_has_the_documented_fields() -> None:
    line = error_output.processing_failed_record(raw_b64="eA==", arrival_ms=1, code="Lambda.FunctionError",
                                                 message="m", attempts=4, lambda_arn="arn:l", ended_ms=2)
    assert line == {"attemptsMade": 4, "arrivalTimestamp": 1, "errorCode": "Lambda.FunctionError", "errorMessage": "m",
                    "attemptEndingTimestamp": 2, "rawData": "eA==", "lambdaArn": "arn:l"}


def test_iceberg_failed_record_names_the_table_and_position() -> None:
    line = error_output.iceberg_failed_record(
        raw_b64="eA==", arrival_ms=1, code="Iceberg.MissingColumnWithinRecord", message="m", attempts=1,
        sequence_number="9", subsequence_number=0, catalog_arn="arn:c", database="ns", table="t", region="r")
    assert line["sequenceNumber"] == "9" and line["subSequenceNumber"] == 0
    assert line["dataCatalogTable"] == {"catalogArn": "arn:c", "databaseName": "ns", "tableName": "t", "region": "r"}
    assert json.dumps(line)  # JSON-able


def test_error_prefixes() -> None:
    t = int(datetime.datetime(2024, 3, 9, 7, 5, tzinfo=datetime.timezone.utc).timestamp() * 1000)
    assert error_output.evaluate_prefix("errors/", "processing-failed", t) == "errors/processing-failed/2024/03/09/07/"
    assert error_output.evaluate_prefix(None, "iceberg-failed", t) == "iceberg-failed/2024/03/09/07/"
    custom = "e/!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd}/!{firehose:random-string}/"
    out = error_output.evaluate_prefix(custom, "processing-failed", t)
    assert re.fullmatch(r"e/processing-failed/2024-03-09/[a-z0-9]{11}/", out)
    key = error_output.object_key("errors/", "processing-failed", "my-stream", "3", t)
    assert re.fullmatch(r"errors/processing-failed/2024/03/09/07/my-stream-3-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d-[0-9a-f-]{36}", key)


def test_error_bucket_arns() -> None:
    assert error_output.bucket_from_arn("arn:aws:s3:::errs") == "errs"
    with pytest.raises(error_output.ErrorOutputUnavailable):
        error_output.bucket_from_arn("errs")


# ------------------------------------------------------------------ rows and operations
def _schema():
    from pyiceberg import types as T
    from pyiceberg.schema import Schema

    return Schema(
        T.NestedField(1, "pk", T.StringType(), required=True),
        T.NestedField(2, "amount", T.DecimalType(10, 2)),
        T.NestedField(3, "ts", T.TimestampType()),
        T.NestedField(4, "tstz", T.TimestamptzType()),
        T.NestedField(5, "day", T.DateType()),
        T.NestedField(6, "blob", T.BinaryType()),
        T.NestedField(7, "tags", T.ListType(10, T.StringType())),
        T.NestedField(8, "attrs", T.MapType(11, T.StringType(), 12, T.LongType())),
        T.NestedField(9, "info", T.StructType(T.NestedField(13, "a", T.BooleanType()), T.NestedField(14, "b", T.DoubleType()))),
        identifier_field_ids=[1],
    )


def test_rows_convert_exactly() -> None:
    obj = iceberg_writer.parse_record(json.dumps({
        "pk": "a", "amount": 12.5, "ts": 1_714_566_896_123_456, "tstz": "2024-05-01T12:34:56.123456+02:00",
        "day": 19844, "blob": base64.b64encode(b"\x00\x01").decode(), "tags": ["x", None],
        "attrs": {"k": 1}, "info": {"a": True, "extra": "ignored"}, "unknown_column": 1,
    }).encode())
    row = iceberg_writer.to_row(obj, _schema())
    assert row == {
        "pk": "a", "amount": Decimal("12.50"),
        "ts": datetime.datetime(2024, 5, 1, 12, 34, 56, 123456),
        "tstz": datetime.datetime(2024, 5, 1, 10, 34, 56, 123456, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 5, 1), "blob": b"\x00\x01", "tags": ["x", None], "attrs": [("k", 1)],
        "info": {"a": True, "b": None},
    }


@pytest.mark.parametrize(("obj", "code"), [
    ({"amount": 1}, "Iceberg.MissingColumnWithinRecord"),
    ({"pk": None}, "Iceberg.MissingColumnWithinRecord"),
    ({"PK": "a"}, "Iceberg.MissingColumnWithinRecord"),  # keys match by exact case
    ({"pk": 1}, "Iceberg.InvalidColumnValue"),
    ({"pk": "a", "amount": 1.234}, "Iceberg.InvalidColumnValue"),  # never rounded
    ({"pk": "a", "amount": 123456789.0}, "Iceberg.InvalidColumnValue"),  # 11 digits > precision 10
    ({"pk": "a", "ts": True}, "Iceberg.InvalidColumnValue"),
    ({"pk": "a", "info": {"a": "yes"}}, "Iceberg.InvalidColumnValue"),
    ({"pk": "a", "blob": "not base64!"}, "Iceberg.InvalidColumnValue"),
    ({"pk": "a", "attrs": {"k": 1.5}}, "Iceberg.InvalidColumnValue"),
])
def test_rows_that_do_not_fit(obj, code) -> None:
    with pytest.raises(iceberg_writer.RowError) as err:
        iceberg_writer.to_row(iceberg_writer.parse_record(json.dumps(obj).encode()), _schema())
    assert err.value.code == code


def test_a_record_must_be_a_json_object() -> None:
    for raw in (b"[1]", b"nope", b"\xff"):
        with pytest.raises(iceberg_writer.RowError) as err:
            iceberg_writer.parse_record(raw)
        assert err.value.code == "Iceberg.InvalidJson"


def test_unique_keys_come_from_the_configuration_or_the_identifier_fields() -> None:
    schema = _schema()
    assert iceberg_writer.unique_keys_for(schema, None) == ["pk"]
    assert iceberg_writer.unique_keys_for(schema, ["pk", "day"]) == ["pk", "day"]
    with pytest.raises(iceberg_writer.RowError) as err:
        iceberg_writer.unique_keys_for(schema, ["nope"])
    assert err.value.code == "Iceberg.InvalidUniqueKeys"
    assert err.value.message == "The configured unique keys for the table do not match with the fields present in the schema."


def test_operations_plan_in_order() -> None:
    Op = iceberg_writer.Op
    ops = [
        Op("insert", {"pk": "a", "v": 1}),
        Op("insert", {"pk": "a", "v": 2}),       # duplicates stay with insert
        Op("update", {"pk": "b", "v": 1}),
        Op("update", {"pk": "b", "v": 2}),       # last update wins
        Op("insert", {"pk": "c", "v": 1}),
        Op("delete", {"pk": "c"}),               # removes the insert before it
        Op("delete", {"pk": "d"}),
        Op("update", {"pk": "d", "v": 9}),       # delete then update: the row is back
        Op("insert", {"pk": None, "v": 0}),      # no key: insert only
    ]
    rows, deleted = iceberg_writer.plan(ops, ["pk"])
    assert [(r["pk"], r["v"]) for r in rows] == [("a", 1), ("a", 2), ("b", 2), ("d", 9), (None, 0)]
    assert deleted == {("b",), ("c",), ("d",)}


def test_timestamp_keys_compare_across_json_and_scans() -> None:
    dt = datetime.datetime(2024, 1, 1, 0, 0, 0, 1)
    assert iceberg_writer.norm_key(dt) == iceberg_writer.norm_key(dt.replace(tzinfo=None))
    assert iceberg_writer.norm_key(bytearray(b"x")) == b"x"


def test_records_put_back_keep_their_order() -> None:
    buf = Buffer(Clock())
    buf.add([rec(3)])
    buf.put_back([rec(1), rec(2)])
    assert [r.sequence_number for r in buf.take()] == ["1", "2", "3"]
