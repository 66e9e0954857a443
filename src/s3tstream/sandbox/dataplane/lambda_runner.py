"""Run a Lambda function of the sandbox from the code that was deployed (moto holds the zip).

moto 5.2.5 cannot run functions without Docker. Here a function runs in a worker process of
its own: the deployment package (``LambdaFunction.code_bytes``) is extracted into a temporary
directory and ``_lambda_bootstrap.py`` imports the handler from there, under ``python -I -S``
(no site-packages, no PYTHONPATH: the installed s3tstream cannot shadow the deployed code).
The process gets only the function's environment variables plus the ones Lambda sets
(AWS_LAMBDA_FUNCTION_NAME, AWS_REGION, _HANDLER, LAMBDA_TASK_ROOT, TZ=:UTC, ...).

Workers stay warm, like Lambda execution environments: one per (function ARN, code SHA-256,
handler, environment, runtime), reused while idle; a new configuration or code starts new
ones. A call longer than the function's Timeout kills its worker and answers Lambda's timeout
error. Differences from AWS: the sandbox's Python interpreter runs every ``python3.x`` runtime;
other runtimes are refused; the runtime offers the standard library only (AWS also ships boto3);
memory limits are not enforced.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

from s3tstream.sandbox.dataplane import metrics

log = logging.getLogger("s3tstream.sandbox.lambda")

BOOTSTRAP = Path(__file__).with_name("_lambda_bootstrap.py")
MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda: 6 MB for a synchronous request and response
MAX_WORKERS_PER_KEY = 4
LOG_TAIL = 4096  # LogType=Tail returns the last 4 KB of the execution log


class FunctionNotFound(LookupError):
    pass


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """What it takes to run one function version (read from moto's lambda backend)."""

    account_id: str
    region: str
    name: str
    arn: str
    version: str
    handler: str
    runtime: str
    timeout: float
    memory_size: int
    environment: tuple[tuple[str, str], ...]
    code_sha256: str
    code: bytes = dataclasses.field(repr=False, compare=False)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.arn, self.version, self.code_sha256, self.handler, self.runtime, self.environment)


@dataclasses.dataclass
class InvokeResult:
    ok: bool  # False: a function error (X-Amz-Function-Error: Unhandled)
    payload: bytes  # the response payload (the result, or the error document)
    logs: str
    request_id: str
    duration_ms: float

    def json(self) -> Any:
        return json.loads(self.payload)


def find_function(account_id: str, region: str, name_or_arn: str, qualifier: str | None = None) -> FunctionSpec:
    """The function as deployed: raises FunctionNotFound (with Lambda's message) when absent."""
    from moto.awslambda.models import lambda_backends

    try:
        fn = lambda_backends[account_id][region].get_function(name_or_arn, qualifier)
    except Exception:  # noqa: BLE001 - moto's UnknownFunctionException and friends
        fn = None
    if fn is None:
        name = name_or_arn.split(":function:")[-1].split(":")[0] if ":function:" in name_or_arn else name_or_arn
        arn = f"arn:aws:lambda:{region}:{account_id}:function:{name}"
        if qualifier:
            arn += f":{qualifier}"
        raise FunctionNotFound(f"Function not found: {arn}")
    version = str(getattr(fn, "version", "$LATEST"))
    if version in ("1", "") and not qualifier:
        version = "$LATEST"  # moto numbers the unpublished function 1; Lambda reports $LATEST
    env = tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items()))
    code = fn.code_bytes or b""
    return FunctionSpec(
        account_id=account_id,
        region=region,
        name=fn.function_name,
        arn=fn.function_arn,
        version=version,
        handler=fn.handler or "",
        runtime=fn.run_time or "",
        timeout=float(fn.timeout or 3),
        memory_size=int(fn.memory_size or 128),
        environment=env,
        code_sha256=hashlib.sha256(code).hexdigest(),
        code=code,
    )


