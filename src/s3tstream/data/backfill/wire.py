"""Responses taken as wire JSON before botocore parses them (Scan items, GetRecords records)."""

from __future__ import annotations

import json
import threading
from typing import Any


class _Wire(threading.local):
    want: str | None = None  # the member of the next successful response to take as wire JSON
    taken: list[Any] | None = None


_WIRE = _Wire()
_WIRE_HOOK = "s3tstream-backfill-wire"
_WIRE_LOCK = threading.Lock()


def _take_wire(response_dict: dict[str, Any], **_: Any) -> None:
    """``before-parse`` hook: when this thread asked for it, take the list ``_WIRE.want`` out of a
    successful JSON response before botocore parses it. botocore parses item trees (Scan) and
    records (GetRecords) shape by shape, several times the cost of json.loads; the backfill wants
    the items in wire JSON anyway (what from_boto makes of botocore's result) and of the records
    only the bytes, sequence numbers and arrival times. The rest of the response is parsed as usual."""
    want = _WIRE.want
    if want is None or response_dict.get("status_code") != 200:
        return
    try:
        doc = json.loads(response_dict["body"])
    except (KeyError, TypeError, ValueError):
        return  # botocore's parser reports it
    if not isinstance(doc, dict) or not isinstance(doc.get(want), list):
        return
    _WIRE.taken = doc.pop(want)
    response_dict["body"] = json.dumps(doc).encode()


def call_wire(client: Any, method: str, member: str, **kw: Any) -> tuple[dict[str, Any], list[Any] | None]:
    """``client.<method>(**kw)`` with its list ``member`` as wire JSON: (response without it, the
    list), or (the response as botocore parsed it, None) for a client without botocore events."""
    meta = getattr(client, "meta", None)
    if getattr(meta, "events", None) is None:
        return getattr(client, method)(**kw), None
    service, op = meta.service_model.service_id.hyphenize(), meta.method_to_api_mapping[method]
    with _WIRE_LOCK:  # register once per client and operation (unique_id), not once per thread
        meta.events.register(f"before-parse.{service}.{op}", _take_wire, unique_id=f"{_WIRE_HOOK}:{service}:{op}")
    _WIRE.want, _WIRE.taken = member, None
    try:
        resp = getattr(client, method)(**kw)
    finally:
        _WIRE.want = None
    taken, _WIRE.taken = _WIRE.taken, None
    return resp, taken

