"""control.start/stop/status with a real background process (one test: it takes a second or two)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import boto3
import pytest
from botocore.config import Config

from s3tstream.sandbox import control


def test_start_status_stop_background_sandbox(tmp_path, _fake_aws_env):
    home = tmp_path / "home"
    assert control.status(home) is None
    assert control.stop(home) is False

    info = control.start(home, port=0, latency="instant", delivery="chaos", seed=3)
    try:
        # --delivery/--seed reach the process, and the record keeps them
        from s3tstream.sandbox import client as sbc

        assert sbc._call(info["endpoint_url"], "GET", "firehose/delivery") == {"mode": "chaos", "seed": 3}
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
