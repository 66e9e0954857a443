"""backfill: items that existed before the stream, through the stream (scan) or an export.

The costly sandbox phases share one provisioned stack loaded with 5,000 items written before
`up` (BatchWriteItem), in one test (so pytest-xdist never builds it twice); each phase leaves
source and lake equal (`verify` clean). Unit tests cover the rate limit, the checkpoints and the export SQL; the
export's Athena calls and their order are also checked against botocore's Stubber (the sandbox runs the SQL
itself: tests/sandbox/test_athena_dml.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
import threading
import uuid
from pathlib import Path

import pytest

from s3tstream.sandbox import client as sc

PIPELINE = ("[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"
            "[backfill]\nitems_per_second = 0\n")
COLUMNS = '{ name = "pk", type = "string", required = true }, { name = "n", type = "long" }, { name = "note", type = "string" }'
ITEMS = 5000


@pytest.fixture(scope="module", autouse=True)
def _instant_data_plane():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
        yield


def _stack_env(request, sandbox, tmp_path_factory, tag: str):
    cls = next(p.StackEnv for p in request.config.pluginmanager.get_plugins() if hasattr(p, "StackEnv"))
    return cls(dir=tmp_path_factory.mktemp(tag), endpoint_url=sandbox.endpoint_url, name="t" + uuid.uuid4().hex[:8])


def create_table(env, name: str | None = None) -> None:
    env.client("dynamodb").create_table(
        TableName=name or env.name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")


def write_items(env, count: int, prefix: str = "k") -> None:
    """BatchWriteItem directly (25 a call), before the stream exists."""
    ddb = env.client("dynamodb")
    for i in range(0, count, 25):
        reqs = [{"PutRequest": {"Item": {"pk": {"S": f"{prefix}{j:05d}"}, "n": {"N": str(j)}, "note": {"S": "before"}}}}
                for j in range(i, min(count, i + 25))]
        assert not ddb.batch_write_item(RequestItems={env.name: reqs}).get("UnprocessedItems")


def drain(env) -> None:
    sc.firehose_wait_drained(env.endpoint_url, f"{env.name}-to-lake", timeout=60)


def cfg_aws(env):
    from s3tstream.config import model as config
    from s3tstream.aws.client import Aws

    cfg = config.load(env.config_path)
    return cfg, Aws(cfg)


def checkpoint(env, job: str = "backfill") -> dict | None:
    """The job's checkpoint as the state file on disk holds it (None: no job in progress)."""
    path = env.dir / ".s3tstream" / f"{env.name}.json"
    return json.loads(path.read_text()).get("jobs", {}).get(job) if path.exists() else None


# ------------------------------------------------------------------ sandbox: scan
@pytest.mark.sandbox
def test_5000_items_written_before_up_backfill_resume_changes_and_export(request, sandbox, tmp_path_factory, monkeypatch):
    """One stack for the costly phases (5,000 items through the pipeline), run in this order:
    1. items written before `up` (BatchWriteItem), `up`, `backfill`: `verify` is clean;
    2. a backfill killed midway by a Kinesis fault continues with only what its checkpoints had
       not covered, while items change under it; the lake ends equal, one row a key;
    3. strategy export: refused without PITR, then export, the Athena load (MERGE, in the sandbox's
       Athena) of the rows the lake lost, catch-up, cleanup;
    4. `verify --export` on the same export path finds exactly the lake's injected differences
       (changes made after the export are confirmed away), and --repair fixes them.
    Each phase leaves source and lake equal."""
    from tests.conftest import teardown

    env = _stack_env(request, sandbox, tmp_path_factory, "backfill")
    try:
        create_table(env)
        write_items(env, ITEMS)
        env.write(extra=PIPELINE, columns=COLUMNS)
        env.cli("up")
        first = env.json("backfill")
        phase_backfill_then_verify_is_clean(env, first)
        phase_interrupted_backfill_continues_while_items_change(env, monkeypatch)
        phase_export_needs_pitr_then_exports_loads_and_cleans_up(env)
        phase_verify_export_returns_only_confirmed_differences(env, monkeypatch)
    finally:
        teardown(env)


def phase_backfill_then_verify_is_clean(env, first):
    assert first["strategy"] == "scan" and first["resumed"] is False
    assert first["items_read"] == first["items_sent"] == ITEMS == first["total_sent"]
    assert first["segments"] == 4 and first["skipped_oversize"] == 0 and first["items_per_second"] > 0
    assert first["catch_up"]["rounds"] == 0 and first["catch_up"]["records_read"] >= ITEMS
    assert checkpoint(env)["phase"] == "done"  # a completed backfill leaves only the record that it completed
    drain(env)
    v = env.json("verify")
    assert v["ok"] is True and v["counts"]["lake_rows"] == v["counts"]["source_items"] >= ITEMS - 5


