"""backfill: bring the items that existed before the stream into the lake.

Two strategies, both refused (exit 2) unless the table's Kinesis streaming destination is ACTIVE
on the stack's stream and the Firehose stream is ACTIVE: every change after the snapshot then
reaches the lake through the stream, so nothing falls between snapshot and stream.

``scan`` (default below ``backfill.scan_threshold_items``): a parallel Scan (``segments``), read
at a limited rate (a token bucket: ``max_read_share`` of a provisioned table's read capacity,
charged with the ConsumedCapacity each page reports under ReturnConsumedCapacity=TOTAL; or
``items_per_second`` on an on-demand table). Each item goes to the Kinesis stream as an INSERT
change record in the Kinesis Data Streams for DynamoDB format with eventSource
"s3tstream:backfill" (``verify.change_record``, batched by ``verify.put_records``: 500 records /
5 MiB a call, failed entries retried with bounded backoff), so it takes the transform and upsert
path of every other change; in changelog mode the transform writes it with ``_op = 'backfill'``.
Each segment reads its next page while it sends the current one; Scan items and GetRecords
records are taken as wire JSON before botocore's parse (``call_wire``), the records of a page
are encoded from one change_record (``build_entries``).

Checkpoints: in the stack's state file, beside (not among) its resources, under ``jobs.backfill``
(``Checkpoints``), written atomically (temp file, fsync, rename) after every page that Kinesis
accepted: per segment the LastEvaluatedKey and the counts. A rerun continues from them;
``--restart`` starts over, ``--abort`` gives up (``abort``); a completed backfill removes them.
The stack lock is held while a backfill runs, so ``up``/``down`` cannot interleave with it, and
``down`` removes what an interrupted run left (``remove_leftovers``).

Ordering. Each backfill record's ApproximateCreationDateTime is the time its page was read
minus CLOCK_SKEW_US, so any change after the read is newer. In changelog mode the lake's
current view orders by ``_event_time``, which makes the result exact. Upsert mode applies
operations in delivery order, so a snapshot record sent after a newer change to the same item
would win: the catch-up phase (``backfill.catch_up``) reads the stream from the backfill's start,
collects the keys DynamoDB changed meanwhile, reads them again (consistent BatchGetItem) and
sends them again (INSERT, or REMOVE when gone), repeating for keys changed again while it ran.

``export`` (large tables): ExportTableToPointInTime to S3 (point-in-time recovery required:
``--enable-pitr`` turns it on, otherwise exit 2), waited on with DescribeExport; then a Glue
database and external table owned by the stack over the export's data files (one JSON line per
item, ``{"Item": {...DynamoDB JSON...}}``), and one Athena statement through the
``s3tablescatalog/<bucket>`` catalog: upsert ``MERGE INTO ... WHEN NOT MATCHED THEN INSERT`` (a
key already in the lake came through the stream and is at least as new), changelog
``INSERT INTO`` with ``_op = 'backfill'`` and ``_event_time`` = the export time. The SQL maps the
DynamoDB JSON to the columns from the config (``export_select``). Then the catch-up (upsert) from
the export time, then the Glue table, database and export files are removed (the Glue objects
also on failure; the export files are kept while a checkpoint refers to them, so a rerun does not
export again).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import error_code, is_not_found, translate, wait_until
from s3tstream.errors import AwsError, Interrupted, StateError, UsageError
from s3tstream.transform import types as T
from s3tstream.data.verify import KINESIS_RECORD_BYTES, _Throttle, auto_segments, change_record, partition_key, put_records

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore

Progress = Callable[[str], None]
SOURCE = "s3tstream:backfill"
CHECKPOINT_VERSION = 1
CLOCK_SKEW_US = 1_000_000  # backfill records are dated this much before their read
MAX_SEGMENTS = 64
MAX_PAGE_ITEMS = 1000
CATCH_UP_ROUNDS = 3
GET_RECORDS_LIMIT = 10_000
BATCH_GET = 100  # BatchGetItem: at most 100 keys a call
EXPORT_WAIT_SECONDS = 6 * 3600
STRATEGIES = ("auto", "scan", "export")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------ checkpoints
class Checkpoints:
    """A job's checkpoint in the stack's state file (``jobs.<job>``, StateStore.save_job: the
    whole file replaced atomically on every save). Pass the command's own StateStore (it holds
    the stack lock); without one, the state file is opened here (tests, tools)."""

    JOB = "backfill"
    RESTART_HINT = "run `s3tstream backfill --restart` to start over, or `s3tstream backfill --abort` to give it up"
    COMMAND = "s3tstream backfill"  # who runs an export with this checkpoint (messages)
    AFTER_FAILED_EXPORT = "`s3tstream backfill --restart`"
    OTHERWISE = "use --strategy scan"  # what to do instead of an export
    LEGACY = "{stack}.backfill.json"  # where s3tstream 0.1 kept it, beside the state file

    def __init__(self, cfg: "Config", state: "StateStore | None" = None) -> None:
        self.cfg = cfg
        self.path: Path = cfg.state_path  # where it lives, for messages
        self._state = state

    @property
    def state(self) -> "StateStore":
        if self._state is None:
            from s3tstream.state import StateStore

            self._state = StateStore(self.cfg.state_path, self.cfg.stack.name, self.cfg.stack.region)
        return self._state

    def exists(self) -> bool:
        return self.state.job(self.JOB) is not None

    def load(self) -> dict[str, Any] | None:
        doc = self.state.job(self.JOB)
        if doc is None:
            doc = self._adopt_legacy()
        if doc is None:
            return None
        where = f"{self.JOB} checkpoint (jobs.{self.JOB} in {self.path})"
        if doc.get("version") != CHECKPOINT_VERSION:
            raise StateError(f"{where} has an unknown version {doc.get('version')!r}", self.RESTART_HINT)
        want = {"stack": self.cfg.stack.name, "region": self.cfg.stack.region, "table": self.cfg.names.source_table,
                "stream": self.cfg.names.stream, "mode": self.cfg.table.mode}
        for k, v in want.items():
            if doc.get(k) != v:
                raise StateError(f"{where} is for {k} {doc.get(k)!r}, but the config says {v!r}", self.RESTART_HINT)
        return doc

    def _adopt_legacy(self) -> dict[str, Any] | None:
        """A checkpoint an older s3tstream kept in a file of its own: moved into the state file,
        so an upgrade in the middle of a backfill continues it (and never exports twice)."""
        old = self.cfg.state_dir / self.LEGACY.format(stack=self.cfg.stack.name)
        if not self.LEGACY or not old.exists():
            return None
        try:
            doc = json.loads(old.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise StateError(f"the {self.JOB} checkpoint {old} (from an older s3tstream) is corrupt: {e}",
                             f"delete it, then {self.RESTART_HINT.removeprefix('run ')}") from None
        self.save(doc)
        old.unlink()
        return self.state.job(self.JOB)

    def save(self, doc: dict[str, Any]) -> None:
        doc["updated_at"] = _now_iso()
        self.state.save_job(self.JOB, doc)

    def delete(self) -> None:
        self.state.drop_job(self.JOB)

    def new(self, strategy: str, **fields: Any) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "stack": self.cfg.stack.name, "region": self.cfg.stack.region,
                "table": self.cfg.names.source_table, "stream": self.cfg.names.stream, "mode": self.cfg.table.mode,
                "strategy": strategy, "run_id": uuid.uuid4().hex[:12], "started_at": time.time(),
                "created_at": _now_iso(), "phase": "scan" if strategy == "scan" else "export", **fields}


# ------------------------------------------------------------------ rate limit
class TokenBucket:
    """Tokens refill at ``rate`` a second up to ``burst``; a caller waits until the bucket is not
    in debt, reads, then is charged what the read cost (capacity units or items). rate <= 0:
    no limit."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.last = clock()
        self.lock = threading.Lock()
        self.waited = 0.0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def wait(self, stop: threading.Event | None = None) -> None:
        if self.rate <= 0:
            return
        while True:
            with self.lock:
                self._refill()
                if self.tokens >= 0:
                    return
                delay = -self.tokens / self.rate
            if stop is not None and stop.is_set():
                return
            delay = min(delay, 1.0)
            self.waited += delay
            self.sleep(delay)

    def charge(self, n: float) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            self._refill()
            self.tokens -= n


