"""backfill, strategy scan: what makes it fast keeps it correct.

- build_entries gives the bytes of encode(change_record(...)) (only the eventID differs, and is unique);
- the Scan items and the GetRecords records taken as wire JSON (before botocore's parse) are
  what botocore's parse + from_boto give; a client without botocore events still works;
- a segment reads its next page while it sends the current one, and the checkpoint only ever
  moves past pages Kinesis accepted: a run that fails midway is continued with every item sent.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest


def _cfg(tmp_path=None, **table):
    from s3tstream.config import model as c

    cfg = c.build({"stack": {"name": "shop", "region": "eu-west-1"}, "backfill": {"items_per_second": 0},
                   "source": {"partition_key": {"name": "pk", "type": "S"}, "sort_key": {"name": "sk", "type": "N"}},
                   "table": {"columns": [{"name": "pk", "type": "string", "required": True}], **table}})
    if tmp_path is not None:
        cfg.path = tmp_path / "s3tstream.toml"
    return cfg


ITEMS = [
    {"pk": {"S": "a"}, "sk": {"N": "1"}, "note": {"S": "x" * 50}, "n": {"N": "-1.50E+3"}},
    {"sk": {"N": "2"}, "pk": {"S": "b\u00e9\u2603\"q"}, "m": {"M": {"l": {"L": [{"B": "AAE="}, {"NULL": True}]}}},
     "ss": {"SS": ["y", "x"]}, "bs": {"BS": ["AA=="]}, "t": {"BOOL": False}},
    {"pk": {"S": "c"}, "big": {"S": "z" * (1024 * 1024)}},  # over Kinesis' 1 MiB: the sender reports it
]


@pytest.mark.parametrize("precision", ["MICROSECOND", "MILLISECOND"])
def test_build_entries_are_the_bytes_of_change_record(precision):
    from s3tstream.data.backfill.records import SOURCE, approx_at, build_entries
    from s3tstream.data.changes import change_record, encode

    cfg = _cfg()
    cfg.stream.timestamp_precision = precision
    read_at = 1_700_000_000.123456
    got = build_entries(cfg, ITEMS, read_at)
    assert len(got) == 3
    ids = set()
    for (data, pk, keys), item in zip(got, ITEMS):
        assert keys == {a: item[a] for a in ("pk", "sk") if a in item}
        want_data, want_pk, _ = encode(change_record(cfg, "INSERT", keys, item, source=SOURCE,
                                                     approx=approx_at(cfg, read_at)))
        rec = json.loads(data)
        ids.add(rec["eventID"])
        assert uuid.UUID(rec["eventID"]).version == 4
        want = json.loads(want_data)
        assert data == want_data.replace(want["eventID"].encode(), rec["eventID"].encode()) and pk == want_pk
    assert len(ids) == 3
    assert "bé☃".encode() in got[1][0]  # UTF-8, not ASCII-escaped


def test_wire_items_and_records_equal_botocore_parse(sandbox):
    """Scan pages and GetRecords taken as wire JSON give what botocore's parse (+ from_boto) gives."""
    import boto3

    from s3tstream.data.backfill.catchup import epoch
    from s3tstream.data.backfill.wire import call_wire
    from s3tstream.data.items import from_boto

    ddb, kin = (boto3.client(s, region_name="us-east-1", endpoint_url=sandbox.endpoint_url) for s in ("dynamodb", "kinesis"))
    table = stream = "w" + uuid.uuid4().hex[:8]
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    for i, it in enumerate(ITEMS[:2]):
        ddb.put_item(TableName=table, Item={**{k: v for k, v in it.items() if k != "sk"}, "pk": {"S": f"k{i}"},
                                            "m": {"M": {"b": {"B": bytes([i, 255])}}}})
    page, wire = call_wire(ddb, "scan", "Items", TableName=table, ReturnConsumedCapacity="TOTAL")
    plain = ddb.scan(TableName=table, ReturnConsumedCapacity="TOTAL")
    assert "Items" not in page and page["Count"] == 2 and page["ConsumedCapacity"] == plain["ConsumedCapacity"]
    assert wire == [from_boto(i) for i in plain["Items"]]
    assert ddb.scan(TableName=table)["Items"] == plain["Items"]  # not asked for: parsed as usual

    kin.create_stream(StreamName=stream, ShardCount=1)
    kin.put_records(StreamName=stream, Records=[{"Data": bytes([i]) * 3 + b"aws:dynamodb", "PartitionKey": "p"} for i in range(5)])
    shard = kin.list_shards(StreamName=stream)["Shards"][0]["ShardId"]

    def it():
        return kin.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]

    r, recs = call_wire(kin, "get_records", "Records", ShardIterator=it(), Limit=100)
    want = kin.get_records(ShardIterator=it(), Limit=100)
    assert "Records" not in r and r["MillisBehindLatest"] == want["MillisBehindLatest"]
    assert [(x["SequenceNumber"], epoch(x["ApproximateArrivalTimestamp"])) for x in recs] == \
        [(x["SequenceNumber"], x["ApproximateArrivalTimestamp"].timestamp()) for x in want["Records"]]
    import base64

    assert [base64.b64decode(x["Data"]) for x in recs] == [x["Data"] for x in want["Records"]]


