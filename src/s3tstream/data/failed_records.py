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

Objects are read streamed (GZIP decompressed a chunk at a time, documents parsed as they come,
at most MAX_OBJECT_BYTES uncompressed): an object that cannot be read whole (not JSON, truncated
GZIP, a GZIP bomb, an S3 error) is a BadObject, reported and skipped, never fatal and never
deleted. Text from error objects goes to a terminal only through :func:`safe`. Replay: replay.py.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import itertools
import json
import re
import unicodedata
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import error_code, error_message, is_not_found, translate
from s3tstream.errors import AwsError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

Progress = Callable[[str], None]
_decoder = json.JSONDecoder()
_WS = re.compile(r"[ \t\r\n]*")
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 256 * 1024  # read and decompressed this much at a time
# UNCONFIRMED: Firehose writes error objects of at most its buffer size (128 MiB) of records; an
# object larger than this, uncompressed, is not one of its error objects (or is a GZIP bomb)
MAX_OBJECT_BYTES = 256 * 1024 * 1024
MAX_DOCUMENT_BYTES = 8 * 1024 * 1024  # one error document (a record is at most 1 MiB, base64 4/3 of it)


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


def to_record(doc: Any, object_key: str, index: int) -> FailedRecord:
    """One Firehose error document -> a FailedRecord (BadObject when it is not a JSON object)."""
    if not isinstance(doc, dict):
        raise BadObject(f"document {index} is a JSON {type(doc).__name__}, not a Firehose error document")
    raw_b64 = doc.get("rawData")
    raw = None
    if isinstance(raw_b64, str):
        try:
            raw = base64.b64decode(raw_b64, validate=True)
        except (binascii.Error, ValueError):
            raw = raw_b64.encode()
    return FailedRecord(
        object_key=object_key,
        index=index,
        error_code=str(_first(doc, "errorCode", "ErrorCode", "lastErrorCode") or "Unknown"),
        error_message=str(_first(doc, "errorMessage", "ErrorMessage", "lastErrorMessage") or ""),
        raw=raw,
        arrival_ms=_int(doc.get("arrivalTimestamp")),
        ending_ms=_int(doc.get("attemptEndingTimestamp")),
        attempts=_int(doc.get("attemptsMade")),
        doc=doc,
    )


