"""The Firehose data plane: Kinesis source -> buffer -> Lambda transform -> Iceberg table / error bucket.

For every ACTIVE delivery stream (moto's firehose backend) of type KinesisStreamAsSource with an
Iceberg destination, a worker (``firehose-delivery``) and the control routes below:

1. read new records from every shard of the source stream (moto's kinesis backend, in process)
   after the stream's checkpoint (``buffering.Checkpoints``); a new stream starts at the records
   that arrived after it was created (UNCONFIRMED: AWS documents starting at LATEST);
2. buffer them (``BufferingHints``: SizeInMBs, IntervalInSeconds times the sandbox time scale,
   ``timescale.py``); at flush time, invoke the processor Lambda from its deployed zip
   (``lambda_runner``) in chunks of the processor's ``BufferSizeInMBs``, retrying a failed
   invocation ``NumberOfRetries`` times (default 3), enforcing the contract (``contract``);
3. route each Ok record to the table named by ``metadata.otfMetadata`` (destinationDatabaseName,
   destinationTableName, operation) or else the stream's single DestinationTableConfigurationList
   entry (operation insert); check the destination role's Lake Formation permissions on the
   table (``RoleARN`` of the Iceberg destination; DESCRIBE plus INSERT and/or DELETE, through the
   sandbox's Lake Formation extension); convert and apply the rows with PyIceberg, one commit per
   table per flush (``iceberg_writer``);
4. write every record that failed (transform, contract, conversion, permissions, missing table)
   to the error bucket in Firehose's error-record format (``error_output``); a table-level
   failure (permissions, commit conflicts) is retried for ``RetryOptions.DurationInSeconds``
   (scaled) before its rows go to the error bucket. Flushes of one stream are strictly
   sequential (a retrying flush holds back the next one), so updates apply in order.

Control routes (JSON bodies; ``name`` optional = every stream; ``account``/``region`` default
to 123456789012/us-east-1):
- ``POST /_sandbox/firehose/flush {"name"?}``: read everything now and flush, ignoring the
  buffering hints (a retrying flush is retried now). Returns each stream's status.
- ``POST /_sandbox/firehose/drain {"name", "timeout"?: 30}``: flush until every source record
  is resolved (delivered, dropped or in the error bucket); answers the status with
  ``"drained": true``, or 504 ``DrainTimeout``.
- ``GET|POST /_sandbox/firehose/status {"name"?}``: checkpoints, buffered/pending counts,
  totals delivered/failed and the last error of each stream.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
import time
from collections import defaultdict
from typing import Any

from s3tstream.sandbox.dataplane import contract, error_output, iceberg_writer, lambda_runner, timescale
from s3tstream.sandbox.dataplane.buffering import MIB, Buffer, Checkpoints, chunks, positions
from s3tstream.sandbox.dataplane.contract import Outcome, SourceRecord
from s3tstream.sandbox.registry import AwsError, control_route, on_reset, worker

log = logging.getLogger("s3tstream.sandbox.firehose")

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
DEFAULT_RETRIES = 3  # processor NumberOfRetries default (data-transformation-failure-handling)
DEFAULT_RETRY_SECONDS = 300  # Iceberg RetryOptions.DurationInSeconds default (UNCONFIRMED)
DEFAULT_PROCESSOR_MB = 1.0  # processor BufferSizeInMBs default (data-transformation.html)
READ_LIMIT = 10_000  # records read per shard per tick
MAX_BUFFERED = 200_000  # stop reading while this many records wait behind a retrying flush


# --------------------------------------------------------------------------- stream config
@dataclasses.dataclass
class StreamConfig:
    account_id: str
    region: str
    name: str
    arn: str
    version: str
    created: float  # epoch seconds
    source_arn: str
    iceberg: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, float]:
        return (self.account_id, self.region, self.name, self.created)

    @property
    def role_arn(self) -> str:
        return str(self.iceberg.get("RoleARN") or "")

    @property
    def catalog_arn(self) -> str:
        return str((self.iceberg.get("CatalogConfiguration") or {}).get("CatalogARN") or "")

    @property
    def s3(self) -> dict[str, Any]:
        return self.iceberg.get("S3DestinationDescription") or self.iceberg.get("S3Configuration") or {}

    @property
    def tables(self) -> list[dict[str, Any]]:
        return list(self.iceberg.get("DestinationTableConfigurationList") or [])

    @property
    def hints(self) -> tuple[float | None, float | None]:
        h = self.iceberg.get("BufferingHints") or {}
        return h.get("SizeInMBs"), h.get("IntervalInSeconds")

    @property
    def retry_seconds(self) -> float:
        return float((self.iceberg.get("RetryOptions") or {}).get("DurationInSeconds", DEFAULT_RETRY_SECONDS))

    @property
    def append_only(self) -> bool:
        return bool(self.iceberg.get("AppendOnly"))

    def processor(self) -> dict[str, str] | None:
        """The Lambda processor's parameters, or None without (enabled) processing."""
        pc = self.iceberg.get("ProcessingConfiguration") or {}
        if not pc.get("Enabled", False):
            return None
        for p in pc.get("Processors") or []:
            if p.get("Type") == "Lambda":
                return {x.get("ParameterName"): str(x.get("ParameterValue")) for x in p.get("Parameters") or []}
        return None

    def table_config(self, database: str, table: str) -> dict[str, Any] | None:
        return next((t for t in self.tables if t.get("DestinationDatabaseName") == database
                     and t.get("DestinationTableName") == table), None)

    def bucket_name(self) -> str | None:
        prefix = ":catalog/s3tablescatalog/"
        return self.catalog_arn.split(prefix, 1)[1] if prefix in self.catalog_arn else None


