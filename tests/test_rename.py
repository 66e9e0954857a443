"""A renamed source table (issue 13 item 6): `plan` shows it replaced, `up` disables the old
table's streaming destination before enabling the new one, so the old table no longer feeds
the lake."""

from __future__ import annotations

import json
from typing import Any

import pytest

LF_OK = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"


def stream_records(stack: Any) -> list[dict]:
    """Every record in the stack's Kinesis stream, decoded (DynamoDB change records)."""
    kin = stack.client("kinesis")
    name = f"{stack.name}-changes"
    out = []
    for shard in kin.list_shards(StreamName=name)["Shards"]:
        it = kin.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kin.get_records(ShardIterator=it, Limit=1000)
            out += [json.loads(x["Data"]) for x in r["Records"]]
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


@pytest.mark.sandbox
def test_a_renamed_source_table_is_replaced_and_the_old_one_stops_streaming(stack: Any) -> None:
    old, new = stack.name, f"{stack.name}-v2"
    stack.write(extra=f'name = "items"\n{LF_OK}')
    stack.cli("up")
    stack.write(extra=f'name = "items"\n{LF_OK}[source]\ntable = "{new}"\n')

    plan = stack.json("plan")
    replaced = {c["kind"]: c for c in plan["changes"] if c["action"] == "replace"}
    dest = replaced["kinesis-streaming-destination"]
    assert dest["name"] == f"{old}->{old}-changes" and "disabled by `up` before the new one" in dest["detail"]
    assert replaced["dynamodb-table"]["name"] == old and new in replaced["dynamodb-table"]["detail"]
    created = {(c["kind"], c["name"]) for c in plan["changes"] if c["action"] == "create"}
    assert {("dynamodb-table", new), ("kinesis-streaming-destination", f"{new}->{old}-changes")} <= created
    assert "replace" in stack.cli("plan").stdout

    stack.cli("up")
    ddb = stack.client("dynamodb")
    old_dests = ddb.describe_kinesis_streaming_destination(TableName=old)["KinesisDataStreamDestinations"]
    assert {d["DestinationStatus"] for d in old_dests} == {"DISABLED"}
    new_dests = ddb.describe_kinesis_streaming_destination(TableName=new)["KinesisDataStreamDestinations"]
    assert {d["DestinationStatus"] for d in new_dests} == {"ACTIVE"}
    kinds = [(r["kind"], r["name"]) for r in stack.state()["resources"]]
    assert ("kinesis-streaming-destination", f"{old}->{old}-changes") not in kinds  # replaced
    assert ("dynamodb-table", old) in kinds  # kept (it holds data) until `down`

    # writes to the old table no longer reach the stream, so not the lake; the new table's do
    for table, key in ((old, "after-rename-old"), (new, "after-rename-new")):
        ddb.put_item(TableName=table, Item={"pk": {"S": key}})
    keys = {(r.get("tableName"), r.get("dynamodb", {}).get("Keys", {}).get("pk", {}).get("S")) for r in stream_records(stack)}
    assert (new, "after-rename-new") in keys
    assert (old, "after-rename-old") not in keys

    stack.cli("down", "--yes", "--purge-errors")
    assert old not in ddb.list_tables()["TableNames"] and new not in ddb.list_tables()["TableNames"]
