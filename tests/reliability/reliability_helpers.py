"""Shared bits of the reliability suite: configs, a full-pipeline stack, inventories."""

from __future__ import annotations

from typing import Any

PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"


def write_config(stack: Any, body: str = "", *, max_attempts: int = 3, columns: str | None = None,
                 pipeline: bool = True) -> None:
    """A config for the conftest StackEnv `stack`, with this suite's own header."""
    cols = columns or '{ name = "pk", type = "string", required = true }'
    stack.config_path.write_text(
        f'[stack]\nname = "{stack.name}"\nendpoint_url = "{stack.endpoint_url}"\n'
        f"poll_interval = 0.01\nwait_timeout = 30\nmax_attempts = {max_attempts}\n"
        + (PIPELINE if pipeline else "")
        + (f"[table]\ncolumns = [{cols}]\n" if "[table]" not in body else "")
        + body,
        encoding="utf-8",
    )


def inventory(stack: Any) -> dict:
    from tests.support.inventory import inventory as inv

    return inv(stack.endpoint_url, stack.name)


def leftovers(stack: Any) -> dict:
    """The stack's resources still there (by derived name or the stack's tag)."""
    from tests.support.inventory import leftovers as left

    return left(inventory(stack))
