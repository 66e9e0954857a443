"""The real CLI against the sandbox: create-source and create-stream, idempotency, resume,
adoption, down, and the command surface (exit codes, JSON, help)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError

from s3tstream.provision.catalog import BY_NAME

SOURCE_STEPS = ["create-source", "create-stream"]


def run_steps(stack, names=SOURCE_STEPS):
    for n in names:
        stack.cli("step", n)


def live(stack):
    ddb, kin = stack.client("dynamodb"), stack.client("kinesis")
    tables = [t for t in ddb.list_tables()["TableNames"] if t.startswith(stack.name)]
    streams = [s for s in kin.list_streams()["StreamNames"] if s.startswith(stack.name)]
    return tables, streams


def test_steps_create_table_stream_and_destination(stack):
    run_steps(stack)
    ddb, kin = stack.client("dynamodb"), stack.client("kinesis")
    t = ddb.describe_table(TableName=stack.name)["Table"]
    assert t["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert t["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    tags = ddb.list_tags_of_resource(ResourceArn=t["TableArn"])["Tags"]
    assert {"Key": "s3tstream:stack", "Value": stack.name} in tags
    s = kin.describe_stream_summary(StreamName=f"{stack.name}-changes")["StreamDescriptionSummary"]
    assert s["StreamModeDetails"]["StreamMode"] == "ON_DEMAND"
    assert s["EncryptionType"] == "KMS" and s["KeyId"] == "alias/aws/kinesis"
    d = ddb.describe_kinesis_streaming_destination(TableName=stack.name)["KinesisDataStreamDestinations"]
    assert [(x["StreamArn"], x["DestinationStatus"], x["ApproximateCreationDateTimePrecision"]) for x in d] == [
        (s["StreamARN"], "ACTIVE", "MICROSECOND")]
    st = stack.state()
    assert [(r["kind"], r["status"], r["ownership"]) for r in st["resources"]] == [
        ("dynamodb-table", "present", "owned"),
        ("kinesis-stream", "present", "owned"),
        ("kinesis-streaming-destination", "present", "owned"),
    ]
    assert st["account"] == "123456789012"


def test_second_run_makes_no_mutating_call_then_down_removes_everything(stack, calls):
    run_steps(stack)
    calls.clear()
    run_steps(stack)
    assert calls.mutating() == [], calls.mutating()
    plan = stack.json("plan", ok=None)  # exit 1: without the [lakeformation] opt-ins, grant-lf conflicts
    assert {c["action"] for c in plan["changes"] if c["step"] in SOURCE_STEPS} == {"none"}
    assert calls.mutating() == []
    out = stack.json("down", "--yes")
    assert [d["kind"] for d in out["deleted"]] == ["kinesis-streaming-destination", "kinesis-stream", "dynamodb-table"]
    assert live(stack) == ([], [])
    assert stack.state()["resources"] == []
    again = stack.json("down", "--yes")
    assert again == {"stack": stack.name, "deleted": [], "kept": []}


def test_run_failing_right_after_table_creation_converges(stack, sandbox):
    from s3tstream.sandbox.client import inject_fault

    stack.write(extra='[stream]\nretention_hours = 48\n')
    stack.cli("step", "create-source")
    # create-stream fails at its first mutating call: the table exists, the stream does not
    inject_fault(sandbox.endpoint_url, "kinesis", "CreateStream", "InternalFailure", "injected", status=500, count=10)
    r = stack.cli("step", "create-stream", ok=False)
    assert r.exit_code == 1 and "InternalFailure" in r.output
    rec = {x["kind"]: x["status"] for x in stack.state()["resources"]}
    assert rec == {"dynamodb-table": "present", "kinesis-stream": "creating"}
    from s3tstream.sandbox.client import clear_faults

    clear_faults(sandbox.endpoint_url)
    stack.cli("step", "create-stream")
    rec = {x["kind"]: x["status"] for x in stack.state()["resources"]}
    assert rec == {"dynamodb-table": "present", "kinesis-stream": "present", "kinesis-streaming-destination": "present"}
    s = stack.client("kinesis").describe_stream_summary(StreamName=f"{stack.name}-changes")["StreamDescriptionSummary"]
    assert s["RetentionPeriodHours"] == 48


def test_adopted_table_survives_down(stack):
    ddb = stack.client("dynamodb")
    ddb.create_table(
        TableName=stack.name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )
    ddb.put_item(TableName=stack.name, Item={"pk": {"S": "keep-me"}})
    run_steps(stack)
    assert stack.state()["resources"][0]["ownership"] == "adopted"
    stack.cli("down", "--yes")
    assert ddb.get_item(TableName=stack.name, Key={"pk": {"S": "keep-me"}})["Item"]
    assert ddb.describe_kinesis_streaming_destination(TableName=stack.name)["KinesisDataStreamDestinations"][0][
        "DestinationStatus"] == "DISABLED"
    ddb.delete_table(TableName=stack.name)


def test_key_schema_mismatch_is_exit_2_showing_both(stack, calls):
    ddb = stack.client("dynamodb")
    ddb.create_table(
        TableName=stack.name, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}], BillingMode="PAY_PER_REQUEST",
    )
    calls.clear()
    r = stack.cli("step", "create-source", ok=False)
    assert r.exit_code == 2
    assert "config: pk HASH (S)" in r.output and "table:  id HASH (N)" in r.output
    assert calls.mutating() == []
    ddb.delete_table(TableName=stack.name)


def test_step_needing_an_earlier_step_exits_2(stack, calls):
    r = stack.cli("step", "create-stream", ok=False)
    assert r.exit_code == 2 and "needs create-source" in r.output
    assert calls.mutating() == []


def test_unknown_and_unbuilt_steps(stack):
    r = stack.cli("step", "nope", ok=False)
    assert r.exit_code == 2 and "unknown step" in r.output
    unbuilt = [s.name for s in BY_NAME.values() if s.module is None]
    for name in unbuilt:
        r = stack.cli("step", name, ok=False)
        assert r.exit_code == 2 and "not built yet" in r.output


def test_bad_config_is_exit_2_with_json_error_and_no_calls(stack, calls):
    stack.write(extra='[stream]\nmode = "PROVISIONED"\n')
    r = stack.cli("up", "--output", "json", ok=False)
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["error"]["code"] == "config" and "needs shards" in doc["error"]["message"]
    assert r.stderr == ""
    assert calls.calls == []


def test_corrupt_state_is_exit_2_and_no_calls(stack, calls):
    stack.state_path.parent.mkdir(parents=True, exist_ok=True)
    stack.state_path.write_text("{oops")
    r = stack.cli("up", ok=False)
    assert r.exit_code == 2 and "corrupt" in r.output
    assert calls.calls == []
    assert stack.state_path.read_text() == "{oops"


def test_state_of_another_account_is_exit_2_without_mutation(stack, calls):
    stack.state_path.parent.mkdir(parents=True, exist_ok=True)
    stack.state_path.write_text(json.dumps({"version": 1, "stack": stack.name, "region": "us-east-1", "account": "999999999999"}))
    r = stack.cli("up", ok=False)
    assert r.exit_code == 2 and "account 999999999999" in r.output
    assert calls.mutating() == []


def test_status_shows_live_state_and_drift(stack):
    run_steps(stack)
    kin = stack.client("kinesis")
    assert stack.cli("status").exit_code == 0  # everything present: exit 0
    kin.increase_stream_retention_period(StreamName=f"{stack.name}-changes", RetentionPeriodHours=72)
    doc = stack.json("status", ok=False)
    assert stack.last.exit_code == 1  # drifted: exit 1, the document still printed
    by_kind = {r["kind"]: r for r in doc["resources"]}
    assert by_kind["dynamodb-table"]["live"] == "present"
    assert by_kind["kinesis-stream"]["live"] == "drifted" and "retention 72h -> 24h" in by_kind["kinesis-stream"]["detail"]
    stack.cli("step", "create-stream")  # brings it back in line
    assert kin.describe_stream_summary(StreamName=f"{stack.name}-changes")["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24
    stack.client("kinesis").delete_stream(StreamName=f"{stack.name}-changes", EnforceConsumerDeletion=True)
    doc = stack.json("status", ok=False)
    r = stack.cli("status", ok=False)
    assert r.exit_code == 1 and "missing or drifted" in r.stderr
    assert {r["kind"]: r["live"] for r in doc["resources"]}["kinesis-stream"] == "missing"


def test_down_step_removes_dependents_first(stack):
    run_steps(stack)
    out = stack.json("down", "--yes", "--step", "create-stream")
    assert [d["kind"] for d in out["deleted"]] == ["kinesis-streaming-destination", "kinesis-stream"]
    assert [r["kind"] for r in stack.state()["resources"]] == ["dynamodb-table"]
    stack.cli("step", "create-stream")
    stack.cli("down", "--yes")


def test_down_keep_data_keeps_the_table(stack):
    run_steps(stack)
    out = stack.json("down", "--yes", "--keep-data")
    assert [k["kind"] for k in out["kept"]] == ["dynamodb-table"]
    assert live(stack) == ([stack.name], [])
    stack.cli("down", "--yes")
    assert live(stack) == ([], [])


def test_down_without_yes_and_no_tty_refuses(stack):
    run_steps(stack, ["create-source"])
    r = stack.cli("down", ok=False)
    assert r.exit_code == 2 and "--yes" in r.output
    assert live(stack)[0] == [stack.name]
    stack.cli("down", "--yes")


def test_init_never_overwrites(tmp_path):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    p = tmp_path / "new.toml"
    r = CliRunner().invoke(app, ["init", "--config", str(p), "--stack", "shop"])
    assert r.exit_code == 0, r.output
    assert 'name = "shop"' in p.read_text()
    before = p.read_text()
    r = CliRunner().invoke(app, ["init", "--config", str(p), "--stack", "other"])
    assert r.exit_code == 2 and "never overwrites" in r.output
    assert p.read_text() == before
    r = CliRunner().invoke(app, ["init", "--config", str(tmp_path / "x.toml"), "--stack", "Bad"])
    assert r.exit_code == 2 and "--stack" in r.output


def test_doctor_reports_every_check(stack):
    doc = stack.json("doctor", ok=None)
    names = [c["check"] for c in doc["checks"]]
    assert names[:4] == ["credentials", "region", "table bucket quota", "on-demand stream quota"]
    assert doc["checks"][0]["ok"] and "123456789012" in doc["checks"][0]["detail"]


def test_help_does_not_import_boto3():
    code = ("import sys; sys.argv=['s3tstream','--help']\n"
            "try:\n from s3tstream.cli.app import main; main()\nexcept SystemExit as e: assert e.code in (0, None)\n"
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported by --help'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "provision" in r.stdout


def test_python_dash_m_works():
    r = subprocess.run([sys.executable, "-m", "s3tstream", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("s3tstream ")


# ------------------------------------------------------------------ an unreachable or non-AWS endpoint
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _invoke(config, *args):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    return CliRunner().invoke(app, [*args, "--config", str(config)])


@pytest.mark.parametrize("command", [["plan"], ["up"], ["status"], ["doctor"], ["schema", "infer"], ["down", "--yes"],
                                     ["backfill"]])
def test_unreachable_endpoint_is_one_error_without_a_call(tmp_path, calls, command):
    """A stopped sandbox: one message naming what was tried and the fix, exit 1, and not one AWS call
    (so no retries: the TCP probe answers within the connect timeout)."""
    config = tmp_path / "s3tstream.toml"
    url = f"http://127.0.0.1:{_free_port()}"
    config.write_text(f'[stack]\nname = "gone"\nendpoint_url = "{url}"\n')
    r = _invoke(config, *command)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    assert f"cannot reach the endpoint {url} ([stack] endpoint_url)" in r.output
    assert "s3tstream sandbox start" in r.output and "grant" not in r.output
    assert calls.calls == []
    j = _invoke(config, *command, "--output", "json")
    assert j.exit_code == 1
    assert json.loads(j.stdout)["error"]["code"] == "endpoint"


def test_non_aws_endpoint_is_one_error_and_doctor_does_not_blame_permissions(tmp_path):
    """Something else answers on the port (an HTML web server): said so, exit 1, no traceback."""
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        config = tmp_path / "s3tstream.toml"
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        config.write_text(f'[stack]\nname = "other"\nendpoint_url = "{url}"\n')
        for command in (["plan"], ["doctor"], ["status", "--output", "json"]):
            r = _invoke(config, *command)
            assert r.exit_code == 1, r.output
            assert "Traceback" not in r.output
            assert f"the endpoint {url} answered, but not like AWS" in r.output
            assert "grant" not in r.output and "[stack] endpoint_url" in r.output
    finally:
        srv.shutdown()
        srv.server_close()


def test_endpoint_hints_name_the_right_fix():
    from s3tstream.aws.client import endpoint_hint, is_loopback

    assert is_loopback("http://127.0.0.1:4566") and is_loopback("http://localhost:4566") and is_loopback("http://[::1]:1")
    assert not is_loopback("https://10.0.0.5:4566") and not is_loopback(None)
    assert "sandbox start" in endpoint_hint("http://localhost:4566")
    assert "sandbox" not in endpoint_hint("https://vpce.example.com") and "remove it to use AWS" in endpoint_hint("https://vpce.example.com")


# ------------------------------------------------------------------ Ctrl-C
@pytest.mark.sandbox
def test_sigint_during_a_slow_up_exits_130_and_records_what_it_was_doing(tmp_path):
    """A realistic-latency sandbox keeps `up` waiting for the table to become ACTIVE; one SIGINT
    stops it (the waiting worker thread sees the cancellation flag), exit 130, and the state file
    and the message say what was under way, so `up` resumes."""
    import os
    import signal
    import uuid

    from s3tstream.sandbox.server import SandboxServer

    srv = SandboxServer(port=0, latency="realistic", latency_scale=30)  # the table takes minutes: only SIGINT ends the wait
    srv.start()
    try:
        name = "t" + uuid.uuid4().hex[:8]
        config = tmp_path / "s3tstream.toml"
        config.write_text(f'[stack]\nname = "{name}"\nendpoint_url = "{srv.endpoint_url}"\npoll_interval = 0.2\n'
                          '[lakeformation]\nintegrate = true\nmake_caller_admin = true\n')
        # SIGINT at its default in the child, whatever this runner inherited: a test run started in the
        # background by a non-interactive shell ignores SIGINT, and so would `up` (Python installs
        # its KeyboardInterrupt handler only when SIGINT is not ignored at startup)
        proc = subprocess.Popen([sys.executable, "-m", "s3tstream", "up", "--config", str(config)],
                                cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        seen = []
        for line in proc.stderr:  # wait until `up` is waiting on a resource
            seen.append(line)
            if "CREATING" in line:
                break
        assert any("CREATING" in x for x in seen), "".join(seen)
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.communicate(timeout=60)[1]  # a guard against a hang, not a timing assertion
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode == 130, "".join(seen) + rest
        assert "interrupted during" in rest and "run the same command again: it resumes" in rest
        assert "Traceback" not in rest
        assert "dynamodb-table" in rest and "(creating)" in rest
        st = json.loads((tmp_path / ".s3tstream" / f"{name}.json").read_text())
        assert ("dynamodb-table", "creating") in {(r["kind"], r["status"]) for r in st["resources"]}
    finally:
        srv.stop()


def test_ctrl_c_hint_is_true_for_the_command(stack, monkeypatch):
    """Ctrl-C: exit 130; put-item says it starts over (it does), `down` that it resumes."""
    from s3tstream.data import items
    from s3tstream.provision import engine

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    run_steps(stack, ["create-source"])
    monkeypatch.setattr(items, "put_items", ctrl_c)
    r = stack.cli("put-item", "--item", '{"pk": "a"}', ok=False)
    assert r.exit_code == 130 and "starts over" in r.output and "resumes" not in r.output
    r = stack.cli("put-item", "--item", '{"pk": "a"}', "--output", "json", ok=False)
    assert r.exit_code == 130 and "starts over" in json.loads(r.stdout)["error"]["hint"]
    monkeypatch.setattr(engine, "destroy", ctrl_c)
    r = stack.cli("down", "--yes", ok=False)
    assert r.exit_code == 130 and "resumes where it stopped" in r.output


# ------------------------------------------------------------------ scriptable results
def test_plan_exit_codes_and_up_summary(stack):
    """plan: 0 with nothing to do, 3 with --detailed-exitcode when changes are pending (0 without it),
    1 on a conflict (not counted as a change); up ends with one summary line and lists only what changed."""
    stack.write(extra='[stream]\nretention_hours = 48\n[lakeformation]\nintegrate = true\nmake_caller_admin = true\n')
    r = stack.cli("plan", "--detailed-exitcode", ok=False)
    assert r.exit_code == 3 and "to create" in r.stdout
    assert stack.cli("plan").exit_code == 0
    r = stack.cli("step", "create-source")
    assert f"step create-source: 1 created" in r.stdout
    r = stack.cli("step", "create-stream")
    assert "step create-stream: 2 created" in r.stdout
    r = stack.cli("step", "create-stream")
    assert "step create-stream: 2 unchanged" in r.stdout and "kinesis-stream" not in r.stdout  # no rows of "none"
    assert "kinesis-stream" in stack.cli("step", "create-stream", "--verbose").stdout
    stack.client("kinesis").increase_stream_retention_period(StreamName=f"{stack.name}-changes", RetentionPeriodHours=72)
    r = stack.cli("step", "create-stream")
    assert "step create-stream: 1 updated, 1 unchanged" in r.stdout and "kinesis-streaming-destination" not in r.stdout
    # conflicts: without the [lakeformation] opt-ins, up would refuse the analytics integration and the admin;
    # both are account-wide, and an earlier test in this sandbox may have made them: remove them first
    _without_integration_or_admins(stack)
    stack.write(extra="")
    r = stack.cli("plan", "--detailed-exitcode", ok=False)
    assert r.exit_code == 1 and "2 conflicting" in r.stdout and "to create" in r.stdout
    assert "integrate = true" in r.stderr and "[lakeformation]" in r.stderr
    doc = json.loads(stack.cli("plan", "--output", "json", ok=False).stdout)
    assert doc["error"]["code"] == "conflict" and any(c["action"] == "conflict" for c in doc["changes"])


def _without_integration_or_admins(stack) -> None:
    from botocore.exceptions import ClientError

    try:
        stack.client("glue").delete_catalog(CatalogId="s3tablescatalog")
    except ClientError:
        pass  # not there
    lf = stack.client("lakeformation")
    try:
        lf.deregister_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*")
    except ClientError:
        pass  # not registered
    settings = lf.get_data_lake_settings()["DataLakeSettings"]
    lf.put_data_lake_settings(DataLakeSettings={**settings, "DataLakeAdmins": []})


# ------------------------------------------------------------------ output at any width
def _tokens(stack):
    return {w for r in stack.state()["resources"] for w in (r["name"].split() + [r["kind"], r["step"]])}


@pytest.mark.parametrize("env", [{"TTY_COMPATIBLE": "1", "COLUMNS": "80"}, {"TTY_COMPATIBLE": "1", "COLUMNS": "250"}, {}],
                         ids=["terminal-80", "terminal-250", "piped"])
def test_tables_never_cut_identifiers(stack, env):
    """status on an 80-column terminal, a wide one, and piped (no width): every name, kind and step
    prints whole (rich would otherwise cut them to "s3tstream-my-stac…" to fit 80 columns)."""
    run_steps(stack)
    out = stack.cli("status", env=env).stdout
    assert "…" not in out
    lines = out.splitlines()
    for token in _tokens(stack):
        assert any(token in line for line in lines), (token, out)


def test_table_rendering_keeps_words_whole_or_goes_vertical(capsys, monkeypatch):
    from s3tstream.cli.output import Output

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "80")
    long_id = "s3tstream-my-stack-with-a-long-name-firehose-delivery-role"
    out = Output()
    out.table("t", ["name", "detail"], [[long_id, "a long free text " * 8], ["short", ""]])
    text = capsys.readouterr().out
    assert long_id in text and "…" not in text and "┃" in text  # fits as a table: the id whole, the text wrapped
    out = Output()
    out.table("t", ["a", "b", "c"], [[long_id, long_id + "-2", "x"]])
    text = capsys.readouterr().out
    assert long_id in text and long_id + "-2" in text and "┃" not in text  # too wide: one field a line
    monkeypatch.delenv("TTY_COMPATIBLE")
    out = Output()
    out.table("t", ["a", "b", "c"], [[long_id, long_id + "-2", "x"]])
    text = capsys.readouterr().out
    assert "┃" in text and any(long_id + "-2" in line and long_id + " " in line for line in text.splitlines())  # piped: one line


# ------------------------------------------------------------------ "[section]" printed as written
def _section_messages():
    """Every string literal in the product (not the sandbox) that names a config section as "[name]"."""
    import ast
    import re
    from pathlib import Path

    from s3tstream.config.model import Config

    pat = re.compile(r"\[(" + "|".join(n for n in Config.model_fields if n != "path") + r")\]")
    src = Path(__file__).resolve().parents[1] / "src" / "s3tstream"
    found = []
    for path in sorted(src.rglob("*.py")):
        if "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pat.search(node.value):
                found.append((f"{path.name}:{node.lineno}", node.value, pat.findall(node.value)))
    return found


def test_every_message_naming_a_section_prints_it(capsys, monkeypatch):
    """Rich markup ate "[table]" in "edit [table] columns" and "[stack]" in the sandbox hint: every
    message literal naming a section goes through each way the CLI prints and keeps its "[section]"."""
    from s3tstream.cli.output import Output

    messages = _section_messages()
    assert len(messages) >= 10, messages  # the scan finds them (init, sandbox, preflight, endpoint hints...)
    for terminal in ("1", "0"):
        monkeypatch.setenv("TTY_COMPATIBLE", terminal)
        for where, text, sections in messages:
            out = Output()
            out.info(text)
            out.warn(text)
            out.line(text)
            out.progress("p")(text)
            out.table(None, ["c"], [[text]])
            with pytest.raises(SystemExit):
                out.fail("x", text, text)
            got = capsys.readouterr()
            for sec in sections:
                assert (got.out + got.err).count(f"[{sec}]") >= 6 * text.count(f"[{sec}]"), (where, text, got)


def test_section_names_survive_in_help_and_real_messages(tmp_path):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    r = CliRunner().invoke(app, ["schema", "infer", "--help"])
    assert "[table] columns" in r.stdout
    p = tmp_path / "s3tstream.toml"
    r = CliRunner().invoke(app, ["init", "--config", str(p)])
    assert "[table] columns" in r.output
    # a TOML syntax error is not blamed on keys; an environment variable's typo names the variable
    p.write_text("[stack\nname = 'x'\n")
    r = CliRunner().invoke(app, ["plan", "--config", str(p)])
    assert r.exit_code == 2 and "TOML syntax" in r.output and "keys named above" not in r.output
    p.write_text('[stack]\nname = "x"\n')
    r = CliRunner().invoke(app, ["plan", "--config", str(p)], env={"S3TSTREAM_STACK__REGON": "eu-west-1"})
    assert r.exit_code == 2 and "stack.regon: unknown key (set by the environment variable S3TSTREAM_STACK__REGON)" in r.output
    assert "environment overrides" in r.output


def test_no_message_is_printed_as_markup():
    """Markup is only ever applied to text we write ourselves (tags, the demo's headings)."""
    from pathlib import Path

    cli = Path(__file__).resolve().parents[1] / "src" / "s3tstream" / "cli"
    for path in cli.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "markup=True" not in text and "from_markup" not in text, path


# ------------------------------------------------------------------ the sandbox by hand
def test_dummy_credentials_only_for_a_loopback_endpoint(monkeypatch):
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # this machine is no EC2 instance either way
    local = Aws(config.build({"stack": {"name": "x", "endpoint_url": "http://127.0.0.1:4566"}}))
    assert local.dummy_credentials and local.session.get_credentials().access_key == "sandbox"
    for url in ("https://dynamodb.us-east-1.amazonaws.com", None):
        remote = Aws(config.build({"stack": {"name": "x", **({"endpoint_url": url} if url else {})}}))
        assert not remote.dummy_credentials and remote.session.get_credentials() is None
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "mine")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "mine")
    own = Aws(config.build({"stack": {"name": "x", "endpoint_url": "http://localhost:4566"}}))
    assert not own.dummy_credentials and own.session.get_credentials().access_key == "mine"