def _epoch(value: Any) -> float:
    if hasattr(value, "timestamp"):
        if getattr(value, "tzinfo", None) is None:
            import datetime as _dt

            return value.replace(tzinfo=_dt.timezone.utc).timestamp()
        return float(value.timestamp())
    return float(value or 0)


def active_streams(name: str | None = None, account: str | None = None, region: str | None = None) -> list[StreamConfig]:
    """Every ACTIVE Kinesis-sourced stream with an Iceberg destination (without creating backends)."""
    from moto.firehose.models import firehose_backends

    out = []
    for acct, regions in list(dict.items(firehose_backends)):
        if account and acct != account:
            continue
        for reg, backend in list(dict.items(regions)):
            if region and reg != region:
                continue
            for ds in list(backend.delivery_streams.values()):
                if name and ds.delivery_stream_name != name:
                    continue
                if ds.delivery_stream_status != "ACTIVE" or ds.delivery_stream_type != "KinesisStreamAsSource":
                    continue
                iceberg = next((d.get("Iceberg") for d in ds.destinations if d.get("Iceberg")), None)
                source = (ds.source or {}).get("KinesisStreamARN")
                if not iceberg or not source:
                    continue
                out.append(StreamConfig(acct, reg, ds.delivery_stream_name, ds.delivery_stream_arn,
                                        str(ds.version_id), _epoch(ds.create_timestamp), source, iceberg))
    return out


# --------------------------------------------------------------------------- per-stream state
@dataclasses.dataclass
class TableWork:
    """Rows waiting for one table (kept across retries)."""

    database: str
    table: str
    ops: list[iceberg_writer.Op]
    attempts: int = 0


@dataclasses.dataclass
class PendingFlush:
    """A flush whose outcome is not fully written yet (retrying a table, or the error bucket)."""

    records: list[SourceRecord]
    tables: list[TableWork]
    errors: dict[tuple[str, str | None], list[dict[str, Any]]]  # (output type, prefix) -> lines
    started: float
    oldest_arrival_ms: int


class StreamState:
    def __init__(self, cfg: StreamConfig) -> None:
        self.key = cfg.key
        self.lock = threading.RLock()
        self.checkpoints = Checkpoints()
        self.buffer = Buffer()
        self.pending: PendingFlush | None = None
        self.started = False  # start positions found
        self.totals: dict[str, int] = defaultdict(int)
        self.last_error: str | None = None
        self.error_objects: list[str] = []
        self.flushes = 0

    def status(self, cfg: StreamConfig, source_max: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "name": cfg.name,
            "arn": cfg.arn,
            "account": cfg.account_id,
            "region": cfg.region,
            "source": cfg.source_arn,
            "checkpoints": self.checkpoints.to_json(),
            "buffered": len(self.buffer),
            "buffered_bytes": self.buffer.bytes,
            "pending": None if self.pending is None else {
                "records": len(self.pending.records),
                "tables": [f"{t.database}.{t.table}" for t in self.pending.tables],
                "error_lines": sum(len(v) for v in self.pending.errors.values()),
            },
            "flushes": self.flushes,
            "totals": dict(self.totals),
            "last_error": self.last_error,
            "error_objects": list(self.error_objects[-20:]),
            "drained": self.drained(source_max),
        }

    def drained(self, source_max: dict[str, int] | None) -> bool:
        if self.pending is not None or len(self.buffer):
            return False
        if source_max is None:
            return True
        for shard, top in source_max.items():
            pos = self.checkpoints.shards.get(shard)
            if pos is None or pos.done is None or pos.done < top:
                return False
        return True


