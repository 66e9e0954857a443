"""verify: compare the DynamoDB source table with the lake table; --repair through the stream.

The source side goes through ``transform.map_item`` with the Settings create-firehose deploys
(``steps.delivery.function.transform_settings``), so "the row the pipeline should have written" is
computed by the pipeline's own mapping. Both sides are then canonicalised per Iceberg column
type (:func:`canon`: timestamps as epoch microseconds, dates as ISO dates, decimals at the
column's scale, floats rounded to single precision, binary as base64, nested values from the
engine's JSON) and hashed per column; rows are matched by their key columns.

Reported: missing (in the source, not in the lake), extra (in the lake, not in the source),
differing (both, some column differs: the columns are named), duplicates (a key twice in the
lake), unmappable (source items the transform refuses: they are in the error bucket, see
`s3tstream errors`). Changes younger than the Firehose buffer interval may still be in flight.

``--repair`` sends, for each missing or differing key, the current item as an INSERT change
record, and for each extra key a REMOVE, in the Kinesis Data Streams for DynamoDB format with
eventSource "s3tstream:repair" (the transform treats it like DynamoDB's own records), so the
pipeline itself rewrites the lake. In changelog mode the lake's current view is the latest
change per key that is not a remove.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import struct
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import translate
from s3tstream.errors import AwsError, UsageError
from s3tstream.lake.query import quote_ident
from s3tstream.transform import types as T

if TYPE_CHECKING:
    from s3tstream.config.model import Config
    from s3tstream.transform import Settings

Progress = Callable[[str], None]
EXAMPLES = 5
REPAIR_SOURCE = "s3tstream:repair"
KINESIS_BATCH = 500  # PutRecords: at most 500 records
KINESIS_BATCH_BYTES = 5 * 1024 * 1024  # and 5 MiB per request (data + partition keys)
KINESIS_RECORD_BYTES = 1024 * 1024
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = 1_000_000


# ------------------------------------------------------------------ canonical values
def _f32(x: float) -> float:
    try:
        return struct.unpack("<f", struct.pack("<f", x))[0]
    except OverflowError:
        return x


def _jsonish(v: Any) -> Any:
    """Nested values from Athena arrive as JSON text (json_format(CAST(x AS JSON)))."""
    if isinstance(v, str):
        try:
            return json.loads(v, parse_float=Decimal)
        except ValueError:
            return v
    return v


def ts_micros(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, datetime):
        return (v - (_EPOCH if v.tzinfo is None else _EPOCH_UTC)) // (_EPOCH.resolution)
    if isinstance(v, str):
        s = v.strip()
        for suffix in (" UTC", " Z", "Z"):
            if s.endswith(suffix):
                s = s[: -len(suffix)] + "+00:00"
                break
        try:
            return ts_micros(datetime.fromisoformat(s))
        except ValueError:
            return v
    if isinstance(v, (float, Decimal)):
        return int(v)
    return v


def date_iso(v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int):  # days since the epoch (settings date_format "days")
        return date.fromordinal(date(1970, 1, 1).toordinal() + v).isoformat()
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, str):
        try:
            return date.fromisoformat(v.strip()[:10]).isoformat()
        except ValueError:
            return v
    return v


def canon(t: T.IcebergType, v: Any) -> Any:
    """A value of column type ``t`` from either side -> a canonical JSON-able value."""
    if v is None:
        return None
    try:
        if isinstance(t, T.DecimalType):
            d = Decimal(str(v))
            return format(d.quantize(Decimal(1).scaleb(-t.scale)), "f") if d.is_finite() else str(d)
        if isinstance(t, T.Primitive):
            p = t.name
            if p == "string":
                return v if isinstance(v, str) else str(v)
            if p == "boolean":
                return v if isinstance(v, bool) else str(v).strip().lower() == "true"
            if p in ("int", "long"):
                return int(v)
            if p == "double":
                f = float(v)
                return f if math.isfinite(f) else str(f)
            if p == "float":
                f = _f32(float(v))
                return f if math.isfinite(f) else str(f)
            if p == "date":
                return date_iso(v)
            if p in ("timestamp", "timestamptz"):
                return ts_micros(v)
            if p == "binary":
                raw = bytes(v) if isinstance(v, (bytes, bytearray)) else base64.b64decode(v)
                return base64.b64encode(raw).decode()
            return v
        if isinstance(t, T.ListType):
            v = _jsonish(v)
            return [canon(t.element, x) for x in v]
        if isinstance(t, T.MapType):
            v = _jsonish(v)
            if isinstance(v, list):  # Arrow map as (key, value) pairs
                v = dict(v)
            return {str(k): canon(t.value, v[k]) for k in sorted(v, key=str)}
        if isinstance(t, T.StructType):
            v = _jsonish(v)
            if isinstance(v, list):  # a ROW cast to JSON may come as an array, in field order
                v = {f.name: x for f, x in zip(t.fields, v)}
            return {f.name: canon(f.type, v.get(f.name)) for f in t.fields}
    except (ValueError, TypeError, ArithmeticError, AttributeError, KeyError):
        return repr(v)
    return v


def _hash(v: Any) -> bytes:
    text = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


# ------------------------------------------------------------------ the columns compared
@dataclass(frozen=True)
class Layout:
    columns: tuple[tuple[str, T.IcebergType], ...]  # compared columns (keys first)
    keys: tuple[str, ...]
    key_attrs: tuple[tuple[str, str], ...]  # (DynamoDB attribute, S|N|B) per key column
    mode: str
    table: str

    @classmethod
    def from_config(cls, cfg: "Config", settings: "Settings") -> "Layout":
        cols: list[tuple[str, T.IcebergType]] = [(c.name, c.type) for c in settings.columns]
        if settings.extra_column and settings.extra_column not in {n for n, _ in cols}:
            cols.append((settings.extra_column, T.Primitive("string")))
        keys = tuple(col for _, col in cfg.key_columns())
        order = {k: i for i, k in enumerate(keys)}
        cols.sort(key=lambda c: order.get(c[0], len(order)))
        return cls(tuple(cols), keys, tuple((a.name, a.type) for a, _ in cfg.key_columns()), cfg.table.mode, cfg.names.table)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.columns]

    def key_of(self, row: dict[str, Any]) -> tuple:
        types = dict(self.columns)
        return tuple(canon(types[k], row.get(k)) for k in self.keys)

    def hashes(self, row: dict[str, Any]) -> bytes:
        return b"".join(_hash(canon(t, row.get(n))) for n, t in self.columns)

    def key_dict(self, key: tuple) -> dict[str, Any]:
        return dict(zip(self.keys, key))


def current_rows_sql(layout: Layout, exprs: list[str], where: str = "") -> str:
    """SELECT over the table's current rows (changelog: the latest change per key, not removed)."""
    t = quote_ident(layout.table)
    cond = f" WHERE {where}" if where else ""
    if layout.mode != "changelog":
        return f"SELECT {', '.join(exprs)} FROM {t}{cond}"
    part = ", ".join(quote_ident(k) for k in layout.keys)
    inner = (f"SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY \"_event_time\" DESC, \"_event_id\" DESC) "
             f"AS s3t_rn FROM {t}{cond}")
    return f"SELECT {', '.join(exprs)} FROM ({inner}) WHERE s3t_rn = 1 AND \"_op\" NOT IN ('remove', 'ttl_remove')"