def phase_interrupted_backfill_continues_while_items_change(env, monkeypatch):
    """Killed midway by a Kinesis fault; the rerun reads only what the checkpoints had not covered,
    while items of its pages change between their read and their sending (the stale-snapshot
    race): the catch-up sends those keys again, so the lake ends equal to the table, one row a key."""
    import s3tstream.data.backfill as bf
    import s3tstream.data.backfill.scan as scan

    real = scan.put_records
    calls = {"n": 0}

    def failing_after_3_pages(client, stream, entries, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # the next PutRecords (whichever segment sends it) is refused
            sc.inject_fault(env.endpoint_url, "kinesis", "PutRecords", "AccessDeniedException",
                            "User is not authorized to perform: kinesis:PutRecords", 400, count=1)
        return real(client, stream, entries, **kw)

    monkeypatch.setattr(scan, "put_records", failing_after_3_pages)
    # a rate limit this high only sizes the pages (1,000 items), so segments stop midway
    monkeypatch.setenv("S3TSTREAM_BACKFILL__ITEMS_PER_SECOND", "100000")
    r = env.cli("backfill", "--restart", "--segments", "3", "--output", "json", ok=False)
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert "backfill stopped after" in err["message"] and "AccessDeniedException" in err["message"]
    assert "continues from the checkpoints" in err["hint"]
    saved = checkpoint(env)
    segs = saved["segment_state"]
    done_before = sum(s["done"] for s in segs)
    read_before = sum(s["read"] for s in segs)
    assert saved["segments"] == 3 and done_before < 3 and 0 < read_before < ITEMS
    # a different segment count cannot continue these checkpoints
    r = env.cli("backfill", "--segments", "5", ok=False)
    assert r.exit_code == 2 and "--segments 3" in r.stderr
    monkeypatch.setattr(scan, "put_records", real)

    cfg, aws = cfg_aws(env)
    ddb = env.client("dynamodb")
    changed: dict[str, list[str]] = {}
    once = threading.Lock()

    def change_after_read(seg, items):
        """Between the read of a page and its sending: the snapshot of these items is now stale."""
        if len(items) < 6 or not once.acquire(blocking=False):
            return  # one page only (segments run in parallel)
        keys = [it["pk"]["S"] for it in items[:6]]
        for k in keys[:3]:
            ddb.update_item(TableName=env.name, Key={"pk": {"S": k}}, UpdateExpression="SET note = :v",
                            ExpressionAttributeValues={":v": {"S": "during"}})
        for k in keys[3:5]:
            ddb.delete_item(TableName=env.name, Key={"pk": {"S": k}})
        ddb.put_item(TableName=env.name, Item={"pk": {"S": f"new-{uuid.uuid4().hex[:6]}"}, "note": {"S": "during"}})
        changed.update(updated=keys[:3], deleted=keys[3:5])

    again = bf.run(cfg, aws, on_page=change_after_read)
    assert again.resumed is True and again.segments_done_before == done_before
    # only what the checkpoints had not covered (+1 when the scan meets the item added meanwhile)
    assert ITEMS - read_before <= again.items_read <= ITEMS - read_before + 1
    assert again.total_read in (ITEMS, ITEMS + 1) and checkpoint(env)["phase"] == "done"
    assert changed, "no page of the rerun had 6 items"
    c = again.catch_up
    assert c["changed_keys"] >= 6 and c["removed"] >= 2 and c["rounds"] >= 1 and c["unsettled"] == 0
    drain(env)
    v = env.json("verify")
    assert v["ok"] is True, v
    rows = env.json("query", f"SELECT count(*) AS n, count(DISTINCT pk) AS k FROM {env.name}")["rows"]
    assert rows == [{"n": v["counts"]["source_items"], "k": v["counts"]["source_items"]}]  # one row per key
    upd = "', '".join(changed["updated"] + changed["deleted"])
    rows = env.json("query", f"SELECT pk, note FROM {env.name} WHERE pk IN ('{upd}') ORDER BY pk")["rows"]
    assert rows == [{"pk": k, "note": "during"} for k in sorted(changed["updated"])]


@pytest.mark.sandbox
def test_changelog_rows_of_a_backfill_have_op_backfill_and_newer_changes_win(request, sandbox, tmp_path_factory):
    import s3tstream.data.backfill as bf
    from tests.conftest import teardown

    env = _stack_env(request, sandbox, tmp_path_factory, "changelog")
    try:
        create_table(env)
        write_items(env, 40)
        env.write(extra='mode = "changelog"\n' + PIPELINE, columns=COLUMNS)
        env.cli("up")
        cfg, aws = cfg_aws(env)
        ddb = env.client("dynamodb")

        def change_after_read(seg, items):
            ddb.update_item(TableName=env.name, Key={"pk": {"S": "k00001"}}, UpdateExpression="SET note = :v",
                            ExpressionAttributeValues={":v": {"S": "during"}})
            ddb.delete_item(TableName=env.name, Key={"pk": {"S": "k00002"}})

        res = bf.run(cfg, aws, on_page=change_after_read)
        assert res.items_sent == 40 and res.catch_up is None and "_event_time" in res.notes[0]
        drain(env)
        ops = env.json("query", f'SELECT "_op" AS op, count(*) AS n FROM {env.name} GROUP BY "_op" ORDER BY 1')["rows"]
        assert ops == [{"op": "backfill", "n": 40}, {"op": "modify", "n": 1}, {"op": "remove", "n": 1}]
        v = env.json("verify")
        assert v["ok"] is True and v["counts"]["source_items"] == 39
        # the CLI's text output: counts on stdout, progress with items/s on stderr
        r = env.cli("backfill", "--restart")
        assert "backfill complete: 39 item(s) read, 39 sent" in r.stdout and "strategy" in r.stdout
        assert "items/s" in r.stderr and "segment(s)" in r.stderr and "_event_time" in r.stderr
        drain(env)
        # the export path in changelog mode: an INSERT of 'backfill' rows dated at the export time;
        # verify --export compares the latest change per key with the export
        assert env.json("backfill")["already_done"]["total_sent"] == 39  # completed: nothing sent again
        doc = env.json("backfill", "--strategy", "export", "--enable-pitr", "--restart")
        assert doc["strategy"] == "export" and doc["items_read"] == 39 and doc["export"]["load"]["statement"] == "INSERT"
        ops = env.json("query", f'SELECT "_op" AS op, count(*) AS n FROM {env.name} GROUP BY "_op" ORDER BY 1')["rows"]
        assert ops == [{"op": "backfill", "n": 40 + 39 + 39}, {"op": "modify", "n": 1}, {"op": "remove", "n": 1}]
        v = env.json("verify", "--export")
        assert v["ok"] is True and v["counts"]["source_items"] == 39 and v["export"]["differences_returned"] == 0
    finally:
        teardown(env)


@pytest.mark.sandbox
def test_refuses_unless_the_streaming_destination_is_active(stack):
    create_table(stack)
    stack.write(extra=PIPELINE)
    r = stack.cli("backfill", "--output", "json", ok=False)
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 2 and "is not enabled" in err["message"] and "s3tstream up" in err["hint"]

    kinesis = stack.client("kinesis")
    kinesis.create_stream(StreamName=f"{stack.name}-changes", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    arn = kinesis.describe_stream_summary(StreamName=f"{stack.name}-changes")["StreamDescriptionSummary"]["StreamARN"]
    ddb = stack.client("dynamodb")
    ddb.enable_kinesis_streaming_destination(TableName=stack.name, StreamArn=arn)
    ddb.describe_kinesis_streaming_destination(TableName=stack.name)  # ACTIVE at the next describe
    ddb.disable_kinesis_streaming_destination(TableName=stack.name, StreamArn=arn)
    r = stack.cli("backfill", ok=False)
    assert r.exit_code == 2 and "DISABL" in r.stderr and "refusing to backfill" in r.stderr
    assert checkpoint(stack) is None
    kinesis.delete_stream(StreamName=f"{stack.name}-changes")


# ------------------------------------------------------------------ bad options and config
def _env(tmp_path: Path, extra: str = "") -> dict[str, str]:
    p = tmp_path / "s3tstream.toml"
    p.write_text(f'[stack]\nname = "shop"\n{extra}')
    return {"S3TSTREAM_CONFIG": str(p)}


@pytest.mark.parametrize("args, needle", [
    (["--strategy", "fast"], "--strategy"),
    (["--segments", "65"], "--segments"),
    (["--segments", "-1"], "--segments"),
    (["--strategy", "scan", "--enable-pitr"], "--enable-pitr"),
    (["verify", "--export", "--engine", "local"], "--engine local"),
    (["verify", "--export", "--segments", "4"], "--segments"),
    (["verify", "--enable-pitr"], "--enable-pitr"),
])
def test_bad_options_exit_2_naming_the_option(tmp_path, args, needle, calls):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    cmd = args if args[0] == "verify" else ["backfill", *args]
    r = CliRunner().invoke(app, cmd, env=_env(tmp_path))
    assert r.exit_code == 2 and needle in r.output and not calls.mutating()


def test_verify_export_refuses_the_catch_all_column(tmp_path):
    from s3tstream.config import model as config
    from s3tstream.data.items import transform_settings
    from s3tstream.data.verify_export import compare_export

    cfg = config.build({"stack": {"name": "shop"}, "table": {"extra_column": "extra", "columns": [
        {"name": "pk", "type": "string", "required": True}]}})
    with pytest.raises(usage_error(), match="extra_column"):
        compare_export(cfg, transform_settings(cfg), aws=None)


def usage_error():
    from s3tstream.errors import UsageError

    return UsageError


@pytest.mark.parametrize("extra, key", [
    ("[backfill]\nmax_read_share = 1.5\n", "backfill.max_read_share"),
    ("[backfill]\nsegments = 100\n", "backfill.segments"),
    ("[backfill]\nitems_per_second = -1\n", "backfill.items_per_second"),
    ('[backfill]\nexport_prefix = "/abs"\n', "backfill.export_prefix"),
    ('[backfill]\nexport_prefix = "s3://Bad_Bucket/x"\n', "backfill.export_prefix"),
    ("[backfill]\nspeed = 3\n", "backfill.speed"),
])
def test_bad_backfill_config_exits_2_naming_the_key(tmp_path, extra, key):
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    r = CliRunner().invoke(app, ["backfill", "--output", "json"], env=_env(tmp_path, extra))
    assert r.exit_code == 2 and key in json.loads(r.stdout)["error"]["message"]


def test_export_prefix_forms():
    from s3tstream.config import model as c

    assert c.build({"stack": {"name": "a"}, "backfill": {"export_prefix": "x/y"}}).backfill.export_prefix == "x/y/"
    assert c.build({"stack": {"name": "a"}, "backfill": {"export_prefix": "s3://my-bucket"}}).backfill.export_prefix == "s3://my-bucket/"
    assert c.build({"stack": {"name": "a"}, "backfill": {"export_prefix": "s3://my-bucket/p"}}).backfill.export_prefix == "s3://my-bucket/p/"


# ------------------------------------------------------------------ units: rate limit, checkpoints
class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_token_bucket_holds_the_average_rate():
    from s3tstream.data.backfill.ratelimit import TokenBucket

    clock = FakeClock()
    b = TokenBucket(10.0, clock=clock, sleep=clock.sleep)  # 10 units a second, burst 10
    for _ in range(20):
        b.wait()
        b.charge(5)  # charged after the read, like ConsumedCapacity
    # 100 units at 10/s: the first 10 are the burst, the rest take 9 s (the last charge is not waited for)
    assert 8.4 <= clock.t <= 9.6
    free = TokenBucket(0, clock=clock, sleep=clock.sleep)
    free.charge(1e9)
    free.wait()
    assert clock.t <= 9.6


def _cfg(**backfill):
    from s3tstream.config import model as c

    return c.build({"stack": {"name": "shop"}, "backfill": backfill,
                    "table": {"columns": [{"name": "pk", "type": "string", "required": True}]}})


def test_read_rate_from_provisioned_capacity_or_items_per_second():
    from s3tstream.data.backfill.ratelimit import read_rate

    prov = {"BillingModeSummary": {"BillingMode": "PROVISIONED"}, "ProvisionedThroughput": {"ReadCapacityUnits": 40}}
    assert read_rate(_cfg(max_read_share=0.25), prov)[:2] == (10.0, "rcu")
    od = {"BillingModeSummary": {"BillingMode": "PAY_PER_REQUEST"}, "ProvisionedThroughput": {"ReadCapacityUnits": 0}}
    assert read_rate(_cfg(items_per_second=250), od)[:2] == (250.0, "items")
    assert read_rate(_cfg(items_per_second=0), od)[2] == "none"


class FakeDdb:
    """Scan pages of ``page`` items, each reporting ``rcu_per_page`` consumed capacity."""

    def __init__(self, total: int, rcu_per_page: float) -> None:
        self.total, self.rcu = total, rcu_per_page
        self.calls: list[dict] = []

    def scan(self, **kw):
        self.calls.append(kw)
        start = int(kw.get("ExclusiveStartKey", {}).get("pk", {}).get("S", "-1")) + 1
        n = min(kw["Limit"], self.total - start)
        items = [{"pk": {"S": str(i)}} for i in range(start, start + n)]
        page = {"Items": items, "ConsumedCapacity": {"TableName": "shop", "CapacityUnits": self.rcu}}
        if start + n < self.total:
            page["LastEvaluatedKey"] = {"pk": {"S": str(start + n - 1)}}
        return page


class FakeKinesis:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def put_records(self, StreamName, Records):
        self.records += Records
        return {"Records": [{"SequenceNumber": "1"} for _ in Records]}


class FakeAws:
    def __init__(self, **clients):
        self.clients = clients

    def client(self, name):
        return self.clients[name]


def test_scan_is_held_to_the_share_of_provisioned_capacity(tmp_path):
    from s3tstream.data.backfill.jobs import Checkpoints
    from s3tstream.data.backfill.ratelimit import TokenBucket
    from s3tstream.data.backfill.scan import ScanBackfill

    cfg = _cfg(max_read_share=0.5)
    cfg.path = tmp_path / "s3tstream.toml"
    clock = FakeClock()
    ddb, kin = FakeDdb(total=300, rcu_per_page=20.0), FakeKinesis()
    store = Checkpoints(cfg)
    doc = store.new("scan", segments=1, segment_state=[{"lek": None, "read": 0, "sent": 0, "done": False}])
    desc = {"BillingModeSummary": {"BillingMode": "PROVISIONED"}, "ProvisionedThroughput": {"ReadCapacityUnits": 20},
            "ItemCount": 300}
    said: list[str] = []
    sb = ScanBackfill(cfg, FakeAws(dynamodb=ddb, kinesis=kin), store, doc, desc, sleep=clock.sleep, progress=said.append)
    sb.bucket = TokenBucket(sb.bucket.rate, clock=clock, sleep=clock.sleep)  # 10 RCU/s
    sb.run()
    rcu = 20.0 * len(ddb.calls)
    assert sb.read == 300 and len(kin.records) == 300 and all(c["ReturnConsumedCapacity"] == "TOTAL" for c in ddb.calls)
    assert (rcu - 10 - 20) / 10 <= clock.t <= rcu / 10  # ~ consumed / (0.5 x 20 RCU), less the burst
    assert all(10 <= c["Limit"] <= 1000 for c in ddb.calls)
    rec = json.loads(kin.records[0]["Data"])
    assert rec["eventSource"] == "s3tstream:backfill" and rec["eventName"] == "INSERT"
    assert rec["dynamodb"]["Keys"] == {"pk": {"S": "0"}} and rec["dynamodb"]["NewImage"] == {"pk": {"S": "0"}}
    assert rec["dynamodb"]["ApproximateCreationDateTimePrecision"] == "MICROSECOND"
    saved = json.loads(store.path.read_text())["jobs"]["backfill"]
    assert saved["segment_state"] == [{"lek": None, "read": 300, "sent": 300, "done": True}]
    assert "of ~300 (" in said[0] and "items/s, ETA " in said[0] and said[-1].endswith("done, 0 of 1 segment(s) left")


def test_a_corrupt_or_foreign_checkpoint_is_refused_with_restart_hint(tmp_path):
    from s3tstream.data.backfill.jobs import Checkpoints
    from s3tstream.errors import StateError

    cfg = _cfg()
    cfg.path = tmp_path / "s3tstream.toml"
    store = Checkpoints(cfg)
    assert store.path == tmp_path / ".s3tstream" / "shop.json" and store.load() is None  # the state file
    doc = store.new("scan", segments=1, segment_state=[])
    store.save(dict(doc, version=99))
    with pytest.raises(StateError, match="unknown version 99") as e:
        Checkpoints(cfg).load()
    assert "--restart" in e.value.hint and "--abort" in e.value.hint and e.value.exit_code == 2
    store.save(dict(doc, table="other"))
    with pytest.raises(StateError, match="table 'other'"):
        Checkpoints(cfg).load()
    store.delete()
    assert not Checkpoints(cfg).exists() and json.loads(store.path.read_text())["jobs"] == {}


# ------------------------------------------------------------------ sandbox: export
def lake_table(env):
    from s3tstream.sandbox.dataplane.iceberg_writer import catalogs_for, find_bucket_arn

    arn = find_bucket_arn("123456789012", "us-east-1", f"{env.name}-lake")
    return catalogs_for(env.endpoint_url).catalog("123456789012", "us-east-1", arn).load_table((env.name, env.name))


def phase_export_needs_pitr_then_exports_loads_and_cleans_up(env):
    """The lake loses 300 rows (as if those items had never been streamed); the export strategy
    puts them back with the sandbox's Athena (MERGE over a Glue table on the export's files)."""
    import pyarrow as pa

    import s3tstream.data.backfill as bf
    from s3tstream.data.backfill.export_sql import temp_names
    from s3tstream.errors import AwsError

    r = env.cli("backfill", "--strategy", "export", "--restart", "--output", "json", ok=False)
    err = json.loads(r.stdout)["error"]
    assert r.exit_code == 2 and "point-in-time recovery" in err["message"] and "--enable-pitr" in err["hint"]

    tbl = lake_table(env)
    rows = tbl.scan().to_arrow()
    lost = set(sorted(rows.column("pk").to_pylist())[:300])
    keep = pa.array([pk not in lost for pk in rows.column("pk").to_pylist()])
    with tbl.transaction() as tx:
        tx.overwrite(rows.filter(keep))
    assert env.json("verify", "--settle", "0", ok=False)["counts"]["missing"] == 300

    cfg, aws = cfg_aws(env)
    sc.inject_fault(env.endpoint_url, "athena", "StartQueryExecution", "InvalidRequestException", "boom", 400, count=1)
    with pytest.raises(AwsError, match="InvalidRequestException"):
        bf.run(cfg, aws, strategy="export", enable_pitr=True, restart=True)
    saved = checkpoint(env)
    assert saved["strategy"] == "export" and saved["phase"] == "load" and saved["export"]["status"] == "COMPLETED"
    glue = env.client("glue")
    temp_db = temp_names(cfg, saved["export"]["id"])[0]
    assert "glue_database" not in saved["export"]  # the temporary Glue objects go, also on failure
    assert temp_db not in [d["Name"] for d in glue.get_databases()["DatabaseList"]]
    token = saved["export"]["query_token"]

    athena = env.client("athena")
    res = bf.run(cfg, aws, strategy="auto")  # continues the export in progress: no second export
    exports = env.client("dynamodb").list_exports(TableArn=saved["export"]["arn"].split("/export/")[0])
    assert len(exports["ExportSummaries"]) == 1 and exports["ExportSummaries"][0]["ExportStatus"] == "COMPLETED"
    qe = athena.get_query_execution(QueryExecutionId=res.export["load"]["query_id"])["QueryExecution"]
    assert qe["Status"]["State"] == "SUCCEEDED" and qe["SubstatementType"] == "MERGE"
    assert qe["Query"].startswith(f'MERGE INTO "{env.name}"."{env.name}" AS t') and "WHEN NOT MATCHED THEN INSERT" in qe["Query"]
    assert qe["QueryExecutionContext"] == {"Catalog": f"s3tablescatalog/{env.name}-lake", "Database": env.name}
    assert f'"awsdatacatalog"."{temp_db}"' in qe["Query"]
    # the same ClientRequestToken answers the same query: a crash after the start never loads twice
    again = athena.start_query_execution(QueryString=qe["Query"], ClientRequestToken=token, WorkGroup="primary",
                                         QueryExecutionContext=qe["QueryExecutionContext"],
                                         ResultConfiguration=qe["ResultConfiguration"])
    assert again["QueryExecutionId"] == qe["QueryExecutionId"]
    source = env.client("dynamodb").describe_table(TableName=env.name)["Table"]["ItemCount"]
    assert res.strategy == "export" and res.resumed and res.items_read == source
    assert res.export["pitr_enabled_by_backfill"] is True and res.export["removed_objects"] >= 5
    assert res.export["load"]["statement"] == "MERGE" and res.export["load"]["data_scanned_bytes"] > 0
    assert res.catch_up is not None and res.catch_up["since"] == res.export["export_time"][:19] + "+00:00"
    assert temp_db not in [d["Name"] for d in glue.get_databases()["DatabaseList"]]
    bucket = f"{env.name}-ath-123456789012-us-east-1"
    assert env.client("s3").list_objects_v2(Bucket=bucket, Prefix="backfill/")["KeyCount"] == 0
    assert checkpoint(env)["phase"] == "done"
    drain(env)
    v = env.json("verify")
    assert v["ok"] is True, v
    rows = env.json("query", f"SELECT count(*) AS n, count(DISTINCT pk) AS k FROM {env.name}")["rows"]
    assert rows == [{"n": source, "k": source}]  # the MERGE added the lost keys only: one row per key


def phase_verify_export_returns_only_confirmed_differences(env, monkeypatch):
    import pyarrow as pa

    from s3tstream.data.backfill.export import ExportBackfill

    tbl = lake_table(env)
    rows = tbl.scan().to_arrow().sort_by("pk").to_pylist()
    missing, tampered, dup = [r["pk"] for r in rows[:3]], [r["pk"] for r in rows[3:5]], rows[5]["pk"]
    gone_later, changed_later = rows[6]["pk"], rows[7]["pk"]
    kept = [dict(r, note="tampered") if r["pk"] in tampered else r for r in rows if r["pk"] not in missing]
    kept += [dict(rows[5]), {"pk": "ghost", "n": 1, "note": "x"}]
    with tbl.transaction() as tx:
        tx.overwrite(pa.Table.from_pylist(kept, schema=tbl.scan().to_arrow().schema))
    ddb = env.client("dynamodb")
    import s3tstream.data.verify_export as ve

    # at most CONFIRM_LIMIT differing keys come back; the totals still count the others
    monkeypatch.setattr(ve, "CONFIRM_LIMIT", 2)
    r = env.cli("verify", "--export", "--output", "json", ok=False)
    monkeypatch.setattr(ve, "CONFIRM_LIMIT", 100_000)
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and doc["ok"] is False and doc["export"]["differences_returned"] == 2
    assert doc["export"]["not_returned"] == 3 + 1 + 2 + 1 - 2 and "5 more not returned" in doc["error"]["message"]
    real = ExportBackfill.create_temp_table

    def change_after_the_export(self):
        """Between the export and the comparison: the export's snapshot of these keys is stale."""
        ddb.delete_item(TableName=env.name, Key={"pk": {"S": gone_later}})
        ddb.update_item(TableName=env.name, Key={"pk": {"S": changed_later}}, UpdateExpression="SET note = :v",
                        ExpressionAttributeValues={":v": {"S": "later"}})
        drain(env)  # the lake catches up with both
        return real(self)

    monkeypatch.setattr(ExportBackfill, "create_temp_table", change_after_the_export)
    r = env.cli("verify", "--export", "--output", "json", ok=False)
    monkeypatch.setattr(ExportBackfill, "create_temp_table", real)
    assert r.exit_code == 1, r.stdout
    doc = json.loads(r.stdout)
    c, ex = doc["counts"], doc["examples"]
    assert (c["missing"], c["extra"], c["differing"], c["duplicates"], c["unmappable"]) == (3, 1, 2, 1, 0), doc
    assert sorted(k["pk"] for k in ex["missing"]) == missing and ex["extra"] == [{"pk": "ghost"}]
    assert [(d["key"]["pk"], d["columns"]) for d in ex["differing"]] == [(k, ["note"]) for k in tampered]
    assert ex["duplicates"] == [{"pk": dup}] and doc["engine"] == "athena+export"
    # the export-time query returned the two later changes too; confirmed against the items, they are fine
    assert doc["export"]["differences_returned"] == 3 + 1 + 2 + 1 + 2 and doc["export"]["removed_objects"] >= 5
    assert c["source_items"] == ITEMS_NOW(env) + 1 and c["matching"] == c["source_items"] - 3 - 2 - 1
    assert checkpoint(env, "verify-export") is None
    assert not [d for d in env.client("glue").get_databases()["DatabaseList"] if d["Name"].endswith("_backfill")]
    r = env.cli("verify", "--export", "--repair", "--output", "json", ok=False)
    assert json.loads(r.stdout).get("repair", {}).get("sent") == 3 + 1 + 2 + 1, r.stdout + r.stderr
    drain(env)
    v = env.json("verify")
    assert v["ok"] is True, v


def ITEMS_NOW(env) -> int:
    return env.client("dynamodb").scan(TableName=env.name, Select="COUNT")["Count"]


@pytest.fixture
def stubbed(tmp_path, monkeypatch):
    """An export backfill's Athena phase against botocore's Stubber: (cfg, athena client, stub, store);
    make(export) builds the ExportBackfill of a new checkpoint with that export section."""
    import boto3
    from botocore.stub import Stubber

    import s3tstream.lake.query as q
    from s3tstream.data.backfill.export import ExportBackfill
    from s3tstream.data.backfill.jobs import Checkpoints

    cfg = _cfg()
    cfg.path = tmp_path / "s3tstream.toml"
    cfg.athena.output_location = "s3://res/q/"
    athena = boto3.client("athena", region_name="us-east-1")
    store = Checkpoints(cfg)
    real = q.AthenaEngine.__init__
    monkeypatch.setattr(q.AthenaEngine, "__init__", lambda self, *a, **kw: real(self, *a, **{**kw, "sleep": lambda s: None}))

    def make(**export):
        return ExportBackfill(cfg, FakeAws(athena=athena), store, store.new("export", export=export), enable_pitr=False)

    return SimpleNamespace(cfg=cfg, athena=athena, stub=Stubber(athena), store=store, make=make)


def saved_export(store) -> dict:
    return json.loads(store.path.read_text())["jobs"]["backfill"]["export"]


def test_athena_load_phase_calls_in_order_with_the_checkpointed_token(stubbed):
    """The export's Athena phase against botocore's Stubber: the calls, their order and the token."""
    from botocore.stub import ANY

    stub = stubbed.stub
    load_sql_prefix = 'MERGE INTO "shop"."shop" AS t\nUSING (SELECT '
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"}, {
        "QueryString": ANY, "ClientRequestToken": "t" * 40, "WorkGroup": "primary",
        "QueryExecutionContext": {"Catalog": "s3tablescatalog/shop-lake", "Database": "shop"},
        "ResultConfiguration": {"OutputLocation": "s3://res/q/"}})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "RUNNING"}}}, {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "SUCCEEDED"}, "StatementType": "DML",
                                                                 "Statistics": {"DataScannedInBytes": 7}}},
                      {"QueryExecutionId": "q1"})
    eb = stubbed.make(id="01700000000000-abcd1234", export_time=1_700_000_000.5, query_token="t" * 40)
    sent: list[str] = []
    stubbed.athena.meta.events.register("provide-client-params.athena.StartQueryExecution",
                                        lambda params, **_: sent.append(params["QueryString"]))
    with stub:
        info = eb.load('"awsdatacatalog"."db"."export_x"')
    stub.assert_no_pending_responses()
    assert info == {"query_id": "q1", "statement": "MERGE", "data_scanned_bytes": 7}
    assert sent[0].startswith(load_sql_prefix) and '"awsdatacatalog"."db"."export_x"' in sent[0]
    saved = saved_export(stubbed.store)
    assert saved["query_id"] == "q1" and saved["loaded"] is True


