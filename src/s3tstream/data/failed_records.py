"""Firehose's error bucket: read failed records, group them, replay them through the stream.

Firehose writes each failed record as one JSON document (objects under the error prefix, one
document per line, possibly GZIP-compressed). Field names differ by failure kind, all handled:

- transform failures ("processing-failed"): ``attemptsMade, arrivalTimestamp, errorCode,
  errorMessage, attemptEndingTimestamp, rawData, lambdaArn``
  (https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html);
  rawData is the record as Firehose received it, i.e. the Kinesis record data: the DynamoDB
  change record (our transform also echoes it for ProcessingFailed);
- delivery / format failures: ``ErrorCode``/``ErrorMessage`` (or ``lastErrorCode``/
  ``lastErrorMessage``) plus ``dataCatalogTable``
  (https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion-error-handling.html);
  for the Iceberg destination rawData is then the transformed row, not the change record.

Timestamps are epoch milliseconds.

Replay sends records back through the Kinesis stream, object by object, and deletes an error
object only after every one of its records was accepted by Kinesis (PutRecords
FailedRecordCount 0 after retries). What is sent for each record:

- changelog mode: the raw change record, as it was (the lake keeps every change);
- upsert mode: the raw change record when it still describes the item's current state (an
  INSERT/MODIFY whose NewImage equals the item, a REMOVE of an item that is still gone); else the
  item's current state as a "s3tstream:repair" record (INSERT of the current item, REMOVE when it
  is gone), so replaying an old failure never overwrites a newer change (Firehose does not keep
  order). A transformed row (a delivery failure) is also re-sent as the key's current state.

A record that cannot be replayed (not JSON, or a row in changelog mode) keeps its object.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import is_not_found, translate
from s3tstream.errors import AwsError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

Progress = Callable[[str], None]
_decoder = json.JSONDecoder()


@dataclass
class FailedRecord:
    object_key: str
    index: int
    error_code: str
    error_message: str
    raw: bytes | None
    arrival_ms: int | None = None
    ending_ms: int | None = None
    attempts: int | None = None
    doc: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def when_ms(self) -> int | None:
        return self.ending_ms or self.arrival_ms

    def decoded(self) -> Any:
        """rawData as JSON when it is, else as text."""
        if self.raw is None:
            return None
        try:
            return json.loads(self.raw)
        except ValueError:
            return self.raw.decode("utf-8", "replace")

    def change(self) -> dict[str, Any] | None:
        d = self.decoded()
        if isinstance(d, dict) and isinstance(d.get("dynamodb"), dict) and d.get("eventName") in ("INSERT", "MODIFY", "REMOVE"):
            return d
        return None


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _first(doc: dict[str, Any], *names: str) -> Any:
    for n in names:
        if doc.get(n) not in (None, ""):
            return doc[n]
    return None


def parse_documents(text: str, object_key: str) -> list[FailedRecord]:
    """JSON documents, one a line or simply concatenated, -> FailedRecords."""
    out: list[FailedRecord] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            return out
        try:
            doc, i = _decoder.raw_decode(text, i)
        except ValueError as e:
            raise ValueError(f"{object_key}: not a Firehose error document at offset {i}: {e}") from None
        if not isinstance(doc, dict):
            continue
        raw_b64 = doc.get("rawData")
        raw = None
        if isinstance(raw_b64, str):
            try:
                raw = base64.b64decode(raw_b64, validate=True)
            except (binascii.Error, ValueError):
                raw = raw_b64.encode()
        out.append(FailedRecord(
            object_key=object_key,
            index=len(out),
            error_code=str(_first(doc, "errorCode", "ErrorCode", "lastErrorCode") or "Unknown"),
            error_message=str(_first(doc, "errorMessage", "ErrorMessage", "lastErrorMessage") or ""),
            raw=raw,
            arrival_ms=_int(doc.get("arrivalTimestamp")),
            ending_ms=_int(doc.get("attemptEndingTimestamp")),
            attempts=_int(doc.get("attemptsMade")),
            doc=doc,
        ))


def decode_body(body: bytes) -> str:
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body.decode("utf-8", "replace")


# ------------------------------------------------------------------ S3
def error_location(cfg: "Config", aws: "Aws") -> tuple[str, str]:
    return cfg.names.error_bucket(aws.identity().account), cfg.firehose.error_prefix


def list_objects(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [o for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except ClientError as e:
        if is_not_found(e):
            from s3tstream.errors import UsageError

            raise UsageError(f"the error bucket {bucket} does not exist",
                             "run `s3tstream up` (create-firehose creates it)") from None
        raise translate(e, f"listing s3://{bucket}/{prefix}") from None
    except BotoCoreError as e:
        raise translate(e, f"listing s3://{bucket}/{prefix}") from None
    out.sort(key=lambda o: o["Key"])
    return out


def read_object(s3: Any, bucket: str, key: str) -> list[FailedRecord]:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"reading s3://{bucket}/{key}") from None
    try:
        return parse_documents(decode_body(body), key)
    except ValueError as e:
        raise AwsError(str(e), "the object is not in Firehose's error format; leave it or remove it by hand") from None


def read_all(s3: Any, bucket: str, prefix: str, progress: Progress = lambda m: None) -> tuple[list[dict[str, Any]], list[FailedRecord]]:
    objects = list_objects(s3, bucket, prefix)
    records: list[FailedRecord] = []
    for i, o in enumerate(objects, 1):
        records += read_object(s3, bucket, o["Key"])
        if i % 20 == 0:
            progress(f"read {i}/{len(objects)} error objects")
    return objects, records


# ------------------------------------------------------------------ summary
def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def describe(rec: FailedRecord) -> Any:
    """A short, readable form of a failed record's data."""
    ch = rec.change()
    if ch is not None:
        from s3tstream.data.items import item_to_plain

        ddb = ch["dynamodb"]
        out: dict[str, Any] = {"eventName": ch.get("eventName"), "eventSource": ch.get("eventSource")}
        try:
            out["keys"] = item_to_plain(ddb.get("Keys") or {})
            if isinstance(ddb.get("NewImage"), dict):
                out["newImage"] = item_to_plain(ddb["NewImage"])
        except Exception:  # noqa: BLE001 - a malformed image is shown raw
            out["dynamodb"] = ddb
        return out
    d = rec.decoded()
    if isinstance(d, str) and len(d) > 500:
        return d[:500] + "..."
    return d


