"""failed_records.py and replay.py: Firehose error documents read streamed, grouping, and replay
(an object deleted only when every record in it was read and accepted; bad objects reported and
kept; records of another table refused; a GZIP bomb stays within a memory cap)."""

from __future__ import annotations

import base64
import gzip
import io
import json
from types import SimpleNamespace

import pytest

from s3tstream.config import model as c
from s3tstream.data import failed_records as F
from s3tstream.data import replay as R
from s3tstream.errors import AwsError
from s3tstream.data.items import to_boto


def cfg_for(mode="upsert"):
    return c.build({"stack": {"name": "shop"},
                    "table": {"mode": mode, "columns": [{"name": "pk", "type": "string", "required": True},
                                                        {"name": "qty", "type": "long"}]}})


def change(event, pk, qty=None, source="aws:dynamodb"):
    ddb = {"ApproximateCreationDateTime": 1714564800000, "Keys": {"pk": {"S": pk}}}
    if event != "REMOVE":
        ddb["NewImage"] = {"pk": {"S": pk}, **({"qty": {"N": str(qty)}} if qty is not None else {})}
    return {"eventName": event, "eventSource": source, "eventID": "e-" + pk, "dynamodb": ddb, "awsRegion": "us-east-1",
            "tableName": "shop"}


def doc(raw, code="Lambda.ProcessingFailedStatus", ts=1714564800000, **kw):
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return {"attemptsMade": 4, "arrivalTimestamp": ts - 1000, "errorCode": code, "errorMessage": "failed",
            "attemptEndingTimestamp": ts, "rawData": base64.b64encode(data).decode(), "lambdaArn": "arn:x", **kw}


def lines(*docs):
    return "\n".join(json.dumps(d) for d in docs) + "\n"


# ------------------------------------------------------------------ parsing and grouping
def test_parse_documents_of_every_shape():
    delivery = {"attemptsMade": 1, "arrivalTimestamp": 5, "ErrorCode": "Iceberg.MissingColumnWithinRecord",
                "ErrorMessage": "missing qty", "rawData": base64.b64encode(b'{"pk": "a"}').decode(),
                "dataCatalogTable": {"tableName": "shop"}}
    last = {"lastErrorCode": "S3.AccessDenied", "lastErrorMessage": "denied", "rawData": "!!notbase64"}
    text = json.dumps(doc(change("INSERT", "a", 1))) + json.dumps(delivery) + "\n\n" + json.dumps(last)
    recs = F.parse_documents(text, "k")
    assert [r.error_code for r in recs] == ["Lambda.ProcessingFailedStatus", "Iceberg.MissingColumnWithinRecord", "S3.AccessDenied"]
    assert recs[0].change()["eventName"] == "INSERT" and recs[0].when_ms == 1714564800000 and recs[0].attempts == 4
    assert recs[1].change() is None and recs[1].decoded() == {"pk": "a"} and recs[1].when_ms == 5
    assert recs[2].raw == b"!!notbase64" and recs[2].error_message == "denied"
    with pytest.raises(F.BadObject, match="document 1 is not JSON"):
        F.parse_documents('{"a": 1} {oops', "k")
    with pytest.raises(F.BadObject, match="document 1 is truncated"):
        F.parse_documents('{"a": 1} {"b": [1, 2', "k")
    with pytest.raises(F.BadObject, match="not a Firehose error document"):
        F.parse_documents('{"a": 1}\n[1]', "k")


def test_gzip_bodies_are_read():
    body = gzip.compress(lines(doc(change("INSERT", "a", 1))).encode())
    assert F.parse_documents(F.decode_body(body), "k")[0].change()["dynamodb"]["Keys"] == {"pk": {"S": "a"}}


