"""The one change-record sender (data/changes.py), the one BatchGetItem (items.batch_get) and the
one retry loop (aws/retry.py).

- change records are UTF-8 JSON: a 380 KB item of accented text stays under Kinesis' record limit;
- a record over the limit (data + partition key) is not sent but returned with its keys, and
  the others are still sent;
- PutRecords retries only the failed entries, a bounded number of times; batches of 500 / 5 MiB;
- BatchGetItem: one key identity (numbers normalised, the table's key attributes only).
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from s3tstream.aws.retry import Exhausted, retry_rest
from s3tstream.config import model as c
from s3tstream.data import changes as C
from s3tstream.data.items import batch_get, key_id
from s3tstream.errors import AwsError


def kinesis():
    return boto3.client("kinesis", region_name="us-east-1")


def cfg():
    return c.build({"stack": {"name": "shop", "region": "eu-west-1"},
                    "source": {"partition_key": {"name": "pk", "type": "S"}},
                    "table": {"columns": [{"name": "pk", "type": "string", "required": True}]}})


class K:
    def __init__(self):
        self.calls: list[list[dict]] = []

    def put_records(self, StreamName, Records):
        self.calls.append(Records)
        return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}


def accented_item(n_bytes: int, key: str = "a") -> dict:
    text = "é" * (n_bytes // 2)  # 2 bytes a character in UTF-8; 6 as \\u00e9
    return {"pk": {"S": key}, "text": {"S": text}}


def test_a_380_kb_item_of_accented_text_is_one_utf8_record_under_the_limit():
    item = accented_item(380 * 1024)
    data, pk, keys = C.encode(C.change_record(cfg(), "INSERT", {"pk": item["pk"]}, item))
    assert keys == {"pk": {"S": "a"}}
    assert "é".encode() * 10 in data and b"\\u00e9" not in data  # UTF-8, not ASCII-escaped
    assert 380 * 1024 < C.entry_bytes(data, pk) < C.KINESIS_RECORD_BYTES
    assert json.loads(data.decode("utf-8"))["dynamodb"]["NewImage"] == item
    # what the ASCII-escaped form would have been: over the limit
    assert len(json.dumps(item).encode()) > C.KINESIS_RECORD_BYTES


def test_an_over_size_record_is_returned_by_key_and_the_others_are_sent():
    k = K()
    big = accented_item(1100 * 1024, "big")
    recs = [C.change_record(cfg(), "INSERT", {"pk": {"S": f"k{i}"}}, {"pk": {"S": f"k{i}"}}) for i in range(3)]
    recs.insert(1, C.change_record(cfg(), "INSERT", {"pk": big["pk"]}, big))
    res = C.send_records(k, "st", recs)
    assert res.sent == 3 and sum(len(x) for x in k.calls) == 3
    [o] = res.oversize
    assert o.keys == {"pk": {"S": "big"}} and o.bytes > C.KINESIS_RECORD_BYTES
    assert o.to_json() == {"keys": {"pk": "big"}, "bytes": o.bytes, "limit": C.KINESIS_RECORD_BYTES}


def test_the_limit_counts_the_partition_key_too():
    k = K()
    pk = "p" * 10
    exact = b"x" * (C.KINESIS_RECORD_BYTES - len(pk))
    res = C.put_records(k, "st", [(exact, pk, {"pk": {"S": "fits"}}), (exact + b"x", pk, {"pk": {"S": "over"}})])
    assert res.sent == 1 and [o.keys for o in res.oversize] == [{"pk": {"S": "over"}}]


def test_put_records_retries_only_failed_entries():
    k = kinesis()
    entries = [(f"r{i}".encode(), f"pk{i}", {}) for i in range(3)]
    sleeps = []
    with Stubber(k) as stub:
        stub.add_response("put_records", {"FailedRecordCount": 1, "Records": [
            {"SequenceNumber": "1", "ShardId": "s"},
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"},
            {"SequenceNumber": "2", "ShardId": "s"}]},
            {"StreamName": "st", "Records": [{"Data": d, "PartitionKey": p} for d, p, _ in entries]})
        stub.add_response("put_records", {"Records": [{"SequenceNumber": "3", "ShardId": "s"}]},
                          {"StreamName": "st", "Records": [{"Data": b"r1", "PartitionKey": "pk1"}]})
        assert C.put_records(k, "st", entries, sleep=sleeps.append).sent == 3
        stub.assert_no_pending_responses()
    assert len(sleeps) == 1


def test_put_records_gives_up_after_bounded_attempts():
    k = kinesis()
    failed = {"FailedRecordCount": 1, "Records": [{"ErrorCode": "InternalFailure", "ErrorMessage": "x"}]}
    with Stubber(k) as stub:
        for _ in range(3):
            stub.add_response("put_records", failed)
        with pytest.raises(AwsError, match="refused 1 record.*after 3 attempts.*InternalFailure"):
            C.put_records(k, "st", [(b"x", "p", {})], sleep=lambda s: None, max_attempts=3)


def test_put_records_batches_by_count_and_size():
    k = K()
    assert C.put_records(k, "st", [(b"x", "p", {})] * 1001).sent == 1001
    assert [len(x) for x in k.calls] == [500, 500, 1]
    k.calls.clear()
    big = b"x" * (900 * 1024)
    assert C.put_records(k, "st", [(big, "p", {})] * 7).sent == 7
    assert [len(x) for x in k.calls] == [5, 2]  # 5 MiB per request


def test_retry_rest_backs_off_then_gives_up_with_what_is_left():
    sleeps: list[float] = []
    calls = []

    def call(pending):
        calls.append(list(pending))
        return pending[1:]  # one entry done per call

    retry_rest(call, [1, 2, 3], sleep=sleeps.append, base_delay=0.1, max_delay=0.15)
    assert calls == [[1, 2, 3], [2, 3], [3]] and len(sleeps) == 2
    assert 0.05 <= sleeps[0] <= 0.1 and 0.075 <= sleeps[1] <= 0.15  # jittered, capped
    with pytest.raises(Exhausted) as e:
        retry_rest(lambda p: p, ["x"], sleep=lambda s: None, max_attempts=4)
    assert e.value.left == ["x"] and e.value.attempts == 4


# ------------------------------------------------------------------ BatchGetItem
class Ddb:
    """DynamoDB's answer: numbers in normal form; the first call leaves one key unprocessed."""

    def __init__(self, items):
        self.items = items
        self.calls = []

    def batch_get_item(self, RequestItems):
        [(table, req)] = RequestItems.items()
        assert req["ConsistentRead"] is True
        keys = req["Keys"]
        self.calls.append(keys)
        left = keys[1:] if len(self.calls) == 1 and len(keys) > 1 else []
        found = [self.items[json.dumps(k, sort_keys=True)] for k in keys if k not in left
                 and json.dumps(k, sort_keys=True) in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {table: {"Keys": left}} if left else {}}