_states_lock = threading.Lock()
_states: dict[tuple[str, str, str, float], StreamState] = {}


@on_reset
def _reset() -> None:
    with _states_lock:
        _states.clear()
    lambda_runner.shutdown()


def _state(cfg: StreamConfig) -> StreamState:
    with _states_lock:
        st = _states.get(cfg.key)
        if st is None:
            # a stream deleted and created again under the same name starts afresh
            for k in [k for k in _states if k[:3] == cfg.key[:3]]:
                del _states[k]
            st = _states[cfg.key] = StreamState(cfg)
        return st


# --------------------------------------------------------------------------- reading Kinesis
def _source_stream(cfg: StreamConfig) -> Any:
    from moto.kinesis.models import kinesis_backends

    parts = cfg.source_arn.split(":")
    if len(parts) < 6:
        return None
    region, account = parts[3], parts[4]
    if account not in dict.keys(kinesis_backends):
        return None
    regions = dict.__getitem__(kinesis_backends, account)
    if region not in dict.keys(regions):
        return None
    backend = dict.__getitem__(regions, region)
    return next((s for s in list(backend.streams.values()) if s.arn == cfg.source_arn), None)


def _snapshot(shard: Any) -> list[tuple[int, Any]]:
    for _ in range(5):
        try:
            return list(shard.records.items())
        except RuntimeError:  # changed size during iteration (a put in another thread)
            continue
    return list(shard.records.items())


def _following(shard: Any, seq: int) -> Any:
    """Records seq, seq+1, ... while they exist (a generator over moto's shard)."""
    while True:
        rec = shard.records.get(seq)
        if rec is None:
            return
        yield seq, rec
        seq += 1


def source_max(cfg: StreamConfig, st: StreamState) -> dict[str, int]:
    """The highest sequence number per shard the stream is responsible for."""
    stream = _source_stream(cfg)
    out: dict[str, int] = {}
    if stream is None:
        return out
    for shard_id, shard in list(stream.shards.items()):
        items = _snapshot(shard)
        relevant = [seq for seq, rec in items if rec.created_at >= cfg.created - 0.0005]
        if relevant:
            out[shard_id] = max(relevant)
        elif shard_id in st.checkpoints.shards and st.checkpoints.shards[shard_id].done is not None:
            out[shard_id] = st.checkpoints.shards[shard_id].done  # type: ignore[assignment]
    return out


def _read(cfg: StreamConfig, st: StreamState) -> int:
    """Move new source records into the buffer; returns how many."""
    stream = _source_stream(cfg)
    if stream is None:
        st.last_error = f"source stream {cfg.source_arn} not found"
        return 0
    n = 0
    for index, (shard_id, shard) in enumerate(sorted(stream.shards.items())):
        pos = st.checkpoints.position(shard_id)
        taken: list[SourceRecord] = []
        if pos.read is not None and (pos.read + 1) in shard.records:
            # moto numbers a shard's records 1, 2, 3...: follow on without scanning the shard
            candidates: Any = _following(shard, pos.read + 1)
        elif pos.read is not None and (not shard.records or next(reversed(shard.records)) <= pos.read):
            continue
        else:
            candidates = _snapshot(shard)
        for seq, rec in candidates:
            if pos.read is not None and seq <= pos.read:
                continue
            if pos.read is None and rec.created_at < cfg.created - 0.0005:
                continue  # arrived before the delivery stream existed
            taken.append(SourceRecord(
                shard_id=shard_id,
                sequence_number=str(seq),
                subsequence_number=0,
                partition_key=rec.partition_key,
                data_b64=rec.data,
                arrival_ms=int(rec.created_at * 1000),
                record_id=contract.record_id(index, str(seq)),
            ))
            if len(taken) >= READ_LIMIT:
                break
        for r in taken:
            st.checkpoints.mark_read(shard_id, int(r.sequence_number))
        st.buffer.add(taken)
        n += len(taken)
    st.totals["read"] += n
    return n