def test_summarize_groups_by_code_with_counts_times_and_an_example():
    recs = F.parse_documents(lines(
        doc(change("INSERT", "a", 1), ts=2000), doc(change("MODIFY", "b", 2), ts=1000),
        doc(b"not json at all", code="Lambda.InvokeAccessDenied", ts=1500)), "o1")
    recs += F.parse_documents(lines(doc(change("INSERT", "c", 3), ts=3000)), "o2")
    groups = F.summarize(recs)
    assert [(g["error_code"], g["count"], g["objects"]) for g in groups] == [
        ("Lambda.ProcessingFailedStatus", 3, 2), ("Lambda.InvokeAccessDenied", 1, 1)]
    g = groups[0]
    assert g["first"] == "1970-01-01T00:00:01.000+00:00" and g["last"] == "1970-01-01T00:00:03.000+00:00"
    assert g["example"] == {"eventName": "INSERT", "eventSource": "aws:dynamodb", "keys": {"pk": "a"},
                            "newImage": {"pk": "a", "qty": 1}}
    assert groups[1]["example"] == "not json at all"


# ------------------------------------------------------------------ what replay sends
class FakeDdb:
    def __init__(self, items):
        self.items = {i["pk"]["S"]: to_boto(i) for i in items}
        self.gets = 0

    def batch_get_item(self, RequestItems):
        self.gets += 1
        [(table, req)] = RequestItems.items()
        assert req["ConsistentRead"] is True
        found = [self.items[k["pk"]["S"]] for k in req["Keys"] if k["pk"]["S"] in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {}}


def sent(entries):
    return [json.loads(d) for d, _, _ in entries]


def test_upsert_replays_the_raw_record_while_it_is_still_current():
    ddb = FakeDdb([{"pk": {"S": "a"}, "qty": {"N": "1"}}])
    recs = F.parse_documents(lines(doc(change("INSERT", "a", 1)), doc(change("REMOVE", "gone"))), "k")
    entries, raw, cur, why = R.plan_object(cfg_for(), ddb, recs)
    assert why is None and (raw, cur) == (2, 0)
    assert [e[0] for e in entries] == [r.raw for r in recs]  # byte for byte the original data


def test_upsert_sends_the_current_state_instead_of_a_stale_record():
    ddb = FakeDdb([{"pk": {"S": "a"}, "qty": {"N": "5"}}])
    recs = F.parse_documents(lines(doc(change("INSERT", "a", 1)), doc(change("MODIFY", "b", 2)),
                                   doc({"pk": "a", "qty": 9}, code="Iceberg.SomethingFailed")), "k")
    entries, raw, cur, why = R.plan_object(cfg_for(), ddb, recs)
    assert why is None and (raw, cur) == (0, 3) and ddb.gets == 1
    a, b, row = sent(entries)
    assert a["eventSource"] == "s3tstream:repair" and a["eventName"] == "INSERT"
    assert a["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "qty": {"N": "5"}}
    assert b["eventName"] == "REMOVE" and b["dynamodb"]["Keys"] == {"pk": {"S": "b"}}
    assert row["dynamodb"]["NewImage"]["qty"] == {"N": "5"}  # a transformed row: the key's current state


def test_changelog_replays_raw_history_and_keeps_what_it_cannot_rebuild():
    ddb = FakeDdb([])
    recs = F.parse_documents(lines(doc(change("INSERT", "a", 1)), doc(change("MODIFY", "a", 2))), "k")
    entries, raw, cur, why = R.plan_object(cfg_for("changelog"), ddb, recs)
    assert (raw, cur, why) == (2, 0, None) and ddb.gets == 0
    rows = F.parse_documents(lines(doc({"pk": "a", "qty": 1})), "k")
    assert "changelog" in R.plan_object(cfg_for("changelog"), ddb, rows)[3]
    junk = F.parse_documents(lines(doc(b"\x00\x01")), "k")
    assert "not a DynamoDB change record" in R.plan_object(cfg_for(), ddb, junk)[3]


# ------------------------------------------------------------------ replay end to end with fakes
class FakeS3:
    def __init__(self, objects):
        self.objects = dict(objects)
        self.deleted = []

    def get_paginator(self, op):
        s3 = self

        class P:
            def paginate(self, Bucket, Prefix):
                yield {"Contents": [{"Key": k} for k in sorted(s3.objects) if k.startswith(Prefix)]}

        return P()

    def get_object(self, Bucket, Key):
        return {"Body": io.BytesIO(self.objects[Key])}

    def delete_object(self, Bucket, Key):
        self.deleted.append(Key)
        del self.objects[Key]


class FakeKinesis:
    def __init__(self, fail_first=0, always_fail=False):
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.accepted = []

    def put_records(self, StreamName, Records):
        out = []
        for r in Records:
            if self.always_fail or self.fail_first > 0:
                self.fail_first -= 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "x"})
            else:
                self.accepted.append(r["Data"])
                out.append({"SequenceNumber": "1", "ShardId": "s"})
        return {"FailedRecordCount": sum(1 for o in out if "ErrorCode" in o), "Records": out}


