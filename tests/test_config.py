"""Config: every naming rule and cross-field rule fails with a message naming the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from s3tstream.config import model as c
from s3tstream.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def build(**sections):
    data = {"stack": {"name": "orders"}}
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return c.build(data)


# (sections, key named in the message, words in the message)
INVALID = [
    ({"stack": {"name": "Orders"}}, "stack.name", "1-30 characters"),
    ({"stack": {"name": "1orders"}}, "stack.name", "starting with a letter"),
    ({"stack": {"name": "orders-"}}, "stack.name", "ending with a letter or digit"),
    ({"stack": {"name": "a" * 31}}, "stack.name", "1-30"),
    ({"stack": {"name": "aws-orders"}}, "stack.name", "must not start with 'aws'"),
    ({"stack": {"name": "or--ders"}}, "stack.name", "'--'"),
    ({"stack": {"name": "orders", "region": "moon-1"}}, "stack.region", "not an AWS Region"),
    ({"stack": {"name": "orders", "region": "us-east-7"}}, "stack.region", "not a Region botocore knows"),
    ({"table": {"columns": [{"name": "pk", "type": "string", "required": True}, {"name": "created_at", "type": "timestamptz"}],
                "partition": ["bucket(16, pk)", "day(created_at)"]}},
     "table.partition[1]", "only key columns (pk) may be partition sources"),
    ({"table": {"columns": [{"name": "pk", "type": "string", "required": True},
                            {"name": "addr", "type": "struct<city:string,inner:struct<pk:string>>"}]}},
     "table.columns", "Iceberg.InvalidUniqueKeys"),
    ({"stack": {"name": "orders", "region": "cn-north-1"}}, "stack.region", "China"),
    ({"stack": {"name": "orders", "region": "us-gov-west-1"}}, "stack.region", "GovCloud"),
    ({"stack": {"name": "orders", "region": "mx-central-1"}}, "stack.region", "Mexico"),
    ({"stack": {"name": "orders", "endpoint_url": "localhost:4566"}}, "stack.endpoint_url", "http://"),
    ({"stack": {"name": "orders", "max_attempts": 0}}, "stack.max_attempts", "greater than or equal to 1"),
    ({"stack": {"name": "orders", "poll_interval": "fast"}}, "stack.poll_interval", "number"),
    ({"stack": {"name": "orders", "tags": {"aws:x": "1"}}}, "stack.tags", "reserved"),
    ({"stack": {"name": "orders", "tags": {"s3tstream:stack": "x"}}}, "stack.tags", "tool's own"),
    ({"stack": {"name": "orders", "colour": "red"}}, "stack.colour", "unknown key"),
    ({"nonsense": {"a": 1}}, "nonsense", "unknown key"),
    ({"source": {"table": "ab"}}, "source.table", "3-255"),
    ({"source": {"table": "bad name"}}, "source.table", "3-255"),
    ({"source": {"partition_key": {"name": "pk", "type": "X"}}}, "source.partition_key.type", "'S', 'N' or 'B'"),
    ({"source": {"billing": "PROVISIONED"}}, "source", "read_capacity and write_capacity"),
    ({"source": {"read_capacity": 5}}, "source", "only apply with billing = PROVISIONED"),
    ({"source": {"sort_key": {"name": "pk"}}}, "source", "must differ"),
    ({"stream": {"mode": "PROVISIONED"}}, "stream", "needs shards"),
    ({"stream": {"shards": 2}}, "stream", "only applies with mode = PROVISIONED"),
    ({"stream": {"retention_hours": 12}}, "stream.retention_hours", "greater than or equal to 24"),
    ({"stream": {"name": "bad/name"}}, "stream.name", "1-128"),
    ({"stream": {"timestamp_precision": "NANOSECOND"}}, "stream.timestamp_precision", "MICROSECOND"),
    ({"table": {"bucket": "Lake"}}, "table.bucket", "only a-z"),
    ({"table": {"bucket": "xn--lake"}}, "table.bucket", "reserved prefix 'xn--'"),
    ({"table": {"bucket": "amzn-s3-demo-lake"}}, "table.bucket", "reserved prefix"),
    ({"table": {"bucket": "awslake"}}, "table.bucket", "reserved prefix 'aws'"),
    ({"table": {"bucket": "lake--table-s3"}}, "table.bucket", "reserved suffix"),
    ({"table": {"bucket": "lake-s3alias"}}, "table.bucket", "reserved suffix '-s3alias'"),
    ({"table": {"bucket": "ab"}}, "table.bucket", "3-63"),
    ({"table": {"namespace": "aws_ns"}}, "table.namespace", "must not start with 'aws'"),
    ({"table": {"namespace": "My-NS"}}, "table.namespace", "lowercase"),
    ({"table": {"name": "_orders"}}, "table.name", "start and end with a letter or digit"),
    ({"table": {"mode": "append"}}, "table.mode", "'upsert' or 'changelog'"),
    ({"table": {"columns": [{"name": "Amount", "type": "long"}]}}, "table.columns[0].name", "lowercase"),
    ({"table": {"columns": [{"name": "amount", "type": "money"}]}}, "table.columns[0].type", "money"),
    ({"table": {"columns": [{"name": "amount", "type": "decimal(40,2)"}]}}, "table.columns[0].type", "decimal"),
    ({"table": {"columns": [{"name": "a", "type": "long"}, {"name": "a", "type": "long"}]}}, "table", "appears twice"),
    ({"table": {"columns": [{"name": "a", "type": "long", "size": 3}]}}, "table.columns[0].size", "unknown key"),
    ({"table": {"columns": [{"name": "pk", "type": "long", "required": True}]}}, "", "key column 'pk' has type long"),
    ({"table": {"columns": [{"name": "pk", "type": "string"}]}}, "", "must be required"),
    ({"table": {"mode": "changelog", "columns": [{"name": "_op", "type": "string"}]}}, "table", "reserved in changelog"),
    ({"table": {"extra_column": "Extra"}}, "table.extra_column", "lowercase"),
    ({"table": {"kms_key_arn": "alias/mine"}}, "table.kms_key_arn", "KMS key ARN"),
    ({"table": {"maintenance": {"target_file_size_mb": 32}}}, "table.maintenance.target_file_size_mb", "64"),
    ({"firehose": {"buffer_interval_seconds": 901}}, "firehose.buffer_interval_seconds", "900"),
    ({"firehose": {"buffer_size_mb": 0}}, "firehose.buffer_size_mb", "1"),
    ({"firehose": {"name": "x" * 65}}, "firehose.name", "1-64"),
    ({"firehose": {"processor_buffer_mb": 5}}, "firehose.processor_buffer_mb", "3"),
    ({"firehose": {"error_bucket": "Errors"}}, "firehose.error_bucket", "a-z, 0-9"),
    ({"firehose": {"lambda_runtime": "python2.7"}}, "firehose.lambda_runtime", "python3.13"),
    ({"firehose": {"log_retention_days": 2}}, "firehose.log_retention_days", "14"),
    ({"firehose": {"error_prefix": "/errors"}}, "firehose.error_prefix", "not starting with '/'"),
    ({"lakeformation": {"readers": ["alice"]}}, "lakeformation.readers", "not an IAM role or user ARN"),
    ({"athena": {"output_location": "bucket/prefix"}}, "athena.output_location", "s3://"),
    ({"athena": {"engine": "spark"}}, "athena.engine", "'athena' or 'local'"),
]


@pytest.mark.parametrize("sections,key,words", INVALID, ids=[f"{i}-{k or 'cross'}" for i, (_, k, _w) in enumerate(INVALID)])
def test_invalid_config_names_the_key(sections, key, words):
    data = {"stack": {"name": "orders"}}
    for k, v in sections.items():
        data[k] = v if k != "stack" else {**data["stack"], **v}
    with pytest.raises(ConfigError) as ei:
        c.build(data)
    msg = ei.value.message
    if key:
        assert f"{key}:" in msg, msg
    assert words in msg, msg
    assert ei.value.exit_code == 2


def test_at_least_thirty_invalid_cases():
    assert len(INVALID) >= 30


def test_missing_stack_name():
    with pytest.raises(ConfigError) as ei:
        c.build({"stack": {}})
    assert "stack.name: required key is missing" in ei.value.message


def test_defaults_derive_every_name_from_the_stack():
    n = build().names
    assert (n.source_table, n.stream, n.table_bucket, n.namespace, n.table) == (
        "orders", "orders-changes", "orders-lake", "orders", "orders")
    assert n.firehose == "orders-to-lake" and n.transform_function == "orders-transform"
    assert n.firehose_role == "s3tstream-orders-firehose"
    assert n.error_bucket("123456789012") == "orders-err-123456789012-us-east-1"
    # the longest stack name still gives valid names everywhere
    long = c.build({"stack": {"name": "a" * 30, "region": "ap-southeast-4"}}).names
    c.check_s3_bucket(long.error_bucket("123456789012"))
    c.check_s3_bucket(long.results_bucket("123456789012"))
    c.check_table_bucket(long.table_bucket)
    c.check_s3tables_name(long.namespace, "namespace")
    assert len(long.firehose_role) <= 64 and len(long.transform_role) <= 64


def test_hyphenated_stack_gives_valid_namespace_and_table():
    cfg = c.build({"stack": {"name": "my-orders"}, "source": {"table": "My.Orders-Table"}})
    assert cfg.names.namespace == "my_orders"
    assert cfg.names.table == "my_orders_table"
    c.check_s3tables_name(cfg.names.table)


def test_key_columns_follow_source_attribute():
    cfg = c.build({
        "stack": {"name": "orders"},
        "source": {"partition_key": {"name": "PK", "type": "S"}, "sort_key": {"name": "SK", "type": "N"}},
        "table": {"columns": [{"name": "pk", "type": "string", "required": True, "source": "PK"},
                              {"name": "sk", "type": "long", "required": True, "source": "SK"}]},
    })
    assert [(a.name, col) for a, col in cfg.key_columns()] == [("PK", "pk"), ("SK", "sk")]


def test_example_config_is_valid_and_documents_every_key():
    text = (ROOT / "config.example.toml").read_text()
    data = tomllib.loads(text)
    c.build(data)
    pkg = (ROOT / "src/s3tstream/templates/config.example.toml").read_text()
    assert text == pkg, "config.example.toml and the packaged template must be the same file"

    def keys(model, prefix=""):
        for name, f in model.model_fields.items():
            if name == "path":
                continue
            yield prefix + name
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, c._Section) and name not in ("partition_key", "sort_key"):
                yield from keys(ann, prefix + name + ".")

    # every key appears in the example, set or commented out
    for key in keys(c.Config):
        leaf = key.split(".")[-1]
        assert f"{leaf} =" in text or f"[{key}]" in text, f"config.example.toml does not document {key}"


def test_env_overrides(tmp_path):
    p = tmp_path / "s3tstream.toml"
    p.write_text('[stack]\nname = "orders"\n')
    cfg = c.load(p, environ={
        "S3TSTREAM_STACK__REGION": "eu-west-1",
        "S3TSTREAM_STREAM__RETENTION_HOURS": "48",
        "S3TSTREAM_TABLE__MAINTENANCE__TARGET_FILE_SIZE_MB": "128",
        "S3TSTREAM_LAKEFORMATION__READERS": '["arn:aws:iam::123456789012:role/analyst"]',
        "S3TSTREAM_CONFIG": "ignored-here",
    })
    assert cfg.stack.region == "eu-west-1"
    assert cfg.stream.retention_hours == 48
    assert cfg.table.maintenance.target_file_size_mb == 128
    assert cfg.lakeformation.readers == ["arn:aws:iam::123456789012:role/analyst"]
    assert cfg.state_path == tmp_path.resolve() / ".s3tstream" / "orders.json"


def test_env_override_is_validated(tmp_path):
    p = tmp_path / "s3tstream.toml"
    p.write_text('[stack]\nname = "orders"\n')
    with pytest.raises(ConfigError) as ei:
        c.load(p, environ={"S3TSTREAM_STREAM__MODEE": "x"})
    assert "stream.modee: unknown key" in ei.value.message


def test_unreadable_or_missing_config(tmp_path):
    with pytest.raises(ConfigError) as ei:
        c.load(tmp_path / "nope.toml", environ={})
    assert "no config file" in ei.value.message and "s3tstream init" in ei.value.hint
    bad = tmp_path / "bad.toml"
    bad.write_text("[stack\nname=")
    with pytest.raises(ConfigError) as ei:
        c.load(bad, environ={})
    assert "not valid TOML" in ei.value.message


def test_upsert_partitions_by_keys_and_changelog_by_anything() -> None:
    cols = [{"name": "pk", "type": "string", "required": True}, {"name": "created_at", "type": "timestamptz"}]
    assert build(table={"columns": cols, "partition": ["bucket(16, pk)", "pk"]}).table.partition == ["bucket(16, pk)", "pk"]
    assert build(table={"columns": cols, "mode": "changelog", "partition": ["day(created_at)"]}).table.partition
    # a nested field named like a key is only Firehose's problem when it uses UniqueKeys (upsert)
    nested = cols + [{"name": "addr", "type": "list<struct<pk:string>>"}]
    assert build(table={"columns": nested, "mode": "changelog"})
    with pytest.raises(ConfigError):
        build(table={"columns": nested})


def test_every_known_region_of_the_aws_partition_passes() -> None:
    for region in ("us-east-1", "eu-west-1", "ap-southeast-2", "eu-central-2"):
        assert build(stack={"region": region}).stack.region == region
