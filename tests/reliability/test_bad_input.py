"""Bad input through the real CLI (`up`): every invalid config exits 2 with a message naming the
key and makes no AWS call at all; a bad state file exits 2 with no mutating call (the account
check needs one read, sts:GetCallerIdentity) and is left untouched; a second concurrent run
fails at once naming the holder. (tests/test_config.py checks the rules one level down.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

HEAD = '[stack]\nname = "{name}"\nendpoint_url = "{url}"\n'
COLS = '[table]\ncolumns = [{ name = "pk", type = "string", required = true }]\n'

# (id, config text after [stack] name/endpoint_url (None: replace the whole file), key named, words)
CASES: list[tuple[str, str | None, str, str]] = [
    # names that break AWS rules
    ("stack-upper", '[stack]\nname = "Orders"\n', "stack.name", "1-30 characters"),
    ("stack-too-long", f'[stack]\nname = "{"a" * 31}"\n', "stack.name", "1-30"),
    ("stack-aws-prefix", '[stack]\nname = "aws-orders"\n', "stack.name", "must not start with 'aws'"),
    ("stack-double-dash", '[stack]\nname = "or--ders"\n', "stack.name", "'--'"),
    ("source-table-short", '[source]\ntable = "ab"\n', "source.table", "3-255"),
    ("source-table-slash", '[source]\ntable = "a/b/c"\n', "source.table", "3-255"),
    ("stream-name", '[stream]\nname = "has space"\n', "stream.name", "1-128"),
    ("bucket-upper", '[table]\nbucket = "My-Lake"\n', "table.bucket", "only a-z"),
    ("bucket-reserved-prefix", '[table]\nbucket = "xn--lake"\n', "table.bucket", "reserved prefix"),
    ("bucket-reserved-suffix", '[table]\nbucket = "lake--table-s3"\n', "table.bucket", "reserved suffix"),
    ("namespace-aws", '[table]\nnamespace = "aws_data"\n', "table.namespace", "must not start with 'aws'"),
    ("table-name-dash", '[table]\nname = "my-table"\n', "table.name", "lowercase"),
    ("column-upper", '[table]\ncolumns = [{ name = "Amount", type = "long" }]\n', "table.columns[0].name", "lowercase"),
    ("firehose-name-long", f'[firehose]\nname = "{"f" * 65}"\n', "firehose.name", "1-64"),
    ("lambda-name-dot", '[firehose]\nlambda_name = "my.fn"\n', "firehose.lambda_name", "1-64"),
    ("error-bucket-ip", '[firehose]\nerror_bucket = "192.168.1.1"\n', "firehose.error_bucket", "not an IP"),
    ("tag-aws-prefix", '[stack.tags]\n"aws:owner" = "me"\n', "stack.tags", "reserved"),
    ("tag-own-prefix", '[stack.tags]\n"s3tstream:stack" = "x"\n', "stack.tags", "tool's own"),
    # unknown keys
    ("unknown-stack-key", '[stack]\ncolour = "red"\n', "stack.colour", "unknown key"),
    ("unknown-section", '[kinesis]\nshards = 2\n', "kinesis", "unknown key"),
    ("unknown-column-key", '[table]\ncolumns = [{ name = "a", type = "long", size = 3 }]\n', "table.columns[0].size",
     "unknown key"),
    ("unknown-maintenance-key", '[table.maintenance]\ncompact = true\n', "table.maintenance.compact", "unknown key"),
    # wrong types
    ("poll-not-number", '[stack]\npoll_interval = "fast"\n', "stack.poll_interval", "number"),
    ("attempts-zero", '[stack]\nmax_attempts = 0\n', "stack.max_attempts", "greater than or equal to 1"),
    ("shards-string", '[stream]\nmode = "PROVISIONED"\nshards = "two"\n', "stream.shards", "integer"),
    ("pitr-not-bool", '[source]\npoint_in_time_recovery = "sometimes"\n', "source.point_in_time_recovery", "boolean"),
    ("columns-not-list", '[table]\ncolumns = "pk"\n', "table.columns", "list"),
    ("column-type-unknown", '[table]\ncolumns = [{ name = "amount", type = "money" }]\n', "table.columns[0].type", "money"),
    ("decimal-too-wide", '[table]\ncolumns = [{ name = "amount", type = "decimal(40,2)" }]\n', "table.columns[0].type",
     "decimal"),
    ("buffer-out-of-range", '[firehose]\nbuffer_interval_seconds = 901\n', "firehose.buffer_interval_seconds", "900"),
    ("runtime-unsupported", '[firehose]\nlambda_runtime = "python2.7"\n', "firehose.lambda_runtime", "python3.13"),
    ("retention-days", '[firehose]\nlog_retention_days = 2\n', "firehose.log_retention_days", "14"),
    ("reader-not-arn", '[lakeformation]\nreaders = ["alice"]\n', "lakeformation.readers", "not an IAM role or user ARN"),
    ("athena-output", '[athena]\noutput_location = "bucket/prefix"\n', "athena.output_location", "s3://"),
    # key schema mismatches
    ("key-column-type", '[source]\npartition_key = { name = "pk", type = "N" }\n'
     '[table]\ncolumns = [{ name = "pk", type = "string", required = true }]\n', "", "key column 'pk' has type string"),
    ("key-column-optional", '[table]\ncolumns = [{ name = "pk", type = "string" }]\n', "", "must be required"),
    ("sort-key-equals-partition", '[source]\nsort_key = { name = "pk", type = "S" }\n', "source", "must differ"),
    ("key-type-letter", '[source]\npartition_key = { name = "pk", type = "X" }\n', "source.partition_key.type",
     "'S', 'N' or 'B'"),
    # impossible combinations
    ("provisioned-without-capacity", '[source]\nbilling = "PROVISIONED"\n', "source", "read_capacity and write_capacity"),
    ("capacity-on-demand", '[source]\nread_capacity = 5\n', "source", "only apply with billing = PROVISIONED"),
    ("provisioned-stream-no-shards", '[stream]\nmode = "PROVISIONED"\n', "stream", "needs shards"),
    ("shards-on-demand", '[stream]\nshards = 2\n', "stream", "only applies with mode = PROVISIONED"),
    ("changelog-reserved-column", '[table]\nmode = "changelog"\ncolumns = [{ name = "_op", type = "string" }]\n',
     "table", "reserved in changelog"),
    ("duplicate-column", '[table]\ncolumns = [{ name = "a", type = "long" }, { name = "a", type = "long" }]\n', "table",
     "appears twice"),
    ("extra-column-clash", '[table]\nextra_column = "a"\ncolumns = [{ name = "a", type = "string" }]\n', "table",
     "also a declared column"),
    # bad regions
    ("region-made-up", '[stack]\nregion = "moon-1"\n', "stack.region", "not an AWS Region"),
    ("region-china", '[stack]\nregion = "cn-north-1"\n', "stack.region", "China"),
    ("region-govcloud", '[stack]\nregion = "us-gov-west-1"\n', "stack.region", "GovCloud"),
    ("region-no-iceberg", '[stack]\nregion = "ap-southeast-5"\n', "stack.region", "Malaysia"),
    ("endpoint-not-url", '[stack]\nendpoint_url = "localhost:4566"\n', "stack.endpoint_url", "http://"),
    # the file itself
    ("not-toml", None, "", "not valid TOML"),
    ("no-stack-name", "REPLACE:[stack]\nregion = \"us-east-1\"\n", "stack.name", "required key is missing"),
]


def _write(stack, case_text: str | None) -> None:
    """The case's keys merged into a valid config (TOML refuses a table defined twice)."""
    if case_text is None:
        text = HEAD.format(name=stack.name, url=stack.endpoint_url) + "[table\ncolumns = [\n"
    elif case_text.startswith("REPLACE:"):
        text = case_text.removeprefix("REPLACE:")
    else:
        stack_lines = []
        rest = case_text
        if case_text.startswith("[stack]\n"):
            body, sep, after = case_text.removeprefix("[stack]\n").partition("\n[")
            stack_lines = body.splitlines()
            rest = ("[" + after) if sep else ""
        if not any(line.startswith("name =") for line in stack_lines):
            stack_lines.insert(0, f'name = "{stack.name}"')
        if not any(line.startswith("endpoint_url =") for line in stack_lines):
            stack_lines.append(f'endpoint_url = "{stack.endpoint_url}"')
        text = "[stack]\n" + "\n".join(stack_lines) + "\n" + (COLS if "[table]" not in rest else "") + rest
    stack.config_path.write_text(text, encoding="utf-8")