def fake_aws(s3, kinesis, ddb):
    clients = {"s3": s3, "kinesis": kinesis, "dynamodb": ddb}
    return SimpleNamespace(client=clients.__getitem__, identity=lambda: SimpleNamespace(account="123456789012"))


def test_replay_deletes_each_object_only_after_kinesis_took_all_its_records():
    objs = {"errors/processing-failed/1": lines(doc(change("INSERT", "a", 1)), doc(change("INSERT", "b", 2))).encode(),
            "errors/processing-failed/2": gzip.compress(lines(doc(change("INSERT", "c", 3))).encode()),
            "other/x": b"not ours"}
    ddb = FakeDdb([{"pk": {"S": k}, "qty": {"N": str(n)}} for k, n in (("a", 1), ("b", 2), ("c", 3))])
    s3, kin = FakeS3(objs), FakeKinesis(fail_first=1)
    res = R.replay(cfg_for(), fake_aws(s3, kin, ddb), sleep=lambda s: None)
    assert res.to_json() == {"objects": 2, "deleted_objects": 2, "records_sent": 3, "sent_as_recorded": 3,
                             "sent_as_current_state": 0, "kept": [], "failed": []}
    assert len(kin.accepted) == 3 and s3.deleted == ["errors/processing-failed/1", "errors/processing-failed/2"]
    assert list(s3.objects) == ["other/x"]


def test_replay_keeps_the_object_when_kinesis_keeps_refusing():
    objs = {"errors/a": lines(doc(change("INSERT", "a", 1))).encode()}
    s3 = FakeS3(objs)
    ddb = FakeDdb([{"pk": {"S": "a"}, "qty": {"N": "1"}}])
    with pytest.raises(AwsError, match="refused"):
        R.replay(cfg_for(), fake_aws(s3, FakeKinesis(always_fail=True), ddb), sleep=lambda s: None)
    assert s3.deleted == [] and "errors/a" in s3.objects


def test_dry_run_sends_and_deletes_nothing_and_unreplayable_objects_are_kept():
    objs = {"errors/a": lines(doc(change("INSERT", "a", 1))).encode(), "errors/b": lines(doc(b"junk")).encode()}
    s3, kin = FakeS3(objs), FakeKinesis()
    ddb = FakeDdb([{"pk": {"S": "a"}, "qty": {"N": "1"}}])
    res = R.replay(cfg_for(), fake_aws(s3, kin, ddb), dry_run=True)
    assert res.records == 1 and res.deleted == 0 and kin.accepted == [] and s3.deleted == []
    assert res.failed == [{"object": "errors/b", "reason": "record 0: record data is not a DynamoDB change record or a row"}]


def test_replay_by_code_takes_whole_objects_of_that_code_only():
    objs = {"errors/only-a": lines(doc(change("INSERT", "a", 1), code="Iceberg.MissingColumnWithinRecord")).encode(),
            "errors/mixed": lines(doc(change("INSERT", "b", 2), code="Iceberg.MissingColumnWithinRecord"),
                                  doc(change("INSERT", "c", 3))).encode(),
            "errors/other": lines(doc(change("INSERT", "d", 4))).encode()}
    ddb = FakeDdb([{"pk": {"S": k}, "qty": {"N": str(n)}} for k, n in (("a", 1), ("b", 2), ("c", 3), ("d", 4))])
    s3, kin = FakeS3(objs), FakeKinesis()
    res = R.replay(cfg_for(), fake_aws(s3, kin, ddb), codes=("Iceberg.MissingColumnWithinRecord",), sleep=lambda s: None)
    assert s3.deleted == ["errors/only-a"] and len(kin.accepted) == 1 and res.objects == 2
    assert res.kept == [{"object": "errors/mixed", "reason": "it also holds records that failed with "
                         "Lambda.ProcessingFailedStatus (an error object is replayed and deleted whole)"}]
    assert set(s3.objects) == {"errors/mixed", "errors/other"}


