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

from s3tstream.cli.common import ConfigOpt, OutputOpt, handle_errors, load_config, open_stack
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
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Write items to the source table (plain JSON typed by the table's columns).

    Numbers stay exact (decimals are never floats). Every item is checked first (keys, DynamoDB limits, the pipeline's mapping); nothing is written if any item is bad."""
    from s3tstream.data.items import ItemSchema, parse_items

    out = Output(output)
    cfg = load_config(config)
    schema = ItemSchema.from_config(cfg)
    typed = parse_items(_read_sources(item, file), schema, dynamodb_json=dynamodb_json)
    stack = open_stack(config, out, "put-item", lock=False)
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


def run_query(config: Path | None, output: Format, sql: str | None, engine: str | None, timeout: float | None) -> None:
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
    text = sql.strip().rstrip(";").strip() if sql else default_sql(cfg)
    stack = open_stack(config, out, "query", lock=False)
    with _spinner(out, "query") as progress:
        eng = open_engine(stack.cfg, stack.aws, engine, progress=progress, timeout=timeout)
        res = eng.run(text)
    _render_result(out, res)


@handle_errors
def query(
    sql: Annotated[Optional[str], typer.Argument(help="SQL (default: SELECT * FROM <table> LIMIT 10; - reads stdin).", show_default=False)] = None,
    engine: EngineOpt = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Stop the query after this many seconds.", show_default=False)] = None,
    config: ConfigOpt = None,
    output: Annotated[Format, typer.Option("--output", "-o", help="text, json (one document) or csv.")] = Format.text,
) -> None:
    """Run SQL over the lake table (Athena on the s3tablescatalog, or locally); Ctrl-C stops the query."""
    run_query(config, output, sql, engine, timeout)


# ------------------------------------------------------------------ test-insert
@handle_errors
def test_insert(
    count: Annotated[int, typer.Option("--count", "-n", help="Items to insert.")] = 20,
    updates: Annotated[Optional[int], typer.Option("--updates", help="Items to update afterwards (default count/4).", show_default=False)] = None,
    deletes: Annotated[Optional[int], typer.Option("--deletes", help="Items to delete afterwards (default count/4).", show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds to wait for each phase (default: Firehose buffer interval + 180).", show_default=False)] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between lake queries (default stack.poll_interval).", show_default=False)] = None,
    engine: EngineOpt = None,
    cleanup: Annotated[bool, typer.Option("--cleanup", help="Delete the run's remaining items from the source at the end.")] = False,
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
    stack = open_stack(config, out, "test-insert", lock=False)
    cfg = stack.cfg
    with _spinner(out, "test-insert") as progress:
        # the engine's per-query states would drown the follow loop's own progress
        eng = open_engine(cfg, stack.aws, engine, progress=lambda m: progress(m) if m.startswith("creating") else None)
        ti = TestInsert(cfg, stack.aws.client("dynamodb"), eng, count=count, updates=updates, deletes=deletes,
                        timeout=timeout, interval=cfg.stack.poll_interval if interval is None else interval,
                        progress=progress)
        res = ti.run_all()
        cleaned = ti.cleanup() if cleanup else None
    doc = res.to_json()
    if cleaned is not None:
        doc["cleaned_up"] = cleaned
    err = None
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
        raise err
    c = res.counts
    out.line(f"PASS: {c['inserts']} insert(s), {c['updates']} update(s), {c['deletes']} delete(s) reached the lake "
             f"in {res.elapsed:.1f}s")


# ------------------------------------------------------------------ verify
@handle_errors
def verify(
    repair: Annotated[bool, typer.Option("--repair", help="Send mismatched keys through the Kinesis stream so the pipeline fixes the lake.")] = False,
    segments: Annotated[int, typer.Option("--segments", help="Parallel scan segments (0: by table size).", min=0, max=64)] = 0,
    export: Annotated[bool, typer.Option("--export", help="For tables too large to scan: compare in Athena over a "
                                         "DynamoDB export; only the differences come back (needs point-in-time recovery).")] = False,
    enable_pitr: Annotated[bool, typer.Option("--enable-pitr", help="With --export: turn on point-in-time recovery "
                                              "when it is off (it is billed).")] = False,
    engine: EngineOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Compare the source table with the lake table (counts and a per-key digest of the mapped columns)."""
    from s3tstream.errors import S3tError, UsageError
    from s3tstream.data.items import transform_settings
    from s3tstream.lake.query import open_engine
    from s3tstream.data.verify import compare, repair_records, send_records

    _check_engine(engine)
    if export and engine == "local":
        raise UsageError("--export compares in Athena; it cannot run with --engine local")
    if export and segments:
        raise UsageError("--segments sets the Scan of a plain verify; --export does not scan")
    if enable_pitr and not export:
        raise UsageError("--enable-pitr only applies to --export")
    out = Output(output)
    # --export creates (and removes) a Glue table and export files, as backfill does: one run at a time
    stack = open_stack(config, out, "verify", lock=export)
    cfg = stack.cfg
    settings = transform_settings(cfg)
    info = None
    try:
        with _spinner(out, "verify") as progress:
            if export:
                from s3tstream.data.verify_export import compare_export

                rep, layout, info = compare_export(cfg, settings, stack.aws, enable_pitr=enable_pitr, progress=progress,
                                                   state=stack.state)
            else:
                eng = open_engine(cfg, stack.aws, engine, progress=progress)
                rep, layout = compare(cfg, settings, eng, stack.aws.client("dynamodb"), segments=segments, progress=progress)
    finally:
        stack.close()
    doc = rep.to_json(layout)
    notes = []
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
        notes.append("table.ttl_deletes = keep: extra keys may be TTL-expired items the lake keeps on purpose; "
                     "--repair does not remove them")
    if rep.unmappable:
        notes.append("unmappable items cannot reach the lake; `s3tstream errors` shows their failed records")
    if rep.dropped_fields:
        notes.append("struct columns drop nested fields they do not declare: declare them or set "
                     "table.extra_column, then `s3tstream up` and `s3tstream verify --repair`")
    doc["notes"] = notes
    if repair and not rep.ok:
        recs = repair_records(cfg, rep, layout, removes=cfg.table.ttl_deletes != "keep")
        with _spinner(out, "repair") as progress:
            sent = send_records(stack.aws.client("kinesis"), cfg.names.stream, recs, progress=progress)
        inserts = sum(1 for r in recs if r["eventName"] == "INSERT")
        doc["repair"] = {"sent": sent, "inserts": inserts, "removes": len(recs) - inserts, "stream": cfg.names.stream}
    err = None
    if not doc["ok"]:
        c = doc["counts"]
        more = f", and {info['not_returned']:,} more not returned" if info and info["not_returned"] else ""
        err = S3tError(
            f"source and lake differ: {c['missing']} missing, {c['extra']} extra, {c['differing']} differing, "
            f"{c['duplicates']} duplicate, {c['unmappable']} unmappable key(s), "
            f"{c['dropped_fields']} with dropped fields{more}",
            ("repair records were sent; run `s3tstream verify` again after the Firehose buffer interval "
             f"(~{cfg.firehose.buffer_interval_seconds + 30}s)") if "repair" in doc
            else "run `s3tstream verify --repair` to send the mismatched keys through the pipeline again"
            if len(rep.unmappable) < sum(c[k] for k in ("missing", "extra", "differing", "duplicates", "unmappable"))
            else "fix the items (or the column config and `s3tstream up`), then `s3tstream errors replay`",
            code="differs",
        )
    if out.is_json:
        return _emit_json_result(doc, err)
    c = doc["counts"]
    out.table(f"verify: {cfg.names.source_table} -> {cfg.names.namespace}.{cfg.names.table} ({rep.engine})",
              ["", "count"], [[k.replace("_", " "), str(v)] for k, v in c.items()])
    ex = doc["examples"]
    from s3tstream.lake.query import exact_json

    for kind in ("missing", "extra", "differing", "duplicates", "unmappable", "dropped_fields"):
        for e in ex[kind]:
            out.line(f"{kind}: {exact_json(e, indent=None)}")
    for n in notes:
        out.warn(n)
    if "repair" in doc:
        r = doc["repair"]
        out.line(f"repair: sent {r['sent']} record(s) ({r['inserts']} insert, {r['removes']} remove) to {r['stream']}")
    if err:
        raise err
    out.line(f"OK: {c['source_items']} item(s) and {c['lake_rows']} row(s) match")


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
    from s3tstream.data.failed_records import error_location, read_all, summarize
    from s3tstream.lake.query import exact_json

    out = Output(output)
    stack = open_stack(config, out, "errors", lock=False)
    bucket, prefix = error_location(stack.cfg, stack.aws)
    with _spinner(out, "errors") as progress:
        objects, records = read_all(stack.aws.client("s3"), bucket, prefix, progress)
    groups = summarize(records)
    if out.is_json:
        _emit_json({"bucket": bucket, "prefix": prefix, "objects": len(objects), "records": len(records), "groups": groups})
        return
    if not records:
        out.line(f"no failed records under s3://{bucket}/{prefix}")
        return
    out.table(f"failed records in s3://{bucket}/{prefix} ({len(objects)} object(s))",
              ["error code", "count", "first", "last", "message"],
              [[g["error_code"], str(g["count"]), g["first"] or "", g["last"] or "", (g["message"] or "")[:100]] for g in groups])
    for g in groups:
        text = exact_json(g["example"], indent=None)
        out.line(f"example {g['error_code']}: {text[:400]}{'...' if len(text) > 400 else ''}")
    out.info("fix the cause, then `s3tstream errors replay` sends them through the pipeline again")


@errors_app.command()
@handle_errors
def replay(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent; send and delete nothing.")] = False,
    code: Annotated[Optional[list[str]], typer.Option(
        "--code", help="Only the error objects whose records all failed with this error code (as `s3tstream errors` "
        "lists them); repeatable.", show_default=False)] = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Send the failed records back through the Kinesis stream (once the cause is fixed).

    Each error object is deleted only after Kinesis accepted all of its records."""
    from s3tstream.errors import UsageError
    from s3tstream.data.failed_records import replay as do_replay

    codes = tuple(c.strip() for c in code or ())
    if any(not c for c in codes):
        raise UsageError("--code must name an error code, e.g. --code Lambda.ProcessingFailedStatus")
    out = Output(output)
    stack = open_stack(config, out, "errors replay", lock=False)
    with _spinner(out, "replay") as progress:
        res = do_replay(stack.cfg, stack.aws, dry_run=dry_run, codes=codes, progress=progress)
    if out.is_json:
        _emit_json({**res.to_json(), "dry_run": dry_run, "stream": stack.cfg.names.stream, "codes": list(codes)})
        return
    verb = "would send" if dry_run else "sent"
    out.line(f"{verb} {res.records} record(s) from {res.objects - len(res.kept)} object(s) to {stack.cfg.names.stream} "
             f"({res.raw} as recorded, {res.current} as the item's current state); deleted {res.deleted} object(s)")
    for k in res.kept:
        out.warn(f"kept {k['object']}: {k['reason']}")


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
