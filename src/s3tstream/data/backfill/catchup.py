"""The catch-up (upsert mode): the keys DynamoDB changed while the backfill ran are read again
(consistent BatchGetItem) and sent again, so a snapshot record never wins over a newer change."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import translate
from s3tstream.data.backfill.records import CLOCK_SKEW_US, SOURCE, approx_at, key_attrs, quiet
from s3tstream.data.backfill.wire import call_wire
from s3tstream.data.changes import Oversize, change_record, encode, put_records
from s3tstream.data.items import batch_get, key_id
from s3tstream.data.progress import Progress

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

CATCH_UP_ROUNDS = 3
GET_RECORDS_LIMIT = 10_000


def epoch(v: Any) -> float:
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

    def __init__(self, client: Any, stream: str, since: float, attrs: list[str], *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.attrs = attrs  # the table's key attributes (key identity: items.key_id)
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
                at = epoch(rec.get("ApproximateArrivalTimestamp"))
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
                    found[key_id(keys, self.attrs)] = (keys, at)
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


def stream_reader(cfg: "Config", aws: "Aws", since: float, *, sleep: Callable[[float], None] = time.sleep) -> StreamReader:
    return StreamReader(aws.client("kinesis"), cfg.names.stream, since - CLOCK_SKEW_US / 1e6, key_attrs(cfg), sleep=sleep)


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
             follower: Follower | None = None, skipped: list[Oversize] | None = None) -> dict[str, Any]:
    """Send again, with their current value, the keys DynamoDB changed since ``since`` (upsert).

    ``follower``: what a Follower read during the scan; the stream is read on from there.
    ``skipped``: collects the records not sent for their size."""
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
            items = batch_get(ddb, table, list(todo.values()), key_attrs(cfg), sleep=sleep)
            when = approx_at(cfg, read_at)
            recs = []
            for kid, keys in todo.items():
                item = items.get(kid)
                if item is not None:
                    recs.append(change_record(cfg, "INSERT", keys, item, source=SOURCE, approx=when))
                else:
                    recs.append(change_record(cfg, "REMOVE", keys, source=SOURCE, approx=when))
                    stats["removed"] += 1
            sent = put_records(kinesis, stream, [encode(x) for x in recs], progress=quiet(progress), sleep=sleep)
            stats["resent"] += sent.sent
            if skipped is not None:
                skipped += sent.oversize
            progress(f"catch-up round {r + 1}: sent {sent.sent} changed key(s) again")
            # keys changed again after we read them may have landed before our record: once more
            again = reader.read()
            todo = {k: todo[k] for k, (_, at) in again.items() if k in todo and at >= read_at - margin}
        stats["unsettled"] = len(todo)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"catching up with the changes on {stream}") from None
    stats["records_read"] = reader.records_read
    return stats

