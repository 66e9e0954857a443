"""`s3tstream demo` (what `make demo` runs), as a user runs it: a subprocess with its own sandbox."""

from __future__ import annotations

import json
import os
import re
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
    # two tables, one pipeline: verify checks both (40 orders put; test-insert removed its items)
    assert "OK: all 2 tables match" in out
    assert re.search(r"orders\s*│\s*ok\s*│\s*40\s*│\s*40\s*│", out) and re.search(r"events\s*│\s*ok\s*│\s*2\s*│\s*2\s*│", out)
    # the changelog table keeps each change: event 1 twice (insert, then modify)
    assert re.search(r"│\s*1\s*│\s*ada\s*│\s*login\s*│\s*modify\s*│", out)
    assert "PASS: 20 insert(s), 5 update(s), 5 delete(s)" in out
    assert "freshness: Firehose's DeliveryToIceberg.DataFreshness peaked at" in out
    assert "s3tstream health demo  HEALTHY" in out
    assert "deleted 27 resource(s); kept 0" in out
    # the sandbox it started is gone
    home = tmp_path / "demo" / ".s3tstream"
    assert not (home / "sandbox.json").exists()
    state = json.loads((home / "demo.json").read_text())
    assert state["resources"] == []


def test_explore_lines_work_when_pasted_without_credentials(tmp_path, sandbox):
    """`demo --keep` prints lines to paste: the s3tstream ones run as printed with no AWS credentials
    in the environment (a loopback endpoint_url gets the sandbox's dummy ones), the aws ones come
    after an export line giving the aws CLI credentials and a Region."""
    import shlex
    import uuid

    from typer.testing import CliRunner

    from s3tstream.cli.app import app
    from s3tstream.cli.demo import CONFIG, Demo

    stack = "d" + uuid.uuid4().hex[:8]
    demo = Demo(tmp_path / "demo")
    demo.dir.mkdir()
    demo.config_path.write_text(CONFIG.format(stack=stack, endpoint=sandbox.endpoint_url).replace(
        'table = "demo-orders"', f'table = "{stack}-orders"').replace(
        'table = "demo-events"', f'table = "{stack}-events"'), encoding="utf-8")
    no_creds = {k: None for k in os.environ if k.startswith("AWS_")}
    hint = demo.explore_hint(sandbox.endpoint_url)
    lines = [x.strip() for x in hint.splitlines() if x.startswith("  ")]
    assert lines.index(next(x for x in lines if x.startswith("export AWS_ACCESS_KEY_ID="))) < lines.index(
        next(x for x in lines if x.startswith("aws ")))
    assert "AWS_DEFAULT_REGION=" in hint
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["step", "create-source", "--config", str(demo.config_path)], env=no_creds)
        assert r.exit_code == 0, r.output
        assert "sandbox's dummy credentials" in r.stderr
        for line in lines:
            argv = shlex.split(line)
            if argv[0] != "s3tstream" or argv[1] not in ("status", "put-item"):
                continue  # query and verify need the whole pipeline (the demo test runs them)
            r = runner.invoke(app, argv[1:], env=no_creds)
            assert r.exit_code == 0, (line, r.output)
    finally:
        runner.invoke(app, ["down", "--yes", "--config", str(demo.config_path)], env=no_creds)
