"""Start, stop and inspect a background sandbox for the CLI (no moto import here).

The record lives in ``<home>/sandbox.json`` ({pid, port, endpoint_url, latency, delivery, seed, log,
started_at})
and the process writes to ``<home>/sandbox.log``. The process runs in its own session, so it
outlives the CLI call that started it. The process also records itself, with its control token,
in this user's registry (``instances.py``: ``~/.cache/s3tstream/sandboxes/<port>.json|.token``),
so :func:`running`, :func:`find` and :func:`stop_found` see it from any folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from s3tstream.errors import S3tError, UsageError
from s3tstream.sandbox import client, instances
from s3tstream.sandbox.latency import validate as validate_latency

RECORD = "sandbox.json"
LOG = "sandbox.log"
HOST = "127.0.0.1"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class SandboxError(S3tError):
    """A sandbox could not be started, found or stopped; the message says why, the hint what to do
    (the CLI prints it without a traceback, exit 1)."""

    code = "sandbox"


def _record_path(home: Path) -> Path:
    return Path(home) / RECORD


def _read_record(home: Path) -> dict[str, Any] | None:
    path = _record_path(home)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "pid" in data else None


def _write_record(home: Path, record: dict[str, Any]) -> None:
    path = _record_path(home)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def _remove_record(home: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _record_path(home).unlink()


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (else it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _pid_alive(pid: int) -> bool:
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _is_sandbox_process(pid: int) -> bool:
    """Best effort against PID reuse: on Linux, check the command line."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"s3tstream.sandbox" in cmdline.read_bytes()
    except OSError:
        return True  # no /proc: trust the pid


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _responding(endpoint_url: str, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        return client.health(endpoint_url, timeout=timeout)
    except Exception:  # noqa: BLE001 - any failure means "not answering"
        return None


def status(home: Path) -> dict[str, Any] | None:
    """The running sandbox recorded in ``home`` (with ``responding``), or None.

    A record whose process is gone is removed.
    """
    record = _read_record(home)
    if record is None:
        if _record_path(home).exists():
            _remove_record(home)  # unreadable record
        return None
    pid = int(record["pid"])
    if not _pid_alive(pid) or not _is_sandbox_process(pid):
        _remove_record(home)
        return None
    health = _responding(record["endpoint_url"])
    return {**record, "alive": True, "responding": health is not None and health.get("pid") == pid}


def start(home: Path, port: int = 4566, latency: str = "instant", timeout: float = START_TIMEOUT,
          delivery: str = "ordered", seed: int = 0) -> dict[str, Any]:
    """Start ``python -m s3tstream.sandbox serve`` in the background; return {pid, port, endpoint_url, ...}.

    If this home's sandbox is already running on the same port it is returned as is. ``port=0``
    picks a free port.
    """
    validate_latency(latency)
    if delivery not in ("ordered", "chaos"):
        raise SandboxError(f"delivery must be ordered or chaos, not {delivery!r}")
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    current = status(home)
    if current is not None:
        if port in (0, current["port"]):
            running = (current.get("delivery", "ordered"), int(current.get("seed", 0)))
            if running != (delivery, int(seed)):
                raise SandboxError(
                    f"the sandbox for {home} already runs with delivery {running[0]} (seed {running[1]}); "
                    "stop it first (s3tstream sandbox stop) to start it with another delivery"
                )
            return current
        raise SandboxError(
            f"a sandbox is already running for {home} on port {current['port']} (pid {current['pid']}); "
            "stop it first (s3tstream sandbox stop) or use that port"
        )
    if port == 0:
        port = free_port()
    if not _port_free(port):
        other = _responding(f"http://{HOST}:{port}")
        what = f"another sandbox (pid {other.get('pid')})" if other else "another program"
        hint = ("it is already running: use it, or stop it (s3tstream sandbox stop --port "
                f"{port})" if other else "choose another port with --port (0 picks a free one)")
        raise SandboxError(f"cannot start the sandbox: port {port} on {HOST} is already in use by {what}", hint)

    log_path = home / LOG
    cmd = [sys.executable, "-m", "s3tstream.sandbox", "serve", "--host", HOST, "--port", str(port), "--latency", latency,
           "--delivery", delivery, "--seed", str(int(seed))]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    endpoint_url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        health = _responding(endpoint_url, timeout=0.5)
        if health is not None and health.get("pid") == proc.pid:
            break
        code = proc.poll()
        if code is not None:
            raise SandboxError(
                f"the sandbox exited with code {code} before answering on port {port}; "
                f"see {log_path}:\n{_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            _kill(proc.pid)
            raise SandboxError(
                f"the sandbox did not answer on port {port} within {timeout:.0f} s and was stopped; "
                f"see {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.1)
    record = {
        "pid": proc.pid,
        "port": port,
        "endpoint_url": endpoint_url,
        "latency": latency,
        "delivery": delivery,
        "seed": int(seed),
        "log": str(log_path),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _write_record(home, record)
    instances.annotate(port, home=str(home.resolve()), log=str(log_path.resolve()))
    return record


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the sandbox leads its own session (process group id == pid)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return not _pid_alive(pid)


def _kill(pid: int) -> None:
    _signal(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT):
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, STOP_TIMEOUT)


def stop(home: Path) -> bool:
    """Stop the sandbox recorded in ``home`` (SIGTERM, then SIGKILL); True if one was running."""
    home = Path(home)
    record = _read_record(home)
    if record is None:
        _remove_record(home)
        return False
    pid = int(record["pid"])
    if not _pid_alive(pid) or not _is_sandbox_process(pid):
        _remove_record(home)
        return False
    _kill(pid)
    if _pid_alive(pid):
        raise SandboxError(f"sandbox pid {pid} did not stop after SIGKILL")
    _remove_record(home)
    return True


# --- every sandbox of this user (instances.py), wherever it was started ----------------------


def running() -> list[dict[str, Any]]:
    """The background sandboxes (``serve`` processes) this user runs, by port; records whose
    process is gone (or is no sandbox any more) are removed on the way."""
    out = []
    for record in instances.records():
        pid, port = int(record.get("pid", -1)), int(record["port"])
        if not _pid_alive(pid):
            instances.remove(port, pid=pid)
            continue
        if record.get("kind") != "serve":
            continue  # a SandboxServer inside another program (the tests): not ours to stop
        if not _is_sandbox_process(pid):
            instances.remove(port, pid=pid)
            continue
        out.append(record)
    return sorted(out, key=lambda r: int(r["port"]))


def find(port: int | None = None) -> dict[str, Any] | None:
    """The running sandbox on ``port``, or the only one when ``port`` is None (None: none runs).
    Several and no port: UsageError listing them."""
    found = running()
    if port:
        return next((r for r in found if int(r["port"]) == port), None)
    if len(found) > 1:
        listed = ", ".join(f"{r['endpoint_url']} (pid {r['pid']})" for r in found)
        raise UsageError(f"{len(found)} sandboxes are running: {listed}", "pick one with --port")
    return found[0] if found else None


def stop_found(port: int | None = None) -> dict[str, Any] | None:
    """Stop the sandbox :func:`find` picks; returns its record (None: none was running)."""
    record = find(port)
    if record is None:
        return None
    pid = int(record["pid"])
    _kill(pid)
    if _pid_alive(pid):
        raise SandboxError(f"sandbox pid {pid} did not stop after SIGKILL")
    instances.remove(int(record["port"]), pid=pid)
    home = record.get("home")
    if home:
        home_record = _read_record(Path(home))
        if home_record is not None and int(home_record.get("pid", -1)) == pid:
            _remove_record(Path(home))
    return record
