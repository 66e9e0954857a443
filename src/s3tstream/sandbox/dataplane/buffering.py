"""Checkpoints and buffers of the sandbox's Firehose streams (pure Python, unit tested alone).

Checkpoints: per (delivery stream, source shard) two positions, both Kinesis sequence numbers:
``read`` (the last record taken into the buffer) and ``done`` (every record up to it was
delivered to the table or written to the error bucket). Records are read strictly after
``read``; ``done`` only moves when a whole flush has been resolved, so the sandbox never
delivers a record twice and never skips one. (On AWS, Firehose reading Kinesis is
at-least-once: a duplicate is possible there, which is why the transform's upserts are
idempotent.)

Buffer: records wait until ``SizeInMBs`` (MiB of source data) is reached or
``IntervalInSeconds`` (times the sandbox time scale) has passed since the first buffered record,
whichever comes first (Firehose's "whichever happens first",
https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html). Interval 0 flushes at
the next tick.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

from s3tstream.sandbox.dataplane import timescale
from s3tstream.sandbox.dataplane.contract import SourceRecord

MIB = 1024 * 1024
# Defaults when a stream has no BufferingHints: the API's (BufferingHints in botocore's firehose
# model: "The default value is 5" MiB and 300 s). The product always sets both.
DEFAULT_SIZE_MB = 5
DEFAULT_INTERVAL_S = 300


@dataclasses.dataclass
class ShardPosition:
    read: int | None = None  # sequence number of the last record buffered (None: nothing yet)
    done: int | None = None  # sequence number up to which everything is resolved


class Checkpoints:
    """Positions per shard of one delivery stream."""

    def __init__(self) -> None:
        self.shards: dict[str, ShardPosition] = {}

    def position(self, shard_id: str) -> ShardPosition:
        return self.shards.setdefault(shard_id, ShardPosition())

    def mark_read(self, shard_id: str, sequence_number: int) -> None:
        pos = self.position(shard_id)
        if pos.read is not None and sequence_number <= pos.read:
            raise ValueError(f"shard {shard_id}: sequence {sequence_number} read twice (last read {pos.read})")
        pos.read = sequence_number

    def mark_done(self, upto: dict[str, int]) -> None:
        """Everything up to these positions is resolved (never moves backwards)."""
        for shard_id, seq in upto.items():
            pos = self.position(shard_id)
            if pos.read is not None and seq > pos.read:
                raise ValueError(f"shard {shard_id}: cannot complete {seq} before reading it (read {pos.read})")
            if pos.done is None or seq > pos.done:
                pos.done = seq

    def pending(self) -> dict[str, tuple[int | None, int | None]]:
        return {s: (p.read, p.done) for s, p in self.shards.items() if p.read != p.done}

    def to_json(self) -> dict[str, dict[str, str | None]]:
        return {
            s: {"read": None if p.read is None else str(p.read), "done": None if p.done is None else str(p.done)}
            for s, p in sorted(self.shards.items())
        }


class Buffer:
    """Records read from the source and not flushed yet, in read order."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.records: list[SourceRecord] = []
        self.bytes = 0
        self.first_at: float | None = None

    def __len__(self) -> int:
        return len(self.records)

    def add(self, records: Iterable[SourceRecord]) -> None:
        for r in records:
            if self.first_at is None:
                self.first_at = self.clock()
            self.records.append(r)
            self.bytes += r.size

    def due(self, size_mb: float | None, interval_s: float | None) -> bool:
        """Whether the buffer must be flushed now under these hints (interval scaled)."""
        if not self.records:
            return False
        size_limit = (DEFAULT_SIZE_MB if size_mb is None else float(size_mb)) * MIB
        if self.bytes >= size_limit:
            return True
        wait = timescale.scaled(interval_s, DEFAULT_INTERVAL_S)
        assert self.first_at is not None
        return self.clock() - self.first_at >= wait

    def put_back(self, records: list[SourceRecord]) -> None:
        """Return taken records to the front (a flush that could not start keeps them)."""
        if records:
            self.records[:0] = records
            self.bytes += sum(r.size for r in records)
            if self.first_at is None:
                self.first_at = self.clock()

    def take(self) -> list[SourceRecord]:
        out, self.records, self.bytes, self.first_at = self.records, [], 0, None
        return out


def positions(records: Iterable[SourceRecord]) -> dict[str, int]:
    """The highest sequence number per shard among these records."""
    out: dict[str, int] = {}
    for r in records:
        seq = int(r.sequence_number)
        if seq > out.get(r.shard_id, -1):
            out[r.shard_id] = seq
    return out


def chunks(records: list[SourceRecord], max_bytes: float) -> list[list[SourceRecord]]:
    """Split a flush into Lambda invocations of at most ``max_bytes`` of source data each."""
    out: list[list[SourceRecord]] = []
    cur: list[SourceRecord] = []
    size = 0
    for r in records:
        if cur and size + r.size > max_bytes:
            out.append(cur)
            cur, size = [], 0
        cur.append(r)
        size += r.size
    if cur:
        out.append(cur)
    return out
