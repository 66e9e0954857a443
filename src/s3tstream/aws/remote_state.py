"""The state in S3 (`[stack] state = "s3://bucket/prefix/"`), for a team sharing one stack.

Objects: ``<prefix><stack>.json`` (the state document) and ``<prefix><stack>.lock`` (who holds
the stack). No DynamoDB table: S3 conditional writes are enough (aws-notes; S3 PutObject
``If-None-Match`` / ``If-Match`` in botocore's model, ``DeleteObject`` ``If-Match``):

- lock: PutObject of the lock object with ``IfNoneMatch="*"``: only one writer can create it;
  412 PreconditionFailed means someone holds it, and the refusal names the holder (the lock
  object's body). A holder that died leaves it: only ``s3tstream state unlock`` removes it.
- save: PutObject of the state with ``IfMatch=<the ETag last read or written>`` (a new state
  with ``IfNoneMatch="*"``), so a writer whose lock was broken meanwhile cannot overwrite
  another's state: 412, and the run stops saying so.
- unlock: DeleteObject of the lock with ``IfMatch=<our lock's ETag>``: never someone else's.
  General purpose buckets take conditional deletes since 2025-09-16 (S3 User Guide, "How to
  perform conditional deletes"; before, only directory buckets did); a delete with an ETag needs
  s3:GetObject besides s3:DeleteObject ("Enforce conditional deletes").
- 409 ConditionalRequestConflict (a concurrent conditional write in progress) is retried, as the
  S3 API reference says to (for If-Match it says to fetch the ETag again first: retrying with the
  ETag we hold is stricter, a write that landed meanwhile turns the retry into a 412).
- Permissions: s3:GetObject, s3:PutObject, s3:DeleteObject on the prefix and s3:ListBucket on the
  bucket: without ListBucket, GetObject of a key that does not exist (a new stack's state, a
  free lock) answers 403 AccessDenied instead of 404 NoSuchKey (S3 API reference, GetObject).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from s3tstream.aws.client import error_code, translate
from s3tstream.errors import LockedError, StateError
from s3tstream.state import StateStore, describe_holder, holder_info

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

CONFLICT_RETRIES = 5
UNLOCK_HINT = ("wait for that run to finish; if it died (the lock stays: S3 has no process to release it), "
               "run `s3tstream state unlock` to break it")


def split_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/prefix/ -> (bucket, "prefix/") (the config model normalises the URI)."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


class S3Backend:
    reread_after_lock = True  # another machine may have saved between our first read and the lock

    def __init__(self, s3: Any, uri: str, stack: str) -> None:
        self.s3 = s3
        self.bucket, prefix = split_uri(uri)
        self.key = f"{prefix}{stack}.json"
        self.lock_key = f"{prefix}{stack}.lock"
        self.etag: str | None = None  # of the state object as last read or written
        self._lock_etag: str | None = None

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def lock_where(self) -> str:
        return f"s3://{self.bucket}/{self.lock_key}"

    def _fail(self, e: ClientError, doing: str) -> Exception:
        code = error_code(e)
        if code in ("NoSuchBucket",):
            return StateError(f"the state bucket {self.bucket} (stack.state) does not exist",
                              "create it (versioning on is wise), or fix stack.state; nothing was changed")
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return StateError(f"{doing} {self.where}: access denied",
                              "these credentials need s3:GetObject, s3:PutObject and s3:DeleteObject on the "
                              "stack.state prefix and s3:ListBucket on the bucket (without it S3 answers a "
                              "missing state or lock with AccessDenied); nothing was changed")
        return translate(e, f"{doing} {self.where}")

    def _retrying(self, fn: Any) -> Any:
        for attempt in range(CONFLICT_RETRIES):
            try:
                return fn()
            except ClientError as e:
                if error_code(e) != "ConditionalRequestConflict" or attempt == CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.05 * (2 ** attempt))  # S3: "On a 409 failure you should retry"
        return None

    # ------------------------------------------------------------ the document
    def read(self) -> bytes | None:
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as e:
            if error_code(e) in ("NoSuchKey", "404"):
                self.etag = None
                return None
            raise self._fail(e, "reading the state") from None
        self.etag = str(r["ETag"])
        return bytes(r["Body"].read())

    def write(self, data: bytes) -> None:
        cond = {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}
        try:
            r = self._retrying(lambda: self.s3.put_object(
                Bucket=self.bucket, Key=self.key, Body=data, ContentType="application/json", **cond))
        except ClientError as e:
            if error_code(e) in ("PreconditionFailed", "412", "NoSuchKey"):
                raise StateError(
                    f"the state {self.where} was changed by another run since this one read it (its lock was "
                    "broken?); this run's last change was not saved",
                    "run `s3tstream status` to see the state as saved, then run the command again",
                ) from None
            raise self._fail(e, "saving the state") from None
        self.etag = str(r["ETag"])

    # ------------------------------------------------------------ the lock
    def holder(self) -> tuple[dict[str, Any], str | None]:
        """The lock object's holder and ETag ({}, None: not locked)."""
        try:
            r = self.s3.get_object(Bucket=self.bucket, Key=self.lock_key)
        except ClientError as e:
            if error_code(e) in ("NoSuchKey", "404"):
                return {}, None
            raise self._fail(e, "reading the lock") from None
        try:
            doc = json.loads(r["Body"].read() or b"{}")
        except ValueError:
            doc = {}
        return (doc if isinstance(doc, dict) else {}), str(r["ETag"])

    def lock(self, stack: str, command: str = "") -> None:
        body = json.dumps(holder_info(command)).encode()
        try:
            r = self._retrying(lambda: self.s3.put_object(
                Bucket=self.bucket, Key=self.lock_key, Body=body, ContentType="application/json", IfNoneMatch="*"))
        except ClientError as e:
            if error_code(e) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise self._fail(e, "locking the state") from None
            holder, _ = self.holder()
            raise LockedError(f"stack {stack!r} is in use by {describe_holder(holder)} (lock {self.lock_where})",
                              UNLOCK_HINT) from None
        self._lock_etag = str(r["ETag"])

    def unlock(self) -> None:
        if self._lock_etag is None:
            return
        etag, self._lock_etag = self._lock_etag, None
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=etag)
        except ClientError as e:
            # gone or replaced: someone ran `state unlock`; their lock is not ours to remove
            if error_code(e) not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise self._fail(e, "unlocking the state") from None

    def break_lock(self) -> dict[str, Any] | None:
        """Remove the lock whoever holds it (`state unlock`); the holder it removed, None if unlocked.
        Conditional on the ETag read, so a lock taken meanwhile by a new run is not removed."""
        holder, etag = self.holder()
        if etag is None:
            return None
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=etag)
        except ClientError as e:
            if error_code(e) in ("PreconditionFailed", "412"):
                raise LockedError(f"the lock {self.lock_where} changed while it was being removed (a new run took it)",
                                  "run `s3tstream state unlock` again if that run is also dead") from None
            if error_code(e) not in ("NoSuchKey", "404"):
                raise self._fail(e, "removing the lock") from None
        return holder


def remote_backend(cfg: "Config", aws: "Aws") -> S3Backend | None:
    if not cfg.stack.state:
        return None
    return S3Backend(aws.client("s3"), cfg.stack.state, cfg.stack.name)


def open_state(cfg: "Config", aws: "Aws") -> StateStore:
    """The stack's StateStore: the S3 object of stack.state, else the local file."""
    return StateStore(cfg.state_path, cfg.stack.name, cfg.stack.region, remote_backend(cfg, aws))
