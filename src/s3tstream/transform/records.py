"""The Firehose transform: DynamoDB change records (from Kinesis) -> Iceberg row operations.

Input and output follow the Firehose Lambda contract (see /work/shared/docs/aws-notes.md):
every input ``recordId`` comes back exactly once, in input order, with ``result``
``Ok``, ``Dropped`` or ``ProcessingFailed``.  A record that cannot be decoded or
mapped is ``ProcessingFailed`` (its original data echoed so it lands in the error
bucket) and one JSON log line with its recordId and reason is printed; the handler
never raises for a bad record, only for a bad event envelope.

Operations (``metadata.otfMetadata.operation``):

* upsert mode - INSERT and MODIFY -> ``update``; REMOVE -> ``delete`` (key columns
  from ``dynamodb.Keys``, falling back to ``OldImage``; the rest of the row is the
  old image when it maps, else None).  TTL deletes (userIdentity Service /
  dynamodb.amazonaws.com) follow settings.ttl_deletes: "delete" (default) or
  "keep", which returns the record as ``Dropped`` so the lake keeps the row.

  Why ``update`` for INSERT too: the Firehose guide's note on operations says that
  without an operation (insert) "multiple identical records create duplicate rows"
  and that ``update`` "uses the primary key to locate and change existing rows"
  (https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-stream.html, read
  as https://docs.amazonaws.cn/firehose/latest/dev/apache-iceberg-stream.html);
  UniqueKeys are "used for running Create, Update, or Delete operations" (API
  DestinationTableConfiguration).  Firehose writes merge-on-read: an update is an
  equality delete on the unique keys plus the new row, so updating a key that is
  not in the table adds it, and a redelivered INSERT or MODIFY leaves one row.
  UNCONFIRMED: no AWS page says outright that ``update`` inserts an absent key;
  this follows from the equality-delete design.  Were it false, INSERT would have
  to be sent as ``insert`` (and a redelivered INSERT would duplicate the row).
  Equality deletes apply within a partition, so deletes carry the whole old row
  (its partition values) and tables should be partitioned by key columns only.

* changelog mode - every change is an ``insert`` with three extra columns:
  ``_op`` ("insert" | "modify" | "remove" | "ttl_remove" | "backfill"),
  ``_event_time`` (microseconds, from dynamodb.ApproximateCreationDateTime: ms, or
  µs when ApproximateCreationDateTimePrecision is "MICROSECOND"; None if absent)
  and ``_event_id`` (eventID).  REMOVE rows carry the old image (keys only when
  the stream has no old image).  TTL deletes are recorded as "ttl_remove" whatever
  ttl_deletes says (a changelog records every change; "keep" only affects upsert).

Batch collapse (upsert mode, settings.collapse_per_key, default on): Kinesis Data
Streams for DynamoDB may deliver a change twice or out of order, and Firehose writes
merge-on-read, where an equality delete does not remove a row added in the same
commit, so two operations for one key in one batch could leave two rows.  Each
batch therefore keeps only the latest change per key (the key columns' converted
values): latest by ApproximateCreationDateTime, equal or missing times decided by
arrival order (the later record wins).  The superseded records are returned as
``Dropped`` (every recordId still comes back exactly once) and counted as
"superseded" in the batch log line.  Records that fail or are Dropped anyway (a
kept TTL delete) take no part.  Changelog mode keeps every change (it appends).

Backfill and repair records (eventSource "s3tstream:backfill" / "s3tstream:repair",
same format) are handled like DynamoDB's INSERT/MODIFY/REMOVE; in changelog mode a
backfill INSERT/MODIFY row has ``_op`` "backfill" (a backfill REMOVE stays "remove").

Standard library only; configured only by environment variables (settings.py; for many
tables, routing.py: each record is mapped with the settings of its ``tableName``).
"""

from __future__ import annotations

import binascii
import json
import os
import sys
from operator import itemgetter
from typing import Any

from .exactjson import decimal_token, dumps_exact, dumps_no_decimal
from .mapping import RecordError, keys_row, map_row, plan_for
from .routing import Routes, load_routes
from .settings import Settings, SettingsError
from .types import DecimalType

__all__ = ["handler", "transform_records"]

_SOURCES = {"aws:dynamodb": None, "s3tstream:backfill": "backfill", "s3tstream:repair": "repair"}
_REASON_MAX = 500
_WARN_MAX = 20  # per batch: the log line per record stops after this many dropped fields
_NONE: tuple = ()