# ------------------------------------------------------------------ reading an object, streamed
class BadObject(Exception):
    """An error object that cannot be read whole: reported and skipped, never deleted."""

    def __init__(self, reason: str, records_read: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.records_read = records_read


def _incomplete(e: json.JSONDecodeError, text: str) -> bool:
    """Whether a parse error may only mean that the document goes on in the next chunk."""
    return e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")


def iter_documents(chunks: Iterable[bytes]) -> Iterator[Any]:
    """JSON documents, one a line or simply concatenated, from a stream of byte chunks; at most
    MAX_DOCUMENT_BYTES a document. Raises BadObject for text that is not such documents."""
    utf8 = codecs.getincrementaldecoder("utf-8")("replace")
    buf, i, n = "", 0, 0
    for chunk in itertools.chain(chunks, [None]):
        final = chunk is None
        buf = buf[i:] + (utf8.decode(b"", final=True) if final else utf8.decode(chunk))
        i = 0
        while True:
            i = _WS.match(buf, i).end()  # type: ignore[union-attr]
            if i >= len(buf):
                break
            try:
                doc, i = _decoder.raw_decode(buf, i)
            except json.JSONDecodeError as e:
                rest = buf[i:]
                if final or not _incomplete(e, buf):
                    what = "truncated" if final and _incomplete(e, buf) else "not JSON"
                    raise BadObject(f"document {n} is {what} ({e.msg} at character {e.pos - i})") from None
                if len(rest) > MAX_DOCUMENT_BYTES:
                    raise BadObject(f"document {n} is longer than {MAX_DOCUMENT_BYTES:,} characters") from None
                break  # the document goes on in the next chunk
            n += 1
            yield doc
        if final:
            return


def body_chunks(body: Any, max_bytes: int = MAX_OBJECT_BYTES) -> Iterator[bytes]:
    """An S3 object's body, GZIP-decompressed when it is (every member), in chunks of at most
    CHUNK bytes: never more than one chunk in memory. BadObject when the GZIP data is corrupt or
    truncated, or when it holds more than ``max_bytes`` (a GZIP bomb)."""
    total = 0

    def counted(b: bytes) -> bytes:
        nonlocal total
        total += len(b)
        if total > max_bytes:
            raise BadObject(f"larger than {max_bytes:,} bytes (uncompressed); not a Firehose error object")
        return b

    raw = body.read(CHUNK)
    if raw[:2] != GZIP_MAGIC:
        while raw:
            yield counted(raw)
            raw = body.read(CHUNK)
        return
    d: Any = None  # the member being decompressed (None: between members)
    data = raw
    while True:
        if not data:
            data = body.read(CHUNK)
            if not data:
                break
        if d is None:
            d = zlib.decompressobj(wbits=31)  # one GZIP member; another may follow (concatenated members)
        try:
            out = d.decompress(data, CHUNK)
            if out:
                yield counted(out)
            data = d.unconsumed_tail
            while not data and not d.eof and len(out) == CHUNK:  # output held back by the CHUNK limit
                out = d.decompress(b"", CHUNK)
                if out:
                    yield counted(out)
        except zlib.error as e:
            raise BadObject(f"corrupt GZIP data ({e})") from None
        if d.eof:
            data, d = d.unused_data, None
    if d is not None:
        raise BadObject("truncated GZIP data (the object ends mid-stream)")


def decode_body(body: bytes) -> str:
    """A whole (small) body as text, decompressed when it is GZIP (tests, tools)."""
    return b"".join(body_chunks(io.BytesIO(body))).decode("utf-8", "replace")


def parse_documents(text: str, object_key: str) -> list[FailedRecord]:
    """Firehose error documents in ``text`` -> FailedRecords (BadObject when it is not such documents)."""
    return [to_record(d, object_key, i) for i, d in enumerate(iter_documents([text.encode("utf-8")]))]


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


def iter_object(s3: Any, bucket: str, key: str, etag: str | None = None) -> Iterator[FailedRecord]:
    """The failed records of one error object, streamed (see body_chunks). BadObject when the
    object cannot be read whole (also for S3 errors on this object: the others are read on).
    ``etag``: read only that version of it (S3 answers PreconditionFailed otherwise)."""
    kw = {"IfMatch": etag} if etag else {}
    n = 0
    try:
        body = s3.get_object(Bucket=bucket, Key=key, **kw)["Body"]
        for doc in iter_documents(body_chunks(body)):
            yield to_record(doc, key, n)
            n += 1
    except BadObject as e:
        raise BadObject(e.reason, n) from None
    except ClientError as e:
        raise BadObject(f"S3 GetObject failed with {error_code(e)}: {error_message(e)}", n) from None
    except BotoCoreError as e:
        raise BadObject(f"reading it failed: {e}", n) from None


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


class Summary:
    """Failed records grouped by error code, added one at a time (an object's records are never
    all held: see iter_object)."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.records = 0

    def add(self, r: FailedRecord) -> None:
        self.records += 1
        g = self.groups.get(r.error_code)
        if g is None:
            g = self.groups[r.error_code] = {"error_code": r.error_code, "count": 0, "first_ms": None, "last_ms": None,
                                             "message": r.error_message, "example": describe(r), "objects": set()}
        g["count"] += 1
        g["objects"].add(r.object_key)
        w = r.when_ms
        if w is not None:
            g["first_ms"] = w if g["first_ms"] is None else min(g["first_ms"], w)
            g["last_ms"] = w if g["last_ms"] is None else max(g["last_ms"], w)

    def to_json(self) -> list[dict[str, Any]]:
        return [{"error_code": g["error_code"], "count": g["count"], "first": iso_ms(g["first_ms"]),
                 "last": iso_ms(g["last_ms"]), "message": g["message"], "objects": len(g["objects"]),
                 "example": g["example"]}
                for g in sorted(self.groups.values(), key=lambda g: (-g["count"], g["error_code"]))]


def summarize(records: Iterable[FailedRecord]) -> list[dict[str, Any]]:
    s = Summary()
    for r in records:
        s.add(r)
    return s.to_json()


@dataclass
class Listing:
    """What `s3tstream errors` shows: the records of every readable object, grouped; the objects
    that could not be read (skipped, never deleted), each with why."""

    objects: int = 0
    records: int = 0
    groups: list[dict[str, Any]] = field(default_factory=list)
    bad: list[dict[str, Any]] = field(default_factory=list)


def list_errors(s3: Any, bucket: str, prefix: str, progress: Progress = lambda m: None) -> Listing:
    objects = list_objects(s3, bucket, prefix)
    summary = Summary()
    bad: list[dict[str, Any]] = []
    for i, o in enumerate(objects, 1):
        part = Summary()  # an object counts only when it was read whole
        try:
            for r in iter_object(s3, bucket, o["Key"]):
                part.add(r)
        except BadObject as e:
            bad.append({"object": o["Key"], "reason": e.reason, "records_read": e.records_read})
            progress(f"skipping {safe(o['Key'])}: {safe(e.reason)}")
            continue
        for code, g in part.groups.items():
            have = summary.groups.get(code)
            if have is None:
                summary.groups[code] = g
                continue
            have["count"] += g["count"]
            have["objects"] |= g["objects"]
            for k, pick in (("first_ms", min), ("last_ms", max)):
                vals = [v for v in (have[k], g[k]) if v is not None]
                have[k] = pick(vals) if vals else None
        summary.records += part.records
        if i % 20 == 0:
            progress(f"read {i}/{len(objects)} error objects")
    return Listing(objects=len(objects), records=summary.records, groups=summary.to_json(), bad=bad)


# ------------------------------------------------------------------ terminal output
def safe(text: Any) -> str:
    """Text from an error object, safe for a terminal: control and format characters (escape
    sequences, bidi overrides) shown as escapes; other non-ASCII text kept as it is."""
    s = text if isinstance(text, str) else str(text)
    out = []
    for ch in s:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)
