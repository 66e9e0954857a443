"""control.start/stop/status with a real background process (one test: it takes a second or two)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import boto3
import pytest
from botocore.config import Config

from s3tstream.sandbox import control, instances


def test_start_status_stop_background_sandbox(tmp_path, monkeypatch, _fake_aws_env):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # this user's registry, for this test
    home = tmp_path / "home"
    assert control.status(home) is None
    assert control.stop(home) is False

    info = control.start(home, port=0, latency="instant", delivery="chaos", seed=3)
    try:
        # --delivery/--seed reach the process, and the record keeps them
        from s3tstream.sandbox import client as sbc

        assert sbc.call(info["endpoint_url"], "GET", "firehose/delivery") == {"mode": "chaos", "seed": 3}
        assert (info["delivery"], info["seed"]) == ("chaos", 3)
        assert set(info) >= {"pid", "port", "endpoint_url"}
        assert info["endpoint_url"] == f"http://127.0.0.1:{info['port']}"
        record = json.loads((home / "sandbox.json").read_text())
        assert record["pid"] == info["pid"] and record["port"] == info["port"]

        current = control.status(home)
        assert current is not None and current["alive"] and current["responding"]
        assert current["pid"] == info["pid"]

        # the same home and port: the running sandbox is returned, nothing new is spawned
        assert control.start(home, port=info["port"], delivery="chaos", seed=3)["pid"] == info["pid"]
        # ... but not when it runs with another delivery
        with pytest.raises(control.SandboxError, match="already runs with delivery chaos"):
            control.start(home, port=info["port"])
        # another port for a home whose sandbox is running: refused
        with pytest.raises(control.SandboxError, match="already running"):
            control.start(home, port=control.free_port())
        # another home on a port that is taken: refused, naming the other sandbox
        with pytest.raises(control.SandboxError, match=r"already in use by another sandbox"):
            control.start(tmp_path / "other", port=info["port"])

        ddb = boto3.client(
            "dynamodb", region_name="us-east-1", endpoint_url=info["endpoint_url"],
            config=Config(retries={"total_max_attempts": 1}),
        )
        assert "TableNames" in ddb.list_tables()
    finally:
        stopped = control.stop(home)
    assert stopped is True
    assert not (home / "sandbox.json").exists()
    assert control.status(home) is None
    assert control.stop(home) is False
    assert "listening on" in (home / "sandbox.log").read_text()

    # a stale record (dead pid) is cleaned up by status() and by stop()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = {"pid": dead.pid, "port": 1, "endpoint_url": "http://127.0.0.1:1"}
    (home / "sandbox.json").write_text(json.dumps(stale))
    assert control.status(home) is None
    assert not (home / "sandbox.json").exists()
    (home / "sandbox.json").write_text(json.dumps(stale))
    assert control.stop(home) is False
    assert not (home / "sandbox.json").exists()

    # a port held by some other program
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(control.SandboxError, match="already in use by another program"):
            control.start(tmp_path / "third", port=holder.getsockname()[1])
    assert os.listdir(tmp_path / "third") == []


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    result.text = " ".join(result.output.split())  # the console wraps at its width
    return result


def test_the_cli_finds_this_users_sandboxes_from_any_folder(tmp_path, monkeypatch, _fake_aws_env):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("S3TSTREAM_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert _cli("sandbox", "status").exit_code == 1
    a = control.start(tmp_path / "a" / ".s3tstream", port=0)
    b = control.start(tmp_path / "b" / ".s3tstream", port=0)
    try:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        doc = json.loads(_cli("sandbox", "status", "-o", "json").stdout)
        assert doc["running"] is True and {s["port"] for s in doc["sandboxes"]} == {a["port"], b["port"]}
        assert {s["home"] for s in doc["sandboxes"]} == {str((tmp_path / d / ".s3tstream").resolve()) for d in "ab"}
        one = json.loads(_cli("sandbox", "status", "--port", str(b["port"]), "-o", "json").stdout)
        assert one["pid"] == b["pid"] and len(one["sandboxes"]) == 1
        # a stale record (its process is gone) is cleaned on the way
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        stale = instances.record_path(1)
        stale.write_text(json.dumps({"pid": dead.pid, "port": 1, "endpoint_url": "http://127.0.0.1:1", "kind": "serve"}))
        instances.token_path(1).write_text("x")
        assert len(json.loads(_cli("sandbox", "status", "-o", "json").stdout)["sandboxes"]) == 2
        assert not stale.exists() and not instances.token_path(1).exists()

        # two run: stop needs --port (usage error, nothing stopped)
        r = _cli("sandbox", "stop")
        assert r.exit_code == 2 and "--port" in r.text and "Traceback" not in r.output
        r = _cli("sandbox", "stop", "--port", str(a["port"]))
        assert r.exit_code == 0 and f"port {a['port']} stopped" in r.text
        assert control.find() is not None and control.find()["port"] == b["port"]
        assert not (tmp_path / "a" / ".s3tstream" / "sandbox.json").exists()
        assert _cli("sandbox", "status", "--port", str(a["port"])).exit_code == 1

        # starting on a taken port: one clear error, exit 1, no traceback; -o json: the error document
        r = _cli("sandbox", "start", "--port", str(b["port"]), "--home", str(tmp_path / "c"))
        assert r.exit_code == 1 and "Traceback" not in r.output
        assert f"port {b['port']}" in r.text and "already in use by another sandbox" in r.text
        r = _cli("sandbox", "start", "--port", str(b["port"]), "--home", str(tmp_path / "c"), "-o", "json")
        err = json.loads(r.stdout)["error"]
        assert r.exit_code == 1 and err["code"] == "sandbox" and "already in use" in err["message"] and err["hint"]
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            r = _cli("sandbox", "start", "--port", str(holder.getsockname()[1]), "--home", str(tmp_path / "c"))
            assert r.exit_code == 1 and "another program" in r.text and "--port" in r.text

        # the only one left: stop finds it without --port
        assert _cli("sandbox", "stop").exit_code == 0
        assert _cli("sandbox", "status").exit_code == 1
    finally:
        for home in ("a", "b"):
            control.stop(tmp_path / home / ".s3tstream")
    assert instances.records() == []
