"""The change records s3tstream writes (backfill, verify --repair, errors replay) and their one sender.

A change record is in the Kinesis Data Streams for DynamoDB format (aws-notes), so the
transform treats it like DynamoDB's own; ``eventSource`` says who wrote it. Records are UTF-8
JSON (``ensure_ascii=False``): ASCII escapes would grow non-ASCII text up to 6 bytes a
character and push a legal 400 KB item over the record limit.

Kinesis takes a record of at most ``KINESIS_RECORD_BYTES`` (data blob plus partition key,
PutRecords documentation; a stream's MaxRecordSizeInKiB defaults to 1024 and can be raised to
10240 with UpdateMaxRecordSize, which s3tstream does not do). A record over it is not sent: it
is returned (``Sent.oversize``, with its keys) for the command to report and exit 1; every
other record is still sent.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import translate
from s3tstream.aws.retry import Exhausted, retry_rest
from s3tstream.errors import AwsError

if TYPE_CHECKING:
    from s3tstream.config.model import Config

Progress = Callable[[str], None]
REPAIR_SOURCE = "s3tstream:repair"
KINESIS_BATCH = 500  # PutRecords: at most 500 records
KINESIS_BATCH_BYTES = 5 * 1024 * 1024  # and 5 MiB per request (data + partition keys)
KINESIS_RECORD_BYTES = 1024 * 1024  # data + partition key (the stream's default MaxRecordSizeInKiB)
Entry = tuple[bytes, str, dict[str, Any]]  # (data, partition key, the DynamoDB Keys it is about)


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


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(record: dict[str, Any]) -> bytes:
    """A change record as compact UTF-8 JSON (never ASCII-escaped)."""
    return _dumps(record).encode("utf-8")


def encode(record: dict[str, Any]) -> Entry:
    keys = record["dynamodb"]["Keys"]
    return dumps(record), partition_key(keys), keys


def entry_bytes(data: bytes, pk: str) -> int:
    """What Kinesis counts against the record limit: the data blob and the partition key."""
    return len(data) + len(pk.encode("utf-8"))


@dataclass
class Oversize:
    keys: dict[str, Any]
    bytes: int

    def to_json(self) -> dict[str, Any]:
        from s3tstream.data.items import item_to_plain

        try:
            keys = item_to_plain(self.keys)
        except Exception:  # noqa: BLE001 - a malformed key is shown as it is
            keys = self.keys
        return {"keys": keys, "bytes": self.bytes, "limit": KINESIS_RECORD_BYTES}


@dataclass
class Sent:
    """What a send did: ``sent`` accepted by Kinesis; ``oversize`` not sent (over the record limit)."""

    sent: int = 0
    oversize: list[Oversize] = field(default_factory=list)

    def add(self, other: "Sent") -> None:
        self.sent += other.sent
        self.oversize += other.oversize


def oversize_reason(o: Oversize) -> str:
    return (f"its change record is {o.bytes:,} bytes, over Kinesis' record limit of {KINESIS_RECORD_BYTES:,} "
            "(data + partition key)")


def put_records(
    client: Any,
    stream: str,
    entries: Iterable[Entry],
    *,
    progress: Progress = lambda m: None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
) -> Sent:
    """PutRecords in batches (500 records / 5 MiB), retrying failed entries (aws.retry).

    An entry over the record limit is not sent and comes back in ``Sent.oversize``; raises
    AwsError when some entries still fail after ``max_attempts``."""
    out = Sent()
    batches: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    size = 0
    for data, pk, keys in entries:
        n = entry_bytes(data, pk)
        if n > KINESIS_RECORD_BYTES:
            out.oversize.append(Oversize(keys, n))
            continue
        if cur and (len(cur) == KINESIS_BATCH or size + n > KINESIS_BATCH_BYTES):
            batches.append(cur)
            cur, size = [], 0
        cur.append({"Data": data, "PartitionKey": pk})
        size += n
    if cur:
        batches.append(cur)
    total = sum(len(b) for b in batches)
    codes: set[str] = set()

    def call(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            resp = client.put_records(StreamName=stream, Records=pending)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"sending records to the Kinesis stream {stream} ({out.sent} of {total} sent)") from None
        results = resp.get("Records", [])
        failed = [p for p, r in zip(pending, results) if r.get("ErrorCode")]
        codes.update(r["ErrorCode"] for r in results if r.get("ErrorCode"))
        out.sent += len(pending) - len(failed)
        return failed

    for batch in batches:
        try:
            retry_rest(call, batch, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep,
                       on_retry=lambda n, a, d: progress(f"{n} record(s) throttled; retry {a} in {d:.2f}s"))
        except Exhausted as e:
            raise AwsError(f"Kinesis refused {len(e.left)} record(s) after {e.attempts} attempts ({', '.join(sorted(codes))}); "
                           f"{out.sent} of {total} were accepted",
                           "the stream is throttled; wait and run the command again", code="throttled") from None
        progress(f"sent {out.sent}/{total} records")
    return out


def send_records(client: Any, stream: str, records: Iterable[dict[str, Any]], **kw: Any) -> Sent:
    """Change records -> UTF-8 JSON -> Kinesis (see put_records)."""
    return put_records(client, stream, (encode(r) for r in records), **kw)
