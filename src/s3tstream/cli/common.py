"""What every command shares: the --config/--output options, error handling, opening a stack."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Iterator, Optional, TypeVar

import typer

from s3tstream.cli.output import Format, Output

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore
    from s3tstream.provision.resource import Ctx

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", envvar="S3TSTREAM_CONFIG", help="Config file (default ./s3tstream.toml).", show_default=False),
]
OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="text, or json (one JSON document on stdout).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
EngineOpt = Annotated[
    Optional[str],
    typer.Option("--engine", help="athena (default from athena.engine) or local (PyIceberg + DuckDB).", show_default=False),
]
TableOpt = Annotated[
    Optional[str],
    typer.Option("--table", "-t", help="The lake table (table.name) to work on; optional when the config has one table.",
                 show_default=False),
]
ALL_TABLES = "\0all"  # open_stack(table=...): the whole stack, not one table

F = TypeVar("F", bound=Callable[..., Any])


RESUMES = "run the command again: it resumes where it stopped"
READ_ONLY = "nothing was changed; run the command again"


def handle_errors(fn: F | None = None, *, interrupted: str = RESUMES) -> Any:
    """Turn our errors into a message, a hint and an exit code (1 AWS/runtime, 2 usage, 130 Ctrl-C).

    `interrupted` is the Ctrl-C hint, true for the command (some resume, some start over)."""
    if fn is None:
        return lambda f: handle_errors(f, interrupted=interrupted)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from s3tstream.errors import S3tError

        out = Output(kwargs.get("output") or Format.text)
        try:
            with _cancel_on_ctrl_c():
                return fn(*args, **kwargs)
        except S3tError as e:
            hint = interrupted if e.exit_code == 130 and e.hint in ("", RESUMES) else e.hint
            out.fail(e.code, e.message, hint, e.exit_code)
        except KeyboardInterrupt:
            out.fail("interrupted", "interrupted", interrupted, 130)
        except Exception as e:
            if type(e).__module__.startswith("s3tstream.sandbox"):
                from s3tstream.sandbox.control import SandboxError

                if isinstance(e, SandboxError):  # its message says why and what to do (a taken port...)
                    out.fail("sandbox", str(e), "", 1)
            if not type(e).__module__.startswith("botocore"):
                raise
            # an AWS error no layer below translated: still one message, never a traceback
            from s3tstream.aws.client import translate

            err = translate(e, "calling AWS")  # type: ignore[arg-type]
            out.fail(err.code, err.message, err.hint, err.exit_code)

    return wrapper


@contextlib.contextmanager
def _cancel_on_ctrl_c() -> Iterator[None]:
    """Ctrl-C sets errors.CANCEL (worker threads' waits and AWS calls stop) and raises
    KeyboardInterrupt in the main thread as usual. Restored afterwards (the demo and the tests
    run many commands in one process)."""
    from s3tstream.errors import CANCEL

    CANCEL.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        CANCEL.set()
        signal.default_int_handler(signum, frame)

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started in the background: leave it so
        yield
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_engine(engine: str | None) -> None:
    from s3tstream.errors import UsageError

    if engine not in (None, "athena", "local"):
        raise UsageError(f"--engine must be athena or local, not {engine!r}")


def load_config(path: Path | None) -> "Config":
    from s3tstream.config import model as config

    return config.load(path)


@dataclass
class Stack:
    cfg: "Config"
    aws: "Aws"
    state: "StateStore"
    out: Output

    def ctx(self, prefix: str = "", **options: Any) -> "Ctx":
        from s3tstream.provision.resource import Ctx

        return Ctx(self.cfg, self.aws, self.state, self.out.progress(prefix), options)

    def close(self) -> None:
        self.state.unlock()


def require_steps(state: "StateStore", command: str, steps: tuple[str, ...]) -> None:
    """Exit 2 naming the first step, in dependency order, that `steps` need and that has not run
    (from the state file: no AWS call, so nothing is created on the way to the refusal)."""
    from s3tstream.errors import PlanError
    from s3tstream.provision.catalog import BY_NAME, STEPS, closure

    needed = {n for s in steps for n in closure(s)}
    for name in (s.name for s in STEPS if s.name in needed):
        if not BY_NAME[name].provisioning:
            continue
        recs = state.by_step(name)
        if not recs or any(r.status != "present" for r in recs):
            raise PlanError(f"{command} needs the step {name}, which has not run" + ("" if recs else " yet"),
                            f"run `s3tstream up` (or `s3tstream step {name}`) first")


def open_stack(path: Path | None, out: Output, command: str, *, lock: bool = True, identity: bool = True,
               needs: tuple[str, ...] = (), table: str | None = ALL_TABLES) -> Stack:
    """Config -> state (locked) -> credentials; every check before any mutating call.

    needs: the steps that must have run (with all they need) for this command.
    table: scope the config to that lake table (`--table`; None: the only one, else exit 2)."""
    cfg = load_config(path)
    if table != ALL_TABLES:
        cfg = cfg.scoped(table)
    from s3tstream.aws.client import Aws
    from s3tstream.aws.remote_state import open_state

    aws = Aws(cfg)
    if aws.dummy_credentials:
        out.info(f"no AWS credentials configured: using the sandbox's dummy credentials for the local "
                 f"endpoint_url {cfg.stack.endpoint_url}")
    aws.check_endpoint()  # an unreachable endpoint is one clear error, before the state (maybe in S3) is read
    state = open_state(cfg, aws)  # the local file, or the S3 object of stack.state
    if needs:
        require_steps(state, command, needs)
    if lock:
        state.lock(command)
    try:
        if identity:
            ident = aws.identity()
            state.check_account(ident.account)
            if lock:
                state.set_account(ident.account)
    except BaseException:
        state.unlock()
        raise
    return Stack(cfg, aws, state, out)
