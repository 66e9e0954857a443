"""`s3tstream up` against the sandbox's realistic latency: wall time against the critical path.

The sandbox (``latency="realistic"``) makes resources take AWS-like times to become ready
(``s3tstream.sandbox.latency.REALISTIC_SECONDS``). The floor is the longest dependency chain of
those waits through the engine's graph: no `up` can beat it. "Before" is the floor of the
step-level graph (each step waits for the steps it ``requires`` in ``provision.catalog``);
"after" the floor of the lanes the engine runs (``engine.lanes``: the Kinesis stream beside the
source table, create-firehose's error bucket, logs and transform at once).
The benchmark prints the wall time of a real `up` (the CLI, in process), both floors, the ratio
wall/floor (target <= 1.15), and the ratio a strictly sequential `up` (one step at a time) would give.
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

# What each lane of a provisioning step waits for under the realistic profile, in order: the keys
# of latency.REALISTIC_SECONDS its resources' creates poll through (steps/*.py). A step the
# engine runs as one lane is "<step>#all". grant-lf's new Firehose role becomes assumable by
# Firehose iam.role.propagation after grant-lf makes it: a lower bound on when create-firehose
# can create the stream, so it counts as grant-lf's time.
LANE_WAITS: dict[str, tuple[str, ...]] = {
    "create-source#all": ("dynamodb.table.create",),
    # the stream and its encryption (stream.encryption defaults to true), then the table's destination
    "create-stream#stream": ("kinesis.stream.create", "kinesis.stream.update"),
    "create-stream#destination": ("dynamodb.kinesis_destination.enable",),
    "create-table-bucket#all": (),
    "set-metadata#all": (),
    "grant-lf#all": ("iam.role.propagation",),
    "create-firehose#error-bucket": (),
    "create-firehose#logs": (),
    "create-firehose#transform": (),
    "create-firehose#stream": ("firehose.delivery_stream.create",),
}


def lane_graph(endpoint: str) -> dict[str, tuple[str, ...]]:
    """The engine's lanes for a stack on this endpoint: lane key -> what it needs."""
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import load
    from s3tstream.provision import engine
    from s3tstream.provision.resource import Ctx
    from s3tstream.state import StateStore

    with tempfile.TemporaryDirectory() as d:
        path, _ = write_config(Path(d), endpoint, 1.0)
        cfg = load(path, environ={})
        ctx = Ctx(cfg, Aws(cfg), StateStore(cfg.state_path, cfg.stack.name, cfg.stack.region))
        graph = {ln.key: ln.needs for info in engine.built_steps() for ln in engine.lanes(ctx, info)}
    if set(graph) != set(LANE_WAITS):
        sys.exit(f"LANE_WAITS names {sorted(LANE_WAITS)}, the engine runs {sorted(graph)}: update the benchmark")
    return graph


def lane_seconds(scale: float) -> dict[str, float]:
    from s3tstream.sandbox import latency

    return {k: sum(latency.delay("realistic", w, scale) or 0.0 for w in ws) for k, ws in LANE_WAITS.items()}


def step_seconds(lanes: dict[str, float]) -> dict[str, float]:
    """A step run as one unit waits for all its lanes in turn."""
    out: dict[str, float] = {}
    for key, s in lanes.items():
        out[key.split("#")[0]] = out.get(key.split("#")[0], 0.0) + s
    return out


def longest(seconds: dict[str, float], needs: dict[str, tuple[str, ...]]) -> tuple[float, list[str]]:
    """Longest chain through `needs` (a need naming a step means all its nodes): (length, nodes)."""
    memo: dict[str, tuple[float, list[str]]] = {}

    def expand(need: str) -> list[str]:
        return [need] if need in seconds else [k for k in seconds if k.split("#")[0] == need]

    def finish(name: str) -> tuple[float, list[str]]:
        if name not in memo:
            before = max((finish(n) for need in needs.get(name, ()) for n in expand(need)), default=(0.0, []),
                         key=lambda x: x[0])
            memo[name] = (before[0] + seconds[name], [*before[1], name])
        return memo[name]

    return max((finish(n) for n in seconds), key=lambda x: x[0])


