"""How long asynchronous transitions take in the sandbox: the one table to change.

``instant``: every transition completes at the next *describe* of the resource (the first
describe already shows the final state), so pollers are exercised but never wait.
``realistic``: a transition completes after the delay below, whoever looks at it.

Key: ``"<service>.<resource>.<transition>"``. Observed AWS timings are noted beside each value;
the sandbox uses shorter ones where AWS takes minutes, so a demo stays watchable.

Scale: every realistic delay is multiplied by the server's ``latency_scale``
(``SandboxServer(latency="realistic", latency_scale=0.02)``), else by the environment variable
``S3TSTREAM_SANDBOX_LATENCY_SCALE`` (the background ``sandbox start`` process inherits it),
else 1. Tests and benchmarks run the realistic profile at a fraction of its speed this way.

Which server's profile applies: the one serving the request that starts the transition
(:func:`serving` tells moto patches which server that is; ext handlers get it from the request).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

LATENCIES = ("instant", "realistic")
SCALE_ENV = "S3TSTREAM_SANDBOX_LATENCY_SCALE"

REALISTIC_SECONDS: dict[str, float] = {
    # DynamoDB Kinesis streaming destination (AWS, observed: ENABLING 2-7 s, ENABLE_FAILED
    # after 1-2 s (60 s for another account's ARN), DISABLING 1-2 s, UPDATING 124-152 s).
    "dynamodb.kinesis_destination.enable": 4.0,
    "dynamodb.kinesis_destination.disable": 2.0,
    "dynamodb.kinesis_destination.update": 10.0,
    # DynamoDB CreateTable: CREATING -> ACTIVE (on-demand, no indexes: typically 5-20 s).
    "dynamodb.table.create": 10.0,
    # Kinesis CreateStream: CREATING -> ACTIVE (observed 20-40 s; the docs say "usually less
    # than a minute"). Stream updates (Start/StopStreamEncryption, UpdateShardCount,
    # UpdateStreamMode): ACTIVE -> UPDATING -> ACTIVE ("a few seconds" for encryption).
    "kinesis.stream.create": 30.0,
    "kinesis.stream.update": 3.0,
    # Firehose CreateDeliveryStream: CREATING -> ACTIVE (observed 60-90 s for Iceberg).
    "firehose.delivery_stream.create": 75.0,
    # IAM is eventually consistent: Firehose cannot assume a role younger than this
    # (CreateDeliveryStream answers InvalidArgumentException "Firehose is unable to assume role").
    "iam.role.propagation": 10.0,
}


def validate(latency: str) -> str:
    if latency not in LATENCIES:
        raise ValueError(f"latency must be one of {', '.join(LATENCIES)}, not {latency!r}")
    return latency


def validate_scale(scale: float) -> float:
    scale = float(scale)
    if not scale > 0:
        raise ValueError(f"latency scale must be > 0, not {scale!r}")
    return scale


def env_scale() -> float:
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return 1.0
    try:
        return validate_scale(float(raw))
    except ValueError:
        raise ValueError(f"{SCALE_ENV} must be a number > 0, not {raw!r}") from None


def delay(latency: str, key: str, scale: float | None = None) -> float | None:
    """Seconds until the transition ``key`` completes, or None for "at the next describe".

    ``scale`` multiplies the realistic delay (None: ``S3TSTREAM_SANDBOX_LATENCY_SCALE`` or 1).
    """
    validate(latency)
    if latency == "instant":
        return None
    if key not in REALISTIC_SECONDS:
        raise KeyError(f"no realistic latency for {key!r}: add it to sandbox/latency.py")
    return REALISTIC_SECONDS[key] * (env_scale() if scale is None else validate_scale(scale))


def server_delay(server: Any, key: str) -> float | None:
    """:func:`delay` under the profile of ``server`` (a SandboxServer, or None: instant)."""
    if server is None:
        return None
    return delay(getattr(server, "latency", "instant"), key, getattr(server, "latency_scale", None))


def for_request(req: Any, key: str) -> float | None:
    """:func:`delay` for an ext handler's request (its server's latency and scale)."""
    return server_delay(getattr(req, "server", None), key)


# --- which server serves the current request (for moto patches, which see no request) -----

_current = threading.local()


@contextlib.contextmanager
def serving(server: Any) -> Iterator[None]:
    """Mark ``server`` as the one serving this thread's request while moto handles it."""
    prev = getattr(_current, "server", None)
    _current.server = server
    try:
        yield
    finally:
        _current.server = prev


def current_server() -> Any:
    return getattr(_current, "server", None)


def current_delay(key: str) -> float | None:
    """:func:`delay` under the profile of the server serving this thread (None outside one)."""
    return server_delay(current_server(), key)