# ------------------------------------------------------------------ the report
@dataclass
class Report:
    source_items: int = 0
    lake_rows: int = 0
    matching: int = 0
    missing: list[tuple] = field(default_factory=list)
    extra: list[tuple] = field(default_factory=list)
    differing: list[tuple[tuple, list[str]]] = field(default_factory=list)
    duplicates: list[tuple] = field(default_factory=list)
    unmappable: list[tuple[Any, str]] = field(default_factory=list)
    data_scanned_bytes: int | None = None
    engine: str = ""
    # current source items of the missing and differing keys (for --repair)
    items: dict[tuple, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.duplicates or self.unmappable)

    def to_json(self, layout: Layout) -> dict[str, Any]:
        kd = layout.key_dict
        return {
            "ok": self.ok,
            "engine": self.engine,
            "counts": {"source_items": self.source_items, "lake_rows": self.lake_rows, "matching": self.matching,
                       "missing": len(self.missing), "extra": len(self.extra), "differing": len(self.differing),
                       "duplicates": len(self.duplicates), "unmappable": len(self.unmappable)},
            "examples": {
                "missing": [kd(k) for k in self.missing[:EXAMPLES]],
                "extra": [kd(k) for k in self.extra[:EXAMPLES]],
                "differing": [{"key": kd(k), "columns": cols} for k, cols in self.differing[:EXAMPLES]],
                "duplicates": [kd(k) for k in self.duplicates[:EXAMPLES]],
                "unmappable": [{"key": k if isinstance(k, dict) else kd(k), "reason": r} for k, r in self.unmappable[:EXAMPLES]],
            },
            "data_scanned_bytes": self.data_scanned_bytes,
        }


# ------------------------------------------------------------------ reading both sides
class _Throttle:
    def __init__(self, progress: Progress, every: float = 2.0) -> None:
        self.progress = progress
        self.every = every
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, msg: str, force: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if force or now - self.last >= self.every:
                self.last = now
                self.progress(msg)