def floors(scale: float, graph: dict[str, tuple[str, ...]]) -> tuple[tuple[float, list[str]], tuple[float, list[str]]]:
    """(before: the step-level graph of the catalog's requires, after: the engine's lanes)."""
    from s3tstream.provision.catalog import BY_NAME

    lanes = lane_seconds(scale)
    steps = step_seconds(lanes)
    before = longest(steps, {s: BY_NAME[s].requires for s in steps})
    return before, longest(lanes, graph)


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
    """One `up` through the CLI in process: (wall seconds, lane -> (start, end) offsets; with
    detail, each resource's too)."""
    from typer.testing import CliRunner

    from s3tstream.provision import engine
    from s3tstream.cli.app import app

    spans: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()
    orig_lane, orig_apply, orig_resource = engine.apply_lane, engine.apply, engine.apply_resource
    t0 = 0.0

    def timed_resource(ctx: Any, info: Any, spec: Any) -> Any:
        start = time.perf_counter() - t0
        try:
            return orig_resource(ctx, info, spec)
        finally:
            with lock:
                spans[f"  {info.name}: {spec.kind} {spec.name}"] = (start, time.perf_counter() - t0)

    def timed_lane(ctx: Any, lane: Any) -> Any:
        start = time.perf_counter() - t0
        try:
            return orig_lane(ctx, lane)
        finally:
            with lock:
                spans[lane.key] = (start, time.perf_counter() - t0)

    engine.apply_lane = timed_lane  # type: ignore[assignment]
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
        engine.apply_lane, engine.apply, engine.apply_resource = orig_lane, orig_apply, orig_resource  # type: ignore[assignment]
    if r.exit_code != 0:
        sys.exit(f"up failed (exit {r.exit_code}):\n{r.output}")
    return wall, spans


def show_spans(spans: dict[str, tuple[float, float]], seconds: dict[str, float]) -> None:
    for name, (a, b) in sorted(spans.items(), key=lambda kv: (kv[1][0], kv[0].startswith(" "))):
        waits = f"; modelled waits {seconds[name]:5.2f} s" if name in seconds else ""
        print(f"    {name:30s} {a:6.2f} -> {b:6.2f} s  ({b - a:5.2f} s{waits})")


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
    seconds = lane_seconds(args.scale)
    sequential = sum(seconds.values())

    instant = None
    with SandboxServer(latency="instant") as sb:
        (before, before_chain), (floor, chain) = floors(args.scale, lane_graph(sb.endpoint_url))
        print(f"scale {args.scale} (realistic delays x{args.scale}), stack.poll_interval {poll:g} s")
        print(f"floor before (step graph) {before:.2f} s = {' -> '.join(before_chain)}")
        print(f"floor after (lanes)       {floor:.2f} s = {' -> '.join(chain)}; strictly sequential {sequential:.2f} s")
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
    print(f"floor before (step graph):              {before:6.2f} s  (x{1 / args.scale:g} = {before / args.scale:.0f} s on AWS)")
    print(f"floor after (lanes):                    {floor:6.2f} s  (x{1 / args.scale:g} = {floor / args.scale:.0f} s on AWS)")
    verdict = "meets" if wall / floor <= TARGET else "MISSES"
    print(f"ratio wall/floor:                       {wall / floor:6.2f}   (target <= {TARGET}: {verdict})")
    print(f"ratio a strictly sequential up gives:   {sequential / floor:6.2f}   (sum of waits {sequential:.2f} s / floor)")
    if seq_wall is not None:
        print(f"sequential up measured:                 {seq_wall:6.2f} s  (ratio {seq_wall / floor:.2f})")
        show_spans(seq_spans, seconds)


if __name__ == "__main__":
    main()
