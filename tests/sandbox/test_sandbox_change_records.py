"""Data plane: item changes become Kinesis Data Streams for DynamoDB records."""

from __future__ import annotations

import hashlib
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from s3tstream.sandbox import client as sandbox_client
from s3tstream.sandbox.services.dynamodb_changes import TTL_IDENTITY, item_size


def pk_of(keys: dict) -> str:
    return hashlib.md5(json.dumps(keys, sort_keys=True).encode()).hexdigest().upper()


def test_put_update_delete_yield_insert_modify_remove(pipeline):
    p = pipeline(precision="MICROSECOND")
    ddb, table = p["ddb"], p["table"]
    before_us = time.time_ns() // 1000
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x"]}})
    ddb.update_item(
        TableName=table, Key={"pk": {"S": "a"}}, UpdateExpression="SET n = :n, m = :m",
        ExpressionAttributeValues={":n": {"N": "2"}, ":m": {"M": {"k": {"BOOL": True}}}},
    )
    ddb.delete_item(TableName=table, Key={"pk": {"S": "a"}})
    after_us = time.time_ns() // 1000

    records = p["records"]()
    assert [r["data"]["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = (r["data"] for r in records)
    for rec in (insert, modify, remove):
        assert list(rec) == [
            "awsRegion", "eventID", "eventName", "userIdentity", "recordFormat", "tableName", "dynamodb", "eventSource",
        ]
        assert rec["awsRegion"] == "us-east-1"
        assert uuid.UUID(rec["eventID"])
        assert rec["userIdentity"] is None
        assert rec["recordFormat"] == "application/json"
        assert rec["tableName"] == table
        assert rec["eventSource"] == "aws:dynamodb"
        ddb_part = rec["dynamodb"]
        assert ddb_part["Keys"] == {"pk": {"S": "a"}}
        assert ddb_part["ApproximateCreationDateTimePrecision"] == "MICROSECOND"
        assert before_us <= ddb_part["ApproximateCreationDateTime"] <= after_us
    assert insert["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x"]}}
    assert "OldImage" not in insert["dynamodb"]
    assert modify["dynamodb"]["OldImage"] == insert["dynamodb"]["NewImage"]
    assert modify["dynamodb"]["NewImage"] == {
        "pk": {"S": "a"}, "n": {"N": "2"}, "tags": {"SS": ["x"]}, "m": {"M": {"k": {"BOOL": True}}},
    }
    assert remove["dynamodb"]["OldImage"] == modify["dynamodb"]["NewImage"]
    assert "NewImage" not in remove["dynamodb"]
    # same item -> same partition key (an MD5 of the key, upper-case hex like AWS's)
    assert {r["PartitionKey"] for r in records} == {pk_of({"pk": {"S": "a"}})}
    # SizeBytes = keys + images, by DynamoDB's item size rules
    assert modify["dynamodb"]["SizeBytes"] == item_size(modify["dynamodb"]["Keys"]) + item_size(
        modify["dynamodb"]["NewImage"]
    ) + item_size(modify["dynamodb"]["OldImage"])


def test_size_bytes_matches_real_aws_records():
    # records captured from AWS (public write-ups): SizeBytes 24, 38, 69 and 104
    keys = {"id": {"S": "2"}, "name": {"S": "Anoop"}}
    assert item_size(keys) * 2 == 24
    keys3 = {"id": {"S": "3"}, "name": {"S": "ABC"}}
    new = {"email": {"S": "abc@email.com"}, **keys3}
    assert item_size(keys3) + item_size(new) == 38
    new2 = {"email": {"S": "abc123@email.com"}, **keys3}
    assert item_size(keys3) + item_size(new2) + item_size(new) == 69
    city = {"key": {"S": "t0926"}, "name": {"S": "下野"}, "date_mod": {"S": "1950-9-7"}}
    assert item_size({"key": {"S": "t0926"}}) + item_size({**city, "population": {"N": "54148"}}) + item_size(
        {**city, "population": {"N": "56148"}}
    ) == 104


def test_composite_keys_and_distinct_partition_keys(pipeline):
    p = pipeline(range_key="sk")
    ddb, table = p["ddb"], p["table"]
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "1"}})
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "sk": {"N": "2"}, "b": {"B": b"\x90\x01"}})
    records = p["records"]()
    assert [r["data"]["dynamodb"]["Keys"] for r in records] == [
        {"pk": {"S": "a"}, "sk": {"N": "1"}},
        {"pk": {"S": "a"}, "sk": {"N": "2"}},
    ]
    assert records[1]["data"]["dynamodb"]["NewImage"]["b"] == {"B": "kAE="}  # base64 in JSON
    assert records[0]["PartitionKey"] != records[1]["PartitionKey"]


def test_update_that_creates_an_item_is_one_insert(pipeline):
    p = pipeline()
    p["ddb"].update_item(
        TableName=p["table"], Key={"pk": {"S": "new"}}, UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "x"}},
    )
    records = p["records"]()
    assert len(records) == 1
    assert records[0]["data"]["eventName"] == "INSERT"
    assert records[0]["data"]["dynamodb"]["NewImage"] == {"pk": {"S": "new"}, "v": {"S": "x"}}