def auto_segments(item_count: int) -> int:
    if item_count < 10_000:
        return 1
    return min(16, 4 + item_count // 250_000)


def scan_source(client: Any, table: str, segments: int, handle: Callable[[dict[str, Any]], None],
                progress: Progress = lambda m: None) -> int:
    """Parallel Scan (one thread per segment); ``handle`` gets each item in wire JSON."""
    from s3tstream.data.items import from_boto

    count = 0
    lock = threading.Lock()
    tick = _Throttle(progress)

    def run(segment: int) -> None:
        nonlocal count
        kw: dict[str, Any] = {"TableName": table}
        if segments > 1:
            kw.update(Segment=segment, TotalSegments=segments)
        for page in client.get_paginator("scan").paginate(**kw):
            for it in page.get("Items", []):
                handle(from_boto(it))
            with lock:
                count += len(page.get("Items", []))
                n = count
            tick(f"source: scanned {n} items ({segments} segment(s))")

    try:
        with ThreadPoolExecutor(max_workers=segments) as pool:
            for f in [pool.submit(run, s) for s in range(segments)]:
                f.result()
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"scanning the source table {table}") from None
    tick(f"source: scanned {count} items ({segments} segment(s))", force=True)
    return count


def read_lake(engine: Any, layout: Layout, progress: Progress = lambda m: None, where: str = "") -> tuple[list[dict[str, Any]], Any]:
    exprs = [engine.select_expr(n, str(t)) for n, t in layout.columns]
    res = engine.run(current_rows_sql(layout, exprs, where))
    progress(f"lake: read {len(res.rows)} rows")
    return res.records(), res


def compare(
    cfg: "Config",
    settings: "Settings",
    engine: Any,
    ddb: Any,
    *,
    segments: int = 0,
    progress: Progress = lambda m: None,
) -> tuple[Report, Layout]:
    from s3tstream.transform import RecordError, keys_row, map_item

    layout = Layout.from_config(cfg, settings)
    rep = Report(engine=getattr(engine, "name", ""))
    rows, res = read_lake(engine, layout, progress)
    rep.data_scanned_bytes = res.data_scanned_bytes
    rep.lake_rows = len(rows)
    lake: dict[tuple, bytes] = {}
    for r in rows:
        k = layout.key_of(r)
        if k in lake:
            if k not in rep.duplicates:
                rep.duplicates.append(k)
            continue
        lake[k] = layout.hashes(r)
    del rows

    table = cfg.names.source_table
    if segments <= 0:
        try:
            n = ddb.describe_table(TableName=table)["Table"].get("ItemCount", 0)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"describing the source table {table}") from None
        segments = auto_segments(n)
    names = layout.names
    lock = threading.Lock()
    dups = set(rep.duplicates)

    def handle(item: dict[str, Any]) -> None:
        try:
            row = map_item(item, settings)
        except RecordError as e:
            try:
                key: Any = layout.key_of(keys_row(item, settings))
            except RecordError:
                key = {a: item.get(a) for a, _ in layout.key_attrs}
            with lock:
                rep.unmappable.append((key, e.reason))
                if not isinstance(key, dict):
                    lake.pop(key, None)  # its lake row (if any) is not "extra": the item exists
            return
        k = layout.key_of(row)
        h = layout.hashes(row)
        with lock:
            if k in dups:
                rep.items[k] = item  # re-sent by --repair: an update leaves one row
            have = lake.pop(k, None)
            if have is None:
                rep.missing.append(k)
                rep.items[k] = item
            elif have != h:
                cols = [names[i] for i in range(len(names)) if have[i * 8:(i + 1) * 8] != h[i * 8:(i + 1) * 8]]
                rep.differing.append((k, cols))
                rep.items[k] = item
            else:
                rep.matching += 1

    rep.source_items = scan_source(ddb, table, segments, handle, progress)
    rep.extra = list(lake)
    for lst in (rep.missing, rep.extra, rep.duplicates):
        lst.sort(key=repr)
    rep.differing.sort(key=lambda x: repr(x[0]))
    return rep, layout


# ------------------------------------------------------------------ change records and Kinesis
def now_approx(precision: str, clock: Callable[[], float] = time.time) -> int:
    t = clock()
    return int(t * 1_000_000) if precision == "MICROSECOND" else int(t * 1000)


