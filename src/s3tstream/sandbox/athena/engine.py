"""The sandbox's Athena engine: Athena (Trino) SQL over Iceberg tables, run with DuckDB.

``run(sql, catalog, database, load)``: finds the tables the statement references (DuckDB's own
parser, ``json_serialize_sql``), resolves each one like Athena does (unqualified -> the
QueryExecutionContext's Catalog and Database; ``schema.table`` -> the context's catalog;
``"s3tablescatalog/<bucket>".schema.table`` fully qualified; names are case-insensitive),
loads it through ``load(catalog, schema, table) -> (pyarrow.Table, bytes scanned)`` (in the
sandbox: the current snapshot read merge-on-read, equality and position deletes applied per the
Iceberg spec, ``s3tstream.lake.merge_on_read``) and registers it in DuckDB under the same three-part name (an
attached in-memory database named after the catalog, a schema named after the namespace), so
the SQL runs unchanged. Results come back as Athena returns them: every value as text
(``VarCharValue``), types as Athena names them (varchar, bigint, integer, double, decimal,
boolean, date, timestamp, array, map, row, varbinary, ...).

Errors are raised as :class:`QueryError` with Athena's ``StateChangeReason`` text, e.g.
``TABLE_NOT_FOUND: line 1:15: Table 's3tablescatalog/lake.ns.t' does not exist``
(format as Athena reports it for awsdatacatalog, e.g. a public report of
``TABLE_NOT_FOUND: line 1:91: Table 'awsdatacatalog.db.tbl' does not exist``).

Differences from Athena (engine v3 = Trino): DuckDB's SQL dialect and functions (common ANSI SQL
is the same; Trino-only functions are missing unless shimmed below: ``json_format``,
``from_unixtime``, ``to_unixtime``, ``cardinality``; a statement DuckDB refuses as written goes
through ``trino_sql``, sqlglot's Trino-to-DuckDB translation); read queries (SELECT/WITH/VALUES),
and INSERT INTO / MERGE INTO an Iceberg table (``athena_dml``; MERGE only WHEN NOT MATCHED THEN
INSERT); no DDL;
text of values follows Trino's rendering where known (doubles like Java, ``1.0E10``;
timestamps with 6 fractional digits; varbinary as space-separated hex; arrays ``[a, b]``,
maps and rows ``{k=v}``; UNCONFIRMED details).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

DEFAULT_CATALOG = "awsdatacatalog"
DEFAULT_DATABASE = "default"

Loader = Callable[[str, str, str], tuple[Any, int]]
# write(target, rows_for) -> rows written: loads the target Iceberg table, calls rows_for(its rows
# as Arrow) for the rows to add, appends them in one commit (the caller retries a lost commit race)
Writer = Callable[["TableRef", Callable[[Any], Any]], int]


class QueryError(Exception):
    """A query that fails: ``reason`` is Athena's StateChangeReason (``CODE: message``)."""

    def __init__(self, code: str, message: str, category: int = 2) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = f"{code}: {message}"
        self.category = category  # AthenaError.ErrorCategory: 1 system, 2 user, 3 other


class NotFound(QueryError):
    pass


@dataclasses.dataclass
class Column:
    name: str
    type: str  # Athena type name
    precision: int = 0
    scale: int = 0
    case_sensitive: bool = False

    def info(self) -> dict[str, Any]:
        return {
            "CatalogName": "hive",
            "SchemaName": "",
            "TableName": "",
            "Name": self.name,
            "Label": self.name,
            "Type": self.type,
            "Precision": self.precision,
            "Scale": self.scale,
            "Nullable": "UNKNOWN",
            "CaseSensitive": self.case_sensitive,
        }


@dataclasses.dataclass
class Result:
    columns: list[Column]
    rows: list[list[str | None]]
    data_scanned: int
    tables: list[str]


@dataclasses.dataclass(frozen=True)
class TableRef:
    catalog: str
    schema: str
    table: str
    location: int  # character offset in the SQL

    @property
    def qualified(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"


# --------------------------------------------------------------------------- parsing
def _line_col(sql: str, offset: int) -> str:
    if offset < 0 or offset > len(sql):
        return "line 1:1"
    line = sql.count("\n", 0, offset) + 1
    col = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}:{col}"


