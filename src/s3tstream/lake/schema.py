"""Table columns: DynamoDB attribute types -> Iceberg types -> S3 Tables metadata / PyIceberg.

The one module holding the DynamoDB-to-Iceberg *schema* rules (the value conversions live in
``transform/mapping.py``, which reads the same column list):

* the effective column list: declared columns, key columns added when not declared (required,
  and the table's identifier fields), changelog columns, the catch-all extra column;
* the S3 Tables ``create_table(metadata={"iceberg": ...})`` payload, shaped per botocore's
  ``s3tables`` model (IcebergMetadata / IcebergSchema / IcebergSchemaV2 / SchemaV2Field /
  IcebergPartitionSpec);
* the PyIceberg Schema and PartitionSpec with the same field ids;
* the compatibility check between a table's current schema and the config (set-metadata).

Inference of a column block from sampled items (`schema infer`) is in ``lake/infer.py``.

Field ids follow Iceberg's "fresh ids" order (PyIceberg ``assign_fresh_schema_ids``): a
struct's own fields first, then each field's nested ids depth-first. So a payload built here and
the metadata S3 Tables (or the sandbox, or PyIceberg's ``new_table_metadata``) writes from it
carry the same ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import count
from typing import TYPE_CHECKING, Any, Callable

from s3tstream.errors import ConfigError
from s3tstream.transform import types as T
from s3tstream.transform.settings import CHANGELOG_COLUMNS

if TYPE_CHECKING:
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema

    from s3tstream.config.model import Config

# The Iceberg type a DynamoDB key attribute gets when no column declares it.
# N keys: long, the usual integer id (declare decimal(p,s) for non-integral keys).
KEY_TYPES = {"S": "string", "N": "long", "B": "binary"}

# Iceberg format version Firehose needs (https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-prereq.html:
# "Firehose only supports V2 table format").
FORMAT_VERSION = "2"
PARTITION_FIELD_ID_START = 1000  # Iceberg's first partition field id


@dataclass(frozen=True)
class Col:
    """One column of the table as the config makes it."""

    name: str
    type: T.IcebergType
    required: bool = False
    source: str | None = None  # DynamoDB attribute; None for synthetic columns
    role: str = "data"  # key | data | changelog | extra

    @property
    def type_str(self) -> str:
        return str(self.type)


@dataclass(frozen=True)
class TableSchema:
    """The effective columns and identifier (row key) columns of the table."""

    columns: tuple[Col, ...]
    identifier: tuple[str, ...]

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def by_name(self) -> dict[str, Col]:
        return {c.name: c for c in self.columns}


# ------------------------------------------------------------------ effective columns
def effective_schema(cfg: "Config") -> TableSchema:
    """Declared columns + missing key columns (first) + changelog columns + extra column.

    Key columns are required. Identifier fields: the key columns (upsert); the key columns and
    ``_event_id`` (changelog: one row per change, each change identified by its event id).
    """
    t = cfg.table
    declared = {c.name: c for c in t.columns}
    keys = cfg.key_columns()
    cols: list[Col] = []
    for attr, col_name in keys:
        if col_name not in declared:
            _check_name(col_name, f"the DynamoDB key {attr.name!r} (declare a column with source = {attr.name!r})")
            cols.append(Col(col_name, T.parse_type(KEY_TYPES[attr.type]), True, attr.name, "key"))
    key_names = {c for _, c in keys}
    for c in t.columns:
        role = "key" if c.name in key_names else "data"
        cols.append(Col(c.name, T.parse_type(c.type), c.required or role == "key", c.attribute, role))
    identifier = [c for _, c in keys]
    if t.mode == "changelog":
        for name, typ in CHANGELOG_COLUMNS.items():
            cols.append(Col(name, T.parse_type(typ), True, None, "changelog"))
        identifier.append("_event_id")
    if t.extra_column:
        cols.append(Col(t.extra_column, T.Primitive("string"), False, None, "extra"))
    seen: set[str] = set()
    for c in cols:
        if c.name in seen:
            raise ConfigError([("table.columns", f"column {c.name!r} appears twice (a key column clashes with another)")])
        seen.add(c.name)
    return TableSchema(tuple(cols), tuple(identifier))


def _check_name(name: str, what: str) -> None:
    if not T.is_valid_name(name):
        raise ConfigError([("table.columns", f"{name!r} is not a valid column name for {what}")])


# ------------------------------------------------------------------ Iceberg JSON types (field ids)
def _assign(typ: T.IcebergType, ids: Callable[[], int]) -> Any:
    """Iceberg JSON (spec) form of a type, assigning nested ids in fresh-id (pre-)order."""
    if isinstance(typ, (T.Primitive, T.DecimalType)):
        return str(typ)
    if isinstance(typ, T.ListType):
        eid = ids()
        return {"type": "list", "element-id": eid, "element": _assign(typ.element, ids), "element-required": False}
    if isinstance(typ, T.MapType):
        kid, vid = ids(), ids()
        return {
            "type": "map", "key-id": kid, "key": _assign(typ.key, ids),
            "value-id": vid, "value": _assign(typ.value, ids), "value-required": False,
        }
    if isinstance(typ, T.StructType):
        fids = [ids() for _ in typ.fields]
        return {
            "type": "struct",
            "fields": [
                {"id": fid, "name": f.name, "required": False, "type": _assign(f.type, ids)}
                for fid, f in zip(fids, typ.fields)
            ],
        }
    raise TypeError(f"not an Iceberg type: {typ!r}")


def schema_json(ts: TableSchema) -> dict[str, Any]:
    """The table schema as Iceberg's JSON schema (ids assigned in fresh-id order)."""
    ids = count(1).__next__
    top = [ids() for _ in ts.columns]
    fields = [
        {"id": fid, "name": c.name, "required": c.required, "type": _assign(c.type, ids)}
        for fid, c in zip(top, ts.columns)
    ]
    by_name = {f["name"]: f["id"] for f in fields}
    return {"type": "struct", "schema-id": 0, "fields": fields, "identifier-field-ids": [by_name[n] for n in ts.identifier]}


