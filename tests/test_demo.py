"""`s3tstream demo` (what `make demo` runs), as a user runs it: a subprocess with its own sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_runs_end_to_end_and_leaves_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["COLUMNS"] = "200"
    r = subprocess.run(
        [sys.executable, "-m", "s3tstream", "demo", "--dir", str(tmp_path / "demo"), "--items", "40"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    # the query's rows, with list values shown as data, not swallowed as markup
    assert "order-0000" in out and "[demo, red]" in out and '{"coupon":"C0"}' in out
    # the 40 items were written before the stream existed: only the backfill brings them
    assert "backfill complete: 40 item(s) read, 40 sent" in out
    assert "OK: 40 item(s) and 40 row(s) match" in out  # 40 put; test-insert removed its items
    assert "PASS: 20 insert(s), 5 update(s), 5 delete(s)" in out
    assert "freshness: Firehose's DeliveryToIceberg.DataFreshness peaked at" in out
    assert "s3tstream health demo  HEALTHY" in out
    assert "deleted 22 resource(s); kept 0" in out
    # the sandbox it started is gone
    home = tmp_path / "demo" / ".s3tstream"
    assert not (home / "sandbox.json").exists()
    state = json.loads((home / "demo.json").read_text())
    assert state["resources"] == []