def test_batch_get_names_a_key_asked_with_a_non_normal_number_as_dynamodb_returns_it():
    """A key read from a stream or error record as {"N": "1.0"} is the item DynamoDB returns as
    {"N": "1"}: one key identity (backfill's copy compared the texts and lost such items)."""
    stored = {"pk": {"N": "1"}, "sk": {"S": "x"}, "v": {"S": "hello"}}
    ddb = Ddb({json.dumps({"pk": {"N": "1"}, "sk": {"S": "x"}}, sort_keys=True): stored})
    # the fake answers only a normal-form key: what the request sends is what the caller gave
    ddb.items[json.dumps({"pk": {"N": "1.0"}, "sk": {"S": "x"}}, sort_keys=True)] = stored
    asked = {"pk": {"N": "1.0"}, "sk": {"S": "x"}}
    got = batch_get(ddb, "t", [asked, {"pk": {"N": "2"}, "sk": {"S": "y"}}], ["pk", "sk"], sleep=lambda s: None)
    assert got == {key_id(asked, ["pk", "sk"]): stored}
    assert key_id(asked, ["pk", "sk"]) == key_id(stored, ["pk", "sk"])  # the non-key attribute does not count
    assert len(ddb.calls) == 2  # the unprocessed key was asked again


def test_batch_get_asks_each_key_once_and_gives_up_when_throttled():
    ddb = Ddb({})
    batch_get(ddb, "t", [{"pk": {"N": "1"}}, {"pk": {"N": "1.00"}}], ["pk"], sleep=lambda s: None)
    assert len(ddb.calls[0]) == 1  # BatchGetItem refuses a key twice

    class Throttled:
        def batch_get_item(self, RequestItems):
            [(table, req)] = RequestItems.items()
            return {"Responses": {}, "UnprocessedKeys": {table: {"Keys": req["Keys"]}}}

    with pytest.raises(AwsError, match="unprocessed after 3 attempts"):
        batch_get(Throttled(), "t", [{"pk": {"S": "a"}}], ["pk"], sleep=lambda s: None, max_attempts=3)
