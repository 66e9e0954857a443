"""The stack's state: .s3tstream/<stack>.json beside the config (or an S3 object, see below).

One versioned document listing every resource the stack created or adopted (and the
checkpoints of long jobs in progress: backfill, verify --export). Written
atomically (temp file, fsync, os.replace) the moment anything changes, with intent recorded
before a create, so a run killed at any point leaves a file the next run can converge from.
An exclusive lock (flock on a sidecar file) makes a second concurrent run fail at once.

Where the document lives is a backend's concern: ``LocalBackend`` here (the default), or the
S3 backend of ``[stack] state = "s3://..."`` (``aws/remote_state.py``: a lock object written
with If-None-Match, the state written with If-Match), both behind the same StateStore.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from s3tstream.errors import LockedError, StateError

# 2 added `jobs`; a version-1 file is read as a version-2 one without jobs (and saved as 2, so an
# older s3tstream refuses it with "upgrade" rather than misreading it)
STATE_VERSION = 2


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def atomic_write(path: Path, data: bytes) -> None:
    """Replace path with data so that a crash leaves the old or the new file, never a torn
    one: temp file, fsync, os.replace, then fsync the directory (the rename itself)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Resource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    step: str
    kind: str
    name: str
    id: str | None = None  # ARN or service id once known
    ownership: Literal["owned", "adopted"] = "owned"
    # creating: intent recorded, create under way or interrupted; present: exists.
    status: Literal["creating", "present", "deleting"] = "creating"
    outputs: dict[str, Any] = Field(default_factory=dict)
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


class StateDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = STATE_VERSION
    stack: str
    # made at the first `up`, tagged on every taggable resource (s3tstream:stack-id): tells this
    # stack's resources from those of a stack with the same name in another folder
    stack_id: str | None = None
    account: str | None = None
    region: str
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)
    resources: list[Resource] = Field(default_factory=list)
    # checkpoints of long jobs in progress, by name ("backfill", "verify-export"): the state of
    # work rather than of resources, kept here so one file holds everything a rerun needs
    jobs: dict[str, dict[str, Any]] = Field(default_factory=dict)


def holder_info(command: str = "") -> dict[str, Any]:
    """Who holds a lock: shown to the run that is refused."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(sys.argv[:3]), "since": now()}


def describe_holder(holder: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in holder.items()) or "another process"


class LocalBackend:
    """The state as a local file, locked with flock on a sidecar file (released by the kernel
    when the holder dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock_fd: int | None = None

    @property
    def where(self) -> str:
        return str(self.path)

    def read(self) -> bytes | None:
        if not self.path.exists():
            return None
        return self.path.read_bytes()

    def write(self, data: bytes) -> None:
        atomic_write(self.path, data)

    def lock(self, stack: str, command: str = "") -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
            except (OSError, ValueError):
                holder = {}
            os.close(fd)
            raise LockedError(
                f"stack {stack!r} is in use by {describe_holder(holder)}",
                "wait for that run to finish; a lock held by a dead process is released automatically",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info(command)).encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None


def parse_doc(data: bytes, where: str, stack: str | None = None, region: str | None = None) -> StateDoc:
    """A state document from its bytes, refusing a corrupt or newer one and (when given) another
    stack's or Region's."""
    hint = f"move {where} aside if it is not this stack's state; nothing was changed"
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"state file {where} is corrupt: {e}", hint) from None
    if not isinstance(raw, dict):
        raise StateError(f"state file {where} is corrupt: not a JSON object", hint)
    version = raw.get("version")
    if not isinstance(version, int) or version > STATE_VERSION or version < 1:
        raise StateError(
            f"state file {where} has version {version!r}; this s3tstream reads version {STATE_VERSION}",
            "upgrade s3tstream to the version that wrote it; nothing was changed",
        )
    try:
        doc = StateDoc.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise StateError(f"state file {where} is corrupt: {loc}: {first['msg']}", hint) from None
    doc.version = STATE_VERSION
    if stack is not None and doc.stack != stack:
        raise StateError(f"state file {where} belongs to stack {doc.stack!r}, not {stack!r}", hint)
    if region is not None and doc.region != region:
        raise StateError(
            f"state file {where} records Region {doc.region}, but the config says {region}",
            "set stack.region back, or use another stack name for the other Region; nothing was changed",
        )
    return doc