def change_record(cfg: "Config", event: str, keys: dict[str, Any], new_image: dict[str, Any] | None = None,
                  source: str = REPAIR_SOURCE, approx: int | None = None) -> dict[str, Any]:
    """A change record in the Kinesis Data Streams for DynamoDB format (aws-notes).

    ``approx``: ApproximateCreationDateTime at the stream's precision (default: now).
    """
    from s3tstream.data.items import item_size

    precision = cfg.stream.timestamp_precision
    when = now_approx(precision) if approx is None else approx
    ddb: dict[str, Any] = {"ApproximateCreationDateTime": when, "Keys": keys}
    if new_image is not None:
        ddb["NewImage"] = new_image
    ddb["SizeBytes"] = item_size(keys) + (item_size(new_image) if new_image else 0)
    ddb["ApproximateCreationDateTimePrecision"] = precision
    return {
        "awsRegion": cfg.stack.region,
        "eventID": str(uuid.uuid4()),
        "eventName": event,
        "userIdentity": None,
        "recordFormat": "application/json",
        "tableName": cfg.names.source_table,
        "dynamodb": ddb,
        "eventSource": source,
    }


def partition_key(keys: Any) -> str:
    return hashlib.md5(json.dumps(keys, sort_keys=True).encode(), usedforsecurity=False).hexdigest().upper()


def typed_key_value(attr_type: str, v: Any) -> dict[str, Any]:
    """A canonical lake key value -> the DynamoDB typed key value."""
    if attr_type == "N":
        from s3tstream.data.items import norm_number

        return {"N": str(v) if isinstance(v, int) else norm_number(str(v))}
    if attr_type == "B":
        return {"B": v}
    return {"S": str(v)}


def repair_records(cfg: "Config", rep: Report, layout: Layout, *, removes: bool = True) -> list[dict[str, Any]]:
    out = []
    seen: set[tuple] = set()
    for k in [*rep.missing, *(k for k, _ in rep.differing), *rep.duplicates]:
        item = rep.items.get(k)
        if item is None or k in seen:
            continue  # a duplicate key missing from the source is "extra": removed below
        seen.add(k)
        keys = {a: item[a] for a, _ in layout.key_attrs}
        out.append(change_record(cfg, "INSERT", keys, item))
    if removes:
        for k in rep.extra:
            keys = {a: typed_key_value(t, v) for (a, t), v in zip(layout.key_attrs, k)}
            out.append(change_record(cfg, "REMOVE", keys))
    return out


def put_records(
    client: Any,
    stream: str,
    entries: Iterable[tuple[bytes, str]],
    *,
    progress: Progress = lambda m: None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
) -> int:
    """PutRecords in batches (500 records / 5 MiB), retrying failed entries with bounded backoff.

    ``entries`` are (data, partition key). Returns the number accepted; raises AwsError when some
    entries still fail after ``max_attempts``.
    """
    batches: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = 0
    for data, pk in entries:
        n = len(data) + len(pk.encode())
        if n > KINESIS_RECORD_BYTES:
            raise UsageError(f"a record of {n} bytes exceeds Kinesis' 1 MiB limit (partition key {pk})",
                             "DynamoDB skips such items too; shrink the item")
        if cur and (len(cur) == KINESIS_BATCH or size + n > KINESIS_BATCH_BYTES):
            batches.append(cur)
            cur, size = [], 0
        cur.append({"Data": data, "PartitionKey": pk})
        size += n
    if cur:
        batches.append(cur)
    sent = 0
    total = sum(len(b) for b in batches)
    for batch in batches:
        pending = batch
        attempt = 0
        while pending:
            try:
                resp = client.put_records(StreamName=stream, Records=pending)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, f"sending records to the Kinesis stream {stream} ({sent} of {total} sent)") from None
            failed = [p for p, r in zip(pending, resp.get("Records", [])) if r.get("ErrorCode")]
            sent += len(pending) - len(failed)
            if not failed:
                break
            attempt += 1
            if attempt >= max_attempts:
                codes = sorted({r.get("ErrorCode") for r in resp.get("Records", []) if r.get("ErrorCode")})
                raise AwsError(f"Kinesis refused {len(failed)} record(s) after {attempt} attempts ({', '.join(codes)}); "
                               f"{sent} of {total} were accepted",
                               "the stream is throttled; wait and run the command again", code="throttled")
            delay = min(max_delay, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            progress(f"{len(failed)} record(s) throttled; retry {attempt} in {delay:.2f}s")
            sleep(delay)
            pending = failed
        progress(f"sent {sent}/{total} records")
    return sent


def send_records(client: Any, stream: str, records: list[dict[str, Any]], **kw: Any) -> int:
    return put_records(
        client, stream,
        ((json.dumps(r, separators=(",", ":")).encode(), partition_key(r["dynamodb"]["Keys"])) for r in records),
        **kw,
    )