_DML_START = re.compile(r"^\s*(insert|merge)\b", re.IGNORECASE)
_READ_START = re.compile(r"^\s*(?:\(\s*)*(select|with|values|table)\b", re.IGNORECASE | re.DOTALL)
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _serialize(con: Any, sql: str) -> dict[str, Any]:
    return json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])


def references(con: Any, sql: str, catalog: str, database: str) -> list[TableRef]:
    """Tables a read statement references, resolved against the context (CTE names excluded)."""
    return analyze(con, sql, catalog, database)[0]


def _labels(statement: dict[str, Any]) -> list[str | None] | None:
    """Athena's result column names where DuckDB's differ: ``_colN`` for an unnamed expression
    (None: keep DuckDB's name). None when the select list has a ``*``."""
    node = statement.get("node") or {}
    while node.get("type") == "SET_OPERATION_NODE":
        node = node.get("left") or {}
    items = node.get("select_list")
    if not isinstance(items, list) or any(i.get("class") == "STAR" for i in items):
        return None
    out: list[str | None] = []
    for i, item in enumerate(items):
        if item.get("alias") or item.get("class") == "COLUMN_REF":
            out.append(None)
        else:
            out.append(f"_col{i}")
    return out


def analyze(con: Any, sql: str, catalog: str, database: str,
            tree: dict[str, Any] | None = None) -> tuple[list[TableRef], list[str | None] | None]:
    """(tables referenced, Athena column labels) of a read statement (``tree``: its parse, when made)."""
    stripped = _COMMENTS.sub(" ", sql)
    tree = tree if tree is not None else _serialize(con, sql)
    if tree.get("error") and tree.get("error_type") == "parser":
        pos = int(tree.get("position") or 0) if str(tree.get("position", "")).isdigit() else 0
        msg = tree.get("error_message") or "syntax error"
        raise QueryError("SYNTAX_ERROR", f"{_line_col(sql, pos)}: {msg}")
    if tree.get("error") or not _READ_START.match(stripped):
        word = (stripped.strip().split() or [""])[0].upper()
        raise QueryError(
            "NOT_SUPPORTED",
            f"line 1:1: the sandbox's Athena runs read queries (SELECT, WITH, VALUES), INSERT INTO and "
            f"MERGE INTO only, not "
            f"{word or 'an empty statement'}",
        )
    if len(tree.get("statements", [])) != 1:
        raise QueryError("SYNTAX_ERROR", "line 1:1: only one statement can be run at a time")
    ctes: set[str] = set()
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            cte_map = node.get("cte_map")
            if isinstance(cte_map, dict):
                for entry in cte_map.get("map") or []:
                    ctes.add(str(entry.get("key", "")).lower())
            if node.get("type") == "BASE_TABLE" and "table_name" in node:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(tree["statements"])
    out: list[TableRef] = []
    seen: set[tuple[str, str, str]] = set()
    for node in found:
        name = str(node["table_name"]).lower()
        schema = str(node.get("schema_name") or "").lower()
        cat = str(node.get("catalog_name") or "").lower()
        if not schema and not cat and name in ctes:
            continue
        ref = TableRef(cat or catalog, schema or database, name, int(node.get("query_location") or 0))
        if (ref.catalog, ref.schema, ref.table) not in seen:
            seen.add((ref.catalog, ref.schema, ref.table))
            out.append(ref)
    return out, _labels(tree["statements"][0])


# --------------------------------------------------------------------------- types and text
def _java_double(x: float) -> str:
    """Java's Double.toString (what Trino prints for double)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if str(x).startswith("-") else "0.0"
    return _java_from_repr(repr(x), abs(x))


def _java_from_repr(text: str, magnitude: float) -> str:
    d = Decimal(text)
    if 1e-3 <= magnitude < 1e7:
        s = format(d, "f")
        if "." not in s:
            s += ".0"
        s = s.rstrip("0")
        return s + "0" if s.endswith(".") else s
    sign, digits, _ = d.as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return f"{'-' if sign else ''}{mantissa}E{d.adjusted()}"


def _java_float(x: float) -> str:
    """Java's Float.toString for a single-precision value."""
    if x != x or x in (float("inf"), float("-inf")) or x == 0:
        return _java_double(x)
    target = struct.unpack("<f", struct.pack("<f", x))[0]
    text = repr(target)
    for p in range(1, 10):
        candidate = f"{target:.{p}g}"
        if struct.unpack("<f", struct.pack("<f", float(candidate)))[0] == target:
            text = candidate
            break
    return _java_from_repr(text, abs(target))


