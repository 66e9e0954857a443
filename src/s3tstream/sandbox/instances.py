"""Every sandbox this user runs: one record and one control token per port, in the user's cache.

``$XDG_CACHE_HOME/s3tstream/sandboxes/`` (else ``~/.cache/s3tstream/sandboxes/``), a 0700 folder:

- ``<port>.json``: {pid, port, endpoint_url, latency, kind, started_at} and, for a background
  sandbox started by ``s3tstream sandbox start``, its home and log. ``kind`` is ``serve`` (the
  ``python -m s3tstream.sandbox serve`` process: what ``sandbox status``/``stop`` manage) or
  ``in-process`` (a SandboxServer inside another program, e.g. the tests: never stopped from here).
- ``<port>.token`` (0600): the secret the ``/_sandbox/...`` and ``/moto-api/...`` control routes
  require in the ``X-S3tstream-Sandbox-Token`` header. Only this user can read it, so only this
  user's programs (the CLI, the test harness, ``sandbox.client``) can reset or drive the sandbox.

The server writes both when it starts listening and removes them when it stops; a record whose
process is gone is stale and removed by whoever lists them (``control.running``). Plain files, no
moto import: the CLI reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

TOKEN_HEADER = "X-S3tstream-Sandbox-Token"


def registry_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(cache) if cache and Path(cache).is_absolute() else Path.home() / ".cache"
    return base / "s3tstream" / "sandboxes"


def record_path(port: int) -> Path:
    return registry_dir() / f"{int(port)}.json"


def token_path(port: int) -> Path:
    return registry_dir() / f"{int(port)}.token"


def _private_dir() -> Path:
    folder = registry_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by this user only (0600 from the first byte)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def register(port: int, record: dict[str, Any]) -> str:
    """Record the sandbox listening on ``port`` and return its new control token."""
    _private_dir()
    token = secrets.token_urlsafe(32)
    _write_private(token_path(port), token)
    _write_private(record_path(port), json.dumps({**record, "port": int(port)}, indent=2) + "\n")
    return token


def annotate(port: int, **fields: Any) -> None:
    """Add ``fields`` (e.g. home, log) to the record of ``port``, if there is one."""
    record = read(port)
    if record is not None:
        _write_private(record_path(port), json.dumps({**record, **fields}, indent=2) + "\n")


def read(port: int) -> dict[str, Any] | None:
    try:
        data = json.loads(record_path(port).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def read_token(port: int) -> str | None:
    try:
        return token_path(port).read_text().strip() or None
    except OSError:
        return None


def remove(port: int, pid: int | None = None) -> None:
    """Remove the record and token of ``port`` (only if they are ``pid``'s, when given)."""
    if pid is not None:
        record = read(port)
        if record is not None and int(record.get("pid", -1)) != pid:
            return  # another sandbox took the port since
    for path in (record_path(port), token_path(port)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def records() -> list[dict[str, Any]]:
    """Every record, as written (liveness is the caller's: ``control.running``)."""
    try:
        paths = sorted(registry_dir().glob("*.json"))
    except OSError:
        return []
    out = []
    for path in paths:
        if path.stem.isdigit():
            record = read(int(path.stem))
            if record is not None:
                out.append(record)
    return out
