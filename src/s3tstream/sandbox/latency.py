"""How long asynchronous transitions take in the sandbox: the one table to change.

``instant``: every transition completes at the next *describe* of the resource (the first
describe already shows the final state), so pollers are exercised but never wait.
``realistic``: a transition completes after the delay below, whoever looks at it.

Key: ``"<service>.<resource>.<transition>"``. Observed AWS timings are noted beside each value;
the sandbox uses shorter ones where AWS takes minutes, so a demo stays watchable.
"""

from __future__ import annotations

LATENCIES = ("instant", "realistic")

REALISTIC_SECONDS: dict[str, float] = {
    # DynamoDB Kinesis streaming destination (AWS, observed: ENABLING 2-7 s, ENABLE_FAILED
    # after 1-2 s (60 s for another account's ARN), DISABLING 1-2 s, UPDATING 124-152 s).
    "dynamodb.kinesis_destination.enable": 4.0,
    "dynamodb.kinesis_destination.disable": 2.0,
    "dynamodb.kinesis_destination.update": 10.0,
}


def validate(latency: str) -> str:
    if latency not in LATENCIES:
        raise ValueError(f"latency must be one of {', '.join(LATENCIES)}, not {latency!r}")
    return latency


def delay(latency: str, key: str) -> float | None:
    """Seconds until the transition ``key`` completes, or None for "at the next describe"."""
    validate(latency)
    if latency == "instant":
        return None
    if key not in REALISTIC_SECONDS:
        raise KeyError(f"no realistic latency for {key!r}: add it to sandbox/latency.py")
    return REALISTIC_SECONDS[key]
