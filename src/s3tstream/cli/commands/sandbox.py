"""sandbox start/stop/status: a local AWS endpoint (moto plus what moto lacks) in the background."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from s3tstream.cli.common import OutputOpt, handle_errors
from s3tstream.cli.output import Format, Output

app = typer.Typer(help="A local AWS endpoint for the demo and the tests (no AWS account needed).", no_args_is_help=True)

HomeOpt = Annotated[
    Path,
    typer.Option("--home", envvar="S3TSTREAM_HOME", help="Where the sandbox records its pid, port and log."),
]
FindHomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="S3TSTREAM_HOME",
                 help="Only the sandbox recorded in this folder (default: any sandbox of yours, wherever started)."),
]
PortPickOpt = Annotated[
    int | None,
    typer.Option("--port", min=1, max=65535, help="The sandbox on this port (needed when several run)."),
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
def stop(home: FindHomeOpt = None, port: PortPickOpt = None, output: OutputOpt = Format.text) -> None:
    """Stop your background sandbox, wherever it was started (--port when several run)."""
    from s3tstream.sandbox import control

    out = Output(output)
    if home is not None:
        stopped: Any = control.stop(_home(home))
    else:
        stopped = control.stop_found(port)
    if out.is_json:
        out.json({"stopped": bool(stopped), **({"port": stopped["port"]} if isinstance(stopped, dict) else {})})
    elif isinstance(stopped, dict):
        out.line(f"sandbox on port {stopped['port']} stopped (pid {stopped['pid']})")
    else:
        out.line("sandbox stopped" if stopped else "no sandbox was running")


@app.command()
@handle_errors
def status(home: FindHomeOpt = None, port: PortPickOpt = None, output: OutputOpt = Format.text) -> None:
    """Say which of your sandboxes run, and where (exit 1 when none)."""
    from s3tstream.sandbox import control

    out = Output(output)
    if home is not None:
        found = [info] if (info := control.status(_home(home))) else []
    else:
        found = [r for r in control.running() if port is None or int(r["port"]) == port]
    if out.is_json:
        one = found[0] if len(found) == 1 else {}
        out.json({"running": bool(found), **one, "sandboxes": found})
    for info in found if not out.is_json else []:
        where = f", home {info['home']}" if info.get("home") else ""
        out.line(f"running: {info['endpoint_url']} (pid {info['pid']}{where})")
    if not found:
        if not out.is_json:
            out.line("not running" if port is None else f"no sandbox of yours runs on port {port}")
        raise SystemExit(1)
