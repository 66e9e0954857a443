"""A chaos-delivery run on the sandbox through the real CLI (benchmarks/chaos.py and the chaos tests).

``workload`` makes bursts of updates and deletes to few keys; ``Run`` deploys a stack (`up`),
writes the changes straight into DynamoDB (BatchWriteItem, order kept), flushes the sandbox's Firehose every N changes,
counts the lake's wrong rows against a DynamoDB scan (read with `query --engine local`, so
merge-on-read deletes are applied) and runs `verify` / `verify --repair`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

WRONG = ("duplicates", "stale", "resurrected", "lost")


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
        self._settle: bool | None = None  # whether `verify` has --settle

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
        """Write ``ops`` in order, flushing Firehose after every ``flush_every`` of them. Runs of
        ops on distinct keys go in one BatchWriteItem (applied in list order, so the change
        records keep the ops' order); a key seen again starts the next batch."""
        table = self.cfg.names.source_table
        for start in range(0, len(ops), flush_every):
            batch: list[dict[str, Any]] = []
            keys: set[str] = set()
            for op, pk, n in ops[start:start + flush_every]:
                if pk in keys or len(batch) == 25:
                    self._write(table, batch)
                    batch, keys = [], set()
                keys.add(pk)
                batch.append({"PutRequest": {"Item": {"pk": {"S": pk}, "n": {"N": str(n)}, "note": {"S": f"v{n}"}}}}
                             if op == "put" else {"DeleteRequest": {"Key": {"pk": {"S": pk}}}})
            self._write(table, batch)
            self.drain()

    def _write(self, table: str, requests: list[dict[str, Any]]) -> None:
        left = {table: requests} if requests else {}
        while left:
            left = self.ddb.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}

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
            "duplicates": sum(c - 1 for c in per_key.values()),  # rows beyond the first of a key
            "stale": sum(1 for pk in per_key if pk in source and pk not in current),
            "resurrected": sum(1 for pk in per_key if pk not in source),
            "lost": sum(1 for pk in source if pk not in per_key),
            "rows": len(rows),
            "items": len(source),
        }

    def verify(self, *extra: str) -> tuple[int, dict[str, Any]]:
        # the 900 s buffer is flushed by hand: a verify that waits out the deployed buffering
        # before it reports (issue 14, `--settle`) must not wait here
        if self._settle is None:
            self._settle = "--settle" in self.cli("verify", "--help")[1]
        code, out = self.cli("verify", "--output", "json", *(("--settle", "0") if self._settle else ()), *extra)
        try:
            return code, json.loads(out)
        except ValueError:
            return code, {"error": out[-2000:]}

    def repair(self, rounds: int = REPAIR_ROUNDS) -> list[dict[str, Any]]:
        """`verify --repair`, drain, count, `verify`; again while verify still finds differences
        (a repair delivered in chaos can itself be duplicated). One dict per round."""
        out: list[dict[str, Any]] = []
        for _ in range(rounds):
            code, doc = self.verify("--repair")
            if code == 0:
                break
            self.drain()
            wrong = self.wrong()
            vcode, vdoc = self.verify()
            out.append({"sent": (doc.get("repair") or {}).get("sent", 0), "wrong": wrong, "verify": (vcode, vdoc)})
            if vcode == 0:
                break
        return out


def bad(w: dict[str, int]) -> int:
    return sum(w[k] for k in WRONG)


def describe(w: dict[str, int]) -> str:
    return (f"{bad(w)} wrong ({w['duplicates']} duplicate rows, {w['stale']} stale, {w['resurrected']} resurrected, "
            f"{w['lost']} lost; {w['rows']} rows for {w['items']} items)")


def describe_verify(code: int, doc: dict[str, Any]) -> str:
    c = doc.get("counts") or {}
    if not c:
        return f"exit {code}: {str(doc.get('error', doc))[:300]}"
    return (f"exit {code}: {c.get('missing')} missing, {c.get('extra')} extra, {c.get('differing')} differing, "
            f"{c.get('duplicates')} duplicate key(s)")
