"""`s3tstream up` against the sandbox's realistic latency: wall time against the critical path.

The sandbox (``latency="realistic"``) makes resources take AWS-like times to become ready
(``s3tstream.sandbox.latency.REALISTIC_SECONDS``). The floor is the longest dependency chain of
those waits through the steps' ``requires`` (``s3tstream.provision.catalog``): no `up` can beat it.
The benchmark prints the wall time of a real `up` (the CLI, in process), the floor, their ratio
(target <= 1.15), and the ratio a strictly sequential `up` (one step at a time) would give.
Measured in the same run: `up` under the instant profile (what the calls themselves cost) and,
with --sequential, a real one-step-at-a-time `up` under the realistic profile.

Run: .venv/bin/python benchmarks/up_critical_path.py [--scale 0.2] [--poll 0.5] [--sequential]
(--scale multiplies every delay; --poll is stack.poll_interval before scaling.)
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing",
                  AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
os.environ.pop("AWS_PROFILE", None)

TARGET = 1.15

# What each provisioning step waits for under the realistic profile, in order: the keys of
# latency.REALISTIC_SECONDS its resources' creates poll through (steps/*.py). grant-lf's new
# Firehose role becomes assumable by Firehose iam.role.propagation after grant-lf makes it: a
# lower bound on when create-firehose can create the stream, so it counts as grant-lf's time.
STEP_WAITS: dict[str, tuple[str, ...]] = {
    "create-source": ("dynamodb.table.create",),
    # the stream, its encryption (stream.encryption defaults to true), then the table's destination
    "create-stream": ("kinesis.stream.create", "kinesis.stream.update", "dynamodb.kinesis_destination.enable"),
    "create-table-bucket": (),
    "set-metadata": (),
    "grant-lf": ("iam.role.propagation",),
    "create-firehose": ("firehose.delivery_stream.create",),
}


def step_seconds(scale: float) -> dict[str, float]:
    from s3tstream.sandbox import latency
    from s3tstream.provision.catalog import PROVISIONING

    names = {s.name for s in PROVISIONING if s.module is not None}
    if names != set(STEP_WAITS):
        sys.exit(f"STEP_WAITS names {sorted(STEP_WAITS)}, the catalog builds {sorted(names)}: update the benchmark")
    out = {}
    for step, keys in STEP_WAITS.items():
        out[step] = sum(latency.delay("realistic", k, scale) or 0.0 for k in keys)
    return out


def critical_path(seconds: dict[str, float]) -> tuple[float, list[str]]:
    """Longest chain through the catalog's requires: (its length, the steps on it)."""
    from s3tstream.provision.catalog import BY_NAME

    memo: dict[str, tuple[float, list[str]]] = {}

    def finish(name: str) -> tuple[float, list[str]]:
        if name not in memo:
            before = max((finish(r) for r in BY_NAME[name].requires if r in seconds), default=(0.0, []),
                         key=lambda x: x[0])
            memo[name] = (before[0] + seconds[name], [*before[1], name])
        return memo[name]

    return max((finish(n) for n in seconds), key=lambda x: x[0])


def write_config(directory: Path, endpoint: str, poll: float) -> tuple[Path, str]:
    name = "bench" + uuid.uuid4().hex[:8]
    path = directory / "s3tstream.toml"
    path.write_text(
        f'[stack]\nname = "{name}"\nendpoint_url = "{endpoint}"\npoll_interval = {poll}\n'
        f"wait_timeout = 900\nmax_attempts = 3\n"
        f'[table]\ncolumns = [{{ name = "pk", type = "string", required = true }}]\n'
        f"[lakeformation]\nintegrate = true\nmake_caller_admin = true\n",
        encoding="utf-8",
    )
    return path, name