def test_writes_that_change_nothing_emit_nothing(pipeline):
    p = pipeline()
    ddb, table = p["ddb"], p["table"]
    item = {"pk": {"S": "a"}, "v": {"S": "1"}}
    ddb.put_item(TableName=table, Item=item)
    ddb.put_item(TableName=table, Item=item)  # identical item
    ddb.update_item(
        TableName=table, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :v",
        ExpressionAttributeValues={":v": {"S": "1"}},
    )
    ddb.delete_item(TableName=table, Key={"pk": {"S": "nothing-here"}})
    with pytest.raises(ClientError) as exc:
        ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": "2"}}, ConditionExpression="attribute_not_exists(pk)")
    assert exc.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert [r["data"]["eventName"] for r in p["records"]()] == ["INSERT"]


def test_batch_and_transactions(pipeline):
    p = pipeline()
    ddb, table = p["ddb"], p["table"]
    ddb.put_item(TableName=table, Item={"pk": {"S": "old"}})
    ddb.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": {"pk": {"S": "b1"}}}},
                {"PutRequest": {"Item": {"pk": {"S": "b2"}}}},
                {"DeleteRequest": {"Key": {"pk": {"S": "old"}}}},
            ]
        }
    )
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "t1"}}}},
            {"Update": {"TableName": table, "Key": {"pk": {"S": "b1"}}, "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"N": "1"}}}},
        ]
    )
    with pytest.raises(ClientError) as exc:  # a cancelled transaction writes (and emits) nothing
        ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "t2"}}}},
                {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "b2"}},
                                    "ConditionExpression": "attribute_not_exists(pk)"}},
            ]
        )
    assert exc.value.response["Error"]["Code"] == "TransactionCanceledException"
    events = sorted((r["data"]["eventName"], r["data"]["dynamodb"]["Keys"]["pk"]["S"]) for r in p["records"]())
    assert events == sorted([
        ("INSERT", "old"), ("INSERT", "b1"), ("INSERT", "b2"), ("REMOVE", "old"), ("INSERT", "t1"), ("MODIFY", "b1"),
    ])


def test_nothing_before_active_or_after_disable(pipeline):
    p = pipeline(activate=False)
    ddb, table = p["ddb"], p["table"]
    ddb.put_item(TableName=table, Item={"pk": {"S": "while-enabling"}})
    assert ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"][0][
        "DestinationStatus"] == "ACTIVE"
    ddb.put_item(TableName=table, Item={"pk": {"S": "while-active"}})
    ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=p["stream_arn"])
    ddb.put_item(TableName=table, Item={"pk": {"S": "while-disabling"}})
    assert ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"][0][
        "DestinationStatus"] == "DISABLED"
    ddb.put_item(TableName=table, Item={"pk": {"S": "after-disabled"}})
    assert [r["data"]["dynamodb"]["Keys"]["pk"]["S"] for r in p["records"]()] == ["while-active"]


@pytest.mark.parametrize(
    ("precision", "digits", "field"),
    [("MILLISECOND", 13, "MILLISECOND"), ("MICROSECOND", 16, "MICROSECOND"), (None, 13, None)],
)
def test_timestamp_precision(pipeline, precision, digits, field):
    p = pipeline(precision=precision)
    p["ddb"].put_item(TableName=p["table"], Item={"pk": {"S": "a"}})
    (record,) = p["records"]()
    ddb_part = record["data"]["dynamodb"]
    assert len(str(ddb_part["ApproximateCreationDateTime"])) == digits
    assert ddb_part.get("ApproximateCreationDateTimePrecision") == field


def test_precision_update_applies_once_active(pipeline):
    p = pipeline(precision="MILLISECOND")
    ddb, table = p["ddb"], p["table"]
    ddb.update_kinesis_streaming_destination(
        TableName=table, StreamArn=p["stream_arn"],
        UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"},
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "updating"}})  # still flows while UPDATING
    ddb.describe_kinesis_streaming_destination(TableName=table)
    ddb.put_item(TableName=table, Item={"pk": {"S": "active"}})
    by_key = {r["data"]["dynamodb"]["Keys"]["pk"]["S"]: r["data"]["dynamodb"] for r in p["records"]()}
    assert len(str(by_key["updating"]["ApproximateCreationDateTime"])) == 13
    assert len(str(by_key["active"]["ApproximateCreationDateTime"])) == 16


def test_ttl_delete_carries_the_service_identity(pipeline, sandbox):
    p = pipeline()
    ddb, table = p["ddb"], p["table"]
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "ttl": {"N": "1"}})
    assert sandbox_client.ttl_delete(sandbox.endpoint_url, table, {"pk": {"S": "a"}}) is True
    assert sandbox_client.ttl_delete(sandbox.endpoint_url, table, {"pk": {"S": "a"}}) is False
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})
    insert, remove = (r["data"] for r in p["records"]())
    assert insert["userIdentity"] is None
    assert remove["eventName"] == "REMOVE"
    assert remove["userIdentity"] == TTL_IDENTITY == {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    with pytest.raises(sandbox_client.SandboxControlError, match="ResourceNotFoundException"):
        sandbox_client.ttl_delete(sandbox.endpoint_url, "no-such-table", {"pk": {"S": "a"}})


def test_deleted_stream_keeps_destination_active_and_writes_succeed(pipeline):
    p = pipeline()
    p["kinesis"].delete_stream(StreamName=p["stream"])
    p["ddb"].put_item(TableName=p["table"], Item={"pk": {"S": "a"}})
    entry = p["ddb"].describe_kinesis_streaming_destination(TableName=p["table"])["KinesisDataStreamDestinations"][0]
    assert entry["DestinationStatus"] == "ACTIVE"