def test_epoch_of_every_arrival_timestamp_form():
    from datetime import UTC, datetime

    from s3tstream.data.backfill.catchup import epoch

    t = datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    assert epoch(t) == epoch(t.timestamp()) == epoch(str(t.timestamp())) == epoch("2026-01-02T03:04:05.5Z")
    assert epoch(None) == 0.0


# ------------------------------------------------------------------ read-ahead and checkpoints
class PagedDdb:
    """Scan over ``total`` items in pages of ``page`` (LastEvaluatedKey = the last key read)."""

    def __init__(self, total: int, page: int) -> None:
        self.total, self.page = total, page
        self.calls: list[tuple[int, float]] = []  # (start index, time)
        self.lock = threading.Lock()

    def scan(self, **kw):
        start = int(kw.get("ExclusiveStartKey", {}).get("pk", {}).get("S", "-1")) + 1
        with self.lock:
            self.calls.append((start, time.monotonic()))
        n = min(self.page, self.total - start)
        out = {"Items": [{"pk": {"S": str(i)}} for i in range(start, start + n)]}
        if start + n < self.total:
            out["LastEvaluatedKey"] = {"pk": {"S": str(start + n - 1)}}
        return out


class Kinesis:
    def __init__(self, fail_at: int | None = None, hold: threading.Event | None = None) -> None:
        self.records: list[str] = []
        self.calls = 0
        self.fail_at, self.hold = fail_at, hold

    def put_records(self, StreamName, Records):
        from botocore.exceptions import ClientError

        self.calls += 1
        if self.hold is not None and self.calls == 1:
            assert self.hold.wait(5), "the next page was not read while the first one was being sent"
        if self.calls == self.fail_at:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutRecords")
        self.records += [json.loads(r["Data"])["dynamodb"]["Keys"]["pk"]["S"] for r in Records]
        return {"Records": [{"SequenceNumber": "1"} for _ in Records]}


class Aws:
    def __init__(self, **clients):
        self.clients = clients

    def client(self, name):
        return self.clients[name]


def _scan(tmp_path, ddb, kin, doc=None):
    from s3tstream.data.backfill.jobs import Checkpoints
    from s3tstream.data.backfill.scan import ScanBackfill

    cfg = _cfg(tmp_path)
    store = Checkpoints(cfg)
    doc = doc or store.new("scan", segments=1, segment_state=[{"lek": None, "read": 0, "sent": 0, "done": False}])
    desc = {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}, "ItemCount": ddb.total}
    return ScanBackfill(cfg, Aws(dynamodb=ddb, kinesis=kin), store, doc, desc), store


def test_a_segment_reads_its_next_page_while_sending_the_current_one(tmp_path):
    ddb = PagedDdb(total=30, page=10)
    second_read = threading.Event()
    real_scan = ddb.scan

    def scan(**kw):
        out = real_scan(**kw)
        if kw.get("ExclusiveStartKey"):
            second_read.set()
        return out

    ddb.scan = scan
    kin = Kinesis(hold=second_read)  # the first PutRecords returns only once page 2 was read
    sb, store = _scan(tmp_path, ddb, kin)
    sb.run()
    assert kin.records == [str(i) for i in range(30)] and sb.read == sb.sent == 30
    assert json.loads(store.path.read_text())["jobs"]["backfill"]["segment_state"] == [{"lek": None, "read": 30, "sent": 30, "done": True}]


def test_a_failed_send_leaves_the_checkpoint_at_the_last_page_kinesis_accepted(tmp_path):
    from s3tstream.errors import AwsError

    ddb = PagedDdb(total=50, page=10)
    kin = Kinesis(fail_at=3)  # pages 1 and 2 accepted, page 3 refused (page 4, read ahead or not, is dropped)
    sb, store = _scan(tmp_path, ddb, kin)
    with pytest.raises(AwsError, match="AccessDeniedException"):
        sb.run()
    saved = json.loads(store.path.read_text())["jobs"]["backfill"]
    assert saved["segment_state"] == [{"lek": {"pk": {"S": "19"}}, "read": 20, "sent": 20, "done": False}]
    assert kin.records == [str(i) for i in range(20)] and sb.read == 20
    # the next run continues after the last accepted page: every item sent, none twice
    ddb2, kin2 = PagedDdb(total=50, page=10), Kinesis()
    sb2, store2 = _scan(tmp_path, ddb2, kin2, doc=saved)
    sb2.run()
    assert kin2.records == [str(i) for i in range(20, 50)] and ddb2.calls[0][0] == 20
    assert json.loads(store2.path.read_text())["jobs"]["backfill"]["segment_state"] == [{"lek": None, "read": 50, "sent": 50, "done": True}]
