"""Crash-resume sweep over every crash point of a full `up` and `down`, and a run under 20%
transient faults; against an in-process sandbox.

Sweep: for every k, `up` is killed (os._exit, no cleanup) right after its k-th mutating AWS
call, then run again; the resources must equal a clean run's (every service listed), a third
`up` must change nothing and `down` must leave nothing. The same for `down` killed at every k
(then `down` again). Prints each point, "crash points survived: n/n", and the time per point
against a clean up + down measured in the same run.

Faults: `up`, `test-insert` and `down` with a seeded 20% of the product's calls failing with
throttling / 5xx errors and botocore's real backoff (standard mode, stack.max_attempts = 8);
prints the retries and the time against the same commands without faults.

Run: .venv/bin/python benchmarks/crash_resume.py [--only sweep|faults] [--points up:1,5,9 down:2]
Exit 1 when a crash point fails or the fault run fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

# the harness lives in tests/support (not shipped): import it, and let subprocesses import it, from the root
ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)

for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "S3TSTREAM_SANDBOX_TIME_SCALE": "0"}.items():
    os.environ[k] = v
os.environ.pop("AWS_PROFILE", None)


def sweep(endpoint_url: str, root: Path, ups: list[int] | None, downs: list[int] | None) -> bool:
    from tests.support.crashsweep import CrashSweep

    sw = CrashSweep(endpoint_url, root / "sweep", "b" + uuid.uuid4().hex[:5], progress=lambda m: print(m, flush=True))
    t0 = time.monotonic()
    sw.run_reference()
    clean = time.monotonic() - t0
    rep = sw.sweep(ups, downs)
    total = time.monotonic() - t0
    n_up = sum(1 for p in rep.points if p.phase == "up")
    per = [p.seconds for p in rep.points]
    print()
    for p in rep.points:
        if not p.ok:
            print(f"FAILED {p}")
    print(f"up: {len(rep.up_calls)} mutating calls, down: {len(rep.down_calls)}; points: {n_up} up, {len(rep.points) - n_up} down")
    print(f"clean up + down (baseline): {clean:.1f}s; per crash point: mean {sum(per) / max(1, len(per)):.1f}s "
          f"({sum(per) / max(1, len(per)) / clean:.2f}x), max {max(per, default=0):.1f}s")
    print(f"sweep took {total:.0f}s")
    print(rep.summary())
    return rep.ok


def faults(endpoint_url: str, root: Path, rate: float = 0.2, seed: int = 20240917) -> bool:
    from s3tstream.sandbox import client as sandbox_client
    from tests.support.e2e import in_process_cli

    cols = '{ name = "pk", type = "string", required = true }, { name = "note", type = "string" }'

    def run(tag: str, with_faults: bool) -> tuple[bool, dict, dict]:
        name = f"f{tag}" + uuid.uuid4().hex[:5]
        d = root / name
        d.mkdir(parents=True)
        cfg = d / "s3tstream.toml"
        cfg.write_text(f'[stack]\nname = "{name}"\nendpoint_url = "{endpoint_url}"\npoll_interval = 0.05\n'
                       f"wait_timeout = 120\nmax_attempts = 8\n[table]\ncolumns = [{cols}]\n"
                       "[firehose]\nbuffer_interval_seconds = 0\n[lakeformation]\nintegrate = true\nmake_caller_admin = true\n")
        if with_faults:
            sandbox_client.inject_random_faults(endpoint_url, rate, seed=seed)
        times, ok = {}, True
        try:
            for what, args in (("up", ["up"]), ("test-insert", ["test-insert", "--count", "20", "--interval", "0.05",
                                                                  "--timeout", "120", "--engine", "athena"]),
                               ("down", ["down", "--yes", "--purge-errors"])):
                t0 = time.monotonic()
                code, out = in_process_cli(cfg, *args)
                times[what] = time.monotonic() - t0
                if code != 0:
                    ok = False
                    print(f"{what} under faults={with_faults} exited {code}:\n{out[-2000:]}")
                    break
        finally:
            status = sandbox_client.stop_random_faults(endpoint_url) if with_faults else {}
            sandbox_client.clear_faults(endpoint_url)
        return ok, times, status or {}

    ok0, base, _ = run("b", False)
    ok1, hit, status = run("x", True)
    print(f"faults: seeded {rate:.0%} (seed {seed}) of the product's calls: {status.get('injected')} of "
          f"{status.get('seen')} calls failed and were retried by botocore")
    print(f"  by error: {status.get('by_code')}")
    for what in base:
        if what in hit:
            print(f"  {what:12s} {base[what]:6.1f}s without faults, {hit[what]:6.1f}s with ({hit[what] / base[what]:.2f}x)")
    print(f"fault run: {'up, test-insert and down succeeded' if ok0 and ok1 else 'FAILED'}")
    return ok0 and ok1


def _points(spec: list[str] | None) -> tuple[list[int] | None, list[int] | None]:
    if not spec:
        return None, None
    ups: list[int] = []
    downs: list[int] = []
    for s in spec:
        phase, _, ks = s.partition(":")
        (ups if phase == "up" else downs).extend(int(k) for k in ks.split(",") if k)
    return ups, downs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["sweep", "faults"])
    ap.add_argument("--points", nargs="*", help="up:1,2,3 down:4 (default: every k)")
    a = ap.parse_args()
    from s3tstream.sandbox.server import SandboxServer

    ok = True
    with SandboxServer(port=0) as srv, tempfile.TemporaryDirectory(prefix="s3t-crash-") as tmp:
        if a.only in (None, "sweep"):
            ups, downs = _points(a.points)
            ok &= sweep(srv.endpoint_url, Path(tmp), ups, downs)
        if a.only in (None, "faults"):
            ok &= faults(srv.endpoint_url, Path(tmp))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
