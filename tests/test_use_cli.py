"""Using the pipeline through the real CLI against the sandbox's data plane: put-item, query,
test-insert, verify (--repair) and errors (replay). Each test provisions its own stack."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from s3tstream.sandbox import client as sandbox_client


PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"
TYPED_COLUMNS = ", ".join([
    '{ name = "pk", type = "string", required = true }',
    '{ name = "price", type = "decimal(12,4)" }',
    '{ name = "qty", type = "long" }',
    '{ name = "ratio", type = "double" }',
    '{ name = "ok", type = "boolean" }',
    '{ name = "day", type = "date" }',
    '{ name = "at", type = "timestamp" }',
    '{ name = "blob", type = "binary" }',
    '{ name = "tags", type = "list<string>" }',
    '{ name = "addr", type = "struct<city:string,zip:int>" }',
])


@pytest.fixture(scope="module", autouse=True)
def _instant_data_plane():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
        yield


@pytest.fixture(scope="module")
def typed(request, sandbox, tmp_path_factory):
    """One provisioned stack with many column types, shared by the tests that only add their own keys."""
    import uuid

    cls = next(p.StackEnv for p in request.config.pluginmanager.get_plugins() if hasattr(p, "StackEnv"))
    env = cls(dir=tmp_path_factory.mktemp("typed"), endpoint_url=sandbox.endpoint_url, name="t" + uuid.uuid4().hex[:8])
    provision(env, TYPED_COLUMNS)
    return env


def provision(stack, columns=None, extra=""):
    stack.write(extra=PIPELINE + extra, columns=columns)
    stack.cli("up")


def drain(stack):
    sandbox_client.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=30)


def lake_table(stack):
    from s3tstream.config import model as config
    from s3tstream.aws.client import Aws
    from s3tstream.lake.catalog import S3TablesCatalog
    from s3tstream.lake.query import bucket_arn

    cfg = config.load(stack.config_path)
    aws = Aws(cfg)
    return S3TablesCatalog.for_stack(aws, bucket_arn(cfg, aws)).load_table((cfg.names.namespace, cfg.names.table))


def scan_source(stack):
    return stack.client("dynamodb").scan(TableName=stack.name)["Items"]


# ------------------------------------------------------------------ put-item + query
@pytest.mark.sandbox
def test_put_item_then_query_shows_exact_values(typed):
    item = ('{"pk": "a", "price": 12.3400, "qty": 9007199254740993, "ratio": 0.1, "ok": true, "day": "2024-05-01",'
            ' "at": "2024-05-01T12:00:00.123456Z", "blob": "aGk=", "tags": ["x", "y"], "addr": {"city": "Oslo", "zip": 150}}')
    doc = typed.json("put-item", "--item", item)
    assert doc == {"table": typed.name, "written": 1, "keys": [{"pk": "a"}]}
    drain(typed)
    res = typed.cli("query", f"SELECT * FROM {typed.name} WHERE pk = 'a'", "--output", "json")
    out = json.loads(res.stdout, parse_float=Decimal)
    assert out["columns"][:3] == ["pk", "price", "qty"] and out["data_scanned_bytes"] > 0
    [r] = out["rows"]
    assert r["price"] == Decimal("12.3400") and '"price": 12.3400' in res.stdout  # exact token, scale kept
    assert r["qty"] == 9007199254740993  # beyond a double's exact range
    assert r["ratio"] == Decimal("0.1") and r["ok"] is True and r["day"] == "2024-05-01"
    assert r["at"] == "2024-05-01T12:00:00.123456"  # UTC, no zone (timestamp)
    assert r["blob"] == "aGk="
    csv_out = typed.cli("query", f"SELECT pk, price FROM {typed.name} WHERE pk = 'a'", "--output", "csv")
    assert csv_out.stdout.splitlines() == ["pk,price", "a,12.3400"]
    assert "1 row(s); data scanned:" in csv_out.stderr
    local = typed.json("query", f"SELECT pk, price FROM {typed.name} WHERE pk = 'a'", "--engine", "local")
    assert local["rows"] == [{"pk": "a", "price": 12.34}] and local["engine"] == "local"


@pytest.mark.sandbox
def test_bad_item_exits_2_and_writes_nothing(typed, tmp_path):
    f = tmp_path / "items.jsonl"
    f.write_text('{"pk": "bad-a", "qty": 1}\n\n{"pk": "bad-b", "qty": "many"}\n{"qty": 2}\n')
    r = typed.cli("put-item", "--file", str(f), "--output", "json", ok=False)
    assert r.exit_code == 2
    err = json.loads(r.stdout)["error"]
    assert "2 bad item(s)" in err["message"] and "line 3: qty" in err["message"]
    assert "line 4: partition key attribute 'pk' is missing" in err["message"]
    assert not [i for i in scan_source(typed) if i["pk"]["S"].startswith("bad-")]
    r = typed.cli("put-item", ok=False)
    assert r.exit_code == 2 and "no items given" in r.stderr


@pytest.mark.sandbox
def test_dynamodb_json_and_step_put_item_and_step_query(typed):
    typed.json("put-item", "--dynamodb-json", "--item", '{"pk": {"S": "d"}, "qty": {"N": "7"}}')
    doc = typed.json("step", "put-item")
    sample = doc["items"][0]["pk"]
    assert doc["written"] == 1 and sample.startswith("s3t-test-sample-")
    drain(typed)
    default = typed.json("step", "query")
    assert "pk" in default["columns"] and 1 <= len(default["rows"]) <= 10
    rows = typed.json("query", f"SELECT pk, qty FROM {typed.name} WHERE pk IN ('d', '{sample}') ORDER BY pk")["rows"]
    assert [r["pk"] for r in rows] == sorted(["d", sample]) and {"pk": "d", "qty": 7} in rows


@pytest.mark.sandbox
def test_query_failure_is_exit_1_with_athenas_reason(typed):
    r = typed.cli("query", "SELECT nope FROM " + typed.name, "--output", "json", ok=False)
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert err["code"] == "query-failed" and "nope" in err["message"]
    assert typed.cli("query", "   ", ok=False).exit_code == 2
    assert typed.cli("query", "--engine", "presto", ok=False).exit_code == 2


@pytest.mark.sandbox
def test_ctrl_c_stops_a_running_athena_query(typed):
    from s3tstream.config import model as config
    from s3tstream.aws.client import Aws
    from s3tstream.errors import Interrupted
    from s3tstream.lake.query import open_engine

    cfg = config.load(typed.config_path)
    eng = open_engine(cfg, Aws(cfg))

    def ctrl_c(_):
        raise KeyboardInterrupt

    eng.sleep = ctrl_c
    sandbox_client.athena_hold(typed.endpoint_url, True)  # the query stays QUEUED until stopped
    try:
        with pytest.raises(Interrupted) as e:
            eng.run(f"SELECT * FROM {typed.name}")
    finally:
        sandbox_client.athena_hold(typed.endpoint_url, False)
    assert e.value.exit_code == 130
    qid = e.value.message.rsplit(" ", 1)[-1]
    state = typed.client("athena").get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]
    assert state == "CANCELLED"


@pytest.mark.sandbox
def test_results_bucket_is_created_and_tagged(typed):
    typed.cli("query", f"SELECT count(*) AS n FROM {typed.name}")
    s3 = typed.client("s3")
    bucket = f"{typed.name}-ath-123456789012-us-east-1"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags["s3tstream:stack"] == typed.name
    assert s3.list_objects_v2(Bucket=bucket, Prefix="results/")["KeyCount"] >= 1
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rules[0]["Expiration"]["Days"] == 7

    # what `down` should call: only this stack's (tagged) bucket is removed, objects first
    from s3tstream.config import model as config
    from s3tstream.aws.client import Aws
    from s3tstream.lake.query import remove_results_bucket

    cfg = config.load(typed.config_path)
    assert remove_results_bucket(cfg, Aws(cfg)) is True
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert remove_results_bucket(cfg, Aws(cfg)) is False


# ------------------------------------------------------------------ test-insert
@pytest.mark.sandbox
def test_test_insert_passes_and_reports_latencies(typed):
    doc = typed.json("test-insert", "--count", "12", "--interval", "0.02", "--timeout", "60")
    assert doc["passed"] is True and doc["counts"] == {"inserts": 12, "updates": 3, "deletes": 3}
    for kind, n in (("insert", 12), ("update", 3), ("delete", 3)):
        s = doc["latency_seconds"][kind]
        assert s["count"] == n and 0 <= s["p50"] <= s["p95"] <= s["max"] < 60
    run = doc["run_id"]
    # by default the run removes its test items: from the source, and (the deletes flow) from the lake
    assert doc["cleaned_up"] == {"deleted_from_source": 12, "gone_from_lake": True, "left_in_lake": []}
    rows = typed.json("query", f"SELECT count(*) AS n FROM {typed.name} WHERE pk LIKE 's3t-test-{run}-%'")["rows"]
    assert rows == [{"n": 0}]
    assert not [i for i in typed.client("dynamodb").scan(TableName=typed.name)["Items"] if run in i["pk"]["S"]]
    kept = typed.json("test-insert", "--count", "4", "--interval", "0.02", "--keep-items")
    assert "cleaned_up" not in kept
    rows = typed.json("query", f"SELECT count(*) AS n FROM {typed.name} WHERE pk LIKE 's3t-test-{kept['run_id']}-%'")["rows"]
    assert rows == [{"n": 3}]  # 4 inserted, 1 deleted by the run
    text = typed.cli("test-insert", "--count", "4", "--interval", "0.02")
    assert "PASS" in text.stdout and "p95" in text.stdout and "removed the run's 4 test item(s)" in text.stdout


@pytest.mark.sandbox
def test_test_insert_times_out_listing_what_is_missing(stack):
    provision(stack)
    stack.client("firehose").delete_delivery_stream(DeliveryStreamName=f"{stack.name}-to-lake")
    r = stack.cli("test-insert", "--count", "3", "--interval", "0.01", "--timeout", "0.05", "--output", "json", ok=False)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["passed"] is False and doc["timed_out_waiting_for"] == "inserts"
    assert len(doc["missing"]["inserts"]) == 3 and doc["error"]["code"] == "timeout"


# ------------------------------------------------------------------ verify
@pytest.mark.sandbox
def test_verify_reports_an_injected_difference_and_repair_fixes_it(stack):
    import pyarrow as pa
    from pyiceberg.expressions import EqualTo

    provision(stack, TYPED_COLUMNS)
    items = [json.dumps({"pk": k, "price": Decimal("1.5") + i, "qty": i, "tags": [k]}, default=str)
             .replace('"1.5"', "1.5") for i, k in enumerate("abcde")]
    stack.cli("put-item", *sum((["--item", it] for it in items), []))
    drain(stack)
    assert stack.json("verify")["ok"] is True

    # behind the pipeline's back: delete b, change c, add an extra row z
    tbl = lake_table(stack)
    tbl.delete(EqualTo("pk", "b"))
    tbl = lake_table(stack)
    tbl.delete(EqualTo("pk", "c"))
    schema = tbl.schema().as_arrow()
    rows = [{"pk": "c", "price": Decimal("99.0000"), "qty": 2, "tags": ["c"]}, {"pk": "z", "qty": 1}]
    lake_table(stack).append(pa.Table.from_pylist(rows, schema=schema))

    r = stack.cli("verify", "--settle", "0", "--output", "json", ok=False)
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["counts"]["missing"] == 1 and doc["counts"]["extra"] == 1 and doc["counts"]["differing"] == 1
    assert doc["examples"]["missing"] == [{"pk": "b"}] and doc["examples"]["extra"] == [{"pk": "z"}]
    assert doc["examples"]["differing"] == [{"key": {"pk": "c"}, "columns": ["price"]}]
    text = stack.cli("verify", "--settle", "0", ok=False)
    assert "missing: {\"pk\":\"b\"}" in text.stdout and "--repair" in text.stderr

    doc = json.loads(stack.cli("verify", "--repair", "--settle", "0", "--output", "json", ok=False).stdout)
    assert doc["repair"] == {"sent": 3, "inserts": 2, "removes": 1, "stream": f"{stack.name}-changes", "not_sent": []}
    drain(stack)
    clean = stack.json("verify")
    assert clean["ok"] is True and clean["counts"]["matching"] == 5 and clean["counts"]["lake_rows"] == 5
    assert stack.json("verify", "--engine", "local", "--segments", "3")["ok"] is True


# ------------------------------------------------------------------ errors
@pytest.mark.sandbox
def test_failed_record_is_listed_then_replayed_after_the_fix(stack):
    cols = '{ name = "pk", type = "string", required = true }, { name = "qty", type = "long", required = true }'
    provision(stack, cols)
    ddb = stack.client("dynamodb")
    ddb.put_item(TableName=stack.name, Item={"pk": {"S": "ok"}, "qty": {"N": "1"}})
    ddb.put_item(TableName=stack.name, Item={"pk": {"S": "noqty"}})  # the transform refuses it
    drain(stack)
    doc = stack.json("errors")
    assert doc["records"] == 1 and doc["prefix"] == "errors/"
    [g] = doc["groups"]
    assert g["count"] == 1 and g["first"] and g["last"] and g["objects"] == 1
    assert g["example"]["keys"] == {"pk": "noqty"} and g["example"]["eventName"] == "INSERT"
    assert "noqty" in stack.cli("errors").stdout
    v = json.loads(stack.cli("verify", "--settle", "0", "--output", "json", ok=False).stdout)
    assert v["counts"]["unmappable"] == 1

    # replaying before the fix only fails again; dry run sends and deletes nothing
    dry = stack.json("errors", "replay", "--dry-run")
    assert dry["records_sent"] == 1 and dry["deleted_objects"] == 0
    assert stack.json("errors")["records"] == 1

    # the fix: qty becomes optional (set-metadata and the transform's settings), then replay
    provision(stack, cols.replace('type = "long", required = true', 'type = "long"'))
    rep = stack.json("errors", "replay")
    assert rep["records_sent"] == 1 and rep["sent_as_recorded"] == 1 and rep["deleted_objects"] == 1
    drain(stack)
    assert stack.json("errors")["records"] == 0
    rows = stack.json("query", f"SELECT pk, qty FROM {stack.name} ORDER BY pk")["rows"]
    assert rows == [{"pk": "noqty", "qty": None}, {"pk": "ok", "qty": 1}]
    assert stack.json("verify")["ok"] is True


@pytest.mark.sandbox
def test_errors_without_an_error_bucket_is_a_usage_error(stack):
    stack.write(extra=PIPELINE)
    r = stack.cli("errors", ok=False)  # before up: refused from the state file, naming the step
    assert r.exit_code == 2 and "errors needs the step create-source" in r.stderr


# ------------------------------------------------------------------ test-insert with fakes (no sandbox)
class FakePipeline:
    """DynamoDB + lake stand-ins: a change reaches the lake one query after it was written."""

    name = "fake"

    def __init__(self, cfg, clock, deliver=True):
        from s3tstream.data.items import ItemSchema

        self.schema = ItemSchema.from_config(cfg)
        self.clock = clock
        self.deliver = deliver
        self.queue, self.ready, self.lake = [], [], {}
        self.sql = []

    # DynamoDB
    def batch_write_item(self, RequestItems):
        from s3tstream.data.items import from_boto

        [(table, reqs)] = RequestItems.items()
        for r in reqs:
            if "PutRequest" in r:
                self.queue.append(("put", from_boto(r["PutRequest"]["Item"])))
            else:
                self.queue.append(("delete", from_boto(r["DeleteRequest"]["Key"])))
        self.clock.t += 0.1
        return {}

    # query engine
    @staticmethod
    def select_expr(col, typ):
        return f'"{col}"'

    def run(self, sql):
        from s3tstream.lake.query import QueryResult
        from s3tstream.transform import map_item

        self.sql.append(sql)
        if self.deliver:
            for op, item in self.ready:
                k = self.schema.key_of(item)
                if op == "put":
                    self.lake[k] = map_item(item, self.schema.settings)
                else:
                    self.lake.pop(k, None)
            self.ready, self.queue = self.queue, []
        self.clock.t += 0.5
        rows = list(self.lake.values())
        cols = list(rows[0]) if rows else ["pk"]
        return QueryResult(cols, [], [[r[c] for c in cols] for r in rows], 0, None, "fake")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def _ti(columns, deliver=True, **kw):
    from s3tstream.config import model as c
    from s3tstream.data.testinsert import TestInsert

    cfg = c.build({"stack": {"name": "shop"}, "source": kw.pop("source", {}), "table": {"columns": columns, **kw.pop("table", {})}})
    clock = Clock()
    fake = FakePipeline(cfg, clock, deliver)
    ti = TestInsert(cfg, fake, fake, interval=1.0, sleep=clock.sleep, clock=clock, run_id="r1", **kw)
    return ti, fake


def test_test_insert_follows_changes_and_measures_latency():
    ti, fake = _ti([{"name": "pk", "type": "string", "required": True}, {"name": "note", "type": "string"},
                    {"name": "n", "type": "decimal(5,2)", "required": True}], count=8, updates=2, deletes=3)
    out = ti.run_all()
    assert out.passed and out.counts == {"inserts": 8, "updates": 2, "deletes": 3}
    assert [len(out.latency[k]) for k in ("insert", "update", "delete")] == [8, 2, 3]
    assert all(1.0 < x < 3.0 for x in out.latency["insert"])  # seen by the second query
    assert "LIKE 's3t-test-r1-%'" in fake.sql[0]
    assert {r["note"] for r in fake.lake.values()} == {"r1-v2", "r1-v1"} and len(fake.lake) == 5
    doc = out.to_json()
    assert doc["latency_seconds"]["update"]["count"] == 2 and doc["timed_out_waiting_for"] is None
    assert ti.cleanup() == {"deleted_from_source": 8, "gone_from_lake": True, "left_in_lake": []}
    assert not fake.lake  # the deletes flowed into the lake


def test_test_insert_timeout_lists_the_missing_inserts():
    ti, _ = _ti([{"name": "pk", "type": "string", "required": True}], deliver=False, count=3, timeout=2.5)
    out = ti.run_all()
    assert not out.passed and out.timed_out == "inserts"
    assert out.missing["inserts"] == [{"pk": f"s3t-test-r1-{i:05d}"} for i in range(3)]


def test_test_insert_with_numeric_keys_and_no_marker_column():
    ti, fake = _ti([{"name": "id", "type": "int", "required": True, "source": "id"}],
                   source={"partition_key": {"name": "id", "type": "N"}}, count=4)
    out = ti.run_all()
    assert out.passed and out.counts["updates"] == 0 and "updates cannot be seen" in out.notes[0]
    assert " BETWEEN " in fake.sql[0] and all(0 < int(k[0]) < 2**31 for k in fake.lake)


def test_test_insert_sees_updates_through_the_extra_column():
    ti, fake = _ti([{"name": "pk", "type": "string", "required": True}], table={"extra_column": "rest"}, count=4)
    assert ti.marker.kind == "extra"
    out = ti.run_all()
    assert out.passed and len(out.latency["update"]) == 1


def test_percentiles():
    from s3tstream.data.testinsert import percentile, stats

    v = [float(x) for x in range(1, 101)]
    assert percentile(v, 50) == 50 and percentile(v, 95) == 95 and percentile([], 50) is None
    assert stats([2.0]) == {"count": 1, "p50": 2.0, "p95": 2.0, "max": 2.0}


def test_bad_counts_are_usage_errors():
    from s3tstream.errors import UsageError

    with pytest.raises(UsageError, match="--updates"):
        _ti([{"name": "pk", "type": "string", "required": True}], count=4, updates=3, deletes=3)
    with pytest.raises(UsageError, match="--count"):
        _ti([{"name": "pk", "type": "string", "required": True}], count=0)


def test_dynamodb_json_without_the_flag_names_the_flag(stack, calls):
    r = stack.cli("put-item", "--item", '{"pk": {"S": "a"}, "qty": {"N": "7"}}', ok=False)
    assert r.exit_code == 2 and "pass --dynamodb-json" in r.stderr and "quote it" not in r.stderr
    assert calls.calls == []


@pytest.mark.sandbox
def test_query_keeps_long_values_whole(typed):
    """A long value: whole in json and csv, wrapped (never cut) in an 80-column table."""
    long_text = " ".join(f"word{i:03d}" for i in range(60))
    typed.json("put-item", "--item", json.dumps({"pk": "long", "tags": [long_text]}))
    drain(typed)
    sql = f"SELECT pk, tags FROM {typed.name} WHERE pk = 'long'"
    doc = json.loads(typed.cli("query", sql, "--output", "json").stdout)
    assert long_text in json.dumps(doc["rows"][0]["tags"])
    assert long_text in typed.cli("query", sql, "--output", "csv").stdout
    import re

    table = re.sub(r"\x1b\[[0-9;]*m", "", typed.cli("query", sql, env={"TTY_COMPATIBLE": "1", "COLUMNS": "80"}).stdout)
    assert "…" not in table and max(len(x) for x in table.splitlines()) <= 80, table
    assert all(f"word{i:03d}" in table for i in range(60))
