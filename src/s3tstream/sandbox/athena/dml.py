"""INSERT INTO and MERGE INTO an Iceberg table, for the sandbox's Athena engine.

Athena writes Iceberg tables with ``INSERT INTO t [(cols)] query`` and ``MERGE INTO t USING s ON
cond WHEN ...`` (https://docs.aws.amazon.com/athena/latest/ug/querying-iceberg-insert-into.html,
.../merge-into-statement.html). Here the statement is read with sqlglot (Trino dialect), the
source tables are loaded like a read query's, the rows to add are computed in DuckDB (through
``trino_sql``), and the engine's ``write`` callback appends them to the Iceberg table in one
commit. MERGE supports the clause backfill uses, ``WHEN NOT MATCHED THEN INSERT``: a source row
whose ON condition matches no target row is inserted (the ON condition is evaluated in DuckDB
against the target's current rows). ``WHEN MATCHED`` clauses (UPDATE, DELETE) are refused with
NOT_SUPPORTED: the sandbox writes no delete files.

The result set of a DML statement is empty here. UNCONFIRMED: what Athena's GetQueryResults
returns for INSERT/MERGE (Trino itself returns one ``rows`` column with the count).
"""

from __future__ import annotations

from typing import Any

from s3tstream.sandbox.athena.engine import QueryError, Result, TableRef, Writer, Loader, _Session, _translate
from s3tstream.sandbox.athena import trino_sql


def _name(ident: Any) -> str:
    return str(ident.name if hasattr(ident, "name") else ident).lower()


def _ref(table: Any, catalog: str, database: str) -> TableRef:
    return TableRef(_name(table.args["catalog"]) if table.args.get("catalog") else catalog,
                    _name(table.args["db"]) if table.args.get("db") else database,
                    _name(table.this), 0)


def _source_refs(node: Any, catalog: str, database: str) -> list[TableRef]:
    from sqlglot import exp

    ctes = {_name(c.alias) for c in node.find_all(exp.CTE)}
    out: list[TableRef] = []
    for t in node.find_all(exp.Table):
        if not t.args.get("db") and not t.args.get("catalog") and _name(t.this) in ctes:
            continue
        if not isinstance(t.this, exp.Identifier):
            continue  # a table function such as UNNEST
        ref = _ref(t, catalog, database)
        if ref not in out:
            out.append(ref)
    return out


def _plan(tree: Any) -> tuple[Any, list[str] | None, Any, Any]:
    """(target table node, insert column names or None, the source (its tables are loaded),
    builder of the rows-to-insert query given the name of the target's rows view)."""
    from sqlglot import exp

    if isinstance(tree, exp.Insert):
        if tree.args.get("overwrite"):
            raise QueryError("NOT_SUPPORTED", "line 1:1: INSERT OVERWRITE is not supported for Iceberg tables")
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        cols = [_name(i) for i in tree.this.expressions] if isinstance(tree.this, exp.Schema) else None
        source = tree.expression
        return target, cols, source, lambda _view: source.copy()
    if isinstance(tree, exp.Merge):
        target, using, on = tree.this, tree.args.get("using"), tree.args.get("on")
        whens = list(tree.args["whens"].expressions) if tree.args.get("whens") else []
        if len(whens) != 1 or whens[0].args.get("matched") or not isinstance(whens[0].args.get("then"), exp.Insert):
            raise QueryError("NOT_SUPPORTED", "line 1:1: the sandbox's MERGE INTO runs one clause, "
                             "WHEN NOT MATCHED THEN INSERT (it writes no delete files)")
        ins = whens[0].args["then"]
        condition = whens[0].args.get("condition")  # WHEN NOT MATCHED AND <condition> THEN INSERT
        cols = [_name(c) for c in ins.this.expressions] if isinstance(ins.this, exp.Tuple) else None
        values = list(ins.expression.expressions) if isinstance(ins.expression, exp.Tuple) else [ins.expression]
        if cols is not None and len(cols) != len(values):
            raise QueryError("SYNTAX_ERROR", f"line 1:1: MERGE INSERT has {len(values)} value(s) for {len(cols)} column(s)")
        t_alias = target.alias or _name(target.this)
        src = using.copy()

        def rows(view: str) -> Any:
            target_rows = exp.to_table(view).as_(t_alias)
            matched = exp.select("1").from_(target_rows).where(on.copy())
            names = cols or [f"_col{i}" for i in range(len(values))]
            where = exp.not_(exp.Exists(this=matched))
            if condition is not None:
                where = exp.and_(where, condition.copy())
            return (exp.select(*[exp.alias_(v.copy(), n, quoted=True) for v, n in zip(values, names)])
                    .from_(src.copy()).where(where))

        return target, cols, using, rows
    raise QueryError("NOT_SUPPORTED", "line 1:1: the sandbox's Athena writes with INSERT INTO and MERGE INTO only")


