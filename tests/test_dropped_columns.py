"""`plan`/`up` warn when the config drops a column the table keeps (lake.schema.kept_columns_warning,
shown by create-table-bucket's metadata step while it observes the table)."""

from __future__ import annotations

from types import SimpleNamespace

from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType

from s3tstream.config import model as c
from s3tstream.lake import schema as S


def cfg(columns):
    return c.build({"stack": {"name": "shop"}, "source": {"partition_key": {"name": "pk", "type": "S"}},
                    "table": {"columns": columns}})


TABLE = Schema(NestedField(1, "pk", StringType(), required=True), NestedField(2, "qty", LongType()),
               NestedField(3, "note", StringType()), identifier_field_ids=[1])


def test_a_column_the_config_dropped_is_named_in_a_warning():
    d = S.diff_schema(TABLE, S.effective_schema(cfg([{"name": "pk", "type": "string", "required": True},
                                                     {"name": "qty", "type": "long"}])))
    assert d.kept == ["note"] and not d.problems
    w = S.kept_columns_warning(d)
    assert "note" in w and "NULL" in w and "table.columns" in w
    same = S.diff_schema(TABLE, S.effective_schema(cfg([{"name": "pk", "type": "string", "required": True},
                                                        {"name": "qty", "type": "long"}, {"name": "note", "type": "string"}])))
    assert S.kept_columns_warning(same) is None


def test_the_metadata_step_reports_it_while_observing(monkeypatch):
    from s3tstream.provision.steps import metadata as M

    said: list[str] = []
    table = SimpleNamespace(schema=lambda: TABLE, metadata_location="s3://x/m.json",
                            metadata=SimpleNamespace(current_schema_id=0, format_version=2, properties={}),
                            spec=lambda: SimpleNamespace(fields=[]))
    conf = cfg([{"name": "pk", "type": "string", "required": True}, {"name": "qty", "type": "long"}])
    spec = M.IcebergMetadata.__new__(M.IcebergMetadata)
    spec.ctx = SimpleNamespace(cfg=conf, progress=said.append, names=conf.names)
    monkeypatch.setattr(M.IcebergMetadata, "catalog", lambda self: SimpleNamespace(load_table=lambda ident: table))
    monkeypatch.setattr(M.IcebergMetadata, "ident", ("shop", "shop"), raising=False)
    monkeypatch.setattr(M.IcebergMetadata, "_partition_problem", lambda self, t: None)
    obs = spec.observe()
    assert obs.exists and any(m.startswith("warning: the config no longer names table column(s) note") for m in said)