# ------------------------------------------------------------------ units: the export SQL
TYPES_CFG = {
    "stack": {"name": "shop"},
    "source": {"partition_key": {"name": "PK", "type": "S"}, "sort_key": {"name": "SK", "type": "N"}},
    "table": {"columns": [
        {"name": "pk", "type": "string", "required": True, "source": "PK"},
        {"name": "sk", "type": "long", "required": True, "source": "SK"},
        {"name": "price", "type": "decimal(12,4)"}, {"name": "ok", "type": "boolean"},
        {"name": "day", "type": "date"}, {"name": "at", "type": "timestamptz", "source": "createdAt"},
        {"name": "naive", "type": "timestamp"}, {"name": "blob", "type": "binary"}, {"name": "r", "type": "float"},
        {"name": "tags", "type": "list<string>"}, {"name": "nums", "type": "list<long>"},
        {"name": "attrs", "type": "map<string,double>"}, {"name": "addr", "type": "struct<city:string,zip:int>"},
        {"name": "note", "type": "string", "source": "it's"},
    ]},
}


def test_load_sql_maps_dynamodb_json_to_each_column_type():
    from s3tstream.config import model as c
    from s3tstream.data.backfill.export_sql import load_sql

    cfg = c.build(TYPES_CFG)
    sql = load_sql(cfg, '"awsdatacatalog"."db"."t"', "0170-ab", "2024-05-01T12:00:00.123456Z")
    assert sql.count("MERGE INTO") == 1 and 'ON (t."pk" = s."pk" AND t."sk" = s."sk")' in sql
    assert "CAST(json_extract(line, '$.Item') AS MAP(VARCHAR, JSON)) AS item FROM \"awsdatacatalog\".\"db\".\"t\"" in sql
    assert "element_at(item, 'PK')" in sql and "element_at(item, 'createdAt')" in sql
    assert "element_at(item, 'it''s')" in sql  # attribute names are quoted literals, exact case
    assert "CAST(json_extract_scalar(element_at(item, 'price'), '$.N') AS DECIMAL(12,4)) AS \"price\"" in sql
    assert "CAST(json_extract_scalar(element_at(item, 'ok'), '$.BOOL') AS BOOLEAN) AS \"ok\"" in sql
    assert "from_iso8601_date(substr(" in sql and "AS TIMESTAMP(6) WITH TIME ZONE) AS \"at\"" in sql
    assert "AS TIMESTAMP(6)) AS \"naive\"" in sql and "from_base64(json_extract_scalar(element_at(item, 'blob'), '$.B'))" in sql
    assert "'$.SS'" in sql and "'$.NS'" in sql and "array_sort(" in sql and "transform_values(" in sql
    assert 'AS ROW("city" VARCHAR, "zip" INTEGER)' in sql and "element_at(CAST(json_extract(" in sql
    assert sql.count("(") == sql.count(")")
    cols = sql.split("WHEN NOT MATCHED THEN INSERT (", 1)[1].split(")", 1)[0]
    assert cols.split(", ")[:3] == ['"pk"', '"sk"', '"price"']


