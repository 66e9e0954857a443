"""errors / errors replay: failed records in the Firehose error bucket, grouped; sent through the stream again."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from s3tstream.cli.common import READ_ONLY, ConfigOpt, OutputOpt, handle_errors, open_stack
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
    from s3tstream.data.failed_records import error_location, read_all, summarize
    from s3tstream.lake.exactjson import exact_json

    out = Output(output)
    stack = open_stack(config, out, "errors", lock=False, needs=("create-firehose",))
    bucket, prefix = error_location(stack.cfg, stack.aws)
    with out.spinner("errors") as progress:
        objects, records = read_all(stack.aws.client("s3"), bucket, prefix, progress)
    groups = summarize(records)
    if out.is_json:
        out.json({"bucket": bucket, "prefix": prefix, "objects": len(objects), "records": len(records), "groups": groups})
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
@handle_errors(interrupted="run the command again: error objects whose records were all accepted are already deleted; "
               "the rest are sent again")
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
    stack = open_stack(config, out, "errors replay", lock=False, needs=("create-firehose",))
    with out.spinner("replay") as progress:
        res = do_replay(stack.cfg, stack.aws, dry_run=dry_run, codes=codes, progress=progress)
    if out.is_json:
        out.json({**res.to_json(), "dry_run": dry_run, "stream": stack.cfg.names.stream, "codes": list(codes)})
        return
    verb = "would send" if dry_run else "sent"
    out.line(f"{verb} {res.records} record(s) from {res.objects - len(res.kept)} object(s) to {stack.cfg.names.stream} "
             f"({res.raw} as recorded, {res.current} as the item's current state); deleted {res.deleted} object(s)")
    for k in res.kept:
        out.warn(f"kept {k['object']}: {k['reason']}")
