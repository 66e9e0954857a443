"""Many tables, one pipeline, through the real CLI on the sandbox (issue 16's Show)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest

from s3tstream.sandbox import client as sandbox_client
from tests.test_integration_modes import console_account  # noqa: F401 - the fixture (IAM-mode account)

PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"

# lake table -> (partition key, sort key, mode, columns); keys S, S+N, N; one changelog
ENTRIES = {
    "orders": (("pk", "S"), None, "upsert",
               '{ name = "pk", type = "string", required = true }, { name = "amount", type = "decimal(12,2)" }'),
    "lines": (("order_id", "S"), ("line", "N"), "upsert",
              '{ name = "order_id", type = "string", required = true }, '
              '{ name = "line", type = "long", required = true }, { name = "qty", type = "long" }'),
    "events": (("id", "N"), None, "changelog",
               '{ name = "id", type = "long", required = true }, { name = "kind", type = "string" }'),
}
# a fourth table with enough columns that the transform's settings outgrow the Lambda
# environment's 4 KB (they then travel in the zip: transform/routing.py)
WIDE = [("c_" + hashlib.sha256(f"w{i}".encode()).hexdigest()[:20], "string") for i in range(150)]
FOURTH = {"customers": (("cid", "S"), None, "upsert",
                        '{ name = "cid", type = "string", required = true }, '
                        + ", ".join(f'{{ name = "{n}", type = "{t}" }}' for n, t in WIDE))}


@pytest.fixture(scope="module", autouse=True)
def _instant_data_plane():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
        yield


def write(stack, entries: dict) -> None:
    parts = [f'[stack]\nname = "{stack.name}"\nendpoint_url = "{stack.endpoint_url}"\n'
             "poll_interval = 0.01\nwait_timeout = 30\nmax_attempts = 3\n", PIPELINE]
    for table, (pk, sk, mode, columns) in entries.items():
        key = f'partition_key = {{ name = "{pk[0]}", type = "{pk[1]}" }}'
        if sk:
            key += f', sort_key = {{ name = "{sk[0]}", type = "{sk[1]}" }}'
        parts.append(f'[[tables]]\nsource = {{ table = "{stack.name}-{table}", {key} }}\n'
                     f'table = {{ name = "{table}", mode = "{mode}", columns = [{columns}] }}\n')
    stack.config_path.write_text("\n".join(parts), encoding="utf-8")


def drain(stack) -> None:
    sandbox_client.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=30)


def rows(stack, table: str) -> list:
    return stack.json("query", f"SELECT * FROM {table}", "--engine", "local")["rows"]


def destination(stack) -> dict:
    d = stack.client("firehose").describe_delivery_stream(DeliveryStreamName=f"{stack.name}-to-lake")
    return d["DeliveryStreamDescription"]["Destinations"][0]["IcebergDestinationDescription"]


def tables_of(dest: dict) -> dict:
    return {t["DestinationTableName"]: t.get("UniqueKeys") for t in dest["DestinationTableConfigurationList"]}


def mine(names: list[str], stack) -> list[str]:
    return [n for n in names if n.startswith(stack.name)]


def put_items(stack) -> None:
    ddb = stack.client("dynamodb")
    ddb.put_item(TableName=f"{stack.name}-orders", Item={"pk": {"S": "o1"}, "amount": {"N": "12.50"}})
    ddb.put_item(TableName=f"{stack.name}-orders", Item={"pk": {"S": "o2"}, "amount": {"N": "3"}})
    ddb.put_item(TableName=f"{stack.name}-lines", Item={"order_id": {"S": "o1"}, "line": {"N": "1"}, "qty": {"N": "2"}})
    ddb.put_item(TableName=f"{stack.name}-lines", Item={"order_id": {"S": "o1"}, "line": {"N": "2"}, "qty": {"N": "5"}})
    ddb.put_item(TableName=f"{stack.name}-events", Item={"id": {"N": "7"}, "kind": {"S": "click"}})
    ddb.put_item(TableName=f"{stack.name}-events", Item={"id": {"N": "7"}, "kind": {"S": "view"}})


def test_three_tables_one_pipeline_add_remove_down(stack, calls):
    write(stack, ENTRIES)
    stack.cli("up")
    # one stream and one Firehose stream for the three tables
    assert mine(stack.client("kinesis").list_streams()["StreamNames"], stack) == [f"{stack.name}-changes"]
    assert mine(stack.client("firehose").list_delivery_streams()["DeliveryStreamNames"], stack) == [f"{stack.name}-to-lake"]
    dest = destination(stack)
    assert tables_of(dest) == {"orders": ["pk"], "lines": ["order_id", "line"], "events": None}
    assert dest["AppendOnly"] is False  # upsert tables share it: AppendOnly is the stream's
    fn = stack.client("lambda").get_function_configuration(FunctionName=f"{stack.name}-transform")
    assert set(json.loads(fn["Environment"]["Variables"]["S3T_SETTINGS"])["routes"]) == {
        f"{stack.name}-{t}" for t in ENTRIES}

    put_items(stack)
    drain(stack)
    assert sorted((r["pk"], Decimal(str(r["amount"]))) for r in rows(stack, "orders")) == [
        ("o1", Decimal("12.50")), ("o2", Decimal("3"))]
    assert sorted((r["order_id"], r["line"], r["qty"]) for r in rows(stack, "lines")) == [("o1", 1, 2), ("o1", 2, 5)]
    assert sorted(r["kind"] for r in rows(stack, "events")) == ["click", "view"]  # changelog: both changes
    doc = stack.json("verify", "--settle", "0")
    assert doc["ok"] is True
    assert [(t["table"], t["ok"]) for t in doc["tables"]] == [("orders", True), ("lines", True), ("events", True)]
    assert stack.json("verify", "--table", "lines", "--settle", "0")["counts"]["source_items"] == 2
    # a second up changes nothing
    calls.clear()
    stack.cli("up")
    assert not [c for c in calls.mutating()], calls.mutating()

    # a fourth entry: its resources are created, the Firehose stream is updated in place
    write(stack, {**ENTRIES, **FOURTH})
    plan = stack.json("plan")["changes"]
    assert sorted((c["kind"], c["name"]) for c in plan if c["action"] == "create") == sorted([
        ("dynamodb-table", f"{stack.name}-customers"),
        ("kinesis-streaming-destination", f"{stack.name}-customers->{stack.name}-changes"),
        ("s3tables-table", f"{stack.name}-lake/{stack.name.replace('-', '_')}/customers"),
        ("iceberg-metadata", f"{stack.name}-lake/{stack.name.replace('-', '_')}/customers"),
        ("lf-grant", f"table {stack.name}-lake/{stack.name.replace('-', '_')}.customers -> "
                     f"arn:aws:iam::123456789012:role/s3tstream-{stack.name}-firehose"),
    ])
    before = stack.client("firehose").describe_delivery_stream(DeliveryStreamName=f"{stack.name}-to-lake")
    calls.clear()
    stack.cli("up")
    n = calls.counts()
    assert n["firehose:UpdateDestination"] == 1
    assert not n.get("firehose:CreateDeliveryStream") and not n.get("firehose:DeleteDeliveryStream")
    assert n["dynamodb:CreateTable"] == 1 and n["s3tables:CreateTable"] == 1
    assert n["dynamodb:EnableKinesisStreamingDestination"] == 1
    assert n["lambda:UpdateFunctionCode"] == 1  # the settings outgrew the environment: they ride in the zip
    assert not n.get("dynamodb:UpdateTable") and not n.get("kinesis:CreateStream")
    after = stack.client("firehose").describe_delivery_stream(DeliveryStreamName=f"{stack.name}-to-lake")
    assert after["DeliveryStreamDescription"]["DeliveryStreamARN"] == before["DeliveryStreamDescription"]["DeliveryStreamARN"]
    assert after["DeliveryStreamDescription"]["CreateTimestamp"] == before["DeliveryStreamDescription"]["CreateTimestamp"]
    assert tables_of(destination(stack))["customers"] == ["cid"]
    env = stack.client("lambda").get_function_configuration(FunctionName=f"{stack.name}-transform")["Environment"]
    assert list(env["Variables"]) == ["S3T_SETTINGS_FILE"]
    stack.client("dynamodb").put_item(TableName=f"{stack.name}-customers",
                                      Item={"cid": {"S": "c1"}, WIDE[149][0]: {"S": "last"}})
    stack.client("dynamodb").put_item(TableName=f"{stack.name}-orders", Item={"pk": {"S": "o3"}, "amount": {"N": "1"}})
    drain(stack)
    assert [(r["cid"], r[WIDE[149][0]]) for r in rows(stack, "customers")] == [("c1", "last")]
    assert stack.json("verify", "--settle", "0")["ok"] is True

    # removing an entry: streaming stops, its data stays
    entries = {k: v for k, v in {**ENTRIES, **FOURTH}.items() if k != "lines"}
    write(stack, entries)
    plan = {(c["kind"], c["action"]) for c in stack.json("plan")["changes"] if f"{stack.name}-lines" in c["name"]
            or ".lines" in c["name"] or c["name"].endswith("/lines")}
    assert ("kinesis-streaming-destination", "delete") in plan and ("lf-grant", "delete") in plan
    assert ("dynamodb-table", "none") in plan and ("s3tables-table", "none") in plan
    calls.clear()
    stack.cli("up")
    assert calls.counts()["dynamodb:DisableKinesisStreamingDestination"] == 1
    assert not calls.counts().get("s3tables:DeleteTable") and not calls.counts().get("dynamodb:DeleteTable")
    assert "lines" not in tables_of(destination(stack))
    calls.clear()
    stack.cli("up")  # kept data is not pending: nothing to do the second time
    assert calls.mutating() == []
    assert [c for c in stack.json("plan")["changes"] if c["action"] != "none"] == []
    dests = stack.client("dynamodb").describe_kinesis_streaming_destination(TableName=f"{stack.name}-lines")
    assert {d["DestinationStatus"] for d in dests["KinesisDataStreamDestinations"]} == {"DISABLED"}
    stack.client("dynamodb").put_item(TableName=f"{stack.name}-lines",
                                      Item={"order_id": {"S": "o9"}, "line": {"N": "1"}, "qty": {"N": "1"}})
    drain(stack)
    # its lake table keeps its rows, and gets no new ones (no streaming)
    cfg_lines = {"lines": ENTRIES["lines"]}
    write(stack, {**entries, **cfg_lines})  # to query it by name again (plan only: nothing is applied)
    assert sorted((r["order_id"], r["line"], r["qty"]) for r in rows(stack, "lines")) == [("o1", 1, 2), ("o1", 2, 5)]
    write(stack, entries)
    status = stack.json("status")["resources"]
    assert {r["table"] for r in status if r["kind"] == "s3tables-table"} == {"orders", "events", "customers", "lines"}
    assert status[0]["table"] == ""  # shared resources first

    stack.cli("down", "--yes", "--purge-errors")
    ddb_left = mine(stack.client("dynamodb").list_tables()["TableNames"], stack)
    assert ddb_left == []
    assert mine(stack.client("kinesis").list_streams()["StreamNames"], stack) == []
    assert mine(stack.client("firehose").list_delivery_streams()["DeliveryStreamNames"], stack) == []
    assert [b for b in stack.client("s3tables").list_table_buckets()["tableBuckets"] if b["name"].startswith(stack.name)] == []
    # only the account's shared integration stays recorded (`down --include-shared` removes it)
    assert {r["kind"] for r in stack.state()["resources"]} <= {"s3tables-analytics-integration", "lf-data-lake-admin"}


def test_table_option(stack):
    write(stack, ENTRIES)
    r = stack.cli("verify", "--table", "nope", ok=False)
    assert r.exit_code == 2 and "no table 'nope'" in r.output
    r = stack.cli("put-item", "--item", '{"pk": "x"}', ok=False)
    assert r.exit_code == 2 and "--table" in r.output and "orders, lines, events" in r.output
    r = stack.cli("put-item", "--table", "nope", "--item", '{"pk": "x"}', ok=False)
    assert r.exit_code == 2 and "no table 'nope'" in r.output
    # every command that works on one table says which are there, before any AWS call
    for args in (["backfill"], ["test-insert"], ["schema", "infer"], ["query"], ["step", "put-item"]):
        r = stack.cli(*args, ok=False)
        assert r.exit_code == 2 and "3 tables (orders, lines, events)" in r.output, (args, r.output)
    assert not stack.state_path.exists()


def test_one_table_config_and_a_state_file_from_before_keep_working(stack, calls):
    """A [source]/[table] stack: the same resource names and transform environment as before
    [[tables]]; a state file without the per-table marks (what earlier versions wrote) is read,
    and `plan`/`up` find nothing to change."""
    stack.write(extra=PIPELINE)
    stack.cli("up")
    doc = stack.state()
    names = {(r["kind"], r["name"]) for r in doc["resources"]}
    assert ("dynamodb-table", stack.name) in names
    assert ("kinesis-streaming-destination", f"{stack.name}->{stack.name}-changes") in names
    assert ("s3tables-table", f"{stack.name}-lake/{stack.name}/{stack.name}") in names
    env = stack.client("lambda").get_function_configuration(FunctionName=f"{stack.name}-transform")["Environment"]
    assert json.loads(env["Variables"]["S3T_SETTINGS"])["table"] == stack.name  # the one-table document
    for r in doc["resources"]:  # as written before many tables
        r["outputs"].pop("lake_table", None)
    stack.state_path.write_text(json.dumps(doc))
    plan = stack.json("plan")["changes"]
    assert [c for c in plan if c["action"] != "none"] == []
    calls.clear()
    stack.cli("up")
    assert calls.mutating() == []
    assert stack.json("verify", "--settle", "0")["ok"] is True  # no --table needed with one table
    assert {r["table"] for r in stack.json("status")["resources"]} == {"", stack.name}


def test_prune_deletes_a_removed_tables_data(stack, calls):
    two = {k: ENTRIES[k] for k in ("orders", "events")}
    write(stack, two)
    stack.cli("up")
    write(stack, {"orders": ENTRIES["orders"]})
    pruned = {(c["kind"], c["action"]) for c in stack.json("plan", "--prune")["changes"] if "events" in c["name"]}
    assert ("dynamodb-table", "delete") in pruned and ("s3tables-table", "delete") in pruned
    calls.clear()
    stack.cli("up", "--prune")
    n = calls.counts()
    assert n["dynamodb:DeleteTable"] == 1 and n["s3tables:DeleteTable"] == 1
    assert n["dynamodb:DisableKinesisStreamingDestination"] == 1
    assert mine(stack.client("dynamodb").list_tables()["TableNames"], stack) == [f"{stack.name}-orders"]
    assert not [r for r in stack.state()["resources"] if "events" in r["name"]]
    assert tables_of(destination(stack)) == {"orders": ["pk"]}
    # one table left: the transform is back to the one-table document
    env = stack.client("lambda").get_function_configuration(FunctionName=f"{stack.name}-transform")["Environment"]
    assert json.loads(env["Variables"]["S3T_SETTINGS"])["table"] == "orders"
    calls.clear()
    stack.cli("up")  # the removal is done: a second up changes nothing
    assert calls.mutating() == []


def test_health_judges_each_table(stack):
    write(stack, {k: ENTRIES[k] for k in ("orders", "events")})
    stack.cli("up")
    doc = stack.json("health", ok=None)
    names = [c["name"] for c in doc["checks"]]
    assert "table orders" in names and "table events" in names and "table" not in names
    assert all(c["status"] == "ok" for c in doc["checks"] if c["name"].startswith("table ")), doc["checks"]


def test_iam_mode_two_tables_reach_the_lake_through_the_role_policy(console_account):
    """IAM access control: the Firehose role's s3tables:tableName condition lists both tables,
    and the sandbox's permission check lets each table's rows in (no Lake Formation grant)."""
    from tests.test_integration_modes import REGION

    env = console_account
    parts = [f'[stack]\nname = "{env.name}"\nregion = "{REGION}"\nendpoint_url = "{env.endpoint_url}"\n'
             "poll_interval = 0.01\nwait_timeout = 30\nmax_attempts = 3\n[firehose]\nbuffer_interval_seconds = 0\n"]
    for t, pk in (("orders", "pk"), ("events", "id")):
        parts.append(f'[[tables]]\nsource = {{ table = "{env.name}-{t}", partition_key = {{ name = "{pk}", type = "S" }} }}\n'
                     f'table = {{ name = "{t}", columns = [{{ name = "{pk}", type = "string", required = true }}] }}\n')
    env.config_path.write_text("\n".join(parts), encoding="utf-8")
    env.cli("up")
    ddb = env.client("dynamodb")
    ddb.put_item(TableName=f"{env.name}-orders", Item={"pk": {"S": "o1"}})
    ddb.put_item(TableName=f"{env.name}-events", Item={"id": {"S": "e1"}})
    sandbox_client.firehose_wait_drained(env.endpoint_url, f"{env.name}-to-lake", timeout=30, region=REGION)
    doc = env.json("verify", "--settle", "0")
    assert [(t["table"], t["ok"], t["counts"]["lake_rows"]) for t in doc["tables"]] == [("orders", True, 1),
                                                                                        ("events", True, 1)]


def test_errors_replay_sends_each_record_as_its_own_tables(stack):
    """One error object holds failed records of two tables; after the fix, one replay (no
    --table) sends each back, checked against its own table, and both reach their tables."""
    required = ('{ name = "pk", type = "string", required = true }, '
                '{ name = "qty", type = "long", required = true }')
    two = {"orders": (("pk", "S"), None, "upsert", required), "carts": (("pk", "S"), None, "upsert", required)}
    write(stack, two)
    stack.cli("up")
    ddb = stack.client("dynamodb")
    ddb.put_item(TableName=f"{stack.name}-orders", Item={"pk": {"S": "o"}})  # no qty: the transform refuses it
    ddb.put_item(TableName=f"{stack.name}-carts", Item={"pk": {"S": "c"}})
    drain(stack)
    found = stack.json("errors")
    assert found["records"] == 2
    # --table: an object that also holds the other table's record is kept whole. The two records
    # share one object when one flush carried both (usual); under load they may land apart.
    shared = found["objects"] == 1
    kept = stack.json("errors", "replay", "--table", "orders", "--dry-run", ok=False)
    assert "is not this stack's source table" in json.dumps(kept["failed"])
    assert kept["records_sent"] == (0 if shared else 1)  # only an object of orders' records alone is sent
    optional = required.replace('type = "long", required = true', 'type = "long"')
    write(stack, {t: (k, s, m, optional) for t, (k, s, m, _) in two.items()})
    stack.cli("up")
    rep = stack.json("errors", "replay")
    assert rep["records_sent"] == 2 and rep["deleted_objects"] >= 1 and not rep["failed"]
    drain(stack)
    assert [r["pk"] for r in rows(stack, "orders")] == ["o"] and [r["pk"] for r in rows(stack, "carts")] == ["c"]


def test_renaming_one_entrys_source_table_replaces_only_its_streaming(stack):
    two = {k: ENTRIES[k] for k in ("orders", "events")}
    write(stack, two)
    stack.cli("up")
    text = stack.config_path.read_text().replace(f'table = "{stack.name}-orders"', f'table = "{stack.name}-orders2"')
    stack.config_path.write_text(text)
    plan = stack.json("plan")["changes"]
    replaced = {(c["kind"], c["name"]) for c in plan if c["action"] == "replace"}
    assert replaced == {("dynamodb-table", f"{stack.name}-orders"),
                        ("kinesis-streaming-destination", f"{stack.name}-orders->{stack.name}-changes")}
    assert not [c for c in plan if "events" in c["name"] and c["action"] not in ("none",)]
    stack.cli("up")
    ddb = stack.client("dynamodb")
    status = lambda t: {d["DestinationStatus"] for d in  # noqa: E731
                        ddb.describe_kinesis_streaming_destination(TableName=t)["KinesisDataStreamDestinations"]}
    assert status(f"{stack.name}-orders") == {"DISABLED"}
    assert status(f"{stack.name}-orders2") == {"ACTIVE"} and status(f"{stack.name}-events") == {"ACTIVE"}