def run_up(endpoint: str, poll: float, max_workers: int | None = None, detail: bool = False) -> tuple[float, dict[str, tuple[float, float]]]:
    """One `up` through the CLI in process: (wall seconds, step -> (start, end) offsets; with
    detail, each resource's too)."""
    from typer.testing import CliRunner

    from s3tstream.provision import engine
    from s3tstream.cli.app import app

    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()
    orig_step, orig_apply, orig_resource = engine.apply_step, engine.apply, engine.apply_resource
    t0 = 0.0

    def timed_resource(ctx: Any, info: Any, spec: Any) -> Any:
        start = time.perf_counter() - t0
        try:
            return orig_resource(ctx, info, spec)
        finally:
            with lock:
                spans[f"  {info.name}: {spec.kind} {spec.name}"] = (start, time.perf_counter() - t0)

    def timed_step(ctx: Any, info: Any) -> Any:
        start = time.perf_counter() - t0
        try:
            return orig_step(ctx, info)
        finally:
            with lock:
                spans[info.name] = (start, time.perf_counter() - t0)

    engine.apply_step = timed_step  # type: ignore[assignment]
    if detail:
        engine.apply_resource = timed_resource  # type: ignore[assignment]
    if max_workers is not None:
        engine.apply = functools.partial(orig_apply, max_workers=max_workers)  # type: ignore[assignment]
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg, _ = write_config(Path(d), endpoint, poll)
            t0 = time.perf_counter()
            r = CliRunner().invoke(app, ["up"], env={"S3TSTREAM_CONFIG": str(cfg)}, catch_exceptions=False)
            wall = time.perf_counter() - t0
    finally:
        engine.apply_step, engine.apply, engine.apply_resource = orig_step, orig_apply, orig_resource  # type: ignore[assignment]
    if r.exit_code != 0:
        sys.exit(f"up failed (exit {r.exit_code}):\n{r.output}")
    return wall, spans


def show_spans(spans: dict[str, tuple[float, float]], seconds: dict[str, float]) -> None:
    for name, (a, b) in sorted(spans.items(), key=lambda kv: (kv[1][0], kv[0].startswith(" "))):
        waits = f"; modelled waits {seconds[name]:5.2f} s" if name in seconds else ""
        print(f"    {name:20s} {a:6.2f} -> {b:6.2f} s  ({b - a:5.2f} s{waits})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.2, help="multiplies every realistic delay (default 0.2)")
    ap.add_argument("--poll", type=float, default=0.5, help="stack.poll_interval before scaling (default 0.5 s)")
    ap.add_argument("--sequential", action="store_true", help="also measure a one-step-at-a-time up")
    ap.add_argument("--no-baseline", action="store_true", help="skip the instant-profile up")
    ap.add_argument("--detail", action="store_true", help="also time each resource of the realistic up")
    args = ap.parse_args()

    from s3tstream.sandbox.server import SandboxServer

    poll = args.poll * args.scale
    seconds = step_seconds(args.scale)
    floor, chain = critical_path(seconds)
    sequential = sum(seconds.values())
    print(f"scale {args.scale} (realistic delays x{args.scale}), stack.poll_interval {poll:g} s")
    print(f"floor {floor:.2f} s = {' -> '.join(chain)}; strictly sequential {sequential:.2f} s")

    instant = None
    with SandboxServer(latency="instant") as sb:
        # warm-up: the first up of a process pays for imports and the transform zip
        sb.reset()
        run_up(sb.endpoint_url, poll)
        if not args.no_baseline:
            sb.reset()
            instant, _ = run_up(sb.endpoint_url, poll)
    with SandboxServer(latency="realistic", latency_scale=args.scale) as sb:
        sb.reset()
        wall, spans = run_up(sb.endpoint_url, poll, detail=args.detail)
        seq_wall = None
        if args.sequential:
            sb.reset()
            seq_wall, seq_spans = run_up(sb.endpoint_url, poll, max_workers=1)

    print("steps (realistic, concurrent):")
    show_spans(spans, seconds)
    if instant is not None:
        print(f"up, instant profile (the calls alone):  {instant:6.2f} s")
    print(f"up, realistic profile:                  {wall:6.2f} s")
    print(f"floor (longest chain of waits):         {floor:6.2f} s")
    verdict = "meets" if wall / floor <= TARGET else "MISSES"
    print(f"ratio wall/floor:                       {wall / floor:6.2f}   (target <= {TARGET}: {verdict})")
    print(f"ratio a strictly sequential up gives:   {sequential / floor:6.2f}   (sum of waits {sequential:.2f} s / floor)")
    if seq_wall is not None:
        print(f"sequential up measured:                 {seq_wall:6.2f} s  (ratio {seq_wall / floor:.2f})")
        show_spans(seq_spans, seconds)


if __name__ == "__main__":
    main()
