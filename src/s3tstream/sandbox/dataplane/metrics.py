"""The sandbox's CloudWatch metrics: what the Firehose data plane and the Lambda runner did,
published into moto's CloudWatch backend under AWS's namespaces, names, dimensions and units,
so `s3tstream health` and the alarms read real datapoints from the sandbox.

Two hooks call in: ``after_step`` (end of each delivery tick of a stream, its lock held) and
``lambda_invoked`` (every function invocation, Firehose's or Lambda Invoke's). Like AWS, a metric
gets datapoints when there is activity; an idle pipeline publishes nothing.

Names (the pages that document them):
- AWS/Firehose, DeliveryStreamName: DeliveryToIceberg.DataFreshness (Seconds),
  .IncomingRowCount, .SuccessfulRowCount, .FailedRowCount (Count)
  https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-metric.html;
  DataReadFromKinesisStream.Records (Count), KinesisMillisBehindLatest (Milliseconds)
  https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html
- AWS/Kinesis, StreamName: GetRecords.IteratorAgeMilliseconds (Milliseconds)
  https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html (moto itself
  publishes IncomingRecords and IncomingBytes on every put)
- AWS/Lambda, FunctionName: Invocations, Errors (Count), Duration (Milliseconds)
  https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html

Sandbox choices (UNCONFIRMED against AWS): FailedRowCount counts every row written to the error
bucket, transform failures (ProcessingFailed) included; IncomingRowCount counts the rows routed
to a table; DataFreshness is the age of the oldest record not yet delivered, or, when a flush has
just completed, the age its oldest record had when it was delivered.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from typing import Any

from s3tstream.sandbox.registry import on_reset

FIREHOSE, KINESIS, LAMBDA = "AWS/Firehose", "AWS/Kinesis", "AWS/Lambda"
GAUGE_EVERY = 1.0  # seconds between freshness datapoints while records wait (no completion)
RETAIN_SECONDS = 3 * 3600  # older datapoints are dropped (AWS keeps them 15 days; the sandbox stays small)
PRUNE_EVERY = 60.0

_lock = threading.Lock()


@dataclasses.dataclass
class _Seen:
    totals: dict[str, int] = dataclasses.field(default_factory=dict)
    done: dict[str, int | None] = dataclasses.field(default_factory=dict)
    last_gauge: float = 0.0


_seen: dict[tuple[Any, ...], _Seen] = {}
_last_prune: dict[tuple[str, str], float] = {}


@on_reset
def reset() -> None:
    with _lock:
        _seen.clear()
        _last_prune.clear()


def _now() -> datetime.datetime:
    # moto stores naive UTC datetimes
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def put(account: str, region: str, namespace: str, datums: list[tuple[str, str, str, float, str]]) -> None:
    """Datapoints (metric name, dimension name, dimension value, value, unit) stamped now."""
    if not datums:
        return
    from moto.cloudwatch.models import cloudwatch_backends

    backend = cloudwatch_backends[account][region]
    now = _now()
    backend.put_metric_data(namespace, [
        {"MetricName": name, "Dimensions": [{"Name": dim, "Value": value}], "Value": float(v), "Unit": unit,
         "Timestamp": now}
        for name, dim, value, v, unit in datums
    ])
    _prune(account, region, backend)


def _prune(account: str, region: str, backend: Any) -> None:
    mono = time.monotonic()
    if mono - _last_prune.get((account, region), 0.0) < PRUNE_EVERY:
        return
    _last_prune[(account, region)] = mono
    cutoff = _now() - datetime.timedelta(seconds=RETAIN_SECONDS)
    backend.metric_data[:] = [m for m in backend.metric_data if m.timestamp >= cutoff]


# --------------------------------------------------------------------------- Lambda
def lambda_invoked(spec: Any, ok: bool, duration_ms: float) -> None:
    """One invocation of a function (a function error counts in Errors)."""
    try:
        put(spec.account_id, spec.region, LAMBDA, [
            ("Invocations", "FunctionName", spec.name, 1, "Count"),
            ("Errors", "FunctionName", spec.name, 0 if ok else 1, "Count"),
            ("Duration", "FunctionName", spec.name, duration_ms, "Milliseconds"),
        ])
    except Exception:  # noqa: BLE001 - metrics must never break an invocation
        pass


# --------------------------------------------------------------------------- Firehose + Kinesis
def _arrival(shard: Any, seq: int) -> float | None:
    rec = shard.records.get(seq)
    return None if rec is None else float(rec.created_at)


def _first_after(shard: Any, after: int | None, upto: int, not_before: float) -> float | None:
    """Arrival of the first record in (after, upto] (records arrive in sequence order) that
    arrived after the delivery stream was created (Firehose skips the ones before)."""
    start = 1 if after is None else after + 1
    for seq in range(start, upto + 1):
        t = _arrival(shard, seq)
        if t is not None and t >= not_before:
            return t
    return None


def after_step(cfg: Any, st: Any, stream: Any) -> None:
    """Publish what one delivery tick of a Firehose stream changed (counts, freshness, lag)."""
    try:
        _after_step(cfg, st, stream)
    except Exception:  # noqa: BLE001 - metrics must never stop delivery
        pass


def _after_step(cfg: Any, st: Any, stream: Any) -> None:
    now = time.time()
    with _lock:
        seen = _seen.setdefault(cfg.key, _Seen())
    delta = {k: int(st.totals.get(k, 0)) - seen.totals.get(k, 0) for k in
             ("read", "delivered", "processing_failed", "iceberg_failed")}
    seen.totals = {k: int(v) for k, v in st.totals.items()}

    # the oldest record resolved by this tick (its age at delivery), and the oldest still waiting
    oldest_done: float | None = None
    lag_ms = 0.0
    iterator_age_ms: float | None = None
    shards = dict(stream.shards) if stream is not None else {}
    for shard_id, pos in st.checkpoints.shards.items():
        shard = shards.get(shard_id)
        if shard is None:
            continue
        before = seen.done.get(shard_id)
        if pos.done is not None and pos.done != before:
            t = _first_after(shard, before, pos.done, cfg.created - 0.0005)
            if t is not None:
                oldest_done = t if oldest_done is None else min(oldest_done, t)
        seen.done[shard_id] = pos.done
        if pos.read is not None and shard.records:
            newest = next(reversed(shard.records))
            last_read = _arrival(shard, pos.read)
            newest_at = _arrival(shard, newest)
            if last_read is not None and newest_at is not None:
                lag_ms = max(lag_ms, (newest_at - last_read) * 1000)
            if delta["read"] > 0 and last_read is not None:
                iterator_age_ms = max(iterator_age_ms or 0.0, (now - last_read) * 1000)
    waiting: float | None = None
    if st.pending is not None:
        waiting = st.pending.oldest_arrival_ms / 1000
    elif len(st.buffer):
        waiting = min(r.arrival_ms for r in st.buffer.records) / 1000
    freshness: float | None = None
    if oldest_done is not None:
        freshness = now - oldest_done
    if waiting is not None and (freshness is not None or time.monotonic() - seen.last_gauge >= GAUGE_EVERY):
        freshness = max(freshness or 0.0, now - waiting)
        seen.last_gauge = time.monotonic()

    name = cfg.name
    failed = delta["processing_failed"] + delta["iceberg_failed"]
    fh: list[tuple[str, str, str, float, str]] = []
    if delta["read"] > 0:
        fh += [("DataReadFromKinesisStream.Records", "DeliveryStreamName", name, delta["read"], "Count"),
               ("KinesisMillisBehindLatest", "DeliveryStreamName", name, lag_ms, "Milliseconds")]
    if delta["delivered"] > 0 or delta["iceberg_failed"] > 0:
        fh.append(("DeliveryToIceberg.IncomingRowCount", "DeliveryStreamName", name,
                   delta["delivered"] + delta["iceberg_failed"], "Count"))
        fh.append(("DeliveryToIceberg.SuccessfulRowCount", "DeliveryStreamName", name, delta["delivered"], "Count"))
    if failed > 0 or oldest_done is not None:
        fh.append(("DeliveryToIceberg.FailedRowCount", "DeliveryStreamName", name, failed, "Count"))
    if freshness is not None:
        fh.append(("DeliveryToIceberg.DataFreshness", "DeliveryStreamName", name, round(max(0.0, freshness), 3), "Seconds"))
    put(cfg.account_id, cfg.region, FIREHOSE, fh)

    parts = cfg.source_arn.split(":")
    if stream is not None and len(parts) >= 6:
        ks: list[tuple[str, str, str, float, str]] = []
        if iterator_age_ms is not None:
            ks.append(("GetRecords.IteratorAgeMilliseconds", "StreamName", stream.stream_name, iterator_age_ms, "Milliseconds"))
        put(parts[4], parts[3], KINESIS, ks)
