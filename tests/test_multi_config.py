"""[[tables]]: many tables in one config (config/tables.py)."""

from __future__ import annotations

import pytest

from s3tstream.config import model as c
from s3tstream.errors import ConfigError, UsageError

STACK = {"stack": {"name": "shop"}}


def entry(src: str, **table) -> dict:
    return {"source": {"table": src}, "table": table}


def build(*entries, **top):
    return c.build({**STACK, "tables": list(entries), **top})


def problems(*entries, **top) -> dict[str, str]:
    with pytest.raises(ConfigError) as ei:
        build(*entries, **top)
    assert ei.value.exit_code == 2
    return dict(ei.value.problems)


def test_entries_scope_to_their_table():
    cfg = build(
        entry("orders", mode="upsert", columns=[{"name": "pk", "type": "string", "required": True}]),
        {"source": {"table": "Line-Items", "partition_key": {"name": "order", "type": "S"},
                    "sort_key": {"name": "line", "type": "N"}}, "table": {"mode": "changelog"}},
    )
    assert cfg.table_names == ["orders", "line_items"]
    a, b = cfg.scopes()
    assert (a.names.source_table, a.names.table, a.table.mode) == ("orders", "orders", "upsert")
    assert (b.names.source_table, b.names.table, b.table.mode) == ("Line-Items", "line_items", "changelog")
    assert [col for _, col in b.key_columns()] == ["order", "line"]
    # shared names are the stack's, whichever entry
    assert {s.names.stream for s in (a, b)} == {"shop-changes"}
    assert {s.names.firehose for s in (a, b)} == {"shop-to-lake"}
    assert {s.names.table_bucket for s in (a, b)} == {"shop-lake"}
    assert cfg.scoped("line_items").names.table == "line_items"
    # scoping twice is scoping once
    assert cfg.scoped("line_items").scoped(None).names.table == "line_items"


def test_one_table_form_is_one_entry():
    cfg = c.build({**STACK, "source": {"table": "orders"}})
    assert cfg.tables == []
    assert cfg.table_names == ["orders"]
    assert cfg.scoped(None) is cfg and cfg.scoped("orders") is cfg
    assert [s.names.table for s in cfg.scopes()] == ["orders"]


def test_table_is_required_only_with_several():
    cfg = build(entry("orders"), entry("customers"))
    with pytest.raises(UsageError) as ei:
        cfg.scoped(None)
    assert "2 tables (orders, customers)" in ei.value.message and "--table" in ei.value.hint
    with pytest.raises(UsageError) as ei:
        cfg.scoped("nope")
    assert "no table 'nope'" in ei.value.message and "orders, customers" in ei.value.message
    assert build(entry("orders")).scoped(None).names.table == "orders"


def test_every_error_names_the_entry():
    p = problems(
        entry("orders", columns=[{"name": "pk", "type": "string", "required": True},
                                 {"name": "a", "type": "long"}, {"name": "b", "type": "money"}]),
        {"source": {"table": "x"}},
    )
    assert "money" in p["tables[0].table.columns[2].type"]
    assert "3-255" in p["tables[1].source.table"]


def test_cross_rules_name_the_entry():
    p = problems(
        {"source": {"table": "orders", "partition_key": {"name": "pk", "type": "N"}},
         "table": {"columns": [{"name": "pk", "type": "string", "required": True}]}},
        entry("Orders"),
        entry("orders", name="other"),
        {"table": {"name": "t"}},
    )
    assert "key column 'pk' has type string" in p["tables[0].table.columns"]
    assert "also tables[0]'s" in p["tables[1].table.name"] and "set table.name" in p["tables[1].table.name"]
    assert "also tables[0]'s source table" in p["tables[2].source.table"]
    assert "required key is missing" in p["tables[3].source.table"]


def test_shared_lake_keys_must_agree_and_are_shared():
    p = problems(entry("orders", bucket="lake-a"), entry("customers", bucket="lake-b"))
    assert "'lake-b' differs from tables[0]'s 'lake-a'" in p["tables[1].table.bucket"]
    p = problems(entry("orders", maintenance={"unreferenced_days": 3}),
                 entry("customers", maintenance={"unreferenced_days": 4}))
    assert "tables[1].table.maintenance.unreferenced_days" in p
    cfg = build(entry("orders"), entry("customers", bucket="lake-b", namespace="sales",
                                       maintenance={"noncurrent_days": 20, "target_file_size_mb": 128}))
    a, b = cfg.scopes()
    assert (a.names.table_bucket, a.names.namespace) == (b.names.table_bucket, b.names.namespace) == ("lake-b", "sales")
    assert a.table.maintenance.noncurrent_days == 20
    # a table-level maintenance key stays the entry's own
    assert (a.table.maintenance.target_file_size_mb, b.table.maintenance.target_file_size_mb) == (512, 128)