# --------------------------------------------------------------------------- transform
def _transform(cfg: StreamConfig, records: list[SourceRecord]) -> tuple[list[Outcome], str]:
    """Outcomes of the processor for every record (records pass unchanged without one)."""
    params = cfg.processor()
    if params is None:
        return [Outcome(r, contract.OK, data=r.data()) for r in records], ""
    arn = params.get("LambdaArn", "")
    retries = int(float(params.get("NumberOfRetries", DEFAULT_RETRIES)))
    max_mb = min(float(params.get("BufferSizeInMBs", DEFAULT_PROCESSOR_MB)), 3.0)
    try:
        spec = lambda_runner.find_function(cfg.account_id, cfg.region, arn)
    except lambda_runner.FunctionNotFound as exc:
        return contract.failed_batch(records, "Lambda.FunctionNotFound", str(exc), 1), arn
    out: list[Outcome] = []
    for batch in chunks(records, max_mb * MIB):
        out += _invoke_batch(cfg, spec, batch, retries)
    return out, arn


def _invoke_batch(cfg: StreamConfig, spec: lambda_runner.FunctionSpec, batch: list[SourceRecord], retries: int) -> list[Outcome]:
    attempts = 0
    code, message = "Lambda.FunctionError", contract.ERRORS["Lambda.FunctionError"]
    while attempts <= retries:
        attempts += 1
        event = contract.build_event(batch, cfg.arn, cfg.source_arn, cfg.region)
        result = lambda_runner.invoke_json(spec, event)
        if not result.ok:
            code, message = "Lambda.FunctionError", contract.ERRORS["Lambda.FunctionError"]
            detail = result.payload.decode("utf-8", "replace")[:500]
            log.info("sandbox firehose %s: transform %s failed (attempt %d): %s", cfg.name, spec.name, attempts, detail)
            continue
        try:
            outcomes = contract.check_response(batch, contract.parse_payload(result.payload))
        except contract.ContractViolation as exc:
            code, message = exc.code, contract.ERRORS.get(exc.code, str(exc))
            log.info("sandbox firehose %s: transform %s broke the contract (attempt %d): %s", cfg.name, spec.name,
                     attempts, exc)
            continue
        return outcomes
    return contract.failed_batch(batch, code, message, attempts)


# --------------------------------------------------------------------------- routing
def _route(cfg: StreamConfig, outcome: Outcome) -> tuple[str, str, str]:
    """(database, table, operation) of an Ok record; RowError when it cannot be routed."""
    otf = (outcome.metadata or {}).get("otfMetadata") if outcome.metadata else None
    if otf is not None and not isinstance(otf, dict):
        raise iceberg_writer.RowError(iceberg_writer.INVALID_OPERATION, "metadata.otfMetadata must be an object")
    otf = otf or {}
    db, table = otf.get("destinationDatabaseName"), otf.get("destinationTableName")
    if not db or not table:
        if len(cfg.tables) != 1:
            raise iceberg_writer.RowError(
                iceberg_writer.TABLE_NOT_FOUND,
                "The record names no destination table (metadata.otfMetadata) and the stream does not configure exactly one.",
            )
        db = db or cfg.tables[0].get("DestinationDatabaseName")
        table = table or cfg.tables[0].get("DestinationTableName")
    op = str(otf.get("operation") or "insert").lower()
    if op not in iceberg_writer.OPERATIONS:
        raise iceberg_writer.RowError(iceberg_writer.INVALID_OPERATION,
                                      f"Unknown operation '{otf.get('operation')}': use insert, update or delete.")
    if op != "insert" and cfg.append_only:
        raise iceberg_writer.RowError(iceberg_writer.INVALID_OPERATION,
                                      f"Operation '{op}' is not allowed on an AppendOnly stream.")
    return str(db), str(table), op


