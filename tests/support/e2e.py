"""End to end on the sandbox: N items through the whole pipeline under a mix of inserts,
updates, deletes and re-inserts, then `verify` must find 0 missing, 0 extra, 0 different.

Writes go through the product (`put-item --file`, BatchWriteItem); deletes through a plain
DynamoDB client (the tool has no delete command); the sandbox turns each change into a
Kinesis change record, its Firehose data plane runs the real transform Lambda and writes
Iceberg with PyIceberg; `verify` compares the table with the lake.

Rounds (keys chosen with a seeded RNG):
1. insert every key;
2. update 30% of the keys (a tenth of them twice) and delete 20% (some of them just updated);
3. re-insert a quarter of the deleted keys with new values.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

COLUMNS = ", ".join([
    '{ name = "pk", type = "string", required = true }',
    '{ name = "sk", type = "long", required = true }',
    '{ name = "amount", type = "decimal(12,2)" }',
    '{ name = "qty", type = "long" }',
    '{ name = "note", type = "string" }',
    '{ name = "ok", type = "boolean" }',
    '{ name = "at", type = "timestamp" }',
    '{ name = "tags", type = "list<string>" }',
])
CONFIG = """\
[stack]
name = "{name}"
endpoint_url = "{url}"
poll_interval = 0.01
wait_timeout = 60
max_attempts = 8
[source]
sort_key = {{ name = "sk", type = "N" }}
[table]
columns = [{columns}]
[firehose]
buffer_interval_seconds = 0
[lakeformation]
integrate = true
make_caller_admin = true
"""


@dataclass
class E2EResult:
    items: int
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    reinserts: int = 0
    expected_rows: int = 0
    verify: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        c = self.verify.get("counts", {})
        return bool(self.verify.get("ok")) and c.get("missing") == 0 and c.get("extra") == 0 \
            and c.get("differing") == 0 and c.get("lake_rows") == self.expected_rows

    def summary(self) -> str:
        c = self.verify.get("counts", {})
        return (f"{self.items} keys: {self.inserts} inserts, {self.updates} updates, {self.deletes} deletes, "
                f"{self.reinserts} re-inserts -> verify: {c.get('missing')} lost, {c.get('extra')} extra, "
                f"{c.get('differing')} different, {c.get('lake_rows')} rows (expected {self.expected_rows})")


def _item(rng: random.Random, pk: str, sk: int, version: int) -> dict[str, Any]:
    return {
        "pk": pk, "sk": sk,
        "amount": Decimal(rng.randint(-10**8, 10**8)) / 100,
        "qty": rng.randint(-2**40, 2**40),
        "note": f"v{version} " + "".join(rng.choice("abcdefghij ü€") for _ in range(rng.randint(0, 20))),
        "ok": rng.random() < 0.5,
        "at": f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T0{rng.randint(0, 9)}:00:00.{rng.randint(0, 999999):06d}Z",
        "tags": [f"t{rng.randint(0, 9)}" for _ in range(rng.randint(0, 3))],
    }


def _jsonl(items: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(i, default=str) + "\n" for i in items)


def run(endpoint_url: str, workdir: Path, name: str, n: int, *, seed: int = 7,
        cli: Callable[..., tuple[int, str]], progress: Callable[[str], None] = lambda m: None) -> E2EResult:
    """cli(config_path, *args) -> (exit code, stdout) runs the real CLI."""
    import boto3

    from s3tstream.sandbox import client as sandbox_client

    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "s3tstream.toml"
    cfg.write_text(CONFIG.format(name=name, url=endpoint_url, columns=COLUMNS), encoding="utf-8")
    res = E2EResult(items=n)
    ddb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint_url)

    def step(what: str, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        out = fn()
        res.timings[what] = res.timings.get(what, 0.0) + time.monotonic() - t0
        progress(f"{what}: {res.timings[what]:.1f}s")
        return out

    def must(code_out: tuple[int, str], what: str) -> str:
        code, out = code_out
        if code != 0:
            raise RuntimeError(f"{what} exited {code}:\n{out[-3000:]}")
        return out

    def put(items: list[dict[str, Any]], what: str) -> None:
        f = workdir / f"{what}.jsonl"
        f.write_text(_jsonl(items), encoding="utf-8")
        must(cli(cfg, "put-item", "--file", str(f), "--output", "json"), f"put-item ({what})")

    def delete(keys: list[tuple[str, int]]) -> None:
        for i in range(0, len(keys), 25):
            reqs = [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"N": str(sk)}}}} for pk, sk in keys[i:i + 25]]
            left = {name: reqs}
            while left:
                left = ddb.batch_write_item(RequestItems=left).get("UnprocessedItems") or {}

    def drain() -> None:
        sandbox_client.firehose_wait_drained(endpoint_url, f"{name}-to-lake", timeout=max(60.0, n / 20))

    step("up", lambda: must(cli(cfg, "up"), "up"))
    keys = [(f"k{i:06d}-{rng.randint(0, 10**6)}", rng.randint(-10**9, 10**9)) for i in range(n)]
    live: dict[tuple[str, int], int] = {}

    # round 1: inserts
    step("insert", lambda: put([_item(rng, pk, sk, 1) for pk, sk in keys], "inserts"))
    res.inserts = len(keys)
    live.update({k: 1 for k in keys})

    # round 2: updates (some twice) and deletes, interleaved in chunks
    shuffled = keys[:]
    rng.shuffle(shuffled)
    upd = shuffled[: int(n * 0.3)]
    twice = upd[: max(1, len(upd) // 10)]
    dels = shuffled[int(n * 0.25): int(n * 0.45)]  # overlaps the updated keys on purpose
    chunk = max(1, n // 10)

    def round2() -> None:
        for i in range(0, max(len(upd), len(dels)), chunk):
            u = upd[i:i + chunk]
            if u:
                put([_item(rng, pk, sk, 2) for pk, sk in u], "updates")
                res.updates += len(u)
            d = dels[i:i + chunk]
            if d:
                delete(d)
                res.deletes += len(d)
        put([_item(rng, pk, sk, 3) for pk, sk in twice], "updates-again")
        res.updates += len(twice)

    step("update+delete", round2)
    for k in dels:
        live.pop(k, None)

    # round 3: re-insert a quarter of the deleted keys
    back = dels[: len(dels) // 4]
    step("re-insert", lambda: put([_item(rng, pk, sk, 4) for pk, sk in back], "reinserts"))
    res.reinserts = len(back)
    live.update({k: 4 for k in back})
    res.expected_rows = len(live)

    step("drain", drain)
    out = step("verify", lambda: cli(cfg, "verify", "--output", "json"))
    res.verify = json.loads(out[1]) if out[1].strip().startswith("{") else {"error": out[1][-2000:]}
    return res


def in_process_cli(config_path: Path, *args: str) -> tuple[int, str]:
    """The real CLI through Typer's CliRunner in this process."""
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    r = CliRunner().invoke(app, list(args), env={"S3TSTREAM_CONFIG": str(config_path)})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout if "--output" in args else r.output