def test_init_sandbox_writes_a_config_that_works_as_is(tmp_path, sandbox, monkeypatch):
    """`init --sandbox`: endpoint_url and both [lakeformation] opt-ins; with no credentials at all,
    plan has nothing to refuse (no conflicts) and exits 3 with changes pending."""
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    p = tmp_path / "s3tstream.toml"
    no_creds = {k: None for k in __import__("os").environ if k.startswith("AWS_")}
    r = CliRunner().invoke(app, ["init", "--sandbox", "--endpoint-url", sandbox.endpoint_url, "--config", str(p),
                                 "--stack", "sbx" + __import__("uuid").uuid4().hex[:6]])
    assert r.exit_code == 0, r.output
    text = p.read_text()
    assert f'endpoint_url = "{sandbox.endpoint_url}"' in text
    assert "integrate = true" in text and "make_caller_admin = true" in text
    r = CliRunner().invoke(app, ["plan", "--detailed-exitcode", "--config", str(p)], env=no_creds)
    assert r.exit_code == 3, r.output
    assert "using the sandbox's dummy credentials" in r.stderr and "conflict" not in r.output


# ------------------------------------------------------------------ nothing created before it is needed
@pytest.mark.parametrize("command,missing", [
    (["query"], "create-table-bucket"), (["query", "--engine", "local"], "create-table-bucket"),
    (["step", "query"], "create-table-bucket"), (["verify"], "create-source"), (["test-insert"], "create-source"),
    (["errors"], "create-source"), (["errors", "replay"], "create-source"), (["put-item", "--item", '{"pk": "a"}'], "create-source"),
    (["step", "put-item"], "create-source")])
