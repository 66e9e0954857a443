"""The export strategy's SQL: DynamoDB export items mapped to the lake's columns in Athena (Trino)
following transform.mapping's rules, and the one statement that loads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from s3tstream.data.backfill.records import key_attrs
from s3tstream.errors import UsageError
from s3tstream.lake.query import quote_ident as _qi
from s3tstream.lake.query import sql_literal as _lit
from s3tstream.lake.query import trino_type
from s3tstream.transform import types as T

if TYPE_CHECKING:
    from s3tstream.config.model import Config
    from s3tstream.transform import Settings


_SET_TAG = {"string": "SS", "binary": "BS"}


def value_sql(t: T.IcebergType, av: str, depth: int = 0) -> str:
    """SQL turning ``av`` (a JSON DynamoDB attribute value, or NULL) into a value of type ``t``,
    following transform.mapping's rules (see the module docstring for the differences)."""
    def x(tag: str) -> str:
        return f"json_extract_scalar({av}, '$.{tag}')"

    if isinstance(t, T.DecimalType):
        return f"CAST({x('N')} AS {trino_type(t)})"
    if isinstance(t, T.Primitive):
        p = t.name
        if p == "string":
            return f"COALESCE({x('S')}, {x('N')}, {x('BOOL')}, {x('B')})"
        if p == "boolean":
            return f"CAST({x('BOOL')} AS BOOLEAN)"
        if p in ("int", "long"):
            typ = "INTEGER" if p == "int" else "BIGINT"
            return f"COALESCE(TRY_CAST({x('N')} AS {typ}), CAST(CAST({x('N')} AS DOUBLE) AS {typ}))"
        if p in ("float", "double"):
            return f"CAST({x('N')} AS {'REAL' if p == 'float' else 'DOUBLE'})"
        if p == "binary":
            return f"from_base64({x('B')})"
        n = f"CAST({x('N')} AS DECIMAL(38,9))"
        # epoch seconds, or milliseconds when abs(N) >= 1e11 (transform.mapping)
        nanos = (f"from_unixtime_nanos(CAST(floor({n} * CASE WHEN abs({n}) >= 100000000000 THEN 1000000 "
                 f"ELSE 1000000000 END) AS BIGINT))")
        if p == "date":
            return f"COALESCE(TRY(from_iso8601_date(substr({x('S')}, 1, 10))), CAST({nanos} AS DATE))"
        ts = f"COALESCE(TRY(from_iso8601_timestamp_nanos({x('S')})), {nanos})"
        if p == "timestamptz":
            return f"CAST(at_timezone({ts}, 'UTC') AS TIMESTAMP(6) WITH TIME ZONE)"
        return f"CAST(at_timezone({ts}, 'UTC') AS TIMESTAMP(6))"
    v = f"x{depth}"
    if isinstance(t, T.ListType):
        parts = [f"transform(CAST(json_extract({av}, '$.L') AS ARRAY(JSON)), {v} -> {value_sql(t.element, v, depth + 1)})"]
        el = t.element
        if isinstance(el, (T.Primitive, T.DecimalType)):
            tags = [_SET_TAG.get(el.name, "SS")] if isinstance(el, T.Primitive) and el.name in _SET_TAG else []
            if isinstance(el, T.DecimalType) or el.name in ("int", "long", "float", "double", "string"):
                tags.append("NS")
            for tag in dict.fromkeys(tags):
                inner = {"SS": "S", "NS": "N", "BS": "B"}[tag]
                wrapped = f"json_parse(concat('{{\"{inner}\":', json_format({v}), '}}'))"
                parts.append(f"array_sort(transform(CAST(json_extract({av}, '$.{tag}') AS ARRAY(JSON)), "
                             f"{v} -> {value_sql(el, wrapped, depth + 1)}))")
        return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"
    if isinstance(t, T.MapType):
        return (f"transform_values(CAST(json_extract({av}, '$.M') AS MAP(VARCHAR, JSON)), "
                f"(k{depth}, {v}) -> {value_sql(t.value, v, depth + 1)})")
    if isinstance(t, T.StructType):
        m = f"CAST(json_extract({av}, '$.M') AS MAP(VARCHAR, JSON))"
        fields = ", ".join(value_sql(f.type, f"element_at({m}, {_lit(f.name)})", depth + 1) for f in t.fields)
        return f"CASE WHEN json_extract({av}, '$.M') IS NULL THEN NULL ELSE CAST(ROW({fields}) AS {trino_type(t)}) END"
    raise ValueError(f"unsupported type {t}")  # pragma: no cover


