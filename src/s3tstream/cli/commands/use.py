"""Using the pipeline: put-item, test-insert, query, verify, errors (and `step put-item|query`).

Data to stdout, progress to stderr; --output json prints one JSON document. Bad input (items,
SQL, options) exits 2 before any AWS call that changes something.
"""

from __future__ import annotations

import contextlib
import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional

import typer

from s3tstream.cli.common import ALL_TABLES, ConfigOpt, OutputOpt, TableOpt, handle_errors, load_config, open_stack
from s3tstream.cli.output import Format, Output

if TYPE_CHECKING:
    from s3tstream.cli.common import Stack

EngineOpt = Annotated[
    Optional[str],
    typer.Option("--engine", help="athena (default from athena.engine) or local (PyIceberg + DuckDB).", show_default=False),
]


# ------------------------------------------------------------------ helpers
def human_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    x = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if x < 1024 or unit == "TB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{n} B"  # pragma: no cover


def _check_engine(engine: str | None) -> None:
    from s3tstream.errors import UsageError

    if engine not in (None, "athena", "local"):
        raise UsageError(f"--engine must be athena or local, not {engine!r}")


@contextlib.contextmanager
def _spinner(out: Output, what: str) -> Iterator[Callable[[str], None]]:
    """A progress callback: a spinner on a terminal, plain lines otherwise (stderr)."""
    if out.quiet or out.is_json or not out.err.is_terminal:
        yield out.progress(what)
        return
    with out.err.status(what) as status:
        yield lambda msg: status.update(f"{what}: {msg}")


def _emit_json(doc: Any) -> None:
    from s3tstream.lake.query import exact_json

    sys.stdout.write(exact_json(doc) + "\n")
    sys.stdout.flush()


def _emit_json_result(doc: dict[str, Any], err: Any) -> None:
    """One JSON document for a command that may end in an error: the error goes in the document
    (as {"error": ...}) and sets the exit code."""
    if err:
        doc["error"] = err.to_dict()
    _emit_json(doc)
    if err:
        raise SystemExit(err.exit_code)


def _cell(v: Any) -> str:
    from s3tstream.lake.query import csv_value

    return csv_value(v)


# ------------------------------------------------------------------ put-item
def _read_sources(items: list[str], file: Path | None) -> list[tuple[str, str]]:
    from s3tstream.errors import UsageError
    from s3tstream.data.items import jsonl_sources

    sources = [(f"--item {i + 1}" if len(items) > 1 else "--item", text) for i, text in enumerate(items)]
    if file is not None:
        if str(file) == "-":
            sources += list(jsonl_sources(sys.stdin.read().splitlines(), "stdin"))
        else:
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise UsageError(f"cannot read {file}: {e}", "pass a JSON Lines file (one item a line)") from None
            sources += list(jsonl_sources(text.splitlines(), str(file)))
    if not sources:
        raise UsageError("no items given", "pass --item '{...}' (repeatable) or --file items.jsonl (- for stdin)")
    return sources


def _write_items(stack: "Stack", typed: list[dict[str, Any]], schema: Any, out: Output, *, show_items: bool = False) -> None:
    from s3tstream.data.items import item_to_plain, put_items

    with _spinner(out, "put-item") as progress:
        n = put_items(stack.aws.client("dynamodb"), schema, typed, progress=progress)
    keys = [item_to_plain(schema.key_item(i)) for i in typed]
    if out.is_json:
        doc: dict[str, Any] = {"table": schema.table, "written": n, "keys": keys[:100]}
        if len(keys) > 100:
            doc["keys_truncated"] = True
        if show_items:
            doc["items"] = [item_to_plain(i) for i in typed]
        _emit_json(doc)
        return
    if show_items:
        from s3tstream.lake.query import exact_json

        for i in typed:
            out.line(exact_json(item_to_plain(i), indent=None))
    out.line(f"wrote {n} item(s) to {schema.table}")


