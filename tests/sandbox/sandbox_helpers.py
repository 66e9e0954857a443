"""Helpers shared by the sandbox tests (importable: tests/sandbox is on sys.path)."""

from __future__ import annotations

import json
from typing import Any

REGION = "us-east-1"


def create_table(ddb: Any, table: str, range_key: str | None = None) -> str:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    if range_key:
        schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        attrs.append({"AttributeName": range_key, "AttributeType": "N"})
    return ddb.create_table(
        TableName=table, KeySchema=schema, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST"
    )["TableDescription"]["TableArn"]


def create_stream(kinesis: Any, stream: str, shards: int = 2) -> str:
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    return kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]


def read_records(kinesis: Any, stream: str) -> list[dict[str, Any]]:
    """Every record on the stream (all shards, from the start), data decoded, in arrival order."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for rec in kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]:
            out.append(
                {
                    "PartitionKey": rec["PartitionKey"],
                    "Arrival": rec["ApproximateArrivalTimestamp"],
                    "data": json.loads(rec["Data"]),
                }
            )
    out.sort(key=lambda r: r["data"]["dynamodb"]["ApproximateCreationDateTime"])
    return out
