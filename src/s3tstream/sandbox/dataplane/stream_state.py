"""What the sandbox's Firehose keeps per delivery stream: checkpoints, buffer, the flush in progress
and its totals (process-wide, cleared by the sandbox's reset)."""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict
from typing import Any

from s3tstream.sandbox.dataplane import chaos, iceberg_writer, lambda_runner
from s3tstream.sandbox.dataplane.buffering import Buffer, Checkpoints
from s3tstream.sandbox.dataplane.contract import SourceRecord
from s3tstream.sandbox.dataplane.streams import StreamConfig
from s3tstream.sandbox.registry import on_reset


@dataclasses.dataclass
class TableWork:
    """Rows waiting for one table (kept across retries)."""

    database: str
    table: str
    ops: list[iceberg_writer.Op]
    attempts: int = 0
    merge_on_read: bool = False  # chaos delivery: data + equality delete files (row_delta)


@dataclasses.dataclass
class PendingFlush:
    """A flush whose outcome is not fully written yet (retrying a table, or the error bucket)."""

    records: list[SourceRecord]
    tables: list[TableWork]
    errors: dict[tuple[str, str | None], list[dict[str, Any]]]  # (output type, prefix) -> lines
    started: float
    oldest_arrival_ms: int


class StreamState:
    def __init__(self, cfg: StreamConfig) -> None:
        self.key = cfg.key
        self.lock = threading.RLock()
        self.checkpoints = Checkpoints()
        self.buffer = Buffer()
        self.pending: PendingFlush | None = None
        self.started = False  # start positions found
        self.totals: dict[str, int] = defaultdict(int)
        self.last_error: str | None = None
        self.error_objects: list[str] = []
        self.flushes = 0
        self.chaos: chaos.Chaos | None = None  # set while the sandbox delivers in chaos mode
        self._chaos_of: dict[chaos.DeliveryMode, chaos.Chaos] = {}

    def follow(self, mode: chaos.DeliveryMode, stream: str) -> None:
        """Take up the sandbox's delivery mode (a new mode or seed starts a new random sequence).

        Going back to a mode continues its sequence: every SandboxServer of a process steps every
        stream (the streams are the process's), each with its own mode, so an ordered server's
        worker and a chaos server's drain alternate. Restarting the sequence at each switch made
        every flush draw the same numbers (a burst with no copy at all stayed so, burst after burst)."""
        if not mode.chaos:
            self.chaos = None
        elif self.chaos is None or self.chaos.mode != mode:
            self.chaos = self._chaos_of.get(mode) or self._chaos_of.setdefault(mode, chaos.Chaos(mode, stream))

    def status(self, cfg: StreamConfig, source_max: dict[str, int] | None = None) -> dict[str, Any]:
        return {
            "name": cfg.name,
            "arn": cfg.arn,
            "account": cfg.account_id,
            "region": cfg.region,
            "source": cfg.source_arn,
            "checkpoints": self.checkpoints.to_json(),
            "buffered": len(self.buffer),
            "buffered_bytes": self.buffer.bytes,
            "pending": None if self.pending is None else {
                "records": len(self.pending.records),
                "tables": [f"{t.database}.{t.table}" for t in self.pending.tables],
                "error_lines": sum(len(v) for v in self.pending.errors.values()),
            },
            "flushes": self.flushes,
            "delivery": self.chaos.mode.to_json() if self.chaos else chaos.ORDERED.to_json(),
            "totals": dict(self.totals),
            "last_error": self.last_error,
            "error_objects": list(self.error_objects[-20:]),
            "drained": self.drained(source_max),
        }

    def drained(self, source_max: dict[str, int] | None) -> bool:
        if self.pending is not None or len(self.buffer):
            return False
        if source_max is None:
            return True
        for shard, top in source_max.items():
            pos = self.checkpoints.shards.get(shard)
            if pos is None or pos.done is None or pos.done < top:
                return False
        return True


_states_lock = threading.Lock()
_states: dict[tuple[str, str, str, float], StreamState] = {}


@on_reset
def _reset() -> None:
    with _states_lock:
        _states.clear()
    lambda_runner.shutdown()


def state_of(cfg: StreamConfig) -> StreamState:
    with _states_lock:
        st = _states.get(cfg.key)
        if st is None:
            # a stream deleted and created again under the same name starts afresh
            for k in [k for k in _states if k[:3] == cfg.key[:3]]:
                del _states[k]
            st = _states[cfg.key] = StreamState(cfg)
        return st