def test_there_are_at_least_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("text,key,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_config_through_the_cli_is_exit_2_naming_the_key_with_no_aws_call(stack, calls, text, key, words):
    _write(stack, text)
    r = stack.cli("up", "--output", "json", ok=False)
    assert r.exit_code == 2, r.output
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "config", err
    if key:
        assert f"{key}:" in err["message"], err["message"]
    assert words in err["message"], err["message"]
    assert calls.calls == []
    assert not stack.state_path.exists()


def test_invalid_env_override_names_the_variable_key(stack, calls):
    r = stack.cli("up", "--output", "json", ok=False, env={"S3TSTREAM_STREAM__RETENTION_HOURS": "12"})
    assert r.exit_code == 2 and "stream.retention_hours:" in json.loads(r.stdout)["error"]["message"]
    r = stack.cli("up", "--output", "json", ok=False, env={"S3TSTREAM_STACK__NAME__X": "1"})
    assert r.exit_code == 2 and "S3TSTREAM_STACK__NAME__X" in json.loads(r.stdout)["error"]["message"]
    assert calls.calls == []


def test_missing_config_file_is_exit_2(tmp_path, calls):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    r = CliRunner().invoke(app, ["up", "--config", str(tmp_path / "nope.toml")])
    assert r.exit_code == 2 and "no config file" in r.output and "s3tstream init" in r.output
    assert calls.calls == []


def test_live_key_schema_mismatch_is_exit_2_showing_both_with_no_mutating_call(stack, calls):
    stack.client("dynamodb").create_table(
        TableName=stack.name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}], BillingMode="PAY_PER_REQUEST")
    try:
        calls.clear()
        r = stack.cli("step", "create-source", "--output", "json", ok=False)
        assert r.exit_code == 2
        msg = json.loads(r.stdout)["error"]["message"]
        assert "config: pk HASH (S)" in msg and "table:  id HASH (N)" in msg
        assert calls.mutating() == []
    finally:
        stack.client("dynamodb").delete_table(TableName=stack.name)


