"""`s3tstream demo`: the whole pipeline on a local sandbox, driven through the real CLI.

Starts a sandbox in the background, writes a demo config, then runs the same commands a
user would type (`step create-source`, `put-item`, `up`, `backfill`, `test-insert`, `query`,
`verify`, `health`, `down`), echoing each
one, so the demo doubles as a tour. Nothing here talks to AWS.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from s3tstream.errors import S3tError

DEMO_STACK = "demo"

CONFIG = """\
# Written by `s3tstream demo`: a stack on the local sandbox.
[stack]
name = "{stack}"
region = "us-east-1"
endpoint_url = "{endpoint}"
poll_interval = 0.2
wait_timeout = 120

# Two tables, one pipeline: an upsert table mirroring the orders, and a changelog of events
# (one row per change). They share the Kinesis stream, the Firehose stream and the Lambda.
[[tables]]
[tables.source]
table = "demo-orders"
partition_key = {{ name = "order_id", type = "S" }}
[tables.table]
namespace = "shop"
name = "orders"
mode = "upsert"
extra_column = "extra"
columns = [
  {{ name = "order_id", type = "string", required = true }},
  {{ name = "customer", type = "string" }},
  {{ name = "amount", type = "decimal(12,2)" }},
  {{ name = "quantity", type = "long" }},
  {{ name = "created_at", type = "timestamptz", source = "createdAt" }},
  {{ name = "shipped", type = "boolean" }},
  {{ name = "tags", type = "list<string>" }},
  {{ name = "address", type = "struct<city:string,zip:string>" }},
  {{ name = "marker", type = "string" }},
]

[[tables]]
[tables.source]
table = "demo-events"
partition_key = {{ name = "event_id", type = "N" }}
[tables.table]
name = "events"
mode = "changelog"
columns = [
  {{ name = "event_id", type = "long", required = true }},
  {{ name = "customer", type = "string" }},
  {{ name = "kind", type = "string" }},
]

[firehose]
# the sandbox runs Firehose's buffers 15x faster (S3TSTREAM_SANDBOX_TIME_SCALE)
buffer_interval_seconds = 15

