"""Tiny client for the sandbox's ``/_sandbox/...`` control routes (stdlib only, no moto)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from s3tstream.sandbox import instances


class SandboxControlError(RuntimeError):
    pass


def token_for(endpoint_url: str) -> str | None:
    """The control token of the sandbox at ``endpoint_url``: from this user's 0600 token file of
    its port (``instances.token_path``), written by the sandbox when it started."""
    port = urllib.parse.urlsplit(endpoint_url).port
    return instances.read_token(port) if port else None


def call(endpoint_url: str, method: str, route: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    """``method /_sandbox/<route>`` with the control token; the JSON answer (SandboxControlError on 4xx/5xx)."""
    url = endpoint_url.rstrip("/") + "/_sandbox/" + route.strip("/")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    token = token_for(endpoint_url)
    if token:
        request.add_header(instances.TOKEN_HEADER, token)
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
    return call(endpoint_url, "GET", "health", timeout=timeout)


def reset(endpoint_url: str) -> None:
    """Clear all AWS state (every moto backend), extension state and injected faults."""
    call(endpoint_url, "POST", "reset", {})


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
    return call(
        endpoint_url,
        "POST",
        "faults",
        {"service": service, "operation": operation, "code": code, "message": message, "status": status, "count": count},
    )


def inject_random_faults(
    endpoint_url: str,
    rate: float,
    seed: int = 0,
    errors: list[dict[str, Any]] | None = None,
    user_agent: str | None = "s3tstream/",
    services: list[str] | None = None,
    exclude: list[str] | None = None,
) -> dict[str, Any]:
    """Fail a seeded fraction ``rate`` of the calls (until cleared) with one of ``errors``
    (each ``{"code", "status", "message", "services"?}``; default: throttling and 5xx errors as
    each service answers them, see sandbox.faults.DEFAULT_RANDOM_ERRORS). Only requests whose
    User-Agent contains ``user_agent`` (default: the product's clients); ``services`` limits it
    to those botocore service names; ``exclude`` lists "service:Operation" never failed."""
    body: dict[str, Any] = {"rate": rate, "seed": seed, "user_agent": user_agent, "services": services,
                            "exclude": exclude or []}
    if errors:
        body["errors"] = errors
    return call(endpoint_url, "POST", "faults/random", body)["random"]


def random_faults_status(endpoint_url: str) -> dict[str, Any] | None:
    """Counts of random mode so far (seen, injected, by_code, by_operation), or None when off."""
    return call(endpoint_url, "GET", "faults/random")["random"]


def stop_random_faults(endpoint_url: str) -> dict[str, Any] | None:
    """Stop random mode; returns its final counts."""
    return call(endpoint_url, "DELETE", "faults/random")["random"]


def list_faults(endpoint_url: str) -> list[dict[str, Any]]:
    return call(endpoint_url, "GET", "faults")["faults"]


def clear_faults(endpoint_url: str) -> int:
    """Remove every queued fault and stop random mode; returns how many queued faults there were."""
    return int(call(endpoint_url, "DELETE", "faults")["cleared"])


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
    return bool(call(endpoint_url, "POST", "dynamodb/ttl-delete", body)["deleted"])


def run_workers(endpoint_url: str) -> list[str]:
    """Run every data-plane worker once, now (instead of waiting for its interval)."""
    return call(endpoint_url, "POST", "workers/run", {})["ran"]


# --- Firehose data plane and Athena (s3tstream.sandbox.dataplane, ext/athena.py) -------------


def _scope(name: str | None, region: str | None, account_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if name:
        body["name"] = name
    if region:
        body["region"] = region
    if account_id:
        body["account"] = account_id
    return body


def firehose_flush(
    endpoint_url: str, name: str | None = None, region: str | None = None, account_id: str | None = None
) -> list[dict[str, Any]]:
    """Read every new source record and flush now, ignoring the buffering hints (one stream,
    or every ACTIVE Kinesis-sourced Iceberg stream). Returns each stream's status."""
    return call(endpoint_url, "POST", "firehose/flush", _scope(name, region, account_id), timeout=120)["streams"]


def firehose_wait_drained(
    endpoint_url: str,
    name: str | None = None,
    timeout: float = 30.0,
    region: str | None = None,
    account_id: str | None = None,
) -> list[dict[str, Any]]:
    """Flush until every record on the source stream is resolved (in the table, dropped or in the
    error bucket). Raises SandboxControlError (DrainTimeout) when that takes over ``timeout``."""
    body = {**_scope(name, region, account_id), "timeout": timeout}
    return call(endpoint_url, "POST", "firehose/drain", body, timeout=timeout + 60)["streams"]


def firehose_status(
    endpoint_url: str, name: str | None = None, region: str | None = None, account_id: str | None = None
) -> list[dict[str, Any]]:
    """Checkpoints, buffered and pending records, totals and the last error of each stream."""
    return call(endpoint_url, "POST", "firehose/status", _scope(name, region, account_id))["streams"]


def athena_hold(endpoint_url: str, hold: bool = True) -> dict[str, Any]:
    """Keep newly started Athena queries QUEUED (hold=True) until released (hold=False): lets a
    test stop a query before it runs. Releasing runs the held queries."""
    return call(endpoint_url, "POST", "athena/hold", {"hold": hold})
