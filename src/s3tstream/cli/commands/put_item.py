"""put-item (and `step put-item`): write items to the source table; every item is checked first."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from s3tstream.cli.common import ConfigOpt, OutputOpt, TableOpt, handle_errors, load_config, open_stack
from s3tstream.cli.output import Format, Output

if TYPE_CHECKING:
    from s3tstream.cli.common import Stack


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

    with out.spinner("put-item") as progress:
        n = put_items(stack.aws.client("dynamodb"), schema, typed, progress=progress)
    keys = [item_to_plain(schema.key_item(i)) for i in typed]
    if out.is_json:
        doc: dict[str, Any] = {"table": schema.table, "written": n, "keys": keys[:100]}
        if len(keys) > 100:
            doc["keys_truncated"] = True
        if show_items:
            doc["items"] = [item_to_plain(i) for i in typed]
        out.json(doc)
        return
    if show_items:
        from s3tstream.lake.exactjson import exact_json

        for i in typed:
            out.line(exact_json(item_to_plain(i), indent=None))
    out.line(f"wrote {n} item(s) to {schema.table}")


@handle_errors(interrupted="run the command again: it starts over and writes every item again (same keys, same values); "
               "items written before Ctrl-C are already in the table")
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
    stack = open_stack(config, out, "put-item", lock=False, needs=("create-source",), table=table)
    _write_items(stack, typed, schema, out)


def run_step(config: Path | None, output: Format) -> None:
    """`s3tstream step put-item`: one sample item built from the schema."""
    import uuid

    from s3tstream.data.items import ItemSchema, checked_plain
    from s3tstream.data.testinsert import key_plan, sample_item

    out = Output(output)
    cfg = load_config(config)
    if len(cfg.table_names) > 1:
        from s3tstream.errors import UsageError

        raise UsageError(f"step put-item writes to one table and this stack has {len(cfg.table_names)} "
                         f"tables ({', '.join(cfg.table_names)})",
                         f"run `s3tstream put-item --table {cfg.table_names[0]} --item ...` instead")
    schema = ItemSchema.from_config(cfg)
    run = "sample-" + uuid.uuid4().hex[:8]
    plain = sample_item(cfg, schema, 0, run, key_plan(cfg, schema, 1, run).values(0))
    typed = checked_plain(plain, schema, "the sample item")
    stack = open_stack(config, out, "step put-item", lock=False, needs=("create-source",), table=None)
    _write_items(stack, [typed], schema, out, show_items=True)
