"""schema.py: effective columns, the S3 Tables payload (checked against botocore's model), the
PyIceberg schema (same ids), partition specs, compatibility and `schema infer` rules."""

from __future__ import annotations

import tomllib
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from s3tstream.config import model as config
from s3tstream.lake import infer, schema
from s3tstream.errors import ConfigError
from s3tstream.transform import types as T


def cfg_of(columns: list[dict[str, Any]] | None = None, **table: Any) -> config.Config:
    src = table.pop("source", {})
    return config.build({"stack": {"name": "orders"}, "source": src,
                         "table": {"columns": columns if columns is not None else [], **table}})


def validate_create_table(payload: dict[str, Any]) -> None:
    """Validate a create_table request against botocore's s3tables model."""
    model = botocore.session.get_session().get_service_model("s3tables")
    shape = model.operation_model("CreateTable").input_shape
    report = ParamValidator().validate(
        {"tableBucketARN": "arn:aws:s3tables:us-east-1:123456789012:bucket/orders-lake", "namespace": "orders",
         "name": "orders", "format": "ICEBERG", "metadata": payload}, shape)
    assert not report.has_errors(), report.generate_report()


# ------------------------------------------------------------------ effective columns
def test_key_column_added_required_and_identifier_when_not_declared() -> None:
    ts = schema.effective_schema(cfg_of([{"name": "amount", "type": "decimal(12,2)"}]))
    assert ts.columns[0] == schema.Col("pk", T.Primitive("string"), True, "pk", "key")
    assert ts.identifier == ("pk",)
    assert [c.name for c in ts.columns] == ["pk", "amount"]


@pytest.mark.parametrize("ktype,iceberg", [("S", "string"), ("N", "long"), ("B", "binary")])
def test_key_attribute_types(ktype: str, iceberg: str) -> None:
    cfg = cfg_of([], source={"partition_key": {"name": "id", "type": ktype}, "sort_key": {"name": "ts", "type": "N"}})
    ts = schema.effective_schema(cfg)
    assert [(c.name, c.type_str, c.required) for c in ts.columns] == [("id", iceberg, True), ("ts", "long", True)]
    assert ts.identifier == ("id", "ts")


def test_declared_key_column_with_source_keeps_its_name() -> None:
    cfg = cfg_of([{"name": "order_id", "type": "string", "required": True, "source": "PK"}],
                 source={"partition_key": {"name": "PK", "type": "S"}})
    ts = schema.effective_schema(cfg)
    assert [c.name for c in ts.columns] == ["order_id"] and ts.identifier == ("order_id",)


def test_changelog_and_extra_columns() -> None:
    ts = schema.effective_schema(cfg_of([{"name": "pk", "type": "string", "required": True}],
                                        mode="changelog", extra_column="extra"))
    assert [(c.name, c.type_str, c.required, c.role) for c in ts.columns] == [
        ("pk", "string", True, "key"), ("_op", "string", True, "changelog"),
        ("_event_time", "timestamptz", True, "changelog"), ("_event_id", "string", True, "changelog"),
        ("extra", "string", False, "extra"),
    ]
    assert ts.identifier == ("pk", "_event_id")


def test_bad_key_attribute_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a valid column name"):
        schema.effective_schema(cfg_of([], source={"partition_key": {"name": "Order-Id", "type": "S"}}))


# ------------------------------------------------------------------ payload
ALL_TYPES = [
    ("b", "boolean"), ("i", "int"), ("l", "long"), ("f", "float"), ("d", "double"), ("dec", "decimal(12,2)"),
    ("dt", "date"), ("ts", "timestamp"), ("tz", "timestamptz"), ("s", "string"), ("bin", "binary"),
    ("lst", "list<string>"), ("m", "map<string,long>"), ("st", "struct<a:int,b:list<double>>"),
]


def test_payload_nested_uses_schema_v2_with_ids_and_identifier_fields() -> None:
    cfg = cfg_of([{"name": "pk", "type": "string", "required": True}] + [{"name": n, "type": t} for n, t in ALL_TYPES])
    payload = schema.metadata_payload(cfg)
    validate_create_table(payload)
    v2 = payload["iceberg"]["schemaV2"]
    assert "schema" not in payload["iceberg"]
    assert v2["type"] == "struct" and v2["identifierFieldIds"] == [1]
    by = {f["name"]: f for f in v2["fields"]}
    assert [f["id"] for f in v2["fields"]] == list(range(1, 16))
    for name, typ in ALL_TYPES[:11]:
        assert by[name]["type"] == typ  # primitives as their Iceberg type string
    assert by["lst"]["type"] == {"type": "list", "element-id": 16, "element": "string", "element-required": False}
    assert by["m"]["type"] == {"type": "map", "key-id": 17, "key": "string", "value-id": 18, "value": "long",
                               "value-required": False}
    assert by["st"]["type"]["fields"][1] == {
        "id": 20, "name": "b", "required": False,
        "type": {"type": "list", "element-id": 21, "element": "double", "element-required": False}}
    assert payload["iceberg"]["properties"] == {"format-version": "2"}


