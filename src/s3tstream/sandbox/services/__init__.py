"""Sandbox extensions: one module per AWS service (``dynamodb.py``, later ``s3tables.py``, ...).

Every module in this package is imported by :func:`load_all` when a SandboxServer starts; a
module registers its handlers, control routes, workers and reset hooks at import time through
``s3tstream.sandbox.registry``. Modules that patch moto must check the pinned moto version first.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading

_loaded = False
_lock = threading.Lock()


def load_all() -> None:
    global _loaded
    with _lock:
        if _loaded:
            return
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
