"""The state in S3 (`[stack] state = "s3://..."`): locking with conditional writes, two folders
sharing one stack, pull/push/unlock, and `state recover` after a lost state. Through the CLI on
the sandbox (and the sandbox's conditional writes themselves)."""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import StackEnv, teardown

PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"


@pytest.fixture
def state_bucket(sandbox: Any) -> Any:
    from tests.conftest import boto_client

    s3 = boto_client(sandbox.endpoint_url, "s3")
    name = f"s3tstate-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    for o in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=o["Key"])
    s3.delete_bucket(Bucket=name)


def _shared(stack: StackEnv, bucket: str, pipeline: bool = False) -> str:
    """The stack's config with stack.state in S3 (the [stack] table is written by StackEnv)."""
    uri = f"s3://{bucket}/team/"
    text = stack.config_path.read_text().replace("[stack]\n", f'[stack]\nstate = "{uri}"\n', 1)
    if pipeline:
        text += PIPELINE
    stack.config_path.write_text(text)
    return uri


def _twin(stack: StackEnv, root: Path) -> StackEnv:
    """A second folder with the same config (a teammate's checkout)."""
    root.mkdir()
    other = StackEnv(dir=root, endpoint_url=stack.endpoint_url, name=stack.name)
    shutil.copy(stack.config_path, other.config_path)
    return other


def _backend(stack: StackEnv, bucket: str) -> Any:
    from s3tstream.aws.remote_state import S3Backend

    return S3Backend(stack.client("s3"), f"s3://{bucket}/team/", stack.name)


# ------------------------------------------------------------------ the sandbox's conditional writes
@pytest.mark.sandbox
def test_sandbox_conditional_writes_answer_412_like_s3(stack: StackEnv, state_bucket: str) -> None:
    s3 = stack.client("s3")
    first = s3.put_object(Bucket=state_bucket, Key="k", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=state_bucket, Key="k", Body=b"2", IfNoneMatch="*")
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    second = s3.put_object(Bucket=state_bucket, Key="k", Body=b"2", IfMatch=first["ETag"])
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=state_bucket, Key="k", Body=b"3", IfMatch=first["ETag"])  # stale ETag
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=state_bucket, Key="k", IfMatch=first["ETag"])
    assert e.value.response["Error"]["Code"] == "PreconditionFailed"
    s3.delete_object(Bucket=state_bucket, Key="k", IfMatch=second["ETag"])
    assert "Contents" not in s3.list_objects_v2(Bucket=state_bucket)