def test_changelog_load_is_an_insert_with_op_backfill_at_the_export_time():
    from s3tstream.config import model as c
    from s3tstream.data.backfill.export_sql import check_exportable, load_sql
    from s3tstream.errors import UsageError

    cfg = c.build({**TYPES_CFG, "table": {**TYPES_CFG["table"], "mode": "changelog"}})
    sql = load_sql(cfg, "src", "0170-ab", "2024-05-01T12:00:00.123456Z")
    assert sql.startswith('INSERT INTO "shop"."shop" (') and '"_op", "_event_time", "_event_id")' in sql
    assert "'backfill' AS \"_op\"" in sql and "from_iso8601_timestamp_nanos('2024-05-01T12:00:00.123456Z')" in sql
    assert "concat('export:0170-ab:', json_format(element_at(item, 'PK')) || '|' || json_format(element_at(item, 'SK')))" in sql
    with pytest.raises(UsageError, match="extra_column"):
        check_exportable(c.build({"stack": {"name": "shop"}, "table": {"extra_column": "rest"}}))


def test_auto_strategy_by_item_count_and_a_backfill_in_progress_keeps_its_strategy(tmp_path):
    from s3tstream.data.backfill.run import choose_strategy
    from s3tstream.errors import UsageError

    cfg = _cfg(scan_threshold_items=1000)
    cfg.path = tmp_path / "s3tstream.toml"
    assert choose_strategy(cfg, "auto", {"ItemCount": 999}, None) == "scan"
    assert choose_strategy(cfg, "auto", {"ItemCount": 1000}, None) == "export"
    assert choose_strategy(cfg, "scan", {"ItemCount": 10**9}, None) == "scan"
    assert choose_strategy(cfg, "auto", {"ItemCount": 10**9}, {"strategy": "scan"}) == "scan"
    with pytest.raises(UsageError, match="in progress") as e:
        choose_strategy(cfg, "export", {}, {"strategy": "scan"})
    assert "--restart --strategy export" in e.value.hint


