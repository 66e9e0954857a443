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
(exit 1 when the lake is not clean after the repair). About a minute per run on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
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

CONFIG = """\
[stack]
name = "{name}"
endpoint_url = "{url}"
poll_interval = 0.01
wait_timeout = 60
max_attempts = 8
[table]
columns = [{{ name = "pk", type = "string", required = true }}, {{ name = "n", type = "long" }},
           {{ name = "note", type = "string" }}]
[firehose]
buffer_interval_seconds = 900
[lakeformation]
integrate = true
make_caller_admin = true
"""


REPAIR_ROUNDS = 3


def workload(rng: random.Random, changes: int, keys: int) -> list[tuple[str, str, int]]:
    """[(op put|delete, pk, n)]: bursts of 5-40 changes to 1-4 keys; a delete only of a live key."""
    live: set[str] = set()
    out: list[tuple[str, str, int]] = []
    version = 0
    while len(out) < changes:
        hot = [f"k{rng.randrange(keys):05d}" for _ in range(rng.randint(1, 4))]
        for _ in range(min(rng.randint(5, 40), changes - len(out))):
            pk = rng.choice(hot)
            version += 1
            if pk in live and rng.random() < 0.3:
                out.append(("delete", pk, version))
                live.discard(pk)
            else:
                out.append(("put", pk, version))
                live.add(pk)
    return out


class Run:
    def __init__(self, endpoint: str, workdir: Path, name: str) -> None:
        import boto3

        from s3tstream.config.model import load
        from tests.support.e2e import in_process_cli

        self.endpoint, self.name = endpoint, name
        workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_path = workdir / "s3tstream.toml"
        self.cfg_path.write_text(CONFIG.format(name=name, url=endpoint), encoding="utf-8")
        self.cfg = load(self.cfg_path)
        self.cli = lambda *a: in_process_cli(self.cfg_path, *a)
        self.ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
        self.lam = boto3.client("lambda", region_name="us-east-1", endpoint_url=endpoint)

    def must(self, *args: str) -> str:
        code, out = self.cli(*args)
        if code != 0:
            raise RuntimeError(f"s3tstream {' '.join(args)} exited {code}:\n{out[-3000:]}")
        return out

    def collapse(self, flag: str, on: bool) -> bool | None:
        """Set the deployed transform's ``flag``; None when the transform has no such setting."""
        from s3tstream.transform import encode_settings, load_settings
        from s3tstream.transform.settings import ENV_SETTINGS, ENV_SETTINGS_Z

        fn = self.cfg.names.transform_function
        env = self.lam.get_function_configuration(FunctionName=fn).get("Environment", {}).get("Variables", {})
        doc = load_settings(env).to_dict()
        if flag not in doc:
            return None
        doc[flag] = on
        rest = {k: v for k, v in env.items() if k not in (ENV_SETTINGS, ENV_SETTINGS_Z)}
        self.lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {**rest, **encode_settings(doc)}})
        return on

    def drain(self) -> dict[str, Any]:
        from s3tstream.sandbox import client as sbc

        return sbc.firehose_wait_drained(self.endpoint, self.cfg.names.firehose, timeout=300)[0]

    def apply(self, ops: list[tuple[str, str, int]], flush_every: int) -> None:
        table = self.cfg.names.source_table
        for i, (op, pk, n) in enumerate(ops, 1):
            if op == "put":
                self.ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "n": {"N": str(n)}, "note": {"S": f"v{n}"}})
            else:
                self.ddb.delete_item(TableName=table, Key={"pk": {"S": pk}})
            if i % flush_every == 0:
                self.drain()
        self.drain()

    def wrong(self) -> dict[str, int]:
        """Rows of the lake that are not the source's latest state, by kind."""
        source: dict[str, int] = {}
        for page in self.ddb.get_paginator("scan").paginate(TableName=self.cfg.names.source_table):
            for it in page["Items"]:
                source[it["pk"]["S"]] = int(it["n"]["N"])
        out = self.must("query", "--engine", "local", "--output", "json",
                        f'SELECT pk, n FROM "{self.cfg.names.table}"')
        rows = json.loads(out)["rows"]
        per_key = Counter(r["pk"] for r in rows)
        current = {r["pk"] for r in rows if r["pk"] in source and r["n"] == source[r["pk"]]}
        return {
            "duplicates": sum(c - 1 for c in per_key.values()),
            "stale": sum(1 for pk in per_key if pk in source and pk not in current),
            "resurrected": sum(1 for pk in per_key if pk not in source),
            "lost": sum(1 for pk in source if pk not in per_key),
            "rows": len(rows),
            "items": len(source),
        }

    def verify(self, *extra: str) -> tuple[int, dict[str, Any]]:
        code, out = self.cli("verify", "--output", "json", *extra)
        try:
            return code, json.loads(out)
        except ValueError:
            return code, {"error": out[-2000:]}


