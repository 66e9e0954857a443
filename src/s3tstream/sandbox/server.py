"""The sandbox endpoint: moto's WSGI app behind a middleware of ours, served in a thread.

One endpoint URL serves every service (moto picks the backend from the SigV4 credential scope).
The middleware, in order: refuses what a web browser sends (an ``Origin`` or cross-site
``Sec-Fetch-Site`` header, a ``Host`` that is not a loopback name: a web page, or a DNS name
rebound to 127.0.0.1, must not drive the sandbox); answers ``/_sandbox/...`` control routes
(and moto's ``/moto-api/...``) only with the control token (``instances.py``); fails the call if
a fault was injected for its (service, operation); routes it to an extension handler if one is
registered; otherwise passes it to moto unchanged. The server listens on loopback only.
"""

from __future__ import annotations

import hmac
import http
import io
import ipaddress
import json
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from s3tstream.sandbox import latency as latency_mod
from s3tstream.sandbox import instances, protocols, registry
from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.faults import Fault, FaultRegistry, RandomFaults

log = logging.getLogger("s3tstream.sandbox")

DEFAULT_ACCOUNT_ID = "123456789012"


def _account_id(environ: dict[str, Any]) -> str:
    """Account the request acts in, the way moto decides it (env, header, access key)."""
    if os.environ.get("MOTO_ACCOUNT_ID"):
        return os.environ["MOTO_ACCOUNT_ID"]
    if environ.get("HTTP_X_MOTO_ACCOUNT_ID"):
        return environ["HTTP_X_MOTO_ACCOUNT_ID"]
    key = protocols.access_key(environ)
    if key:
        from moto.iam.models import get_account_id_from

        return get_account_id_from(key)
    return DEFAULT_ACCOUNT_ID


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, localhost or a name under .localhost (what resolves to this machine only)."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:4566
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _browser_refusal(environ: dict[str, Any]) -> str | None:
    """Why a request looks like it comes from a web page (None: an SDK or CLI call)."""
    if environ.get("HTTP_ORIGIN") is not None:
        return "requests from a web page (Origin header) are refused"
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None and site.lower() != "none":
        return "requests from a web page (Sec-Fetch-Site header) are refused"
    host = environ.get("HTTP_HOST")
    if host and not is_loopback(_host_name(host)):
        return f"Host {host!r} is not a loopback name; the sandbox answers only 127.0.0.1 / localhost"
    return None