@pytest.mark.parametrize("reason, hint", [
    ("ICEBERG_COMMIT_ERROR: conflict", "fix the SQL or the cause"),
    # a permission refusal says what the caller needs
    ("AccessDeniedException: Insufficient Lake Formation permission(s): Required Insert on shop",
     "Lake Formation SELECT, INSERT, DELETE and DESCRIBE on shop.shop"),
])
def test_a_failed_athena_load_gets_a_new_token_next_time(stubbed, reason, hint):
    from botocore.stub import ANY

    from s3tstream.errors import AwsError

    stub = stubbed.stub
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"},
                      {"QueryString": ANY, "ClientRequestToken": "a" * 40, "WorkGroup": ANY,
                       "QueryExecutionContext": ANY, "ResultConfiguration": ANY})
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {
        "State": "FAILED", "StateChangeReason": reason}}}, {"QueryExecutionId": "q1"})
    eb = stubbed.make(id="e1", export_time=1_700_000_000.0, query_token="a" * 40)
    with stub, pytest.raises(AwsError) as e:
        eb.load("src")
    assert reason in e.value.message and hint in e.value.hint
    saved = saved_export(stubbed.store)
    assert "query_token" not in saved and saved["failed_query_id"] == "q1" and not saved.get("loaded")


@pytest.mark.sandbox
def test_down_removes_what_an_interrupted_export_left_and_nothing_else(stack):
    """A run killed mid-export leaves its checkpoint, export files and temporary Glue database;
    `down` removes them (also when nothing else is left), but not a database of another stack."""
    from s3tstream.data.backfill.export_sql import temp_database
    from s3tstream.data.backfill.jobs import Checkpoints, VerifyCheckpoint

    cfg, _ = cfg_aws(stack)
    s3, glue = stack.client("s3"), stack.client("glue")
    bucket = f"{stack.name}-exports"
    s3.create_bucket(Bucket=bucket)
    for k in ("backfill/r1/AWSDynamoDB/x/data/a.json.gz", "backfill/r1/AWSDynamoDB/x/manifest-summary.json",
              "keep/other.txt"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    store = Checkpoints(cfg)
    store.save(store.new("export", export={"bucket": bucket, "prefix": "backfill/r1", "arn": "arn:x", "id": "x"}))
    vstore = VerifyCheckpoint(cfg)
    vstore.save(vstore.new("export"))
    db = temp_database(cfg)
    glue.create_database(DatabaseInput={"Name": db, "Parameters": {"s3tstream:stack": "someone-else"}})
    doc = stack.json("down", "--yes")
    assert sorted(c["kind"] for c in doc["deleted"]) == ["checkpoint", "checkpoint", "s3-export-files"]
    assert not Checkpoints(cfg).exists() and not VerifyCheckpoint(cfg).exists()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep/other.txt"]
    assert glue.get_database(Name=db)  # not this stack's: kept

    glue.delete_database(Name=db)
    glue.create_database(DatabaseInput={"Name": db, "Parameters": {"s3tstream:stack": cfg.stack.name}})
    glue.create_table(DatabaseName=db, TableInput={"Name": "export_x", "StorageDescriptor": {"Columns": []}})
    doc = stack.json("down", "--yes")
    assert [(c["kind"], c["name"]) for c in doc["deleted"]] == [("glue-database", db)]
    assert db not in [d["Name"] for d in glue.get_databases()["DatabaseList"]]
    assert stack.json("down", "--yes")["deleted"] == []


@pytest.mark.sandbox
def test_abort_stops_the_load_and_removes_what_the_export_backfill_made(stack, monkeypatch):
    from s3tstream.data.backfill.jobs import Checkpoints

    cfg, aws = cfg_aws(stack)
    s3 = stack.client("s3")
    bucket = f"{stack.name}-exports"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="backfill/r2/AWSDynamoDB/x/data/a.json.gz", Body=b"x")
    sc.athena_hold(stack.endpoint_url, True)  # the load stays QUEUED until stopped
    try:
        qid = stack.client("athena").start_query_execution(
            QueryString="SELECT 1", ResultConfiguration={"OutputLocation": f"s3://{bucket}/q/"})["QueryExecutionId"]
        store = Checkpoints(cfg)
        store.save(store.new("export", phase="load", export={"bucket": bucket, "prefix": "backfill/r2", "arn": "arn:x",
                                                             "id": "x", "status": "COMPLETED", "query_id": qid}))
        doc = stack.json("backfill", "--abort")
    finally:
        sc.athena_hold(stack.endpoint_url, False)
    assert doc["aborted"] is True and doc["strategy"] == "export" and doc["stopped_query"] == qid
    assert doc["removed_objects"] == 1 and not Checkpoints(cfg).exists()
    st = stack.client("athena").get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]
    assert st == "CANCELLED"
    assert stack.json("backfill", "--abort")["aborted"] is False
    r = stack.cli("backfill", "--abort", "--restart", ok=False)
    assert r.exit_code == 2 and "--abort" in r.output