class StateStore:
    """Load, lock, mutate and atomically save one stack's state document (thread-safe)."""

    def __init__(self, path: Path, stack: str, region: str, backend: Any = None) -> None:
        self.path = path  # the local file (also where `state pull` writes a remote state)
        self.backend = backend if backend is not None else LocalBackend(path)
        self._mutex = threading.RLock()
        self.doc = self._read(stack, region)

    @property
    def where(self) -> str:
        """Where the state lives, for messages: a path or an s3:// URI."""
        return str(self.backend.where)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    # ------------------------------------------------------------ reading
    def _read(self, stack: str, region: str) -> StateDoc:
        try:
            data = self.backend.read()
        except OSError as e:
            raise StateError(f"state file {self.where} is corrupt: {e}",
                             f"move {self.where} aside if it is not this stack's state; nothing was changed") from None
        if data is None:
            return StateDoc(stack=stack, region=region)
        return parse_doc(data, self.where, stack, region)

    def check_account(self, account: str) -> None:
        """Refuse a state recorded under another account; record the account on first use."""
        with self._mutex:
            if self.doc.account and self.doc.account != account:
                raise StateError(
                    f"state file {self.where} records account {self.doc.account}, but the credentials are for {account}",
                    "switch to the profile of that account; nothing was changed",
                )

    # ------------------------------------------------------------ locking
    def lock(self, command: str = "") -> None:
        self.backend.lock(self.doc.stack, command)
        # a remote state may have changed between the first read and the lock: read it again
        if getattr(self.backend, "reread_after_lock", False):
            try:
                with self._mutex:
                    self.doc = self._read(self.doc.stack, self.doc.region)
            except BaseException:
                self.backend.unlock()  # refused: the lock must not outlive this run
                raise

    def unlock(self) -> None:
        self.backend.unlock()

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()

    # ------------------------------------------------------------ writing
    def save(self) -> None:
        with self._mutex:
            self.doc.updated_at = now()
            self.backend.write(self.doc.model_dump_json(indent=2).encode())

    def set_account(self, account: str) -> None:
        with self._mutex:
            if self.doc.account != account:
                self.doc.account = account
                if self.path.exists():  # a new stack's file is written with its first change, not before
                    self.save()

    def get(self, kind: str, name: str) -> Resource | None:
        with self._mutex:
            return next((r for r in self.doc.resources if r.key == (kind, name)), None)

    def by_step(self, step: str) -> list[Resource]:
        with self._mutex:
            return [r for r in self.doc.resources if r.step == step]

    def record(self, step: str, kind: str, name: str, **fields: Any) -> Resource:
        """Insert or update a resource record and save at once."""
        with self._mutex:
            r = self.get(kind, name)
            if r is None:
                r = Resource(step=step, kind=kind, name=name)
                self.doc.resources.append(r)
            for k, v in fields.items():
                if k == "outputs":
                    r.outputs = {**r.outputs, **v}
                else:
                    setattr(r, k, v)
            r.updated_at = now()
            self.save()
            return r

    def drop(self, kind: str, name: str) -> None:
        with self._mutex:
            before = len(self.doc.resources)
            self.doc.resources = [r for r in self.doc.resources if r.key != (kind, name)]
            if len(self.doc.resources) != before:
                self.save()

    def job(self, name: str) -> dict[str, Any] | None:
        """A copy of job ``name``'s checkpoint (None: no such job in progress)."""
        with self._mutex:
            doc = self.doc.jobs.get(name)
            return json.loads(json.dumps(doc)) if doc is not None else None

    def save_job(self, name: str, doc: dict[str, Any]) -> None:
        """Replace job ``name``'s checkpoint and save the file at once (atomic, fsynced)."""
        with self._mutex:
            self.doc.jobs[name] = json.loads(json.dumps(doc))
            self.save()

    def drop_job(self, name: str) -> None:
        with self._mutex:
            if self.doc.jobs.pop(name, None) is not None:
                self.save()

    def is_empty(self) -> bool:
        return not self.doc.resources
