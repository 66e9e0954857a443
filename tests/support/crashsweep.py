"""Crash-resume sweep: kill `up` (or `down`) right after its k-th mutating AWS call, run it
again, and check that the result is the same as a clean run's.

For one stack against a sandbox endpoint:

1. reference (after a warm-up up + down): a clean `up` in a subprocess (counting its mutating
   calls, N_up), the inventory of every service (tests.support.inventory), a clean `down`
   (N_down calls) that must leave nothing of the stack; the account-wide things afterwards are
   the baseline. Each run uses a stack name of its own; inventories compare with it replaced.
2. up point k: `up` killed after its k-th mutating call (os._exit, no cleanup); the state file
   must still be readable; `up` again must succeed and give the reference inventory exactly;
   a third `up` must make no mutating call; `down` must then leave nothing and an empty state.
3. down point k: a clean `up`, then `down` killed after its k-th mutating call; `down` again
   must succeed and leave nothing of the stack and an empty state.

The killed runs are subprocesses (`python -m tests.support.crash`); the resuming runs go
through the real CLI in this process (Typer's CliRunner), which is faster and counts calls in
s3tstream.aws.client.CALLS.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.support.crash import CRASH_EXIT, ENV_LOG
from tests.support.inventory import diff, inventory, leftovers, scrub

# Full pipeline on the sandbox; a sort key, point-in-time recovery, longer retention and a few
# typed columns so that creates which take several calls are crossed by crash points too.
RICH_CONFIG = """\
[source]
partition_key = {{ name = "pk", type = "S" }}
sort_key = {{ name = "sk", type = "N" }}
point_in_time_recovery = true
[stream]
retention_hours = 48
[table]
columns = [
  {{ name = "pk", type = "string", required = true }},
  {{ name = "sk", type = "long", required = true }},
  {{ name = "amount", type = "decimal(12,2)" }},
  {{ name = "at", type = "timestamp" }},
]
[lakeformation]
integrate = true
make_caller_admin = true
"""


def config_text(name: str, endpoint_url: str, extra: str = RICH_CONFIG, max_attempts: int = 3) -> str:
    return (
        f'[stack]\nname = "{name}"\nendpoint_url = "{endpoint_url}"\n'
        f"poll_interval = 0.01\nwait_timeout = 30\nmax_attempts = {max_attempts}\n" + extra.format()
    )


@dataclass
class Point:
    phase: str  # up | down
    k: int | str
    op: str = ""  # the call the run died after
    ok: bool = True
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, msg: str) -> None:
        self.ok = False
        self.problems.append(msg)

    def __str__(self) -> str:
        head = f"{self.phase} killed after call {self.k} ({self.op or '?'}): {'ok' if self.ok else 'FAILED'}"
        return head + "".join(f"\n    {p}" for p in self.problems)


@dataclass
class Report:
    up_calls: list[str] = field(default_factory=list)
    down_calls: list[str] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    reference_problems: list[str] = field(default_factory=list)

    @property
    def survived(self) -> int:
        return sum(1 for p in self.points if p.ok)

    @property
    def ok(self) -> bool:
        return not self.reference_problems and self.survived == len(self.points)

    def summary(self) -> str:
        return f"crash points survived: {self.survived}/{len(self.points)}"


class CrashSweep:
    def __init__(self, endpoint_url: str, workdir: Path, stack: str, extra: str = RICH_CONFIG,
                 progress: Callable[[str], None] = lambda m: None) -> None:
        """stack: the base name; each run uses a stack of its own (<stack>-ref, <stack>-p1, ...),
        so that nothing a run leaves (or the emulator remembers about a deleted name) can make
        the next one look right. Inventories are compared with the stack name replaced."""
        self.endpoint_url = endpoint_url
        self.root = Path(workdir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.base = stack
        self.extra = extra
        self.progress = progress
        self.reference: dict[str, Any] | None = None
        self.baseline_shared: dict[str, Any] | None = None
        self.report = Report()
        self._n = 0
        self.use(f"{stack}-ref")

    def use(self, name: str) -> None:
        """Point at a new stack (its own directory, config and state file)."""
        self.stack = name
        self.dir = self.root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.dir / "s3tstream.toml"
        self.config_path.write_text(config_text(name, self.endpoint_url, self.extra), encoding="utf-8")
        self.state_path = self.dir / ".s3tstream" / f"{name}.json"

    def next_stack(self) -> None:
        self._n += 1
        self.use(f"{self.base}-p{self._n}")

    # ------------------------------------------------------------------ running
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(S3TSTREAM_CONFIG=str(self.config_path), AWS_ACCESS_KEY_ID=env.get("AWS_ACCESS_KEY_ID", "testing"),
                   AWS_SECRET_ACCESS_KEY=env.get("AWS_SECRET_ACCESS_KEY", "testing"),
                   AWS_DEFAULT_REGION=env.get("AWS_DEFAULT_REGION", "us-east-1"))
        return env

    def killed(self, k: int | str, *argv: str) -> tuple[int, list[str], str]:
        """Run the CLI in a subprocess that dies after call k; (exit code, mutating calls, stderr)."""
        log = self.dir / f"calls-{os.getpid()}.log"
        log.unlink(missing_ok=True)
        env = {**self.env(), ENV_LOG: str(log)}
        r = subprocess.run([sys.executable, "-m", "tests.support.crash", str(k), *argv], env=env,
                           capture_output=True, text=True, timeout=300)
        calls = [line.split()[1] for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return r.returncode, calls, r.stderr

    def cli(self, *args: str) -> tuple[int, str, list[str]]:
        """The real CLI in this process: (exit code, output, mutating calls it made)."""
        from typer.testing import CliRunner

        from s3tstream.aws.client import CALLS, is_mutating
        from s3tstream.cli.app import app

        before = len(CALLS.calls)
        r = CliRunner().invoke(app, list(args), env={"S3TSTREAM_CONFIG": str(self.config_path)})
        made = [c for c in CALLS.calls[before:] if is_mutating(c.split(":", 1)[1])]
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            import traceback

            return 99, r.output + "".join(traceback.format_exception(r.exception)), made
        return r.exit_code, r.output, made

    def inventory(self) -> dict[str, Any]:
        """This stack's inventory with its name replaced by <stack> (comparable across stacks)."""
        inv = inventory(self.endpoint_url, self.stack)
        text = json.dumps(inv, sort_keys=True, default=str)
        # derived names use the stack name as is, or with "-" as "_" (namespace, table)
        text = text.replace(self.stack, "<stack>").replace(self.stack.replace("-", "_"), "<stack>")
        # the stack id is made at each stack's first `up`: compared as present, not by value
        text = re.sub(r'("s3tstream:stack-id": )"[0-9a-f]+"', r'\1"<stack-id>"', text)
        return json.loads(text)

    def state_problems(self, empty: bool = False) -> list[str]:
        """The state file must always be readable, of this stack (and empty after `down`)."""
        if not self.state_path.exists():
            return []
        try:
            doc = json.loads(self.state_path.read_text())
        except ValueError as e:
            return [f"state file unreadable after the kill: {e}"]
        out = []
        if doc.get("stack") != self.stack:
            out.append(f"state file names stack {doc.get('stack')!r}")
        if empty and doc.get("resources"):
            out.append("state still records " + ", ".join(f"{r['kind']} {r['name']}" for r in doc["resources"]))
        return out

    def check_clean(self, point: Point | None, what: str) -> list[str]:
        inv = self.inventory()
        problems = [f"{what}: left {x}" for x in diff({}, leftovers(inv))]
        if self.baseline_shared is not None and inv["shared"] != self.baseline_shared:
            problems += [f"{what}: account-wide {x}" for x in diff(self.baseline_shared, inv["shared"])]
        problems += [f"{what}: {x}" for x in self.state_problems(empty=True)]
        if point is not None:
            for p in problems:
                point.fail(p)
        return problems

    def reset(self) -> None:
        """After a failed point: delete what is left directly and forget the state, so that the
        next point starts from the same place as the reference run."""
        scrub(self.endpoint_url, self.stack, self.baseline_shared)
        self.state_path.unlink(missing_ok=True)
        if self.baseline_shared is not None and self.inventory()["shared"] != self.baseline_shared:
            self.progress("warning: account-wide state differs from the baseline after the scrub")

    # ------------------------------------------------------------------ the sweep
    def _without_integration(self) -> None:
        """Start from an account without the S3 Tables integration, so that the runs make it (the
        RegisterResource point): `down` keeps one it did not make (adopted, shared)."""
        import boto3

        kw = {"region_name": "us-east-1", "endpoint_url": self.endpoint_url}
        glue, lf = boto3.client("glue", **kw), boto3.client("lakeformation", **kw)
        try:
            glue.delete_catalog(CatalogId="s3tablescatalog")
        except glue.exceptions.EntityNotFoundException:
            pass
        for r in lf.list_resources().get("ResourceInfoList", []):
            if r["ResourceArn"].startswith("arn:aws:s3tables:") and r["ResourceArn"].endswith(":bucket/*"):
                lf.deregister_resource(ResourceArn=r["ResourceArn"])

    def run_reference(self) -> None:
        """A warm-up up + down first: the first `up` in an account also makes the caller a Lake
        Formation admin, which `down` leaves (on purpose), so later runs make one call fewer;
        the reference is a run in that steady state."""
        rep = self.report
        self._without_integration()
        self.use(f"{self.base}-warm")
        for args in (("up",), ("down", "--yes", "--purge-errors", "--include-shared")):
            code, out, _ = self.cli(*args)
            if code != 0:
                raise RuntimeError(f"warm-up {args[0]} failed ({code}):\n{out[-3000:]}")
        self.use(f"{self.base}-ref")
        code, calls, err = self.killed(0, "up")
        if code != 0:
            raise RuntimeError(f"clean up failed ({code}):\n{err[-3000:]}")
        rep.up_calls = calls
        self.reference = self.inventory()
        code, calls, err = self.killed(0, "down", "--yes", "--purge-errors", "--include-shared")
        if code != 0:
            raise RuntimeError(f"clean down failed ({code}):\n{err[-3000:]}")
        rep.down_calls = calls
        inv = self.inventory()
        rep.reference_problems += [f"clean down left {x}" for x in diff({}, leftovers(inv))]
        self.baseline_shared = inv["shared"]
        self.progress(f"reference: up makes {len(rep.up_calls)} mutating calls, down {len(rep.down_calls)}")

    def up_point(self, k: int | str, *, idempotent_check: bool = True) -> Point:
        self.next_stack()
        p = Point("up", k)
        t0 = time.monotonic()
        code, calls, err = self.killed(k, "up")
        p.op = calls[-1] if calls else ""
        if code != CRASH_EXIT:
            p.fail(f"the killed run exited {code}, not {CRASH_EXIT} (made {len(calls)} calls):\n{err[-1500:]}")
        for s in self.state_problems():
            p.fail(s)
        code, out, _ = self.cli("up")
        if code != 0:
            p.fail(f"resumed up exited {code}:\n{out[-2500:]}")
        else:
            assert self.reference is not None
            got = self.inventory()
            for d in diff(self.reference, got):
                p.fail(f"after resume: {d}")
            if idempotent_check:
                code, out, made = self.cli("up")
                if code != 0 or made:
                    p.fail(f"up after the resume exited {code} making {made}")
        code, out, _ = self.cli("down", "--yes", "--purge-errors", "--include-shared")
        if code != 0:
            p.fail(f"down after the resume exited {code}:\n{out[-2500:]}")
        self.check_clean(p, "down after the resume")
        if not p.ok:
            self.reset()
        p.seconds = time.monotonic() - t0
        return p

    def down_point(self, k: int | str) -> Point:
        self.next_stack()
        p = Point("down", k)
        t0 = time.monotonic()
        code, out, _ = self.cli("up")
        if code != 0:
            p.fail(f"up before the killed down exited {code}:\n{out[-2500:]}")
            p.seconds = time.monotonic() - t0
            return p
        code, calls, err = self.killed(k, "down", "--yes", "--purge-errors", "--include-shared")
        p.op = calls[-1] if calls else ""
        if code != CRASH_EXIT:
            p.fail(f"the killed down exited {code}, not {CRASH_EXIT} (made {len(calls)} calls):\n{err[-1500:]}")
        for s in self.state_problems():
            p.fail(s)
        code, out, _ = self.cli("down", "--yes", "--purge-errors", "--include-shared")
        if code != 0:
            p.fail(f"down run again exited {code}:\n{out[-2500:]}")
        self.check_clean(p, "down run again")
        if not p.ok:
            self.reset()
        p.seconds = time.monotonic() - t0
        return p

    def sweep(self, up_points: list[int | str] | None = None, down_points: list[int | str] | None = None) -> Report:
        """Every k of a full up and down unless given; the reference runs first."""
        if self.reference is None:
            self.run_reference()
        rep = self.report
        ups = up_points if up_points is not None else list(range(1, len(rep.up_calls) + 1))
        downs = down_points if down_points is not None else list(range(1, len(rep.down_calls) + 1))
        for k in ups:
            pt = self.up_point(k)
            rep.points.append(pt)
            self.progress(str(pt) + f" [{pt.seconds:.1f}s]")
        for k in downs:
            pt = self.down_point(k)
            rep.points.append(pt)
            self.progress(str(pt) + f" [{pt.seconds:.1f}s]")
        return rep
