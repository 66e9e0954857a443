"""`s3tstream --help` start-up time against `python -c pass` and `python -c "import boto3"`,
measured in the same run (best of N wall times; a ratio, not an absolute figure).

The CLI imports boto3 lazily, so --help should cost far less than importing boto3.
Run: .venv/bin/python benchmarks/startup.py [N]
"""

from __future__ import annotations

import subprocess
import sys
import time


def best(cmd: list[str], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    py = sys.executable
    base = best([py, "-c", "pass"], n)
    boto = best([py, "-c", "import boto3"], n)
    helpt = best([py, "-m", "s3tstream", "--help"], n)
    leaked = subprocess.run(
        [py, "-c", "import sys; sys.argv=['s3tstream','--help']\n"
                   "try:\n from s3tstream.cli.app import main; main()\nexcept SystemExit: pass\n"
                   "print('boto3' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True,
    ).stderr.strip().splitlines()[-1]
    print(f"python -c pass        {base * 1000:7.1f} ms  (1.00x)")
    print(f"python -c import boto3 {boto * 1000:7.1f} ms  ({boto / base:.2f}x)")
    print(f"s3tstream --help      {helpt * 1000:7.1f} ms  ({helpt / base:.2f}x)")
    print(f"--help / import boto3: {helpt / boto:.2f}x   boto3 imported by --help: {leaked}")


if __name__ == "__main__":
    main()