def _fmt(w: dict[str, int]) -> str:
    bad = w["duplicates"] + w["stale"] + w["resurrected"] + w["lost"]
    return (f"{bad} wrong ({w['duplicates']} duplicate rows, {w['stale']} stale, {w['resurrected']} resurrected, "
            f"{w['lost']} lost; {w['rows']} rows for {w['items']} items)")


def _vfmt(code: int, doc: dict[str, Any]) -> str:
    c = doc.get("counts") or {}
    if not c:
        return f"exit {code}: {str(doc.get('error', doc))[:300]}"
    return (f"exit {code}: {c.get('missing')} missing, {c.get('extra')} extra, {c.get('differing')} differing, "
            f"{c.get('duplicates')} duplicate key(s)")


def one(srv: Any, tmp: Path, ops: list[tuple[str, str, int]], collapse: bool | None, flag: str,
        flush_every: int) -> tuple[bool, dict[str, Any]]:
    name = "c" + uuid.uuid4().hex[:6]
    run = Run(srv.endpoint_url, tmp / name, name)
    t0 = time.monotonic()
    try:
        run.must("up")
        state = run.collapse(flag, collapse) if collapse is not None else None
        label = {True: "collapse on", False: "collapse off", None: f"no '{flag}' setting in the transform"}[state]
        t1 = time.monotonic()
        run.apply(ops, flush_every)
        delivered = time.monotonic() - t1
        after = run.wrong()
        vcode, vdoc = run.verify()
        print(f"[{label}] {len(ops)} changes delivered in {delivered:.1f}s")
        print(f"  after delivery:       {_fmt(after)}")
        print(f"  verify:               {_vfmt(vcode, vdoc)}")
        rounds = []
        for _ in range(REPAIR_ROUNDS):  # a repair delivered in chaos can itself be duplicated
            rcode, rdoc = run.verify("--repair")
            if rcode == 0:
                break
            run.drain()
            repaired = run.wrong()
            fcode, fdoc = run.verify()
            rounds.append(repaired)
            print(f"  verify --repair #{len(rounds)}:   sent {(rdoc.get('repair') or {}).get('sent', 0)} record(s) "
                  f"-> {_fmt(repaired)}; verify {_vfmt(fcode, fdoc)}")
            if fcode == 0:
                break
        last = rounds[-1] if rounds else after
        clean = sum(last[k] for k in ("duplicates", "stale", "resurrected", "lost")) == 0
        return clean, {"state": state, "after": after, "rounds": rounds, "seconds": time.monotonic() - t0}
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
        def bad(r: dict[str, Any]) -> int:
            return sum(r["after"][k] for k in ("duplicates", "stale", "resurrected", "lost"))

        on, off = bad(results[0]), bad(results[1])
        print(f"the batch collapse: {on} wrong rows after delivery with it, {off} without "
              f"({'%.1fx fewer' % (off / on) if on else 'none left'} with it)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