def test_replay_code_must_name_a_code(tmp_path, calls):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    cfg = tmp_path / "s3tstream.toml"
    cfg.write_text('[stack]\nname = "shop"\n')
    r = CliRunner().invoke(app, ["errors", "replay", "--code", " "], env={"S3TSTREAM_CONFIG": str(cfg)})
    assert r.exit_code == 2 and "--code" in r.output and not calls.calls


# ------------------------------------------------------------------ bad objects, refused records, memory
def test_a_bad_object_is_reported_and_skipped_and_never_deleted():
    good = lines(doc(change("INSERT", "a", 1)))
    objs = {"errors/1-good": good.encode(),
            "errors/2-not-json": b"\x89PNG\r\n\x1a\n binary junk",
            "errors/3-truncated-gzip": gzip.compress(good.encode() * 50)[:-30],
            "errors/4-half-a-document": good.encode()[:-20],
            "errors/5-empty": b"",
            "errors/6-good-gzip": gzip.compress(lines(doc(change("INSERT", "b", 2))).encode())}
    listing = F.list_errors(FakeS3(objs), "b", "errors/")
    assert listing.objects == 6 and listing.records == 2 and listing.groups[0]["objects"] == 2
    bad = {b["object"]: b["reason"] for b in listing.bad}
    assert set(bad) == {"errors/2-not-json", "errors/3-truncated-gzip", "errors/4-half-a-document"}
    assert "not JSON" in bad["errors/2-not-json"] and "truncated GZIP" in bad["errors/3-truncated-gzip"]
    assert "truncated" in bad["errors/4-half-a-document"]

    ddb = FakeDdb([{"pk": {"S": "a"}, "qty": {"N": "1"}}, {"pk": {"S": "b"}, "qty": {"N": "2"}}])
    s3, kin = FakeS3(objs), FakeKinesis()
    res = R.replay(cfg_for(), fake_aws(s3, kin, ddb), sleep=lambda s: None)
    assert s3.deleted == ["errors/1-good", "errors/6-good-gzip"] and len(kin.accepted) == 2
    failed = {f["object"]: f["reason"] for f in res.failed}
    assert set(failed) == {"errors/2-not-json", "errors/3-truncated-gzip", "errors/4-half-a-document", "errors/5-empty"}
    assert failed["errors/5-empty"] == "no failed record in it"  # zero records read: kept
    assert set(s3.objects) == set(failed)


@pytest.mark.parametrize("mode", ["upsert", "changelog"])
def test_records_not_of_this_stacks_source_table_are_refused_and_their_object_kept(mode):
    other_table = dict(change("INSERT", "a", 1), tableName="someone-elses")
    other_key = change("INSERT", "a", 1)
    other_key["dynamodb"]["Keys"] = {"id": {"S": "a"}}
    wrong_type = change("REMOVE", "a")
    wrong_type["dynamodb"]["Keys"] = {"pk": {"N": "1"}}
    image_elsewhere = change("INSERT", "a", 1)
    image_elsewhere["dynamodb"]["NewImage"]["pk"] = {"S": "b"}
    future = change("INSERT", "never-existed", 1)
    future["dynamodb"]["ApproximateCreationDateTime"] = 4102444800000  # 2100-01-01
    foreign_source = change("INSERT", "a", 1, source="evil:injector")
    planted = {"other_table": other_table, "other_key": other_key, "wrong_type": wrong_type,
               "image_elsewhere": image_elsewhere, "future": future, "foreign_source": foreign_source}
    objs = {f"errors/{name}": lines(doc(change("INSERT", "ok", 1)), doc(rec)).encode() for name, rec in planted.items()}
    objs["errors/zz-good"] = lines(doc(change("INSERT", "ok", 1))).encode()
    ddb = FakeDdb([{"pk": {"S": "ok"}, "qty": {"N": "1"}}])
    s3, kin = FakeS3(objs), FakeKinesis()
    res = R.replay(cfg_for(mode), fake_aws(s3, kin, ddb), sleep=lambda s: None)
    assert s3.deleted == ["errors/zz-good"] and len(kin.accepted) == 1  # nothing of a refused object is sent
    failed = {f["object"].split("/")[1]: f["reason"] for f in res.failed}
    assert set(failed) == set(planted) and all(r.startswith("record 1 refused: ") for r in failed.values())
    assert "'someone-elses' is not this stack's source table 'shop'" in failed["other_table"]
    assert "are not the table's key ['pk']" in failed["other_key"]
    assert "not of the key's type S" in failed["wrong_type"]
    assert "NewImage does not hold the record's key" in failed["image_elsewhere"]
    assert "after the record reached Firehose" in failed["future"]
    assert "eventSource 'evil:injector'" in failed["foreign_source"]


