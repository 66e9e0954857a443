"""The Firehose transform handler: operations, TTL, changelog, backfill, failures."""

import base64
import json
from decimal import Decimal

import pytest

from s3tstream.transform import ENV_SETTINGS, ENV_SETTINGS_Z, encode_settings, handler

COLUMNS = [
    {"name": "pk", "type": "string", "required": True},
    {"name": "sk", "type": "long", "required": True},
    {"name": "amount", "type": "decimal(38,9)"},
    {"name": "note", "type": "string"},
]
KEYS = {"pk": {"S": "a"}, "sk": {"N": "1"}}
IMAGE = {**KEYS, "amount": {"N": "12345678901234567890.123456789"}, "note": {"S": "hi"}}


def at(sk, image=IMAGE):
    """The image (or keys) for another key: a batch keeps one change per key (upsert)."""
    return {**image, "sk": {"N": str(sk)}}
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}


@pytest.fixture
def configure(monkeypatch):
    def apply(mode="upsert", ttl_deletes="delete", columns=COLUMNS, extra=None):
        doc = {"database": "shop", "table": "orders", "mode": mode, "keys": ["pk", "sk"],
               "columns": columns, "ttl_deletes": ttl_deletes, "extra_column": extra}
        monkeypatch.delenv(ENV_SETTINGS, raising=False)
        monkeypatch.delenv(ENV_SETTINGS_Z, raising=False)
        for k, v in encode_settings(doc).items():
            monkeypatch.setenv(k, v)

    apply()
    return apply


def change(name="INSERT", new=IMAGE, old=None, keys=KEYS, source="aws:dynamodb",
           identity=None, when=1_700_000_000_123, precision=None, event_id="ev-1"):
    ddb = {"Keys": keys, "ApproximateCreationDateTime": when, "SizeBytes": 10}
    if new is not None:
        ddb["NewImage"] = new
    if old is not None:
        ddb["OldImage"] = old
    if precision:
        ddb["ApproximateCreationDateTimePrecision"] = precision
    return {"awsRegion": "us-east-1", "eventID": event_id, "eventName": name,
            "userIdentity": identity, "recordFormat": "application/json", "tableName": "orders",
            "dynamodb": ddb, "eventSource": source}


def b64(obj) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.b64encode(raw).decode()


def run(*changes):
    event = {"invocationId": "i", "deliveryStreamArn": "arn", "region": "us-east-1",
             "records": [{"recordId": f"r{i}", "approximateArrivalTimestamp": 0,
                          "data": c if isinstance(c, str) else b64(c)}
                         for i, c in enumerate(changes)]}
    out = handler(event, None)["records"]
    assert [r["recordId"] for r in out] == [f"r{i}" for i in range(len(changes))]
    return out


def row_of(rec):
    assert rec["result"] == "Ok", rec
    return json.loads(base64.b64decode(rec["data"]), parse_float=Decimal)


def op_of(rec):
    meta = rec["metadata"]["otfMetadata"]
    assert meta["destinationDatabaseName"] == "shop"
    assert meta["destinationTableName"] == "orders"
    return meta["operation"]


# ----------------------------------------------------------------- upsert
def test_upsert_insert_and_modify_are_updates(configure):
    ins, mod = run(change("INSERT"), change("MODIFY", old=at(2), keys=at(2, KEYS),
                                            new={**at(2), "note": {"S": "changed"}}))
    assert op_of(ins) == op_of(mod) == "update"
    assert row_of(ins) == {"pk": "a", "sk": 1, "amount": Decimal("12345678901234567890.123456789"),
                           "note": "hi"}
    assert row_of(mod)["note"] == "changed"
    raw = base64.b64decode(ins["data"]).decode()
    assert '"amount":12345678901234567890.123456789' in raw  # exact token, no float


def test_upsert_remove_is_delete_with_keys(configure):
    (with_old, keys_only, old_only) = run(
        change("REMOVE", new=None, old=IMAGE),
        change("REMOVE", new=None, old=None, keys=at(2, KEYS)),
        change("REMOVE", new=None, old=at(3), keys=None),
    )
    for sk, rec in enumerate((with_old, keys_only, old_only), 1):
        assert op_of(rec) == "delete"
        assert row_of(rec)["pk"] == "a" and row_of(rec)["sk"] == sk
    assert row_of(with_old)["note"] == "hi"  # the deleted row's values (partition columns)
    assert row_of(keys_only) == {"pk": "a", "sk": 2, "amount": None, "note": None}