@handle_errors
def put_item(
    item: Annotated[list[str], typer.Option("--item", "-i", help="One item as JSON (repeatable).", show_default=False)] = [],  # noqa: B006
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="JSON Lines file of items (- for stdin).", show_default=False)] = None,
    dynamodb_json: Annotated[bool, typer.Option("--dynamodb-json", help='Items are typed DynamoDB JSON ({"pk": {"S": "a"}}).')] = False,
    table: TableOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Write items to the source table (plain JSON typed by the table's columns).

    Numbers stay exact (decimals are never floats). Every item is checked first (keys, DynamoDB limits, the pipeline's mapping); nothing is written if any item is bad."""
    from s3tstream.data.items import ItemSchema, parse_items

    out = Output(output)
    cfg = load_config(config).scoped(table)
    schema = ItemSchema.from_config(cfg)
    typed = parse_items(_read_sources(item, file), schema, dynamodb_json=dynamodb_json)
    stack = open_stack(config, out, "put-item", lock=False, table=table)
    _write_items(stack, typed, schema, out)


# ------------------------------------------------------------------ query
def _render_result(out: Output, res: Any) -> None:
    if out.is_json:
        _emit_json(res.to_json())
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
              table: str | None = None) -> None:
    from s3tstream.errors import UsageError
    from s3tstream.lake.query import default_sql, open_engine

    _check_engine(engine)
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
    stack = open_stack(config, out, "query", lock=False, table=table if table else ALL_TABLES)
    with _spinner(out, "query") as progress:
        eng = open_engine(stack.cfg, stack.aws, engine, progress=progress, timeout=timeout)
        res = eng.run(text)
    _render_result(out, res)


@handle_errors
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
    run_query(config, output, sql, engine, timeout, table)


# ------------------------------------------------------------------ test-insert
@handle_errors
def test_insert(
    count: Annotated[int, typer.Option("--count", "-n", help="Items to insert.")] = 20,
    updates: Annotated[Optional[int], typer.Option("--updates", help="Items to update afterwards (default count/4).", show_default=False)] = None,
    deletes: Annotated[Optional[int], typer.Option("--deletes", help="Items to delete afterwards (default count/4).", show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds to wait for each phase (default: Firehose buffer interval + 180).", show_default=False)] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between lake queries (default stack.poll_interval).", show_default=False)] = None,
    engine: EngineOpt = None,
    keep_items: Annotated[bool, typer.Option("--keep-items", help="Leave the run's test items in the table and the lake "
                                             "(by default they are deleted and the deletes followed into the lake).")] = False,
    table: TableOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Insert tagged items, update and delete some, and follow them into the lake: latency and verdict."""
    from s3tstream.errors import UsageError, WaitTimeout
    from s3tstream.lake.query import open_engine
    from s3tstream.data.testinsert import TestInsert, stats

    _check_engine(engine)
    for name, v in (("--timeout", timeout), ("--interval", interval)):
        if v is not None and v < 0:
            raise UsageError(f"{name} must not be negative, got {v}")
    out = Output(output)
    stack = open_stack(config, out, "test-insert", lock=False, table=table)
    cfg = stack.cfg
    started = _freshness_window_start()
    with _spinner(out, "test-insert") as progress:
        # the engine's per-query states would drown the follow loop's own progress
        eng = open_engine(cfg, stack.aws, engine, progress=lambda m: progress(m) if m.startswith("creating") else None)
        ti = TestInsert(cfg, stack.aws.client("dynamodb"), eng, count=count, updates=updates, deletes=deletes,
                        timeout=timeout, interval=cfg.stack.poll_interval if interval is None else interval,
                        progress=progress)
        res = ti.run_all()
        # the deletes are followed into the lake only when the pipeline carried the run's changes
        cleaned = None if keep_items else ti.cleanup(follow=res.passed)
    res.freshness_seconds = _freshness_seen(stack, started, res)
    doc = res.to_json()
    if cleaned is not None:
        doc["cleaned_up"] = cleaned
    err = None
    if cleaned and cleaned["left_in_lake"]:
        err = WaitTimeout(f"test-insert run {res.run_id}: {len(cleaned['left_in_lake'])} test item(s) deleted from the "
                          "source are still in the lake", "check the Firehose stream (`s3tstream status`) and "
                          "`s3tstream errors`; `s3tstream verify` lists them as extra")
    if not res.passed:
        missing = {k: len(v) for k, v in res.missing.items() if v}
        err = WaitTimeout(
            f"test-insert run {res.run_id}: timed out waiting for {res.timed_out}; not in the lake: "
            + ", ".join(f"{n} {k}" for k, n in missing.items()),
            "check the Firehose stream (`s3tstream status`), failed records (`s3tstream errors`), or raise --timeout",
        )
    if out.is_json:
        return _emit_json_result(doc, err)
    rows = []
    for kind in ("insert", "update", "delete"):
        if kind in res.latency:
            s = stats(res.latency[kind])
            fmt = lambda x: "-" if x is None else f"{x:.2f}s"  # noqa: E731
            rows.append([kind, str(s["count"]), fmt(s["p50"]), fmt(s["p95"]), fmt(s["max"])])
    out.table(f"test-insert run {res.run_id} ({res.engine})", ["change", "seen", "p50", "p95", "max"], rows)
    for note in res.notes:
        out.warn(note)
    if err:
        for kind, keys in res.missing.items():
            for k in keys[:10]:
                out.err.print(f"  missing {kind[:-1]}: {k}", markup=False)
        for k in (cleaned or {}).get("left_in_lake", [])[:10]:
            out.err.print(f"  still in the lake: {k}", markup=False)
        raise err
    c = res.counts
    out.line(f"PASS: {c['inserts']} insert(s), {c['updates']} update(s), {c['deletes']} delete(s) reached the lake "
             f"in {res.elapsed:.1f}s")
    if cleaned is not None:
        out.line(f"removed the run's {cleaned['deleted_from_source']} test item(s) from the source and the lake")
    if res.freshness_seconds is not None:
        out.line(f"freshness: Firehose's DeliveryToIceberg.DataFreshness peaked at {res.freshness_seconds:.1f}s during the run")


def _freshness_window_start() -> Any:
    import datetime as dt

    # a minute early: CloudWatch windows are whole minutes
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)


def _freshness_seen(stack: "Stack", started: Any, res: Any) -> float | None:
    """Firehose's freshness metric over the run; a metric that cannot be read is a note, not a failure."""
    import datetime as dt

    from s3tstream.data.health import freshness_seen
    from s3tstream.errors import S3tError

    try:
        return freshness_seen(stack.cfg, stack.aws, started, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    except (S3tError, Exception) as e:  # noqa: BLE001 - the latencies above are the result; this is extra
        res.notes.append(f"could not read Firehose's freshness metric: {getattr(e, 'message', e)}")
        return None


# ------------------------------------------------------------------ verify
@handle_errors
def verify(
    repair: Annotated[bool, typer.Option("--repair", help="Send mismatched keys through the Kinesis stream so the pipeline fixes the lake.")] = False,
    segments: Annotated[int, typer.Option("--segments", help="Parallel scan segments (0: by table size).", min=0, max=64)] = 0,
    export: Annotated[bool, typer.Option("--export", help="For tables too large to scan: compare in Athena over a "
                                         "DynamoDB export; only the differences come back (needs point-in-time recovery).")] = False,
    enable_pitr: Annotated[bool, typer.Option("--enable-pitr", help="With --export: turn on point-in-time recovery "
                                              "when it is off (it is billed).")] = False,
    settle: Annotated[Optional[float], typer.Option(
        "--settle", min=0, help="Seconds to compare differences again before reporting them (changes still in "
        "Firehose's buffers; default: the deployed buffer intervals + 30 s).", show_default=False)] = None,
    engine: EngineOpt = None,
    table: Annotated[Optional[str], typer.Option(
        "--table", "-t", help="The lake table (table.name) to check; default: every table of the stack.",
        show_default=False)] = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Compare the source table with the lake table (counts and a per-key digest of the mapped columns).

    Without --table, every table of the stack is checked (one row per table)."""
    from s3tstream.errors import S3tError, UsageError

    _check_engine(engine)
    if export and engine == "local":
        raise UsageError("--export compares in Athena; it cannot run with --engine local")
    if export and segments:
        raise UsageError("--segments sets the Scan of a plain verify; --export does not scan")
    if enable_pitr and not export:
        raise UsageError("--enable-pitr only applies to --export")
    out = Output(output)
    whole = load_config(config)
    if table is None and len(whole.table_names) > 1:
        names = whole.table_names
    else:
        names = [whole.scoped(table).names.table]
    # --export creates (and removes) a Glue table and export files, as backfill does: one run at a time
    stack = open_stack(config, out, "verify", lock=export)
    results = []
    try:
        for name in names:
            cfg = stack.cfg.scoped(name)
            results.append((cfg, _verify_one(stack, cfg, out, repair=repair, segments=segments, export=export,
                                             enable_pitr=enable_pitr, settle=settle, engine=engine)))
    finally:
        stack.close()
    if len(results) == 1:
        cfg, (doc, err, rep) = results[0]
        if out.is_json:
            return _emit_json_result(doc, err)
        _print_verify(out, cfg, doc, rep)
        if err:
            raise err
        c = doc["counts"]
        out.line(f"OK: {c['source_items']} item(s) and {c['lake_rows']} row(s) match")
        return
    # every table: one row each; the command fails when any table differs
    bad = [cfg.names.table for cfg, (doc, _, _) in results if not doc["ok"]]
    err = S3tError(f"{len(bad)} of {len(results)} tables differ: {', '.join(bad)}",
                   "run `s3tstream verify --table NAME` for the differences of one table (--repair fixes them)",
                   code="differs") if bad else None
    if out.is_json:
        return _emit_json_result({"ok": not bad, "tables": [{"table": cfg.names.table, **doc} for cfg, (doc, _, _)
                                                             in results]}, err)
    keys = ("source_items", "lake_rows", "missing", "extra", "differing", "duplicates", "unmappable")
    out.table("verify: every table", ["table", "ok", *[k.replace("_", " ") for k in keys]],
              [[cfg.names.table, "ok" if doc["ok"] else "DIFFERS", *[str(doc["counts"].get(k, "")) for k in keys]]
               for cfg, (doc, _, _) in results])
    for cfg, (doc, _, _) in results:
        for n in doc["notes"]:
            out.warn(f"{cfg.names.table}: {n}")
        if "repair" in doc:
            out.line(f"{cfg.names.table}: repair sent {doc['repair']['sent']} record(s)")
    if err:
        raise err
    out.line(f"OK: {len(results)} tables match")


def _verify_one(stack: "Stack", cfg: Any, out: Output, *, repair: bool, segments: int, export: bool,
                enable_pitr: bool, settle: float | None, engine: str | None) -> tuple[dict[str, Any], Any, Any]:
    """Verify one table (cfg scoped to it): (JSON document, the error to raise or None, the report)."""
    from s3tstream.errors import S3tError
    from s3tstream.lake.query import open_engine
    from s3tstream.data.changes import send_records
    from s3tstream.data.deployed import deployed_settings
    from s3tstream.data.verify import repair_records, verify_scan

    info, settled = None, None
    with _spinner(out, f"verify {cfg.names.table}") as progress:
        if export:
            from s3tstream.data.verify_export import compare_export

            settings, notes = deployed_settings(cfg, stack.state)
            rep, layout, info = compare_export(cfg, settings, stack.aws, enable_pitr=enable_pitr, progress=progress,
                                               state=stack.state)
        else:
            eng = open_engine(cfg, stack.aws, engine, progress=progress)
            rep, layout, notes, settled = verify_scan(cfg, stack.aws, stack.state, eng, segments=segments,
                                                      settle_seconds=settle, progress=progress)
    doc = rep.to_json(layout)
    if settled is not None:
        doc["settle"] = settled
    if info is not None:
        doc["export"] = info
        notes.append(f"compared as of the export ({info['export_time']}); each difference returned was checked "
                     "against the item as it is now")
        if info["not_returned"]:
            doc["ok"] = False
            notes.append(f"{info['not_returned']:,} more differing key(s) were counted but not returned (at most "
                         f"{info['differences_returned']:,} come back); --repair leaves them: run `s3tstream backfill` "
                         "for a lake this far off, then verify again")
        if info["pitr_enabled_by_verify"] and not cfg.source.point_in_time_recovery:
            notes.append("point-in-time recovery stays on (it is billed); `s3tstream up` turns it off again "
                         "unless source.point_in_time_recovery = true")
    if cfg.table.ttl_deletes == "keep" and rep.extra:
        notes.append("table.ttl_deletes = keep: --repair does not remove extra rows")
    if rep.unmappable:
        notes.append("unmappable items cannot reach the lake; `s3tstream errors` shows their failed records")
    doc["notes"] = notes
    if repair and not rep.ok:
        recs = repair_records(cfg, rep, layout, removes=cfg.table.ttl_deletes != "keep")
        with _spinner(out, "repair") as progress:
            sent = send_records(stack.aws.client("kinesis"), cfg.names.stream, recs, progress=progress)
        inserts = sum(1 for r in recs if r["eventName"] == "INSERT")
        doc["repair"] = {"sent": sent.sent, "inserts": inserts, "removes": len(recs) - inserts, "stream": cfg.names.stream,
                         "not_sent": [o.to_json() for o in sent.oversize]}
        if sent.oversize:
            notes.append(f"{len(sent.oversize)} key(s) could not be repaired: their change record is over Kinesis' "
                         "record limit (1 MiB, data + partition key); shrink those items")
    err = None
    if not doc["ok"]:
        c = doc["counts"]
        more = f", and {info['not_returned']:,} more not returned" if info and info["not_returned"] else ""
        err = S3tError(
            f"source and lake differ: {c['missing']} missing, {c['extra']} extra, {c['differing']} differing, "
            f"{c['duplicates']} duplicate, {c['unmappable']} unmappable key(s){more}",
            ("repair records were sent; run `s3tstream verify` again after the Firehose buffer interval "
             f"(~{cfg.firehose.buffer_interval_seconds + 30}s)") if "repair" in doc
            else "run `s3tstream verify --repair` to send the mismatched keys through the pipeline again"
            if len(rep.unmappable) < sum(c[k] for k in ("missing", "extra", "differing", "duplicates", "unmappable"))
            else "fix the items (or the column config and `s3tstream up`), then `s3tstream errors replay`",
            code="differs",
        )
    return doc, err, rep


def _print_verify(out: Output, cfg: Any, doc: dict[str, Any], rep: Any) -> None:
    c = doc["counts"]
    out.table(f"verify: {cfg.names.source_table} -> {cfg.names.namespace}.{cfg.names.table} ({rep.engine})",
              ["", "count"], [[k.replace("_", " "), str(v)] for k, v in c.items()])
    ex = doc["examples"]
    from s3tstream.lake.query import exact_json

    for kind in ("missing", "extra", "differing", "duplicates", "unmappable"):
        for e in ex[kind]:
            out.line(f"{kind}: {exact_json(e, indent=None)}")
    for n in doc["notes"]:
        out.warn(n)
    if "repair" in doc:
        r = doc["repair"]
        out.line(f"repair: sent {r['sent']} record(s) ({r['inserts']} insert, {r['removes']} remove) to {r['stream']}")
        for o in r["not_sent"]:
            out.line(f"not sent (over the record limit, {o['bytes']:,} bytes): {exact_json(o['keys'], indent=None)}")


# ------------------------------------------------------------------ errors
errors_app = typer.Typer(help="Failed records in the Firehose error bucket: list them grouped, replay them.",
                         invoke_without_command=True, no_args_is_help=False)


@errors_app.callback(invoke_without_command=True)
@handle_errors
def errors(
    ctx: typer.Context,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Group the failed records in the error bucket by error code: count, first and last time, an example."""
    if ctx.invoked_subcommand is not None:
        return
    from s3tstream.data.failed_records import error_location, list_errors, safe
    from s3tstream.errors import S3tError
    from s3tstream.lake.query import exact_json

    out = Output(output)
    stack = open_stack(config, out, "errors", lock=False)
    bucket, prefix = error_location(stack.cfg, stack.aws)
    with _spinner(out, "errors") as progress:
        found = list_errors(stack.aws.client("s3"), bucket, prefix, progress)
    groups = found.groups
    err = S3tError(f"{len(found.bad)} error object(s) could not be read; they were skipped and left in place",
                   "look at them (`aws s3 cp`), remove them by hand if they are not Firehose's",
                   code="unreadable") if found.bad else None
    if out.is_json:
        return _emit_json_result({"bucket": bucket, "prefix": prefix, "objects": found.objects, "records": found.records,
                                  "groups": groups, "unreadable_objects": found.bad}, err)
    for b in found.bad:
        out.err.print(f"unreadable: {safe(b['object'])}: {safe(b['reason'])}", markup=False)
    if not found.records:
        out.line(f"no failed records under s3://{bucket}/{prefix}")
    else:
        out.table(f"failed records in s3://{safe(bucket)}/{safe(prefix)} ({found.objects} object(s))",
                  ["error code", "count", "first", "last", "message"],
                  [[safe(g["error_code"]), str(g["count"]), g["first"] or "", g["last"] or "", safe((g["message"] or "")[:100])]
                   for g in groups])
        for g in groups:
            text = safe(exact_json(g["example"], indent=None))
            out.out.print(f"example {safe(g['error_code'])}: {text[:400]}{'...' if len(text) > 400 else ''}", markup=False)
        out.info("fix the cause, then `s3tstream errors replay` sends them through the pipeline again")
    if err:
        raise err


@errors_app.command()
@handle_errors
def replay(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent; send and delete nothing.")] = False,
    code: Annotated[Optional[list[str]], typer.Option(
        "--code", help="Only the error objects whose records all failed with this error code (as `s3tstream errors` "
        "lists them); repeatable.", show_default=False)] = None,
    table: TableOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Send the failed records back through the Kinesis stream (once the cause is fixed).

    Each error object is deleted only after Kinesis accepted all of its records."""
    from s3tstream.data.failed_records import safe
    from s3tstream.data.replay import replay as do_replay
    from s3tstream.errors import S3tError, UsageError

    codes = tuple(c.strip() for c in code or ())
    if any(not c for c in codes):
        raise UsageError("--code must name an error code, e.g. --code Lambda.ProcessingFailedStatus")
    out = Output(output)
    # the stack lock: two replays never send one object twice. One table at a time: an object
    # holding another table's records is kept (replay it with that --table)
    stack = open_stack(config, out, "errors replay", table=table)
    try:
        with _spinner(out, "replay") as progress:
            res = do_replay(stack.cfg, stack.aws, dry_run=dry_run, codes=codes, progress=progress)
    finally:
        stack.close()
    err = S3tError(f"{len(res.failed)} error object(s) could not be replayed; they were kept",
                   "see why for each; fix or remove them by hand", code="not-replayed") if res.failed else None
    if out.is_json:
        return _emit_json_result({**res.to_json(), "dry_run": dry_run, "stream": stack.cfg.names.stream,
                                  "codes": list(codes)}, err)
    verb = "would send" if dry_run else "sent"
    out.line(f"{verb} {res.records} record(s) from {res.objects - len(res.kept) - len(res.failed)} object(s) to "
             f"{stack.cfg.names.stream} ({res.raw} as recorded, {res.current} as the item's current state); "
             f"deleted {res.deleted} object(s)")
    for k in res.kept:
        out.err.print(f"kept {safe(k['object'])}: {safe(k['reason'])}", markup=False)
    for k in res.failed:
        out.err.print(f"not replayed: {safe(k['object'])}: {safe(k['reason'])}", markup=False)
    if err:
        raise err


# ------------------------------------------------------------------ `step put-item` / `step query`
def run_step(name: str, config: Path | None, output: Format) -> None:
    from s3tstream.errors import PlanError

    if name == "query":
        return run_query(config, output, None, None, None)
    if name == "put-item":
        import uuid

        from s3tstream.data.items import ItemSchema, checked_plain
        from s3tstream.data.testinsert import key_plan, sample_item

        out = Output(output)
        cfg = load_config(config)
        schema = ItemSchema.from_config(cfg)
        run = "sample-" + uuid.uuid4().hex[:8]
        plain = sample_item(cfg, schema, 0, run, key_plan(cfg, schema, 1, run).values(0))
        typed = checked_plain(plain, schema, "the sample item")
        stack = open_stack(config, out, "step put-item", lock=False)
        return _write_items(stack, [typed], schema, out, show_items=True)
    raise PlanError(f"step {name} is not built yet in this version of s3tstream",
                    "see `s3tstream step --help` for the steps that exist")
