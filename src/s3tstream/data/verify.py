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
`s3tstream errors`), dropped fields (source items whose struct columns drop nested fields they do
not declare, with their JSONPaths: the table has no catch-all column to hold them; the rows
match, but the lake lacks data). Changes younger than the Firehose buffer interval may still be in flight.

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
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import translate
from s3tstream.data.changes import change_record
from s3tstream.data.progress import Progress, Throttle
from s3tstream.lake.query import quote_ident
from s3tstream.transform import types as T

if TYPE_CHECKING:
    from s3tstream.config.model import Config
    from s3tstream.transform import Settings

EXAMPLES = 5
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
        # the mode is the deployed transform's (settings), which is what wrote the lake
        return cls(tuple(cols), keys, tuple((a.name, a.type) for a, _ in cfg.key_columns()), settings.mode, cfg.names.table)

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
    # lake rows of items TTL deleted while table.ttl_deletes = "keep": expected, not extra
    ttl_kept: list[tuple] = field(default_factory=list)
    # keys whose struct columns drop nested fields they do not declare (no catch-all column)
    dropped_fields: list[tuple[tuple, list[str]]] = field(default_factory=list)
    data_scanned_bytes: int | None = None
    engine: str = ""
    # current source items of the missing and differing keys (for --repair)
    items: dict[tuple, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.differing or self.duplicates or self.unmappable
                    or self.dropped_fields)

    def to_json(self, layout: Layout) -> dict[str, Any]:
        kd = layout.key_dict
        return {
            "ok": self.ok,
            "engine": self.engine,
            "counts": {"source_items": self.source_items, "lake_rows": self.lake_rows, "matching": self.matching,
                       "missing": len(self.missing), "extra": len(self.extra), "differing": len(self.differing),
                       "duplicates": len(self.duplicates), "unmappable": len(self.unmappable),
                       "ttl_kept": len(self.ttl_kept),
                       "dropped_fields": len(self.dropped_fields)},
            "examples": {
                "missing": [kd(k) for k in self.missing[:EXAMPLES]],
                "extra": [kd(k) for k in self.extra[:EXAMPLES]],
                "differing": [{"key": kd(k), "columns": cols} for k, cols in self.differing[:EXAMPLES]],
                "duplicates": [kd(k) for k in self.duplicates[:EXAMPLES]],
                "unmappable": [{"key": k if isinstance(k, dict) else kd(k), "reason": r} for k, r in self.unmappable[:EXAMPLES]],
                "dropped_fields": [{"key": kd(k), "paths": p} for k, p in self.dropped_fields[:EXAMPLES]],
            },
            "data_scanned_bytes": self.data_scanned_bytes,
        }


# ------------------------------------------------------------------ reading both sides
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
    tick = Throttle(progress)

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
    ttl_kept: "TtlKept | None" = None,
) -> tuple[Report, Layout]:
    """One pass over both sides. ``ttl_kept``: how to tell a lake row kept on purpose
    (ttl_deletes = "keep") from an extra one."""
    from s3tstream.transform import RecordError, dropped_paths, keys_row, map_item

    layout = Layout.from_config(cfg, settings)
    rep = Report(engine=getattr(engine, "name", ""))
    rows, res = read_lake(engine, layout, progress)
    rep.data_scanned_bytes = res.data_scanned_bytes
    rep.lake_rows = len(rows)
    lake: dict[tuple, bytes] = {}
    expiry: dict[tuple, Any] = {}  # key -> the row's TTL attribute value (ttl_kept with a column)
    for r in rows:
        k = layout.key_of(r)
        if k in lake:
            if k not in rep.duplicates:
                rep.duplicates.append(k)
            continue
        lake[k] = layout.hashes(r)
        if ttl_kept is not None and ttl_kept.column:
            expiry[k] = r.get(ttl_kept.column)
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
        lost = dropped_paths(settings, item)  # the lake cannot hold them: reported, never silent
        with lock:
            if lost:
                rep.dropped_fields.append((k, lost))
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
    if ttl_kept is not None:
        rep.ttl_kept = [k for k in rep.extra if ttl_kept.expected(expiry.get(k))]
        kept = set(rep.ttl_kept)
        rep.extra = [k for k in rep.extra if k not in kept]
    for lst in (rep.missing, rep.extra, rep.duplicates):
        lst.sort(key=repr)
    rep.differing.sort(key=lambda x: repr(x[0]))
    rep.dropped_fields.sort(key=lambda x: repr(x[0]))
    return rep, layout