def test_upsert_remove_with_unmappable_old_image_still_deletes_by_key(configure):
    (rec,) = run(change("REMOVE", new=None, old={**IMAGE, "amount": {"N": "0.0000000001"}}))
    assert op_of(rec) == "delete"
    assert row_of(rec) == {"pk": "a", "sk": 1, "amount": None, "note": None}


def test_ttl_delete_follows_settings(configure):
    ttl = change("REMOVE", new=None, old=IMAGE, identity=TTL_IDENTITY)
    user = change("REMOVE", new=None, old=at(2), keys=at(2, KEYS),
                  identity={"type": "User", "principalId": "x"})
    (rec,) = run(ttl)
    assert op_of(rec) == "delete"
    configure(ttl_deletes="keep")
    kept, deleted = run(ttl, user)
    assert kept["result"] == "Dropped" and "metadata" not in kept
    assert op_of(deleted) == "delete"


def test_backfill_and_repair_records_in_upsert_mode(configure):
    ins, rem = run(change("INSERT", source="s3tstream:backfill"),
                   change("REMOVE", new=None, old=at(2), keys=at(2, KEYS), source="s3tstream:repair"))
    assert op_of(ins) == "update" and row_of(ins)["note"] == "hi"
    assert op_of(rem) == "delete"


# ----------------------------------------------------------------- changelog
def test_changelog_rows(configure):
    configure(mode="changelog", ttl_deletes="keep")
    recs = run(
        change("INSERT", event_id="e1"),
        change("MODIFY", old=IMAGE, new={**IMAGE, "note": {"S": "new"}}, event_id="e2"),
        change("REMOVE", new=None, old=IMAGE, event_id="e3"),
        change("REMOVE", new=None, old=IMAGE, identity=TTL_IDENTITY, event_id="e4"),
        change("INSERT", source="s3tstream:backfill", event_id="e5"),
        change("INSERT", source="s3tstream:repair", event_id="e6"),
    )
    assert [op_of(r) for r in recs] == ["insert"] * 6
    rows = [row_of(r) for r in recs]
    assert [r["_op"] for r in rows] == ["insert", "modify", "remove", "ttl_remove", "backfill", "insert"]
    assert [r["_event_id"] for r in rows] == ["e1", "e2", "e3", "e4", "e5", "e6"]
    assert rows[1]["note"] == "new"
    assert rows[2]["note"] == "hi"  # REMOVE rows carry the old image
    assert rows[0]["_event_time"] == 1_700_000_000_123_000  # ms -> µs


def test_changelog_event_time_precisions(configure):
    configure(mode="changelog")
    ms, ms_explicit, us, missing = run(
        change(when=1_700_000_000_123),
        change(when=1_700_000_000_123, precision="MILLISECOND"),
        change(when=1_700_000_000_123_456, precision="MICROSECOND"),
        change(when=None),
    )
    assert row_of(ms)["_event_time"] == 1_700_000_000_123_000
    assert row_of(ms_explicit)["_event_time"] == 1_700_000_000_123_000
    assert row_of(us)["_event_time"] == 1_700_000_000_123_456
    assert row_of(missing)["_event_time"] is None
    (bad,) = run(change(when=5, precision="NANOSECOND"))
    assert bad["result"] == "ProcessingFailed"


def test_changelog_remove_without_old_image_keeps_the_keys(configure):
    configure(mode="changelog")
    (rec,) = run(change("REMOVE", new=None, old=None))
    assert row_of(rec) == {"pk": "a", "sk": 1, "amount": None, "note": None, "_op": "remove",
                           "_event_time": 1_700_000_000_123_000, "_event_id": "ev-1"}


