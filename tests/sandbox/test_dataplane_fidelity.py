"""The sandbox's Firehose writer behaves like AWS's where `verify` depends on it: NULLs of every
nested type stay NULL in the Parquet files, 38-digit decimals, the documented error codes, a
write that keeps failing goes to the error bucket after the retry duration, the API's default
buffer size."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_dataplane_helpers import destroy_created, scripted_pipeline

from s3tstream.sandbox import client as sbc
from s3tstream.sandbox.dataplane import buffering, iceberg_writer

pytestmark = pytest.mark.sandbox

NESTED = [
    ("pk", "string", True),
    ("ls", "list<struct<a:string,b:long>>", False),
    ("st", "struct<a:string,inner:struct<x:long>>", False),
    ("mp", "map<string,struct<a:string>>", False),
    ("ll", "list<list<long>>", False),
    ("lm", "list<map<string,long>>", False),
    ("ns", "struct<xs:list<string>>", False),
]


@pytest.fixture(autouse=True)
def _aws_speed(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "1")
    yield
    destroy_created()


def _parquet_rows(p: Any) -> list[dict[str, Any]]:
    """The table's data files read with pyarrow alone (no PyIceberg projection)."""
    t = p.lake.load()
    out = []
    for task in t.scan().plan_files():
        with t.io.new_input(task.file.file_path).open() as fh:
            out += pq.read_table(fh).to_pylist()
    return sorted(out, key=lambda r: r["pk"])


def test_nulls_of_every_nested_type_stay_null_in_the_parquet_files(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client, columns=NESTED)
    p.put({"row": {"pk": "nulls", "ls": None, "st": None, "mp": None, "ll": None, "lm": None, "ns": None}, "op": "insert"})
    p.put({"row": {"pk": "absent"}, "op": "insert"})
    p.put({"row": {"pk": "inner", "ls": [None, {"a": None, "b": 1}], "st": {"a": None, "inner": None},
                   "mp": {"k": None}, "ll": [None, [1, None]], "lm": [None], "ns": {"xs": None}}, "op": "insert"})
    p.put({"row": {"pk": "empty", "ls": [], "ll": [], "lm": [], "mp": {}, "ns": {"xs": []}}, "op": "insert"})
    status = p.drain()
    assert status["totals"].get("iceberg_failed", 0) == 0, p.lake.error_lines()
    rows = {r["pk"]: r for r in _parquet_rows(p)}
    for pk in ("nulls", "absent"):
        assert all(rows[pk][c] is None for c, _, _ in NESTED[1:]), rows[pk]
    inner = rows["inner"]
    assert inner["ls"] == [None, {"a": None, "b": 1}]
    assert inner["st"] == {"a": None, "inner": None}
    assert inner["mp"] == [("k", None)] and inner["ll"] == [None, [1, None]] and inner["lm"] == [None]
    assert inner["ns"] == {"xs": None}
    empty = rows["empty"]
    assert empty["ls"] == [] and empty["ll"] == [] and empty["mp"] == [] and empty["ns"] == {"xs": []}


def test_38_digit_decimals_are_written_exactly(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client, columns=[("pk", "string", True), ("d", "decimal(38,10)", False),
                                                    ("i", "decimal(38,0)", False)])
    big = "1234567890123456789012345678.0123456789"  # 38 digits: over Python's default 28-digit context
    # "raw": the scripted transform passes the JSON text through untouched (no float parsing)
    p.put({"raw": '{"pk": "a", "d": %s, "i": %s}' % (big, "9" * 38), "op": "insert"})
    p.put({"raw": '{"pk": "b", "i": %s}' % ("1" * 39), "op": "insert"})
    p.drain()
    (row,) = p.lake.rows()
    assert row["d"] == Decimal(big) and row["i"] == Decimal("9" * 38)
    (line,) = p.lake.error_lines()  # 39 digits do not fit decimal(38,0): refused, not rounded
    assert line["errorCode"] == iceberg_writer.INVALID_VALUE and "more than 38 digits" in line["errorMessage"]


def test_a_missing_table_fails_with_the_documented_code(sandbox, client) -> None:
    p = scripted_pipeline(sandbox, client)
    p.lake.c("s3tables").delete_table(tableBucketARN=p.lake.bucket_arn, namespace=p.lake.namespace, name=p.lake.table)
    p.put({"row": {"pk": "a", "n": 1}, "op": "insert"})
    p.drain()
    (line,) = p.lake.error_lines()
    assert line["errorCode"] == "Iceberg.NoSuchTable"


def test_a_write_that_keeps_failing_goes_to_the_error_bucket_after_the_retry_duration(sandbox, client, monkeypatch) -> None:
    from s3tstream.sandbox.dataplane import iceberg_writer as writer

    def broken(*_: Any, **__: Any) -> Any:
        raise NotImplementedError("partition transform needs pyiceberg-core")

    p = scripted_pipeline(sandbox, client, retry_seconds=300)
    monkeypatch.setattr(writer, "apply", broken)
    p.put({"row": {"pk": "a", "n": 1}, "op": "insert"})
    (status,) = sbc.firehose_flush(p.endpoint, p.delivery)
    assert status["pending"] and "Iceberg.WriteFailed" in status["last_error"]  # within the window: retried
    assert p.lake.error_lines() == []
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")  # the retry duration is over
    status = p.drain()
    assert status["drained"] and status["totals"]["iceberg_failed"] == 1
    (line,) = p.lake.error_lines()
    assert line["errorCode"] == "Iceberg.WriteFailed" and "pyiceberg-core" in line["errorMessage"]
    assert line["attemptsMade"] >= 2


