"""The Firehose data plane: Kinesis source -> buffer -> Lambda transform -> Iceberg table / error bucket.

For every ACTIVE delivery stream (moto's firehose backend) of type KinesisStreamAsSource with an
Iceberg destination, a worker (``firehose-delivery``) and the control routes below:

1. read new records from every shard of the source stream (``kinesis_source``)
   after the stream's checkpoint (``buffering.Checkpoints``); a new stream starts at the records
   that arrived after it was created (UNCONFIRMED: AWS documents starting at LATEST);
2. buffer them (``BufferingHints``: SizeInMBs, IntervalInSeconds times the sandbox time scale,
   ``timescale.py``); at flush time, invoke the processor Lambda from its deployed zip
   (``lambda_runner``) in chunks of the processor's ``BufferSizeInMBs``, retrying a failed
   invocation ``NumberOfRetries`` times (default 3), enforcing the contract (``processing``,
   ``contract``);
3. route each Ok record to the table named by ``metadata.otfMetadata`` (destinationDatabaseName,
   destinationTableName, operation) or else the stream's single DestinationTableConfigurationList
   entry (operation insert); check the destination role's Lake Formation permissions on the
   table (``RoleARN`` of the Iceberg destination; DESCRIBE plus INSERT and/or DELETE, through the
   sandbox's Lake Formation extension); convert and apply the rows with PyIceberg, one commit per
   table per flush (``table_write``, ``iceberg_writer``);
4. write every record that failed (transform, contract, conversion, permissions, missing table)
   to the error bucket in Firehose's error-record format (``error_output``); a table-level
   failure (permissions, commit conflicts) is retried for ``RetryOptions.DurationInSeconds``
   (scaled) before its rows go to the error bucket. Flushes of one stream are strictly
   sequential (a retrying flush holds back the next one), so updates apply in order (unless the
   sandbox delivers in chaos mode, ``chaos``).

Control routes (JSON bodies; ``name`` optional = every stream; ``account``/``region`` default
to 123456789012/us-east-1):
- ``POST /_sandbox/firehose/flush {"name"?}``: read everything now and flush, ignoring the
  buffering hints (a retrying flush is retried now). Returns each stream's status.
- ``POST /_sandbox/firehose/drain {"name", "timeout"?: 30}``: flush until every source record
  is resolved (delivered, dropped or in the error bucket); answers the status with
  ``"drained": true``, or 504 ``DrainTimeout``.
- ``GET|POST /_sandbox/firehose/status {"name"?}``: checkpoints, buffered/pending counts,
  totals delivered/failed and the last error of each stream.
- ``GET|POST /_sandbox/firehose/delivery {"mode": "ordered"|"chaos", "seed"?}``: how the sandbox
  delivers (``chaos``: duplicates, records held back to a later flush, merge-on-read commits).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from s3tstream.sandbox.dataplane import chaos, contract, error_output, iceberg_writer, lambda_runner, metrics, timescale
from s3tstream.sandbox.dataplane.buffering import positions
from s3tstream.sandbox.dataplane.kinesis_source import read, source_max, source_stream
from s3tstream.sandbox.dataplane.processing import route, transform
from s3tstream.sandbox.dataplane.stream_state import PendingFlush, StreamState, TableWork, state_of
from s3tstream.sandbox.dataplane.streams import StreamConfig, active_streams
from s3tstream.sandbox.dataplane.table_write import TableFailure, error_prefix, iceberg_error, write_table
from s3tstream.sandbox.registry import AwsError, control_route, worker

log = logging.getLogger("s3tstream.sandbox.firehose")

MAX_BUFFERED = 200_000  # stop reading while this many records wait behind a retrying flush


# --------------------------------------------------------------------------- flushing
def _start_flush(cfg: StreamConfig, st: StreamState) -> None:
    records = st.buffer.take()
    if not records:
        return
    later: list[Any] = []
    if st.chaos is not None:  # duplicates, held-back records and a shuffled batch (chaos.py)
        mix = st.chaos.mix(records)
        records, later = mix.batch, mix.later
        st.totals["chaos_duplicated"] += mix.duplicated
        st.totals["chaos_held_back"] += mix.held_back
        if not records:
            st.buffer.add(later)
            return
    try:
        outcomes, lambda_arn = transform(cfg, records)
    except Exception as exc:  # the sandbox failed (not the function): keep the records, retry later
        st.buffer.put_back(records)
        st.buffer.add(later)
        st.last_error = f"{type(exc).__name__}: {exc}"
        raise
    st.buffer.add(later)  # delivered by a later flush, after newer records
    st.flushes += 1
    errors: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
    by_table: dict[tuple[str, str], list[iceberg_writer.Op]] = defaultdict(list)
    for o in outcomes:
        if o.result == contract.DROPPED:
            st.totals["dropped"] += 1
            continue
        if o.result != contract.OK:
            errors[(error_output.PROCESSING_FAILED, cfg.s3.get("ErrorOutputPrefix"))].append(
                error_output.processing_failed_record(
                    raw_b64=o.record.data_b64, arrival_ms=o.record.arrival_ms, code=o.error_code or "Lambda.FunctionError",
                    message=o.error_message or "", attempts=o.attempts, lambda_arn=lambda_arn,
                ))
            st.totals["processing_failed"] += 1
            continue
        try:
            db, table, op = route(cfg, o)
        except iceberg_writer.RowError as exc:
            errors[(error_output.ICEBERG_FAILED, error_prefix(cfg, None, None))].append(
                iceberg_error(cfg, o, exc.code, exc.message, 1, None, None))
            st.totals["iceberg_failed"] += 1
            continue
        by_table[(db, table)].append(iceberg_writer.Op(op, {}, ref=o))
    st.pending = PendingFlush(
        records=records,
        tables=[TableWork(db, table, ops, merge_on_read=st.chaos is not None) for (db, table), ops in by_table.items()],
        errors=errors,
        started=time.monotonic(),
        oldest_arrival_ms=min(r.arrival_ms for r in records),
    )


def _continue_flush(cfg: StreamConfig, st: StreamState, endpoint_url: str, force: bool) -> bool:
    """Advance the pending flush; True when it is fully resolved (checkpoints moved)."""
    p = st.pending
    assert p is not None
    window = timescale.scaled(cfg.retry_seconds)
    remaining: list[TableWork] = []
    for work in p.tables:
        work.attempts += 1
        try:
            write_table(cfg, st, work, endpoint_url, p.errors)
            continue
        except TableFailure as exc:
            failure = exc
        except Exception as exc:  # noqa: BLE001 - unexpected (a bug, a missing package): retried the same way
            if work.attempts == 1:
                log.exception("sandbox firehose %s: writing %s.%s failed", cfg.name, work.database, work.table)
            else:  # one traceback per flush, not one per tick
                log.info("sandbox firehose %s: writing %s.%s failed again (attempt %d): %s", cfg.name,
                         work.database, work.table, work.attempts, exc)
            failure = TableFailure(iceberg_writer.WRITE_FAILED, f"Writing to {work.database}.{work.table} failed: "
                                   f"{type(exc).__name__}: {exc}")
        st.last_error = f"{failure.code}: {failure.message}"
        if failure.retryable and time.monotonic() - p.started < window:
            remaining.append(work)
            continue
        # not retryable, or the retry duration is over: the rows go to the error bucket (never retried forever)
        prefix = error_prefix(cfg, work.database, work.table)
        for op in work.ops:
            p.errors[(error_output.ICEBERG_FAILED, prefix)].append(
                iceberg_error(cfg, op.ref, failure.code, failure.message, work.attempts, work.database, work.table))
        st.totals["iceberg_failed"] += len(work.ops)
    p.tables = remaining
    if p.tables:
        return False
    # error output last: every failed line of the flush, one object per (type, prefix)
    for (otype, prefix), lines in list(p.errors.items()):
        if not lines:
            del p.errors[(otype, prefix)]
            continue
        key = error_output.object_key(prefix, otype, cfg.name, cfg.version, p.oldest_arrival_ms)
        try:
            where = error_output.write(cfg.account_id, cfg.s3.get("BucketARN"), key, lines)
        except error_output.ErrorOutputUnavailable as exc:
            st.last_error = str(exc)
            return False
        st.error_objects.append(where)
        del p.errors[(otype, prefix)]
    st.checkpoints.mark_done(positions(p.records))
    st.pending = None
    return True


def step(cfg: StreamConfig, endpoint_url: str, force: bool = False, mode: chaos.DeliveryMode = chaos.ORDERED) -> dict[str, Any]:
    """One tick of one stream: read, maybe flush, advance a pending flush."""
    st = state_of(cfg)
    with st.lock:
        st.follow(mode, cfg.name)
        if len(st.buffer) < MAX_BUFFERED:
            read(cfg, st)
        if st.pending is not None:
            if not _continue_flush(cfg, st, endpoint_url, force):
                metrics.after_step(cfg, st, source_stream(cfg))  # CloudWatch datapoints of this tick
                return st.status(cfg)
        size, interval = cfg.hints
        if force or st.buffer.due(size, interval):
            _start_flush(cfg, st)
            if st.pending is not None:
                _continue_flush(cfg, st, endpoint_url, force)
        metrics.after_step(cfg, st, source_stream(cfg))  # CloudWatch datapoints of this tick
        return st.status(cfg)


def _endpoint(server: Any) -> str:
    if server is None or not getattr(server, "running", False):
        raise AwsError("NotRunning", "the Firehose data plane needs a running SandboxServer", 503)
    return str(server.endpoint_url)


_last_reap = [0.0]


@worker("firehose-delivery", interval=0.1)
def deliver(server: Any) -> None:
    if server is None or not getattr(server, "running", False):
        return
    if time.monotonic() - _last_reap[0] > 5:
        _last_reap[0] = time.monotonic()
        lambda_runner.reap()  # Lambda workers of deleted or changed functions, or idle too long
    for cfg in active_streams():
        try:
            step(cfg, server.endpoint_url, mode=chaos.of(server))
        except Exception:  # noqa: BLE001 - one stream must not stop the others
            log.exception("sandbox firehose %s: delivery step failed", cfg.name)


# --------------------------------------------------------------------------- control routes
def _select(body: dict[str, Any]) -> list[StreamConfig]:
    name = body.get("name")
    account = body.get("account") or body.get("account_id")
    region = body.get("region")
    found = active_streams(name, account, region)
    if name and not found:
        raise AwsError("ResourceNotFoundException",
                       f"no ACTIVE Kinesis-sourced Firehose stream {name!r} with an Iceberg destination", 404)
    return found


def flush_now(server: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    endpoint = _endpoint(server)
    out = []
    for cfg in _select(body):
        st_json = step(cfg, endpoint, force=True, mode=chaos.of(server))
        st = state_of(cfg)
        with st.lock:
            st_json["drained"] = st.drained(source_max(cfg, st))
        out.append(st_json)
    return out


@control_route("POST", "firehose/flush")
def _flush_route(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    return {"streams": flush_now(server, body)}


@control_route("POST", "firehose/drain")
def _drain_route(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    timeout = float(body.get("timeout", 30))
    deadline = time.monotonic() + timeout
    while True:
        streams = flush_now(server, body)
        if all(s["drained"] for s in streams):
            return {"drained": True, "streams": streams}
        if time.monotonic() >= deadline:
            stuck = [f"{s['name']}: {s['last_error'] or 'records still buffered'}" for s in streams if not s["drained"]]
            raise AwsError("DrainTimeout", f"not drained after {timeout:g}s: {'; '.join(stuck)}", 504)
        time.sleep(0.05)


def _status(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    out = []
    for cfg in _select(body):
        st = state_of(cfg)
        with st.lock:
            out.append(st.status(cfg, source_max(cfg, st)))
    return {"streams": out}


control_route("GET", "firehose/status")(_status)
control_route("POST", "firehose/status")(_status)


@control_route("POST", "firehose/delivery")
def _delivery_route(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Switch how this sandbox delivers: ``{"mode": "ordered"|"chaos", "seed"?: 0}`` (chaos.py)."""
    if server is None:
        raise AwsError("NotRunning", "the Firehose data plane needs a running SandboxServer", 503)
    try:
        server.delivery = chaos.parse(body.get("mode"), body.get("seed", 0))
    except ValueError as exc:
        raise AwsError("ValidationException", str(exc), 400) from None
    return server.delivery.to_json()


@control_route("GET", "firehose/delivery")
def _delivery_get(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    return chaos.of(server).to_json()