# --------------------------------------------------------------------------- code directories
_root_lock = threading.Lock()
_root: Path | None = None


def _code_root() -> Path:
    global _root
    with _root_lock:
        if _root is None or not _root.exists():
            _root = Path(tempfile.mkdtemp(prefix="s3tstream-lambda-"))
        return _root


def _extract(spec: FunctionSpec) -> Path:
    """The deployment package extracted once per code hash (zip-slip safe)."""
    target = _code_root() / spec.code_sha256
    if target.exists():
        return target
    tmp = target.with_name(target.name + f".{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(spec.code)) as zf:
        for info in zf.infolist():
            dest = (tmp / info.filename).resolve()
            if not str(dest).startswith(str(tmp.resolve())):
                raise ValueError(f"unsafe path in deployment package: {info.filename}")
        zf.extractall(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another thread won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- workers
class _Worker:
    """One warm execution environment: a bootstrap process serving one call at a time."""

    def __init__(self, spec: FunctionSpec, task_root: Path) -> None:
        self.spec = spec
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "PYTHONIOENCODING": "utf-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LAMBDA_TASK_ROOT": str(task_root),
            "LAMBDA_RUNTIME_DIR": str(BOOTSTRAP.parent),
            "_HANDLER": spec.handler,
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/") + f"[{spec.version}]{uuid.uuid4().hex}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
        }
        env.update(dict(spec.environment))  # the function's own variables win (as on AWS, reserved ones aside)
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-u", str(BOOTSTRAP), str(task_root), spec.handler],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=str(task_root),
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.busy = False
        self.last_used = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, payload: bytes, request_id: str) -> tuple[str, dict[str, Any] | None]:
        """("ok"|"timeout"|"exit", response) for one invocation."""
        deadline = time.time() + self.spec.timeout
        request = {
            "requestId": request_id,
            "payload": payload.decode("utf-8"),
            "deadlineMs": int(deadline * 1000),
            "arn": self.spec.arn,
            "version": self.spec.version,
        }
        assert self.proc.stdin is not None and self.proc.stdout is not None
        box: dict[str, Any] = {}

        def read() -> None:
            try:
                box["line"] = self.proc.stdout.readline()  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001
                box["error"] = exc

        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return "exit", None
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(self.spec.timeout)
        if reader.is_alive():
            self.kill()
            reader.join(1)
            return "timeout", None
        line = box.get("line")
        if not line:
            self.kill()
            return "exit", None
        return "ok", json.loads(line)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:  # pragma: no cover
                pass


_pool_lock = threading.Condition()
_pool: dict[tuple[Any, ...], list[_Worker]] = {}


def _acquire(spec: FunctionSpec) -> _Worker:
    with _pool_lock:
        while True:
            workers = _pool.setdefault(spec.key, [])
            workers[:] = [w for w in workers if w.busy or w.alive()]
            for w in workers:
                if not w.busy:
                    w.busy = True
                    return w
            if len(workers) < MAX_WORKERS_PER_KEY:
                break
            _pool_lock.wait(0.5)
    task_root = _extract(spec)
    worker = _Worker(spec, task_root)
    worker.busy = True
    with _pool_lock:
        _pool.setdefault(spec.key, []).append(worker)
        _retire_stale(spec)
    return worker


def _retire_stale(current: FunctionSpec) -> None:
    """Stop idle workers of older code or configuration of the same function (lock held)."""
    for key in list(_pool):
        if key[0] == current.arn and key != current.key:
            keep = []
            for w in _pool[key]:
                if w.busy:
                    keep.append(w)
                else:
                    w.kill()
            if keep:
                _pool[key] = keep
            else:
                del _pool[key]


def _release(worker: _Worker) -> None:
    with _pool_lock:
        worker.busy = False
        worker.last_used = time.monotonic()
        if not worker.alive():
            workers = _pool.get(worker.spec.key, [])
            if worker in workers:
                workers.remove(worker)
        _pool_lock.notify_all()