def is_nested(ts: TableSchema) -> bool:
    return any(not isinstance(c.type, (T.Primitive, T.DecimalType)) for c in ts.columns)


# ------------------------------------------------------------------ partition spec
TRANSFORM_RE = re.compile(
    r"^\s*(?:(?P<fn>identity|year|month|day|hour|bucket|truncate)\s*\(\s*(?:(?P<n>\d+)\s*,\s*)?(?P<col>[a-z_][a-z0-9_]*)\s*\)"
    r"|(?P<bare>[a-z_][a-z0-9_]*))\s*$"
)
_SUFFIX = {"identity": "", "year": "_year", "month": "_month", "day": "_day", "hour": "_hour",
           "bucket": "_bucket", "truncate": "_trunc"}
_TEMPORAL = {"date", "timestamp", "timestamptz"}


@dataclass(frozen=True)
class PartitionField:
    source: str
    transform: str  # Iceberg transform string: identity, day, bucket[16], truncate[10], ...
    name: str


def parse_partition(cfg: "Config", ts: TableSchema | None = None) -> list[PartitionField]:
    """`table.partition` entries -> partition fields, validated against the columns."""
    ts = ts or effective_schema(cfg)
    cols = ts.by_name()
    out: list[PartitionField] = []
    problems = []
    for i, text in enumerate(cfg.table.partition):
        key = f"table.partition[{i}]"
        m = TRANSFORM_RE.match(text)
        if not m:
            problems.append((key, f"{text!r}: use col, identity(col), year|month|day|hour(col), bucket(N, col) or truncate(W, col)"))
            continue
        fn = m.group("fn") or "identity"
        col = m.group("col") or m.group("bare")
        n = m.group("n")
        if (fn in ("bucket", "truncate")) != (n is not None):
            problems.append((key, f"{text!r}: {fn} takes {'a width/count and ' if n is None else 'only '}a column"))
            continue
        c = cols.get(col)
        if c is None:
            problems.append((key, f"{text!r}: no column {col!r} (columns: {', '.join(cols)})"))
            continue
        tname = "decimal" if isinstance(c.type, T.DecimalType) else str(c.type)
        if not isinstance(c.type, (T.Primitive, T.DecimalType)):
            problems.append((key, f"{text!r}: cannot partition by the nested column {col!r}"))
            continue
        if fn in ("year", "month", "day") and tname not in _TEMPORAL:
            problems.append((key, f"{text!r}: {fn}() needs a date or timestamp column, {col!r} is {c.type}"))
            continue
        if fn == "hour" and tname not in ("timestamp", "timestamptz"):
            problems.append((key, f"{text!r}: hour() needs a timestamp column, {col!r} is {c.type}"))
            continue
        if fn == "truncate" and tname not in ("int", "long", "decimal", "string", "binary"):
            problems.append((key, f"{text!r}: truncate() applies to int, long, decimal, string or binary, {col!r} is {c.type}"))
            continue
        if fn == "bucket" and tname in ("boolean", "float", "double"):
            problems.append((key, f"{text!r}: bucket() does not apply to {c.type}"))
            continue
        if n is not None and int(n) < 1:
            problems.append((key, f"{text!r}: {fn} needs a positive number"))
            continue
        transform = f"{fn}[{n}]" if n is not None else fn
        pf = PartitionField(col, transform, col + _SUFFIX[fn])
        if any(p.name == pf.name for p in out):
            problems.append((key, f"{text!r}: partition field {pf.name!r} appears twice"))
            continue
        out.append(pf)
    if problems:
        raise ConfigError(problems)
    return out


