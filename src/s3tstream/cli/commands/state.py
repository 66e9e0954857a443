"""`s3tstream state pull | push | unlock | recover`: move, unlock and rebuild a stack's state.

- pull: the S3 state of `[stack] state` -> the local file (.s3tstream/<stack>.json), e.g. to
  stop sharing it; refuses to overwrite a local state of other content without --force.
- push: the local file -> the S3 state, under the S3 lock, e.g. to start sharing it; refuses
  to overwrite an existing S3 state without --force (then conditional on the ETag it read).
- unlock: breaks a stale S3 lock (a run that died), after naming its holder and asking.
- recover: rebuilds a lost state from the live resources tagged with the stack.
"""

from __future__ import annotations

from typing import Annotated

import typer

from s3tstream.cli.common import ConfigOpt, OutputOpt, YesOpt, handle_errors, load_config, open_stack
from s3tstream.cli.output import Format, Output

app = typer.Typer(help="Where the stack's state lives: pull, push, unlock, recover.", no_args_is_help=True)

ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the destination when it holds another state.")]


def _remote(cfg, aws):  # type: ignore[no-untyped-def]
    from s3tstream.aws.remote_state import remote_backend
    from s3tstream.errors import UsageError

    backend = remote_backend(cfg, aws)
    if backend is None:
        raise UsageError("stack.state is not set: the state is the local file already",
                         'set `[stack] state = "s3://bucket/prefix/"` in the config first')
    return backend


@app.command()
@handle_errors
def pull(force: ForceOpt = False, config: ConfigOpt = None, output: OutputOpt = Format.text) -> None:
    """Copy the S3 state (stack.state) to the local state file."""
    from s3tstream.aws.client import Aws
    from s3tstream.errors import StateError
    from s3tstream.state import LocalBackend, parse_doc

    out = Output(output)
    cfg = load_config(config)
    remote = _remote(cfg, Aws(cfg))
    data = remote.read()
    if data is None:
        raise StateError(f"there is no state at {remote.where}", "nothing to pull; nothing was changed")
    parse_doc(data, remote.where, cfg.stack.name, cfg.stack.region)  # refuse another stack's or a corrupt one
    local = LocalBackend(cfg.state_path)
    have = local.read()
    if have is not None and have != data and not force:
        raise StateError(f"the local state {cfg.state_path} differs from {remote.where}",
                         "pass --force to replace it (move it aside first to keep a copy); nothing was changed")
    local.lock(cfg.stack.name, "state pull")
    try:
        local.write(data)
    finally:
        local.unlock()
    doc = {"from": remote.where, "to": str(cfg.state_path), "bytes": len(data)}
    out.json(doc) if out.is_json else out.line(f"pulled {remote.where} -> {cfg.state_path}")


@app.command()
@handle_errors
def push(force: ForceOpt = False, config: ConfigOpt = None, output: OutputOpt = Format.text) -> None:
    """Copy the local state file to the S3 state (stack.state), under its lock."""
    from s3tstream.aws.client import Aws
    from s3tstream.errors import StateError
    from s3tstream.state import LocalBackend, parse_doc

    out = Output(output)
    cfg = load_config(config)
    remote = _remote(cfg, Aws(cfg))
    local = LocalBackend(cfg.state_path)
    data = local.read()
    if data is None:
        raise StateError(f"there is no local state at {cfg.state_path}", "nothing to push; nothing was changed")
    parse_doc(data, str(cfg.state_path), cfg.stack.name, cfg.stack.region)
    local.lock(cfg.stack.name, "state push")
    try:
        remote.lock(cfg.stack.name, "state push")
        try:
            have = remote.read()  # sets the ETag the write is conditional on
            if have is not None and have != data and not force:
                raise StateError(f"{remote.where} already holds a state of stack {cfg.stack.name}",
                                 "pass --force to replace it (or `s3tstream state pull` to use it); nothing was changed")
            remote.write(data)
        finally:
            remote.unlock()
    finally:
        local.unlock()
    doc = {"from": str(cfg.state_path), "to": remote.where, "bytes": len(data)}
    out.json(doc) if out.is_json else out.line(
        f"pushed {cfg.state_path} -> {remote.where}; commands now use it (the local file is no longer read)")


@app.command()
@handle_errors
def unlock(yes: YesOpt = False, config: ConfigOpt = None, output: OutputOpt = Format.text) -> None:
    """Break the S3 state's lock left by a run that died (names the holder first)."""
    from s3tstream.aws.client import Aws
    from s3tstream.errors import UsageError
    from s3tstream.state import describe_holder

    out = Output(output)
    cfg = load_config(config)
    remote = _remote(cfg, Aws(cfg))
    holder, etag = remote.holder()
    if etag is None:
        out.json({"unlocked": False, "holder": None}) if out.is_json else out.line("the state is not locked")
        return
    who = describe_holder(holder)
    if not yes:
        if out.is_json:
            raise UsageError(f"the state is locked by {who}", "pass --yes to break the lock with --output json")
        out.warn(f"the state {remote.where} is locked by {who}")
        if not typer.confirm("Break the lock? Only do this when that run is no longer running", default=False):
            raise typer.Exit(1)
    removed = remote.break_lock()
    out.json({"unlocked": removed is not None, "holder": removed}) if out.is_json else out.line(
        f"lock of {who} removed" if removed is not None else "the state is not locked")


@app.command()
@handle_errors
def recover(config: ConfigOpt = None, output: OutputOpt = Format.text) -> None:
    """Rebuild a lost state from the live resources tagged with this stack (read calls only)."""
    from s3tstream.provision.recover import recover as run

    out = Output(output)
    stack = open_stack(config, out, "state recover")
    try:
        rows = run(stack.ctx())
    finally:
        stack.close()
    if out.is_json:
        out.json({"state": stack.state.where, "resources": rows})
        return
    out.table("recovered", ["step", "kind", "name", "action", "detail"],
              [[r["step"], r["kind"], r["name"], r["action"], r["detail"]] for r in rows])
    out.line(f"state rebuilt in {stack.state.where}: {sum(r['action'] in ('owned', 'adopted') for r in rows)} resources; "
             "`s3tstream status` shows them, `s3tstream down` removes the owned ones")
