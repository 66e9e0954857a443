"""create-table-bucket and set-metadata through the CLI against the sandbox, and `schema infer`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3tstream.config import model as config
from s3tstream.lake import schema
from s3tstream.aws.client import Aws
from s3tstream.lake.catalog import S3TablesCatalog

LF_OK = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"
BASE_COLUMNS = (
    '{ name = "pk", type = "string", required = true }, { name = "amount", type = "decimal(12,2)" }, '
    '{ name = "qty", type = "long" }, { name = "tags", type = "list<string>" }, '
    '{ name = "addr", type = "struct<city:string,zip:string>" }, { name = "created", type = "timestamptz" }'
)


def lake(stack: Any) -> tuple[config.Config, S3TablesCatalog, str]:
    cfg = config.load(stack.config_path, environ={})
    aws = Aws(cfg)
    arn = aws.arn("s3tables", f"bucket/{cfg.names.table_bucket}")
    return cfg, S3TablesCatalog.for_stack(aws, arn), arn


def load(stack: Any) -> Any:
    cfg, cat, _ = lake(stack)
    return cat.load_table((cfg.names.namespace, cfg.names.table))


def test_step_creates_table_bucket_namespace_and_table_with_schema(stack: Any) -> None:
    stack.write(columns=BASE_COLUMNS, extra=(
        'mode = "changelog"\npartition = ["day(created)", "bucket(8, pk)"]\nproperties = { "write.parquet.compression-codec" = "zstd" }\n'
        'kms_key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234-abcd"\n'
        "[table.maintenance]\ntarget_file_size_mb = 128\nmax_snapshot_age_hours = 48\nunreferenced_days = 5\n"
    ))
    stack.cli("step", "create-table-bucket")
    cfg, cat, arn = lake(stack)
    s3t = stack.client("s3tables")
    # bucket: KMS encryption, stack tag, maintenance from the config
    assert s3t.get_table_bucket_encryption(tableBucketARN=arn)["encryptionConfiguration"] == {
        "sseAlgorithm": "aws:kms", "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234-abcd"}
    assert s3t.list_tags_for_resource(resourceArn=arn)["tags"] == {"s3tstream:stack": stack.name,
                                                                   "s3tstream:stack-id": stack.state()["stack_id"]}
    bm = s3t.get_table_bucket_maintenance_configuration(tableBucketARN=arn)["configuration"]
    assert bm["icebergUnreferencedFileRemoval"]["settings"]["icebergUnreferencedFileRemoval"] == {
        "unreferencedDays": 5, "nonCurrentDays": 10}
    tm = s3t.get_table_maintenance_configuration(tableBucketARN=arn, namespace=cfg.names.namespace,
                                                 name=cfg.names.table)["configuration"]
    assert tm["icebergCompaction"]["settings"]["icebergCompaction"]["targetFileSizeMB"] == 128
    assert tm["icebergSnapshotManagement"]["settings"]["icebergSnapshotManagement"]["maxSnapshotAgeHours"] == 48
    # table: metadata written at create, with the configured schema, keys, spec, properties, v2
    table = load(stack)
    want = schema.pyiceberg_schema(schema.effective_schema(cfg))
    assert table.schema() == want
    assert table.schema().identifier_field_ids == want.identifier_field_ids and 1 in want.identifier_field_ids
    assert table.metadata.format_version == 2
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [("created_day", "day"), ("pk_bucket", "bucket[8]")]
    assert table.metadata.properties["write.parquet.compression-codec"] == "zstd"
    assert table.metadata_location.startswith(table.metadata.location + "/metadata/00000-")


def test_second_up_makes_no_mutating_call(stack: Any, calls: Any) -> None:
    stack.write(columns=BASE_COLUMNS, extra=LF_OK)
    stack.cli("up")
    assert any(c.startswith("s3tables:CreateTable") for c in calls.calls)
    calls.clear()
    doc = stack.json("up")
    assert calls.mutating() == [], calls.mutating()
    assert {c["action"] for c in doc["changes"]} == {"none"}


def test_legacy_table_without_metadata_is_fixed_by_set_metadata(stack: Any) -> None:
    stack.write(columns=BASE_COLUMNS)
    cfg, cat, arn = lake(stack)
    s3t = stack.client("s3tables")
    # as the old sample's CDK left it: bucket, namespace, table without metadata
    arn = s3t.create_table_bucket(name=cfg.names.table_bucket)["arn"]
    s3t.create_namespace(tableBucketARN=arn, namespace=[cfg.names.namespace])
    s3t.create_table(tableBucketARN=arn, namespace=cfg.names.namespace, name=cfg.names.table, format="ICEBERG")
    assert "metadataLocation" not in s3t.get_table(tableBucketARN=arn, namespace=cfg.names.namespace, name=cfg.names.table)
    doc = stack.json("step", "create-table-bucket")
    assert {c["action"] for c in doc["changes"]} == {"adopt"}
    doc = stack.json("step", "set-metadata")
    assert [c["action"] for c in doc["changes"]] == ["create"]
    table = load(stack)
    assert table.schema() == schema.pyiceberg_schema(schema.effective_schema(cfg))
    assert table.metadata.format_version == 2
    assert [f.name for f in table.spec().fields] == []
    # the adopted lake is data the stack did not create: down leaves it
    stack.cli("down", "--yes")
    assert s3t.get_table(tableBucketARN=arn, namespace=cfg.names.namespace, name=cfg.names.table)["metadataLocation"]


def test_adding_a_column_evolves_the_schema(stack: Any, calls: Any) -> None:
    stack.write(columns=BASE_COLUMNS, extra=LF_OK)
    stack.cli("up")
    before = load(stack)
    stack.write(columns=BASE_COLUMNS + ', { name = "note", type = "string" }, { name = "geo", type = "struct<lat:double>" }'
                ', { name = "qty2", type = "int" }')
    calls.clear()
    doc = stack.json("up")
    assert [c["action"] for c in doc["changes"] if c["kind"] == "iceberg-metadata"] == ["update"]
    assert [c for c in calls.mutating() if c.startswith("s3tables:")] == ["s3tables:UpdateTableMetadataLocation"]
    after = load(stack)
    assert after.metadata_location != before.metadata_location and "/00001-" in after.metadata_location
    old_ids = {f.name: f.field_id for f in before.schema().fields}
    assert {f.name: f.field_id for f in after.schema().fields if f.name in old_ids} == old_ids
    assert [f.name for f in after.schema().fields][-3:] == ["note", "geo", "qty2"]
    assert str(after.schema().find_field("geo").field_type).startswith("struct<")
    assert after.schema().identifier_field_ids == before.schema().identifier_field_ids
    # widening is applied too; then in line again: nothing written
    stack.write(columns=BASE_COLUMNS + ', { name = "note", type = "string" }, { name = "geo", type = "struct<lat:double>" }'
                ', { name = "qty2", type = "long" }')
    stack.cli("step", "set-metadata")
    assert str(load(stack).schema().find_field("qty2").field_type) == "long"
    calls.clear()
    stack.cli("step", "set-metadata")
    assert calls.mutating() == []


def test_narrowing_a_type_exits_2_and_writes_nothing(stack: Any, calls: Any) -> None:
    stack.write(columns=BASE_COLUMNS, extra=LF_OK)
    stack.cli("up")
    cfg, cat, arn = lake(stack)
    s3t = stack.client("s3tables")
    before = s3t.get_table(tableBucketARN=arn, namespace=cfg.names.namespace, name=cfg.names.table)
    stack.write(columns=BASE_COLUMNS.replace('"qty", type = "long"', '"qty", type = "int"'))
    calls.clear()
    r = stack.cli("up", ok=False)
    text = " ".join(r.output.split())  # rich wraps lines
    assert r.exit_code == 2
    assert "qty: type long -> int narrows" in text and "Nothing was written" in text
    assert "s3tstream down --step create-table-bucket" in text
    assert calls.mutating() == []
    after = s3t.get_table(tableBucketARN=arn, namespace=cfg.names.namespace, name=cfg.names.table)
    assert (after["versionToken"], after["metadataLocation"]) == (before["versionToken"], before["metadataLocation"])
    # changing the key columns is refused the same way
    stack.write(columns=BASE_COLUMNS, extra='[source]\nsort_key = { name = "sk", type = "S" }\n')
    r = stack.cli("step", "set-metadata", ok=False)
    assert r.exit_code == 2 and "key (identifier) columns" in " ".join(r.output.split())


def test_down_keep_data_keeps_the_lake_then_down_removes_it(stack: Any) -> None:
    stack.write(extra=LF_OK)
    stack.cli("up")
    cfg, cat, arn = lake(stack)
    s3t, iam = stack.client("s3tables"), stack.client("iam")
    doc = json.loads(stack.cli("down", "--yes", "--keep-data", "--output", "json").stdout)
    kept = {c["kind"] for c in doc["kept"]}
    assert {"s3tables-table-bucket", "s3tables-namespace", "s3tables-table", "iceberg-metadata"} <= kept
    assert "firehose-role" in {c["kind"] for c in doc["deleted"]}
    assert s3t.get_table(tableBucketARN=arn, namespace=cfg.names.namespace, name=cfg.names.table)["metadataLocation"]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=cfg.names.firehose_role)
    stack.cli("down", "--yes")
    with pytest.raises(s3t.exceptions.NotFoundException):
        s3t.get_table_bucket(tableBucketARN=arn)


def test_schema_infer_prints_a_columns_block(stack: Any) -> None:
    stack.write(extra='[source]\npartition_key = { name = "PK", type = "S" }\nsort_key = { name = "SK", type = "N" }\n',
                columns='{ name = "pk", type = "string", required = true, source = "PK" }')
    stack.cli("step", "create-source")
    ddb = stack.client("dynamodb")
    for i in range(30):
        item = {"PK": {"S": f"o{i}"}, "SK": {"N": str(i)}, "total": {"N": f"{i}.25"},
                "createdAt": {"S": "2024-05-01"}, "lines": {"L": [{"M": {"sku": {"S": "x"}, "n": {"N": "2"}}}]}}
        if i % 2:
            item["gift"] = {"BOOL": True}
        ddb.put_item(TableName=stack.name, Item=item)
    r = stack.cli("schema", "infer", "--sample", "100")
    assert r.stdout == (
        "# inferred from 30 sampled item(s); check the types before the first `up`\n"
        "[table]\ncolumns = [\n"
        "  # PK: key attribute (S)\n"
        '  { name = "pk", type = "string", required = true, source = "PK" },\n'
        "  # SK: key attribute (N): integers of up to 2 digit(s)\n"
        '  { name = "sk", type = "long", required = true, source = "SK" },\n'
        "  # createdAt: in 30 of 30 item(s): ISO-8601 dates (30)\n"
        '  { name = "created_at", type = "date", source = "createdAt" },\n'
        "  # lines: in 30 of 30 item(s): lists\n"
        '  { name = "lines", type = "list<struct<sku:string,n:long>>" },\n'
        "  # total: in 30 of 30 item(s): numbers with a fraction, up to 2 integer digit(s) and 2 decimal place(s); "
        "precision 38 leaves room for larger values\n"
        '  { name = "total", type = "decimal(38,2)" },\n'
        "  # gift: in 15 of 30 item(s): booleans\n"
        '  { name = "gift", type = "boolean" },\n'
        "]\n"
    )
    doc = stack.json("schema", "infer", "--sample", "10")
    assert doc["sampled"] == 10 and doc["columns"][0] == {"name": "pk", "type": "string", "required": True,
                                                           "source": "PK", "seen": 10, "saw": "key attribute (S)"}


def test_commit_conflict_is_retried(stack: Any, sandbox: Any) -> None:
    from s3tstream.sandbox.client import clear_faults, inject_fault

    stack.write(columns=BASE_COLUMNS)
    stack.cli("step", "create-table-bucket")
    stack.cli("step", "set-metadata")
    stack.write(columns=BASE_COLUMNS + ', { name = "note", type = "string" }')
    # another writer moved the table first, twice: the versionToken lock answers ConflictException
    inject_fault(sandbox.endpoint_url, "s3tables", "UpdateTableMetadataLocation", "ConflictException",
                 "version token mismatch", status=409, count=2)
    try:
        r = stack.cli("step", "set-metadata")
    finally:
        clear_faults(sandbox.endpoint_url)
    assert "retrying" in r.output
    assert load(stack).schema().find_field("note")
    # more conflicts than attempts: a clear error, exit 1
    stack.write(columns=BASE_COLUMNS + ', { name = "note", type = "string" }, { name = "n2", type = "long" }')
    inject_fault(sandbox.endpoint_url, "s3tables", "UpdateTableMetadataLocation", "ConflictException",
                 "version token mismatch", status=409, count=20)
    try:
        r = stack.cli("step", "set-metadata", ok=False)
    finally:
        clear_faults(sandbox.endpoint_url)
    assert r.exit_code == 1 and "kept changing" in " ".join(r.output.split())