@pytest.mark.parametrize("earlier, loads_again", [("SUCCEEDED", False), ("CANCELLED", True)])
def test_a_stopped_load_that_committed_after_all_is_not_run_again(stubbed, earlier, loads_again):
    """Ctrl-C stops the load, but a stop is asynchronous: the next run first asks how it ended."""
    from botocore.stub import ANY

    stub = stubbed.stub
    stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": earlier},
                                                                 "Statistics": {"DataScannedInBytes": 5}}},
                      {"QueryExecutionId": "q0"})
    if loads_again:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q1"}, {
            "QueryString": ANY, "ClientRequestToken": ANY, "WorkGroup": ANY, "QueryExecutionContext": ANY,
            "ResultConfiguration": ANY})
        stub.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}},
                          {"QueryExecutionId": "q1"})
    eb = stubbed.make(id="e1", export_time=1_700_000_000.0, failed_query_id="q0")
    with stub:
        info = eb.load("src")
    stub.assert_no_pending_responses()
    assert info["query_id"] == ("q1" if loads_again else "q0")
    assert saved_export(stubbed.store)["loaded"] is True


def test_a_checkpoint_file_of_an_older_version_is_moved_into_the_state_file(tmp_path):
    """s3tstream 0.1 kept the checkpoint in .s3tstream/<stack>.backfill.json: an upgrade mid-backfill continues it."""
    from s3tstream.data.backfill.jobs import Checkpoints

    cfg = _cfg()
    cfg.path = tmp_path / "s3tstream.toml"
    old = tmp_path / ".s3tstream" / "shop.backfill.json"
    old.parent.mkdir()
    doc = Checkpoints(cfg).new("export", export={"arn": "arn:x", "id": "x"})
    old.write_text(json.dumps(doc))
    got = Checkpoints(cfg).load()
    assert got["export"] == {"arn": "arn:x", "id": "x"} and got["run_id"] == doc["run_id"]
    assert not old.exists() and json.loads(cfg.state_path.read_text())["jobs"]["backfill"]["run_id"] == doc["run_id"]