# --------------------------------------------------------------------------- flushing
def _iceberg_error(cfg: StreamConfig, o: Outcome, code: str, message: str, attempts: int,
                   db: str | None, table: str | None) -> dict[str, Any]:
    raw = base64.b64encode(o.data if o.data is not None else o.record.data()).decode()
    return error_output.iceberg_failed_record(
        raw_b64=raw, arrival_ms=o.record.arrival_ms, code=code, message=message, attempts=attempts,
        sequence_number=o.record.sequence_number, subsequence_number=o.record.subsequence_number,
        catalog_arn=cfg.catalog_arn, database=db, table=table, region=cfg.region,
    )


def _prefix_for(cfg: StreamConfig, db: str | None, table: str | None) -> str | None:
    tc = cfg.table_config(db, table) if db and table else None
    if tc is not None and tc.get("S3ErrorOutputPrefix"):
        return str(tc["S3ErrorOutputPrefix"])
    return cfg.s3.get("ErrorOutputPrefix")


def _start_flush(cfg: StreamConfig, st: StreamState) -> None:
    records = st.buffer.take()
    if not records:
        return
    try:
        outcomes, lambda_arn = _transform(cfg, records)
    except Exception as exc:  # the sandbox failed (not the function): keep the records, retry later
        st.buffer.put_back(records)
        st.last_error = f"{type(exc).__name__}: {exc}"
        raise
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
            db, table, op = _route(cfg, o)
        except iceberg_writer.RowError as exc:
            errors[(error_output.ICEBERG_FAILED, _prefix_for(cfg, None, None))].append(
                _iceberg_error(cfg, o, exc.code, exc.message, 1, None, None))
            st.totals["iceberg_failed"] += 1
            continue
        by_table[(db, table)].append(iceberg_writer.Op(op, {}, ref=o))
    st.pending = PendingFlush(
        records=records,
        tables=[TableWork(db, table, ops) for (db, table), ops in by_table.items()],
        errors=errors,
        started=time.monotonic(),
        oldest_arrival_ms=min(r.arrival_ms for r in records),
    )


