"""Athena (Trino) SQL -> DuckDB SQL, for the sandbox's Athena engine.

sqlglot's Trino-to-DuckDB transpiler does most of it (json_extract_scalar, transform, element_at,
``ARRAY(JSON)``/``MAP``/``ROW`` types, ``x -> ...`` lambdas, from_iso8601_*, json_parse,
json_format, ...). What it leaves as Trino is finished here:

- ``transform_values(map, (k, v) -> e)`` -> ``map_from_entries(list_transform(map_entries(map),
  lambda e: {'key': e.key, 'value': e'}))``, rewritten in the tree;
- ``CAST(ROW(...) AS ROW(name type, ...))`` -> a struct named after the target fields (DuckDB
  casts structs by name, Trino by position);
- ``at_timezone`` and ``from_unixtime_nanos`` -> macros (:data:`MACROS`). The session runs in UTC,
  so ``at_timezone(t, zone)`` keeps the instant, which is all a TIMESTAMP WITH TIME ZONE holds in
  DuckDB; ``from_unixtime_nanos`` truncates to microseconds (DuckDB's precision; Trino rounds
  when the value is later cast to TIMESTAMP(6); only sub-microsecond inputs differ).

Used for the statements DuckDB cannot run as written: INSERT/MERGE always (they name Trino types
and functions), a read query when DuckDB refuses it. Anything else that differs stays a
difference from Athena.
"""

from __future__ import annotations

from typing import Any

MACROS = (
    "CREATE OR REPLACE TEMP MACRO at_timezone(t, zone) AS t",
    "CREATE OR REPLACE TEMP MACRO from_unixtime_nanos(n) AS "
    "CAST(make_timestamp(CAST(floor(n / 1000) AS BIGINT)) AS TIMESTAMPTZ)",
)


class Untranslatable(Exception):
    """sqlglot could not read the statement as Trino SQL."""


def parse(sql: str) -> Any:
    import sqlglot
    from sqlglot.errors import ParseError, TokenError

    try:
        tree = sqlglot.parse(sql, read="trino")
    except (ParseError, TokenError) as exc:
        raise Untranslatable(str(exc).split("\n")[0]) from None
    tree = [t for t in tree if t is not None]
    if len(tree) != 1:
        raise Untranslatable("only one statement can be run at a time")
    return tree[0]


def _transform_values(node: Any) -> Any:
    from sqlglot import exp

    if not (isinstance(node, exp.Anonymous) and str(node.this).lower() == "transform_values"):
        return node
    args = node.expressions
    if len(args) != 2 or not isinstance(args[1], exp.Lambda) or len(args[1].expressions) != 2:
        return node
    m, fn = args
    k_name, v_name = (i.name for i in fn.expressions)
    entry = exp.to_identifier("__s3t_e")

    def swap(n: Any) -> Any:
        # lambda parameters appear as bare identifiers or unqualified columns in the body
        name = n.name if isinstance(n, (exp.Identifier, exp.Column)) and not (
            isinstance(n, exp.Column) and n.table) else None
        if name == k_name:
            return exp.Dot(this=exp.column(entry.copy()), expression=exp.to_identifier("key"))
        if name == v_name:
            return exp.Dot(this=exp.column(entry.copy()), expression=exp.to_identifier("value"))
        return n

    body = fn.this.copy().transform(swap)
    pair = exp.Struct(expressions=[
        exp.PropertyEQ(this=exp.to_identifier("key"),
                       expression=exp.Dot(this=exp.column(entry.copy()), expression=exp.to_identifier("key"))),
        exp.PropertyEQ(this=exp.to_identifier("value"), expression=body),
    ])
    entries = exp.Anonymous(this="map_entries", expressions=[m.copy()])
    mapped = exp.Anonymous(this="list_transform", expressions=[
        entries, exp.Lambda(this=pair, expressions=[entry.copy()])])
    return exp.Anonymous(this="map_from_entries", expressions=[mapped])


def _row_cast(node: Any) -> Any:
    """``CAST(ROW(a, b) AS ROW(x T, y U))`` names the fields by position in Trino; DuckDB casts a
    struct by field name (sqlglot names ROW's fields ``_0``... or after a column), which would
    leave them NULL: name each field after its target first."""
    from sqlglot import exp

    if not (isinstance(node, exp.Cast) and isinstance(node.this, exp.Struct) and node.to.is_type("struct")):
        return node
    values, targets = node.this.expressions, node.to.expressions
    if len(values) != len(targets) or any(isinstance(v, exp.PropertyEQ) for v in values) or not all(
            isinstance(t, exp.ColumnDef) for t in targets):
        return node
    named = exp.Struct(expressions=[exp.PropertyEQ(this=t.this.copy(), expression=v.copy())
                                    for v, t in zip(values, targets)])
    return exp.Cast(this=named, to=node.to.copy())


def to_duckdb(tree: Any) -> str:
    """DuckDB SQL for a parsed Trino expression (statement or part of one)."""
    return tree.copy().transform(_transform_values).transform(_row_cast).sql(dialect="duckdb")


def translate(sql: str) -> str:
    return to_duckdb(parse(sql))