_a2b = binascii.a2b_base64
_b2a = binascii.b2a_base64
_scan = json.JSONDecoder().scan_once  # the C scanner, without json.loads' wrappers


def _loads(raw: bytes) -> Any:
    """json.loads for UTF-8 bytes; the fast path is the C scanner on the whole text."""
    try:
        text = raw.decode("utf-8")
        obj, end = _scan(text, 0)
        if end == len(text):
            return obj
    except (StopIteration, ValueError):
        pass
    return json.loads(raw)  # leading/trailing whitespace, other encodings, or the error


def _encode(row: dict, decimals: tuple = (), exact: bool = True) -> str:
    """base64 of the row's exact JSON.

    decimals: the top-level decimal columns when no other value can be a Decimal.
    They are written after the rest, straight from their tokens: dumps_exact's
    marker pass for Decimals costs more than the whole splice (column names need
    no escaping: [a-z_][a-z0-9_]*).  exact: False when the row can hold no other
    Decimal (no nested decimal type): the rest is written without dumps_exact's
    bookkeeping, and a Decimal there after all (TypeError) is still written exactly.
    """
    if decimals:
        row = row.copy()
        tail = ""  # a loop, not a comprehension: usually one column, and 3.11 calls a comprehension
        for k in decimals:
            tail += f',"{k}":' + ("null" if (d := row.pop(k)) is None else decimal_token(d))
    if exact:
        text = dumps_exact(row)
    else:
        try:
            text = dumps_no_decimal(row)
        except TypeError:
            text = dumps_exact(row)
    if decimals:
        text = text[:-1] + tail + "}" if len(text) > 2 else "{" + tail[1:] + "}"
    return _b2a(text.encode("utf-8"), newline=False).decode("ascii")


def _is_ttl(change: dict) -> bool:
    ui = change.get("userIdentity")
    return (
        ui.__class__ is dict
        and ui.get("type") == "Service"
        and ui.get("principalId") == "dynamodb.amazonaws.com"
    )


def _event_time(ddb: dict) -> int | None:
    return _micros(ddb.get("ApproximateCreationDateTime"),
                   ddb.get("ApproximateCreationDateTimePrecision"))


def _micros(t: Any, precision: Any) -> int | None:
    """ApproximateCreationDateTime (ms, or µs at MICROSECOND precision) in µs."""
    if t is None:
        return None
    if t.__class__ is not int and t.__class__ is not float:
        raise RecordError(f"ApproximateCreationDateTime must be a number, got {t!r:.60}")
    if precision == "MICROSECOND":
        return int(t)
    if precision is None or precision == "MILLISECOND":
        return int(t) * 1000 if t.__class__ is int else round(t * 1000)
    raise RecordError(f"unknown ApproximateCreationDateTimePrecision {precision!r:.40}")


def _removed_row(ddb: dict, settings: Settings, strict_old: bool) -> tuple[dict, Any]:
    """Row for a REMOVE (the old image when there is one, else only the keys), dropped paths.

    strict_old: a present old image that does not map is an error (changelog);
    otherwise the keys alone are used (upsert delete needs only the keys).
    """
    old = ddb.get("OldImage")
    keys = ddb.get("Keys")
    if old.__class__ is dict:
        merged = {**old, **keys} if keys.__class__ is dict else old
        try:
            return map_row(merged, settings)
        except RecordError:
            if strict_old:
                raise
    if keys.__class__ is dict:
        if old.__class__ is dict:
            keys = {**old, **keys}
        return keys_row(keys, settings), _NONE
    if old.__class__ is dict:
        return keys_row(old, settings), _NONE
    raise RecordError("REMOVE record has neither dynamodb.Keys nor dynamodb.OldImage")


