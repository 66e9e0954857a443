"""10,000 keys end to end on the sandbox (in-process): inserts, updates (some twice), deletes and
re-inserts through DynamoDB -> Kinesis -> Firehose (the real transform) -> Iceberg, then
`verify` must report 0 lost, 0 extra, 0 different. A 1,000-key run in the same process is the
baseline: prints each phase's time and the 10k/1k ratio (10.0x would be linear).

Run: .venv/bin/python benchmarks/e2e_10k.py [N]   (exit 1 when verify is not clean)
"""

from __future__ import annotations

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


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    from s3tstream.sandbox.server import SandboxServer
    from tests.support import e2e

    ok = True
    results = {}
    with SandboxServer(port=0) as srv, tempfile.TemporaryDirectory(prefix="s3t-e2e-") as tmp:
        for size in (1_000, n):
            name = "e" + uuid.uuid4().hex[:6]
            t0 = time.monotonic()
            try:
                res = e2e.run(srv.endpoint_url, Path(tmp) / name, name, size, cli=e2e.in_process_cli)
            finally:
                e2e.in_process_cli(Path(tmp) / name / "s3tstream.toml", "down", "--yes", "--purge-errors")
            res.timings["total"] = time.monotonic() - t0
            results[size] = res
            print(f"{res.summary()}: {'OK' if res.ok else 'NOT CLEAN'}")
            print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()))
            ok &= res.ok
    base, big = results[1_000], results[n]
    print(f"{n} vs 1000 keys: total {big.timings['total'] / base.timings['total']:.2f}x "
          f"(pipeline without up: {(big.timings['total'] - big.timings['up']) / (base.timings['total'] - base.timings['up']):.2f}x)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