def test_a_state_file_with_todays_checkpoint_form_is_read_into_the_typed_model(tmp_path):
    """The on-disk form written before the checkpoints were typed (a raw state file, version 2)
    is read as it is (unknown fields kept); a field of the wrong type is refused by name."""
    from s3tstream.data.backfill.jobs import Checkpoints, JobCheckpoint
    from s3tstream.errors import StateError

    cfg = _cfg()
    cfg.path = tmp_path / "s3tstream.toml"
    job = {"version": 1, "stack": "shop", "region": "us-east-1", "table": "shop", "stream": "shop-changes",
           "mode": "upsert", "strategy": "scan", "run_id": "0123456789ab", "started_at": 1764900000.5,
           "created_at": "2025-12-05T02:00:00+00:00", "updated_at": "2025-12-05T02:01:00+00:00", "phase": "scan",
           "segments": 2, "segment_state": [{"lek": {"pk": {"S": "k1"}}, "read": 10, "sent": 10, "done": False},
                                            {"lek": None, "read": 7, "sent": 6, "done": True}],
           "skipped_oversize": 1, "a_field_from_a_newer_version": {"x": 1}}
    path = cfg.state_path
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 2, "stack": "shop", "region": "us-east-1", "account": None,
                                "resources": [], "jobs": {"backfill": job}}))
    got = Checkpoints(cfg).load()
    assert got == job  # every field, as it was
    typed = JobCheckpoint.model_validate(got)
    assert typed.segment_state[0].lek == {"pk": {"S": "k1"}} and typed.segment_state[1].done is True
    assert typed.phase == "scan" and typed.skipped_oversize == 1
    bad = dict(job, segment_state=[{"lek": None, "read": "many", "sent": 0, "done": False}])
    path.write_text(json.dumps({"version": 2, "stack": "shop", "region": "us-east-1", "resources": [],
                                "jobs": {"backfill": bad}}))
    with pytest.raises(StateError, match=r"field segment_state\.0\.read") as e:
        Checkpoints(cfg).load()
    assert "--restart" in e.value.hint


