"""Commands that use the pipeline (put-item, query, test-insert, verify): built in later issues."""

from __future__ import annotations

from pathlib import Path

from s3tstream.cli.output import Format


def run_step(name: str, config: Path | None, output: Format) -> None:
    from s3tstream.errors import PlanError

    raise PlanError(
        f"step {name} is not built yet in this version of s3tstream",
        "see `s3tstream step --help` for the steps that exist",
    )