@pytest.mark.sandbox
def test_sandbox_exactly_one_of_concurrent_if_none_match_writes_wins(stack: StackEnv, state_bucket: str) -> None:
    import boto3
    from botocore.config import Config

    results: list[str] = []

    def race(i: int) -> None:
        c = boto3.client("s3", region_name="us-east-1", endpoint_url=stack.endpoint_url,
                         config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}))
        try:
            c.put_object(Bucket=state_bucket, Key="lock", Body=str(i).encode(), IfNoneMatch="*")
            results.append("won")
        except ClientError as e:
            results.append(e.response["Error"]["Code"])

    threads = [threading.Thread(target=race, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("won") == 1 and set(results) <= {"won", "PreconditionFailed", "ConditionalRequestConflict"}


# ------------------------------------------------------------------ the backend
@pytest.mark.sandbox
def test_lock_is_refused_naming_the_holder_and_unlock_removes_only_its_own(stack: StackEnv, state_bucket: str) -> None:
    from s3tstream.errors import LockedError

    _shared(stack, state_bucket)
    a, b = _backend(stack, state_bucket), _backend(stack, state_bucket)
    a.lock(stack.name, "up (teammate)")
    with pytest.raises(LockedError) as e:
        b.lock(stack.name, "up")
    assert "command up (teammate)" in e.value.message and "state unlock" in e.value.hint
    b.unlock()  # never held: nothing removed
    assert a.holder()[0]["command"] == "up (teammate)"
    a.unlock()
    assert a.holder() == ({}, None)


@pytest.mark.sandbox
def test_a_save_after_someone_else_saved_is_refused(stack: StackEnv, state_bucket: str) -> None:
    from s3tstream.errors import StateError
    from s3tstream.state import StateStore

    _shared(stack, state_bucket)
    a = StateStore(stack.state_path, stack.name, "us-east-1", _backend(stack, state_bucket))
    a.record("create-source", "dynamodb-table", "x", status="present")  # creates the object (If-None-Match)
    b = StateStore(stack.state_path, stack.name, "us-east-1", _backend(stack, state_bucket))
    b.record("create-source", "dynamodb-table", "y", status="present")  # If-Match: the ETag b read
    with pytest.raises(StateError) as e:
        a.record("create-source", "dynamodb-table", "z", status="present")  # a's ETag is stale
    assert "changed by another run" in e.value.message
    again = StateStore(stack.state_path, stack.name, "us-east-1", _backend(stack, state_bucket))
    assert [r.name for r in again.doc.resources] == ["x", "y"]
    assert not stack.state_path.exists()  # nothing local


# ------------------------------------------------------------------ through the CLI
@pytest.mark.sandbox
def test_two_folders_sharing_an_s3_state_see_one_stack_and_a_concurrent_up_is_refused(
        stack: StackEnv, state_bucket: str, tmp_path: Path, calls: Any) -> None:
    _shared(stack, state_bucket, pipeline=True)
    other = _twin(stack, tmp_path / "teammate")
    try:
        stack.cli("up")
        assert not stack.state_path.exists()  # the state went to S3
        mine = {(r["kind"], r["name"]) for r in stack.json("status")["resources"]}
        theirs = {(r["kind"], r["name"]) for r in other.json("status")["resources"]}
        assert mine == theirs and ("dynamodb-table", stack.name) in theirs
        # the teammate's up finds nothing to do: the same stack, not a second one
        assert all(c["action"] == "none" for c in other.json("plan")["changes"])

        # a run holds the lock: the other folder's `up` is refused naming it, nothing changed
        holder = _backend(stack, state_bucket)
        holder.lock(stack.name, "up (alice's laptop)")
        calls.clear()
        r = other.cli("up", ok=False)
        text = " ".join(r.output.split())
        assert r.exit_code == 2 and "command up (alice's laptop)" in text and "s3tstream state unlock" in text
        assert [c for c in calls.mutating() if not c.startswith("s3:PutObject")] == []

        # the holder died: `state unlock` names it and breaks the lock; then `up` runs
        out = other.json("state", "unlock", "--yes")
        assert out["unlocked"] is True and out["holder"]["command"] == "up (alice's laptop)"
        other.cli("up")
        assert holder.holder() == ({}, None)  # released at the end of the run
    finally:
        stack.cli("down", "--yes", "--purge-errors", ok=None)


@pytest.mark.sandbox
def test_push_then_pull_move_the_state_between_local_and_s3(stack: StackEnv, state_bucket: str, tmp_path: Path) -> None:
    from s3tstream.state import StateStore

    local = StateStore(stack.state_path, stack.name, "us-east-1")
    local.record("create-source", "dynamodb-table", "only-in-state", status="present")  # no AWS resource
    uri = _shared(stack, state_bucket)
    pushed = stack.json("state", "push")
    assert pushed["to"] == f"{uri}{stack.name}.json"
    assert stack.json("state", "push")["bytes"] > 0  # the same content again: fine
    # a teammate pulls it into an empty folder
    other = _twin(stack, tmp_path / "teammate")
    other.json("state", "pull")
    assert [r["name"] for r in other.state()["resources"]] == ["only-in-state"]
    # the remote one changes; pulling over a different local state needs --force
    StateStore(other.state_path, stack.name, "us-east-1", _backend(stack, state_bucket)).record(
        "create-source", "dynamodb-table", "second", status="present")
    r = other.cli("state", "pull", ok=False)
    assert r.exit_code == 2 and "--force" in " ".join(r.output.split())
    other.cli("state", "pull", "--force")
    assert [r["name"] for r in other.state()["resources"]] == ["only-in-state", "second"]
    # pushing a different local state over it needs --force as well
    r = stack.cli("state", "push", ok=False)
    assert r.exit_code == 2 and "--force" in " ".join(r.output.split())
    stack.state_path.unlink()


@pytest.mark.sandbox
def test_state_commands_need_stack_state_set(stack: StackEnv) -> None:
    for args in (("state", "pull"), ("state", "push"), ("state", "unlock", "--yes")):
        r = stack.cli(*args, ok=False)
        assert r.exit_code == 2 and "stack.state" in " ".join(r.output.split())


def test_stack_state_must_be_an_s3_uri(tmp_path: Path) -> None:
    from s3tstream.config import model as config
    from s3tstream.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        config.build({"stack": {"name": "a", "state": "/tmp/x"}})
    assert "stack.state" in str(e.value.problems)
    cfg = config.build({"stack": {"name": "a", "state": "s3://my-bucket/teams/x"}})
    assert cfg.stack.state == "s3://my-bucket/teams/x/"


# ------------------------------------------------------------------ recover
@pytest.mark.sandbox
def test_recover_after_a_lost_state_then_down_leaves_nothing(stack: StackEnv) -> None:
    from tests.support.inventory import inventory, leftovers

    # the account's integration is there before the stack (so `down` has nothing shared to keep)
    from tests.test_integration_modes import _control

    _control(stack.endpoint_url, "lakeformation/bootstrap", {})
    stack.write(extra=PIPELINE)
    stack.cli("up")
    before = {(r["kind"], r["name"], r["ownership"]) for r in stack.state()["resources"]}
    stack.state_path.unlink()  # the laptop is lost
    doc = stack.json("state", "recover")
    after = {(r["kind"], r["name"], r["ownership"]) for r in stack.state()["resources"]}
    # shared, account-wide things are recovered as adopted (nothing proves this stack made them)
    shared = ("s3tables-analytics-integration", "lf-data-lake-admin")
    owned_before = {x for x in before if x[2] == "owned" and x[0] not in shared}
    assert owned_before <= after, sorted(owned_before - after)
    assert any(x[0] == "lf-grant" for x in owned_before)
    assert any(r["action"] == "owned" for r in doc["resources"])
    assert stack.json("plan")["changes"] and all(c["action"] == "none" for c in stack.json("plan")["changes"])
    r = stack.cli("state", "recover", ok=False)  # a state that is there is not overwritten
    assert r.exit_code == 2 and "recover only rebuilds a lost state" in " ".join(r.output.split())
    stack.cli("down", "--yes", "--purge-errors")
    assert leftovers(inventory(stack.endpoint_url, stack.name)) == {}
    teardown(stack)


@pytest.mark.sandbox
def test_recover_owns_an_integration_the_stack_made(stack: StackEnv) -> None:
    from tests.test_integration_modes import _control

    glue, lf = stack.client("glue"), stack.client("lakeformation")
    for drop in (lambda: glue.delete_catalog(CatalogId="s3tablescatalog"),
                 lambda: lf.deregister_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*")):
        try:
            drop()
        except ClientError:
            pass
    try:
        stack.write(extra=PIPELINE)
        stack.cli("up")  # integrate = true: this stack makes the account's integration
        stack.state_path.unlink()
        rows = {r["kind"]: r for r in stack.json("state", "recover")["resources"]}
        integ = rows["s3tables-analytics-integration"]
        assert integ["action"] == "owned" and "Lake Formation role is this stack's" in integ["detail"]
        rec = next(r for r in stack.state()["resources"] if r["kind"] == "s3tables-analytics-integration")
        assert rec["outputs"]["role_name"] == f"s3tstream-{stack.name}-s3tables-lf" and rec["outputs"]["registered"]
    finally:
        teardown(stack)
        _control(stack.endpoint_url, "lakeformation/bootstrap", {})  # the account as other tests expect it


def _stubbed() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return s3, Stubber(s3)


def test_a_409_conditional_request_conflict_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    from s3tstream.aws import remote_state

    monkeypatch.setattr(remote_state.time, "sleep", lambda s: None)
    s3, stub = _stubbed()
    stub.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
    stub.add_response("put_object", {"ETag": '"e1"'})
    with stub:
        b = remote_state.S3Backend(s3, "s3://b/p/", "orders")
        b.lock("orders", "up")
    stub.assert_no_pending_responses()
    assert b._lock_etag == '"e1"'


def test_state_unlock_does_not_remove_a_lock_taken_meanwhile() -> None:
    import io

    from botocore.response import StreamingBody

    from s3tstream.aws import remote_state
    from s3tstream.errors import LockedError

    s3, stub = _stubbed()
    body = b'{"command": "up", "host": "dead"}'
    stub.add_response("get_object", {"ETag": '"old"', "Body": StreamingBody(io.BytesIO(body), len(body))},
                      {"Bucket": "b", "Key": "p/orders.lock"})
    stub.add_client_error("delete_object", "PreconditionFailed", http_status_code=412,
                          expected_params={"Bucket": "b", "Key": "p/orders.lock", "IfMatch": '"old"'})
    with stub, pytest.raises(LockedError) as e:
        remote_state.S3Backend(s3, "s3://b/p/", "orders").break_lock()
    assert "a new run took it" in e.value.message


@pytest.mark.sandbox
def test_a_missing_state_bucket_is_a_usage_error_before_any_change(stack: StackEnv, calls: Any) -> None:
    _shared(stack, f"s3tstate-missing-{uuid.uuid4().hex[:8]}", pipeline=True)
    r = stack.cli("up", ok=False)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "does not exist" in text and "stack.state" in text
    assert calls.mutating() == []
