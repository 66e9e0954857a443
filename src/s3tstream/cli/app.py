"""The Typer app. Commands live one concern per module and import AWS code lazily, so that
`s3tstream --help` answers without importing boto3."""

from __future__ import annotations

import typer

from s3tstream import __version__
from s3tstream.cli.commands import (backfill as cmd_backfill, demo as cmd_demo, errors as cmd_errors, health as cmd_health,
                                    provision as cmd_provision, put_item as cmd_put_item, query as cmd_query,
                                    sandbox as cmd_sandbox, schema as cmd_schema, setup as cmd_setup, state as cmd_state,
                                    test_insert as cmd_test_insert, verify as cmd_verify)

app = typer.Typer(
    name="s3tstream",
    help="DynamoDB changes as Apache Iceberg tables on Amazon S3 Tables: provision, run, query, tear down.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # never print locals (credentials) in a traceback
    # plain help: "[table] columns" in a help text prints as written (rich markup would eat it),
    # and --help never imports rich
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"s3tstream {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Provision and run DynamoDB -> Kinesis -> Firehose -> S3 Tables from one config file."""


app.command()(cmd_setup.init)
app.command()(cmd_provision.plan)
app.command()(cmd_provision.up)
app.command()(cmd_provision.step)
app.command()(cmd_provision.status)
app.command()(cmd_provision.down)
app.command()(cmd_setup.doctor)
app.add_typer(cmd_sandbox.app, name="sandbox")
app.command("put-item")(cmd_put_item.put_item)
app.command("test-insert")(cmd_test_insert.test_insert)
app.command()(cmd_query.query)
app.command()(cmd_verify.verify)
app.command()(cmd_backfill.backfill)
app.add_typer(cmd_errors.errors_app, name="errors")
app.add_typer(cmd_schema.app, name="schema")
app.add_typer(cmd_state.app, name="state")
app.command()(cmd_demo.demo)
app.command()(cmd_health.health)


def _fast_help(args: list[str]) -> bool:
    """`s3tstream [GROUP...] COMMAND --help`, answered from the command tree without parsing any
    parameter: Typer would first build a pydantic validator for the --help flag itself, which
    imports pydantic and doubles the time to show the help (benchmarks/startup.py). The text is
    the one Typer prints (tests/test_cli_foundation.py compares them). Anything else (an option
    before --help, an unknown command): False, and Typer answers as usual."""
    import os
    import sys

    if "--help" not in args or "--" in args:
        return False
    path = args[: args.index("--help")]
    cmd = typer.main.get_command(app)
    prog = os.path.basename(sys.argv[0])
    prog = "python -m s3tstream" if prog == "__main__.py" else prog
    ctx = cmd.context_class(cmd, info_name=prog)
    for word in path:
        if word.startswith("-"):
            return False
        sub = cmd.get_command(ctx, word) if hasattr(cmd, "get_command") else None
        if sub is None:
            if hasattr(cmd, "get_command"):
                return False  # an unknown command: Typer says so
            break  # an argument of a leaf command: its help all the same
        cmd = sub
        ctx = cmd.context_class(cmd, info_name=word, parent=ctx)
    typer.echo(ctx.get_help())
    return True


def main() -> None:
    import sys

    if _fast_help(sys.argv[1:]):
        return
    app()