# ------------------------------------------------------------------ result
@dataclass
class Result:
    strategy: str
    table: str
    stream: str
    segments: int = 0
    resumed: bool = False
    items_read: int = 0  # this run
    items_sent: int = 0  # this run
    total_read: int = 0  # every run of this backfill
    total_sent: int = 0
    segments_done_before: int = 0
    skipped_oversize: list[dict[str, Any]] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    scan_seconds: float = 0.0  # reading and sending (the rate of items_per_second)
    rate_limit: str = ""
    catch_up: dict[str, Any] | None = None
    export: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        t = self.scan_seconds or self.elapsed_seconds
        return self.items_read / t if t > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "table": self.table, "stream": self.stream, "segments": self.segments,
            "resumed": self.resumed, "segments_done_before": self.segments_done_before,
            "items_read": self.items_read, "items_sent": self.items_sent,
            "total_read": self.total_read, "total_sent": self.total_sent,
            "skipped_oversize": len(self.skipped_oversize), "skipped_examples": self.skipped_oversize[:5],
            "elapsed_seconds": round(self.elapsed_seconds, 3), "scan_seconds": round(self.scan_seconds, 3),
            "items_per_second": round(self.items_per_second, 1),
            "rate_limit": self.rate_limit, "catch_up": self.catch_up, "export": self.export, "notes": self.notes,
        }


# ------------------------------------------------------------------ preflight
def check_destination(cfg: "Config", aws: "Aws") -> str:
    """Exit 2 unless the stack's stream is an ACTIVE Kinesis streaming destination of the table."""
    table = cfg.names.source_table
    stream_arn = aws.arn("kinesis", f"stream/{cfg.names.stream}")
    try:
        r = aws.client("dynamodb").describe_kinesis_streaming_destination(TableName=table)
    except ClientError as e:
        if is_not_found(e):
            raise UsageError(f"the source table {table} does not exist", "run `s3tstream up` first") from None
        raise translate(e, f"reading the Kinesis streaming destination of {table}") from None
    except BotoCoreError as e:
        raise translate(e, f"reading the Kinesis streaming destination of {table}") from None
    dests = r.get("KinesisDataStreamDestinations", [])
    ours = next((d for d in dests if d.get("StreamArn") == stream_arn), None)
    status = ours.get("DestinationStatus") if ours else None
    if status in ("ACTIVE", "UPDATING"):
        return ours.get("ApproximateCreationDateTimePrecision") or "MILLISECOND"
    other = next((d for d in dests if d.get("DestinationStatus") == "ACTIVE"), None)
    if other is not None:
        raise UsageError(
            f"table {table} streams to {other['StreamArn']}, not to the stack's stream {cfg.names.stream}",
            "set stream.name to that stream, or disable that destination and run `s3tstream up`",
        )
    what = f"is {status}" if status else "is not enabled"
    raise UsageError(
        f"refusing to backfill: the Kinesis streaming destination of table {table} to stream {cfg.names.stream} {what}; "
        "changes made between the snapshot and the stream would be lost",
        "run `s3tstream up` (step create-stream) and wait until it is ACTIVE, then run the backfill again",
    )


def check_firehose(cfg: "Config", aws: "Aws") -> None:
    name = cfg.names.firehose
    try:
        d = aws.client("firehose").describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    except ClientError as e:
        if is_not_found(e):
            raise UsageError(f"refusing to backfill: the Firehose stream {name} does not exist, so nothing would "
                             "carry the records to the lake", "run `s3tstream up` first") from None
        raise translate(e, f"reading the Firehose stream {name}") from None
    except BotoCoreError as e:
        raise translate(e, f"reading the Firehose stream {name}") from None
    if d.get("DeliveryStreamStatus") != "ACTIVE":
        raise UsageError(f"refusing to backfill: the Firehose stream {name} is {d.get('DeliveryStreamStatus')}",
                         "run `s3tstream up` and wait until it is ACTIVE")


def describe_table(cfg: "Config", aws: "Aws") -> dict[str, Any]:
    table = cfg.names.source_table
    try:
        return aws.client("dynamodb").describe_table(TableName=table)["Table"]
    except ClientError as e:
        if is_not_found(e):
            raise UsageError(f"the source table {table} does not exist", "run `s3tstream up` first") from None
        raise translate(e, f"describing the source table {table}") from None
    except BotoCoreError as e:
        raise translate(e, f"describing the source table {table}") from None


def read_rate(cfg: "Config", desc: dict[str, Any]) -> tuple[float, str, str]:
    """(rate, unit, text): RCU/s on a provisioned table, items/s on an on-demand one (0: none)."""
    billing = desc.get("BillingModeSummary", {}).get("BillingMode")
    rcu = desc.get("ProvisionedThroughput", {}).get("ReadCapacityUnits") or 0
    if billing != "PAY_PER_REQUEST" and rcu > 0:
        rate = cfg.backfill.max_read_share * rcu
        return rate, "rcu", f"{rate:g} read capacity units/s ({cfg.backfill.max_read_share:g} of {rcu})"
    ips = cfg.backfill.items_per_second
    return float(ips), "items", (f"{ips} items/s" if ips else "none")


# ------------------------------------------------------------------ change records
def key_attrs(cfg: "Config") -> list[str]:
    return [cfg.source.partition_key.name] + ([cfg.source.sort_key.name] if cfg.source.sort_key else [])


def approx_at(cfg: "Config", epoch_seconds: float) -> int:
    """ApproximateCreationDateTime at the stream's precision, dated CLOCK_SKEW_US earlier."""
    us = int(epoch_seconds * 1_000_000) - CLOCK_SKEW_US
    return us if cfg.stream.timestamp_precision == "MICROSECOND" else us // 1000


def encode(record: dict[str, Any]) -> tuple[bytes, str]:
    data = json.dumps(record, separators=(",", ":")).encode()
    return data, partition_key(record["dynamodb"]["Keys"])


def build_entries(cfg: "Config", items: list[dict[str, Any]], read_at: float,
                  skipped: list[dict[str, Any]] | None = None) -> list[tuple[bytes, str]]:
    """Wire-JSON items -> (data, partition key) of INSERT backfill records; items whose record
    would exceed Kinesis' 1 MiB are skipped (DynamoDB's own stream skips them too).

    The records are ``encode(change_record(cfg, "INSERT", keys, item, ...))``: what the records
    of a page share (region, table, source, read time, precision, layout) comes from one
    change_record; per item only eventID, Keys, NewImage and SizeBytes are set (as change_record
    sets them), which costs a third of a change_record per item."""
    from s3tstream.data.items import item_size

    attrs = key_attrs(cfg)
    when = approx_at(cfg, read_at)
    base = change_record(cfg, "INSERT", {}, {}, source=SOURCE, approx=when)
    base_ddb = base["dynamodb"]
    dumps = json.JSONEncoder(separators=(",", ":")).encode  # json.dumps(..., separators=(",", ":"))
    uuid4 = uuid.uuid4
    out = []
    for it in items:
        keys = {a: it[a] for a in attrs if a in it}
        rec = {**base, "eventID": str(uuid4()),
               "dynamodb": {**base_ddb, "Keys": keys, "NewImage": it, "SizeBytes": item_size(keys) + item_size(it)}}
        data, pk = dumps(rec).encode(), partition_key(keys)
        if len(data) + len(pk) > KINESIS_RECORD_BYTES:
            if skipped is not None:
                skipped.append(keys)
            continue
        out.append((data, pk))
    return out


def _quiet(progress: Progress) -> Progress:
    return lambda m: progress(m) if "throttled" in m else None


# ------------------------------------------------------------------ responses taken as wire JSON
class _Wire(threading.local):
    want: str | None = None  # the member of the next successful response to take as wire JSON
    taken: list[Any] | None = None


_WIRE = _Wire()
_WIRE_HOOK = "s3tstream-backfill-wire"
_WIRE_LOCK = threading.Lock()


def _take_wire(response_dict: dict[str, Any], **_: Any) -> None:
    """``before-parse`` hook: when this thread asked for it, take the list ``_WIRE.want`` out of a
    successful JSON response before botocore parses it. botocore parses item trees (Scan) and
    records (GetRecords) shape by shape, several times the cost of json.loads; the backfill wants
    the items in wire JSON anyway (what from_boto makes of botocore's result) and of the records
    only the bytes, sequence numbers and arrival times. The rest of the response is parsed as usual."""
    want = _WIRE.want
    if want is None or response_dict.get("status_code") != 200:
        return
    try:
        doc = json.loads(response_dict["body"])
    except (KeyError, TypeError, ValueError):
        return  # botocore's parser reports it
    if not isinstance(doc, dict) or not isinstance(doc.get(want), list):
        return
    _WIRE.taken = doc.pop(want)
    response_dict["body"] = json.dumps(doc).encode()