def _error_payload(error_type: str, message: str, request_id: str) -> bytes:
    return json.dumps({"errorMessage": message, "errorType": error_type, "requestId": request_id,
                       "stackTrace": []}).encode()


def invoke(spec: FunctionSpec, payload: bytes | None) -> InvokeResult:
    """Invoke the function synchronously (RequestResponse) with a JSON payload.

    Function errors come back as ``ok=False`` with Lambda's error document; only sandbox
    failures raise.
    """
    request_id = str(uuid.uuid4())
    started = time.monotonic()
    body = payload if payload else b"{}"

    def done(ok: bool, out: bytes, logs: str = "") -> InvokeResult:
        result = InvokeResult(ok, out, logs, request_id, (time.monotonic() - started) * 1000)
        metrics.lambda_invoked(spec, ok, result.duration_ms)  # AWS/Lambda Invocations, Errors, Duration
        return result

    if not spec.runtime.startswith("python"):
        return done(False, _error_payload(
            "Runtime.InvalidRuntime", f"The sandbox runs Python functions only, not {spec.runtime or 'container images'}",
            request_id))
    if not spec.code:
        return done(False, _error_payload("Runtime.InvalidEntrypoint", "The function has no deployment package", request_id))
    worker = _acquire(spec)
    try:
        status, response = worker.call(body, request_id)
    finally:
        _release(worker)
    if status == "timeout":
        msg = f"RequestId: {request_id} Error: Task timed out after {spec.timeout:.2f} seconds"
        return done(False, _error_payload("Sandbox.Timedout", msg, request_id), msg)
    if status == "exit" or response is None:
        msg = f"RequestId: {request_id} Error: Runtime exited without providing a reason"
        return done(False, _error_payload("Runtime.ExitError", msg, request_id), msg)
    out = str(response.get("payload", "null")).encode("utf-8")
    logs = str(response.get("logs", ""))
    if response.get("ok") and len(out) > MAX_PAYLOAD:
        msg = f"Response payload size ({len(out)} bytes) exceeded maximum allowed payload size ({MAX_PAYLOAD} bytes)."
        return done(False, _error_payload("Function.ResponseSizeTooLarge", msg, request_id), logs)
    return done(bool(response.get("ok")), out, logs)


def invoke_json(spec: FunctionSpec, event: Any) -> InvokeResult:
    return invoke(spec, json.dumps(event, separators=(",", ":")).encode("utf-8"))


def shutdown() -> None:
    """Stop every worker process this module started and remove the extracted code."""
    global _root
    with _pool_lock:
        for workers in _pool.values():
            for w in workers:
                w.kill()
        _pool.clear()
        _pool_lock.notify_all()
    with _root_lock:
        if _root is not None:
            shutil.rmtree(_root, ignore_errors=True)
            _root = None


IDLE_SECONDS = 300  # an idle execution environment is stopped after this (Lambda recycles them too)


def reap(idle_seconds: float = IDLE_SECONDS) -> int:
    """Stop idle workers that waited too long or whose function was deleted; returns how many."""
    with _pool_lock:
        candidates = [(key, w) for key, ws in _pool.items() for w in ws if not w.busy]
    now = time.monotonic()
    stale = []
    for key, w in candidates:
        if now - w.last_used > idle_seconds or not w.alive():
            stale.append((key, w))
            continue
        try:
            current = find_function(w.spec.account_id, w.spec.region, w.spec.arn)
        except FunctionNotFound:
            stale.append((key, w))
            continue
        if current.key != key:
            stale.append((key, w))
    with _pool_lock:
        for key, w in stale:
            if w.busy:
                continue
            w.kill()
            if w in _pool.get(key, []):
                _pool[key].remove(w)
            if key in _pool and not _pool[key]:
                del _pool[key]
    return len(stale)


def worker_count() -> int:
    with _pool_lock:
        return sum(1 for ws in _pool.values() for w in ws if w.alive())


atexit.register(shutdown)