# ----------------------------------------------------------------- failures
def test_bad_records_fail_alone_and_are_logged(configure, capsys):
    good = change()
    recs = run(
        good,
        "!!! not base64 !!!",
        b64(b"\xff\xfe not utf-8 json"),
        b64(b"{not json"),
        b64([1, 2]),
        change(name="UPSERT"),
        change(source="aws:something"),
        change(new={**IMAGE, "sk": {"N": "1.5"}}),  # unconvertible value
        change(new={"pk": {"S": "a"}}),  # required column missing
        change(new=None),  # INSERT without NewImage
        {"eventName": "INSERT", "dynamodb": "x", "eventSource": "aws:dynamodb"},
        change(new=at(2), keys=at(2, KEYS)),
    )
    results = [r["result"] for r in recs]
    assert results == ["Ok"] + ["ProcessingFailed"] * 10 + ["Ok"]
    assert recs[1]["data"] == "!!! not base64 !!!"  # original data goes to the error bucket
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    failed = [entry for entry in lines if entry.get("msg") == "record failed"]
    assert [entry["recordId"] for entry in failed] == [f"r{i}" for i in range(1, 11)]
    reasons = {entry["recordId"]: entry["reason"] for entry in failed}
    assert "base64" in reasons["r1"]
    assert "JSON" in reasons["r3"]
    assert "eventName" in reasons["r5"]
    assert "eventSource" in reasons["r6"]
    assert "'sk'" in reasons["r7"] and "not an integer" in reasons["r7"]
    assert "'sk'" in reasons["r8"] and "missing" in reasons["r8"]
    assert "NewImage" in reasons["r9"]
    summary = [entry for entry in lines if entry.get("msg") == "batch"]
    assert summary == [{"level": "INFO", "msg": "batch", "records": 12, "ok": 2, "dropped": 0,
                        "failed": 10, "superseded": 0, "fields_dropped": 0}]


def test_whitespace_around_json_is_fine(configure):
    (rec,) = run(b64(b"  " + json.dumps(change()).encode() + b"\n"))
    assert row_of(rec)["pk"] == "a"


def test_empty_batch(configure):
    assert handler({"records": []}, None) == {"records": []}


def test_bad_envelope_raises(configure):
    with pytest.raises(KeyError):
        handler({}, None)
    with pytest.raises(KeyError):
        handler({"records": [{"data": b64(change())}]}, None)


def test_extra_column_and_nested_values_through_the_handler(configure):
    configure(columns=COLUMNS + [{"name": "tags", "type": "list<string>"}], extra="extra")
    new = {**IMAGE, "tags": {"SS": ["z", "y"]}, "misc": {"M": {"n": {"N": "0.10"}}}}
    (rec,) = run(change(new=new))
    row = row_of(rec)
    assert row["tags"] == ["y", "z"]
    assert row["extra"] == '{"misc":{"n":0.10}}'


def test_decimal_columns_are_exact_tokens_in_every_layout(configure):
    # Only decimal columns (the row's JSON is nothing but them), a NULL one, and decimals nested
    # in a list: each payload carries the exact tokens.
    configure(columns=[{"name": "pk", "type": "string", "required": True},
                       {"name": "sk", "type": "decimal(10,2)", "required": True},
                       {"name": "d", "type": "decimal(5,1)"}])
    keys = {"pk": {"S": "a"}, "sk": {"N": "1.5"}}
    (rec,) = run(change(new={**keys, "d": {"NULL": True}}, keys=keys))
    raw = base64.b64decode(rec["data"]).decode()
    assert json.loads(raw) == {"pk": "a", "sk": 1.5, "d": None} and '"sk":1.50' in raw
    configure(columns=[{"name": "pk", "type": "decimal(3,1)", "required": True},
                       {"name": "sk", "type": "decimal(3,0)", "required": True}])
    keys = {"pk": {"N": "2"}, "sk": {"N": "7"}}
    (rec,) = run(change(new=keys, keys=keys))
    assert base64.b64decode(rec["data"]).decode() in ('{"pk":2.0,"sk":7}', '{"sk":7,"pk":2.0}')
    configure(columns=COLUMNS + [{"name": "prices", "type": "list<decimal(4,2)>"}])
    (rec,) = run(change(new={**IMAGE, "prices": {"L": [{"N": "1.5"}, {"N": "0.25"}]}}))
    raw = base64.b64decode(rec["data"]).decode()
    assert '"prices":[1.50,0.25]' in raw and '"amount":12345678901234567890.123456789' in raw


def test_base64_is_decoded_leniently_and_blamed_only_when_it_is_bad(configure, capsys):
    good = b64(change())
    wrapped = good[:40] + "\n" + good[40:]  # MIME-style line break: the content is intact
    bad_b64 = "e30" + "!" * 3  # not base64 at all (3 data characters)
    not_json = b64(b"[1, 2")
    ok, broken, bad = run(wrapped, bad_b64, not_json)
    assert row_of(ok)["note"] == "hi"
    assert broken["result"] == bad["result"] == "ProcessingFailed"
    reasons = {e["recordId"]: e["reason"] for e in map(json.loads, capsys.readouterr().out.splitlines())
               if e.get("msg") == "record failed"}
    assert "base64" in reasons["r1"] and "JSON" in reasons["r2"]
