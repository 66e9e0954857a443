"""What survives AWS's delivery model: 10,000 changes through a sandbox in chaos delivery.

The sandbox's Firehose delivers the way AWS may (``--delivery chaos``, sandbox/dataplane/chaos.py):
it duplicates a share of the records, holds some back past newer flushes and writes each flush as
one merge-on-read commit (equality deletes never remove a row of their own commit). The workload
is bursts of updates and deletes to few keys (the case that hurts), written straight into
DynamoDB; every ~1,000 changes the Firehose buffer is flushed.

For each run the script prints:
- wrong rows in the lake after delivery, counted against a DynamoDB scan by reading the lake
  with ``query --engine local`` (merge-on-read applied): duplicates (extra rows of a key),
  stale (the key's row is not the item's latest state), resurrected (a row for a deleted item),
  lost (an item without a row);
- what ``verify`` reports (missing, extra, differing, duplicates; exit code);
- the same after ``verify --repair`` and a drain, where 0 wrong is expected; the repair's own
  records go through chaos delivery too, so it is repeated (at most 3 rounds) while verify still
  finds differences, and the number of rounds is printed.

Two runs in one process, same seed and workload: with the transform's batch collapse (the
default: the latest change per key of each Lambda batch) and with it switched off (the deployed
Lambda's settings get ``<flag> = false``; ``--collapse-flag`` names the setting, default
``collapse_per_key``). A transform without that setting has no collapse: the script says so and
runs once.

Run: .venv/bin/python benchmarks/chaos.py [--changes 10000] [--keys 200] [--seed 7]
(exit 1 when the lake is not clean after the repair). About 3 minutes for both runs on 2 shared cores.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH", "")) if p)

for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
             # time scale 1 with a 900 s buffer: the worker never flushes on its own, the script
             # flushes every ~1,000 changes (deterministic buffers for a given seed)
             "S3TSTREAM_SANDBOX_TIME_SCALE": "1"}.items():
    os.environ[k] = v
os.environ.pop("AWS_PROFILE", None)

def one(srv: Any, tmp: Path, ops: list[tuple[str, str, int]], collapse: bool, flag: str,
        flush_every: int) -> tuple[bool, dict[str, Any]]:
    from tests.support.chaos import Run, bad, describe, describe_verify

    name = "c" + uuid.uuid4().hex[:6]
    run = Run(srv.endpoint_url, tmp / name, name)
    try:
        run.must("up")
        state = run.collapse(flag, collapse)
        label = {True: "collapse on", False: "collapse off", None: f"no '{flag}' setting in the transform"}[state]
        t0 = time.monotonic()
        run.apply(ops, flush_every)
        delivered = time.monotonic() - t0
        after = run.wrong()
        print(f"[{label}] {len(ops)} changes delivered in {delivered:.1f}s")
        print(f"  after delivery:       {describe(after)}")
        print(f"  verify:               {describe_verify(*run.verify())}")
        rounds = run.repair()
        for n, r in enumerate(rounds, 1):
            print(f"  verify --repair #{n}:   sent {r['sent']} record(s) -> {describe(r['wrong'])}; "
                  f"verify {describe_verify(*r['verify'])}")
        clean = bad(rounds[-1]["wrong"] if rounds else after) == 0
        return clean, {"state": state, "after": after, "rounds": rounds}
    finally:
        run.cli("down", "--yes", "--purge-errors")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--changes", type=int, default=10_000)
    ap.add_argument("--keys", type=int, default=200, help="key space the bursts draw from")
    ap.add_argument("--seed", type=int, default=7, help="workload and chaos seed")
    ap.add_argument("--flush-every", type=int, default=1_000, help="changes per Firehose flush")
    ap.add_argument("--collapse-flag", default="collapse_per_key",
                    help="the transform setting that switches the batch collapse (issue 19 item 1)")
    args = ap.parse_args()

    from s3tstream.sandbox.server import SandboxServer
    from tests.support.chaos import bad, workload

    ops = workload(random.Random(args.seed), args.changes, args.keys)
    print(f"workload: {len(ops)} changes ({sum(1 for o in ops if o[0] == 'delete')} deletes) to "
          f"{len({o[1] for o in ops})} keys in bursts; chaos seed {args.seed}; a flush every {args.flush_every}")
    ok = True
    results = []
    with SandboxServer(port=0, delivery="chaos", seed=args.seed) as srv, \
            tempfile.TemporaryDirectory(prefix="s3t-chaos-") as tmp:
        for collapse in (True, False):
            clean, res = one(srv, Path(tmp), ops, collapse, args.collapse_flag, args.flush_every)
            ok &= clean
            results.append(res)
            if res["state"] is None:
                break
    if len(results) == 2:
        on, off = bad(results[0]["after"]), bad(results[1]["after"])
        print(f"the batch collapse: {on} wrong rows after delivery with it, {off} without "
              f"({'%.1fx fewer' % (off / on) if on else 'none left'} with it)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