def test_a_completed_backfill_is_recorded_and_a_rerun_sends_nothing(tmp_path):
    from s3tstream.data.backfill import run
    from s3tstream.data.backfill.jobs import Checkpoints

    cfg = _cfg()
    cfg.path = tmp_path / "s3tstream.toml"
    store = Checkpoints(cfg)
    doc = store.new("scan", segments=1, segment_state=[{"lek": None, "read": 5, "sent": 5, "done": True}])
    store.complete(doc, total_read=5, total_sent=5, table_created="2026-01-01T00:00:00+00:00")
    assert not store.exists()  # no job in progress: --abort has nothing to give up
    calls = []
    created = [(2026, 1, 1)]

    class GoesOn(Exception):
        pass

    class ReadOnly:
        def client(self, name):
            assert name == "dynamodb", f"a completed backfill calls nothing else ({name})"
            return self

        def describe_table(self, TableName):
            calls.append(TableName)
            from datetime import UTC, datetime

            return {"Table": {"CreationDateTime": datetime(*created[0], tzinfo=UTC), "ItemCount": 5}}

        def arn(self, *a):
            raise GoesOn  # the backfill's own checks (the stream's ARN): it runs

    res = run(cfg, ReadOnly())
    assert res.already_done["total_sent"] == 5 and res.items_sent == 0 and "--restart" in res.notes[0]
    assert store.load()["phase"] == "done" and calls == ["shop"]
    created[0] = (2026, 2, 1)  # the table was recreated since: its items need a backfill of their own
    said: list[str] = []
    with pytest.raises(GoesOn):
        run(cfg, ReadOnly(), progress=said.append)
    assert "earlier table" in said[0]