def export_columns(cfg: "Config", settings: "Settings | None" = None) -> list[tuple[str, T.IcebergType, str]]:
    """(column, type, DynamoDB attribute) of every column the transform fills from the item
    (``settings``: the transform's, default the config's)."""
    from s3tstream.data.items import transform_settings

    return [(c.name, c.type, c.source) for c in (settings or transform_settings(cfg)).columns]


EXPORT_ITEM = "item"


def export_items_sql(source_table: str) -> str:
    """Each line of the export (``{"Item": {...}}``) as a map of attribute -> DynamoDB JSON value."""
    return f"SELECT CAST(json_extract(line, '$.Item') AS MAP(VARCHAR, JSON)) AS {EXPORT_ITEM} FROM {source_table}"


def column_exprs(cfg: "Config", settings: "Settings | None" = None) -> list[str]:
    """``<value> AS "<column>"`` over an export item, per column the transform fills."""
    return [f"{value_sql(t, f'element_at({EXPORT_ITEM}, {_lit(attr)})')} AS {_qi(name)}"
            for name, t, attr in export_columns(cfg, settings)]


def export_select(cfg: "Config", source_table: str, export_id: str, export_time_iso: str) -> tuple[list[str], str]:
    """(columns, SELECT over the export's external table) giving the rows the transform would write."""
    item = EXPORT_ITEM
    exprs = column_exprs(cfg)
    names = [n for n, _, _ in export_columns(cfg)]
    if cfg.table.mode == "changelog":
        key_json = " || '|' || ".join(f"json_format(element_at({item}, {_lit(a)}))" for a in key_attrs(cfg))
        exprs += ["'backfill' AS \"_op\"",
                  f"CAST(from_iso8601_timestamp_nanos({_lit(export_time_iso)}) AS TIMESTAMP(6) WITH TIME ZONE) AS \"_event_time\"",
                  f"concat({_lit('export:' + export_id + ':')}, {key_json}) AS \"_event_id\""]
        names += ["_op", "_event_time", "_event_id"]
    return names, "SELECT " + ",\n       ".join(exprs) + f"\nFROM ({export_items_sql(source_table)})"


def load_sql(cfg: "Config", source_table: str, export_id: str, export_time_iso: str) -> str:
    """The one Athena statement that loads the export into the lake table."""
    names, select = export_select(cfg, source_table, export_id, export_time_iso)
    target = f"{_qi(cfg.names.namespace)}.{_qi(cfg.names.table)}"
    cols = ", ".join(_qi(n) for n in names)
    if cfg.table.mode == "changelog":
        return f"INSERT INTO {target} ({cols})\n{select}"
    keys = [c for _, c in cfg.key_columns()]
    on = " AND ".join(f"t.{_qi(k)} = s.{_qi(k)}" for k in keys)
    vals = ", ".join(f"s.{_qi(n)}" for n in names)
    return (f"MERGE INTO {target} AS t\nUSING ({select}) AS s\nON ({on})\n"
            f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})")


PERMISSION_WORDS = ("Lake Formation", "AccessDenied", "Access Denied", "not authorized", "PERMISSION_DENIED")


def load_permission_hint(cfg: "Config") -> str:
    """What the principal running the load needs (Athena runs it with the caller's rights)."""
    return (f"the principal running `s3tstream backfill` needs Lake Formation SELECT, INSERT, DELETE and DESCRIBE "
            f"on {cfg.names.namespace}.{cfg.names.table} in s3tablescatalog/{cfg.names.table_bucket} (a data lake "
            f"administrator can grant them to itself), glue:GetTable/CreateTable/DeleteTable on the temporary "
            f"database {temp_database(cfg)}, and s3:GetObject/ListBucket on the export prefix; then run "
            "`s3tstream backfill` again (the export is kept)")


def check_exportable(cfg: "Config", what: str = "strategy export", otherwise: str = "use --strategy scan") -> None:
    if cfg.table.extra_column:
        raise UsageError(
            f"{what} cannot fill table.extra_column the way the transform does",
            f"{otherwise} (it maps every item with the transform)",
        )

# ------------------------------------------------------------------ the export strategy: steps
def temp_database(cfg: "Config") -> str:
    """The Glue database of the stack's temporary export tables (Glue names: lower case, _)."""
    return f"s3tstream_{cfg.stack.name.replace('-', '_')}_backfill"


def temp_names(cfg: "Config", export_id: str) -> tuple[str, str]:
    db = temp_database(cfg)
    tbl = "export_" + "".join(ch if ch.isalnum() else "_" for ch in export_id.lower())
    return db, tbl

