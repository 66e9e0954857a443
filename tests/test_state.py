"""State store: atomic writes, the lock, and refusal of files it must not use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from s3tstream.errors import LockedError, StateError
from s3tstream.state import STATE_VERSION, StateStore


def store(tmp_path, stack="orders", region="us-east-1"):
    return StateStore(tmp_path / ".s3tstream" / f"{stack}.json", stack, region)


def test_record_is_saved_at_once_and_reloads(tmp_path):
    s = store(tmp_path)
    s.record("create-source", "dynamodb-table", "orders", status="creating")
    raw = json.loads(s.path.read_text())
    assert raw["version"] == STATE_VERSION
    assert raw["resources"][0]["status"] == "creating"
    s.record("create-source", "dynamodb-table", "orders", status="present", id="arn:x", outputs={"a": 1})
    s.record("create-source", "dynamodb-table", "orders", outputs={"b": 2})
    again = store(tmp_path)
    r = again.get("dynamodb-table", "orders")
    assert (r.status, r.id, r.outputs) == ("present", "arn:x", {"a": 1, "b": 2})
    again.drop("dynamodb-table", "orders")
    assert store(tmp_path).is_empty()


def test_write_is_atomic_no_temp_files_left(tmp_path):
    s = store(tmp_path)
    for i in range(20):
        s.record("s", "k", f"n{i}")
    files = sorted(p.name for p in s.path.parent.iterdir())
    assert files == ["orders.json"]
    assert oct(s.path.stat().st_mode & 0o777) == "0o600"


def test_crash_mid_write_keeps_previous_document(tmp_path, monkeypatch):
    s = store(tmp_path)
    s.record("s", "k", "first")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        s.record("s", "k", "second")
    monkeypatch.undo()
    assert [r.name for r in store(tmp_path).doc.resources] == ["first"]


@pytest.mark.parametrize("content,words", [
    ("{not json", "corrupt"),
    ("[]", "not a JSON object"),
    ('{"version": 1, "stack": "orders", "region": "us-east-1", "resources": [{"step": 1}]}', "corrupt"),
    ('{"version": 99, "stack": "orders", "region": "us-east-1"}', "version 99"),
    ('{"version": "1", "stack": "orders", "region": "us-east-1"}', "version '1'"),
    ('{"version": 1, "stack": "other", "region": "us-east-1"}', "belongs to stack 'other'"),
    ('{"version": 1, "stack": "orders", "region": "eu-west-1"}', "records Region eu-west-1"),
])
def test_bad_state_files_are_refused_and_left_alone(tmp_path, content, words):
    p = tmp_path / ".s3tstream" / "orders.json"
    p.parent.mkdir()
    p.write_text(content)
    with pytest.raises(StateError) as ei:
        store(tmp_path)
    assert words in ei.value.message
    assert ei.value.exit_code == 2
    assert p.read_text() == content


def test_other_account_is_refused(tmp_path):
    s = store(tmp_path)
    s.set_account("111111111111")
    s.save()  # a new stack's file is written with its first change
    s2 = store(tmp_path)
    s2.check_account("111111111111")
    with pytest.raises(StateError) as ei:
        s2.check_account("222222222222")
    assert "account 111111111111" in ei.value.message


def test_lock_is_exclusive_and_names_the_holder(tmp_path):
    s = store(tmp_path)
    s.lock("up")
    other = store(tmp_path)
    with pytest.raises(LockedError) as ei:
        other.lock("down")
    assert f"pid {os.getpid()}" in ei.value.message and "command up" in ei.value.message
    assert ei.value.exit_code == 2
    s.unlock()
    other.lock("down")
    other.unlock()


def test_lock_held_by_another_process_fails_at_once(tmp_path):
    path = tmp_path / ".s3tstream" / "orders.json"
    code = textwrap.dedent(f"""
        import sys, time
        from s3tstream.state import StateStore
        s = StateStore({str(path)!r}.__class__({str(path)!r}), "orders", "us-east-1")
        s.lock("up")
        print("locked", flush=True)
        sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code.replace(f"{str(path)!r}.__class__", "__import__('pathlib').Path")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError) as ei:
            store(tmp_path).lock("up")
        assert f"pid {p.pid}" in ei.value.message
    finally:
        p.stdin.close()
        p.wait(timeout=10)
    # the holder died: the lock is free again
    store(tmp_path).lock("up")


def test_job_checkpoints_live_in_the_state_file_beside_the_resources(tmp_path):
    from s3tstream.state import StateStore

    path = tmp_path / "s.json"
    st = StateStore(path, "shop", "us-east-1")
    st.record("create-source", "dynamodb-table", "shop", status="present")
    st.save_job("backfill", {"phase": "scan", "segment_state": [{"lek": {"pk": {"S": "a"}}, "done": False}]})
    again = StateStore(path, "shop", "us-east-1")
    assert again.job("backfill")["segment_state"][0]["lek"] == {"pk": {"S": "a"}} and again.job("other") is None
    copy = again.job("backfill")
    copy["phase"] = "changed"  # a copy: the store changes only through save_job
    assert again.job("backfill")["phase"] == "scan"
    again.drop_job("backfill")
    assert StateStore(path, "shop", "us-east-1").doc.jobs == {} and [r.name for r in again.doc.resources] == ["shop"]


def test_a_version_1_file_is_read_and_saved_as_version_2(tmp_path):
    import json

    from s3tstream.state import STATE_VERSION, StateStore

    path = tmp_path / "s.json"
    path.write_text(json.dumps({"version": 1, "stack": "shop", "region": "us-east-1", "resources": [
        {"step": "create-source", "kind": "dynamodb-table", "name": "shop", "status": "present"}]}))
    st = StateStore(path, "shop", "us-east-1")
    assert [r.name for r in st.doc.resources] == ["shop"] and st.doc.jobs == {}
    st.save_job("backfill", {"phase": "scan"})
    raw = json.loads(path.read_text())
    assert STATE_VERSION == 2 and raw["version"] == 2 and raw["jobs"] == {"backfill": {"phase": "scan"}}
