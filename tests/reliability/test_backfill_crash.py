"""Crash-resume of the export backfill: `backfill --strategy export` killed (os._exit, no
cleanup) right after one chosen mutating call, then `backfill` again must finish the same job
(one export, one load), leave source and lake equal, and leave nothing behind: no checkpoint,
no temporary Glue database, no export files. One stack serves every point; before each, the
lake loses rows the export must bring back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from s3tstream.sandbox import client as sc
from tests.support.crash import CRASH_EXIT, ENV_LOG

pytestmark = pytest.mark.sandbox

ACCOUNT, REGION = "123456789012", "us-east-1"
ITEMS = 300
POINTS = [
    "dynamodb:UpdateContinuousBackups",  # PITR turned on, not yet recorded as ours
    "dynamodb:ExportTableToPointInTime",  # the export started, its ARN not yet recorded
    "glue:CreateTable",  # the temporary table made, not yet recorded
    "athena:StartQueryExecution",  # the load running, its id not yet recorded
    "glue:DeleteDatabase",  # loaded, the temporary database gone, not yet recorded
    "s3:DeleteObjects",  # the export files gone, the checkpoint not yet dropped
]


@pytest.fixture(scope="module")
def env(sandbox, tmp_path_factory):
    from tests.conftest import StackEnv, teardown

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
        e = StackEnv(dir=tmp_path_factory.mktemp("bfcrash"), endpoint_url=sandbox.endpoint_url,
                     name="t" + uuid.uuid4().hex[:8])
        ddb = e.client("dynamodb")
        ddb.create_table(TableName=e.name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        for i in range(0, ITEMS, 25):
            ddb.batch_write_item(RequestItems={e.name: [{"PutRequest": {"Item": {"pk": {"S": f"k{j:04d}"}, "n": {"N": str(j)}}}}
                                                        for j in range(i, i + 25)]})
        e.write(extra="[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n",
                columns='{ name = "pk", type = "string", required = true }, { name = "n", type = "long" }')
        e.cli("up")
        try:
            yield e
        finally:
            teardown(e)


def lose_rows(env, n: int) -> None:
    """Take n rows out of the lake table, as if those items had never been streamed."""
    import pyarrow as pa

    from s3tstream.sandbox.dataplane.iceberg_writer import catalogs_for, find_bucket_arn

    arn = find_bucket_arn(ACCOUNT, REGION, f"{env.name}-lake")
    tbl = catalogs_for(env.endpoint_url).catalog(ACCOUNT, REGION, arn).load_table((env.name, env.name))
    rows = tbl.scan().to_arrow()
    keys = rows.column("pk").to_pylist()
    lost = set(sorted(keys)[:n])
    if not lost:
        return  # an empty lake (the first point): the export brings every item
    with tbl.transaction() as tx:
        tx.overwrite(rows.filter(pa.array([k not in lost for k in keys], type=pa.bool_())))


def killed(env, point: str, *argv: str) -> tuple[int, list[str], str]:
    log = env.dir / "calls.log"
    log.unlink(missing_ok=True)
    run_env = {**os.environ, "S3TSTREAM_CONFIG": str(env.config_path), ENV_LOG: str(log)}
    r = subprocess.run([sys.executable, "-m", "tests.support.crash", point, *argv], env=run_env,
                       capture_output=True, text=True, timeout=300, cwd=env.dir)
    calls = [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []
    return r.returncode, calls, r.stderr


def pitr_off(env) -> None:
    env.client("dynamodb").update_continuous_backups(
        TableName=env.name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})


@pytest.mark.parametrize("point", POINTS)
def test_export_backfill_killed_after_a_call_resumes_and_leaves_nothing(env, point):
    pitr_off(env)
    lose_rows(env, 25)
    ddb, athena = env.client("dynamodb"), env.client("athena")
    exports_before = len(ddb.list_exports()["ExportSummaries"])
    queries_before = set(athena.list_query_executions()["QueryExecutionIds"])
    rc, calls, err = killed(env, point, "backfill", "--strategy", "export", "--enable-pitr", "--restart")
    assert rc == CRASH_EXIT and calls and calls[-1] == point, (rc, calls, err[-2000:])

    doc = env.json("backfill")  # continues the export backfill in progress
    assert doc["strategy"] == "export" and doc["resumed"] is True and doc["total_read"] == ITEMS, doc
    # PITR was off: the killed run turned it on, and the rerun still knows it was the backfill
    assert doc["export"]["pitr_enabled_by_backfill"] is True
    assert len(ddb.list_exports()["ExportSummaries"]) == exports_before + 1  # the rerun took over the export
    new = [athena.get_query_execution(QueryExecutionId=q)["QueryExecution"]
           for q in set(athena.list_query_executions()["QueryExecutionIds"]) - queries_before]
    merges = [q for q in new if q["Query"].startswith("MERGE INTO")]
    assert [q["Status"]["State"] for q in merges] == ["SUCCEEDED"]  # one load, never two

    sc.firehose_wait_drained(env.endpoint_url, f"{env.name}-to-lake", timeout=60)
    v = env.json("verify")
    assert v["ok"] is True, v
    state = json.loads(env.state_path.read_text())
    assert [j.get("phase") for j in state.get("jobs", {}).values()] == ["done"]  # only the record that it completed
    assert not [d for d in env.client("glue").get_databases()["DatabaseList"] if d["Name"].endswith("_backfill")]
    bucket = f"{env.name}-ath-{ACCOUNT}-{REGION}"
    assert env.client("s3").list_objects_v2(Bucket=bucket, Prefix="backfill/")["KeyCount"] == 0
