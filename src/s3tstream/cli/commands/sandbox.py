"""sandbox start/stop/status: a local AWS endpoint (moto plus what moto lacks) in the background."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from s3tstream.cli.common import OutputOpt, handle_errors
from s3tstream.cli.output import Format, Output

app = typer.Typer(help="A local AWS endpoint for the demo and the tests (no AWS account needed).", no_args_is_help=True)

HomeOpt = Annotated[
    Path,
    typer.Option("--home", envvar="S3TSTREAM_HOME", help="Where the sandbox records its pid, port and log."),
]


def _home(home: Path | None) -> Path:
    return Path(home or os.environ.get("S3TSTREAM_HOME") or ".s3tstream")


@app.command()
@handle_errors
def start(
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")] = 4566,
    latency: Annotated[str, typer.Option("--latency", help="instant, or realistic (AWS-like readiness times).")] = "instant",
    home: HomeOpt = Path(".s3tstream"),
    output: OutputOpt = Format.text,
    delivery: Annotated[str, typer.Option(
        "--delivery", help="ordered, or chaos (Firehose duplicates, reorders, writes merge-on-read; README Guarantees).",
    )] = "ordered",
    seed: Annotated[int, typer.Option("--seed", help="The chaos delivery's random seed (same seed, same decisions).")] = 0,
) -> None:
    """Start the sandbox in the background and print its endpoint_url."""
    from s3tstream.errors import UsageError
    from s3tstream.sandbox import control

    if latency not in ("instant", "realistic"):
        raise UsageError(f"--latency must be instant or realistic, not {latency!r}")
    if delivery not in ("ordered", "chaos"):
        raise UsageError(f"--delivery must be ordered or chaos, not {delivery!r}")
    out = Output(output)
    info = control.start(_home(home), port=port, latency=latency, delivery=delivery, seed=seed)
    if out.is_json:
        out.json(info)
    else:
        out.line(info["endpoint_url"])
        out.info(f"sandbox running (pid {info['pid']}); put endpoint_url = \"{info['endpoint_url']}\" in [stack]")


@app.command()
@handle_errors
def stop(home: HomeOpt = Path(".s3tstream"), output: OutputOpt = Format.text) -> None:
    """Stop the background sandbox."""
    from s3tstream.sandbox import control

    out = Output(output)
    stopped = control.stop(_home(home))
    if out.is_json:
        out.json({"stopped": bool(stopped)})
    else:
        out.line("sandbox stopped" if stopped else "no sandbox was running")


@app.command()
@handle_errors
def status(home: HomeOpt = Path(".s3tstream"), output: OutputOpt = Format.text) -> None:
    """Say whether the sandbox runs, and where."""
    from s3tstream.sandbox import control

    out = Output(output)
    info = control.status(_home(home))
    if out.is_json:
        out.json({"running": info is not None, **(info or {})})
    elif info:
        out.line(f"running: {info['endpoint_url']} (pid {info['pid']})")
    else:
        out.line("not running")
        raise SystemExit(1)