def test_the_default_buffer_size_is_the_apis_5_mib() -> None:
    assert buffering.DEFAULT_SIZE_MB == 5 and buffering.DEFAULT_INTERVAL_S == 300
    buf = buffering.Buffer(clock=lambda: 0.0)
    from s3tstream.sandbox.dataplane.contract import SourceRecord

    one_mib = "A" * (4 * buffering.MIB // 3 + 4)  # base64 of just over 1 MiB
    buf.add([SourceRecord("s", str(i), 0, "k", one_mib, 0, str(i)) for i in range(4)])
    assert not buf.due(None, None)  # 4 MiB < 5 MiB, interval not reached
    buf.add([SourceRecord("s", "9", 0, "k", one_mib, 0, "9")])
    assert buf.due(None, None)


def test_every_partition_transform_is_written_and_read_back(sandbox, client) -> None:
    """Non-identity transforms need pyiceberg-core (pinned in the sandbox extra); both writers
    (ordered copy-on-write and chaos merge-on-read) and the reader handle them."""
    import datetime

    from test_dataplane_helpers import new_lake, table_payload

    from s3tstream.lake import merge_on_read
    from s3tstream.sandbox.dataplane import row_delta
    from s3tstream.sandbox.dataplane.iceberg_writer import Op, apply

    cols = [("pk", "string", True), ("s", "string", False), ("n", "long", False), ("y", "timestamp", False),
            ("m", "timestamp", False), ("h", "timestamptz", False), ("d", "date", False), ("v", "long", False)]
    payload = table_payload(cols, ["pk"])
    transforms = ["bucket[4]", "truncate[2]", "identity", "year", "month", "hour", "day"]  # on columns 1..7
    payload["iceberg"]["partitionSpec"] = {"specId": 0, "fields": [
        {"sourceId": i + 1, "fieldId": 1000 + i, "name": f"p{i}", "transform": t} for i, t in enumerate(transforms)]}
    lake = new_lake(sandbox, client, payload)
    t = lake.load()
    assert [str(f.transform) for f in t.spec().fields] == transforms

    def row(pk: str, n: int, v: int) -> dict[str, Any]:
        ts = datetime.datetime(2024, 5, n, 12)
        return {"pk": pk, "s": f"{pk}-text", "n": n, "y": ts, "m": ts, "h": ts.replace(tzinfo=datetime.timezone.utc),
                "d": ts.date(), "v": v}

    # an update keeps the row's partition (v is not a partition source): its delete reaches the old row
    apply(t, [Op("insert", row("a", 1, 0)), Op("insert", row("b", 2, 0))], ["pk"])
    apply(t, [Op("update", row("a", 1, 1))], ["pk"])  # copy-on-write
    row_delta.apply(t, [Op("update", row("b", 2, 1)), Op("insert", row("c", 3, 0))], ["pk"])  # merge-on-read
    data, _ = merge_on_read.scan(lake.load())
    assert sorted((r["pk"], r["v"]) for r in data.to_pylist()) == [("a", 1), ("b", 1), ("c", 0)]
    assert len({f.file.partition for f in merge_on_read.plan(lake.load()).data}) == 3  # one partition per key


def test_a_format_v1_table_fails_with_no_such_table(sandbox, client) -> None:
    """Firehose's guide: Iceberg.NoSuchTable when the table does not exist or is not format v2."""
    from test_dataplane_helpers import Pipeline, _created, new_lake, scripted_zip, SCRIPTED, table_payload

    payload = table_payload([("pk", "string", True), ("n", "long", False)], ["pk"])
    payload["iceberg"]["properties"] = {"format-version": "1"}
    lake = new_lake(sandbox, client, payload)
    p = Pipeline(lake)
    _created.append(p)
    p.create(scripted_zip(SCRIPTED), "scripted.handler", {"MODE": "echo", "DB": lake.namespace, "TABLE": lake.table},
             unique_keys=None)
    p.put({"row": {"pk": "a", "n": 1}, "op": "insert"})
    p.drain()
    (line,) = p.lake.error_lines()
    assert line["errorCode"] == "Iceberg.NoSuchTable" and "v1" in line["errorMessage"]


def test_pyiceberg_projection_keeps_null_nested_lists_and_maps() -> None:
    """What the readers (local engine, sandbox Athena) and the writer rely on: PyIceberg's schema
    projection, patched by lake.pyiceberg_nulls, keeps a NULL list<struct>/map<_, struct> NULL."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import _to_requested_schema, schema_to_pyarrow
    from pyiceberg.schema import Schema
    from pyiceberg.types import ListType, LongType, MapType, NestedField, StringType, StructType

    from s3tstream.lake import pyiceberg_nulls

    schema = Schema(
        NestedField(1, "ls", ListType(2, StructType(NestedField(3, "a", LongType(), required=False)), element_required=False),
                    required=False),
        NestedField(4, "mp", MapType(5, StringType(), 6, StructType(NestedField(7, "a", LongType(), required=False)),
                                     value_required=False), required=False),
    )
    batch = pa.RecordBatch.from_pylist([{"ls": None, "mp": None}, {"ls": [{"a": 1}], "mp": [("k", {"a": 1})]},
                                        {"ls": [], "mp": []}], schema=schema_to_pyarrow(schema))
    pyiceberg_nulls.install()
    pyiceberg_nulls.install()  # idempotent
    out = _to_requested_schema(schema, schema, batch).to_pylist()
    assert out == [{"ls": None, "mp": None}, {"ls": [{"a": 1}], "mp": [("k", {"a": 1})]}, {"ls": [], "mp": []}]
