"""moto's request dispatch without its per-request costs (profiled on the demo's request mix).

- ``DomainDispatcherApplication.get_backend_for_host`` lists moto's package folder (``os.listdir``
  and an ``isdir`` per entry, ~170 entries) and tries every backend's URL regex, for each request
  and under a process-wide lock: about a quarter of a request's time. Its answer depends only on
  the host name (the folder and the patterns do not change while the process runs), so
  :class:`Dispatcher` remembers it per host.
- ``BaseResponse.call_action`` lists the response class's functions with ``inspect.getmembers``
  for each request, to test whether the action is one of them. The names of a class's functions
  are fixed once the sandbox's modules are imported (``services.load_all`` runs before the server
  serves), so :func:`_method_names` answers from a per-class cache.
- Each error response builds a lookup of every error shape of the service's model
  (``ErrorLookupFactory().for_service``: the factory is made anew per error, so its cache never
  hits); :func:`_error_lookup` keeps one per service (the models do not change).

- The first request of each service imports its moto backend, builds its Flask app and loads its
  botocore model (80-480 ms each, ~2 s for the dozen services ``up`` uses); :func:`warm` does that
  in a thread as soon as a background sandbox listens, while its client is still starting.

``benchmarks/sandbox.py`` measures the server against moto's unpatched one.
moto 5.2.5 internals relied on: ``DomainDispatcherApplication.get_backend_for_host(host)`` (pure
in ``host``), ``moto.core.responses.method_names_from_class(clazz) -> list[str]`` used only as
``action in method_names`` by ``BaseResponse.call_action``;
``moto.core.errors.ErrorLookupFactory.for_service(service_model)`` (pure in the model's serviceId).
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

import moto.core.errors as moto_errors  # noqa: E402
import moto.core.responses as moto_responses  # noqa: E402
from moto.core.utils import get_service_model  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication  # noqa: E402

_MISSING = object()
MAX_HOSTS = 1024  # a few dozen (service, Region) pairs in practice


class Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves each host name."""

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        backend = self._backends.get(host, _MISSING)
        if backend is _MISSING:
            backend = super().get_backend_for_host(host)
            if len(self._backends) >= MAX_HOSTS:  # hosts come from the request's signing scope: bound them
                self._backends.clear()
            self._backends[host] = backend
        return backend


_names: dict[type, frozenset[str]] = {}
_names_lock = threading.Lock()
_original_method_names = moto_responses.method_names_from_class


def _method_names(clazz: Any) -> frozenset[str]:
    names = _names.get(clazz)
    if names is None:
        names = frozenset(_original_method_names(clazz))
        with _names_lock:
            _names[clazz] = names
    return names


_error_luts: dict[str, Any] = {}
_original_for_service = moto_errors.ErrorLookupFactory.for_service


def _error_lookup(factory: Any, service_model: Any) -> Any:
    sid = service_model.metadata.get("serviceId")
    if sid is None:
        return _original_for_service(factory, service_model)
    lut = _error_luts.get(sid)
    if lut is None:
        lut = _original_for_service(factory, service_model)
        with _names_lock:
            _error_luts[sid] = lut
    return lut


def install() -> None:
    """Use the cached function names in moto's ``call_action`` and one error lookup per service
    (idempotent)."""
    moto_responses.method_names_from_class = _method_names  # type: ignore[assignment]
    moto_errors.ErrorLookupFactory.for_service = _error_lookup  # type: ignore[method-assign]


# the services `up` and the data commands call (botocore names), in the order the demo first calls them
WARM_SERVICES = ("sts", "dynamodb", "kinesis", "iam", "s3", "s3tables", "glue", "lakeformation", "firehose",
                 "lambda", "logs", "athena")
WARM_IMPORTS = ("pyiceberg.table", "duckdb")  # the Firehose data plane's and Athena's engines

log = logging.getLogger("s3tstream.sandbox")


def warm(dispatcher: Dispatcher, region: str = "us-east-1") -> None:
    """Do now what the first request of each service would do (import, app, model); never raises."""
    try:
        for service in WARM_SERVICES:
            backend = dispatcher.get_backend_for_host(f"{service}.{region}.amazonaws.com")
            if backend:
                with dispatcher.lock:  # as get_application does: one app per backend
                    if backend not in dispatcher.app_instances:
                        dispatcher.app_instances[backend] = dispatcher.create_app(backend)
            get_service_model(service)
        for module in WARM_IMPORTS:
            importlib.import_module(module)
    except Exception:  # noqa: BLE001 - warming is an optimisation: the first request does it otherwise
        log.exception("sandbox: warming the services failed")

