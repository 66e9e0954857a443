"""`s3tstream health`: the checks (pure), the dashboard (rendered once with a fake clock), and the
whole command through the CLI against the sandbox, whose data plane publishes the metrics."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from rich.console import Console

from s3tstream.cli.commands import health as cmd
from s3tstream.config import model as c
from s3tstream.data.health import checks as H, parse_since
from s3tstream.data.health.collect import Observations, period_for
from s3tstream.errors import UsageError
from s3tstream.sandbox import client as sandbox_client

NOW = dt.datetime(2026, 12, 6, 2, 0, tzinfo=dt.timezone.utc)
PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"
COLUMNS = '{ name = "pk", type = "string", required = true }, { name = "qty", type = "long", required = true }'


def cfg_for(**alarms):
    return c.build({"stack": {"name": "shop"}, "alarms": alarms,
                    "table": {"columns": [{"name": "pk", "type": "string", "required": True}]}})


def obs(series=None, **kw):
    start = NOW - dt.timedelta(hours=1)
    base = dict(start=start, end=NOW, period=60, error_bucket="shop-err", error_prefix="errors/", error_objects=0,
                lambda_timeout_s=60.0,
                table={"snapshots": 10, "data_files": 5, "delete_files": 0, "records": 50, "total_bytes": 5 * 2**20,
                       "avg_file_mb": 1.0, "last_commit": None},
                maintenance={"icebergCompaction": {"status": "Successful"}})
    base.update(kw)
    o = Observations(**base)
    t = start.timestamp() + 30
    o.series = {k: [(t + 60 * i, float(v)) for i, v in enumerate(vals)] for k, vals in (series or {}).items()}
    return o


HEALTHY = {"freshness": [3, 4], "records_read": [10, 5], "delivered_rows": [10, 5], "failed_rows": [0, 0],
           "lambda_invocations": [2, 1], "lambda_errors": [0, 0], "lambda_duration": [120, 80], "incoming_records": [10, 5]}


# ------------------------------------------------------------------ checks (pure)
def test_a_quiet_pipeline_is_healthy_with_its_freshness():
    r = H.evaluate(cfg_for(), obs(HEALTHY))
    assert r.verdict == "healthy" and [ch.status for ch in r.checks] == ["ok"] * 5
    doc = r.to_json()
    assert doc["verdict"] == "healthy" and doc["checks"][0] == {**doc["checks"][0], "name": "freshness", "value": 4.0}
    assert {k for k in doc["checks"][0]} >= {"name", "status", "value", "detail"}
    assert doc["series"]["freshness"][:2] == [3.0, 4.0] and len(doc["series"]["freshness"]) == 60


def test_failed_rows_or_error_objects_fail_delivery_naming_the_bucket():
    r = H.evaluate(cfg_for(), obs({**HEALTHY, "failed_rows": [0, 2]}, error_objects=1))
    d = next(ch for ch in r.checks if ch.name == "delivery")
    assert r.verdict == "failing" and d.status == "fail" and d.value == 2
    assert "s3://shop-err/errors/" in d.detail and "s3tstream errors" in d.action
    # the threshold is [alarms] failed_records, the error bucket's objects always count
    assert H.check_delivery(cfg_for(failed_records=5), obs({"failed_rows": [2]})).status == "ok"
    assert H.check_delivery(cfg_for(failed_records=5), obs({"failed_rows": [2]}, error_objects=1)).status == "fail"


def test_freshness_warns_past_buffering_and_fails_past_the_alarm_threshold():
    cfg = cfg_for(freshness_seconds=900)
    assert H.freshness_limits(cfg) == (60.0, 900.0)  # 2 x (15 s + 15 s) is under a minute
    assert H.check_freshness(cfg, obs({"freshness": [30]})).status == "ok"
    assert H.check_freshness(cfg, obs({"freshness": [120]})).status == "warn"
    assert H.check_freshness(cfg, obs({"freshness": [901]})).status == "fail"
    # the stream's iterator age counts too (a Firehose that reads nothing publishes no freshness)
    assert H.check_freshness(cfg, obs({"iterator_age": [1_000_000]})).status == "fail"
    idle = H.check_freshness(cfg, obs({}))
    assert idle.status == "ok" and idle.value is None and "nothing is waiting" in idle.detail


def test_transform_errors_throttles_and_duration_against_the_timeout():
    cfg = cfg_for()
    assert H.check_transform(cfg, obs({"lambda_errors": [1]})).status == "fail"
    assert H.check_transform(cfg, obs({"lambda_throttles": [1]})).status == "warn"
    assert H.check_transform(cfg, obs({"lambda_duration": [50_000]})).status == "warn"  # 83% of 60 s
    t = H.check_transform(cfg, obs({"lambda_duration": [60_000]}))
    assert t.status == "fail" and "timed out" in t.action


def test_stream_throttles():
    assert H.check_stream(cfg_for(), obs({"write_throttles": [3], "incoming_records": [9]})).status == "fail"
    assert H.check_stream(cfg_for(stream_throttles=5), obs({"write_throttles": [3]})).status == "warn"


def test_table_thresholds_say_when_compaction_lags():
    cfg = cfg_for()
    small = {"snapshots": 10, "data_files": 400, "delete_files": 0, "records": 1, "total_bytes": 0, "avg_file_mb": 2.0,
             "last_commit": None}
    t = H.check_table(cfg, obs(table=small))
    assert t.status == "warn" and "compaction lags" in t.detail
    deletes = {**small, "data_files": 20, "delete_files": 30, "avg_file_mb": 100.0}
    assert "delete files pile up" in H.check_table(cfg, obs(table=deletes)).detail
    failed = H.check_table(cfg, obs(maintenance={"icebergCompaction": {"status": "Failed", "failure": "KMS key disabled"}}))
    assert failed.status == "fail" and "KMS key disabled" in failed.detail
    many = {**small, "data_files": 5, "avg_file_mb": 100.0, "snapshots": H.snapshot_limit(cfg) + 1}
    assert "snapshot expiry lags" in H.check_table(cfg, obs(table=many)).detail
    unread = H.check_table(cfg, obs(table=None, notes={"table": "cannot read the lake table"}))
    assert unread.status == "warn" and "cannot read" in unread.detail


def test_since_and_period():
    assert parse_since("15m", NOW) == NOW - dt.timedelta(minutes=15)
    assert parse_since("2026-12-06T01:00:00Z", NOW) == NOW - dt.timedelta(hours=1)
    for bad in ("soon", "10s", "20d"):
        with pytest.raises(UsageError):
            parse_since(bad, NOW)
    assert period_for(3600) == 60 and period_for(86400) == 1440


# ------------------------------------------------------------------ the dashboard
def test_sparkline_scales_to_the_window_and_leaves_gaps_blank():
    assert cmd.sparkline([0, 5, None, 10]) == "▁▅ █"
    assert cmd.sparkline([None, None]) == "  " and cmd.sparkline([0, 0]) == "▁▁"


def test_watch_renders_the_dashboard_once_with_a_fake_clock():
    report = H.evaluate(cfg_for(), obs({**HEALTHY, "failed_rows": [0, 1]}, error_objects=1))
    console = Console(record=True, width=140, force_terminal=False)
    out = cmd.Output()
    out.out = console
    slept: list[float] = []
    got = cmd.watch(lambda: report, out, 5, clock=lambda: NOW, sleep=slept.append, iterations=1)
    text = console.export_text()
    assert got is report and slept == []
    assert "s3tstream health shop  FAILING  2026-12-06 02:00:00 UTC" in text
    assert "DeliveryToIceberg.DataFreshness" in text and "▁█" in text and "s3tstream errors" in text
    cmd.watch(lambda: report, out, 5, clock=lambda: NOW, sleep=slept.append, iterations=3)
    assert slept == [5, 5]


# ------------------------------------------------------------------ through the CLI on the sandbox
@pytest.fixture(autouse=True)
def _instant_data_plane(monkeypatch):
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")


def drain(stack):
    sandbox_client.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=30)


@pytest.mark.sandbox
def test_health_is_healthy_after_test_insert_and_failing_after_transform_failures(stack, calls):
    stack.write(extra=PIPELINE, columns=COLUMNS)
    stack.cli("up")
    ti = stack.json("test-insert", "--count", "4", "--updates", "1", "--deletes", "1", "--engine", "local",
                    "--keep-items")  # the table check below reads the rows it wrote
    assert ti["freshness_seconds"] is not None
    calls.clear()
    doc = stack.json("health")
    assert calls.mutating() == [] and calls.counts()["cloudwatch:GetMetricData"] == 1
    assert doc["verdict"] == "healthy", json.dumps(doc["checks"], indent=1)
    fresh = next(ch for ch in doc["checks"] if ch["name"] == "freshness")
    assert fresh["status"] == "ok" and fresh["value"] is not None and fresh["value"] >= 0
    delivery = next(ch for ch in doc["checks"] if ch["name"] == "delivery")
    assert delivery["metrics"]["rows_delivered"] >= 6 and delivery["metrics"]["records_read"] >= 6
    table = next(ch for ch in doc["checks"] if ch["name"] == "table")
    assert table["metrics"]["data_files"] >= 1 and table["metrics"]["maintenance"]["icebergCompaction"]["status"] == "Not_Yet_Run"
    transform = next(ch for ch in doc["checks"] if ch["name"] == "transform")
    assert transform["metrics"]["invocations"] >= 1 and transform["metrics"]["timeout_ms"] == 60_000

    ddb = stack.client("dynamodb")
    for pk in ("bad-1", "bad-2"):
        ddb.put_item(TableName=stack.name, Item={"pk": {"S": pk}})  # no qty: the transform refuses them
    drain(stack)
    r = stack.cli("health", "--output", "json", ok=False)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    delivery = next(ch for ch in doc["checks"] if ch["name"] == "delivery")
    assert doc["verdict"] == "failing" and delivery["status"] == "fail" and delivery["value"] == 2
    # one flush usually carries both refused records (one error object); under load they may land apart
    objects = stack.json("errors")["objects"]
    assert objects in (1, 2) and delivery["metrics"]["error_objects"] == objects
    assert f"s3://{stack.name}-err-" in delivery["detail"]
    text = stack.cli("health", ok=False).stdout
    assert "FAILING" in text and "s3tstream errors" in text

    # a failed compaction job (as S3 Tables reports it) fails the table check
    from s3tstream.sandbox.client import call

    s3t = stack.client("s3tables")
    bucket = next(b["arn"] for b in s3t.list_table_buckets(prefix=stack.name)["tableBuckets"])
    table_arn = s3t.get_table(tableBucketARN=bucket, namespace=stack.name, name=stack.name)["tableARN"]
    call(stack.endpoint_url, "POST", "s3tables/maintenance-job-status",
         {"tableARN": table_arn, "type": "icebergCompaction", "status": "Failed", "failureMessage": "Internal error"})
    status = s3t.get_table_maintenance_job_status(tableBucketARN=bucket, namespace=stack.name, name=stack.name)["status"]
    assert status["icebergCompaction"]["status"] == "Failed" and status["icebergSnapshotManagement"]["status"] == "Not_Yet_Run"
    table = next(ch for ch in stack.json("health", ok=False)["checks"] if ch["name"] == "table")
    assert table["status"] == "fail" and "Internal error" in table["detail"]


def test_bad_since_exits_2_before_any_aws_call(stack, calls):
    r = stack.cli("health", "--since", "yesterday", ok=False)
    assert r.exit_code == 2 and "--since" in r.stderr and not calls.calls
    r = stack.cli("health", "--watch", "--output", "json", ok=False)
    assert r.exit_code == 2


# ------------------------------------------------------------------ the sandbox's metrics (in process)
def test_sandbox_publishes_growing_freshness_while_a_flush_is_stuck(monkeypatch):
    """A flush that keeps failing (permissions, say) delivers nothing: its records' age is the
    freshness, published about once a second, and nothing is counted as delivered."""
    import time
    from types import SimpleNamespace

    from moto import mock_aws

    from s3tstream.sandbox.dataplane import buffering, metrics

    with mock_aws():
        from moto.cloudwatch.models import cloudwatch_backends

        metrics.reset()
        cfg = SimpleNamespace(key=("a", "r", "s", 1.0), name="s", account_id="123456789012", region="us-east-1",
                              created=0.0, source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/k")
        st = SimpleNamespace(totals={"read": 3}, checkpoints=buffering.Checkpoints(), buffer=buffering.Buffer(),
                             pending=SimpleNamespace(oldest_arrival_ms=int((time.time() - 42) * 1000)))
        clock = [1000.0]
        monkeypatch.setattr(metrics.time, "monotonic", lambda: clock[0])
        metrics.after_step(cfg, st, None)
        metrics.after_step(cfg, st, None)  # same second: no second freshness datapoint
        clock[0] += metrics.GAUGE_EVERY
        metrics.after_step(cfg, st, None)
        data = cloudwatch_backends["123456789012"]["us-east-1"].metric_data
        fresh = [d.value for d in data if d.name == "DeliveryToIceberg.DataFreshness"]
        assert len(fresh) == 2 and all(41 < v < 60 for v in fresh)
        assert [d.value for d in data if d.name == "DataReadFromKinesisStream.Records"] == [3.0]
        assert not [d for d in data if d.name == "DeliveryToIceberg.SuccessfulRowCount"]
        assert {(x.name, x.value) for d in data for x in d.dimensions} == {("DeliveryStreamName", "s")}
        metrics.reset()


@pytest.mark.sandbox
def test_health_of_a_stack_not_up_yet_says_what_is_missing(stack):
    r = stack.cli("health", "--output", "json", ok=False)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    by = {ch["name"]: ch for ch in doc["checks"]}
    assert doc["verdict"] == "degraded"
    assert by["table"]["status"] == "warn" and "s3tstream up" in by["table"]["action"]
    assert by["transform"]["status"] == "warn" and stack.name in by["transform"]["detail"]
    assert by["delivery"]["status"] == "warn" and "error bucket" in by["delivery"]["action"]


def test_sandbox_freshness_of_a_delivered_flush_ignores_records_firehose_skipped(monkeypatch):
    """Records put before the delivery stream existed are never read: the first flush's
    freshness is the age of its own oldest record."""
    import time
    from types import SimpleNamespace

    from moto import mock_aws

    from s3tstream.sandbox.dataplane import buffering, metrics

    now = time.time()
    shard = SimpleNamespace(records={1: SimpleNamespace(created_at=now - 3600), 2: SimpleNamespace(created_at=now - 5),
                                     3: SimpleNamespace(created_at=now - 4)})
    stream = SimpleNamespace(shards={"shardId-0": shard}, stream_name="k")
    with mock_aws():
        from moto.cloudwatch.models import cloudwatch_backends

        metrics.reset()
        cfg = SimpleNamespace(key=("a", "r", "s2", 1.0), name="s2", account_id="123456789012", region="us-east-1",
                              created=now - 10, source_arn="arn:aws:kinesis:us-east-1:123456789012:stream/k")
        cp = buffering.Checkpoints()
        cp.mark_read("shardId-0", 3)
        cp.mark_done({"shardId-0": 3})
        st = SimpleNamespace(totals={"read": 2, "delivered": 2}, checkpoints=cp, buffer=buffering.Buffer(), pending=None)
        metrics.after_step(cfg, st, stream)
        data = cloudwatch_backends["123456789012"]["us-east-1"].metric_data
        [fresh] = [d.value for d in data if d.name == "DeliveryToIceberg.DataFreshness"]
        assert 5 <= fresh < 60
        assert [d.value for d in data if d.name == "DeliveryToIceberg.SuccessfulRowCount"] == [2.0]
        [age] = [d.value for d in data if d.name == "GetRecords.IteratorAgeMilliseconds"]
        assert 4000 <= age < 60000
        metrics.reset()