def _respond(start_response: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    headers = [h for h in headers if h[0].lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{status} {reason}", headers)
    return [body]


class SandboxApp:
    """WSGI middleware in front of moto's DomainDispatcherApplication."""

    def __init__(self, moto_app: Any, server: SandboxServer | None = None) -> None:
        self.moto_app = moto_app
        self.server = server
        self.faults = server.faults if server is not None else FaultRegistry()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET").upper()
        refusal = _browser_refusal(environ)
        if refusal is not None:
            return _forbidden(start_response, refusal)
        if path == "/_sandbox" or path.startswith("/_sandbox/"):
            sub = path[len("/_sandbox") :]
            if not (method == "GET" and sub.strip("/") == "health") and not self._authorized(environ):
                return _forbidden(start_response, self._token_hint())
            return self._control(environ, start_response, sub, method)
        if path == "/moto-api" or path.startswith("/moto-api/"):  # moto's dashboard, reset, state manager
            if not self._authorized(environ):
                return _forbidden(start_response, self._token_hint())
        if path.rstrip("/") == "/moto-api/reset" and method == "POST":
            registry.run_reset_hooks()
            self.faults.clear()
            return self.moto_app(environ, start_response)

        body_holder: list[bytes] = []

        def read_body() -> bytes:
            if not body_holder:
                stream = environ.get("wsgi.input")
                length = environ.get("CONTENT_LENGTH")
                if stream is None:
                    data = b""
                elif length:
                    data = stream.read(int(length))
                elif environ.get("wsgi.input_terminated"):
                    data = stream.read()
                else:
                    data = b""
                environ["wsgi.input"] = io.BytesIO(data)
                if length:
                    environ["CONTENT_LENGTH"] = str(len(data))
                body_holder.append(data)
            return body_holder[0]

        if self.faults.pending() or self._may_handle(environ):
            ident = protocols.identify(environ, read_body)
            if ident is not None:
                fault = self.faults.take(ident.service, ident.operation, environ.get("HTTP_USER_AGENT", ""))
                if fault is not None:
                    log.info("sandbox: injected %s for %s:%s", fault.code, ident.service, ident.operation)
                    return _respond(
                        start_response,
                        *protocols.error_response(
                            ident.protocol, fault.code, fault.message, fault.status, ident.json_version
                        ),
                    )
                handler = registry.handler_for(ident.service, ident.operation)
                if handler is not None:
                    return _respond(start_response, *self._call(handler, ident, environ, read_body()))
        with latency_mod.serving(self.server):  # moto patches read this server's latency profile
            return self.moto_app(environ, start_response)

    def _authorized(self, environ: dict[str, Any]) -> bool:
        token = self.server.token if self.server is not None else None
        given = environ.get("HTTP_" + instances.TOKEN_HEADER.upper().replace("-", "_"), "")
        return bool(token) and hmac.compare_digest(given.encode(), token.encode())  # type: ignore[union-attr]

    def _token_hint(self) -> str:
        where = instances.token_path(self.server.port) if self.server is not None and self.server.running else "the sandbox's token file"
        return (f"control routes need the {instances.TOKEN_HEADER} header with the token in {where} "
                "(s3tstream.sandbox.client sends it)")

    @staticmethod
    def _may_handle(environ: dict[str, Any]) -> bool:
        scope = protocols.signing_scope(environ)
        if scope is None:
            return False
        handled = registry.handled_services()
        return any(name in handled for name in protocols.candidates(scope[0]))

    def _call(
        self, handler: registry.Handler, ident: protocols.Identified, environ: dict[str, Any], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        try:
            params: dict[str, Any] = {}
            if body and ident.protocol in ("json", "rest-json"):
                parsed = json.loads(body)
                if not isinstance(parsed, dict):
                    raise registry.AwsError(
                        "SerializationException", "Start of structure or map found where not expected."
                    )
                params.update(parsed)
            headers = {
                k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
            }
            if environ.get("CONTENT_TYPE"):
                headers["content-type"] = environ["CONTENT_TYPE"]
            if ident.protocol in ("rest-json", "rest-xml"):
                params.update(protocols.rest_params(ident, query, headers))
            request = registry.SandboxRequest(
                service=ident.service,
                operation=ident.operation,
                protocol=ident.protocol,
                region=ident.region,
                account_id=_account_id(environ),
                params=params,
                headers=headers,
                body=body,
                method=environ.get("REQUEST_METHOD", "GET").upper(),
                path=environ.get("PATH_INFO", "/"),
                path_params=dict(ident.path_params),
                query=query,
                server=self.server,
            )
            result = handler(request)
        except registry.AwsError as err:
            return protocols.error_response(ident.protocol, err.code, err.message, err.status, ident.json_version)
        except json.JSONDecodeError:
            return protocols.error_response(
                ident.protocol, "SerializationException", "Request body is not valid JSON", 400, ident.json_version
            )
        except Exception as exc:  # noqa: BLE001 - answer like AWS would, keep the server up
            log.exception("sandbox handler %s:%s failed", ident.service, ident.operation)
            code = "InternalServerError" if ident.service == "dynamodb" else "InternalFailure"
            return protocols.error_response(ident.protocol, code, f"sandbox handler failed: {exc}", 500, ident.json_version)
        if isinstance(result, registry.Reply):
            return protocols.success_response(ident.protocol, result.body, result.status, result.headers, ident.json_version)
        return protocols.success_response(ident.protocol, result, json_version=ident.json_version)

    # --- /_sandbox control routes ----------------------------------------------------------

    def _control(self, environ: dict[str, Any], start_response: Any, sub: str, method: str) -> Any:
        sub = sub.strip("/")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            raw = environ["wsgi.input"].read(length) if length else b""
            payload = json.loads(raw) if raw.strip() else {}
            if not isinstance(payload, dict):
                raise registry.AwsError("BadRequest", "body must be a JSON object")
            result = self._control_dispatch(sub, method, payload)
            status = 200
        except registry.AwsError as err:
            result, status = {"error": err.code, "message": err.message}, err.status
        except (ValueError, KeyError, TypeError) as err:
            result, status = {"error": "BadRequest", "message": str(err)}, 400
        except Exception as err:  # noqa: BLE001
            log.exception("sandbox control route %s %s failed", method, sub)
            result, status = {"error": "InternalError", "message": str(err)}, 500
        return _respond(start_response, status, [("Content-Type", "application/json")], registry.json_bytes(result))

    def _control_dispatch(self, sub: str, method: str, payload: dict[str, Any]) -> Any:
        from s3tstream.sandbox._pin import MOTO_VERSION

        if sub == "health" and method == "GET":
            return {
                "status": "ok",
                "pid": os.getpid(),
                "latency": self.server.latency if self.server else "instant",
                "moto": MOTO_VERSION,
            }
        if sub == "reset" and method == "POST":
            if self.server is not None:
                self.server.reset()
            else:  # pragma: no cover
                reset_all()
                self.faults.clear()
            return {"status": "ok"}
        if sub == "faults":
            if method == "GET":
                return {"faults": self.faults.list()}
            if method == "DELETE":
                return {"cleared": self.faults.clear()}
            if method == "POST":
                fault = self.faults.add(
                    Fault(
                        service=str(payload["service"]),
                        operation=str(payload["operation"]),
                        code=str(payload["code"]),
                        message=str(payload.get("message", "")),
                        status=int(payload.get("status", 400)),
                        remaining=int(payload.get("count", 1)),
                    )
                )
                return fault.to_json()
        if sub == "faults/random":
            if method == "GET":
                return {"random": self.faults.random_status()}
            if method == "DELETE":
                return {"random": self.faults.set_random(None)}
            if method == "POST":
                rnd = RandomFaults(
                    rate=float(payload["rate"]),
                    seed=int(payload.get("seed", 0)),
                    user_agent=payload.get("user_agent", "s3tstream/"),
                    services=payload.get("services"),
                    exclude=list(payload.get("exclude") or []),
                    **({"errors": list(payload["errors"])} if payload.get("errors") else {}),
                )
                self.faults.set_random(rnd)
                return {"random": rnd.to_json()}
        if sub == "workers/run" and method == "POST":
            ran = []
            for w in registry.workers():
                w.fn(self.server)  # type: ignore[arg-type]
                ran.append(w.name)
            return {"ran": ran}
        fn = registry.control_for(method, sub)
        if fn is None:
            raise registry.AwsError("NotFound", f"no sandbox control route {method} /_sandbox/{sub}", 404)
        return fn(self.server, payload)


def _forbidden(start_response: Any, message: str) -> list[bytes]:
    log.warning("sandbox: refused a request: %s", message)
    body = registry.json_bytes({"error": "AccessDenied", "message": message})
    return _respond(start_response, 403, [("Content-Type", "application/json")], body)


def reset_all() -> None:
    """Reset every moto backend (process-wide) and every extension's state."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()
    registry.run_reset_hooks()


class SandboxServer:
    """In-process, threaded sandbox endpoint.

    >>> with SandboxServer() as sb:          # port 0 picks a free port
    ...     boto3.client("dynamodb", endpoint_url=sb.endpoint_url, region_name="us-east-1")

    moto's backends are process-wide: two servers in one process share all AWS state (and the
    extensions' state); faults are per server.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, latency: str = "instant", verbose: bool = False,
        latency_scale: float | None = None, delivery: str = "ordered", seed: int = 0, kind: str = "in-process",
    ) -> None:
        from s3tstream.sandbox.dataplane import chaos

        if not is_loopback(host):  # anyone who reaches the port could use (and reset) the sandbox
            raise ValueError(f"the sandbox listens on loopback only (127.0.0.1, ::1, localhost), not {host!r}")
        self.host = host
        # how the Firehose data plane delivers: "ordered", or "chaos" (dataplane/chaos.py)
        self.delivery = chaos.parse(delivery, seed)
        self.kind = kind  # "serve" (the background process) or "in-process" (instances.py)
        self.token: str | None = None  # the control routes' token, written to instances.token_path(port)
        self.warming: threading.Thread | None = None  # dispatch.warm, for a background sandbox
        self._requested_port = port
        self.latency = latency_mod.validate(latency)
        # multiplies every realistic delay (None: $S3TSTREAM_SANDBOX_LATENCY_SCALE or 1; latency.py)
        self.latency_scale = None if latency_scale is None else latency_mod.validate_scale(latency_scale)
        self.verbose = verbose
        self.faults = FaultRegistry()
        self._httpd: Any = None
        self._thread: threading.Thread | None = None
        self._worker_loops: list[registry.WorkerLoop] = []

    # -- lifecycle --
    def start(self) -> SandboxServer:
        if self._httpd is not None:
            return self
        check_moto_version()
        from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        from s3tstream.sandbox import dispatch
        from s3tstream.sandbox import services as ext

        ext.load_all()
        dispatch.install()  # after load_all: the response classes are final
        verbose = self.verbose

        class _Handler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                if verbose:
                    super().log_request(*args, **kwargs)

        dispatcher = dispatch.Dispatcher(create_backend_app)
        app = SandboxApp(dispatcher, self)
        self._httpd = make_server(
            self.host, self._requested_port, app, threaded=True, request_handler=_Handler
        )
        httpd = self._httpd
        # before serving: whoever sees the sandbox answer can already read its token
        try:
            self.token = instances.register(self.port, {
                "pid": os.getpid(), "endpoint_url": self.endpoint_url, "latency": self.latency, "kind": self.kind,
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            })
        except OSError as err:
            self._httpd = None
            httpd.server_close()
            raise RuntimeError(
                f"cannot write the sandbox's control token under {instances.registry_dir()}: {err}; "
                "make that folder writable or set XDG_CACHE_HOME to a writable folder"
            ) from None
        self._thread = threading.Thread(
            target=lambda: httpd.serve_forever(poll_interval=0.05), name=f"sandbox-http-{self.port}", daemon=True
        )
        self._thread.start()
        if self.kind == "serve":  # a background sandbox: its first requests come from another process
            self.warming = threading.Thread(target=dispatch.warm, args=(dispatcher,), name="sandbox-warm", daemon=True)
            self.warming.start()
        self._worker_loops = [registry.WorkerLoop(w, self) for w in registry.workers()]
        for loop in self._worker_loops:
            loop.start()
        log.info("sandbox listening on %s (latency %s)", self.endpoint_url, self.latency)
        return self

    def stop(self) -> None:
        for loop in self._worker_loops:
            loop.stop()
        self._worker_loops = []
        if self._httpd is not None:
            instances.remove(self.port, pid=os.getpid())
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def reset(self) -> None:
        """Clear every moto backend, every extension's state and this server's faults."""
        reset_all()
        self.faults.clear()

    def run_workers_once(self) -> None:
        for w in registry.workers():
            w.fn(self)

    # -- addresses --
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("sandbox server is not started")
        return int(self._httpd.server_port)

    @property
    def endpoint_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