# ------------------------------------------------------------------ rows kept on purpose
@dataclass(frozen=True)
class TtlKept:
    """ttl_deletes = "keep" (upsert): the lake keeps the rows of items DynamoDB's TTL deleted.
    With the TTL attribute in a lake column, a row is kept on purpose when its expiry has passed;
    without one, every row the source lacks is counted as kept (it cannot be told apart)."""

    column: str | None  # the lake column holding the TTL attribute (None: not in the lake)
    now: float  # epoch seconds

    def expected(self, value: Any) -> bool:
        if self.column is None:
            return True
        if isinstance(value, bool) or value is None:
            return False
        if isinstance(value, (int, float, Decimal)):
            return float(value) <= self.now  # DynamoDB TTL: epoch seconds
        us = ts_micros(value)  # a timestamp column (datetime or ISO text) -> epoch microseconds
        return isinstance(us, int) and us / _US <= self.now


def ttl_kept_rule(settings: "Settings", ttl_attr: str | None, now: float) -> "TtlKept | None":
    if settings.ttl_deletes != "keep" or settings.mode != "upsert" or not ttl_attr:
        return None
    col = next((c.name for c in settings.columns if c.source == ttl_attr), None)
    return TtlKept(col, now)


# ------------------------------------------------------------------ in flight: the settle window
def differing_keys(rep: Report) -> set[tuple]:
    return {*rep.missing, *rep.extra, *(k for k, _ in rep.differing), *rep.duplicates}


def settle(first: Report, recheck: Callable[[], Report], window: float, *, interval: float,
           progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> tuple[Report, dict[str, Any]]:
    """Compare again (``recheck``) until the differences of ``first`` are gone or ``window``
    seconds passed: a change may sit in Firehose's buffers that long. A key is reported only
    when it differed in every comparison (a key that converged once was in flight; a key that
    starts to differ later is a change made after verify started)."""
    still = differing_keys(first)
    info: dict[str, Any] = {"window_seconds": round(window, 1), "rounds": 0, "converged": 0, "waited_seconds": 0.0}
    rep, start = first, clock()
    while still and window > 0:
        left = window - (clock() - start)
        if left <= 0:
            break
        progress(f"{len(still)} difference(s) may still be in flight: comparing again for up to {left:.0f}s more")
        sleep(min(interval, left))
        latest = recheck()
        info["rounds"] += 1
        before = len(still)
        still &= differing_keys(latest)
        rep = _only(latest, still)
        info["converged"] += before - len(still)
    info["waited_seconds"] = round(clock() - start, 1)
    return rep, info


def _only(rep: Report, keep: set[tuple]) -> Report:
    """``rep`` with its differences limited to ``keep`` (the others count as matching)."""
    dropped = len(differing_keys(rep) - keep)
    rep.missing = [k for k in rep.missing if k in keep]
    rep.extra = [k for k in rep.extra if k in keep]
    rep.differing = [(k, c) for k, c in rep.differing if k in keep]
    rep.duplicates = [k for k in rep.duplicates if k in keep]
    rep.matching += dropped
    return rep


# ------------------------------------------------------------------ repair
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


# ------------------------------------------------------------------ the Scan-based verify, as the CLI runs it
def verify_scan(cfg: "Config", aws: Any, state: Any, engine: Any, *, segments: int = 0, settle_seconds: float | None = None,
                progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep
                ) -> tuple[Report, Layout, list[str], dict[str, Any]]:
    """Compare with the deployed transform's settings; differences are compared again for the
    settle window (``settle_seconds``; None: derived from the deployed buffering) before they
    are reported. Returns (report, layout, notes, settle info)."""
    from s3tstream.data.deployed import deployed_settings, settle_window, ttl_attribute

    settings, notes = deployed_settings(cfg, state)
    ddb = aws.client("dynamodb")
    ttl = ttl_kept_rule(settings, ttl_attribute(cfg, ddb), time.time())

    def once() -> tuple[Report, Layout]:
        return compare(cfg, settings, engine, ddb, segments=segments, progress=progress, ttl_kept=ttl)

    rep, layout = once()
    info: dict[str, Any] = {"window_seconds": 0.0, "rounds": 0, "converged": 0, "waited_seconds": 0.0}
    if not rep.ok:
        if settle_seconds is None:
            window, how = settle_window(cfg, aws)
        else:
            window, how = settle_seconds, "--settle"
        info["derived_from"] = how
        interval = max(0.2, min(cfg.stack.poll_interval, window / 4))
        rep, got = settle(rep, lambda: once()[0], window, interval=interval, progress=progress, sleep=sleep)
        info.update(got)
    if ttl is not None and rep.ttl_kept:
        notes.append(f"{len(rep.ttl_kept)} lake row(s) of items DynamoDB's TTL deleted are kept (table.ttl_deletes = "
                     "keep): expected, not extra" + ("" if ttl.column else "; the TTL attribute is not a lake column, "
                                                     "so rows the source lacks cannot be told from lost deletes"))
    return rep, layout, notes, info