def call_wire(client: Any, method: str, member: str, **kw: Any) -> tuple[dict[str, Any], list[Any] | None]:
    """``client.<method>(**kw)`` with its list ``member`` as wire JSON: (response without it, the
    list), or (the response as botocore parsed it, None) for a client without botocore events."""
    meta = getattr(client, "meta", None)
    if getattr(meta, "events", None) is None:
        return getattr(client, method)(**kw), None
    service, op = meta.service_model.service_id.hyphenize(), meta.method_to_api_mapping[method]
    with _WIRE_LOCK:  # register once per client and operation (unique_id), not once per thread
        meta.events.register(f"before-parse.{service}.{op}", _take_wire, unique_id=f"{_WIRE_HOOK}:{service}:{op}")
    _WIRE.want, _WIRE.taken = member, None
    try:
        resp = getattr(client, method)(**kw)
    finally:
        _WIRE.want = None
    taken, _WIRE.taken = _WIRE.taken, None
    return resp, taken


# ------------------------------------------------------------------ the scan strategy
class ScanBackfill:
    def __init__(self, cfg: "Config", aws: "Aws", store: Checkpoints, doc: dict[str, Any], desc: dict[str, Any], *,
                 progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep,
                 on_page: Callable[[int, list[dict[str, Any]]], None] | None = None) -> None:
        self.cfg, self.aws, self.store, self.doc = cfg, aws, store, doc
        self.progress = progress
        self.sleep = sleep
        self.on_page = on_page  # tests: called with each page's items before they are sent
        self.stop = threading.Event()
        self.lock = threading.Lock()
        rate, self.unit, self.rate_text = read_rate(cfg, desc)
        self.bucket = TokenBucket(rate, sleep=sleep)
        self.estimate = int(desc.get("ItemCount") or 0)
        self.skipped: list[dict[str, Any]] = []
        self.read = 0
        self.sent = 0
        self.items_per_rcu = 8.0  # refined from each page (0.5 RCU per 4 KB read, eventually consistent)
        self.tick = _Throttle(progress, every=2.0)
        self.t0 = time.monotonic()

    def _limit(self) -> int | None:
        """Items per Scan page: sized to the rate limit (a page's cost is charged after it is
        read); without a limit, DynamoDB's own 1 MB pages (a checkpoint per page either way)."""
        n = int(self.doc["segments"])
        if self.bucket.rate <= 0:
            return None
        per_seg = self.bucket.rate / n
        want = per_seg * (self.items_per_rcu if self.unit == "rcu" else 1.0)
        return max(10, min(MAX_PAGE_ITEMS, int(want)))

    def _report(self, force: bool = False) -> None:
        segs = self.doc["segment_state"]
        total = sum(s["read"] for s in segs)
        elapsed = max(1e-6, time.monotonic() - self.t0)
        rate = self.read / elapsed
        left = sum(1 for s in segs if not s["done"])
        of = f" of ~{self.estimate:,} ({min(100, 100 * total // self.estimate)}%)" if self.estimate else ""
        if not left:
            eta = "done"
        elif self.estimate > total and rate > 0:
            eta = f"ETA {_duration((self.estimate - total) / rate)}"
        else:
            eta = "ETA unknown"  # DescribeTable's ItemCount is refreshed only about every 6 hours
        self.tick(f"backfill: {total:,}{of} items read, {self.sent:,} sent this run, {rate:,.0f} items/s, {eta}, "
                  f"{left} of {len(segs)} segment(s) left", force=force)

    def _read(self, seg: int, lek: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None, float] | None:
        """The Scan page of segment ``seg`` after ``lek``: (items, its LastEvaluatedKey, both in
        wire JSON, the time it was read), after the rate limit allowed it; None once stopped."""
        from s3tstream.data.items import from_boto, to_boto

        self.bucket.wait(self.stop)
        if self.stop.is_set():
            return None
        total = int(self.doc["segments"])
        table = self.cfg.names.source_table
        kw: dict[str, Any] = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
        if total > 1:
            kw.update(Segment=seg, TotalSegments=total)
        limit = self._limit()
        if limit:
            kw["Limit"] = limit
        if lek:
            kw["ExclusiveStartKey"] = to_boto(lek)
        read_at = time.time()
        try:
            page, wire = call_wire(self.aws.client("dynamodb"), "scan", "Items", **kw)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"scanning {table} (segment {seg} of {total})") from None
        items = wire if wire is not None else [from_boto(i) for i in page.get("Items", [])]
        consumed = float(page.get("ConsumedCapacity", {}).get("CapacityUnits", 0) or 0)
        if self.unit == "rcu":
            if not consumed:
                consumed = max(0.5, len(items) / self.items_per_rcu)
            elif items:
                self.items_per_rcu = max(1.0, 0.7 * self.items_per_rcu + 0.3 * len(items) / consumed)
            self.bucket.charge(consumed)
        else:
            self.bucket.charge(len(items))
        nxt = page.get("LastEvaluatedKey")
        return items, (from_boto(nxt) if nxt else None), read_at

    def _segment(self, seg: int) -> None:
        """Reads one page ahead: the next page is read while this one is sent. The checkpoint
        moves past a page only once Kinesis accepted all of it, so a page read ahead and not sent
        (stopped, failed) is read again by the next run."""
        cfg = self.cfg
        kinesis = self.aws.client("kinesis")
        st = self.doc["segment_state"][seg]
        if st["done"] or self.stop.is_set():
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"backfill-read-{seg}") as ahead:
            pending: Future[Any] | None = ahead.submit(self._read, seg, st.get("lek"))
            try:
                while pending is not None:
                    page = pending.result()
                    pending = None
                    if page is None:
                        return
                    items, lek, read_at = page
                    if lek is not None:
                        pending = ahead.submit(self._read, seg, lek)
                    if self.on_page is not None:
                        self.on_page(seg, items)
                    skipped: list[dict[str, Any]] = []
                    entries = build_entries(cfg, items, read_at, skipped)
                    sent = put_records(kinesis, cfg.names.stream, entries, progress=_quiet(self.progress),
                                       sleep=self.sleep) if entries else 0
                    with self.lock:
                        st["lek"] = lek
                        st["done"] = lek is None
                        st["read"] += len(items)
                        st["sent"] += sent
                        self.read += len(items)
                        self.sent += sent
                        self.skipped.extend(skipped)
                        self.doc["skipped_oversize"] = self.doc.get("skipped_oversize", 0) + len(skipped)
                        self.store.save(self.doc)
                    self._report()
                    if self.stop.is_set():
                        return
            except BaseException:
                self.stop.set()  # the run stops anyway: a read ahead waiting on the rate limit need not finish
                raise
            finally:
                if pending is not None:
                    pending.cancel()  # not started yet: never reads; else its page is dropped

    def run(self) -> None:
        segs = self.doc["segment_state"]
        todo = [i for i, s in enumerate(segs) if not s["done"]]
        if not todo:
            return
        pool = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="backfill")
        futures = [pool.submit(self._segment, i) for i in todo]
        try:
            while True:
                done, pending = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
                if any(f.exception() for f in done) or not pending:
                    break
        except KeyboardInterrupt:
            self.stop.set()
            wait(futures)
            pool.shutdown()
            self._report(force=True)
            raise Interrupted(
                f"backfill interrupted after {self.read:,} item(s) this run; checkpoints saved in {self.store.path}",
                "run `s3tstream backfill` again: it continues from the checkpoints",
            ) from None
        self.stop.set()
        wait(futures)
        pool.shutdown()
        self._report(force=True)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            e = errors[0]
            hint = f"fix the cause, then run `s3tstream backfill` again: it continues from the checkpoints in {self.store.path}"
            if isinstance(e, AwsError):
                raise AwsError(f"backfill stopped after {self.read:,} item(s) this run: {e.message}", hint, code=e.code)
            if isinstance(e, (ClientError, BotoCoreError)):
                err = translate(e, "backfill")
                raise AwsError(err.message, hint, code=err.code)
            raise e


def _duration(s: float) -> str:
    s = int(s)
    if s < 90:
        return f"{s}s"
    if s < 5400:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


# ------------------------------------------------------------------ catch-up (upsert mode)
def _key_id(keys: dict[str, Any]) -> str:
    return json.dumps(keys, sort_keys=True, separators=(",", ":"))


def _epoch(v: Any) -> float:
    """A record's ApproximateArrivalTimestamp (a datetime from botocore; epoch seconds, or an
    ISO 8601 text, in wire JSON) -> epoch seconds."""
    if isinstance(v, datetime):
        return v.timestamp()
    if isinstance(v, str):
        from botocore.utils import parse_timestamp

        try:
            return float(v)
        except ValueError:
            return parse_timestamp(v).timestamp()
    return float(v or 0)