def _ts(v: datetime.datetime) -> str:
    # Trino pads the year to 4 digits (Java's "uuuu"): 0001-01-01 00:00:00.000000; strftime("%Y")
    # does not on Linux ("1-01-01")
    s = f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    if v.tzinfo is not None:
        off = v.utcoffset()
        s += " UTC" if not off else " " + v.strftime("%z")
    return s


def text(value: Any, athena_type: str = "") -> str | None:
    """A value as Athena's VarCharValue text (None for NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _java_float(value) if athena_type in ("float", "real") else _java_double(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime.datetime):
        return _ts(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return " ".join(f"{b:02x}" for b in bytes(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        total = value.total_seconds()
        days, rem = divmod(abs(total), 86400)
        h, rem = divmod(rem, 3600)
        m, s = divmod(rem, 60)
        return f"{'-' if total < 0 else ''}{int(days)} {int(h):02d}:{int(m):02d}:{s:06.3f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_nested(v) for v in value) + "]"
    if isinstance(value, dict):
        if set(value) == {"key", "value"} and isinstance(value["key"], list):  # an old-style DuckDB MAP
            value = dict(zip(value["key"], value["value"]))
        return "{" + ", ".join(f"{_nested(k)}={_nested(v)}" for k, v in value.items()) + "}"
    return str(value)


def _nested(v: Any) -> str:
    t = text(v)
    return "null" if t is None else t


_DECIMAL = re.compile(r"^DECIMAL\((\d+),\s*(\d+)\)$")
_SIMPLE = {
    "BOOLEAN": ("boolean", 0), "TINYINT": ("tinyint", 3), "SMALLINT": ("smallint", 5),
    "INTEGER": ("integer", 10), "BIGINT": ("bigint", 19), "HUGEINT": ("bigint", 19),
    "UTINYINT": ("smallint", 5), "USMALLINT": ("integer", 10), "UINTEGER": ("bigint", 19),
    "UBIGINT": ("decimal", 20), "UHUGEINT": ("decimal", 38), "FLOAT": ("float", 17), "DOUBLE": ("double", 17),
    "VARCHAR": ("varchar", 2147483647), "BLOB": ("varbinary", 1073741824), "DATE": ("date", 0),
    "TIME": ("time", 0), "TIMESTAMP": ("timestamp", 3), "TIMESTAMP_NS": ("timestamp", 3),
    "TIMESTAMP_MS": ("timestamp", 3), "TIMESTAMP_S": ("timestamp", 3),
    "TIMESTAMP WITH TIME ZONE": ("timestamp with time zone", 3), "INTERVAL": ("interval day to second", 0),
    "UUID": ("uuid", 0), "JSON": ("json", 0), "BIT": ("varchar", 2147483647),
}


def athena_column(name: str, duck_type: str) -> Column:
    t = duck_type.strip().upper()
    m = _DECIMAL.match(t)
    if m:
        return Column(name, "decimal", int(m.group(1)), int(m.group(2)))
    if t in _SIMPLE:
        typ, precision = _SIMPLE[t]
        return Column(name, typ, precision, 0, case_sensitive=(typ == "varchar"))
    if t.endswith("]"):
        return Column(name, "array")
    if t.startswith("STRUCT"):
        return Column(name, "row")
    if t.startswith("MAP"):
        return Column(name, "map")
    if t.startswith("ENUM"):
        return Column(name, "varchar", 2147483647, case_sensitive=True)
    return Column(name, t.lower())


# --------------------------------------------------------------------------- running
_SHIMS = (
    # Trino functions the product's SQL uses that DuckDB spells differently
    "CREATE OR REPLACE TEMP MACRO json_format(j) AS CAST(j AS VARCHAR)",
    "CREATE OR REPLACE TEMP MACRO from_unixtime(s) AS to_timestamp(s)",
    "CREATE OR REPLACE TEMP MACRO to_unixtime(t) AS epoch(t)",
    "CREATE OR REPLACE TEMP MACRO cardinality(x) AS len(x)",
)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _translate(exc: Exception, sql: str) -> QueryError:
    import duckdb

    msg = str(exc).split("\n")[0]
    msg = re.sub(r"^[A-Za-z ]+ Error: ", "", msg)
    m = re.search(r'Referenced column "([^"]+)" not found', msg)
    if m:
        col = m.group(1)
        pos = sql.lower().find(col.lower())
        return QueryError("COLUMN_NOT_FOUND", f"{_line_col(sql, pos)}: Column '{col}' cannot be resolved")
    if isinstance(exc, duckdb.ParserException):
        return QueryError("SYNTAX_ERROR", f"line 1:1: {msg}")
    if isinstance(exc, duckdb.PermissionException):  # a host file, an extension (_Session locks them)
        return QueryError("PERMISSION_DENIED", f"line 1:1: Access Denied: {msg}; Athena reads only the tables "
                          "of its catalogs")
    if isinstance(exc, duckdb.CatalogException) and "Function" in msg:
        return QueryError("FUNCTION_NOT_FOUND", f"line 1:1: {msg}")
    if isinstance(exc, (duckdb.BinderException, duckdb.CatalogException, duckdb.ConversionException,
                        duckdb.InvalidInputException, duckdb.OutOfRangeException)):
        return QueryError("SYNTAX_ERROR" if isinstance(exc, duckdb.BinderException) else "INVALID_CAST_ARGUMENT"
                          if isinstance(exc, duckdb.ConversionException) else "GENERIC_USER_ERROR", f"line 1:1: {msg}")
    return QueryError("GENERIC_INTERNAL_ERROR", msg, category=1)


class _Session:
    """One DuckDB connection laid out like Athena's catalogs: each referenced table loaded and
    registered under its own three-part name (an attached database per catalog, a schema per
    database/namespace), in UTC, with the Trino shims."""

    def __init__(self, load: Loader) -> None:
        import duckdb

        self.con = duckdb.connect(":memory:")
        self.load = load
        self.scanned = 0
        self._attached: set[str] = set()
        self._schemas: set[tuple[str, str]] = set()
        self.con.execute("SET TimeZone = 'UTC'")
        # Athena reads only the tables of its catalogs (S3 objects): no host files by path
        # (read_parquet/read_csv/glob/COPY/ATTACH), no extensions, no Python variables by name;
        # locked so that a statement cannot turn it back on. Refusals: PERMISSION_DENIED (_translate).
        for setting in ("enable_external_access = false", "python_enable_replacements = false",
                        "lock_configuration = true"):
            self.con.execute(f"SET {setting}")
        from s3tstream.sandbox.athena.trino_sql import MACROS

        for shim in _SHIMS + MACROS:
            self.con.execute(shim)

    def ensure(self, cat: str, schema: str) -> None:
        if cat not in self._attached:
            self.con.execute(f"ATTACH ':memory:' AS {_quote(cat)}")
            self._attached.add(cat)
        if (cat, schema) not in self._schemas:
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(cat)}.{_quote(schema)}")
            self._schemas.add((cat, schema))

    def register(self, refs: list[TableRef], sql: str) -> None:
        for ref in refs:
            try:
                arrow, nbytes = self.load(ref.catalog, ref.schema, ref.table)
            except NotFound as exc:
                where = _line_col(sql, ref.location)
                raise QueryError(exc.code, f"{where}: {exc.reason.split(': ', 1)[1]}") from None
            self.scanned += int(nbytes)
            self.ensure(ref.catalog, ref.schema)
            view = f"__s3t_table_{uuid.uuid4().hex[:12]}"
            self.con.register(view, arrow)
            self.con.execute(f"CREATE OR REPLACE VIEW {_quote(ref.catalog)}.{_quote(ref.schema)}.{_quote(ref.table)} AS "
                             f"SELECT * FROM {_quote(view)}")

    def use(self, catalog: str, database: str) -> None:
        self.ensure(catalog, database)
        self.con.execute(f"USE {_quote(catalog)}.{_quote(database)}")

    def close(self) -> None:
        self.con.close()


def substatement(sql: str) -> str:
    """Athena's SubstatementType of a statement the sandbox runs: SELECT, INSERT or MERGE."""
    m = _DML_START.match(_COMMENTS.sub(" ", sql))
    return m.group(1).upper() if m else "SELECT"