def test_data_commands_refuse_before_up_without_creating_anything(stack, calls, command, missing):
    r = stack.cli(*command, ok=False)
    assert r.exit_code == 2 and f"needs the step {missing}, which has not run" in r.output and "s3tstream up" in r.output
    assert calls.mutating() == []
    s3 = stack.client("s3")
    assert not [b for b in s3.list_buckets().get("Buckets", []) if b["Name"].startswith(stack.name)]


def test_data_commands_name_the_missing_step_after_a_partial_up(stack, calls):
    run_steps(stack)  # the source and the stream, no lake
    r = stack.cli("query", ok=False)
    assert r.exit_code == 2 and "needs the step create-table-bucket" in r.output
    r = stack.cli("verify", "--repair", ok=False)
    assert r.exit_code == 2 and "needs the step create-table-bucket" in r.output
    stack.cli("put-item", "--item", '{"pk": "a"}')  # the source is all put-item needs


def test_down_removes_a_results_bucket_that_is_all_the_stack_has(stack):
    """A results bucket carrying the stack tag (left by a query on a stack since taken down) is
    removed by `down`, even with nothing else recorded; a bucket of that name without the tag is not."""
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config
    from s3tstream.lake.query import ensure_results_bucket

    cfg = config.load(stack.config_path)
    aws = Aws(cfg)
    bucket = cfg.names.results_bucket(aws.identity().account)
    ensure_results_bucket(cfg, aws, bucket)
    stack.client("s3").put_object(Bucket=bucket, Key="results/x.csv", Body=b"1")
    doc = stack.json("down", "--yes")
    assert [(d["kind"], d["name"]) for d in doc["deleted"]] == [("s3-results-bucket", bucket)]
    assert bucket not in [b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]]
    assert stack.cli("down", "--yes").stdout.startswith(f"stack {stack.name}: nothing to remove")


