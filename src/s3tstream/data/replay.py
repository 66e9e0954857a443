"""`errors replay`: send the failed records of the error bucket back through the stream.

Object by object, in two streamed passes (failed_records.iter_object: never a whole object in
memory):

1. check: every record is read (a bad object: reported and skipped) and acceptable:
   - a change record of this stack's source table: ``tableName``, ``awsRegion``, the key schema
     (exactly the key attributes, of their types; the new image holds the same key), an
     eventSource of DynamoDB's or s3tstream's, a creation time not after the record reached
     Firehose (and not in the future);
   - or (upsert mode, a delivery failure) a transformed row holding the lake table's key columns.
   A record that is none of these is refused and reported; its object is kept whole.
2. send (the same version of the object: GetObject IfMatch its ETag), CHUNK_RECORDS at a time:
   - changelog mode: the raw change record, as it was (the lake keeps every change);
   - upsert mode: the raw change record when it still describes the item's current state (an
     INSERT/MODIFY whose NewImage equals the item, a REMOVE of an item that is still gone); else
     the item's current state as a "s3tstream:repair" record, so replaying an old failure never
     overwrites a newer change (Firehose does not keep order).

An object is deleted only when every record in it was read in both passes and accepted by
Kinesis; an object with no record is kept and reported. The caller holds the stack lock, so two
replays never send the same object twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import translate
from s3tstream.data.changes import Entry, Sent, change_record, encode, partition_key, put_records
from s3tstream.data.failed_records import BadObject, FailedRecord, error_location, iter_object, list_objects, safe
from s3tstream.data.items import batch_get, key_id
from s3tstream.data.progress import Progress

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

CHUNK_RECORDS = 500  # records planned and sent at a time (one PutRecords call at most)
CLOCK_SKEW_MS = 5 * 60 * 1000  # how far a change may seem to come after its arrival (clocks differ)
SOURCES = ("aws:dynamodb", "s3tstream:backfill", "s3tstream:repair")


@dataclass
class ReplayResult:
    objects: int = 0
    deleted: int = 0
    records: int = 0
    raw: int = 0
    current: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)  # objects left by choice (--code), with why
    failed: list[dict[str, Any]] = field(default_factory=list)  # objects left that could not be replayed: exit 1

    def to_json(self) -> dict[str, Any]:
        return {"objects": self.objects, "deleted_objects": self.deleted, "records_sent": self.records,
                "sent_as_recorded": self.raw, "sent_as_current_state": self.current, "kept": self.kept,
                "failed": self.failed}


# ------------------------------------------------------------------ what may be replayed
def _creation_ms(ddb: dict[str, Any]) -> float | None:
    v = ddb.get("ApproximateCreationDateTime")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v / 1000 if ddb.get("ApproximateCreationDateTimePrecision") == "MICROSECOND" else float(v)


def refusal(cfg: "Config", r: FailedRecord, now_ms: float) -> str | None:
    """Why record ``r`` is not a change this stack may replay (None: it may)."""
    ch = r.change()
    if ch is None:
        return None  # not a change record: plan() decides (a row in upsert mode, else kept)
    table, region = cfg.names.source_table, cfg.stack.region
    if ch.get("tableName") != table:
        return f"its tableName {ch.get('tableName')!r} is not this stack's source table {table!r}"
    if ch.get("awsRegion") not in (None, region):
        return f"its awsRegion {ch.get('awsRegion')!r} is not the stack's region {region!r}"
    if ch.get("eventSource") not in SOURCES:
        return f"its eventSource {ch.get('eventSource')!r} is not DynamoDB's or s3tstream's"
    ddb = ch["dynamodb"]
    want = {a.name: a.type for a, _ in cfg.key_columns()}
    keys = ddb.get("Keys")
    if not isinstance(keys, dict) or set(keys) != set(want):
        return f"its Keys {sorted(keys) if isinstance(keys, dict) else keys!r} are not the table's key {sorted(want)}"
    for a, t in want.items():
        v = keys[a]
        if not isinstance(v, dict) or list(v) != [t] or not isinstance(v[t], str) or not v[t]:
            return f"its key attribute {a} is not of the key's type {t}"
    if ch.get("eventName") != "REMOVE":
        img = ddb.get("NewImage")
        if not isinstance(img, dict) or key_id(img, list(want)) != key_id(keys, list(want)):
            return "its NewImage does not hold the record's key"
    created = _creation_ms(ddb)
    if created is None:
        return "it has no ApproximateCreationDateTime"
    arrived = r.arrival_ms if r.arrival_ms is not None else now_ms
    if created > min(arrived, now_ms) + CLOCK_SKEW_MS:
        return "its ApproximateCreationDateTime is after the record reached Firehose (or in the future)"
    return None


def _row_keys(cfg: "Config", row: dict[str, Any]) -> dict[str, Any] | None:
    """DynamoDB typed keys of a transformed row (a delivery failure's rawData)."""
    from s3tstream.data.verify import canon, typed_key_value
    from s3tstream.lake.schema import effective_schema

    types = {c.name: c.type for c in effective_schema(cfg).columns}
    keys = {}
    for attr, col in cfg.key_columns():
        if row.get(col) is None or col not in types:
            return None
        keys[attr.name] = typed_key_value(attr.type, canon(types[col], row[col]))
    return keys


def _wanted(cfg: "Config", r: FailedRecord) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(change record or None, keys, why not)."""
    ch = r.change()
    if ch is not None:
        return ch, ch["dynamodb"]["Keys"], None
    d = r.decoded()
    keys = _row_keys(cfg, d) if isinstance(d, dict) and cfg.table.mode != "changelog" else None
    if keys is None:
        why = ("record data is a transformed row: in changelog mode it cannot be rebuilt as a change record"
               if isinstance(d, dict) else "record data is not a DynamoDB change record or a row")
        return None, None, f"record {r.index}: {why}"
    return None, keys, None


def scope_for(cfg: "Config", r: FailedRecord) -> tuple["Config | None", str | None]:
    """The config scoped to the table record ``r`` belongs to, or why it belongs to none: in a
    [[tables]] stack a change record names its source table (tableName), a delivery failure its
    lake table (dataCatalogTable.tableName, Firehose's error record format)."""
    scopes = cfg.scopes()
    if len(scopes) == 1:
        return scopes[0], None
    ch = r.change()
    if ch is not None:
        name = ch.get("tableName")
        found = next((c for c in scopes if c.names.source_table == name), None)
        return found, None if found else (f"its tableName {name!r} is not one of this stack's source tables "
                                          f"({', '.join(c.names.source_table for c in scopes)})")
    table = (r.doc.get("dataCatalogTable") or {}).get("tableName") if isinstance(r.doc, dict) else None
    found = next((c for c in scopes if c.names.table == table), None)
    return found, None if found else (f"its table {table!r} is not one of this stack's lake tables "
                                      f"({', '.join(cfg.table_names)})")


def plan_object(cfg: "Config", ddb: Any, records: list[FailedRecord], sleep: Callable[[float], None] = time.sleep,
                now_ms: float | None = None) -> tuple[list[Entry], int, int, str | None]:
    """What to send for these records: (entries, as recorded, as current state, why not).
    Each record is judged and rebuilt with its own table's config (scope_for)."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    wanted: list[tuple[FailedRecord, dict[str, Any] | None, dict[str, Any], "Config"]] = []
    for r in records:
        scfg, why = scope_for(cfg, r)
        why = why or refusal(scfg, r, now_ms)  # type: ignore[arg-type]
        if why:
            return [], 0, 0, f"record {r.index} refused: {why}"
        ch, keys, why = _wanted(scfg, r)  # type: ignore[arg-type]
        if why:
            return [], 0, 0, why
        wanted.append((r, ch, keys, scfg))  # type: ignore[arg-type]
    current: dict[tuple[str, str], dict[str, Any]] = {}  # (source table, key id) -> the item now
    for table in dict.fromkeys(s.names.source_table for _, _, _, s in wanted if s.table.mode != "changelog"):
        group = [(k, s) for _, _, k, s in wanted if s.names.source_table == table]
        attrs = [a.name for a, _ in group[0][1].key_columns()]
        got = batch_get(ddb, table, [k for k, _ in group], attrs, sleep=sleep)
        current.update({(table, kid): item for kid, item in got.items()})
    entries: list[Entry] = []
    n_raw = n_cur = 0
    for r, ch, keys, scfg in wanted:
        changelog = scfg.table.mode == "changelog"
        attrs = [a.name for a, _ in scfg.key_columns()]
        item = current.get((scfg.names.source_table, key_id(keys, attrs)))
        if ch is not None and (changelog or _still_current(ch, item)):
            entries.append((r.raw or b"", partition_key(keys), keys))
            n_raw += 1
            continue
        rec = change_record(scfg, "INSERT", keys, item) if item is not None else change_record(scfg, "REMOVE", keys)
        entries.append(encode(rec))
        n_cur += 1
    return entries, n_raw, n_cur, None


def _still_current(ch: dict[str, Any], item: dict[str, Any] | None) -> bool:
    if ch.get("eventName") == "REMOVE":
        return item is None
    return item is not None and ch["dynamodb"].get("NewImage") == item


# ------------------------------------------------------------------ the replay
def _chunks(records: Iterator[FailedRecord], n: int) -> Iterator[list[FailedRecord]]:
    chunk: list[FailedRecord] = []
    for r in records:
        chunk.append(r)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check(cfg: "Config", s3: Any, bucket: str, key: str) -> tuple[int, set[str], str | None]:
    """Pass 1: (records, their error codes, why the object cannot be replayed)."""
    now_ms = time.time() * 1000
    n, seen, why = 0, set(), None
    try:
        for r in iter_object(s3, bucket, key):
            n += 1
            seen.add(r.error_code)
            if why is None:  # the first reason is reported; the codes are gathered on (--code)
                scfg, refused = scope_for(cfg, r)
                refused = refused or refusal(scfg, r, now_ms)  # type: ignore[arg-type]
                why = f"record {r.index} refused: {refused}" if refused else _wanted(scfg, r)[2]  # type: ignore[arg-type]
    except BadObject as e:
        return n, seen, f"unreadable after {e.records_read} record(s): {e.reason}"
    if not n:
        return 0, seen, "no failed record in it"
    return n, seen, why


def replay(
    cfg: "Config",
    aws: "Aws",
    *,
    dry_run: bool = False,
    codes: tuple[str, ...] = (),
    progress: Progress = lambda m: None,
    sleep: Callable[[float], None] = time.sleep,
    chunk_records: int = CHUNK_RECORDS,
) -> ReplayResult:
    """Replay every error object (``codes``: only objects whose records all failed with one of
    them; an object is deleted whole, so one that mixes codes is kept and reported)."""
    s3, kinesis, ddb = aws.client("s3"), aws.client("kinesis"), aws.client("dynamodb")
    bucket, prefix = error_location(cfg, aws)
    res = ReplayResult()
    for o in list_objects(s3, bucket, prefix):
        key = o["Key"]
        n, seen, why = _check(cfg, s3, bucket, key)
        if codes and seen and not seen & set(codes):
            continue  # none of its records has the code: not part of this replay
        res.objects += 1
        if codes and seen - set(codes):
            res.kept.append({"object": key, "reason": f"it also holds records that failed with "
                             f"{', '.join(sorted(seen - set(codes)))} (an error object is replayed and deleted whole)"})
            progress(f"keeping {safe(key)}: it mixes error codes")
            continue
        if why:
            res.failed.append({"object": key, "reason": why})
            progress(f"keeping {safe(key)}: {safe(why)}")
            continue
        sent, n_raw, n_cur, read, why = Sent(), 0, 0, 0, None
        try:
            for chunk in _chunks(iter_object(s3, bucket, key, etag=o.get("ETag")), chunk_records):
                read += len(chunk)
                entries, a, b, why = plan_object(cfg, ddb, chunk, sleep=sleep)
                if why:  # the object changed between the passes
                    break
                n_raw, n_cur = n_raw + a, n_cur + b
                if dry_run:
                    sent.sent += len(entries)
                    continue
                # raises unless every entry was accepted: the object is then kept
                sent.add(put_records(kinesis, cfg.names.stream, entries, progress=progress, sleep=sleep))
        except BadObject as e:
            why = f"unreadable on the second read after {read} record(s): {e.reason}"
        res.records += sent.sent
        res.raw += n_raw
        res.current += n_cur
        if why is None and read != n:
            why = f"{read} record(s) read on the second read, {n} on the first"
        if why is None and sent.oversize:
            why = (f"{len(sent.oversize)} record(s) over Kinesis' record limit were not sent (keys "
                   f"{', '.join(safe(o.to_json()['keys']) for o in sent.oversize[:5])}); the others were")
        if why:
            res.failed.append({"object": key, "reason": why})
            progress(f"keeping {safe(key)}: {safe(why)}")
            continue
        if dry_run:
            continue
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"deleting the replayed error object s3://{bucket}/{key} (its records were sent)") from None
        res.deleted += 1
        progress(f"replayed {sent.sent} record(s) from {safe(key)}")
    return res