def test_payload_primitive_without_identifier_uses_schema_fields() -> None:
    # no identifier fields can only happen for a schema handed in directly; build one
    ts = schema.TableSchema((schema.Col("a", T.Primitive("long"), True), schema.Col("b", T.DecimalType(10, 2))), ())
    sj = schema.schema_json(ts)
    assert sj["identifier-field-ids"] == [] and not schema.is_nested(ts)
    cfg = cfg_of([{"name": "pk", "type": "string", "required": True}])
    payload = schema.metadata_payload(cfg)  # keys are identifier fields: schemaV2
    validate_create_table(payload)
    assert "schemaV2" in payload["iceberg"]


def test_payload_schema_fields_form_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = cfg_of([{"name": "pk", "type": "string", "required": True}, {"name": "n", "type": "long"}])
    real = schema.effective_schema
    monkeypatch.setattr(schema, "effective_schema", lambda c: schema.TableSchema(real(c).columns, ()))
    payload = schema.metadata_payload(cfg)
    validate_create_table(payload)
    assert payload["iceberg"]["schema"] == {"fields": [{"name": "pk", "type": "string", "required": True},
                                                       {"name": "n", "type": "long", "required": False}]}


def test_partition_spec_in_payload_and_pyiceberg() -> None:
    cfg = cfg_of([{"name": "pk", "type": "string", "required": True}, {"name": "created", "type": "timestamptz"},
                  {"name": "region", "type": "string"}],
                 partition=["day(created)", "bucket(16, pk)", "region", "truncate(4, region)"], mode="changelog")
    payload = schema.metadata_payload(cfg)
    validate_create_table(payload)
    assert payload["iceberg"]["partitionSpec"] == {"specId": 0, "fields": [
        {"sourceId": 2, "transform": "day", "name": "created_day", "fieldId": 1000},
        {"sourceId": 1, "transform": "bucket[16]", "name": "pk_bucket", "fieldId": 1001},
        {"sourceId": 3, "transform": "identity", "name": "region", "fieldId": 1002},
        {"sourceId": 3, "transform": "truncate[4]", "name": "region_trunc", "fieldId": 1003},
    ]}
    spec = schema.pyiceberg_partition_spec(cfg, schema.pyiceberg_schema(schema.effective_schema(cfg)))
    assert [(f.source_id, str(f.transform), f.name, f.field_id) for f in spec.fields] == [
        (2, "day", "created_day", 1000), (1, "bucket[16]", "pk_bucket", 1001),
        (3, "identity", "region", 1002), (3, "truncate[4]", "region_trunc", 1003)]


