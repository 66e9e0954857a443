"""Idempotency of the whole pipeline through the CLI: a second `up` makes no mutating call,
`plan` after `up` has nothing to do, `down` twice is clean, and `up` after `down` builds the
same stack again."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import inventory, leftovers, write_config

COLUMNS = ('{ name = "pk", type = "string", required = true }, { name = "sk", type = "long", required = true }, '
           '{ name = "amount", type = "decimal(12,2)" }')
RICH = ('[source]\nsort_key = { name = "sk", type = "N" }\npoint_in_time_recovery = true\n'
        '[stream]\nretention_hours = 48\n')


@pytest.mark.sandbox
def test_up_twice_plan_down_twice_up_again(stack, calls):
    write_config(stack, RICH, columns=COLUMNS)
    stack.cli("up")
    first = inventory(stack)
    assert first["firehose"] and first["lambda"] and first["lakeformation"]  # the whole pipeline exists

    calls.clear()
    doc = stack.json("up")
    assert calls.mutating() == [], calls.mutating()
    assert {c["action"] for c in doc["changes"]} == {"none"}, doc["changes"]

    calls.clear()
    plan = stack.json("plan")
    assert [c for c in plan["changes"] if c["action"] != "none"] == []
    assert len(plan["changes"]) == len(json.loads(stack.state_path.read_text())["resources"])
    assert "nothing to do" in stack.cli("plan").stdout
    assert calls.mutating() == []

    # --include-shared: when this test's stack made the account's integration, it goes too
    stack.cli("down", "--yes", "--include-shared")
    assert leftovers(stack) == {}
    calls.clear()
    doc = stack.json("down", "--yes")
    assert doc == {"stack": stack.name, "deleted": [], "kept": []}
    assert calls.mutating() == []
    assert "nothing to remove" in stack.cli("down", "--yes").stdout

    # up after down: the same stack again
    stack.cli("up")
    assert inventory(stack) == first

    # `query` makes the Athena results bucket (tagged, not recorded); a failed row in the error
    # bucket makes `down` keep that bucket (its only copy) and its record until --purge-errors
    stack.cli("query", f"SELECT count(*) AS n FROM {stack.name}", env={"S3TSTREAM_SANDBOX_TIME_SCALE": "0"})
    buckets = inventory(stack)["s3"]
    results = next(b for b in buckets if "-ath-" in b)
    errors = next(b for b in buckets if "-err-" in b)
    stack.client("s3").put_object(Bucket=errors, Key="errors/failed.json", Body=b"{}")
    doc = stack.json("down", "--yes", "--include-shared")
    assert [c["kind"] for c in doc["kept"] if c["action"] == "keep"] == ["error-bucket"], doc["kept"]
    assert any(c["kind"] == "s3-results-bucket" for c in doc["deleted"]), doc["deleted"]
    assert leftovers(stack) == {"s3": {errors: buckets[errors]}}
    assert [r["kind"] for r in stack.state()["resources"]] == ["error-bucket"]
    assert results not in inventory(stack)["s3"]
    stack.cli("down", "--yes", "--purge-errors")
    assert leftovers(stack) == {}
    assert stack.state()["resources"] == []


@pytest.mark.sandbox
def test_down_of_one_step_then_up_rebuilds_only_that(stack, calls):
    write_config(stack)
    stack.cli("up")
    before = inventory(stack)
    stack.cli("down", "--yes", "--step", "create-firehose")
    mid = inventory(stack)
    assert not mid["firehose"] and not mid["lambda"] and mid["dynamodb"] and mid["s3tables"]
    calls.clear()
    stack.cli("up")
    made = calls.mutating()
    assert made and not any(m.startswith(("dynamodb:Create", "kinesis:Create", "s3tables:Create")) for m in made), made
    assert inventory(stack) == before