class _TableFailure(Exception):
    """A table-level failure: retried within RetryOptions, then its rows go to the error bucket."""

    def __init__(self, code: str, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def _required_permissions(ops: list[iceberg_writer.Op]) -> list[str]:
    perms = {"DESCRIBE"}
    for op in ops:
        if op.operation in ("insert", "update"):
            perms.add("INSERT")
        if op.operation in ("update", "delete"):
            perms.add("DELETE")
    return sorted(perms)


def _check_grants(cfg: StreamConfig, work: TableWork, bucket: str) -> None:
    from s3tstream.sandbox import access

    denied = access.firehose_denied(cfg.account_id, cfg.region, cfg.role_arn, bucket, work.database, work.table,
                                    _required_permissions(work.ops))
    if denied:
        raise _TableFailure(*denied)


def _write_table(cfg: StreamConfig, st: StreamState, work: TableWork, endpoint_url: str,
                 errors: dict[tuple[str, str | None], list[dict[str, Any]]]) -> None:
    """Apply one table's rows (one commit). Record-level failures go to ``errors``; raises
    _TableFailure for what fails the whole table."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError

    bucket = cfg.bucket_name()
    bucket_arn = iceberg_writer.find_bucket_arn(cfg.account_id, cfg.region, bucket) if bucket else None
    if bucket_arn is None:
        raise _TableFailure(iceberg_writer.TABLE_NOT_FOUND, f"Catalog {cfg.catalog_arn} does not exist.", retryable=False)
    _check_grants(cfg, work, bucket)  # type: ignore[arg-type]
    catalog = iceberg_writer.catalogs_for(endpoint_url).catalog(cfg.account_id, cfg.region, bucket_arn)
    prefix = _prefix_for(cfg, work.database, work.table)
    for attempt in range(4):
        try:
            table = catalog.load_table((work.database, work.table))
        except NoSuchTableError:
            raise _TableFailure(iceberg_writer.TABLE_NOT_FOUND,
                                f"Table {work.database}.{work.table} was not found in {cfg.catalog_arn}.",
                                retryable=False) from None
        schema = table.schema()
        tc = cfg.table_config(work.database, work.table) or {}
        try:
            keys = iceberg_writer.unique_keys_for(schema, tc.get("UniqueKeys"))
        except iceberg_writer.RowError as exc:
            raise _TableFailure(exc.code, exc.message, retryable=False) from None
        ops: list[iceberg_writer.Op] = []
        refused: list[tuple[Outcome, iceberg_writer.RowError]] = []
        for op in work.ops:
            o: Outcome = op.ref
            try:
                row = iceberg_writer.to_row(iceberg_writer.parse_record(o.data or b""), schema)
                if op.operation != "insert":
                    if not keys:
                        raise iceberg_writer.RowError(
                            iceberg_writer.INVALID_UNIQUE_KEYS,
                            f"Operation '{op.operation}' needs UniqueKeys for table {work.database}.{work.table}.")
                    if iceberg_writer.key_of(row, keys) is None:
                        raise iceberg_writer.RowError(
                            iceberg_writer.UNIQUE_KEYS_NOT_FOUND,
                            f"The record has no value for the unique key column(s) {', '.join(keys)}.")
                ops.append(iceberg_writer.Op(op.operation, row, ref=o))
            except iceberg_writer.RowError as exc:
                refused.append((o, exc))
        try:
            result = iceberg_writer.apply(table, ops, keys)
        except CommitFailedException as exc:
            log.info("sandbox firehose %s: commit to %s.%s conflicted (%s), retrying", cfg.name, work.database,
                     work.table, exc)
            if attempt == 3:
                raise _TableFailure(iceberg_writer.COMMIT_FAILED, f"Commit to {work.database}.{work.table} failed: {exc}") from None
            continue
        for o, exc in refused:
            errors[(error_output.ICEBERG_FAILED, prefix)].append(
                _iceberg_error(cfg, o, exc.code, exc.message, work.attempts, work.database, work.table))
        st.totals["iceberg_failed"] += len(refused)
        st.totals["delivered"] += len(ops)
        st.totals["commits"] += 1 if result.committed else 0
        return


def _continue_flush(cfg: StreamConfig, st: StreamState, endpoint_url: str, force: bool) -> bool:
    """Advance the pending flush; True when it is fully resolved (checkpoints moved)."""
    p = st.pending
    assert p is not None
    window = timescale.scaled(cfg.retry_seconds)
    remaining: list[TableWork] = []
    for work in p.tables:
        work.attempts += 1
        try:
            _write_table(cfg, st, work, endpoint_url, p.errors)
        except _TableFailure as exc:
            st.last_error = f"{exc.code}: {exc.message}"
            expired = time.monotonic() - p.started >= window
            if exc.retryable and not expired:
                remaining.append(work)
                continue
            prefix = _prefix_for(cfg, work.database, work.table)
            for op in work.ops:
                p.errors[(error_output.ICEBERG_FAILED, prefix)].append(
                    _iceberg_error(cfg, op.ref, exc.code, exc.message, work.attempts, work.database, work.table))
            st.totals["iceberg_failed"] += len(work.ops)
        except Exception as exc:  # noqa: BLE001 - unexpected: keep the rows, retry later
            log.exception("sandbox firehose %s: writing %s.%s failed", cfg.name, work.database, work.table)
            st.last_error = f"{type(exc).__name__}: {exc}"
            remaining.append(work)
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


def step(cfg: StreamConfig, endpoint_url: str, force: bool = False) -> dict[str, Any]:
    """One tick of one stream: read, maybe flush, advance a pending flush."""
    st = _state(cfg)
    with st.lock:
        if len(st.buffer) < MAX_BUFFERED:
            _read(cfg, st)
        if st.pending is not None:
            if not _continue_flush(cfg, st, endpoint_url, force):
                return st.status(cfg)
        size, interval = cfg.hints
        if force or st.buffer.due(size, interval):
            _start_flush(cfg, st)
            if st.pending is not None:
                _continue_flush(cfg, st, endpoint_url, force)
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
            step(cfg, server.endpoint_url)
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
        st_json = step(cfg, endpoint, force=True)
        st = _state(cfg)
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
        st = _state(cfg)
        with st.lock:
            out.append(st.status(cfg, source_max(cfg, st)))
    return {"streams": out}


control_route("GET", "firehose/status")(_status)
control_route("POST", "firehose/status")(_status)
