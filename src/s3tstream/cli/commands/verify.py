"""verify: the source table against the lake table; --repair sends the mismatches through the stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from s3tstream.cli.common import ConfigOpt, EngineOpt, OutputOpt, check_engine, handle_errors, load_config, open_stack
from s3tstream.cli.output import Format, Output

if TYPE_CHECKING:
    from s3tstream.cli.common import Stack


@handle_errors(interrupted="run the command again: it starts over (a verify compares from the beginning; with --repair it "
               "sends only what still differs)")
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

    check_engine(engine)
    if export and engine == "local":
        raise UsageError("--export compares in Athena; it cannot run with --engine local")
    if export and segments:
        raise UsageError("--segments sets the Scan of a plain verify; --export does not scan")
    if enable_pitr and not export:
        raise UsageError("--enable-pitr only applies to --export")
    out = Output(output)
    whole = load_config(config)
    names = whole.table_names if table is None and len(whole.table_names) > 1 else [whole.scoped(table).names.table]
    # --export creates (and removes) a Glue table and export files, as backfill does: one run at a time
    stack = open_stack(config, out, "verify", lock=export,
                       needs=("create-source", "set-metadata") + (("create-stream",) if repair else ()))
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
            return out.json_result(doc, err)
        _print_one(out, cfg, doc, rep)
        if err:
            raise err
        c = doc["counts"]
        out.line(f"OK: {c['source_items']} item(s) and {c['lake_rows']} row(s) match")
        return
    # every table of the stack: one row each; the command fails when any table differs
    bad = [cfg.names.table for cfg, (doc, _, _) in results if not doc["ok"]]
    err = S3tError(f"{len(bad)} of {len(results)} tables differ: {', '.join(bad)}",
                   "run `s3tstream verify --table NAME` for one table's differences (--repair fixes them)",
                   code="differs") if bad else None
    if out.is_json:
        return out.json_result({"ok": not bad, "tables": [{"table": cfg.names.table, **doc}
                                                          for cfg, (doc, _, _) in results]}, err)
    keys = ("source_items", "lake_rows", "missing", "extra", "differing", "duplicates", "unmappable")
    out.table("verify: every table", ["table", "ok", *[k.replace("_", " ") for k in keys]],
              [[cfg.names.table, "ok" if doc["ok"] else "DIFFERS", *[str(doc["counts"].get(k, "")) for k in keys]]
               for cfg, (doc, _, _) in results])
    for cfg, (doc, _, _) in results:
        for n in doc["notes"]:
            out.warn(f"{cfg.names.table}: {n}")
        if "repair" in doc:
            out.line(f"{cfg.names.table}: repair sent {doc['repair']['sent']} record(s) to {doc['repair']['stream']}")
    if err:
        raise err
    out.line(f"OK: all {len(results)} tables match")


def _verify_one(stack: "Stack", cfg: Any, out: Output, *, repair: bool, segments: int, export: bool,
                enable_pitr: bool, settle: float | None, engine: str | None) -> tuple[dict[str, Any], Any, Any]:
    """One table (cfg scoped to it): (the JSON document, the error to raise or None, the report)."""
    from s3tstream.errors import S3tError
    from s3tstream.data.changes import send_records
    from s3tstream.data.deployed import deployed_settings
    from s3tstream.data.verify import repair_records, verify_scan
    from s3tstream.lake.query import open_engine

    info, settled = None, None
    with out.spinner(f"verify {cfg.names.table}") as progress:
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
    if rep.dropped_fields:
        notes.append("struct columns drop nested fields they do not declare: declare them or set "
                     "table.extra_column, then `s3tstream up` and `s3tstream verify --repair`")
    doc["notes"] = notes
    if repair and not rep.ok:
        recs = repair_records(cfg, rep, layout, removes=cfg.table.ttl_deletes != "keep")
        with out.spinner("repair") as progress:
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
            f"{c['duplicates']} duplicate, {c['unmappable']} unmappable key(s), "
            f"{c['dropped_fields']} with dropped fields{more}",
            ("repair records were sent; run `s3tstream verify` again after the Firehose buffer interval "
             f"(~{cfg.firehose.buffer_interval_seconds + 30}s)") if "repair" in doc
            else "run `s3tstream verify --repair` to send the mismatched keys through the pipeline again"
            if len(rep.unmappable) < sum(c[k] for k in ("missing", "extra", "differing", "duplicates", "unmappable"))
            else "fix the items (or the column config and `s3tstream up`), then `s3tstream errors replay`",
            code="differs",
        )
    return doc, err, rep


def _print_one(out: Output, cfg: Any, doc: dict[str, Any], rep: Any) -> None:
    c = doc["counts"]
    out.table(f"verify: {cfg.names.source_table} -> {cfg.names.namespace}.{cfg.names.table} ({rep.engine})",
              ["", "count"], [[k.replace("_", " "), str(v)] for k, v in c.items()])
    ex = doc["examples"]
    from s3tstream.lake.exactjson import exact_json

    for kind in ("missing", "extra", "differing", "duplicates", "unmappable", "dropped_fields"):
        for e in ex[kind]:
            out.line(f"{kind}: {exact_json(e, indent=None)}")
    for n in doc["notes"]:
        out.warn(n)
    if "repair" in doc:
        r = doc["repair"]
        out.line(f"repair: sent {r['sent']} record(s) ({r['inserts']} insert, {r['removes']} remove) to {r['stream']}")
        for o in r["not_sent"]:
            out.line(f"not sent (over the record limit, {o['bytes']:,} bytes): {exact_json(o['keys'], indent=None)}")
