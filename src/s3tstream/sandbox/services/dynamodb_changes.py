"""DynamoDB's data plane in the sandbox: item changes become Kinesis Data Streams for DynamoDB
records (moto 5.2.5 has none), and TTL deletes.

Every item change on a table whose destination is ACTIVE (or UPDATING; ``dynamodb.py`` keeps
the destinations) becomes one record on the Kinesis stream, in the Kinesis-for-DynamoDB JSON
format. ``ttl_delete`` is a REMOVE made "by the TTL process" (``POST /_sandbox/dynamodb/ttl-delete``).

- No record for a write that changes nothing (PutItem of an identical item, no-op UpdateItem):
  documented for DynamoDB Streams; UNCONFIRMED for Kinesis Data Streams for DynamoDB.
- A transaction that fails writes nothing; an UpdateItem that creates an item is one INSERT.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, control_route, validation_error
from s3tstream.sandbox.services import dynamodb as destinations

check_moto_version()

from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

log = logging.getLogger("s3tstream.sandbox.dynamodb")

DEFAULT_ACCOUNT_ID = "123456789012"
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
MAX_RECORD_BYTES = 1024 * 1024  # Kinesis record limit; bigger change records are skipped

_tls = threading.local()
_kinesis_lock = threading.Lock()


@dataclasses.dataclass
class _Change:
    table: Table
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    ts_ns: int
    identity: dict[str, str] | None


class _Scope:
    """Changes of one logical write (one API call), coalesced per item, published at the end."""

    def __init__(self, identity: dict[str, str] | None) -> None:
        self.identity = identity
        self.changes: dict[tuple[str, str, str, str], _Change] = {}

    def add(self, change: _Change) -> None:
        image = change.new if change.new is not None else change.old
        assert image is not None
        table = change.table
        keys = _keys(table, image)
        key = (table.account_id, table.region_name, table.name, json.dumps(keys, sort_keys=True))
        if key in self.changes:  # first old image, last new image
            self.changes[key].new = change.new
        else:
            self.changes[key] = change


def _stack() -> list[_Scope]:
    stack = getattr(_tls, "stack", None)
    if stack is None:
        stack = _tls.stack = []
    return stack


@contextlib.contextmanager
def change_scope(identity: dict[str, str] | None = None) -> Iterator[_Scope]:
    """Collect item changes; publish them if the block succeeds, drop them if it raises.

    Scopes nest: an inner scope hands its changes to the outer one.
    """
    stack = _stack()
    if identity is None and stack:
        identity = stack[-1].identity
    scope = _Scope(identity)
    stack.append(scope)
    ok = False
    try:
        yield scope
        ok = True
    finally:
        stack.pop()
        if ok:
            if stack:
                for change in scope.changes.values():
                    stack[-1].add(change)
            else:
                _publish(scope)


def _interesting(table: Table) -> bool:
    return destinations.tracks(table)


def _plain(value: Any) -> Any:
    """Typed DynamoDB JSON as the wire has it: binary values base64-encoded, no moto objects."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if hasattr(value, "to_regular_json"):  # a moto DynamoType
        return _plain(value.to_regular_json())
    return copy.deepcopy(value)


def _snapshot(item: Any) -> dict[str, Any] | None:
    """The item's typed JSON at this moment (a copy: moto mutates items in place)."""
    return None if item is None else _plain(item.to_json()["Attributes"])