def _as_trino(sql: str) -> str | None:
    """DuckDB SQL for a statement DuckDB cannot run as written (None: sqlglot cannot read it either)."""
    from s3tstream.sandbox.athena import trino_sql

    try:
        out = trino_sql.translate(sql)
    except trino_sql.Untranslatable:
        return None
    return out if out != sql else None


def is_dml(sql: str) -> bool:
    """INSERT INTO / MERGE INTO: a write, run by ``dml.run_dml``."""
    return bool(_DML_START.match(_COMMENTS.sub(" ", sql)))


def run(sql: str, catalog: str | None, database: str | None, load: Loader) -> Result:
    """Run one statement; raises QueryError with Athena's reason text. Reads run as written (or
    through the Trino translation when DuckDB refuses them); INSERT and MERGE are ``dml.run_dml``'s."""
    import duckdb

    catalog = (catalog or DEFAULT_CATALOG).lower()
    database = (database or DEFAULT_DATABASE).lower()
    if is_dml(sql):  # INSERT and MERGE are dml.run_dml's (the service dispatches; no cycle back here)
        raise QueryError("NOT_SUPPORTED", "line 1:1: this engine has no table writer")
    ses = _Session(load)
    con = ses.con
    try:
        tree = _serialize(con, sql)
        translated = _as_trino(sql) if tree.get("error") and tree.get("error_type") == "parser" else None
        refs, labels = analyze(con, translated or sql, catalog, database, None if translated else tree)
        ses.register(refs, sql)
        ses.use(catalog, database)
        try:
            try:
                rel = con.sql(translated or sql)
            except duckdb.Error as first:
                retry = None if translated else _as_trino(sql)
                if retry is None:
                    raise
                try:
                    rel = con.sql(retry)
                except duckdb.Error:
                    raise first from None
            if rel is None:
                raise QueryError("NOT_SUPPORTED", "line 1:1: the statement returns no rows")
            names = list(rel.columns)
            types = [str(t) for t in rel.types]
            # Arrow, not fetchall(): fetchall() needs pytz for TIMESTAMP WITH TIME ZONE values
            tbl = rel.to_arrow_table()
            cols = [[_maps_as_dicts(v, c.type) for v in c.to_pylist()] for c in tbl.columns]
            data = list(zip(*cols)) if tbl.num_rows else []
        except QueryError:
            raise
        except duckdb.Error as exc:
            raise _translate(exc, sql) from None
        if labels is not None and len(labels) == len(names):
            names = [label or n for label, n in zip(labels, names)]
        columns = [athena_column(n, t) for n, t in zip(names, types)]
        rows = [[text(v, columns[j].type) for j, v in enumerate(row)] for row in data]
        return Result(columns, rows, ses.scanned, [r.qualified for r in refs])
    finally:
        ses.close()


