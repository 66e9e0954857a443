"""Tiny client for the sandbox's ``/_sandbox/...`` control routes (stdlib only, no moto)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class SandboxControlError(RuntimeError):
    pass


def _call(endpoint_url: str, method: str, route: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    url = endpoint_url.rstrip("/") + "/_sandbox/" + route.strip("/")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            detail = json.loads(err.read())
        except ValueError:
            detail = {"error": str(err.code), "message": err.reason}
        raise SandboxControlError(
            f"sandbox {method} /_sandbox/{route} failed: {detail.get('error')}: {detail.get('message')}"
        ) from None


def health(endpoint_url: str, timeout: float = 2.0) -> dict[str, Any]:
    return _call(endpoint_url, "GET", "health", timeout=timeout)


def reset(endpoint_url: str) -> None:
    """Clear all AWS state (every moto backend), extension state and injected faults."""
    _call(endpoint_url, "POST", "reset", {})


def inject_fault(
    endpoint_url: str,
    service: str,
    operation: str,
    code: str,
    message: str = "",
    status: int = 400,
    count: int = 1,
) -> dict[str, Any]:
    """Make the next ``count`` calls of ``service``/``operation`` (botocore names, e.g.
    ``"firehose"``, ``"CreateDeliveryStream"``) fail with AWS error ``code`` in the protocol's
    own error format."""
    return _call(
        endpoint_url,
        "POST",
        "faults",
        {"service": service, "operation": operation, "code": code, "message": message, "status": status, "count": count},
    )


def list_faults(endpoint_url: str) -> list[dict[str, Any]]:
    return _call(endpoint_url, "GET", "faults")["faults"]


def clear_faults(endpoint_url: str) -> int:
    return int(_call(endpoint_url, "DELETE", "faults")["cleared"])


def ttl_delete(
    endpoint_url: str,
    table: str,
    key: dict[str, Any],
    region: str = "us-east-1",
    account_id: str | None = None,
) -> bool:
    """Delete an item the way DynamoDB's TTL process does (``key`` in typed DynamoDB JSON)."""
    body: dict[str, Any] = {"table": table, "key": key, "region": region}
    if account_id:
        body["account_id"] = account_id
    return bool(_call(endpoint_url, "POST", "dynamodb/ttl-delete", body)["deleted"])


def run_workers(endpoint_url: str) -> list[str]:
    """Run every data-plane worker once, now (instead of waiting for its interval)."""
    return _call(endpoint_url, "POST", "workers/run", {})["ran"]
