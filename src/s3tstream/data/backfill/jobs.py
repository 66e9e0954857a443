"""The checkpoints of long data jobs in the stack's state file: ``jobs.backfill`` (a backfill in
progress, or the record of the last one completed) and ``jobs.verify-export`` (the export a
`verify --export` is using), each through StateStore.save_job (the whole file replaced atomically).
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from s3tstream.errors import StateError

if TYPE_CHECKING:
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore

CHECKPOINT_VERSION = 1
KEPT_OVERSIZE_KEYS = 100  # keys of over-size records kept in the checkpoint (reported by every later run)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------ the checkpoint's shape
class _Part(BaseModel):
    # unknown fields are kept (a newer s3tstream may add some); only what is known is checked
    model_config = ConfigDict(extra="allow")


class SegmentState(_Part):
    lek: dict[str, Any] | None = None  # the segment's LastEvaluatedKey (wire JSON); None: from the start
    read: int = 0
    sent: int = 0
    done: bool = False


class ExportState(_Part):
    bucket: str | None = None
    prefix: str | None = None
    client_token: str | None = None
    arn: str | None = None
    id: str | None = None
    status: str | None = None
    export_time: float | None = None
    item_count: int | None = None
    data_prefix: str | None = None
    glue_database: str | None = None
    glue_table: str | None = None
    query_token: str | None = None
    query_id: str | None = None
    failed_query_id: str | None = None
    loaded: bool | None = None
    pitr_enabled_by_backfill: bool | None = None
    pitr_enabling: bool | None = None


class JobCheckpoint(_Part):
    """``jobs.backfill`` / ``jobs.verify-export`` as the state file holds them (the form written
    since checkpoints moved into the state file, and the older own-file form it adopts)."""

    version: int
    stack: str
    region: str
    table: str
    stream: str
    mode: str
    strategy: Literal["scan", "export"]
    run_id: str
    started_at: float
    phase: Literal["scan", "export", "load", "catch_up", "cleanup", "done"]
    created_at: str | None = None
    updated_at: str | None = None
    completed_at: str | None = None  # phase done: the record of a completed backfill
    segments: int | None = None
    segment_state: list[SegmentState] | None = None
    export: ExportState | None = None
    skipped_oversize: int = 0
    skipped_keys: list[dict[str, Any]] = []

    @classmethod
    def checked(cls, doc: Any, where: str, hint: str) -> dict[str, Any]:
        """``doc`` validated (exit 2 naming the field when it is not a checkpoint), as a dict
        holding exactly the fields it had."""
        try:
            return cls.model_validate(doc).model_dump(exclude_unset=True)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "(document)"
            raise StateError(f"{where}: field {field}: {err['msg']}", hint) from None


def record_oversize(doc: dict[str, Any], oversize: list[Any]) -> None:
    """Count (and keep the first keys of) records not sent for their size, across runs."""
    if not oversize:
        return
    doc["skipped_oversize"] = doc.get("skipped_oversize", 0) + len(oversize)
    kept = doc.setdefault("skipped_keys", [])
    kept += [{"keys": o.keys, "bytes": o.bytes} for o in oversize][: max(0, KEPT_OVERSIZE_KEYS - len(kept))]


# ------------------------------------------------------------------ checkpoints
class Checkpoints:
    """A job's checkpoint in the stack's state file (``jobs.<job>``, StateStore.save_job: the
    whole file replaced atomically on every save). Pass the command's own StateStore (it holds
    the stack lock); without one, the state file is opened here (tests, tools)."""

    JOB = "backfill"
    RESTART_HINT = "run `s3tstream backfill --restart` to start over, or `s3tstream backfill --abort` to give it up"
    COMMAND = "s3tstream backfill"  # who runs an export with this checkpoint (messages)
    AFTER_FAILED_EXPORT = "`s3tstream backfill --restart`"
    OTHERWISE = "use --strategy scan"  # what to do instead of an export
    LEGACY = "{stack}.backfill.json"  # where s3tstream 0.1 kept it, beside the state file

    def __init__(self, cfg: "Config", state: "StateStore | None" = None) -> None:
        self.cfg = cfg
        self.JOB = cfg.job_name(type(self).JOB)  # one checkpoint per table of a [[tables]] config
        self.path: Path = cfg.state_path  # where it lives, for messages
        self._state = state

    @property
    def state(self) -> "StateStore":
        if self._state is None:
            from s3tstream.state import StateStore

            self._state = StateStore(self.cfg.state_path, self.cfg.stack.name, self.cfg.stack.region)
        return self._state

    def exists(self) -> bool:
        """A job in progress (a completed backfill's record is not one)."""
        doc = self.state.job(self.JOB)
        return doc is not None and doc.get("phase") != "done"

    def load(self) -> dict[str, Any] | None:
        doc = self.state.job(self.JOB)
        if doc is None:
            doc = self._adopt_legacy()
        if doc is None:
            return None
        where = f"{self.JOB} checkpoint (jobs.{self.JOB} in {self.path})"
        if doc.get("version") != CHECKPOINT_VERSION:
            raise StateError(f"{where} has an unknown version {doc.get('version')!r}", self.RESTART_HINT)
        want = {"stack": self.cfg.stack.name, "region": self.cfg.stack.region, "table": self.cfg.names.source_table,
                "stream": self.cfg.names.stream, "mode": self.cfg.table.mode}
        for k, v in want.items():
            if doc.get(k) != v:
                if doc.get("phase") == "done":
                    return None  # the completed backfill of another table or mode: not this one's
                raise StateError(f"{where} is for {k} {doc.get(k)!r}, but the config says {v!r}", self.RESTART_HINT)
        return JobCheckpoint.checked(doc, where, self.RESTART_HINT)

    def _adopt_legacy(self) -> dict[str, Any] | None:
        """A checkpoint an older s3tstream kept in a file of its own: moved into the state file,
        so an upgrade in the middle of a backfill continues it (and never exports twice)."""
        old = self.cfg.state_dir / self.LEGACY.format(stack=self.cfg.stack.name)
        if not self.LEGACY or not old.exists():
            return None
        try:
            doc = json.loads(old.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise StateError(f"the {self.JOB} checkpoint {old} (from an older s3tstream) is corrupt: {e}",
                             f"delete it, then {self.RESTART_HINT.removeprefix('run ')}") from None
        self.save(doc)
        old.unlink()
        return self.state.job(self.JOB)

    def save(self, doc: dict[str, Any]) -> None:
        doc["updated_at"] = _now_iso()
        self.state.save_job(self.JOB, doc)

    def delete(self) -> None:
        self.state.drop_job(self.JOB)

    def complete(self, doc: dict[str, Any], **summary: Any) -> None:
        """Keep, instead of the checkpoint, the record that this backfill completed: a later
        `backfill` says so and sends nothing unless --restart."""
        keep = {k: doc[k] for k in ("version", "stack", "region", "table", "stream", "mode", "strategy", "run_id",
                                    "started_at", "created_at", "skipped_oversize", "skipped_keys") if k in doc}
        self.save({**keep, "phase": "done", "completed_at": _now_iso(), **summary})

    def new(self, strategy: str, **fields: Any) -> dict[str, Any]:
        """A new job's checkpoint, built (and checked) by the model; saved as a dict."""
        doc = {"version": CHECKPOINT_VERSION, "stack": self.cfg.stack.name, "region": self.cfg.stack.region,
               "table": self.cfg.names.source_table, "stream": self.cfg.names.stream, "mode": self.cfg.table.mode,
               "strategy": strategy, "run_id": uuid.uuid4().hex[:12], "started_at": time.time(),
               "created_at": _now_iso(), "phase": "scan" if strategy == "scan" else "export", **fields}
        return JobCheckpoint.checked(doc, f"a new {self.JOB} checkpoint", self.RESTART_HINT)

    @staticmethod
    def segments(n: int) -> list[dict[str, Any]]:
        """The state of ``n`` scan segments not started yet."""
        return [SegmentState(lek=None, read=0, sent=0, done=False).model_dump() for _ in range(n)]



class VerifyCheckpoint(Checkpoints):
    """The export a `verify --export` is using: ``jobs.verify-export`` in the state file, beside
    (not in) the backfill's checkpoint."""

    JOB = "verify-export"
    RESTART_HINT = "run `s3tstream verify --export` again: it gives up an unusable checkpoint and exports anew"
    COMMAND = "s3tstream verify --export"
    AFTER_FAILED_EXPORT = "run `s3tstream verify --export` again (it exports anew)"
    OTHERWISE = "run `s3tstream verify` without --export"
    LEGACY = ""
