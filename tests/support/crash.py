"""Kill a CLI run right after its k-th mutating AWS call, with no cleanup.

    python -c "from tests.support.crash import run; run(3, ['up'])"

``run`` patches ``s3tstream.aws.client.Aws.client`` (in this process only) so that every client it
builds gets a botocore ``after-call`` handler; the handler counts calls whose operation is
mutating (``s3tstream.aws.client.is_mutating``) and, on the k-th, calls ``os._exit(CRASH_EXIT)``: no
finally blocks, no atexit, no lock release, no flush; the state file is left exactly as the
product last wrote it. ``after-call`` fires once per operation, after botocore's retries, so
the k-th call has had its effect in AWS (or failed for good) when the process dies.

With ``S3TSTREAM_CRASH_LOG=<path>`` each mutating call is appended to that file as
``<n> <service>:<Operation> <http status>`` as it completes (unbuffered writes, so the lines
survive the kill). k = 0 never kills: a clean run that only logs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

CRASH_EXIT = 86
ENV_LOG = "S3TSTREAM_CRASH_LOG"
# "pause" instead of dying: the run stops (holding its lock) until killed; for lock tests.
ENV_ACTION = "S3TSTREAM_CRASH_ACTION"


def parse_point(point: int | str) -> tuple[int, str | None]:
    """3 -> (3, None): the 3rd mutating call. "s3:CreateBucket" or "s3:CreateBucket#2" ->
    (1 or 2, "s3:CreateBucket"): the n-th call of that operation, whatever ran before it."""
    if isinstance(point, int) or str(point).isdigit():
        return int(point), None
    op, _, nth = str(point).partition("#")
    return int(nth or 1), op


class CrashHook:
    def __init__(self, point: int | str, log_path: str | None = None, action: str = "exit") -> None:
        self.k, self.op = parse_point(point)
        self.action = action
        self.n = 0
        self.of_op = 0
        self._lock = threading.Lock()
        self._fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) if log_path else None

    def after_call(self, http_response: Any = None, model: Any = None, **_: Any) -> None:
        from s3tstream.aws.client import is_mutating

        if model is None or not is_mutating(model.name):
            return
        with self._lock:  # steps run in threads: one count, one kill
            self.n += 1
            if self._fd is not None:
                status = getattr(http_response, "status_code", "?")
                svc = model.service_model.service_name
                os.write(self._fd, f"{self.n} {svc}:{model.name} {status}\n".encode())
            name = f"{model.service_model.service_name}:{model.name}"
            if self.op is not None:
                if name == self.op:
                    self.of_op += 1
                    if self.of_op >= self.k:
                        self._stop()
            elif self.k and self.n >= self.k:
                self._stop()

    def _stop(self) -> None:
        if self.action == "pause":
            while True:  # hold everything (the lock included) until killed
                time.sleep(3600)
        os._exit(CRASH_EXIT)

    def install(self) -> None:
        from s3tstream.aws import client as aws

        original = aws.Aws.client
        hook = self

        def client(self: Any, service: str) -> Any:
            c = original(self, service)
            if not getattr(c, "_s3tstream_crash_hook", False):
                c.meta.events.register("after-call.*.*", hook.after_call)
                c._s3tstream_crash_hook = True
            return c

        aws.Aws.client = client  # type: ignore[method-assign]


def run(k: int | str, argv: list[str]) -> None:
    """Run the CLI with argv, dying right after the k-th mutating AWS call (k=0: never; see
    parse_point for "service:Operation#n")."""
    CrashHook(k, os.environ.get(ENV_LOG), os.environ.get(ENV_ACTION, "exit")).install()
    from s3tstream.cli.app import app

    sys.argv = ["s3tstream", *argv]
    app(args=list(argv), prog_name="s3tstream")


if __name__ == "__main__":  # python -m tests.support.crash K ARG...
    run(sys.argv[1], sys.argv[2:])