# ------------------------------------------------------------------ start-up
def _command_paths():
    import typer

    from s3tstream.cli.app import app

    root = typer.main.get_command(app)
    out = [[]]

    def walk(cmd, path):
        for name, sub in getattr(cmd, "commands", {}).items():
            out.append([*path, name])
            walk(sub, [*path, name])

    walk(root, [])
    return out


def test_fast_help_prints_what_typer_prints_for_every_command(monkeypatch, capsys):
    from s3tstream.cli import app as app_mod

    monkeypatch.setattr(sys, "argv", ["s3tstream"])
    monkeypatch.setenv("COLUMNS", "80")
    paths = _command_paths()
    assert ["errors", "replay"] in paths and ["schema", "infer"] in paths and len(paths) > 15
    for path in paths + [["step", "create-source"]]:
        assert app_mod._fast_help([*path, "--help"]), path
        fast = capsys.readouterr().out
        with pytest.raises(SystemExit) as e:
            app_mod.app([*path, "--help"], prog_name="s3tstream")  # Typer's own path
        assert e.value.code == 0 and fast == capsys.readouterr().out, path
    for args in (["nope", "--help"], ["query", "-o", "json", "--help"], ["query"], ["--", "--help"]):
        assert not app_mod._fast_help(args)  # Typer answers these itself