class StreamReader:
    """Reads the DynamoDB change records (eventSource aws:dynamodb) on every shard of the stream
    from a point in time, remembering where each shard stopped so the next read continues."""

    def __init__(self, client: Any, stream: str, since: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.stream = stream
        self.since = since
        self.sleep = sleep
        self.positions: dict[str, str | None] = {}  # shard -> last sequence number read (None: none yet)
        self.closed: set[str] = set()
        self.records_read = 0

    def _shards(self) -> list[str]:
        out: list[str] = []
        kw: dict[str, Any] = {"StreamName": self.stream}
        while True:
            r = self.client.list_shards(**kw)
            out += [s["ShardId"] for s in r.get("Shards", [])]
            token = r.get("NextToken")
            if not token:
                return out
            kw = {"NextToken": token}

    def _iterator(self, shard: str) -> str | None:
        pos = self.positions.get(shard)
        kw: dict[str, Any] = {"StreamName": self.stream, "ShardId": shard}
        if pos:
            kw.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=pos)
        else:
            kw.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.fromtimestamp(self.since, UTC))
        return self.client.get_shard_iterator(**kw).get("ShardIterator")

    def _read_shard(self, shard: str, until: float) -> dict[str, tuple[dict[str, Any], float]]:
        found: dict[str, tuple[dict[str, Any], float]] = {}
        it = self._iterator(shard)
        while it:
            t = time.monotonic()
            # the records as wire JSON (Data base64, arrival in epoch seconds): botocore's parse of
            # thousands of records (a datetime each) cost more than the rest of the catch-up
            r, wire = call_wire(self.client, "get_records", "Records", ShardIterator=it, Limit=GET_RECORDS_LIMIT)
            recs = wire if wire is not None else r.get("Records", [])
            past = False
            for rec in recs:
                at = _epoch(rec.get("ApproximateArrivalTimestamp"))
                if at > until:
                    past = True
                    break
                self.positions[shard] = rec["SequenceNumber"]
                self.records_read += 1
                data = rec.get("Data", b"")
                if isinstance(data, str):
                    data = base64.b64decode(data)
                if b"aws:dynamodb" not in data:
                    continue  # our own backfill/repair records: not changes
                try:
                    change = json.loads(data)
                except ValueError:
                    continue
                if change.get("eventSource") != "aws:dynamodb":
                    continue
                keys = change.get("dynamodb", {}).get("Keys")
                if isinstance(keys, dict):
                    found[_key_id(keys)] = (keys, at)
            it = r.get("NextShardIterator")
            if it is None:
                self.closed.add(shard)
            if past or not r.get("MillisBehindLatest"):
                break  # at the tip of the shard (MillisBehindLatest 0), or past ``until``
            spent = time.monotonic() - t
            if spent < 0.2 and recs:
                self.sleep(0.2 - spent)  # GetRecords: 5 calls a second per shard
        return found

    def read(self, until: float | None = None) -> dict[str, tuple[dict[str, Any], float]]:
        """Key id -> (Keys, latest arrival time) of changes since the last read (or ``since``)."""
        until = time.time() + 1.0 if until is None else until
        shards = [s for s in self._shards() if s not in self.closed]
        found: dict[str, tuple[dict[str, Any], float]] = {}
        if not shards:
            return found
        with ThreadPoolExecutor(max_workers=min(16, len(shards))) as pool:
            for part in pool.map(lambda s: self._read_shard(s, until), shards):
                for k, (keys, at) in part.items():
                    if k not in found or found[k][1] < at:
                        found[k] = (keys, at)
        return found


class Follower:
    """Reads the stream in the background while the scan runs (``StreamReader.read`` once a
    second), so the catch-up finds most changes already collected and reads only the tail."""

    def __init__(self, reader: StreamReader, interval: float = 1.0) -> None:
        self.reader = reader
        self.interval = interval
        self.changed: dict[str, tuple[dict[str, Any], float]] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backfill-follower", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                merge_changes(self.changed, self.reader.read())
            except Exception as e:  # noqa: BLE001 - the catch-up reads on from the same positions
                self.error = e
                return

    def __enter__(self) -> "Follower":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def merge_changes(into: dict[str, tuple[dict[str, Any], float]], new: dict[str, tuple[dict[str, Any], float]]) -> None:
    for k, (keys, at) in new.items():
        if k not in into or into[k][1] < at:
            into[k] = (keys, at)


def batch_get(client: Any, table: str, keys: list[dict[str, Any]], *, sleep: Callable[[float], None] = time.sleep,
              max_attempts: int = 8) -> dict[str, dict[str, Any]]:
    """Consistent reads of ``keys`` (wire JSON) -> key id -> item (wire JSON); absent keys are left out."""
    from s3tstream.data.items import from_boto, to_boto

    attrs = None
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), BATCH_GET):
        chunk = keys[i:i + BATCH_GET]
        attrs = attrs or list(chunk[0])
        request: dict[str, Any] = {table: {"Keys": [to_boto(k) for k in chunk], "ConsistentRead": True}}
        attempt = 0
        while request:
            r = client.batch_get_item(RequestItems=request)
            for it in r.get("Responses", {}).get(table, []):
                item = from_boto(it)
                out[_key_id({a: item[a] for a in attrs if a in item})] = item
            request = r.get("UnprocessedKeys") or {}
            if request:
                attempt += 1
                if attempt >= max_attempts:
                    raise AwsError(f"DynamoDB left keys unprocessed after {attempt} attempts", "run the backfill again", code="throttled")
                sleep(min(5.0, 0.1 * 2 ** attempt))
    return out


def stream_reader(cfg: "Config", aws: "Aws", since: float, *, sleep: Callable[[float], None] = time.sleep) -> StreamReader:
    return StreamReader(aws.client("kinesis"), cfg.names.stream, since - CLOCK_SKEW_US / 1e6, sleep=sleep)


def retention_note(cfg: "Config", aws: "Aws", since: float) -> str | None:
    """A warning when the stream no longer holds every record since ``since``."""
    try:
        hours = aws.client("kinesis").describe_stream_summary(StreamName=cfg.names.stream)[
            "StreamDescriptionSummary"]["RetentionPeriodHours"]
    except (ClientError, BotoCoreError, KeyError):
        return None
    if time.time() - since > hours * 3600 - 600:
        return (f"the backfill started more than the stream's retention ({hours} h) ago: changes older than that are "
                "no longer on the stream, so the catch-up cannot see them; run `s3tstream verify --repair`")
    return None


def catch_up(cfg: "Config", aws: "Aws", since: float, *, progress: Progress = lambda m: None,
             sleep: Callable[[float], None] = time.sleep, rounds: int = CATCH_UP_ROUNDS,
             follower: Follower | None = None) -> dict[str, Any]:
    """Send again, with their current value, the keys DynamoDB changed since ``since`` (upsert).

    ``follower``: what a Follower read during the scan; the stream is read on from there."""
    table, stream = cfg.names.source_table, cfg.names.stream
    kinesis, ddb = aws.client("kinesis"), aws.client("dynamodb")
    margin = CLOCK_SKEW_US / 1e6
    reader = follower.reader if follower else stream_reader(cfg, aws, since, sleep=sleep)
    stats = {"since": datetime.fromtimestamp(since, UTC).isoformat(timespec="seconds"), "rounds": 0,
             "changed_keys": 0, "resent": 0, "removed": 0, "records_read": 0, "unsettled": 0}
    try:
        progress(f"catch-up: reading the changes made since {stats['since']} from {stream}")
        changed = dict(follower.changed) if follower else {}
        merge_changes(changed, reader.read())
        stats["changed_keys"] = len(changed)
        todo = {k: v[0] for k, v in changed.items()}
        for r in range(rounds):
            if not todo:
                break
            stats["rounds"] = r + 1
            read_at = time.time()
            items = batch_get(ddb, table, list(todo.values()), sleep=sleep)
            when = approx_at(cfg, read_at)
            recs = []
            for kid, keys in todo.items():
                item = items.get(kid)
                if item is not None:
                    recs.append(change_record(cfg, "INSERT", keys, item, source=SOURCE, approx=when))
                else:
                    recs.append(change_record(cfg, "REMOVE", keys, source=SOURCE, approx=when))
                    stats["removed"] += 1
            entries = [encode(x) for x in recs]
            entries = [e for e in entries if len(e[0]) + len(e[1]) <= KINESIS_RECORD_BYTES]
            stats["resent"] += put_records(kinesis, stream, entries, progress=_quiet(progress), sleep=sleep)
            progress(f"catch-up round {r + 1}: sent {len(entries)} changed key(s) again")
            # keys changed again after we read them may have landed before our record: once more
            again = reader.read()
            todo = {k: todo[k] for k, (_, at) in again.items() if k in todo and at >= read_at - margin}
        stats["unsettled"] = len(todo)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"catching up with the changes on {stream}") from None
    stats["records_read"] = reader.records_read
    return stats