def _record(table: Table, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
    stack = _stack()
    identity = stack[-1].identity if stack else None
    change = _Change(table, old, new, time.time_ns(), identity)
    if stack:
        stack[-1].add(change)
    else:
        scope = _Scope(identity)
        scope.add(change)
        _publish(scope)


def _keys(table: Table, image: dict[str, Any]) -> dict[str, Any]:
    keys = {table.hash_key_attr: image[table.hash_key_attr]}
    if table.range_key_attr is not None:
        keys[table.range_key_attr] = image[table.range_key_attr]
    return keys


def _publish(scope: _Scope) -> None:
    for change in scope.changes.values():
        try:
            _publish_one(change)
        except Exception:  # noqa: BLE001 - never fail the DynamoDB write itself
            log.exception("sandbox: could not publish a change record for %s", change.table.name)


def _publish_one(change: _Change) -> None:
    if change.old == change.new:
        return  # nothing changed: no record (see dynamodb.py's docstring)
    table = change.table
    target = destinations.emitting_destination(table)
    if target is None:
        return
    arn, precision = target
    record = build_record(table, change, precision)
    # UTF-8 JSON, not ASCII-escaped: a legal 380 KB item of accented text would grow past Kinesis'
    # 1 MB record limit as \uXXXX escapes. UNCONFIRMED: that AWS's records carry non-ASCII text as
    # UTF-8 (not documented; any legal item must fit a record, which escaping would not allow).
    data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    if len(data) > MAX_RECORD_BYTES:
        log.warning("sandbox: change record of %d bytes for %s skipped", len(data), table.name)
        return
    partition_key = hashlib.md5(
        json.dumps(record["dynamodb"]["Keys"], sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest().upper()
    _put_record(table.account_id, table.region_name, arn, partition_key, data)


def _put_record(account_id: str, region: str, arn: str, partition_key: str, data: bytes) -> None:
    from moto.kinesis.models import kinesis_backends

    stream = destinations.find_stream(account_id, region, arn)
    if stream is None:  # AWS keeps the destination ACTIVE; the records are simply lost
        log.warning("sandbox: Kinesis stream %s is gone; change record dropped", arn)
        return
    with _kinesis_lock:
        kinesis_backends[account_id][region].put_record(
            stream.arn, stream.stream_name, partition_key, None, base64.b64encode(data).decode()
        )


def build_record(table: Table, change: _Change, precision: str | None) -> dict[str, Any]:
    """One change record in the Kinesis Data Streams for DynamoDB format."""
    image = change.new if change.new is not None else change.old
    assert image is not None
    if change.old is None:
        event = "INSERT"
    elif change.new is None:
        event = "REMOVE"
    else:
        event = "MODIFY"
    if (precision or "MILLISECOND") == "MICROSECOND":
        when = change.ts_ns // 1_000
    else:
        when = change.ts_ns // 1_000_000
    keys = _keys(table, image)
    ddb: dict[str, Any] = {"ApproximateCreationDateTime": when, "Keys": keys}
    if change.new is not None:
        ddb["NewImage"] = change.new
    if change.old is not None:
        ddb["OldImage"] = change.old
    ddb["SizeBytes"] = item_size(keys) + item_size(change.new or {}) + item_size(change.old or {})
    if precision is not None:
        ddb["ApproximateCreationDateTimePrecision"] = precision
    return {
        "awsRegion": table.region_name,
        "eventID": str(uuid.uuid4()),
        "eventName": event,
        "userIdentity": dict(change.identity) if change.identity else None,
        "recordFormat": "application/json",
        "tableName": table.name,
        "dynamodb": ddb,
        "eventSource": "aws:dynamodb",
    }


# DynamoDB item size (the documented rules): name bytes + value bytes; numbers take
# 1 byte per 2 significant digits + 1; BOOL/NULL 1; List/Map 3 + 1 per element.
def _number_size(text: str) -> int:
    mantissa = text.strip().lstrip("+-").lower().split("e", 1)[0].replace(".", "")
    digits = mantissa.strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _value_size(value: dict[str, Any]) -> int:
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(base64.b64decode(v))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(n) for n in v)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(_value_size(x) + 1 for x in v)
    return len(json.dumps(v))


def item_size(image: dict[str, Any]) -> int:
    return sum(len(name.encode()) + _value_size(value) for name, value in image.items())


# --- moto patches ---------------------------------------------------------------------------
# Internals relied on (moto 5.2.5): Table.put_item(item_attrs, ...) -> Item,
# Table.delete_item(hash_key, range_key) -> Item | None, Table.get_item, Table.hash_key_attr /
# range_key_attr / account_id / region_name / name / created_at, Item.to_json()["Attributes"],
# DynamoDBBackend.update_item(table_name, key, ...), .transact_write_items (rolls back by
# swapping in deep copies of the tables, then raises), .delete_table(name) -> Table,
# dynamodb_backends[account][region], kinesis_backends[account][region].streams / .put_record.

_patched = False


def _current_item(table: Table, key: dict[str, Any]) -> Any:
    try:
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        return table.get_item(hash_value, range_value)
    except Exception:  # noqa: BLE001 - malformed keys: moto raises the right error itself
        return None


def _install() -> None:
    global _patched
    if _patched:
        return

    orig_put = Table.put_item
    orig_delete = Table.delete_item
    orig_update = DynamoDBBackend.update_item
    orig_transact = DynamoDBBackend.transact_write_items
    orig_delete_table = DynamoDBBackend.delete_table

    @functools.wraps(orig_put)
    def put_item(self: Table, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not _interesting(self):
            return orig_put(self, item_attrs, *args, **kwargs)
        old = _snapshot(_current_item(self, item_attrs))
        with change_scope():
            item = orig_put(self, item_attrs, *args, **kwargs)
            _record(self, old, _snapshot(item))
        return item

    @functools.wraps(orig_delete)
    def delete_item(self: Table, hash_key: Any, range_key: Any) -> Any:
        if not _interesting(self):
            return orig_delete(self, hash_key, range_key)
        with change_scope():
            item = orig_delete(self, hash_key, range_key)
            if item is not None:
                _record(self, _snapshot(item), None)
        return item

    @functools.wraps(orig_update)
    def update_item(self: DynamoDBBackend, table_name: str, key: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            table = self.get_table(table_name)
        except Exception:  # noqa: BLE001 - let moto raise its own error
            table = None
        if table is None or not _interesting(table) or not isinstance(key, dict):
            return orig_update(self, table_name, key, *args, **kwargs)
        old = _snapshot(_current_item(table, key))
        with change_scope():
            item = orig_update(self, table_name, key, *args, **kwargs)
            _record(table, old, _snapshot(item))
        return item

    @functools.wraps(orig_transact)
    def transact_write_items(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        with change_scope():
            return orig_transact(self, *args, **kwargs)

    @functools.wraps(orig_delete_table)
    def delete_table(self: DynamoDBBackend, name: str) -> Any:
        table = orig_delete_table(self, name)
        destinations.forget_table(self.account_id, self.region_name, table.name)
        return table

    Table.put_item = put_item  # type: ignore[method-assign]
    Table.delete_item = delete_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    DynamoDBBackend.delete_table = delete_table  # type: ignore[method-assign]
    _patched = True


_install()


# --- TTL deletes ----------------------------------------------------------------------------


def ttl_delete(account_id: str, region: str, table_name: str, key: dict[str, Any]) -> bool:
    """Delete ``key`` (typed DynamoDB JSON) as DynamoDB's TTL process would: the change record
    carries userIdentity {"type": "Service", "principalId": "dynamodb.amazonaws.com"}.
    Returns whether an item was deleted."""
    try:
        table = dynamodb_backends[account_id][region].get_table(table_name)
    except Exception:  # noqa: BLE001
        raise AwsError("ResourceNotFoundException", f"Requested resource not found: Table: {table_name} not found", 404) from None
    missing = [a for a in (table.hash_key_attr, table.range_key_attr) if a and a not in key]
    if missing:
        raise validation_error(f"The provided key element does not match the schema: missing {missing}")
    hash_value = DynamoType(key[table.hash_key_attr])
    range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
    with change_scope(identity=TTL_IDENTITY):
        item = table.delete_item(hash_value, range_value)
    shard = table.stream_shard
    if item is not None and shard is not None and shard.items:  # DynamoDB Streams record too
        shard.items[-1].record["userIdentity"] = dict(TTL_IDENTITY)
    return item is not None


@control_route("POST", "dynamodb/ttl-delete")
def _ttl_delete_route(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    account_id = body.get("account_id") or os.environ.get("MOTO_ACCOUNT_ID") or DEFAULT_ACCOUNT_ID
    deleted = ttl_delete(account_id, body.get("region", "us-east-1"), body["table"], body["key"])
    return {"deleted": deleted}