@pytest.mark.parametrize("part,msg", [
    ("day(nope)", "no column 'nope'"), ("day(pk)", "needs a date or timestamp"), ("hour(d)", "needs a timestamp"),
    ("bucket(pk)", "takes a width/count"), ("year(d, x)", "use col"), ("bucket(4, f)", "does not apply"),
])
def test_bad_partitions(part: str, msg: str) -> None:
    cfg = cfg_of([{"name": "pk", "type": "string", "required": True}, {"name": "d", "type": "date"},
                  {"name": "f", "type": "double"}], partition=[part], mode="changelog")
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(")):
        schema.metadata_payload(cfg)


def test_pyiceberg_schema_has_payload_ids_and_fresh_id_order() -> None:
    from pyiceberg.schema import assign_fresh_schema_ids

    cfg = cfg_of([{"name": "pk", "type": "string", "required": True}] + [{"name": n, "type": t} for n, t in ALL_TYPES])
    ts = schema.effective_schema(cfg)
    sch = schema.pyiceberg_schema(ts)
    assert assign_fresh_schema_ids(sch) == sch  # what PyIceberg/new_table_metadata would assign
    assert sch.identifier_field_ids == [1]
    back, spec, props = schema.payload_to_pyiceberg(schema.metadata_payload(cfg)["iceberg"])
    assert back == sch and not spec.fields and props == {"format-version": "2"}
    for name, typ in ALL_TYPES:
        assert schema.iceberg_type_str(sch.find_field(name).field_type) == str(T.parse_type(typ))


def test_payload_wire_names_are_read_too() -> None:
    ice = {"schemaV2": {"type": "struct", "schema-id": 0, "identifier-field-ids": [1],
                        "fields": [{"id": 1, "name": "pk", "type": "string", "required": True}]},
           "partitionSpec": {"spec-id": 0, "fields": [{"source-id": 1, "transform": "bucket[4]", "name": "pk_bucket",
                                                        "field-id": 1000}]}}
    sch, spec, _ = schema.payload_to_pyiceberg(ice)
    assert sch.identifier_field_ids == [1] and spec.fields[0].source_id == 1


# ------------------------------------------------------------------ compatibility
def table_schema(*cols: tuple[str, str, bool], ident: tuple[str, ...] = ("pk",)) -> Any:
    return schema.pyiceberg_schema(schema.TableSchema(
        tuple(schema.Col(n, T.parse_type(t), r) for n, t, r in cols), ident))


def desired(*cols: tuple[str, str, bool], ident: tuple[str, ...] = ("pk",)) -> schema.TableSchema:
    return schema.TableSchema(tuple(schema.Col(n, T.parse_type(t), r) for n, t, r in cols), ident)


def test_diff_in_line_is_empty() -> None:
    cur = table_schema(("pk", "string", True), ("s", "struct<a:int>", False))
    d = schema.diff_schema(cur, desired(("pk", "string", True), ("s", "struct<a:int>", False)))
    assert not d.problems and not d.changes


def test_diff_additions_widening_and_optional() -> None:
    cur = table_schema(("pk", "string", True), ("n", "int", True), ("x", "decimal(10,2)", False),
                       ("s", "struct<a:int>", False), ("old", "string", False))
    d = schema.diff_schema(cur, desired(("pk", "string", True), ("n", "long", False), ("x", "decimal(12,2)", False),
                                        ("s", "struct<a:long,b:string>", False), ("new", "list<string>", False)))
    assert not d.problems
    assert d.changes == ["add column s.b string", "add column new list<string>", "widen n int -> long",
                         "widen x decimal(10,2) -> decimal(12,2)", "widen s.a int -> long", "make n optional"]
    assert d.kept == ["old"]


@pytest.mark.parametrize("old,new,msg", [
    ("long", "int", "narrows"), ("decimal(12,2)", "decimal(10,2)", "narrows"), ("decimal(12,2)", "decimal(12,3)", "rescales"),
    ("string", "long", "not a type change"), ("double", "float", "narrows"),
])
def test_diff_refuses_narrowing_and_changes(old: str, new: str, msg: str) -> None:
    d = schema.diff_schema(table_schema(("pk", "string", True), ("c", old, False)),
                           desired(("pk", "string", True), ("c", new, False)))
    assert len(d.problems) == 1 and msg in d.problems[0]


def test_diff_refuses_key_change_and_new_required_column() -> None:
    cur = table_schema(("pk", "string", True), ("sk", "string", True))
    d = schema.diff_schema(cur, desired(("pk", "string", True), ("sk", "string", True), ident=("pk", "sk")))
    assert any("key (identifier) columns" in p for p in d.problems)
    d = schema.diff_schema(table_schema(("pk", "string", True)),
                           desired(("pk", "string", True), ("must", "string", True)))
    assert any("must be optional" in p for p in d.problems)
    d = schema.diff_schema(table_schema(("pk", "string", True), ("o", "string", False)),
                           desired(("pk", "string", True), ("o", "string", True)))
    assert any("optional -> required" in p for p in d.problems)


# ------------------------------------------------------------------ inference
def S(v: str) -> dict:  # noqa: N802
    return {"S": v}


def N(v: str) -> dict:  # noqa: N802
    return {"N": v}


@pytest.mark.parametrize("values,expected", [
    ([S("a"), S("b")], "string"),
    ([N("1"), N("-42"), N("9223372036854775807")], "long"),
    ([N("1"), N("9223372036854775808")], "decimal(38,0)"),
    # room for what comes: 19.25 must not give decimal(4,2), which 100.00 would fail
    ([N("1.5"), N("19.25")], "decimal(38,2)"),
    ([N("1.5"), N("12.25"), N("100")], "decimal(38,2)"),
    ([N("1E+2"), N("0.001")], "decimal(38,3)"),
    ([S("2024-05-01"), S("2026-12-31")], "date"),
    ([S("2024-05-01T12:00:00Z"), S("2024-05-01T12:00:00.123456+02:00"), S("2024-05-02")], "timestamptz"),
    ([S("2024-05-01T12:00:00"), S("2024-05-01 12:00")], "timestamp"),
    ([S("2024-05-01T12:00:00Z"), S("soon")], "string"),
    ([S("20240501"), S("2024")], "string"),  # basic-format dates are more likely ids
    ([S("2024-13-45")], "string"),  # shaped like a date, but not one
    ([{"SS": ["2024-05-01", "2024-05-02"]}], "list<date>"),
    ([N("1" * 30 + ".5"), N("0." + "1" * 10)], "string"),  # beyond decimal(38)
    ([{"B": "AQI="}], "binary"),
    ([{"BOOL": True}, {"NULL": True}], "boolean"),
    ([{"NULL": True}], "string"),
    ([S("a"), N("1")], "string"),  # mixed: JSON/text
    ([{"SS": ["a", "b"]}], "list<string>"),
    ([{"NS": ["1", "2.5"]}], "list<decimal(38,1)>"),
    ([{"BS": ["AQI="]}], "list<binary>"),
    ([{"L": [N("1"), N("2")]}, {"L": []}], "list<long>"),
    ([{"L": [S("a"), N("2")]}], "string"),
    ([{"L": []}], "list<string>"),
    ([{"M": {"city": S("x"), "zip": N("1")}}, {"M": {"city": S("y")}}], "struct<city:string,zip:long>"),
    ([{"M": {"geo": {"M": {"lat": N("1.5")}}}}], "struct<geo:struct<lat:decimal(38,1)>>"),
    ([{"M": {"userA": N("1"), "User-B": N("2")}}], "map<string,long>"),
    ([{"M": {"Aa": N("1"), "Bb": S("x")}}], "string"),
    ([{"M": {}}], "string"),
])
def test_inference_rules(values: list[dict], expected: str) -> None:
    items = [{"pk": S(str(i)), "v": v} for i, v in enumerate(values)]
    cols, n = infer.infer_columns(items, [("pk", "S")])
    assert n == len(values)
    assert cols[1].name == "v" and cols[1].type == expected
    T.parse_type(expected)  # every inferred type is a valid column type


def test_inference_names_keys_and_block_round_trips() -> None:
    items = [{"PK": S("a"), "SK": N("1"), "createdAt": S("2024"), "Total-Amount": N("1.25")},
             {"PK": S("b"), "SK": N("2"), "createdAt": S("2025")}]
    cols, n = infer.infer_columns(items, [("PK", "S"), ("SK", "N")])
    assert [(c.name, c.type, c.required, c.source) for c in cols] == [
        ("pk", "string", True, "PK"), ("sk", "long", True, "SK"),
        ("created_at", "string", False, "createdAt"), ("total_amount", "decimal(38,2)", False, "Total-Amount")]
    block = infer.toml_block(cols, n)
    doc = tomllib.loads(block)
    cfg = config.build({"stack": {"name": "orders"}, "table": doc["table"],
                        "source": {"partition_key": {"name": "PK", "type": "S"}, "sort_key": {"name": "SK", "type": "N"}}})
    assert schema.effective_schema(cfg).identifier == ("pk", "sk")


def test_column_names_from_attributes() -> None:
    assert infer.column_name_for("createdAt") == "created_at"
    assert infer.column_name_for("userID") == "user_id"
    assert infer.column_name_for("9lives") == "_9lives"
    assert infer.column_name_for("a.b c") == "a_b_c"


def test_inferred_types_hold_larger_values_and_the_transform_converts_them() -> None:
    """The proposal converts values beyond the sample: an amount of 100.00 after a sample up to
    19.25, an ISO timestamp with another offset (the transform's own conversion decides)."""
    from s3tstream.transform import converters

    items = [{"pk": S("a"), "amount": N("19.25"), "at": S("2024-05-01T12:00:00Z"), "day": S("2024-05-01")},
             {"pk": S("b"), "amount": N("3.5"), "at": S("2024-05-02T08:30:00.5+02:00"), "day": S("2024-05-02")}]
    cols, _ = infer.infer_columns(items, [("pk", "S")])
    types = {c.name: c.type for c in cols}
    assert types == {"pk": "string", "amount": "decimal(38,2)", "at": "timestamptz", "day": "date"}
    for typ, value in (("amount", N("123456789.99")), ("at", S("2030-01-01T00:00:00-05:00")), ("day", S("2031-02-03"))):
        convert = converters.compile_type(T.parse_type(types[typ]), "iso")  # the transform's converter for the type
        convert(value)  # raises RecordError for a value the column cannot hold


def test_toml_block_has_a_comment_per_column_saying_what_was_seen() -> None:
    items = [{"pk": S("a"), "amount": N("19.25"), "at": S("2024-05-01T12:00:00Z"), "note": {"NULL": True}},
             {"pk": S("b"), "amount": N("3.5")}]
    cols, n = infer.infer_columns(items, [("pk", "S")])
    block = infer.toml_block(cols, n)
    lines = block.splitlines()
    for c in cols:  # the comment sits right above its column
        i = next(i for i, x in enumerate(lines) if f'name = "{c.name}"' in x)
        assert lines[i - 1].startswith(f"  # {c.name}: ")
    assert "# amount: in 2 of 2 item(s): numbers with a fraction, up to 2 integer digit(s) and 2 decimal place(s)" in block
    assert "precision 38 leaves room for larger values" in block
    assert "# at: in 1 of 2 item(s): ISO-8601 timestamps: 1 with an offset" in block
    assert "# note: in 1 of 2 item(s): only NULL seen" in block
    tomllib.loads(block)  # still valid TOML