# ------------------------------------------------------------------ S3 Tables payload
def table_properties(cfg: "Config") -> dict[str, str]:
    # UNCONFIRMED: that S3 Tables honours "format-version" in create_table properties (it is the
    # Iceberg REST way to ask for a version; Firehose needs v2). set-metadata upgrades a v1 table.
    return {"format-version": FORMAT_VERSION, **cfg.table.properties}


def metadata_payload(cfg: "Config") -> dict[str, Any]:
    """The `metadata` argument of s3tables create_table: {"iceberg": IcebergMetadata}.

    ``schema.fields`` (no ids) for primitive-only tables without identifier fields; otherwise
    ``schemaV2`` with field ids, nested types as Iceberg JSON and ``identifier-field-ids``.
    """
    ts = effective_schema(cfg)
    sj = schema_json(ts)
    ice: dict[str, Any] = {}
    if is_nested(ts) or ts.identifier:
        ice["schemaV2"] = {
            "type": "struct",
            "schemaId": 0,
            "fields": [{"id": f["id"], "name": f["name"], "type": f["type"], "required": f["required"]} for f in sj["fields"]],
            "identifierFieldIds": sj["identifier-field-ids"],
        }
    else:
        ice["schema"] = {"fields": [{"name": c.name, "type": c.type_str, "required": c.required} for c in ts.columns]}
    parts = parse_partition(cfg, ts)
    if parts:
        ids = {f["name"]: f["id"] for f in sj["fields"]}
        ice["partitionSpec"] = {
            "specId": 0,
            "fields": [
                {"sourceId": ids[p.source], "transform": p.transform, "name": p.name, "fieldId": PARTITION_FIELD_ID_START + i}
                for i, p in enumerate(parts)
            ],
        }
    ice["properties"] = table_properties(cfg)
    return {"iceberg": ice}


# ------------------------------------------------------------------ PyIceberg conversions
def _py_type(j: Any) -> Any:
    """Iceberg JSON type (with ids) -> PyIceberg type."""
    from pyiceberg import types as P

    if isinstance(j, str):
        return _py_primitive(j)
    kind = j.get("type")
    if kind == "list":
        return P.ListType(element_id=j["element-id"], element_type=_py_type(j["element"]),
                          element_required=bool(j.get("element-required", False)))
    if kind == "map":
        return P.MapType(key_id=j["key-id"], key_type=_py_type(j["key"]), value_id=j["value-id"],
                         value_type=_py_type(j["value"]), value_required=bool(j.get("value-required", False)))
    if kind == "struct":
        return P.StructType(*[P.NestedField(f["id"], f["name"], _py_type(f["type"]), required=bool(f.get("required", False)))
                              for f in j["fields"]])
    raise ValueError(f"unknown Iceberg type {j!r}")


def _py_primitive(name: str) -> Any:
    from pyiceberg import types as P

    simple = {
        "boolean": P.BooleanType(), "int": P.IntegerType(), "long": P.LongType(), "float": P.FloatType(),
        "double": P.DoubleType(), "date": P.DateType(), "timestamp": P.TimestampType(),
        "timestamptz": P.TimestamptzType(), "string": P.StringType(), "binary": P.BinaryType(),
    }
    if name in simple:
        return simple[name]
    m = re.fullmatch(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)", name)
    if m:
        return P.DecimalType(int(m.group(1)), int(m.group(2)))
    raise ValueError(f"unknown Iceberg primitive type {name!r}")


def to_py_type(typ: T.IcebergType) -> Any:
    """Our parsed type -> a PyIceberg type (nested ids are placeholders: PyIceberg reassigns them)."""
    return _py_type(_assign(typ, count(1).__next__))


