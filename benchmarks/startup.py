"""CLI start-up: `s3tstream --help` and every `s3tstream <command> --help` against `aws --version`.

Targets (issue 18): `--help` at most 0.4x, any `<command> --help` at most 0.5x the time of
`aws --version` (the AWS CLI, a Python program doing little more than importing itself).
Measured as alternating pairs in one run (aws, then s3tstream, then s3tstream, then aws, ...),
so a loaded machine slows both alike; each figure is the median of the pairs' ratios.

The AWS CLI: $S3TSTREAM_BENCH_AWS, else `aws` on PATH (a pyenv shim resolved to the real script,
so the shim's own start-up is not counted), else installed into a temporary venv with pip.
Also prints the slowest imports of `s3tstream query --help` (python -X importtime).

Run: PYTHONPATH=src .venv/bin/python benchmarks/startup.py [PAIRS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET = 0.4
COMMAND_HELP_TARGET = 0.5


def find_aws(tmp: Path) -> list[str]:
    if os.environ.get("S3TSTREAM_BENCH_AWS"):
        return [os.environ["S3TSTREAM_BENCH_AWS"]]
    path = shutil.which("aws")
    if path and "/shims/" in path:
        real = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True)
        path = real.stdout.strip() if real.returncode == 0 and real.stdout.strip() else None
    if path and subprocess.run([path, "--version"], capture_output=True).returncode == 0:
        return [path]
    venv = tmp / "awscli"
    print(f"installing awscli into {venv} (pip)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=True)
    return [str(venv / "bin" / "aws")]


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def ratio(ours: list[str], theirs: list[str], pairs: int) -> tuple[float, float, float]:
    """Median of per-pair ratios, with the median times (s) of each side."""
    wall(ours), wall(theirs)  # warm the file cache
    rs, a, b = [], [], []
    for i in range(pairs):
        if i % 2:
            x = wall(ours)
            y = wall(theirs)
        else:
            y = wall(theirs)
            x = wall(ours)
        rs.append(x / y)
        a.append(x)
        b.append(y)
    return statistics.median(rs), statistics.median(a), statistics.median(b)


def command_paths() -> list[list[str]]:
    import typer

    from s3tstream.cli.app import app

    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            out.append([*path, name])
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return out


def slowest_imports(argv: list[str], n: int = 6) -> list[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "s3tstream", *argv], capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cum, name = line.split("|")
            if cum.strip().isdigit():
                rows.append((int(cum), name.rstrip()))
    return [f"{us / 1000:7.1f} ms {name}" for us, name in sorted(rows, reverse=True)[:n]]


def main() -> None:
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    ours = [sys.executable, "-m", "s3tstream"]
    with tempfile.TemporaryDirectory() as tmp:
        aws = find_aws(Path(tmp)) + ["--version"]
        print(f"machine: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.1f}; {pairs} alternating pairs each; "
              f"baseline: {' '.join(aws)}")
        r, mine, base = ratio([*ours, "--help"], aws, pairs)
        print(f"s3tstream --help{'':26} {mine * 1000:7.1f} ms vs {base * 1000:7.1f} ms  {r:.2f}x (target <= {HELP_TARGET})")
        worst = (0.0, "")
        for path in command_paths():
            r2, mine, base = ratio([*ours, *path, "--help"], aws, max(3, pairs // 3))
            label = f"s3tstream {' '.join(path)} --help"
            print(f"{label:42} {mine * 1000:7.1f} ms vs {base * 1000:7.1f} ms  {r2:.2f}x")
            worst = max(worst, (r2, label))
        print(f"\n--help: {r:.2f}x ({'met' if r <= HELP_TARGET else 'MISSED'}); slowest command help: {worst[1]} "
              f"{worst[0]:.2f}x ({'met' if worst[0] <= COMMAND_HELP_TARGET else 'MISSED'} <= {COMMAND_HELP_TARGET})")
    print("\nslowest imports of `s3tstream query --help` (cumulative, python -X importtime):")
    for line in slowest_imports(["query", "--help"]):
        print(" ", line)


if __name__ == "__main__":
    main()
