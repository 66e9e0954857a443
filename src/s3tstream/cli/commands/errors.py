"""errors / errors replay: failed records in the Firehose error bucket, grouped; sent through the stream again."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from s3tstream.cli.common import ALL_TABLES, READ_ONLY, ConfigOpt, OutputOpt, handle_errors, open_stack
from s3tstream.cli.output import Format, Output

errors_app = typer.Typer(help="Failed records in the Firehose error bucket: list them grouped, replay them.",
                         invoke_without_command=True, no_args_is_help=False)


@errors_app.callback(invoke_without_command=True)
@handle_errors(interrupted=READ_ONLY)
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
    from s3tstream.lake.exactjson import exact_json

    out = Output(output)
    stack = open_stack(config, out, "errors", lock=False, needs=("create-firehose",))
    bucket, prefix = error_location(stack.cfg, stack.aws)
    with out.spinner("errors") as progress:
        found = list_errors(stack.aws.client("s3"), bucket, prefix, progress)
    groups = found.groups
    err = S3tError(f"{len(found.bad)} error object(s) could not be read; they were skipped and left in place",
                   "look at them (`aws s3 cp`), remove them by hand if they are not Firehose's",
                   code="unreadable") if found.bad else None
    if out.is_json:
        return out.json_result({"bucket": bucket, "prefix": prefix, "objects": found.objects, "records": found.records,
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
            out.line(f"example {safe(g['error_code'])}: {text[:400]}{'...' if len(text) > 400 else ''}")
        out.info("fix the cause, then `s3tstream errors replay` sends them through the pipeline again")
    if err:
        raise err


@errors_app.command()
@handle_errors(interrupted="run the command again: error objects whose records were all accepted are already deleted; "
               "the rest are sent again")
def replay(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent; send and delete nothing.")] = False,
    code: Annotated[Optional[list[str]], typer.Option(
        "--code", help="Only the error objects whose records all failed with this error code (as `s3tstream errors` "
        "lists them); repeatable.", show_default=False)] = None,
    table: Annotated[Optional[str], typer.Option(
        "--table", "-t", help="Only the records of this lake table (table.name); default: every table of the stack "
        "(each record checked and rebuilt as its own table's).", show_default=False)] = None,
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
    # the stack lock: two replays never send one object twice. With --table, an object that also
    # holds another table's records is kept (an object is replayed and deleted whole)
    stack = open_stack(config, out, "errors replay", needs=("create-firehose",), table=table or ALL_TABLES)
    try:
        with out.spinner("replay") as progress:
            res = do_replay(stack.cfg, stack.aws, dry_run=dry_run, codes=codes, progress=progress)
    finally:
        stack.close()
    err = S3tError(f"{len(res.failed)} error object(s) could not be replayed; they were kept",
                   "see why for each; fix or remove them by hand", code="not-replayed") if res.failed else None
    if out.is_json:
        return out.json_result({**res.to_json(), "dry_run": dry_run, "stream": stack.cfg.names.stream,
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
