"""query (and `step query`): SQL over the lake table; text table, one JSON document, or CSV."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from s3tstream.cli.common import (ALL_TABLES, ConfigOpt, EngineOpt, TableOpt, check_engine, handle_errors, load_config,
                                  open_stack)
from s3tstream.cli.output import Format, Output


def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    x = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if x < 1024 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"  # pragma: no cover


def _cell(v: Any) -> str:
    from s3tstream.lake.exactjson import csv_value

    return csv_value(v)


def _render_result(out: Output, res: Any) -> None:
    if out.is_json:
        out.json(res.to_json())
        return
    if out.fmt == Format.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(res.columns)
        for r in res.rows:
            w.writerow([_cell(v) for v in r])
        sys.stdout.flush()
    else:
        out.table(None, res.columns, [[_cell(v) for v in r] for r in res.rows])
    scanned = "" if res.data_scanned_bytes is None else f"; data scanned: {human_bytes(res.data_scanned_bytes)}"
    qid = f"; query {res.query_id}" if res.query_id else ""
    out.info(f"{len(res.rows)} row(s){scanned}{qid} ({res.engine})")


def run_query(config: Path | None, output: Format, sql: str | None, engine: str | None, timeout: float | None,
              command: str = "query", table: str | None = None) -> None:
    from s3tstream.errors import UsageError
    from s3tstream.lake.query import default_sql, open_engine

    check_engine(engine)
    if timeout is not None and timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {timeout}")
    out = Output(output)
    cfg = load_config(config)
    if sql == "-":
        sql = sys.stdin.read()
    if sql is not None and not sql.strip():
        raise UsageError("the SQL is empty", "pass a query, or no argument for the default one")
    # SQL may name any of the stack's tables; the default query reads one (--table with several)
    text = sql.strip().rstrip(";").strip() if sql else default_sql(cfg.scoped(table))
    # Athena reads the table through the s3tablescatalog integration (grant-lf); the local engine
    # only needs the table. Checked before open_engine, which creates the Athena results bucket.
    needs = ("create-table-bucket",) if (engine or cfg.athena.engine) == "local" else ("grant-lf",)
    stack = open_stack(config, out, command, lock=False, needs=needs, table=table if table else ALL_TABLES)
    with out.spinner("query") as progress:
        eng = open_engine(stack.cfg, stack.aws, engine, progress=progress, timeout=timeout)
        res = eng.run(text)
    _render_result(out, res)


@handle_errors(interrupted="nothing was changed; run the query again")
def query(
    sql: Annotated[Optional[str], typer.Argument(help="SQL (default: SELECT * FROM <table> LIMIT 10; - reads stdin).", show_default=False)] = None,
    engine: EngineOpt = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Stop the query after this many seconds.", show_default=False)] = None,
    table: TableOpt = None,
    config: ConfigOpt = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="text, json (one document) or csv.")] = Format.text,
) -> None:
    """Run SQL over the lake tables (Athena on the s3tablescatalog, or locally); Ctrl-C stops the query.

    The SQL may name any of the stack's tables; the default query reads --table's."""
    run_query(config, output, sql, engine, timeout, table=table)


def run_step(config: Path | None, output: Format) -> None:
    """`s3tstream step query`: the default query."""
    run_query(config, output, None, None, None, "step query")
