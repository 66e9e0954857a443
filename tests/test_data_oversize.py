"""Change records the tool writes are UTF-8 JSON; a record over Kinesis' limit is reported by key,
counted, makes the command exit 1, and the others are still sent (sandbox, one stack):

- a legal 380 KB item of accented text (1.1 MB as ASCII-escaped JSON) is backfilled;
- a legal item of 300 KB of control characters (JSON escapes each in 6 bytes: 1.8 MB) cannot be
  sent: `backfill` and `verify --repair` name its key and exit 1, and send the others.
"""

from __future__ import annotations

import json
import uuid

import pytest

from s3tstream.sandbox import client as sc

PIPELINE = ("[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"
            "[backfill]\nitems_per_second = 0\n")
COLUMNS = '{ name = "pk", type = "string", required = true }, { name = "text", type = "string" }'
ACCENTED = "é" * (190 * 1024)  # 380 KB in UTF-8
CONTROL = "\x01" * (300 * 1024)


def lake_table(stack):
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config
    from s3tstream.lake.catalog import S3TablesCatalog
    from s3tstream.lake.query import bucket_arn

    cfg = config.load(stack.config_path)
    aws = Aws(cfg)
    return S3TablesCatalog.for_stack(aws, bucket_arn(cfg, aws)).load_table((cfg.names.namespace, cfg.names.table))


def lake_text(stack) -> dict[str, int]:
    rows = lake_table(stack).scan().to_arrow().to_pylist()
    return {r["pk"]: len(r["text"] or "") for r in rows}


@pytest.mark.sandbox
def test_backfill_and_repair_send_utf8_and_report_an_over_size_record_by_key(stack, monkeypatch):
    from pyiceberg.expressions import EqualTo

    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
    ddb = stack.client("dynamodb")
    ddb.create_table(TableName=stack.name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    for pk, text in (("small", "ok"), ("accented", ACCENTED), ("huge", CONTROL)):
        ddb.put_item(TableName=stack.name, Item={"pk": {"S": pk}, "text": {"S": text}})  # before the stream exists
    assert len(json.dumps(ACCENTED).encode()) > 1024 * 1024  # what the ASCII-escaped record used to carry
    stack.write(extra=PIPELINE, columns=COLUMNS)
    stack.cli("up")

    r = stack.cli("backfill", "--output", "json", ok=False)
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["error"]["code"] == "oversize", doc
    assert doc["items_read"] == 3 and doc["items_sent"] == 2 and doc["skipped_oversize"] == 1
    [skipped] = doc["skipped"]
    assert skipped["keys"] == {"pk": "huge"} and skipped["bytes"] > 1.5 * 1024 * 1024 and "record limit" in skipped["reason"]
    sc.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=60)
    assert lake_text(stack) == {"small": 2, "accented": len(ACCENTED)}  # the accented item arrived whole

    v = json.loads(stack.cli("verify", "--settle", "0", "--output", "json", ok=False).stdout)
    assert v["counts"]["missing"] == 1 and v["examples"]["missing"] == [{"pk": "huge"}]

    lake_table(stack).delete(EqualTo("pk", "accented"))  # lost: repair must send it (380 KB, UTF-8) again
    r = stack.cli("verify", "--repair", "--settle", "0", "--output", "json", ok=False)
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["counts"]["missing"] == 2
    rep = doc["repair"]
    assert rep["sent"] == 1 and [o["keys"] for o in rep["not_sent"]] == [{"pk": "huge"}]
    assert any("could not be repaired" in n for n in doc["notes"])
    sc.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=60)
    assert lake_text(stack) == {"small": 2, "accented": len(ACCENTED)}
    r = stack.cli("verify", "--settle", "0", "--output", "json", ok=False)
    assert json.loads(r.stdout)["examples"]["missing"] == [{"pk": "huge"}]