[lakeformation]
integrate = true
make_caller_admin = true
"""

CUSTOMERS = ["ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances"]
CITIES = [("Lisbon", "1100"), ("Oslo", "0150"), ("Kyoto", "600-8001"), ("Quito", "170150")]


def demo_items(n: int) -> list[dict]:
    """Deterministic plain-JSON items that exercise every column type."""
    out = []
    for i in range(n):
        city, zip_ = CITIES[i % len(CITIES)]
        out.append({
            "order_id": f"order-{i:04d}",
            "customer": CUSTOMERS[i % len(CUSTOMERS)],
            "amount": f"{(i * 7919) % 100000 / 100:.2f}",
            "quantity": 1 + i % 9,
            "createdAt": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00Z",
            "shipped": i % 3 == 0,
            "tags": sorted({"demo", ["red", "green", "blue"][i % 3]}),
            "address": {"city": city, "zip": zip_},
        })
        if i % 10 == 0:
            out[-1]["coupon"] = f"C{i}"  # no column for it: kept in the catch-all `extra`
    return out


@dataclass
class Demo:
    dir: Path
    keep: bool = False
    items: int = 100
    say: Callable[[str], None] = print
    run_cli: Callable[[list[str]], int] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.dir / "s3tstream.toml"

    @property
    def home(self) -> Path:
        return self.dir / ".s3tstream"

    def step(self, title: str, args: list[str], *, allow_fail: bool = False) -> int:
        from rich.markup import escape

        self.say(f"\n[bold]== {escape(title)}[/bold]\n[dim]$ s3tstream {escape(' '.join(args))}[/dim]")
        t = time.monotonic()
        assert self.run_cli is not None
        code = self.run_cli([*args, "--config", str(self.config_path)])
        self.timings[title] = time.monotonic() - t
        if code != 0 and not allow_fail:
            raise S3tError(
                f"demo step failed: s3tstream {' '.join(args)} exited {code}",
                f"the sandbox log is {self.home / 'sandbox.log'}; `s3tstream demo --keep` leaves everything to inspect",
            )
        return code

    def run(self) -> None:
        from s3tstream.sandbox import control

        start = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.say("[bold]== starting the sandbox[/bold] (a local AWS endpoint: moto plus what moto lacks)")
        info = control.start(self.home, port=0)
        self.say(f"sandbox at {info['endpoint_url']} (pid {info['pid']})")
        try:
            self.config_path.write_text(CONFIG.format(stack=DEMO_STACK, endpoint=info["endpoint_url"]), encoding="utf-8")
            items = self.dir / "items.jsonl"
            items.write_text("".join(json.dumps(i) + "\n" for i in demo_items(self.items)), encoding="utf-8")
            self.say(f"wrote {self.config_path} and {items} ({self.items} items)")
            self.step("create the DynamoDB tables (the sources: orders and events)", ["step", "create-source"])
            self.step(f"put {self.items} orders into one, before any stream exists",
                      ["put-item", "--table", "orders", "--file", str(items)])
            self.step("provision the rest of the pipeline (one stream, one Firehose stream for both tables)", ["up"])
            self.step(f"backfill: bring the {self.items} orders that predate the stream into the lake",
                      ["backfill", "--table", "orders"])
            for n, (who, kind) in enumerate([("ada", "signup"), ("grace", "signup"), ("ada", "login")]):
                self.step(f"an event into the changelog table ({kind})",
                          ["put-item", "--table", "events", "--item",
                           json.dumps({"event_id": 1 + n % 2, "customer": who, "kind": kind})])
            self.step("insert, update and delete more orders, and follow them into the lake",
                      ["test-insert", "--table", "orders", "--count", "20", "--updates", "5", "--deletes", "5"])
            self.step("query the orders (upsert: one row per order) with Athena",
                      ["query", "SELECT order_id, customer, amount, quantity, created_at, tags, address.city AS city, extra "
                                "FROM orders WHERE order_id LIKE 'order-%' ORDER BY order_id LIMIT 8"])
            self.step("query the events (changelog: one row per change, event 1 twice; test-insert waited for them)",
                      ["query", "SELECT event_id, customer, kind, _op FROM events ORDER BY _event_time"])
            self.step("compare every source table with its lake table", ["verify"])
            self.step("is the pipeline healthy? (CloudWatch metrics, error bucket, table)", ["health"])
        finally:
            if self.keep:
                self.say(self.explore_hint(info["endpoint_url"]))
            else:
                try:
                    self.step("tear everything down", ["down", "--yes", "--include-shared"], allow_fail=True)
                finally:
                    control.stop(self.home)
                    self.say("sandbox stopped")
        self.timings["total"] = time.monotonic() - start
        self.say(f"\n[bold green]demo done[/bold green] in {self.timings['total']:.1f}s")

    def explore_hint(self, endpoint: str) -> str:
        """Lines that work when pasted into a shell, from any folder (tests/test_demo.py runs them)."""
        from rich.markup import escape

        c = f"--config {self.config_path.resolve()}"
        lines = [
            f"s3tstream status {c}",
            f"s3tstream query {c} \"SELECT count(*) FROM orders\"",
            f"s3tstream put-item {c} --table orders --item '{{\"order_id\": \"mine\", \"amount\": \"1.23\"}}'",
            f"s3tstream verify {c}",
            "export AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox AWS_DEFAULT_REGION=us-east-1",
            f"aws --endpoint-url {endpoint} dynamodb scan --table-name demo-orders --max-items 3",
            f"aws --endpoint-url {endpoint} firehose describe-delivery-stream --delivery-stream-name demo-to-lake",
        ]
        return (
            "\n[bold]Everything is still running.[/bold] Explore it (s3tstream uses the sandbox's dummy credentials "
            "by itself; the aws CLI needs the export line):\n"
            + "".join(f"  {escape(x)}\n" for x in lines)
            + escape(f"When done: s3tstream down --yes {c} && s3tstream sandbox stop --home {self.home.resolve()}")
        )
