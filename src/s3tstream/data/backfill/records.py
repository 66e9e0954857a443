"""The backfill's change records: INSERTs dated just before their read (CLOCK_SKEW_US), so any
change made after the read is newer."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from s3tstream.data.changes import Entry, change_record, dumps, partition_key
from s3tstream.data.progress import Progress

if TYPE_CHECKING:
    from s3tstream.config.model import Config

SOURCE = "s3tstream:backfill"
CLOCK_SKEW_US = 1_000_000  # backfill records are dated this much before their read


def key_attrs(cfg: "Config") -> list[str]:
    return [cfg.source.partition_key.name] + ([cfg.source.sort_key.name] if cfg.source.sort_key else [])


def approx_at(cfg: "Config", epoch_seconds: float) -> int:
    """ApproximateCreationDateTime at the stream's precision, dated CLOCK_SKEW_US earlier."""
    us = int(epoch_seconds * 1_000_000) - CLOCK_SKEW_US
    return us if cfg.stream.timestamp_precision == "MICROSECOND" else us // 1000
def build_entries(cfg: "Config", items: list[dict[str, Any]], read_at: float) -> list[Entry]:
    """Wire-JSON items -> (data, partition key, keys) of INSERT backfill records (UTF-8 JSON; the
    sender reports those over the record limit).

    The records are ``changes.encode(change_record(cfg, "INSERT", keys, item, ...))``: what the
    records of a page share (region, table, source, read time, precision, layout) comes from one
    change_record; per item only eventID, Keys, NewImage and SizeBytes are set (as change_record
    sets them), which costs a third of a change_record per item."""
    from s3tstream.data.items import item_size

    attrs = key_attrs(cfg)
    when = approx_at(cfg, read_at)
    base = change_record(cfg, "INSERT", {}, {}, source=SOURCE, approx=when)
    base_ddb = base["dynamodb"]
    uuid4 = uuid.uuid4
    out = []
    for it in items:
        keys = {a: it[a] for a in attrs if a in it}
        rec = {**base, "eventID": str(uuid4()),
               "dynamodb": {**base_ddb, "Keys": keys, "NewImage": it, "SizeBytes": item_size(keys) + item_size(it)}}
        out.append((dumps(rec), partition_key(keys), keys))
    return out


def quiet(progress: Progress) -> Progress:
    """Only the retry messages of the sender (its per-batch counts would drown the scan's)."""
    return lambda m: progress(m) if "throttled" in m else None