# ------------------------------------------------------------------ state files
def _state(stack, doc) -> bytes:
    stack.state_path.parent.mkdir(parents=True, exist_ok=True)
    data = doc if isinstance(doc, bytes) else (doc if isinstance(doc, str) else json.dumps(doc)).encode()
    stack.state_path.write_bytes(data)
    return data


STATES = [
    ("corrupt-json", "{oops", "corrupt"),
    ("not-an-object", "[1, 2]", "not a JSON object"),
    ("binary", b"\xff\xfe\x00\x01garbage", "corrupt"),
    ("future-version", {"version": 99, "stack": "{name}", "region": "us-east-1"}, "version 99"),
    ("no-version", {"stack": "{name}", "region": "us-east-1"}, "version None"),
    ("bad-resource", {"version": 1, "stack": "{name}", "region": "us-east-1",
                      "resources": [{"step": "x", "kind": "y", "name": "z", "status": "exploded"}]}, "resources.0.status"),
    ("unknown-field", {"version": 1, "stack": "{name}", "region": "us-east-1", "owner": "me"}, "owner"),
    ("other-stack", {"version": 1, "stack": "someone-else", "region": "us-east-1"}, "belongs to stack 'someone-else'"),
    ("other-region", {"version": 1, "stack": "{name}", "region": "eu-west-1"}, "records Region eu-west-1"),
    ("other-account", {"version": 1, "stack": "{name}", "region": "us-east-1", "account": "999999999999"},
     "account 999999999999"),
]


@pytest.mark.parametrize("doc,words", [s[1:] for s in STATES], ids=[s[0] for s in STATES])
def test_bad_state_file_is_exit_2_untouched_with_no_mutating_call(stack, calls, doc, words):
    if isinstance(doc, dict):
        doc = json.loads(json.dumps(doc).replace("{name}", stack.name))
    text = _state(stack, doc)
    for command in (["up"], ["down", "--yes"], ["plan"]):
        r = stack.cli(*command, "--output", "json", ok=False)
        assert r.exit_code == 2, (command, r.output)
        err = json.loads(r.stdout)["error"]
        assert err["code"] == "state" and words in err["message"], err
    assert calls.mutating() == []
    # only the account check reads anything (sts:GetCallerIdentity), and only for that case
    assert set(calls.calls) <= {"sts:GetCallerIdentity"}
    assert stack.state_path.read_bytes() == text


# ------------------------------------------------------------------ two runs at once
def test_a_second_concurrent_run_fails_at_once_naming_the_holder(stack, sandbox, calls, tmp_path):
    """A real `up` in another process, paused right after its first mutating call (holding the
    lock), and a second `up` here: exit 2 at once, naming the holder's pid and command."""
    from reliability_helpers import write_config

    write_config(stack)
    log = tmp_path / "calls.log"
    env = {**os.environ, "S3TSTREAM_CONFIG": str(stack.config_path), "S3TSTREAM_CRASH_LOG": str(log),
           "S3TSTREAM_CRASH_ACTION": "pause"}
    holder = subprocess.Popen([sys.executable, "-m", "tests.support.crash", "1", "up"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text().strip()):
            assert holder.poll() is None, holder.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the first run never made its first call"
            time.sleep(0.05)
        calls.clear()
        t0 = time.monotonic()
        r = stack.cli("up", "--output", "json", ok=False)
        took = time.monotonic() - t0
        assert r.exit_code == 2
        err = json.loads(r.stdout)["error"]
        assert err["code"] == "locked" and f"pid {holder.pid}" in err["message"] and "up" in err["message"], err
        assert took < 3 and calls.calls == []
        r = stack.cli("down", "--yes", "--output", "json", ok=False)
        assert r.exit_code == 2 and json.loads(r.stdout)["error"]["code"] == "locked"
    finally:
        holder.kill()  # the process this test started, by its handle
        holder.wait(10)
    # the holder died holding the lock: the lock went with it, and the next run resumes
    stack.cli("up")
    calls.clear()
    stack.cli("up")
    assert calls.mutating() == []
