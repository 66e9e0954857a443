"""ext/fast_responses.py: DynamoDB item trees and Kinesis records serialized directly give the
bytes moto's shape walk gives (every AttributeValue type, nested; the values the direct path
hands back to moto), other services keep moto's walk, and the round trips through the sandbox
hold."""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal

import pytest

ITEM = {
    "pk": {"S": "k1"}, "n": {"N": "-1.5E+3"}, "empty": {"S": ""}, "b": {"B": b"\x00\xffbin"},
    "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2.5"]}, "bs": {"BS": [b"x", b"\x01"]},
    "t": {"BOOL": True}, "f": {"BOOL": False}, "null": {"NULL": True}, "uni": {"S": "h\u00e9\u2603 \"q\""},
    "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "1"}, {"M": {}}, {"L": []}, {"B": b"y"}]}, "e": {"M": {}}}},
    "l": {"L": [{"BS": [b"z"]}, {"NULL": True}, {"SS": ["s"]}]},
}
ODD = {  # not moto's plain form: moto's walk serializes these
    "two": {"S": "a", "N": "1"}, "lower": {"s": "x"}, "none": {"S": None}, "int": {"N": 5},
    "ns_int": {"NS": [1, 2]}, "m_none": {"M": {"x": {"S": None}}}, "str_b": {"B": "text"},
}
AT = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
RECORD = {"Data": b"{\"a\": 1}\x00\xff", "PartitionKey": "pk", "SequenceNumber": "42", "ApproximateArrivalTimestamp": AT}


def _serializers(service: str, op: str):
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    from s3tstream.sandbox import services as ext
    from s3tstream.sandbox.services import fast_responses as fr

    ext.load_all()

    class MotoOnly(JSONSerializer):
        _serialize_type_map = fr.MOTO_SERIALIZE_MAP
        _serialize_type_list = fr.MOTO_SERIALIZE_LIST
        _serialize_type_structure = fr.MOTO_SERIALIZE_STRUCTURE

    model = get_service_model(service).operation_model(op)
    return (JSONSerializer(model, value_picker=XFormedAttributePicker()),
            MotoOnly(model, value_picker=XFormedAttributePicker()))


