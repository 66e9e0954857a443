"""The few errors the CLI knows how to report, each with an exit code and a hint.

Exit codes (design.md): 0 success, 1 an AWS or runtime failure, 2 bad usage, config or
state, 130 interrupted.
"""

from __future__ import annotations

import threading

# Set on Ctrl-C (cli.common installs the handler). Only the main thread sees KeyboardInterrupt:
# waits and AWS calls in worker threads (up's parallel steps, parallel scans) check this flag and
# stop with Interrupted, so one Ctrl-C stops every thread within a poll slice.
CANCEL = threading.Event()


class S3tError(Exception):
    """Base error: a message saying what failed and why, and a hint saying what to do next."""

    exit_code = 1
    code = "error"

    def __init__(self, message: str, hint: str = "", *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class UsageError(S3tError):
    """Bad usage, config or state: nothing was changed in AWS."""

    exit_code = 2
    code = "usage"


class ConfigError(UsageError):
    code = "config"

    def __init__(self, problems: list[tuple[str, str]], source: str = "", hint: str = "") -> None:
        self.problems = problems
        lines = [f"{key}: {msg}" if key else msg for key, msg in problems]
        where = f" in {source}" if source else ""
        super().__init__(
            f"invalid configuration{where}:\n  " + "\n  ".join(lines),
            hint or "fix the keys named above; config.example.toml documents every key",
        )


class StateError(UsageError):
    code = "state"


class LockedError(UsageError):
    code = "locked"


class PlanError(UsageError):
    """A step cannot run yet, or a resource conflicts with the config."""

    code = "plan"


class AwsError(S3tError):
    """An AWS call failed after retries."""

    code = "aws"


class WaitTimeout(S3tError):
    code = "timeout"


class Interrupted(S3tError):
    exit_code = 130
    code = "interrupted"


def raise_if_cancelled(doing: str) -> None:
    if CANCEL.is_set():
        raise Interrupted(f"interrupted while {doing}")
