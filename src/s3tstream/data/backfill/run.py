"""`backfill`: choose the strategy, run (or continue) it, catch up, clean up."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Callable

from s3tstream.data.backfill.catchup import Follower, catch_up, retention_note, stream_reader
from s3tstream.data.backfill.checks import check_destination, check_firehose, describe_table
from s3tstream.data.backfill.cleanup import discard
from s3tstream.data.backfill.export import ExportBackfill
from s3tstream.data.backfill.export_sql import check_exportable
from s3tstream.data.backfill.jobs import Checkpoints, record_oversize
from s3tstream.data.backfill.scan import ScanBackfill
from s3tstream.data.changes import Oversize, oversize_reason
from s3tstream.data.progress import Progress
from s3tstream.data.verify import auto_segments
from s3tstream.errors import UsageError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore

MAX_SEGMENTS = 64
STRATEGIES = ("auto", "scan", "export")


@dataclass
class Result:
    strategy: str
    table: str
    stream: str
    segments: int = 0
    resumed: bool = False
    items_read: int = 0  # this run
    items_sent: int = 0  # this run
    total_read: int = 0  # every run of this backfill
    total_sent: int = 0
    segments_done_before: int = 0
    skipped_oversize: int = 0  # records not sent for their size (every run of this backfill)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # their keys and sizes (the first 100)
    already_done: dict[str, Any] | None = None  # the record of the completed backfill (nothing was sent)
    elapsed_seconds: float = 0.0
    scan_seconds: float = 0.0  # reading and sending (the rate of items_per_second)
    rate_limit: str = ""
    catch_up: dict[str, Any] | None = None
    export: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        t = self.scan_seconds or self.elapsed_seconds
        return self.items_read / t if t > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "table": self.table, "stream": self.stream, "segments": self.segments,
            "resumed": self.resumed, "segments_done_before": self.segments_done_before,
            "items_read": self.items_read, "items_sent": self.items_sent,
            "total_read": self.total_read, "total_sent": self.total_sent,
            "skipped_oversize": self.skipped_oversize, "skipped": self.skipped, "already_done": self.already_done,
            "elapsed_seconds": round(self.elapsed_seconds, 3), "scan_seconds": round(self.scan_seconds, 3),
            "items_per_second": round(self.items_per_second, 1),
            "rate_limit": self.rate_limit, "catch_up": self.catch_up, "export": self.export, "notes": self.notes,
        }

def default_segments(item_count: int) -> int:
    """One segment for a small table; else at least 4, so reading and sending overlap."""
    return 1 if item_count < 2000 else max(4, auto_segments(item_count))


def choose_strategy(cfg: "Config", requested: str, desc: dict[str, Any], doc: dict[str, Any] | None) -> str:
    if doc is not None:
        if requested not in ("auto", doc["strategy"]):
            raise UsageError(
                f"a {doc['strategy']} backfill is in progress (checkpoint {Checkpoints(cfg).path}), not {requested}",
                f"run `s3tstream backfill` to continue it, or `s3tstream backfill --restart --strategy {requested}`",
            )
        return str(doc["strategy"])
    if requested != "auto":
        return requested
    return "export" if int(desc.get("ItemCount") or 0) >= cfg.backfill.scan_threshold_items else "scan"


def run(cfg: "Config", aws: "Aws", *, strategy: str = "auto", segments: int | None = None, restart: bool = False,
        enable_pitr: bool = False, progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep,
        on_page: Callable[[int, list[dict[str, Any]]], None] | None = None, state: "StateStore | None" = None) -> Result:
    """Run (or continue) the stack's backfill. The caller holds the stack lock (``state``: its
    StateStore, where the checkpoints go)."""
    if strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    if segments is not None and not 0 <= segments <= MAX_SEGMENTS:
        raise UsageError(f"--segments must be between 0 and {MAX_SEGMENTS}, not {segments}")
    store = Checkpoints(cfg, state)
    doc = None if restart else store.load()
    desc = describe_table(cfg, aws)
    created = _created(desc)
    if doc is not None and doc.get("phase") == "done":
        if doc.get("table_created") in (None, created):
            return completed(cfg, doc)
        progress(f"the completed backfill was of an earlier table {cfg.names.source_table} (created "
                 f"{doc.get('table_created')}, this one {created}): starting a new one")
        doc = None
    chosen = choose_strategy(cfg, strategy, desc, doc)
    if chosen == "export":
        check_exportable(cfg)
    check_destination(cfg, aws)
    check_firehose(cfg, aws)
    t0 = time.monotonic()
    restart_notes = discard(store, aws, progress)["notes"] if restart and store.exists() else []
    res = Result(strategy=chosen, table=cfg.names.source_table, stream=cfg.names.stream, resumed=doc is not None)
    res.notes += restart_notes
    follower: Follower | None = None
    if chosen == "scan":
        if doc is not None and segments and segments != doc["segments"]:
            raise UsageError(f"the backfill in progress uses {doc['segments']} segment(s), not {segments}",
                             f"run it with --segments {doc['segments']} (or without), or start over with --restart")
        if doc is None:
            n = segments or cfg.backfill.segments or default_segments(int(desc.get("ItemCount") or 0))
            doc = store.new("scan", segments=n, segment_state=store.segments(n))
            store.save(doc)
        res.segments = int(doc["segments"])
        res.segments_done_before = sum(1 for s in doc["segment_state"] if s["done"])
        if doc["phase"] == "scan":
            sb = ScanBackfill(cfg, aws, store, doc, desc, progress=progress, sleep=sleep, on_page=on_page)
            res.rate_limit = sb.rate_text
            progress(f"backfill: scanning {cfg.names.source_table} in {res.segments} segment(s) "
                     f"({'resuming, ' + str(res.segments_done_before) + ' done' if res.resumed else 'new'}), "
                     f"read rate limit {sb.rate_text}")
            t_scan = time.monotonic()
            follows = cfg.table.mode == "upsert" and cfg.backfill.catch_up
            follower = Follower(stream_reader(cfg, aws, float(doc["started_at"]), sleep=sleep)) if follows else None
            try:
                if follower:
                    with follower:  # collects the changes made while the scan runs
                        sb.run()
                else:
                    sb.run()
            finally:
                res.items_read, res.items_sent = sb.read, sb.sent
                res.scan_seconds = time.monotonic() - t_scan
            doc["phase"] = "catch_up"
            store.save(doc)
        since = float(doc["started_at"])
    else:
        if doc is None:
            doc = store.new("export")
            store.save(doc)
        eb = ExportBackfill(cfg, aws, store, doc, enable_pitr=enable_pitr, progress=progress, sleep=sleep)
        if doc["phase"] in ("export", "load"):
            res.export = eb.run()
            res.items_read = res.items_sent = int(eb.ex.get("item_count") or 0)
        else:  # loaded by an earlier run: this one finishes the catch-up and the clean-up
            res.export = {"export_arn": eb.ex.get("arn"), "items": eb.ex.get("item_count", 0),
                          "export_time": datetime.fromtimestamp(eb.ex["export_time"], UTC).isoformat(timespec="seconds"),
                          "pitr_enabled_by_backfill": bool(eb.ex.get("pitr_enabled_by_backfill"))}
        if res.export.get("pitr_enabled_by_backfill") and not cfg.source.point_in_time_recovery:
            res.notes.append("point-in-time recovery stays on (it is billed); `s3tstream up` turns it off again "
                             "unless source.point_in_time_recovery = true")
        since = float(eb.ex["export_time"])
    if doc["phase"] == "catch_up":
        if cfg.table.mode == "upsert" and cfg.backfill.catch_up:
            note = retention_note(cfg, aws, since)
            if note:
                res.notes.append(note)
            t_cu = time.monotonic()
            skipped: list[Oversize] = []
            res.catch_up = catch_up(cfg, aws, since, progress=progress, sleep=sleep, follower=follower, skipped=skipped)
            record_oversize(doc, skipped)
            res.catch_up["seconds"] = round(time.monotonic() - t_cu, 3)
            if res.catch_up["unsettled"]:
                res.notes.append(f"{res.catch_up['unsettled']} key(s) kept changing during the catch-up; their next "
                                 "change record sets them right")
        elif cfg.table.mode == "changelog":
            res.notes.append("changelog mode: backfill rows are dated at their read, so newer changes win by _event_time")
        else:
            res.notes.append("backfill.catch_up = false: an item changed while the backfill ran may keep its older "
                             "value until its next change; `s3tstream verify --repair` fixes it")
        doc["phase"] = "cleanup"
        store.save(doc)
    if chosen == "export":
        removed = ExportBackfill(cfg, aws, store, doc, enable_pitr=False, progress=progress).remove_export_files()
        res.export = {**(res.export or {}), "removed_objects": removed}
    if chosen == "scan":
        segs = doc["segment_state"]
        res.total_read = sum(s["read"] for s in segs)
        res.total_sent = sum(s["sent"] for s in segs)
    else:
        res.total_read = res.total_sent = int(doc.get("export", {}).get("item_count") or 0)
    res.skipped_oversize = int(doc.get("skipped_oversize") or 0)
    res.skipped = skipped_json(doc)
    res.elapsed_seconds = time.monotonic() - t0
    store.complete(doc, total_read=res.total_read, total_sent=res.total_sent, table_created=created)
    return res


def _created(desc: dict[str, Any]) -> str | None:
    """The source table's CreationDateTime: a table recreated since a completed backfill needs its own."""
    v = desc.get("CreationDateTime")
    return v.isoformat() if isinstance(v, datetime) else (str(v) if v is not None else None)


def skipped_json(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [{**Oversize(s["keys"], s["bytes"]).to_json(), "reason": oversize_reason(Oversize(s["keys"], s["bytes"]))}
            for s in doc.get("skipped_keys") or []]


def completed(cfg: "Config", doc: dict[str, Any]) -> Result:
    """A backfill that already completed: nothing is sent (`--restart` runs a new one)."""
    res = Result(strategy=str(doc.get("strategy")), table=cfg.names.source_table, stream=cfg.names.stream,
                 total_read=int(doc.get("total_read") or 0), total_sent=int(doc.get("total_sent") or 0),
                 skipped_oversize=int(doc.get("skipped_oversize") or 0), skipped=skipped_json(doc),
                 already_done={k: doc.get(k) for k in ("run_id", "strategy", "created_at", "completed_at",
                                                        "total_read", "total_sent")})
    res.notes.append(f"a backfill of {cfg.names.source_table} already completed at {doc.get('completed_at')} "
                     f"({res.total_sent:,} item(s) sent); nothing was sent. Items written since then reach the lake "
                     "through the stream; run `s3tstream backfill --restart` to send every item again")
    return res