@pytest.mark.parametrize(("service", "op", "result"), [
    ("dynamodb", "Scan", {"Count": 2, "ScannedCount": 2, "Items": [ITEM, {"pk": {"S": "k2"}}],
                          "LastEvaluatedKey": {"pk": {"S": "k2"}}, "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 1.0}}),
    ("dynamodb", "Scan", {"Count": 1, "ScannedCount": 1, "Items": [{**ITEM, **ODD}]}),
    ("dynamodb", "GetItem", {"Item": ITEM}),
    ("dynamodb", "GetItem", {}),
    ("dynamodb", "Query", {"Count": 1, "ScannedCount": 1, "Items": [ODD]}),
    ("dynamodb", "BatchGetItem", {"Responses": {"t": [ITEM, ODD]}, "UnprocessedKeys": {"t": {"Keys": [{"pk": {"S": "k"}}]}}}),
    ("dynamodb", "BatchWriteItem", {"UnprocessedItems": {"t": [{"PutRequest": {"Item": ITEM}}, {"DeleteRequest": {"Key": ODD}}]}}),
    ("dynamodb", "UpdateItem", {"Attributes": {"n": {"N": "2"}, "odd": {"S": Decimal("1")}}}),
    ("kinesis", "GetRecords", {"NextShardIterator": "it", "MillisBehindLatest": 0,
                               "Records": [RECORD, {**RECORD, "Data": b"", "EncryptionType": "NONE"}]}),
    ("kinesis", "GetRecords", {"NextShardIterator": "it", "Records": [RECORD, {**RECORD, "sequence_number": "7"}]}),
    ("kinesis", "GetRecords", {"NextShardIterator": None, "Records": []}),
    ("kinesis", "PutRecords", {"FailedRecordCount": 1, "Records": [
        {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
        {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}]}),
])
def test_direct_serialization_equals_motos_walk(service, op, result, monkeypatch):
    from s3tstream.sandbox.services import fast_responses as fr

    ours, motos = _serializers(service, op)
    direct = []
    for key, conv in list(fr.DIRECT.items()):
        monkeypatch.setitem(fr.DIRECT, key, lambda ser, v, shape, conv=conv: direct.append(1) or conv(ser, v, shape))
    got = ours.serialize(copy.deepcopy(result))
    want = motos.serialize(copy.deepcopy(result))
    assert got["body"] == want["body"] and got["headers"] == want["headers"] and got["status_code"] == want["status_code"]
    has_values = any(result.get(k) for k in ("Items", "Item", "Responses", "UnprocessedItems", "Attributes", "Records"))
    assert bool(direct) == has_values  # the direct path was taken (not only moto's walk)


def test_dynamo_to_dict_equals_motos():
    from moto.dynamodb.models.dynamo_type import DynamoType, Item, LimitedSizeDict

    from s3tstream.sandbox.services import fast_responses as fr

    wire = {**{k: v for k, v in ITEM.items()}, "b": {"B": "AP9iaW4="}, "bs": {"BS": ["eA==", b"\x01"]},
            "m": {"M": {"inner": {"L": [{"S": "x"}, {"B": b"raw"}, {"M": {}}]}}}}
    item = Item(DynamoType({"S": "k1"}), None, wire)

    class WithJson:
        def to_json(self):
            return {"Item": item, "When": AT}

    result = {"Items": [item.attrs, LimitedSizeDict(a=DynamoType({"N": "1"}))], "Item": item, "Count": 2,
              "Nested": [{"x": [DynamoType({"SS": ["a"]}), WithJson()]}], "At": AT, "Text": "t", "None": None,
              "Projected": {"b": DynamoType({"B": b"bytes"}), "bs": DynamoType({"BS": [b"a", "Yg=="]})}}
    assert fr.dynamo_to_dict(copy.deepcopy(result)) == fr.MOTO_DYNAMO_TO_DICT(copy.deepcopy(result))
    from moto.dynamodb import responses

    assert responses.dynamo_to_dict is fr.dynamo_to_dict  # what DynamoResult calls


def test_other_services_keep_motos_walk(monkeypatch):
    from moto.core.serialize import JSONSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    from s3tstream.sandbox import services as ext
    from s3tstream.sandbox.services import fast_responses as fr

    ext.load_all()
    calls = []
    monkeypatch.setattr(fr, "attribute_value", lambda v: calls.append(v) or v)
    monkeypatch.setattr(fr, "flat_structure", lambda *a: calls.append(a) or {})
    model = get_service_model("firehose").operation_model("DescribeDeliveryStream")
    body = JSONSerializer(model, value_picker=XFormedAttributePicker()).serialize(
        {"DeliveryStreamDescription": {"DeliveryStreamName": "s", "Destinations": [{"DestinationId": "d"}]}})["body"]
    assert json.loads(body)["DeliveryStreamDescription"]["Destinations"] == [{"DestinationId": "d"}] and calls == []


def test_request_id_is_still_filled_in_xml_and_json_bodies_are_kept():
    from moto.core.responses import BaseResponse

    from s3tstream.sandbox import services as ext
    from s3tstream.sandbox.services import fast_responses as fr

    ext.load_all()
    xml = "<R><RequestId>old</RequestId></R>"
    for body in (xml, '{"a": "<Request>"}', b"<RequestId>x</RequestId>"):
        h1, b1 = BaseResponse._enrich_response({"status": 200}, body)
        h2, b2 = fr.MOTO_ENRICH_RESPONSE({"status": 200}, body)
        assert h1.keys() == h2.keys() and h1["status"] == "200"
        if body == xml:
            assert b1 == f"<R><RequestId>{h1['x-amzn-requestid']}</RequestId></R>"
        else:
            assert b1 == b2 == body


def test_items_of_every_type_round_trip_through_scan_get_and_batch_get(client, name):
    from sandbox_helpers import create_table

    ddb = client("dynamodb")
    table = name("json")
    create_table(ddb, table)
    items = [{**ITEM, "pk": {"S": f"k{i}"}} for i in range(3)]
    for it in items:
        ddb.put_item(TableName=table, Item=it)

    def norm(it):
        out = dict(it)
        for k in ("ss", "ns", "bs"):  # DynamoDB returns sets in its own order
            (tag, vals), = it[k].items()
            out[k] = {tag: sorted(vals)}
        return json.dumps(out, sort_keys=True, default=lambda b: b.hex())

    want = sorted(norm(it) for it in items)
    assert sorted(norm(it) for it in ddb.scan(TableName=table)["Items"]) == want
    assert norm(ddb.get_item(TableName=table, Key={"pk": {"S": "k1"}})["Item"]) == norm(items[1])
    got = ddb.batch_get_item(RequestItems={table: {"Keys": [{"pk": it["pk"]} for it in items]}})["Responses"][table]
    assert sorted(norm(it) for it in got) == want
    page = ddb.scan(TableName=table, Limit=1)
    assert page["LastEvaluatedKey"] == {"pk": page["Items"][0]["pk"]}


def test_records_round_trip_through_put_records_and_get_records(client, name):
    from sandbox_helpers import create_stream

    kinesis = client("kinesis")
    stream = name("recs")
    create_stream(kinesis, stream, shards=1)
    data = [bytes([i]) * i + b"\xff" for i in range(1, 40)]
    r = kinesis.put_records(StreamName=stream, Records=[{"Data": d, "PartitionKey": f"p{i}"} for i, d in enumerate(data)])
    assert r["FailedRecordCount"] == 0 and [e["ShardId"] for e in r["Records"]] == ["shardId-000000000000"] * len(data)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    got = kinesis.get_records(ShardIterator=it, Limit=100)["Records"]
    assert [g["Data"] for g in got] == data and [g["PartitionKey"] for g in got] == [f"p{i}" for i in range(len(data))]
    assert [g["SequenceNumber"] for g in got] == [e["SequenceNumber"] for e in r["Records"]]
    assert all(isinstance(g["ApproximateArrivalTimestamp"], dt.datetime) for g in got)
