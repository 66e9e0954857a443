"""Safe on a shared account (issue 13), through the CLI on the sandbox: the stack id tells two
folders with the same stack name apart, `down` deletes only what live tags prove is this
stack's, and the account-wide S3 Tables integration outlives a stack's `down`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import StackEnv, teardown
from tests.test_grants import ensure_integration

LF_OK = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"


def twin(stack: StackEnv, where: Path, name: str | None = None) -> StackEnv:
    """Another folder with its own state file; the same stack name unless given one."""
    where.mkdir()
    env = StackEnv(dir=where, endpoint_url=stack.endpoint_url, name=name or stack.name, extra=stack.extra)
    env.write()
    return env


@pytest.mark.sandbox
def test_a_second_folder_with_the_same_stack_name_is_refused_before_any_change(stack: Any, tmp_path: Path,
                                                                               calls: Any) -> None:
    stack.write(extra=LF_OK)
    stack.cli("up")
    first_id = stack.state()["stack_id"]
    other = twin(stack, tmp_path / "other")

    calls.clear()
    r = other.cli("up", ok=False)
    text = " ".join(r.output.split())
    assert r.exit_code == 2, r.output
    assert first_id in text and f"s3tstream:stack={stack.name}" in text  # whose they are
    assert "nothing was changed" in text
    assert calls.mutating() == [], calls.mutating()
    assert not other.state_path.exists()  # refused: no state written

    plan = other.json("plan", ok=False)
    assert plan["error"]["code"] == "plan"
    assert any(c["action"] == "conflict" and first_id in c["detail"] for c in plan["changes"])
    assert other.last.exit_code == 2
    assert calls.mutating() == []

    # the first folder's stack is untouched
    status = stack.json("status")
    assert {r["live"] for r in status["resources"]} == {"present"}, status


@pytest.mark.sandbox
def test_an_untagged_table_named_by_a_forged_state_record_survives_down(stack: Any) -> None:
    ddb = stack.client("dynamodb")
    victim = f"{stack.name}-someone-elses"
    other_stack = f"{stack.name}-other-table"
    for name, tags in ((victim, []), (other_stack, [{"Key": "s3tstream:stack", "Value": stack.name},
                                                    {"Key": "s3tstream:stack-id", "Value": "0123456789abcdef"}])):
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST", **({"Tags": tags} if tags else {}))
    forged = {"version": 2, "stack": stack.name, "stack_id": "fedcba9876543210", "account": "123456789012",
              "region": "us-east-1", "resources": [
                  {"step": "create-source", "kind": "dynamodb-table", "name": n, "ownership": "owned",
                   "status": "present"} for n in (victim, other_stack)]}
    stack.state_path.parent.mkdir(parents=True, exist_ok=True)
    stack.state_path.write_text(json.dumps(forged))
    try:
        doc = stack.json("down", "--yes")
        assert doc["deleted"] == []
        kept = {c["name"]: c["detail"] for c in doc["kept"]}
        assert "carries no tag of this stack" in kept[victim]
        assert "0123456789abcdef" in kept[other_stack]
        assert {victim, other_stack} <= set(ddb.list_tables()["TableNames"])
        assert stack.state()["resources"] == []
    finally:
        for n in (victim, other_stack):
            ddb.delete_table(TableName=n)


@pytest.mark.sandbox
def test_the_shared_integration_outlives_one_stacks_down(stack: Any, tmp_path: Path) -> None:
    ensure_integration(stack, False)  # stack a makes the account's integration, stack b adopts it
    b = twin(stack, tmp_path / "b", name=stack.name + "b")
    try:
        stack.write(extra=LF_OK)
        b.write(extra=LF_OK)
        stack.cli("up")
        b.cli("up")
        shared = [c for c in stack.json("plan")["changes"] if c["shared"]]
        assert {c["kind"] for c in shared} == {"s3tables-analytics-integration", "lf-data-lake-admin"}
        assert "(shared by the account)" in stack.cli("plan", "--verbose").stdout

        doc = stack.json("down", "--yes")
        kept = {c["kind"]: c for c in doc["kept"] if c["shared"]}
        assert kept["s3tables-analytics-integration"]["action"] == "keep"
        assert stack.client("glue").get_catalog(CatalogId="s3tablescatalog")
        status = b.json("status")
        assert {r["live"] for r in status["resources"]} == {"present"}, status
        ins = b.json("test-insert", "--count", "4", "--interval", "0.01", "--timeout", "60")
        assert ins["passed"] is True

        # --include-shared still keeps it while another table bucket (b's) uses the integration
        doc = stack.json("down", "--yes", "--include-shared")
        assert "still used by table bucket(s)" in doc["kept"][0]["detail"] and b.name in doc["kept"][0]["detail"]
        assert {r["live"] for r in b.json("status")["resources"]} == {"present"}
        b.cli("down", "--yes", "--purge-errors")
        stack.json("down", "--yes", "--include-shared")
        with pytest.raises(stack.client("glue").exceptions.EntityNotFoundException):
            stack.client("glue").get_catalog(CatalogId="s3tablescatalog")
    finally:
        teardown(b)
        stack.purge()
        ensure_integration(stack, True)


@pytest.mark.sandbox
def test_a_state_from_before_stack_ids_adopts_one_for_what_its_live_tags_name(stack: Any, calls: Any) -> None:
    stack.cli("step", "create-source")
    stack.cli("step", "create-stream")
    ddb, kin = stack.client("dynamodb"), stack.client("kinesis")
    table_arn = ddb.describe_table(TableName=stack.name)["Table"]["TableArn"]
    # as an older s3tstream left it: no stack id in the state, only the stack-name tag
    doc = stack.state()
    del doc["stack_id"]
    stack.state_path.write_text(json.dumps(doc))
    ddb.untag_resource(ResourceArn=table_arn, TagKeys=["s3tstream:stack-id"])
    kin.remove_tags_from_stream(StreamName=f"{stack.name}-changes", TagKeys=["s3tstream:stack-id"])

    calls.clear()
    stack.cli("step", "create-source")
    new_id = stack.state()["stack_id"]
    assert new_id and new_id != doc.get("stack_id")
    tags = {t["Key"]: t["Value"] for t in ddb.list_tags_of_resource(ResourceArn=table_arn)["Tags"]}
    assert tags["s3tstream:stack-id"] == new_id and tags["s3tstream:stack"] == stack.name
    assert calls.mutating() == ["dynamodb:TagResource"]
    # the stream (not part of that run) still names the stack alone: `down` still removes it
    out = stack.json("down", "--yes")
    assert {c["kind"] for c in out["deleted"]} >= {"kinesis-stream", "dynamodb-table"}, out