def run_dml(sql: str, catalog: str, database: str, load: Loader, write: Writer) -> Result:
    import duckdb

    try:
        tree = trino_sql.parse(sql)
    except trino_sql.Untranslatable as exc:
        raise QueryError("SYNTAX_ERROR", f"line 1:1: {exc}") from None
    target_node, cols, source, rows_query = _plan(tree)
    target = _ref(target_node, catalog, database)
    if not target.catalog.startswith("s3tablescatalog/"):
        # UNCONFIRMED wording; Athena writes Iceberg (and Hive) tables, the sandbox only S3 Tables' Iceberg tables
        raise QueryError("NOT_SUPPORTED", f"line 1:1: the sandbox writes only to s3tablescatalog tables, not "
                         f"'{target.qualified}'")
    ses = _Session(load)
    try:
        ses.register([r for r in _source_refs(source, catalog, database) if r != target], sql)
        ses.use(catalog, database)
        view = "__s3t_target"

        def rows_for(existing: Any) -> Any:
            ses.con.register(view, existing)
            query = trino_sql.to_duckdb(rows_query(view))
            try:
                out = ses.con.sql(query).to_arrow_table()
            except duckdb.Error as exc:
                raise _translate(exc, sql) from None
            names = cols if cols is not None else [n.lower() for n in existing.column_names]
            if len(names) != out.num_columns:
                raise QueryError("SYNTAX_ERROR", f"line 1:1: Insert query has {out.num_columns} expression(s) "
                                                 f"but expected {len(names)}")
            return out.rename_columns(names)

        write(target, rows_for)
        return Result([], [], ses.scanned, [target.qualified])
    finally:
        ses.close()


def conform(rows: Any, schema: Any, table: str) -> Any:
    """``rows`` (named by target column) as an Arrow table of the Iceberg ``schema``: columns in
    order, types cast, columns not inserted NULL. Athena's checks: every inserted column exists,
    values cast to the column's type, no NULL in a required column."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    target = schema_to_pyarrow(schema)
    by_name = {n.lower(): i for i, n in enumerate(rows.column_names)}
    fields = {f.name.lower() for f in target}
    for n in by_name:
        if n not in fields:
            raise QueryError("COLUMN_NOT_FOUND", f"line 1:1: Insert column name does not exist in target table: {n}")
    arrays = []
    for f in target:
        i = by_name.get(f.name.lower())
        col = rows.column(i) if i is not None else pa.nulls(rows.num_rows, f.type)
        if not f.nullable and col.null_count:
            raise QueryError("CONSTRAINT_VIOLATION", f"NULL value not allowed for NOT NULL column: {f.name}")
        try:
            col = col.cast(f.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise QueryError("TYPE_MISMATCH", f"line 1:1: Insert query has mismatched column types: "
                             f"table {table} column {f.name} is {f.type}, the query gives {col.type} ({exc})") from None
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=target)
