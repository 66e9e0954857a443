"""`errors` and `errors replay` on the sandbox, with planted objects in the stack's error bucket
(the commands refuse before `up`, so the pipeline is made first): a bad object is reported, skipped and left in place with exit 1; escape
sequences from error objects never reach the terminal; replay holds the stack lock."""

from __future__ import annotations

import base64
import json

import pytest

ACCOUNT = "123456789012"


PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"


def plant(stack, objects: dict[str, bytes]) -> str:
    """`up` (errors needs create-firehose), then the objects in the error bucket it made."""
    stack.write(extra=PIPELINE)
    stack.cli("up")
    bucket = f"{stack.name}-err-{ACCOUNT}-us-east-1"
    s3 = stack.client("s3")
    s3.head_bucket(Bucket=bucket)
    for k, body in objects.items():
        s3.put_object(Bucket=bucket, Key=k, Body=body)
    return bucket


def error_doc(message: str, raw: bytes) -> bytes:
    return json.dumps({"attemptsMade": 1, "arrivalTimestamp": 1714564800000, "errorCode": "Lambda.ProcessingFailedStatus",
                       "errorMessage": message, "rawData": base64.b64encode(raw).decode()}).encode() + b"\n"


@pytest.mark.sandbox
def test_a_bad_object_is_reported_and_kept_and_escapes_never_reach_the_terminal(stack):
    evil = "\x1b]0;pwned\x07\x1b[2Jboom"
    bucket = plant(stack, {"errors/a-bad": b"<html>not json</html>",
                           "errors/b-evil": error_doc(evil, f"not a change {evil}".encode())})
    r = stack.cli("errors", ok=False)
    assert r.exit_code == 1
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    assert "\\x1b]0;pwned" in r.stdout  # the message, shown escaped (the example is JSON: \\u001b)
    assert "errors/a-bad" in r.stderr and "not JSON" in r.stderr
    doc = stack.json("errors", ok=False)
    assert doc["records"] == 1 and [b["object"] for b in doc["unreadable_objects"]] == ["errors/a-bad"]
    assert doc["error"]["code"] == "unreadable"

    r = stack.cli("errors", "replay", ok=False)  # neither object can be replayed: both kept
    assert r.exit_code == 1 and "\x1b" not in r.stdout + r.stderr
    keys = [o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["errors/a-bad", "errors/b-evil"]


@pytest.mark.sandbox
def test_replay_holds_the_stack_lock(stack):
    from s3tstream.state import StateStore

    bucket = plant(stack, {"errors/x": b"junk"})
    held = StateStore(stack.state_path, stack.name, "us-east-1")
    held.lock("errors replay")  # another replay (or up, down, backfill) is running
    try:
        r = stack.cli("errors", "replay", "--output", "json", ok=False)
    finally:
        held.unlock()
    assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "locked"
    assert [o["Key"] for o in stack.client("s3").list_objects_v2(Bucket=bucket)["Contents"]] == ["errors/x"]
    doc = stack.json("errors", "replay", ok=False)  # once the lock is free, replay runs (and keeps the junk)
    assert doc["failed"][0]["object"] == "errors/x" and doc["deleted_objects"] == 0