def _members(first: bytes, block: bytes, n: int) -> bytes:
    """GZIP of ``first`` then ``n`` times ``block``, as concatenated members (what gzip -d reads
    as one stream): a thousand-fold expansion built in a fraction of a second."""
    member = gzip.compress(block, compresslevel=9)
    return gzip.compress(first) + member * n


def _bomb() -> bytes:
    """About 1 MB of GZIP expanding to 1 GiB of zeros (not JSON at all)."""
    return _members(b"", b"\0" * (16 * 1024 * 1024), 64)


def _whitespace_bomb() -> bytes:
    """A valid first document, then 1 GiB of blank lines: read on until the size cap."""
    return _members(lines(doc(change("INSERT", "a", 1))).encode(), b"\n" * (16 * 1024 * 1024), 64)


@pytest.mark.parametrize("bomb", [_bomb, _whitespace_bomb], ids=["zeros", "blank-lines"])
def test_a_gzip_bomb_is_skipped_within_200_mb_of_memory(bomb):
    import tracemalloc

    body = bomb()
    assert 0.9 * 1024 * 1024 < len(body) <= 1.1 * 1024 * 1024
    objs = {"errors/bomb": body, "errors/good": lines(doc(change("INSERT", "a", 1))).encode()}
    ddb = FakeDdb([{"pk": {"S": "a"}, "qty": {"N": "1"}}])
    tracemalloc.start()
    try:
        listing = F.list_errors(FakeS3(objs), "b", "errors/")
        s3 = FakeS3(objs)
        res = R.replay(cfg_for(), fake_aws(s3, FakeKinesis(), ddb), sleep=lambda s: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * 1024 * 1024, f"peak {peak / 2**20:.0f} MiB"
    assert [b["object"] for b in listing.bad] == ["errors/bomb"] and listing.records == 1
    assert [f["object"] for f in res.failed] == ["errors/bomb"] and s3.deleted == ["errors/good"]
    reason = res.failed[0]["reason"]
    assert ("not JSON" in reason) if bomb is _bomb else ("larger than" in reason)


def test_terminal_text_escapes_control_and_format_characters():
    assert F.safe("\x1b[2J\x1b]0;owned\x07ok") == "\\x1b[2J\\x1b]0;owned\\x07ok"
    assert F.safe("caf\u00e9 \u202eevil\u2028x\x7f") == "caf\u00e9 \\u202eevil\\u2028x\\x7f"
    assert F.safe({"k": "\x00"}) == "{'k': '\\x00'}"


@pytest.mark.parametrize("chunk", [7, 1024, 256 * 1024])
def test_gzip_members_are_read_whole_at_any_chunk_size(monkeypatch, chunk):
    """Concatenated GZIP members, a member ending inside a read, output held back by the chunk
    limit: every byte comes out once; a cut anywhere in a member is reported as truncated."""
    monkeypatch.setattr(F, "CHUNK", chunk)
    parts = [bytes(range(256)) * 9, b"", b"x" * 70_000, lines(doc(change("INSERT", "a", 1))).encode()]
    body = b"".join(gzip.compress(p) for p in parts)
    assert b"".join(F.body_chunks(io.BytesIO(body))) == b"".join(parts)
    for cut in (len(body) - 5, len(gzip.compress(parts[0])) + 11):
        with pytest.raises(F.BadObject, match="truncated GZIP|corrupt GZIP"):
            b"".join(F.body_chunks(io.BytesIO(body[:cut])))