def test_one_form_or_the_other():
    p = problems(entry("orders"), table={"name": "x"})
    assert "cannot both be set" in p["table"]
    assert "at least one" in problems()["tables"]


def test_unknown_key_in_an_entry():
    p = problems({"source": {"table": "orders"}, "tabel": {}})
    assert p["tables[0].tabel"] == "unknown key"


def test_loaded_from_toml(tmp_path):
    path = tmp_path / "s3tstream.toml"
    path.write_text(
        '[stack]\nname = "shop"\n'
        '[[tables]]\nsource = { table = "orders", partition_key = { name = "pk", type = "S" } }\n'
        'table = { name = "orders", mode = "upsert", columns = [ { name = "pk", type = "string", required = true } ] }\n'
        '[[tables]]\nsource = { table = "events", partition_key = { name = "id", type = "N" } }\n'
        'table = { name = "events", mode = "changelog" }\n'
    )
    cfg = c.load(path, environ={})
    assert cfg.table_names == ["orders", "events"]
    assert cfg.scoped("events").path == path.resolve()


def test_policies_and_grants_name_every_table():
    from s3tstream.aws import policies
    from s3tstream.aws.client import Identity

    ident = Identity(account="111122223333", arn="arn:aws:sts::111122223333:assumed-role/Admin/me", user_id="AID")
    reader = "arn:aws:iam::111122223333:role/analyst"
    cfg = build(entry("orders"), entry("events", mode="changelog"), lakeformation={"readers": [reader]})
    doc = policies.firehose_lake_policy(cfg, ident, "iam")
    glue = next(s for s in doc["Statement"] if s["Sid"] == "GlueTableInS3TablesCatalog")["Resource"]
    assert [r.rsplit("/", 1)[-1] for r in glue if ":table/" in r] == ["orders", "events"]
    table_stmt = next(s for s in doc["Statement"] if s["Sid"] == "S3TablesTable")
    assert table_stmt["Condition"]["StringEquals"]["s3tables:tableName"] == ["orders", "events"]
    grants = [(g.principal.rsplit("/", 1)[-1], g.label) for g in policies.lf_grants(cfg, ident)]
    assert grants == [("s3tstream-shop-firehose", "database shop-lake/shop"),
                      ("s3tstream-shop-firehose", "table shop-lake/shop.orders"),
                      ("s3tstream-shop-firehose", "table shop-lake/shop.events"),
                      ("analyst", "table shop-lake/shop.orders"), ("analyst", "table shop-lake/shop.events")]
    # one table: the documents a stack had before [[tables]] (a string, not a one-element list)
    one = c.build({**STACK, "source": {"table": "orders"}})
    stmt = next(s for s in policies.firehose_lake_policy(one, ident, "iam")["Statement"] if s["Sid"] == "S3TablesTable")
    assert stmt["Condition"]["StringEquals"]["s3tables:tableName"] == "orders"


def test_firehose_destination_and_transform_settings_hold_every_table():
    from s3tstream.aws.client import Identity
    from s3tstream.provision.steps.delivery import destination, function

    ident = Identity(account="111122223333", arn="arn:aws:sts::111122223333:assumed-role/Admin/me", user_id="AID")
    cfg = build({"source": {"table": "Orders", "sort_key": {"name": "line", "type": "N"}}, "table": {"name": "orders"}},
                entry("events", mode="changelog"))
    dest = destination.destination(cfg, ident, "err-bucket")
    assert [(t["DestinationTableName"], t.get("UniqueKeys")) for t in dest["DestinationTableConfigurationList"]] == [
        ("orders", ["pk", "line"]), ("events", None)]
    assert dest["AppendOnly"] is False
    doc = function.transform_document(cfg)
    assert {k: v["table"] for k, v in doc["routes"].items()} == {"Orders": "orders", "events": "events"}
    assert doc["routes"]["events"]["mode"] == "changelog"
    only_changelog = build(entry("events", mode="changelog"), entry("clicks", mode="changelog"))
    assert destination.destination(only_changelog, ident, "err-bucket")["AppendOnly"] is True
