"""demo: the pipeline end to end on a local sandbox (what `make demo` runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from s3tstream.cli.common import handle_errors
from s3tstream.cli.output import Output


@handle_errors
def demo(
    ctx: typer.Context,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the stack and the sandbox running, and print how to explore.")] = False,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo writes its config, items and state.")] = Path("s3tstream-demo"),
    items: Annotated[int, typer.Option("--items", min=1, max=10000, help="Items to put.")] = 100,
) -> None:
    """Run the whole pipeline on a local sandbox: up, put items, update and delete, query, verify, down."""
    from s3tstream.cli.demo import Demo

    root = ctx.find_root().command  # the whole app, without importing cli.app (which imports us)

    out = Output()
    # fake credentials: the sandbox accepts any, and the demo must never reach AWS
    for k, v in (("AWS_ACCESS_KEY_ID", "demo"), ("AWS_SECRET_ACCESS_KEY", "demo"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ[k] = v
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)

    def run_cli(args: list[str]) -> int:
        try:
            root.main(args=args, prog_name="s3tstream", standalone_mode=False)
        except SystemExit as e:
            return int(e.code or 0)
        except typer.Abort:
            return 130
        return 0

    Demo(directory, keep=keep, items=items, say=lambda m: out.err.print(m, highlight=False), run_cli=run_cli).run()