def not_found_table(ref_catalog: str, schema: str, table: str) -> NotFound:
    return NotFound("TABLE_NOT_FOUND", f"Table '{ref_catalog}.{schema}.{table}' does not exist")


def not_found_schema(schema: str) -> NotFound:
    return NotFound("SCHEMA_NOT_FOUND", f"Schema '{schema}' does not exist")


def not_found_catalog(catalog: str) -> NotFound:
    return NotFound("CATALOG_NOT_FOUND", f"Catalog '{catalog}' does not exist")


def csv_text(columns: list[Column], rows: list[list[str | None]]) -> str:
    """Athena's result file: header and values double-quoted, NULL as an empty field."""

    def q(v: str | None) -> str:
        return "" if v is None else '"' + v.replace('"', '""') + '"'

    lines = [",".join(q(c.name) for c in columns)]
    lines += [",".join(q(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def _maps_as_dicts(v: Any, t: Any) -> Any:
    """Arrow gives MAP values as lists of (key, value) pairs; fetchall() gave dicts."""
    import pyarrow as pa

    if v is None:
        return None
    if pa.types.is_map(t):
        return {k: _maps_as_dicts(x, t.item_type) for k, x in v}
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return [_maps_as_dicts(x, t.value_type) for x in v]
    if pa.types.is_struct(t):
        return {f.name: _maps_as_dicts(v.get(f.name), f.type) for f in t}
    return v
