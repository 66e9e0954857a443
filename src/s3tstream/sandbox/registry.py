"""Extension points of the sandbox: API handlers, control routes, data-plane workers, reset hooks.

Everything here is plain Python with no moto import, so extension modules can be read and unit
tested without starting a server. See the package docstring for how to use it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from s3tstream.sandbox.server import SandboxServer

log = logging.getLogger("s3tstream.sandbox")


class AwsError(Exception):
    """Raise from a handler to answer with an AWS error in the protocol's own error shape.

    ``code`` becomes ``ClientError.response["Error"]["Code"]`` on the botocore side.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


def validation_error(message: str) -> AwsError:
    return AwsError("ValidationException", message)


@dataclasses.dataclass
class Reply:
    """A handler may return a plain dict (HTTP 200, JSON body) or a Reply for more control."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SandboxRequest:
    """What a handler receives.

    ``params`` is the input keyed by botocore member names, like boto3's kwargs: for ``json`` the
    JSON body; for ``rest-json`` the JSON body plus the members bound to the path (URL-decoded),
    query string and headers (those arrive as strings: convert numbers/booleans yourself).
    """

    service: str  # botocore service name, e.g. "dynamodb", "s3tables"
    operation: str  # botocore operation name, e.g. "EnableKinesisStreamingDestination"
    protocol: str  # "json", "rest-json", "query", "rest-xml", "smithy-rpc-v2-cbor", "ec2"
    region: str
    account_id: str
    params: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    method: str
    path: str
    path_params: dict[str, str]
    query: dict[str, list[str]]
    server: SandboxServer | None = None

    @property
    def latency(self) -> str:
        return self.server.latency if self.server is not None else "instant"


Handler = Callable[[SandboxRequest], Any]

_HANDLERS: dict[tuple[str, str], Handler] = {}


def handles(service: str, operation: str) -> Callable[[Handler], Handler]:
    """Register ``fn(request) -> dict | Reply`` for one (botocore service, operation) pair.

    Requests for that pair no longer reach moto. Raise :class:`AwsError` for errors.
    """

    def deco(fn: Handler) -> Handler:
        key = (service, operation)
        if key in _HANDLERS and _HANDLERS[key] is not fn:
            raise RuntimeError(f"sandbox handler for {service}:{operation} registered twice")
        _HANDLERS[key] = fn
        return fn

    return deco


def handler_for(service: str, operation: str) -> Handler | None:
    return _HANDLERS.get((service, operation))


def handled_services() -> set[str]:
    return {service for service, _ in _HANDLERS}


# --- control routes under /_sandbox/ -------------------------------------------------------

ControlFn = Callable[["SandboxServer | None", dict[str, Any]], Any]
_CONTROL: dict[tuple[str, str], ControlFn] = {}


def control_route(method: str, path: str) -> Callable[[ControlFn], ControlFn]:
    """Register ``fn(server, json_body) -> JSON-able`` at ``<method> /_sandbox/<path>``.

    Raise :class:`AwsError` (any code) to answer 4xx with ``{"error": code, "message": ...}``.
    """

    def deco(fn: ControlFn) -> ControlFn:
        _CONTROL[(method.upper(), path.strip("/"))] = fn
        return fn

    return deco


def control_for(method: str, path: str) -> ControlFn | None:
    return _CONTROL.get((method.upper(), path.strip("/")))


# --- data-plane workers ---------------------------------------------------------------------


@dataclasses.dataclass
class Worker:
    name: str
    fn: Callable[[SandboxServer], None]
    interval: float


_WORKERS: dict[str, Worker] = {}


def worker(name: str, interval: float = 0.2) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``fn(server)``: called every ``interval`` seconds in a thread of each running
    SandboxServer (started with it, stopped with it), and once per ``POST /_sandbox/workers/run``.

    Keep one call short and idempotent; exceptions are logged and the loop goes on.
    """

    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        _WORKERS[name] = Worker(name, fn, interval)
        return fn

    return deco


def workers() -> list[Worker]:
    return list(_WORKERS.values())


# --- reset hooks ----------------------------------------------------------------------------

_RESET_HOOKS: list[Callable[[], None]] = []


def on_reset(fn: Callable[[], None]) -> Callable[[], None]:
    """Register ``fn()`` to clear an extension's own state when the sandbox is reset."""
    if fn not in _RESET_HOOKS:
        _RESET_HOOKS.append(fn)
    return fn


def run_reset_hooks() -> None:
    for fn in list(_RESET_HOOKS):
        fn()


# --- small helpers --------------------------------------------------------------------------


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


class WorkerLoop:
    """Runs one registered worker periodically until stopped."""

    def __init__(self, w: Worker, server: SandboxServer) -> None:
        self.worker = w
        self.server = server
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self._run, name=f"sandbox-worker-{w.name}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.wait(self.worker.interval):
            try:
                self.worker.fn(self.server)
            except Exception:  # noqa: BLE001 - a worker must never die
                log.exception("sandbox worker %s failed", self.worker.name)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout)