def schema_from_json(sj: dict[str, Any]) -> "Schema":
    from pyiceberg import types as P
    from pyiceberg.schema import Schema

    fields = [P.NestedField(f["id"], f["name"], _py_type(f["type"]), required=bool(f.get("required", False)))
              for f in sj["fields"]]
    return Schema(*fields, schema_id=int(sj.get("schema-id", 0)), identifier_field_ids=list(sj.get("identifier-field-ids", [])))


def pyiceberg_schema(ts: TableSchema) -> "Schema":
    """The PyIceberg Schema of the effective columns (same field ids as the payload)."""
    return schema_from_json(schema_json(ts))


def pyiceberg_partition_spec(cfg: "Config", schema: "Schema") -> "PartitionSpec":
    from pyiceberg.partitioning import PartitionField as PF
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.transforms import parse_transform

    fields = []
    for i, p in enumerate(parse_partition(cfg)):
        fields.append(PF(source_id=schema.find_field(p.source).field_id, field_id=PARTITION_FIELD_ID_START + i,
                         transform=parse_transform(p.transform), name=p.name))
    return PartitionSpec(*fields, spec_id=0)


def _g(d: dict[str, Any], key: str, default: Any = None) -> Any:
    """A member by its boto3 name (schemaId) or its wire name (schema-id: botocore's locationName)."""
    wire = re.sub(r"(?<=[a-z])([A-Z])", lambda m: "-" + m.group(1).lower(), key)
    if key in d:
        return d[key]
    if wire in d:
        return d[wire]
    if default is None:
        raise KeyError(key)
    return default


def payload_to_pyiceberg(ice: dict[str, Any]) -> tuple["Schema", "PartitionSpec", dict[str, str]]:
    """An s3tables IcebergMetadata payload -> (Schema, PartitionSpec, properties).

    Used by the sandbox to write what S3 Tables writes on create_table(metadata=...); takes the
    boto3 member names or the wire names (``schema-id``, ``identifier-field-ids``, ``source-id``).
    ``schema.fields`` get ids 1..n in order (UNCONFIRMED: the ids AWS assigns to them).
    """
    from pyiceberg.partitioning import PartitionField as PF
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.transforms import parse_transform

    if "schemaV2" in ice:
        v2 = ice["schemaV2"]
        sj = {"schema-id": _g(v2, "schemaId", 0), "identifier-field-ids": _g(v2, "identifierFieldIds", []),
              "fields": [{"id": f["id"], "name": f["name"], "type": f["type"], "required": f.get("required", False)}
                         for f in v2["fields"]]}
    elif "schema" in ice:
        sj = {"schema-id": 0, "identifier-field-ids": [],
              "fields": [{"id": i + 1, "name": f["name"], "type": f["type"], "required": bool(f.get("required", False))}
                         for i, f in enumerate(ice["schema"]["fields"])]}
    else:
        raise ValueError("metadata.iceberg needs schema or schemaV2")
    schema = schema_from_json(sj)
    spec_fields = []
    for i, f in enumerate((ice.get("partitionSpec") or {}).get("fields", [])):
        spec_fields.append(PF(source_id=_g(f, "sourceId"), field_id=_g(f, "fieldId", PARTITION_FIELD_ID_START + i),
                              transform=parse_transform(f["transform"]), name=f["name"]))
    spec = PartitionSpec(*spec_fields, spec_id=_g(ice.get("partitionSpec") or {}, "specId", 0))
    return schema, spec, dict(ice.get("properties") or {})


def iceberg_type_str(t: Any) -> str:
    """PyIceberg type -> our canonical type string (as transform.types prints it)."""
    from pyiceberg import types as P

    if isinstance(t, P.ListType):
        return f"list<{iceberg_type_str(t.element_type)}>"
    if isinstance(t, P.MapType):
        return f"map<{iceberg_type_str(t.key_type)},{iceberg_type_str(t.value_type)}>"
    if isinstance(t, P.StructType):
        return "struct<" + ",".join(f"{f.name}:{iceberg_type_str(f.field_type)}" for f in t.fields) + ">"
    if isinstance(t, P.DecimalType):
        return f"decimal({t.precision},{t.scale})"
    return {
        P.BooleanType: "boolean", P.IntegerType: "int", P.LongType: "long", P.FloatType: "float",
        P.DoubleType: "double", P.DateType: "date", P.TimestampType: "timestamp", P.TimestamptzType: "timestamptz",
        P.StringType: "string", P.BinaryType: "binary",
    }.get(type(t), str(t))


