"""Reading a delivery stream's Kinesis source (moto's kinesis backend, in process) into its buffer,
strictly after the stream's read checkpoint."""

from __future__ import annotations

from typing import Any

from s3tstream.sandbox.dataplane import contract
from s3tstream.sandbox.dataplane.contract import SourceRecord
from s3tstream.sandbox.dataplane.stream_state import StreamState
from s3tstream.sandbox.dataplane.streams import StreamConfig

READ_LIMIT = 10_000  # records read per shard per tick


def source_stream(cfg: StreamConfig) -> Any:
    from moto.kinesis.models import kinesis_backends

    parts = cfg.source_arn.split(":")
    if len(parts) < 6:
        return None
    region, account = parts[3], parts[4]
    if account not in dict.keys(kinesis_backends):
        return None
    regions = dict.__getitem__(kinesis_backends, account)
    if region not in dict.keys(regions):
        return None
    backend = dict.__getitem__(regions, region)
    return next((s for s in list(backend.streams.values()) if s.arn == cfg.source_arn), None)


def _snapshot(shard: Any) -> list[tuple[int, Any]]:
    for _ in range(5):
        try:
            return list(shard.records.items())
        except RuntimeError:  # changed size during iteration (a put in another thread)
            continue
    return list(shard.records.items())


def _following(shard: Any, seq: int) -> Any:
    """Records seq, seq+1, ... while they exist (a generator over moto's shard)."""
    while True:
        rec = shard.records.get(seq)
        if rec is None:
            return
        yield seq, rec
        seq += 1


def source_max(cfg: StreamConfig, st: StreamState) -> dict[str, int]:
    """The highest sequence number per shard the stream is responsible for."""
    stream = source_stream(cfg)
    out: dict[str, int] = {}
    if stream is None:
        return out
    for shard_id, shard in list(stream.shards.items()):
        items = _snapshot(shard)
        relevant = [seq for seq, rec in items if rec.created_at >= cfg.created - 0.0005]
        if relevant:
            out[shard_id] = max(relevant)
        elif shard_id in st.checkpoints.shards and st.checkpoints.shards[shard_id].done is not None:
            out[shard_id] = st.checkpoints.shards[shard_id].done  # type: ignore[assignment]
    return out


def read(cfg: StreamConfig, st: StreamState) -> int:
    """Move new source records into the buffer; returns how many."""
    stream = source_stream(cfg)
    if stream is None:
        st.last_error = f"source stream {cfg.source_arn} not found"
        return 0
    n = 0
    for index, (shard_id, shard) in enumerate(sorted(stream.shards.items())):
        pos = st.checkpoints.position(shard_id)
        taken: list[SourceRecord] = []
        if pos.read is not None and (pos.read + 1) in shard.records:
            # moto numbers a shard's records 1, 2, 3...: follow on without scanning the shard
            candidates: Any = _following(shard, pos.read + 1)
        elif pos.read is not None and (not shard.records or next(reversed(shard.records)) <= pos.read):
            continue
        else:
            candidates = _snapshot(shard)
        for seq, rec in candidates:
            if pos.read is not None and seq <= pos.read:
                continue
            if pos.read is None and rec.created_at < cfg.created - 0.0005:
                continue  # arrived before the delivery stream existed
            taken.append(SourceRecord(
                shard_id=shard_id,
                sequence_number=str(seq),
                subsequence_number=0,
                partition_key=rec.partition_key,
                data_b64=rec.data,
                arrival_ms=int(rec.created_at * 1000),
                record_id=contract.record_id(index, str(seq)),
            ))
            if len(taken) >= READ_LIMIT:
                break
        for r in taken:
            st.checkpoints.mark_read(shard_id, int(r.sequence_number))
        st.buffer.add(taken)
        n += len(taken)
    st.totals["read"] += n
    return n