def summarize(records: list[FailedRecord]) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        g = groups.get(r.error_code)
        if g is None:
            g = groups[r.error_code] = {"error_code": r.error_code, "count": 0, "first_ms": None, "last_ms": None,
                                        "message": r.error_message, "example": describe(r), "objects": set()}
        g["count"] += 1
        g["objects"].add(r.object_key)
        w = r.when_ms
        if w is not None:
            g["first_ms"] = w if g["first_ms"] is None else min(g["first_ms"], w)
            g["last_ms"] = w if g["last_ms"] is None else max(g["last_ms"], w)
    out = []
    for g in sorted(groups.values(), key=lambda g: (-g["count"], g["error_code"])):
        out.append({"error_code": g["error_code"], "count": g["count"], "first": iso_ms(g["first_ms"]),
                    "last": iso_ms(g["last_ms"]), "message": g["message"], "objects": len(g["objects"]),
                    "example": g["example"]})
    return out


# ------------------------------------------------------------------ replay
@dataclass
class ReplayResult:
    objects: int = 0
    deleted: int = 0
    records: int = 0
    raw: int = 0
    current: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)  # objects left, with why

    def to_json(self) -> dict[str, Any]:
        return {"objects": self.objects, "deleted_objects": self.deleted, "records_sent": self.records,
                "sent_as_recorded": self.raw, "sent_as_current_state": self.current, "kept": self.kept}


def _batch_get(ddb: Any, table: str, keys: list[dict[str, Any]], attrs: list[str], sleep: Callable[[float], None] = time.sleep,
               max_attempts: int = 8) -> dict[str, dict[str, Any]]:
    """Current items by key (wire JSON), consistent reads, UnprocessedKeys retried."""
    from s3tstream.data.items import from_boto, to_boto

    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 100):
        pending = [to_boto(k) for k in keys[i:i + 100]]
        attempt = 0
        while pending:
            try:
                r = ddb.batch_get_item(RequestItems={table: {"Keys": pending, "ConsistentRead": True}})
            except (ClientError, BotoCoreError) as e:
                raise translate(e, f"reading current items from {table}") from None
            for it in r.get("Responses", {}).get(table, []):
                w = from_boto(it)
                found[_key_id(w, attrs)] = w
            pending = r.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])
            if pending:
                attempt += 1
                if attempt >= max_attempts:
                    raise AwsError(f"DynamoDB left {len(pending)} key(s) unprocessed after {attempt} attempts",
                                   "the table is throttled; wait and run `errors replay` again", code="throttled")
                sleep(min(5.0, 0.05 * 2 ** attempt) * (0.5 + random.random() / 2))
    return found


def _key_id(item: dict[str, Any], attrs: list[str]) -> str:
    from s3tstream.data.items import norm_number

    def norm(v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("N"), str):
            try:
                return {"N": norm_number(v["N"])}
            except ArithmeticError:
                return v
        return v

    return json.dumps({a: norm(item.get(a)) for a in attrs}, sort_keys=True)