# ------------------------------------------------------------------ compatibility (set-metadata)
@dataclass
class SchemaDiff:
    """What it takes to bring a table's schema in line with the config."""

    add: list[tuple[tuple[str, ...], T.IcebergType]] = field(default_factory=list)  # (path, type)
    widen: list[tuple[tuple[str, ...], T.IcebergType, str]] = field(default_factory=list)  # (path, new, old)
    make_optional: list[tuple[str, ...]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # table columns the config no longer names (left in place)

    @property
    def changes(self) -> list[str]:
        out = [f"add column {'.'.join(p)} {t}" for p, t in self.add]
        out += [f"widen {'.'.join(p)} {old} -> {new}" for p, new, old in self.widen]
        out += [f"make {'.'.join(p)} optional" for p in self.make_optional]
        return out


def _widens(old: T.IcebergType, new: T.IcebergType) -> bool:
    """Iceberg's allowed type promotions: int->long, float->double, decimal(P,S)->decimal(P',S), P'>P."""
    if (str(old), str(new)) in (("int", "long"), ("float", "double")):
        return True
    return (isinstance(old, T.DecimalType) and isinstance(new, T.DecimalType)
            and new.scale == old.scale and new.precision > old.precision)


def _compare(path: tuple[str, ...], old: T.IcebergType, new: T.IcebergType, d: SchemaDiff) -> None:
    where = ".".join(path)
    if old == new:
        return
    if isinstance(old, T.StructType) and isinstance(new, T.StructType):
        have = {f.name: f.type for f in old.fields}
        for f in new.fields:
            if f.name in have:
                _compare(path + (f.name,), have[f.name], f.type, d)
            else:
                d.add.append((path + (f.name,), f.type))
        gone = [f.name for f in old.fields if f.name not in {g.name for g in new.fields}]
        d.kept += [f"{where}.{g}" for g in gone]
        return
    if isinstance(old, T.ListType) and isinstance(new, T.ListType):
        _compare(path + ("element",), old.element, new.element, d)
        return
    if isinstance(old, T.MapType) and isinstance(new, T.MapType):
        _compare(path + ("value",), old.value, new.value, d)
        return
    if _widens(old, new):
        d.widen.append((path, new, str(old)))
        return
    if _widens(new, old) or (isinstance(old, T.DecimalType) and isinstance(new, T.DecimalType)):
        d.problems.append(f"column {where}: type {old} -> {new} narrows or rescales it")
    else:
        d.problems.append(f"column {where}: type {old} -> {new} is not a type change Iceberg allows")


def diff_schema(current: "Schema", ts: TableSchema) -> SchemaDiff:
    """Compare the table's current schema with the config's; never suggests dropping data."""
    d = SchemaDiff()
    have = {f.name: f for f in current.fields}
    cur_ident = sorted(current.find_column_name(i) or str(i) for i in current.identifier_field_ids)
    want_ident = sorted(ts.identifier)
    if cur_ident != want_ident:
        d.problems.append(
            f"key (identifier) columns {cur_ident or '(none)'} -> {want_ident}: the row key of an existing table cannot change"
        )
    for c in ts.columns:
        f = have.get(c.name)
        if f is None:
            if c.required:
                d.problems.append(
                    f"column {c.name}: a new column must be optional (required = false): rows already in the table have no value"
                )
            else:
                d.add.append(((c.name,), c.type))
            continue
        old = T.parse_type(iceberg_type_str(f.field_type))
        _compare((c.name,), old, c.type, d)
        if f.required and not c.required:
            d.make_optional.append((c.name,))
        elif not f.required and c.required:
            d.problems.append(f"column {c.name}: optional -> required is not allowed (existing rows may hold nulls)")
    wanted = {c.name for c in ts.columns}
    d.kept += [f.name for f in current.fields if f.name not in wanted]
    return d


def kept_columns_warning(d: SchemaDiff) -> str | None:
    """What `plan`/`up` say when the config no longer names columns the table has: s3tstream
    never drops a column (its data stays), so those columns go NULL on every row written from
    now on, which `verify` cannot see (it compares the columns the config names)."""
    if not d.kept:
        return None
    return (f"the config no longer names table column(s) {', '.join(d.kept)}: the table keeps them with their data, "
            "and every row written from now on has NULL there; put them back in table.columns to keep filling them")


INCOMPATIBLE_HINT = (
    "Iceberg cannot make this change in place. Put the column back as it is in the table (only widening "
    "int->long, float->double, decimal precision, and adding optional columns are applied), or add a new "
    "column under another name and stop using the old one. To start over with the new schema, run "
    "`s3tstream down --step create-table-bucket` (deletes the table and its data) and `s3tstream up`."
)