class _Out:
    """Prebuilt per-settings output pieces."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.changelog = settings.mode == "changelog"
        self.keep_ttl = settings.ttl_deletes == "keep"

        def meta(op: str) -> dict:
            return {
                "otfMetadata": {
                    "destinationDatabaseName": settings.database,
                    "destinationTableName": settings.table,
                    "operation": op,
                }
            }

        self.meta = {op: meta(op) for op in ("insert", "update", "delete")}
        # Top-level decimal columns, written by _encode unless a nested type holds decimals too.
        declared = [c for c in settings.columns if c.name != settings.extra_column]
        nested = any("decimal(" in str(c.type) for c in declared if not isinstance(c.type, DecimalType))
        self.decimals = () if nested else tuple(
            c.name for c in declared if isinstance(c.type, DecimalType))
        self.exact = nested  # only then can a row hold a Decimal that is not in self.decimals
        self.fast = plan_for(settings).fast
        # The key of a row (a value, or a tuple for two key columns) when collapsing.
        self.key_of = (itemgetter(*settings.keys)
                       if settings.collapse_per_key and not self.changelog else None)


def _out_for(settings: Settings) -> _Out:
    plan = plan_for(settings)
    out = getattr(plan, "out", None)
    if out is None:
        out = plan.out = _Out(settings)
    return out


class _Router:
    """The _Out of each table a batch may hold (routing.py): one for every record (a one-table
    document), or one per DynamoDB table name (the record's tableName)."""

    __slots__ = ("default", "outs", "routes")

    def __init__(self, settings: "Settings | Routes") -> None:
        self.routes = settings if isinstance(settings, Routes) else Routes({}, settings)
        self.default = _out_for(self.routes.default) if self.routes.default is not None else None
        self.outs = {name: _out_for(s) for name, s in self.routes.by_table.items()}

    def pick(self, change: dict) -> _Out:
        o = self.outs.get(change.get("tableName"))
        if o is None:  # a table this pipeline does not carry: the record fails, naming it
            try:
                self.routes.for_table(change.get("tableName"))
            except SettingsError as exc:
                raise RecordError(str(exc)) from None
        return o  # type: ignore[return-value]


def _transform(data: Any, router: _Router) -> tuple[str, dict | None, dict, Any, _Out]:
    """One record -> (operation, row or None for Dropped, its dynamodb object, dropped paths,
    its table's _Out).

    Raises for a bad record.  Dropped paths: nested fields the row cannot carry
    (struct fields not declared, no catch-all column), see nested.py.
    """
    try:
        # Lenient base64 first: strict mode costs ~15% more and Firehose sends valid base64;
        # when the content is not JSON, strict decoding says whether the base64 was to blame.
        change = _loads(_a2b(data))
    except (TypeError, ValueError) as exc:  # binascii.Error, JSONDecodeError, UnicodeDecodeError
        try:
            _a2b(data, strict_mode=True)
        except (TypeError, ValueError) as b64:
            raise RecordError(f"data is not valid base64 ({b64})") from None
        raise RecordError(f"data is not valid JSON ({exc})") from None
    if change.__class__ is not dict:
        raise RecordError(f"change record is a JSON {type(change).__name__}, not an object")
    ddb = change.get("dynamodb")
    if ddb.__class__ is not dict:
        raise RecordError("change record has no dynamodb object")
    o = router.default or router.pick(change)  # the record's table, by its tableName
    name = change.get("eventName")
    source = change.get("eventSource")
    if source not in _SOURCES:
        raise RecordError(f"unexpected eventSource {source!r:.60}")
    kind = _SOURCES[source]
    settings = o.settings

    if name == "INSERT" or name == "MODIFY":
        image = ddb.get("NewImage")
        if image.__class__ is not dict:
            raise RecordError(f"{name} record has no dynamodb.NewImage (stream must include new images)")
        try:
            row = o.fast(image)  # map_row's fast path; on any trouble map_row explains
            dropped = _NONE
        except Exception:  # noqa: BLE001
            row, dropped = map_row(image, settings)
        if not o.changelog:
            return "update", row, ddb, dropped, o
        op_name = "backfill" if kind == "backfill" else ("insert" if name == "INSERT" else "modify")
    elif name == "REMOVE":
        ttl = _is_ttl(change)
        if not o.changelog:
            if ttl and o.keep_ttl:
                return "Dropped", None, ddb, _NONE, o
            return "delete", _removed_row(ddb, settings, strict_old=False)[0], ddb, _NONE, o
        row, dropped = _removed_row(ddb, settings, strict_old=True)
        op_name = "ttl_remove" if ttl else "remove"
    else:
        raise RecordError(f"unexpected eventName {name!r:.60}")

    event_id = change.get("eventID")
    if event_id is not None and event_id.__class__ is not str:
        raise RecordError("eventID must be a string")
    row["_op"] = op_name
    row["_event_time"] = _event_time(ddb)
    row["_event_id"] = event_id
    return "insert", row, ddb, dropped, o


def _log(entry: dict) -> None:
    sys.stdout.write(json.dumps(entry, default=str) + "\n")


def _when_of(data: str) -> tuple:
    """(ApproximateCreationDateTime, precision) of a record transformed before, parsed again."""
    try:
        ddb = _loads(_a2b(data))["dynamodb"]
        return (ddb.get("ApproximateCreationDateTime"),
                ddb.get("ApproximateCreationDateTimePrecision"))
    except Exception:  # noqa: BLE001 - it parsed once; if not now, order by arrival
        return (None, None)


def _later(when: tuple, than: tuple) -> bool:
    """Does a change at ``when`` supersede one at ``than`` that arrived before it?

    Times are (ApproximateCreationDateTime, its precision) as in the records.
    Later unless both times are known and ``when`` is earlier: equal, missing or
    malformed times leave it to arrival order.
    """
    try:
        t, t0 = _micros(*when), _micros(*than)
    except RecordError:
        return True
    return t is None or t0 is None or t >= t0


def _collapse(records: list, out: list, keys: list) -> int:
    """Keep the latest Ok record per key, make the others Dropped; returns how many were dropped.

    keys[i] is the key of out[i] (None: not an Ok record).  The common case, no key
    twice, costs one set; only records of keys seen twice are parsed again for
    their times (holding every record's parsed form would make the cyclic GC walk them).
    """
    try:
        distinct = len(set(keys))
    except TypeError:  # an unhashable key value (a nested key column): compare its JSON text
        keys = [None if k is None else dumps_exact(k, True) for k in keys]
        distinct = len(set(keys))
    nones = keys.count(None)
    if distinct == len(keys) - nones + (1 if nones else 0):
        return 0
    latest: dict[Any, int] = {}
    times: dict[int, tuple] = {}
    superseded = 0
    for i, key in enumerate(keys):
        if key is None:
            continue
        j = latest.setdefault(key, i)
        if j == i:
            continue
        superseded += 1
        if j not in times:
            times[j] = _when_of(records[j].get("data"))
        times[i] = _when_of(records[i].get("data"))
        if _later(times[i], times[j]):
            latest[key] = i
        else:  # an older change arriving late
            i, j = j, i
        out[j] = {"recordId": out[j]["recordId"], "result": "Dropped", "data": records[j].get("data")}
    return superseded


def transform_records(records: list, settings: "Settings | Routes") -> list[dict]:
    """Transform Firehose input records (dicts with recordId and data) -> output records.

    settings: one table's (every record is that table's), or Routes (each record's tableName
    picks its table). The batch collapse keys a record by its table and its key."""
    router = _Router(settings)
    single = router.default
    collapsing = any(o.key_of is not None for o in ([single] if single else router.outs.values()))
    keys: list = []  # per output record, its key when it is Ok and the batch collapses
    key_append = keys.append
    out: list[dict] = []
    append = out.append
    dropped = failed = fields_dropped = 0
    for rec in records:
        rid = rec["recordId"]  # a record without an id breaks the envelope: raise
        data = rec.get("data")
        try:
            op, row, ddb, lost, o = _transform(data, router)
            payload = None if row is None else _encode(row, o.decimals, o.exact)
        except Exception as exc:  # noqa: BLE001 - a bad record must never fail the batch
            reason = exc.reason if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"
            if len(reason) > _REASON_MAX:
                reason = reason[:_REASON_MAX] + "..."
            _log({"level": "ERROR", "msg": "record failed", "recordId": rid, "reason": reason})
            failed += 1
            append({"recordId": rid, "result": "ProcessingFailed",
                    "data": data if isinstance(data, str) else ""})
            key_append(None)
            continue
        if lost:  # never silent: say what the row cannot carry
            if fields_dropped < _WARN_MAX:
                _log({"level": "WARN", "msg": "undeclared nested fields dropped (no catch-all column)",
                      "recordId": rid, "paths": lost[:_WARN_MAX]})
            fields_dropped += len(lost)
        if payload is None:
            dropped += 1
            append({"recordId": rid, "result": "Dropped", "data": data})
            key_append(None)
            continue
        key_of = o.key_of
        key_append(None if key_of is None else key_of(row) if single else (o.settings.table, key_of(row)))
        append({"recordId": rid, "result": "Ok", "data": payload, "metadata": o.meta[op]})
    superseded = _collapse(records, out, keys) if collapsing else 0
    dropped += superseded
    _log({"level": "INFO", "msg": "batch", "records": len(out),
          "ok": len(out) - dropped - failed, "dropped": dropped, "failed": failed,
          "superseded": superseded, "fields_dropped": fields_dropped})
    return out


def handler(event: dict, context: Any = None) -> dict:
    """AWS Lambda entry point (``s3tstream.transform.handler``) for the Firehose transform."""
    routes = load_routes(os.environ)
    records = event["records"]
    if not isinstance(records, list):
        raise ValueError("event.records must be a list")
    return {"records": transform_records(records, routes)}
