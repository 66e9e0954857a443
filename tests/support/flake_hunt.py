"""Flake hunt: run each test file N times under ``pytest -n 2`` while other processes load the
machine, and report every test that failed in any run.

    python -m tests.support.flake_hunt [--runs 20] [--load 2] [--out flake-hunt.json] [FILE ...]

--load K starts K busy processes (pure-Python loops) for the whole hunt, so timing assumptions
meet a machine slower than the tests' own. Files are run one pytest invocation each, every test
repeated --runs times (tests/support/repeat.py), so a failure names its file, test and how many
of the runs failed. Exit 1 when any test failed in any run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.M)


def _busy(stop: "multiprocessing.synchronize.Event") -> None:  # type: ignore[name-defined]
    x = 0
    while not stop.is_set():
        for i in range(100_000):
            x ^= i


def hunt_file(path: str, runs: int, timeout: float) -> dict:
    from tests.support.repeat import run_of

    cmd = [sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider", "-p", "tests.support.repeat",
           "--repeat", str(runs), path]
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        out, code = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out, code = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), "timeout"
    failed = Counter(run_of(m) for m in FAILED.findall(out))
    tail = out.strip().splitlines()[-1] if out.strip() else ""
    return {"file": path, "seconds": round(time.monotonic() - t0, 1), "exit": code, "summary": tail,
            "failed": dict(failed), "output": out[-6000:] if failed or code not in (0, 5) else ""}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="test files (default: every tests/**/test_*.py)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--load", type=int, default=2, help="busy processes beside the tests")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per file")
    ap.add_argument("--out", default="flake-hunt.json")
    a = ap.parse_args(argv)
    files = a.files or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(a.load)]
    for h in hogs:
        h.start()
    results = []
    try:
        for f in files:
            res = hunt_file(f, a.runs, a.timeout)
            results.append(res)
            flag = "FLAKY " + ", ".join(f"{t} ({n}/{a.runs})" for t, n in res["failed"].items()) if res["failed"] else "ok"
            print(f"{f}: {res['summary']} [{res['seconds']}s, load {os.getloadavg()[0]:.1f}] {flag}", flush=True)
            Path(a.out).write_text(json.dumps({"runs": a.runs, "load": a.load, "results": results}, indent=1))
    finally:
        stop.set()
        for h in hogs:
            h.join(timeout=5)
    bad = [r for r in results if r["failed"] or r["exit"] not in (0, 5)]
    print(f"{len(files)} files x {a.runs} runs, {a.load} busy processes: "
          + ("no failure" if not bad else f"{len(bad)} file(s) with failures: " + ", ".join(r["file"] for r in bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
