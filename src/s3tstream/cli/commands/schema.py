"""schema infer: sample the source table and print a `[table] columns` block to paste."""

from __future__ import annotations

import threading
from typing import Annotated, Any

import typer

from s3tstream.cli.common import ConfigOpt, OutputOpt, handle_errors, open_stack
from s3tstream.cli.output import Format, Output

app = typer.Typer(help="Table schema helpers.", no_args_is_help=True)

MAX_SEGMENTS = 8


def scan_sample(ddb: Any, table: str, sample: int, segments: int, progress: Any) -> list[dict[str, Any]]:
    """Up to `sample` items, read by `segments` parallel scan segments (one thread each)."""
    per = -(-sample // segments)
    items: list[dict[str, Any]] = []
    lock = threading.Lock()

    def segment(i: int) -> None:
        got = 0
        kwargs: dict[str, Any] = {"TableName": table, "Segment": i, "TotalSegments": segments}
        while got < per:
            page = ddb.scan(Limit=min(1000, per - got), **kwargs)
            batch = page.get("Items", [])[: per - got]
            got += len(batch)
            with lock:
                items.extend(batch)
                progress(f"scanned {len(items)} item(s)")
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="scan") as pool:
        for fut in [pool.submit(segment, i) for i in range(segments)]:
            fut.result()  # re-raises a segment's error here
    return items[:sample]


@app.command("infer")
@handle_errors(interrupted="nothing was changed; run the command again: it samples from the start")
def infer(
    table_name: Annotated[str | None, typer.Option("--table", "-t", help="The lake table (table.name) whose source "
                                                   "to sample; optional when the config has one table.",
                                                   show_default=False)] = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
    sample: Annotated[int, typer.Option("--sample", "-n", min=1, max=1_000_000, help="Items to sample at most.")] = 1000,
    segments: Annotated[int, typer.Option("--segments", min=1, max=MAX_SEGMENTS, help="Parallel scan segments.")] = 4,
) -> None:
    """Scan up to N items of the source table and print the `[table] columns` they suggest."""
    from botocore.exceptions import ClientError

    from s3tstream.lake import infer as schema
    from s3tstream.aws.client import translate

    out = Output(output)
    stack = open_stack(config, out, "schema infer", lock=False, table=table_name)
    cfg = stack.cfg
    table = cfg.names.source_table
    progress = out.progress("schema infer")
    ddb = stack.aws.client("dynamodb")
    try:
        items = scan_sample(ddb, table, sample, min(segments, sample), progress)
    except ClientError as e:
        raise translate(e, f"scanning {table}") from None
    keys = [(cfg.source.partition_key.name, cfg.source.partition_key.type)]
    if cfg.source.sort_key:
        keys.append((cfg.source.sort_key.name, cfg.source.sort_key.type))
    cols, n = schema.infer_columns(items, keys)
    if out.is_json:
        out.json({
            "table": table, "sampled": n,
            "columns": [{"name": c.name, "type": c.type, "required": c.required,
                         **({"source": c.source} if c.source else {}), "seen": c.seen, "saw": c.saw} for c in cols],
        })
        return
    out.info(f"sampled {n} item(s) of {table}")
    # plain write: rich markup would eat the [table] header
    import sys

    sys.stdout.write(schema.toml_block(cols, n))
    sys.stdout.flush()
