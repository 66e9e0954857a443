"""`s3tstream backfill`: the items that existed before the stream, into the lake (s3tstream.data.backfill).

Progress (items/s, ETA) on stderr; the final counts on stdout (text, or one JSON document with
--output json). Exit 2 for bad options or when the stream is not ready (nothing was sent), 1 for
an AWS failure (the checkpoints are kept: run it again to continue) or when some items could not be
sent (over Kinesis' record limit: listed by key), 130 when interrupted. After a completed backfill
it says so and sends nothing (--restart runs a new one).
"""

from __future__ import annotations

from typing import Annotated

import typer

from s3tstream.cli.common import ConfigOpt, OutputOpt, TableOpt, handle_errors, open_stack
from s3tstream.cli.output import Format, Output


@handle_errors
def backfill(
    strategy: Annotated[str, typer.Option(
        "--strategy", help="scan (through the stream), export (DynamoDB export + Athena), or auto: scan below "
        "backfill.scan_threshold_items, export above.")] = "auto",
    segments: Annotated[int, typer.Option(
        "--segments", min=0, max=64, help="Parallel scan segments (0: backfill.segments, else by table size).")] = 0,
    restart: Annotated[bool, typer.Option("--restart", help="Forget the checkpoints of a backfill in progress and start "
                                          "over; after a completed backfill, run a new one.")] = False,
    abort: Annotated[bool, typer.Option("--abort", help="Give up the backfill in progress: stop its Athena load, remove "
                                        "its temporary Glue table and export files, forget its checkpoints.")] = False,
    enable_pitr: Annotated[bool, typer.Option(
        "--enable-pitr", help="Strategy export: turn on point-in-time recovery when it is off (it is billed).")] = False,
    table: TableOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Bring the items that existed before the stream into the lake (resumable)."""
    from s3tstream.data import backfill as bf
    from s3tstream.errors import UsageError

    if strategy not in bf.STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(bf.STRATEGIES)}, not {strategy!r}")
    if enable_pitr and strategy == "scan":
        raise UsageError("--enable-pitr only applies to --strategy export (or auto)")
    if abort and restart:
        raise UsageError("--abort and --restart exclude each other")
    out = Output(output)
    stack = open_stack(config, out, "backfill", table=table)
    if abort:
        try:
            doc = bf.abort(stack.cfg, stack.aws, progress=out.progress(), state=stack.state)
        finally:
            stack.close()
        if out.is_json:
            out.json(doc)
            return
        for n in doc["notes"]:
            out.warn(n)
        out.line(f"backfill aborted ({doc['strategy']}, phase {doc['phase']}); its checkpoints are gone"
                 if doc["aborted"] else "no backfill in progress")
        return
    try:
        res = bf.run(stack.cfg, stack.aws, strategy=strategy, segments=segments or None, restart=restart,
                     enable_pitr=enable_pitr, progress=out.progress(), state=stack.state)
    finally:
        stack.close()
    doc = res.to_json()
    err = None
    if res.skipped_oversize:
        from s3tstream.errors import S3tError

        err = S3tError(f"{res.skipped_oversize:,} item(s) could not be sent: their change record is over Kinesis' "
                       "record limit (1 MiB, data + partition key); they are not in the lake",
                       "shrink those items (DynamoDB's own stream cannot carry them either); their keys are listed",
                       code="oversize")
        doc["error"] = err.to_dict()
    if out.is_json:
        out.json(doc)
        if err:
            raise SystemExit(err.exit_code)
        return
    for s in res.skipped:
        out.err.print(f"  not sent: {s['keys']} ({s['bytes']:,} bytes)", markup=False)
    if res.already_done:
        for n in res.notes:
            out.warn(n)
        out.line(f"backfill already completed ({res.already_done['completed_at']}); nothing sent")
        if err:
            raise err
        return
    rows = [["strategy", res.strategy], ["items read", f"{res.items_read:,}"], ["items sent", f"{res.items_sent:,}"]]
    if res.strategy == "scan":
        rows += [["segments", f"{res.segments} ({res.segments_done_before} done before this run)"],
                 ["all runs", f"{res.total_read:,} read, {res.total_sent:,} sent"],
                 # the limit is an average: the token bucket lets one second's worth through at once
                 ["rate", f"{res.items_per_second:,.0f} items/s ("
                          + ("no read-rate limit)" if res.rate_limit == "none" else
                             f"limit {res.rate_limit} on average, 1 s bursts)")]]
    if res.export:
        rows += [["export", str(res.export.get("export_arn", ""))],
                 ["export time", str(res.export.get("export_time", ""))]]
    if res.catch_up:
        c = res.catch_up
        rows.append(["catch-up", f"{c['changed_keys']} changed key(s), {c['resent']} sent again "
                                 f"({c['removed']} removed) in {c['rounds']} round(s)"])
    rows.append(["elapsed", f"{res.elapsed_seconds:.1f}s"])
    out.table(f"backfill: {res.table} -> {res.stream}", ["", ""], rows)
    for n in res.notes:
        out.warn(n)
    out.line(f"backfill complete: {res.items_read:,} item(s) read, {res.items_sent:,} sent"
             + (f" (resumed; {res.total_read:,} in all runs)" if res.resumed else ""))
    if err:
        raise err