def _row_keys(cfg: "Config", row: dict[str, Any]) -> dict[str, Any] | None:
    """DynamoDB typed keys of a transformed row (a delivery failure's rawData)."""
    from s3tstream.lake.schema import effective_schema
    from s3tstream.data.verify import canon, typed_key_value

    types = {c.name: c.type for c in effective_schema(cfg).columns}
    keys = {}
    for attr, col in cfg.key_columns():
        if row.get(col) is None or col not in types:
            return None
        keys[attr.name] = typed_key_value(attr.type, canon(types[col], row[col]))
    return keys


def plan_object(cfg: "Config", ddb: Any, records: list[FailedRecord], sleep: Callable[[float], None] = time.sleep
                ) -> tuple[list[tuple[bytes, str]], int, int, str | None]:
    """What to send for one object's records: (entries, as recorded, as current state, why not)."""
    from s3tstream.data.verify import change_record, partition_key

    changelog = cfg.table.mode == "changelog"
    attrs = [a.name for a, _ in cfg.key_columns()]
    table = cfg.names.source_table
    wanted: list[tuple[FailedRecord, dict[str, Any] | None, dict[str, Any]]] = []
    for r in records:
        ch = r.change()
        if ch is not None:
            keys = ch["dynamodb"].get("Keys")
            if not isinstance(keys, dict) or any(a not in keys for a in attrs):
                keys = {a: (ch["dynamodb"].get("NewImage") or ch["dynamodb"].get("OldImage") or {}).get(a) for a in attrs}
            if any(not isinstance(keys.get(a), dict) for a in attrs):
                return [], 0, 0, f"record {r.index}: the change record has no complete key"
            wanted.append((r, ch, keys))
            continue
        d = r.decoded()
        keys = _row_keys(cfg, d) if isinstance(d, dict) and not changelog else None
        if keys is None:
            why = ("record data is a transformed row: in changelog mode it cannot be rebuilt as a change record"
                   if isinstance(d, dict) else "record data is not a DynamoDB change record or a row")
            return [], 0, 0, f"record {r.index}: {why}"
        wanted.append((r, None, keys))

    current: dict[str, dict[str, Any]] = {}
    if not changelog:
        uniq = {_key_id(k, attrs): k for _, _, k in wanted}
        current = _batch_get(ddb, table, list(uniq.values()), attrs, sleep=sleep)
    entries: list[tuple[bytes, str]] = []
    n_raw = n_cur = 0
    for r, ch, keys in wanted:
        if ch is not None and (changelog or _still_current(ch, current.get(_key_id(keys, attrs)))):
            entries.append((r.raw or b"", partition_key(keys)))
            n_raw += 1
            continue
        item = current.get(_key_id(keys, attrs))
        rec = change_record(cfg, "INSERT", keys, item) if item is not None else change_record(cfg, "REMOVE", keys)
        entries.append((json.dumps(rec, separators=(",", ":")).encode(), partition_key(keys)))
        n_cur += 1
    return entries, n_raw, n_cur, None


def _still_current(ch: dict[str, Any], item: dict[str, Any] | None) -> bool:
    if ch.get("eventName") == "REMOVE":
        return item is None
    return item is not None and ch["dynamodb"].get("NewImage") == item


def replay(
    cfg: "Config",
    aws: "Aws",
    *,
    dry_run: bool = False,
    codes: tuple[str, ...] = (),
    progress: Progress = lambda m: None,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayResult:
    """Replay every error object (``codes``: only objects whose records all failed with one of
    them; an object is deleted whole, so one that mixes codes is kept and reported)."""
    from s3tstream.data.verify import put_records

    s3, kinesis, ddb = aws.client("s3"), aws.client("kinesis"), aws.client("dynamodb")
    bucket, prefix = error_location(cfg, aws)
    res = ReplayResult()
    for o in list_objects(s3, bucket, prefix):
        key = o["Key"]
        res.objects += 1
        records = read_object(s3, bucket, key)
        if codes:
            other = sorted({r.error_code for r in records} - set(codes))
            if len(other) == len({r.error_code for r in records}):
                res.objects -= 1  # none of its records has the code: not part of this replay
                continue
            if other:
                res.kept.append({"object": key, "reason": f"it also holds records that failed with {', '.join(other)} "
                                 "(an error object is replayed and deleted whole)"})
                progress(f"keeping {key}: it mixes error codes")
                continue
        entries, n_raw, n_cur, why = plan_object(cfg, ddb, records, sleep=sleep)
        if why:
            res.kept.append({"object": key, "reason": why})
            progress(f"keeping {key}: {why}")
            continue
        if dry_run:
            res.records += len(entries)
            res.raw += n_raw
            res.current += n_cur
            continue
        put_records(kinesis, cfg.names.stream, entries, progress=progress, sleep=sleep)  # raises unless all accepted
        res.records += len(entries)
        res.raw += n_raw
        res.current += n_cur
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"deleting the replayed error object s3://{bucket}/{key} (its records were sent)") from None
        res.deleted += 1
        progress(f"replayed {len(entries)} record(s) from {key}")
    return res
