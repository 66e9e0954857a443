"""init and doctor: writing a starter config, and the read-only preflight checks."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from s3tstream.cli.common import READ_ONLY, ConfigOpt, OutputOpt, handle_errors, open_stack
from s3tstream.cli.output import Format, Output


def starter_config(stack: str) -> str:
    from importlib.resources import files

    text = files("s3tstream").joinpath("templates/config.example.toml").read_text(encoding="utf-8")
    return re.sub(r'(?m)^name = "orders"$', f'name = "{stack}"', text, count=1)


SANDBOX_DEFAULT_URL = "http://127.0.0.1:4566"  # `s3tstream sandbox start`'s default port


def sandbox_config(text: str, endpoint_url: str) -> str:
    """The starter config set for the sandbox: its endpoint_url and both [lakeformation] opt-ins
    (the sandbox's account has no analytics integration and no data lake administrator yet)."""
    for key, value in (("endpoint_url", f'"{endpoint_url}"'), ("integrate", "true"), ("make_caller_admin", "true")):
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
    return text


def _running_sandbox() -> str | None:
    from s3tstream.sandbox import control

    info = control.status(Path(os.environ.get("S3TSTREAM_HOME") or ".s3tstream"))
    return info["endpoint_url"] if info and info.get("responding") else None


@handle_errors
def init(
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
    stack: Annotated[str, typer.Option("--stack", help="Stack name written into the config.")] = "my-stack",
    endpoint_url: Annotated[str, typer.Option("--endpoint-url", help="Local endpoint (e.g. the sandbox's).")] = "",
    sandbox: Annotated[bool, typer.Option(
        "--sandbox", help="For the local sandbox: its endpoint_url (the running one, else "
        f"{SANDBOX_DEFAULT_URL}) and both [lakeformation] opt-ins.")] = False,
) -> None:
    """Write a starter config (never overwrites an existing file)."""
    from s3tstream.config import model as cfgmod, rules
    from s3tstream.errors import ConfigError, UsageError

    out = Output(output)
    path = cfgmod.resolve_path(config)
    try:
        rules.check_stack_name(stack)
    except ValueError as e:
        raise ConfigError([("--stack", str(e))]) from None
    if path.exists():
        raise UsageError(f"{path} already exists; init never overwrites a config", "edit it, or pass --config NEW_PATH")
    text = starter_config(stack)
    running = None
    if sandbox:
        running = None if endpoint_url else _running_sandbox()
        endpoint_url = endpoint_url or running or SANDBOX_DEFAULT_URL
        text = sandbox_config(text, endpoint_url)
    elif endpoint_url:
        text = re.sub(r'(?m)^endpoint_url = ""$', f'endpoint_url = "{endpoint_url}"', text, count=1)
    cfgmod.build(__import__("tomllib").loads(text), str(path))  # the template must validate
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as f:  # "x": never overwrite, even in a race
        f.write(text)
    if out.is_json:
        out.json({"config": str(path), "stack": stack, **({"endpoint_url": endpoint_url} if endpoint_url else {})})
        return
    out.line(f"wrote {path} (stack {stack}); edit [table] columns, then run `s3tstream plan`")
    if sandbox:
        out.info(f"set for the sandbox at {endpoint_url}: [stack] endpoint_url, [lakeformation] integrate and "
                 "make_caller_admin; without AWS credentials the sandbox's dummy ones are used")
        if not running:
            out.info("start the sandbox first if it is not running: `s3tstream sandbox start`")


@handle_errors(interrupted=READ_ONLY)
def doctor(config: ConfigOpt = None, output: OutputOpt = Format.text) -> None:
    """Check credentials, Region, quotas and Lake Formation admin, with read calls only."""
    from s3tstream.provision import preflight

    out = Output(output)
    stack = open_stack(config, out, "doctor", lock=False, identity=False)
    checks = preflight.run_checks(stack.cfg, stack.aws)
    if out.is_json:
        out.json({"ok": all(c.ok for c in checks), "checks": [c.to_dict() for c in checks]})
    else:
        rows = [[out.styled("ok", "green") if c.ok and not c.skipped
                 else (out.styled("skip", "dim") if c.skipped else out.styled("FAIL", "red")),
                 c.name, c.detail, c.fix] for c in checks]
        out.table("doctor", ["", "check", "detail", "fix"], rows)
    if not all(c.ok for c in checks):
        raise SystemExit(1)