# ------------------------------------------------------------------ the export strategy: SQL
def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _qi(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def trino_type(t: T.IcebergType) -> str:
    """An Iceberg type -> the Athena (Trino) SQL type of its values."""
    if isinstance(t, T.DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    if isinstance(t, T.Primitive):
        return {"string": "VARCHAR", "boolean": "BOOLEAN", "int": "INTEGER", "long": "BIGINT", "float": "REAL",
                "double": "DOUBLE", "date": "DATE", "timestamp": "TIMESTAMP(6)",
                "timestamptz": "TIMESTAMP(6) WITH TIME ZONE", "binary": "VARBINARY"}[t.name]
    if isinstance(t, T.ListType):
        return f"ARRAY({trino_type(t.element)})"
    if isinstance(t, T.MapType):
        return f"MAP(VARCHAR, {trino_type(t.value)})"
    if isinstance(t, T.StructType):
        return "ROW(" + ", ".join(f"{_qi(f.name)} {trino_type(f.type)}" for f in t.fields) + ")"
    raise ValueError(f"unsupported type {t}")  # pragma: no cover


_SET_TAG = {"string": "SS", "binary": "BS"}


def value_sql(t: T.IcebergType, av: str, depth: int = 0) -> str:
    """SQL turning ``av`` (a JSON DynamoDB attribute value, or NULL) into a value of type ``t``,
    following transform.mapping's rules (see the module docstring for the differences)."""
    def x(tag: str) -> str:
        return f"json_extract_scalar({av}, '$.{tag}')"

    if isinstance(t, T.DecimalType):
        return f"CAST({x('N')} AS {trino_type(t)})"
    if isinstance(t, T.Primitive):
        p = t.name
        if p == "string":
            return f"COALESCE({x('S')}, {x('N')}, {x('BOOL')}, {x('B')})"
        if p == "boolean":
            return f"CAST({x('BOOL')} AS BOOLEAN)"
        if p in ("int", "long"):
            typ = "INTEGER" if p == "int" else "BIGINT"
            return f"COALESCE(TRY_CAST({x('N')} AS {typ}), CAST(CAST({x('N')} AS DOUBLE) AS {typ}))"
        if p in ("float", "double"):
            return f"CAST({x('N')} AS {'REAL' if p == 'float' else 'DOUBLE'})"
        if p == "binary":
            return f"from_base64({x('B')})"
        n = f"CAST({x('N')} AS DECIMAL(38,9))"
        # epoch seconds, or milliseconds when abs(N) >= 1e11 (transform.mapping)
        nanos = (f"from_unixtime_nanos(CAST(floor({n} * CASE WHEN abs({n}) >= 100000000000 THEN 1000000 "
                 f"ELSE 1000000000 END) AS BIGINT))")
        if p == "date":
            return f"COALESCE(TRY(from_iso8601_date(substr({x('S')}, 1, 10))), CAST({nanos} AS DATE))"
        ts = f"COALESCE(TRY(from_iso8601_timestamp_nanos({x('S')})), {nanos})"
        if p == "timestamptz":
            return f"CAST(at_timezone({ts}, 'UTC') AS TIMESTAMP(6) WITH TIME ZONE)"
        return f"CAST(at_timezone({ts}, 'UTC') AS TIMESTAMP(6))"
    v = f"x{depth}"
    if isinstance(t, T.ListType):
        parts = [f"transform(CAST(json_extract({av}, '$.L') AS ARRAY(JSON)), {v} -> {value_sql(t.element, v, depth + 1)})"]
        el = t.element
        if isinstance(el, (T.Primitive, T.DecimalType)):
            tags = [_SET_TAG.get(el.name, "SS")] if isinstance(el, T.Primitive) and el.name in _SET_TAG else []
            if isinstance(el, T.DecimalType) or el.name in ("int", "long", "float", "double", "string"):
                tags.append("NS")
            for tag in dict.fromkeys(tags):
                inner = {"SS": "S", "NS": "N", "BS": "B"}[tag]
                wrapped = f"json_parse(concat('{{\"{inner}\":', json_format({v}), '}}'))"
                parts.append(f"array_sort(transform(CAST(json_extract({av}, '$.{tag}') AS ARRAY(JSON)), "
                             f"{v} -> {value_sql(el, wrapped, depth + 1)}))")
        return parts[0] if len(parts) == 1 else f"COALESCE({', '.join(parts)})"
    if isinstance(t, T.MapType):
        return (f"transform_values(CAST(json_extract({av}, '$.M') AS MAP(VARCHAR, JSON)), "
                f"(k{depth}, {v}) -> {value_sql(t.value, v, depth + 1)})")
    if isinstance(t, T.StructType):
        m = f"CAST(json_extract({av}, '$.M') AS MAP(VARCHAR, JSON))"
        fields = ", ".join(value_sql(f.type, f"element_at({m}, {_lit(f.name)})", depth + 1) for f in t.fields)
        return f"CASE WHEN json_extract({av}, '$.M') IS NULL THEN NULL ELSE CAST(ROW({fields}) AS {trino_type(t)}) END"
    raise ValueError(f"unsupported type {t}")  # pragma: no cover


def export_columns(cfg: "Config") -> list[tuple[str, T.IcebergType, str]]:
    """(column, type, DynamoDB attribute) of every column the transform fills from the item."""
    from s3tstream.data.items import transform_settings

    return [(c.name, c.type, c.source) for c in transform_settings(cfg).columns]


EXPORT_ITEM = "item"


def export_items_sql(source_table: str) -> str:
    """Each line of the export (``{"Item": {...}}``) as a map of attribute -> DynamoDB JSON value."""
    return f"SELECT CAST(json_extract(line, '$.Item') AS MAP(VARCHAR, JSON)) AS {EXPORT_ITEM} FROM {source_table}"


def column_exprs(cfg: "Config") -> list[str]:
    """``<value> AS "<column>"`` over an export item, per column the transform fills."""
    return [f"{value_sql(t, f'element_at({EXPORT_ITEM}, {_lit(attr)})')} AS {_qi(name)}"
            for name, t, attr in export_columns(cfg)]


def export_select(cfg: "Config", source_table: str, export_id: str, export_time_iso: str) -> tuple[list[str], str]:
    """(columns, SELECT over the export's external table) giving the rows the transform would write."""
    item = EXPORT_ITEM
    exprs = column_exprs(cfg)
    names = [n for n, _, _ in export_columns(cfg)]
    if cfg.table.mode == "changelog":
        key_json = " || '|' || ".join(f"json_format(element_at({item}, {_lit(a)}))" for a in key_attrs(cfg))
        exprs += ["'backfill' AS \"_op\"",
                  f"CAST(from_iso8601_timestamp_nanos({_lit(export_time_iso)}) AS TIMESTAMP(6) WITH TIME ZONE) AS \"_event_time\"",
                  f"concat({_lit('export:' + export_id + ':')}, {key_json}) AS \"_event_id\""]
        names += ["_op", "_event_time", "_event_id"]
    return names, "SELECT " + ",\n       ".join(exprs) + f"\nFROM ({export_items_sql(source_table)})"


def load_sql(cfg: "Config", source_table: str, export_id: str, export_time_iso: str) -> str:
    """The one Athena statement that loads the export into the lake table."""
    names, select = export_select(cfg, source_table, export_id, export_time_iso)
    target = f"{_qi(cfg.names.namespace)}.{_qi(cfg.names.table)}"
    cols = ", ".join(_qi(n) for n in names)
    if cfg.table.mode == "changelog":
        return f"INSERT INTO {target} ({cols})\n{select}"
    keys = [c for _, c in cfg.key_columns()]
    on = " AND ".join(f"t.{_qi(k)} = s.{_qi(k)}" for k in keys)
    vals = ", ".join(f"s.{_qi(n)}" for n in names)
    return (f"MERGE INTO {target} AS t\nUSING ({select}) AS s\nON ({on})\n"
            f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({vals})")


PERMISSION_WORDS = ("Lake Formation", "AccessDenied", "Access Denied", "not authorized", "PERMISSION_DENIED")


def load_permission_hint(cfg: "Config") -> str:
    """What the principal running the load needs (Athena runs it with the caller's rights)."""
    return (f"the principal running `s3tstream backfill` needs Lake Formation SELECT, INSERT, DELETE and DESCRIBE "
            f"on {cfg.names.namespace}.{cfg.names.table} in s3tablescatalog/{cfg.names.table_bucket} (a data lake "
            f"administrator can grant them to itself), glue:GetTable/CreateTable/DeleteTable on the temporary "
            f"database {temp_database(cfg)}, and s3:GetObject/ListBucket on the export prefix; then run "
            "`s3tstream backfill` again (the export is kept)")


def check_exportable(cfg: "Config", what: str = "strategy export", otherwise: str = "use --strategy scan") -> None:
    if cfg.table.extra_column:
        raise UsageError(
            f"{what} cannot fill table.extra_column the way the transform does",
            f"{otherwise} (it maps every item with the transform)",
        )


# ------------------------------------------------------------------ the export strategy: steps
def temp_database(cfg: "Config") -> str:
    """The Glue database of the stack's temporary export tables (Glue names: lower case, _)."""
    return f"s3tstream_{cfg.stack.name.replace('-', '_')}_backfill"


def temp_names(cfg: "Config", export_id: str) -> tuple[str, str]:
    db = temp_database(cfg)
    tbl = "export_" + "".join(ch if ch.isalnum() else "_" for ch in export_id.lower())
    return db, tbl


def export_location(cfg: "Config", aws: "Aws", progress: Progress) -> tuple[str, str]:
    p = cfg.backfill.export_prefix
    if p.startswith("s3://"):
        bucket, _, prefix = p[5:].partition("/")
        return bucket, prefix
    from s3tstream.lake.query import ensure_results_bucket

    bucket = cfg.names.results_bucket(aws.identity().account)
    ensure_results_bucket(cfg, aws, bucket, progress)
    return bucket, p


def pitr_enabled(cfg: "Config", aws: "Aws") -> bool:
    table = cfg.names.source_table
    try:
        d = aws.client("dynamodb").describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"reading the point-in-time recovery status of {table}") from None
    return d.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"


def ensure_pitr(cfg: "Config", aws: "Aws", enable: bool, progress: Progress,
                before_enable: Callable[[], None] = lambda: None, otherwise: str = "use --strategy scan") -> bool:
    """True when this call turned point-in-time recovery on; exit 2 when it is off and not
    allowed. ``before_enable`` runs just before the call (to record the intent)."""
    if pitr_enabled(cfg, aws):
        return False
    table = cfg.names.source_table
    if not enable:
        raise UsageError(
            f"a DynamoDB export needs point-in-time recovery on table {table}, and it is off",
            "run again with --enable-pitr (PITR is billed per GB-month; set source.point_in_time_recovery = true so "
            f"`s3tstream up` keeps it on), or {otherwise}",
        )
    before_enable()
    progress(f"enabling point-in-time recovery on {table}")
    ddb = aws.client("dynamodb")
    try:
        ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"enabling point-in-time recovery on {table}") from None
    wait_until(lambda: (pitr_enabled(cfg, aws), "enabling"), f"point-in-time recovery of {table}",
               timeout=cfg.stack.wait_timeout, interval=cfg.stack.poll_interval, progress=progress)
    return True


def _export_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class ExportBackfill:
    def __init__(self, cfg: "Config", aws: "Aws", store: Checkpoints, doc: dict[str, Any], *, enable_pitr: bool,
                 progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg, self.aws, self.store, self.doc = cfg, aws, store, doc
        self.enable_pitr = enable_pitr
        self.progress = progress
        self.sleep = sleep
        self.ex: dict[str, Any] = doc.setdefault("export", {})

    def _save(self, **kw: Any) -> None:
        self.ex.update(kw)
        self.store.save(self.doc)

    # -- phase 1: export
    def start_export(self) -> None:
        cfg, aws = self.cfg, self.aws
        if self.ex.get("arn"):
            return
        # the intent first: a run killed right after enabling PITR still knows, on resume, that it was this one
        enabled = ensure_pitr(cfg, aws, self.enable_pitr, self.progress, lambda: self._save(pitr_enabling=True),
                              otherwise=self.store.OTHERWISE)
        self.ex["pitr_enabled_by_backfill"] = enabled or bool(self.ex.get("pitr_enabling"))
        bucket, prefix = export_location(cfg, aws, self.progress)
        s3_prefix = f"{prefix}{self.doc['run_id']}"
        self._save(bucket=bucket, prefix=s3_prefix, client_token=self.ex.get("client_token") or uuid.uuid4().hex)
        table_arn = aws.arn("dynamodb", f"table/{cfg.names.source_table}")
        try:
            d = aws.client("dynamodb").export_table_to_point_in_time(
                TableArn=table_arn, S3Bucket=bucket, S3Prefix=s3_prefix, ExportFormat="DYNAMODB_JSON",
                ExportType="FULL_EXPORT", ClientToken=self.ex["client_token"])["ExportDescription"]
        except ClientError as e:
            if error_code(e) == "PointInTimeRecoveryUnavailableException":
                raise UsageError(f"DynamoDB says point-in-time recovery is unavailable on {cfg.names.source_table}: "
                                 f"{e.response.get('Error', {}).get('Message', '')}",
                                 f"run again with --enable-pitr, or {self.store.OTHERWISE}") from None
            raise translate(e, f"exporting {cfg.names.source_table} to s3://{bucket}/{s3_prefix}") from None
        except BotoCoreError as e:
            raise translate(e, "starting the export") from None
        self._save(arn=d["ExportArn"], id=_export_id(d["ExportArn"]))
        self.progress(f"export {self.ex['id']} started to s3://{bucket}/{s3_prefix}")

    def wait_export(self) -> dict[str, Any]:
        ddb = self.aws.client("dynamodb")
        last: dict[str, Any] = {}

        def check() -> tuple[bool, str]:
            try:
                d = ddb.describe_export(ExportArn=self.ex["arn"])["ExportDescription"]
            except (ClientError, BotoCoreError) as e:
                raise translate(e, f"waiting for export {self.ex['id']}") from None
            last.update(d)
            st = d.get("ExportStatus", "IN_PROGRESS")
            if st == "FAILED":
                self._save(status="FAILED")
                raise AwsError(f"export {self.ex['id']} failed: {d.get('FailureCode')}: {d.get('FailureMessage')}",
                               f"fix the cause (bucket permissions, KMS), then {self.store.AFTER_FAILED_EXPORT}")
            return st == "COMPLETED", st

        # exports of large tables take hours; a timeout (or Ctrl-C) leaves the ARN in the checkpoint
        wait_until(check, f"export {self.ex['id']}", timeout=max(self.cfg.stack.wait_timeout, EXPORT_WAIT_SECONDS),
                   interval=self.cfg.stack.poll_interval, max_interval=max(self.cfg.stack.poll_interval, 30.0),
                   progress=self.progress)
        when = last.get("ExportTime") or last.get("StartTime")
        export_time = when.timestamp() if isinstance(when, datetime) else float(when or self.doc["started_at"])
        manifest = last.get("ExportManifest") or f"{self.ex['prefix']}/AWSDynamoDB/{self.ex['id']}/manifest-summary.json"
        data = manifest.rsplit("/", 1)[0] + "/data/"
        self._save(status="COMPLETED", export_time=export_time, item_count=int(last.get("ItemCount") or 0),
                   billed_bytes=int(last.get("BilledSizeBytes") or 0), data_prefix=data)
        return last

    # -- phase 2: the temporary Glue table over the export
    def create_temp_table(self) -> str:
        glue = self.aws.client("glue")
        db, tbl = temp_names(self.cfg, self.ex["id"])
        self._save(glue_database=db, glue_table=tbl)  # the intent first: a killed run's leftovers stay named
        tags = {**self.cfg.stack.tags, **self.cfg.names.stack_tag()}
        try:
            try:
                glue.create_database(DatabaseInput={
                    "Name": db, "Description": f"s3tstream {self.cfg.stack.name}: temporary, for backfill exports",
                    "Parameters": {"s3tstream:stack": self.cfg.stack.name, "s3tstream:purpose": "backfill"}}, Tags=tags)
            except ClientError as e:
                if error_code(e) != "AlreadyExistsException":
                    raise
                params = glue.get_database(Name=db)["Database"].get("Parameters", {})
                if params.get("s3tstream:stack") != self.cfg.stack.name:
                    raise UsageError(f"Glue database {db} exists and is not this stack's",
                                     "drop it or rename the stack") from None
            location = f"s3://{self.ex['bucket']}/{self.ex['data_prefix']}"
            table_input = {
                "Name": tbl, "TableType": "EXTERNAL_TABLE",
                "Parameters": {"EXTERNAL": "TRUE", "classification": "json", "compressionType": "gzip",
                               "s3tstream:stack": self.cfg.stack.name},
                "StorageDescriptor": {
                    "Columns": [{"Name": "line", "Type": "string"}],
                    "Location": location,
                    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                                  "Parameters": {"serialization.format": "1"}},
                },
            }
            try:
                glue.create_table(DatabaseName=db, TableInput=table_input)
            except ClientError as e:
                if error_code(e) != "AlreadyExistsException":
                    raise
        except ClientError as e:
            raise translate(e, f"creating the temporary Glue table {db}.{tbl}") from None
        return f"\"awsdatacatalog\".{_qi(db)}.{_qi(tbl)}"

    # -- phase 3: the Athena load
    def _earlier_load(self, eng: Any) -> dict[str, Any] | None:
        """The earlier load's final QueryExecution when it SUCCEEDED after all. A stop (Ctrl-C) is
        asynchronous: the stopped DML may still commit, and loading again would add the rows twice."""
        qid = self.ex.get("failed_query_id")
        if not qid:
            return None
        try:
            qe = eng.client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
        except ClientError as e:
            if error_code(e) == "InvalidRequestException":  # unknown (expired) query: it did not load
                return None
            raise translate(e, f"reading the earlier load {qid}") from None
        state = qe.get("Status", {}).get("State")
        if state in ("QUEUED", "RUNNING"):
            self.progress(f"the earlier load {qid} is still {state} (stopped, not yet ended): waiting for its end")
            try:
                qe = eng.wait(qid)
            except AwsError:
                return None  # it ended FAILED or CANCELLED: it committed nothing
            state = "SUCCEEDED"
        return qe if state == "SUCCEEDED" else None

    def load(self, source: str) -> dict[str, Any]:
        from s3tstream.lake.query import open_engine

        cfg = self.cfg
        eng = open_engine(cfg, self.aws, "athena", progress=self.progress)
        earlier = self._earlier_load(eng)
        if earlier is not None:
            self._save(loaded=True, query_id=self.ex["failed_query_id"])
            self.progress(f"the earlier load {self.ex['failed_query_id']} committed after all: not loading again")
            return {"query_id": self.ex["query_id"], "statement": "INSERT" if cfg.table.mode == "changelog" else "MERGE",
                    "data_scanned_bytes": earlier.get("Statistics", {}).get("DataScannedInBytes")}
        iso = datetime.fromtimestamp(self.ex["export_time"], UTC).isoformat().replace("+00:00", "Z")
        sql = load_sql(cfg, source, self.ex["id"], iso)
        if not self.ex.get("query_token"):
            self._save(query_token=uuid.uuid4().hex + uuid.uuid4().hex[:8])
        kw: dict[str, Any] = {"QueryString": sql, "ClientRequestToken": self.ex["query_token"],
                              "QueryExecutionContext": {"Catalog": eng.catalog, "Database": eng.database},
                              "WorkGroup": eng.workgroup}
        if eng.output_location:
            kw["ResultConfiguration"] = {"OutputLocation": eng.output_location}
        try:
            # the same ClientRequestToken after a crash returns the same query, never a second load
            qid = eng.client.start_query_execution(**kw)["QueryExecutionId"]
        except ClientError as e:
            raise translate(e, "starting the Athena load of the export") from None
        self._save(query_id=qid)
        self.progress(f"loading the export into {cfg.names.namespace}.{cfg.names.table} with Athena ({qid})")
        try:
            qe = eng.wait(qid)
        except (AwsError, Interrupted) as e:
            # a failed or cancelled (Ctrl-C stops it) Iceberg DML commits nothing: the next run starts a new query
            # (the same token would answer this failed one again)
            self.ex.pop("query_token", None)
            self._save(failed_query_id=qid)
            if isinstance(e, AwsError) and any(w in e.message for w in PERMISSION_WORDS):
                raise AwsError(e.message, load_permission_hint(cfg), code=e.code) from None
            raise
        self._save(loaded=True)
        return {"query_id": qid, "statement": "INSERT" if cfg.table.mode == "changelog" else "MERGE",
                "data_scanned_bytes": qe.get("Statistics", {}).get("DataScannedInBytes")}

    # -- cleanup
    def drop_temp_table(self) -> None:
        db, tbl = self.ex.get("glue_database"), self.ex.get("glue_table")
        if not db:
            return
        glue = self.aws.client("glue")
        for call, kw in ((glue.delete_table, {"DatabaseName": db, "Name": tbl}), (glue.delete_database, {"Name": db})):
            try:
                call(**kw)
            except ClientError as e:
                if not is_not_found(e):
                    raise translate(e, f"removing the temporary Glue objects {db}.{tbl}") from None
        self.ex.pop("glue_database", None)
        self.ex.pop("glue_table", None)
        self.store.save(self.doc)

    def remove_export_files(self) -> int:
        bucket, prefix = self.ex.get("bucket"), self.ex.get("prefix")
        if not bucket or not prefix:
            return 0
        s3 = self.aws.client("s3")
        n = 0
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                    n += len(keys)
        except ClientError as e:
            if not is_not_found(e):
                raise translate(e, f"removing the export files under s3://{bucket}/{prefix}/") from None
        return n

    def run(self) -> dict[str, Any]:
        self.start_export()
        if self.ex.get("status") != "COMPLETED":
            self.wait_export()
        self.doc["phase"] = "load"
        info: dict[str, Any] = {"export_arn": self.ex["arn"], "s3": f"s3://{self.ex['bucket']}/{self.ex['prefix']}/",
                                "items": self.ex.get("item_count", 0),
                                "export_time": datetime.fromtimestamp(self.ex["export_time"], UTC).isoformat(timespec="seconds"),
                                "pitr_enabled_by_backfill": bool(self.ex.get("pitr_enabled_by_backfill"))}
        if not self.ex.get("loaded"):
            try:
                source = self.create_temp_table()
                info["load"] = self.load(source)
            finally:
                try:
                    self.drop_temp_table()
                except Exception as e:  # noqa: BLE001 - never hide the load's own error
                    self.progress(f"could not remove the temporary Glue table: {e}")
        self.doc["phase"] = "catch_up"
        self.store.save(self.doc)
        return info


# ------------------------------------------------------------------ entry point
def default_segments(item_count: int) -> int:
    """One segment for a small table; else at least 4, so reading and sending overlap."""
    return 1 if item_count < 2000 else max(4, auto_segments(item_count))


def choose_strategy(cfg: "Config", requested: str, desc: dict[str, Any], doc: dict[str, Any] | None) -> str:
    if doc is not None:
        if requested not in ("auto", doc["strategy"]):
            raise UsageError(
                f"a {doc['strategy']} backfill is in progress (checkpoint {Checkpoints(cfg).path}), not {requested}",
                f"run `s3tstream backfill` to continue it, or `s3tstream backfill --restart --strategy {requested}`",
            )
        return str(doc["strategy"])
    if requested != "auto":
        return requested
    return "export" if int(desc.get("ItemCount") or 0) >= cfg.backfill.scan_threshold_items else "scan"


def run(cfg: "Config", aws: "Aws", *, strategy: str = "auto", segments: int | None = None, restart: bool = False,
        enable_pitr: bool = False, progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep,
        on_page: Callable[[int, list[dict[str, Any]]], None] | None = None, state: "StateStore | None" = None) -> Result:
    """Run (or continue) the stack's backfill. The caller holds the stack lock (``state``: its
    StateStore, where the checkpoints go)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if segments is not None and not 0 <= segments <= MAX_SEGMENTS:
        raise UsageError(f"--segments must be between 0 and {MAX_SEGMENTS}, not {segments}")
    store = Checkpoints(cfg, state)
    doc = None if restart else store.load()
    desc = describe_table(cfg, aws)
    chosen = choose_strategy(cfg, strategy, desc, doc)
    if chosen == "export":
        check_exportable(cfg)
    check_destination(cfg, aws)
    check_firehose(cfg, aws)
    t0 = time.monotonic()
    restart_notes = discard(store, aws, progress)["notes"] if restart and store.exists() else []
    res = Result(strategy=chosen, table=cfg.names.source_table, stream=cfg.names.stream, resumed=doc is not None)
    res.notes += restart_notes
    follower: Follower | None = None
    if chosen == "scan":
        if doc is not None and segments and segments != doc["segments"]:
            raise UsageError(f"the backfill in progress uses {doc['segments']} segment(s), not {segments}",
                             f"run it with --segments {doc['segments']} (or without), or start over with --restart")
        if doc is None:
            n = segments or cfg.backfill.segments or default_segments(int(desc.get("ItemCount") or 0))
            doc = store.new("scan", segments=n, segment_state=[{"lek": None, "read": 0, "sent": 0, "done": False}
                                                                for _ in range(n)])
            store.save(doc)
        res.segments = int(doc["segments"])
        res.segments_done_before = sum(1 for s in doc["segment_state"] if s["done"])
        if doc["phase"] == "scan":
            sb = ScanBackfill(cfg, aws, store, doc, desc, progress=progress, sleep=sleep, on_page=on_page)
            res.rate_limit = sb.rate_text
            progress(f"backfill: scanning {cfg.names.source_table} in {res.segments} segment(s) "
                     f"({'resuming, ' + str(res.segments_done_before) + ' done' if res.resumed else 'new'}), "
                     f"read rate limit {sb.rate_text}")
            t_scan = time.monotonic()
            follows = cfg.table.mode == "upsert" and cfg.backfill.catch_up
            follower = Follower(stream_reader(cfg, aws, float(doc["started_at"]), sleep=sleep)) if follows else None
            try:
                if follower:
                    with follower:  # collects the changes made while the scan runs
                        sb.run()
                else:
                    sb.run()
            finally:
                res.items_read, res.items_sent, res.skipped_oversize = sb.read, sb.sent, sb.skipped
                res.scan_seconds = time.monotonic() - t_scan
            doc["phase"] = "catch_up"
            store.save(doc)
        since = float(doc["started_at"])
    else:
        if doc is None:
            doc = store.new("export")
            store.save(doc)
        eb = ExportBackfill(cfg, aws, store, doc, enable_pitr=enable_pitr, progress=progress, sleep=sleep)
        if doc["phase"] in ("export", "load"):
            res.export = eb.run()
            res.items_read = res.items_sent = int(eb.ex.get("item_count") or 0)
        else:  # loaded by an earlier run: this one finishes the catch-up and the clean-up
            res.export = {"export_arn": eb.ex.get("arn"), "items": eb.ex.get("item_count", 0),
                          "export_time": datetime.fromtimestamp(eb.ex["export_time"], UTC).isoformat(timespec="seconds"),
                          "pitr_enabled_by_backfill": bool(eb.ex.get("pitr_enabled_by_backfill"))}
        if res.export.get("pitr_enabled_by_backfill") and not cfg.source.point_in_time_recovery:
            res.notes.append("point-in-time recovery stays on (it is billed); `s3tstream up` turns it off again "
                             "unless source.point_in_time_recovery = true")
        since = float(eb.ex["export_time"])
    if doc["phase"] == "catch_up":
        if cfg.table.mode == "upsert" and cfg.backfill.catch_up:
            note = retention_note(cfg, aws, since)
            if note:
                res.notes.append(note)
            t_cu = time.monotonic()
            res.catch_up = catch_up(cfg, aws, since, progress=progress, sleep=sleep, follower=follower)
            res.catch_up["seconds"] = round(time.monotonic() - t_cu, 3)
            if res.catch_up["unsettled"]:
                res.notes.append(f"{res.catch_up['unsettled']} key(s) kept changing during the catch-up; their next "
                                 "change record sets them right")
        elif cfg.table.mode == "changelog":
            res.notes.append("changelog mode: backfill rows are dated at their read, so newer changes win by _event_time")
        else:
            res.notes.append("backfill.catch_up = false: an item changed while the backfill ran may keep its older "
                             "value until its next change; `s3tstream verify --repair` fixes it")
        doc["phase"] = "cleanup"
        store.save(doc)
    if chosen == "export":
        removed = ExportBackfill(cfg, aws, store, doc, enable_pitr=False, progress=progress).remove_export_files()
        res.export = {**(res.export or {}), "removed_objects": removed}
    if chosen == "scan":
        segs = doc["segment_state"]
        res.total_read = sum(s["read"] for s in segs)
        res.total_sent = sum(s["sent"] for s in segs)
    else:
        res.total_read = res.total_sent = int(doc.get("export", {}).get("item_count") or 0)
    if doc.get("skipped_oversize"):
        res.notes.append(f"{doc['skipped_oversize']} item(s) skipped: their change record exceeds Kinesis' 1 MiB "
                         "(DynamoDB's own stream skips them too)")
    res.elapsed_seconds = time.monotonic() - t0
    store.delete()
    return res



# ------------------------------------------------------------------ giving a job up; `down`
def discard(store: Checkpoints, aws: "Aws", progress: Progress = lambda m: None) -> dict[str, Any]:
    """Give up the job whose checkpoint ``store`` holds: stop its Athena load if one may be
    running, remove its temporary Glue table and export files, forget the checkpoint. Nothing
    already sent to the stream (or loaded) is taken back. A checkpoint unusable for a rerun
    (another table or mode) still names what to remove."""
    cfg = store.cfg
    try:
        doc = store.load()
    except StateError:
        doc = store.state.job(store.JOB)
    doc = doc or {}
    out: dict[str, Any] = {"strategy": doc.get("strategy"), "phase": doc.get("phase"), "removed_objects": 0, "notes": []}
    ex = doc.get("export") or {}
    if doc.get("strategy") == "export":
        if ex.get("query_id") and not ex.get("loaded"):
            try:
                aws.client("athena").stop_query_execution(QueryExecutionId=ex["query_id"])
                out["stopped_query"] = ex["query_id"]
            except ClientError as e:
                if error_code(e) != "InvalidRequestException":  # already finished
                    raise translate(e, f"stopping the Athena load {ex['query_id']}") from None
        eb = ExportBackfill(cfg, aws, store, doc, enable_pitr=False, progress=progress)
        eb.drop_temp_table()
        out["removed_objects"] = eb.remove_export_files()
        if (ex.get("arn") or ex.get("client_token")) and ex.get("status") not in ("COMPLETED", "FAILED"):
            # DynamoDB has no call to cancel an export (and a run killed right after starting one never saw its ARN)
            out["notes"].append(f"an export ({ex.get('id') or 'started, id not recorded'}) may still be running and "
                                f"write its files under s3://{ex.get('bucket')}/{ex.get('prefix')}/; delete them once it ends")
        if (ex.get("pitr_enabled_by_backfill") or ex.get("pitr_enabling")) and not cfg.source.point_in_time_recovery:
            out["notes"].append("point-in-time recovery stays on; `s3tstream up` turns it off again")
    store.delete()
    return out


def abort(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None,
          state: "StateStore | None" = None) -> dict[str, Any]:
    """`backfill --abort`: give up the backfill in progress (see :func:`discard`)."""
    store = Checkpoints(cfg, state)
    if not store.exists():
        return {"aborted": False, "strategy": None, "phase": None, "notes": []}
    return {"aborted": True, **discard(store, aws, progress)}


def _job_stores(cfg: "Config", state: "StateStore | None") -> list[Checkpoints]:
    from s3tstream.data.verify_export import VerifyCheckpoint

    return [Checkpoints(cfg, state), VerifyCheckpoint(cfg, state)]


def _own_temp_database(cfg: "Config", aws: "Aws", progress: Progress) -> bool:
    """Whether the temporary Glue database exists and its parameters name this stack."""
    db = temp_database(cfg)
    try:
        params = aws.client("glue").get_database(Name=db)["Database"].get("Parameters") or {}
    except ClientError as e:
        if not is_not_found(e):  # e.g. no Glue rights: `down` of everything else goes on
            progress(f"could not check for a leftover temporary Glue database {db}: {error_code(e)}")
        return False
    return params.get("s3tstream:stack") == cfg.stack.name


def leftovers(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None,
              state: "StateStore | None" = None) -> list[tuple[str, str]]:
    """(kind, name) of what an interrupted export backfill or `verify --export` left, for `down`
    to list before it asks (read calls only): its checkpoint, export files, and the temporary
    Glue database when its parameters name this stack."""
    out: list[tuple[str, str]] = []
    for store in _job_stores(cfg, state):
        job = store.state.job(store.JOB)
        if job is None:
            continue
        out.append(("checkpoint", f"jobs.{store.JOB} in {store.path}"))
        ex = job.get("export") or {}
        if ex.get("bucket") and ex.get("prefix"):
            out.append(("s3-export-files", f"s3://{ex['bucket']}/{ex['prefix']}/"))
    if _own_temp_database(cfg, aws, progress):
        out.append(("glue-database", temp_database(cfg)))
    return out


def remove_leftovers(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None,
                     state: "StateStore | None" = None) -> list[tuple[str, str]]:
    """Remove what :func:`leftovers` lists; (kind, name) of what was removed."""
    removed: list[tuple[str, str]] = []
    for store in _job_stores(cfg, state):
        job = store.state.job(store.JOB)
        if job is None:
            continue
        out = discard(store, aws, progress)
        for note in out["notes"]:
            progress(note)
        if out["removed_objects"]:
            ex = job.get("export") or {}
            removed.append(("s3-export-files", f"s3://{ex.get('bucket')}/{ex.get('prefix')}/ ({out['removed_objects']} object(s))"))
        removed.append(("checkpoint", f"jobs.{store.JOB} in {store.path}"))
    if _own_temp_database(cfg, aws, progress):
        db = temp_database(cfg)
        try:
            aws.client("glue").delete_database(Name=db)  # Glue deletes its tables with it
        except ClientError as e:
            if not is_not_found(e):
                raise translate(e, f"removing the temporary Glue database {db}") from None
        removed.append(("glue-database", db))
    return removed