def test_command_help_does_not_import_pydantic_or_boto3():
    code = ("import sys; sys.argv=['s3tstream','query','--help']\n"
            "from s3tstream.cli.app import main; main()\n"
            "bad = [m for m in ('pydantic', 'boto3', 'botocore', 'rich') if m in sys.modules]\n"
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Run SQL over the lake table" in r.stdout


def test_sandbox_start_on_a_taken_port_is_one_error(tmp_path):
    import socket

    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(app, ["sandbox", "start", "--port", str(port), "--home", str(tmp_path)])
    assert r.exit_code == 1 and f"port {port}" in r.output and "already in use" in r.output
    assert "Traceback" not in r.output and not isinstance(r.exception, RuntimeError)


def test_stacks_of_one_process_share_clients_unless_a_setting_differs(monkeypatch):
    """Aws objects with the same profile, Region, endpoint, attempts and AWS_* environment share
    one session and its clients (building a client costs botocore ~15 ms); any difference gets
    its own, and a shared client still logs each call once."""
    from s3tstream.aws import client as aws_client
    from s3tstream.aws.client import CALLS, Aws
    from s3tstream.config import model as config

    monkeypatch.setattr(aws_client, "_SHARED", {})
    base = {"name": "x", "endpoint_url": "http://127.0.0.1:1"}
    a, b = Aws(config.build({"stack": base})), Aws(config.build({"stack": {**base, "name": "y"}}))
    assert a.client("sts") is b.client("sts") and a.session is b.session
    assert Aws(config.build({"stack": {**base, "max_attempts": 7}})).client("sts") is not a.client("sts")
    assert Aws(config.build({"stack": {**base, "endpoint_url": "http://127.0.0.1:2"}})).client("sts") is not a.client("sts")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another")
    c = Aws(config.build({"stack": base}))
    assert c.client("sts") is not a.client("sts")
    assert c.session.get_credentials().access_key == "another"
    from botocore.stub import Stubber

    CALLS.clear()
    with Stubber(a.client("sts")) as stub:
        for x in (a, b):
            stub.add_response("get_caller_identity", {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/u",
                                                      "UserId": "u"})
            x.client("sts").get_caller_identity()
    assert CALLS.calls == ["sts:GetCallerIdentity"] * 2
    aws_client.forget_clients()
    assert Aws(config.build({"stack": base})).client("sts") is not c.client("sts")
