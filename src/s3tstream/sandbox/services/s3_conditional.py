"""S3 conditional writes, atomic as on AWS.

moto 5.2.5 already answers ``PutObject`` with ``If-None-Match: *`` (object exists) and
``If-Match: <etag>`` (ETag differs) with 412 PreconditionFailed, ``If-Match`` on a missing key
with 404 NoSuchKey, and ``DeleteObject`` ``If-Match`` likewise; but it checks and then writes
without a lock, so two concurrent conditional writes can both pass the check. On AWS exactly one
wins (the other gets 412, or 409 ConditionalRequestConflict while the first is in progress:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-requests.html). Here a
conditional PutObject or DeleteObject runs its check and its write under one lock, so the
loser of a race always sees the winner's object and gets 412 (the state lock of
`[stack] state = "s3://..."` relies on it).
"""

from __future__ import annotations

import threading
from typing import Any

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.s3.responses import S3Response  # noqa: E402

_lock = threading.RLock()


def _conditional(self: S3Response) -> bool:
    h = self.headers
    return bool(h.get("If-None-Match") or h.get("If-Match"))


def _serialized(original: Any) -> Any:
    def method(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        if _conditional(self):
            with _lock:
                return original(self, *args, **kwargs)
        return original(self, *args, **kwargs)

    method._s3tstream_patched = True  # type: ignore[attr-defined]
    return method


for _name in ("put_object", "delete_object"):
    _orig = getattr(S3Response, _name)
    if not getattr(_orig, "_s3tstream_patched", False):
        setattr(S3Response, _name, _serialized(_orig))
