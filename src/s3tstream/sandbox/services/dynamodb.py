"""DynamoDB: Kinesis Data Streams for DynamoDB (moto 5.2.5 has neither the API nor the records).

Control plane: Enable/Describe/Update/DisableKinesisStreamingDestination with AWS's state
machine and error texts. Data plane: every item change on a table whose destination is ACTIVE
(or UPDATING) becomes one record on the Kinesis stream, in the Kinesis-for-DynamoDB JSON format.
Also ``ttl_delete``: a REMOVE made "by the TTL process" (``POST /_sandbox/dynamodb/ttl-delete``).

AWS behaviour followed (sources in the package docstring):
- Errors of the destination APIs: missing table -> ResourceNotFoundException; every state
  violation -> ValidationException (never ResourceInUseException/ResourceNotFoundException
  for a destination). Enable does not check the stream synchronously: it answers ENABLING and
  the entry ends ENABLE_FAILED with a DestinationStatusDescription (stream missing, not ACTIVE,
  other Region or account). At most one ENABLING/ACTIVE/UPDATING/DISABLING entry per table;
  DISABLED and ENABLE_FAILED entries stay listed; re-enabling an ARN flips its entry.
- Enable without a configuration leaves the precision unset (Describe shows no field; records
  use milliseconds). Update to the precision already in force is a ValidationException.
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
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

from s3tstream.sandbox import latency
from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.services import readiness
from s3tstream.sandbox.registry import (
    AwsError,
    SandboxRequest,
    control_route,
    handles,
    on_reset,
    validation_error,
)

check_moto_version()

from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

log = logging.getLogger("s3tstream.sandbox.dynamodb")

DEFAULT_ACCOUNT_ID = "123456789012"
PRECISIONS = ("MICROSECOND", "MILLISECOND")
LIVE = frozenset({"ENABLING", "ACTIVE", "UPDATING", "DISABLING"})
EMITTING = frozenset({"ACTIVE", "UPDATING"})
TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
MAX_RECORD_BYTES = 1024 * 1024  # Kinesis record limit; bigger change records are skipped

_STATE_PREFIX = "Table is not in a valid state to enable Kinesis Streaming Destination: "
MSG_ENABLE_STATE = (
    _STATE_PREFIX
    + "EnableKinesisStreamingDestination must be DISABLED or ENABLE_FAILED to perform ENABLE operation."
)
MSG_DISABLE_STATE = _STATE_PREFIX + "KinesisStreamingDestination must be ACTIVE to perform DISABLE operation."
MSG_DISABLE_WITH_CONFIG = "Stream cannot be disabled using EnableKinesisStreamingConfiguration parameters"
MSG_UPDATE_NULL = (
    "Streaming destination cannot be updated with given parameters: "
    "UpdateKinesisStreamingConfiguration cannot be null or contain only null values"
)
DESC_NO_PERMISSION = "User does not have a permission to use kinesis stream"
DESC_OTHER_REGION = (
    "The kinesis Arn used to enable kinesis replication belongs to a stream which is not in the current region"
)
DESC_NOT_ACTIVE = (
    "The kinesis Arn used to enable kinesis replication belongs to a stream which is not in Active state"
)

_clock = time.monotonic  # deadlines of "realistic" transitions (tests replace it)

_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):kinesis:([a-z0-9-]+):(\d{12}):stream/([A-Za-z0-9_.-]{1,128})$")


# --- destination state ----------------------------------------------------------------------


@dataclasses.dataclass
class _Transition:
    kind: str  # "enable" | "disable" | "update"
    ready_at: float | None  # _clock() deadline; None = at the next describe


@dataclasses.dataclass
class Destination:
    stream_arn: str
    status: str
    precision: str | None  # as Describe shows it (None: never set, i.e. MILLISECOND)
    effective_precision: str | None  # what records use (changes when an UPDATING completes)
    description: str | None = None
    pending: _Transition | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"StreamArn": self.stream_arn, "DestinationStatus": self.status}
        if self.description:
            out["DestinationStatusDescription"] = self.description
        if self.precision:
            out["ApproximateCreationDateTimePrecision"] = self.precision
        return out


@dataclasses.dataclass
class TableDestinations:
    account_id: str
    region: str
    table_name: str
    table_created_at: Any
    table_uid: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    entries: list[Destination] = dataclasses.field(default_factory=list)  # newest first

    def find(self, arn: str) -> Destination | None:
        return next((d for d in self.entries if d.stream_arn == arn), None)


_lock = threading.RLock()
_tables: dict[tuple[str, str, str], TableDestinations] = {}


@on_reset
def _reset() -> None:
    with _lock:
        _tables.clear()


def _key(table: Table) -> tuple[str, str, str]:
    return (table.account_id, table.region_name, table.name)


def _state(table: Table, create: bool) -> TableDestinations | None:
    with _lock:
        state = _tables.get(_key(table))
        if state is not None and state.table_created_at != table.created_at:
            # the table was deleted and created again behind our back (e.g. moto reset)
            del _tables[_key(table)]
            state = None
        if state is None and create:
            state = TableDestinations(table.account_id, table.region_name, table.name, table.created_at)
            _tables[_key(table)] = state
        return state


def destinations(account_id: str, region: str, table_name: str) -> list[dict[str, Any]]:
    """What DescribeKinesisStreamingDestination would list, without advancing anything."""
    with _lock:
        state = _tables.get((account_id, region, table_name))
        return [d.to_json() for d in state.entries] if state else []


def _advance(state: TableDestinations, observed: bool) -> None:
    now = _clock()
    for dest in state.entries:
        pending = dest.pending
        if pending is None:
            continue
        due = observed if pending.ready_at is None else now >= pending.ready_at
        if not due:
            continue
        dest.pending = None
        if pending.kind == "enable":
            failure = _stream_failure(state.account_id, state.region, dest.stream_arn)
            if failure:
                dest.status, dest.description = "ENABLE_FAILED", failure
            else:
                dest.status, dest.description = "ACTIVE", None
                dest.effective_precision = dest.precision
        elif pending.kind == "update":
            dest.status = "ACTIVE"
            dest.effective_precision = dest.precision
        else:
            dest.status = "DISABLED"


def _find_stream(account_id: str, region: str, arn: str) -> Any:
    from moto.kinesis.models import kinesis_backends

    if account_id not in kinesis_backends or region not in kinesis_backends[account_id]:
        return None
    backend = kinesis_backends[account_id][region]
    return next((s for s in list(backend.streams.values()) if s.arn == arn), None)


def _stream_failure(account_id: str, region: str, arn: str) -> str | None:
    """Why enabling streaming to ``arn`` fails (AWS's DestinationStatusDescription), or None."""
    m = _ARN_RE.match(arn)
    if not m:
        return DESC_NO_PERMISSION
    if m.group(2) != region:
        return DESC_OTHER_REGION
    if m.group(3) != account_id:
        return DESC_NOT_ACTIVE
    stream = _find_stream(account_id, region, arn)
    if stream is None or getattr(stream, "status", "ACTIVE") not in ("ACTIVE", "UPDATING"):
        return DESC_NO_PERMISSION
    return None


# --- request validation ---------------------------------------------------------------------


def _required_str(params: dict[str, Any], member: str, min_len: int = 1) -> str:
    wire = member[0].lower() + member[1:]
    value = params.get(member)
    if value is None:
        raise validation_error(
            f"1 validation error detected: Value null at '{wire}' failed to satisfy constraint: "
            "Member must not be null"
        )
    if not isinstance(value, str):
        raise AwsError("SerializationException", f"Unexpected value type for {member}")
    if len(value) < min_len:
        raise validation_error(
            f"1 validation error detected: Value '{value}' at '{wire}' failed to satisfy constraint: "
            f"Member must have length greater than or equal to {min_len}"
        )
    if len(value) > 1024:
        raise validation_error(
            f"1 validation error detected: Value '{value}' at '{wire}' failed to satisfy constraint: "
            "Member must have length less than or equal to 1024"
        )
    return value


def _precision(params: dict[str, Any], member: str) -> tuple[dict[str, Any] | None, str | None]:
    cfg = params.get(member)
    if cfg is None:
        return None, None
    if not isinstance(cfg, dict):
        raise AwsError("SerializationException", f"Unexpected value type for {member}")
    value = cfg.get("ApproximateCreationDateTimePrecision")
    if value is not None and value not in PRECISIONS:
        wire = member[0].lower() + member[1:]
        raise validation_error(
            f"1 validation error detected: Value '{value}' at '{wire}.approximateCreationDateTimePrecision' "
            f"failed to satisfy constraint: Member must satisfy enum value set: [{', '.join(PRECISIONS)}]"
        )
    return cfg, value


def _get_table(req: SandboxRequest, name_or_arn: str) -> Table:
    try:
        return dynamodb_backends[req.account_id][req.region].get_table(name_or_arn)
    except Exception:  # noqa: BLE001 - moto's ResourceNotFoundException (or a bad region)
        name = name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith("arn:") else name_or_arn
        raise AwsError(
            "ResourceNotFoundException", f"Requested resource not found: Table: {name} not found"
        ) from None


def _ready_at(req: SandboxRequest, kind: str) -> float | None:
    seconds = latency.for_request(req, f"dynamodb.kinesis_destination.{kind}")
    return None if seconds is None else _clock() + seconds


# --- control plane --------------------------------------------------------------------------


@handles("dynamodb", "EnableKinesisStreamingDestination")
def enable_kinesis_streaming_destination(req: SandboxRequest) -> dict[str, Any]:
    table_name = _required_str(req.params, "TableName")
    arn = _required_str(req.params, "StreamArn", min_len=37)
    cfg, precision = _precision(req.params, "EnableKinesisStreamingConfiguration")
    table = _get_table(req, table_name)
    if readiness.table_status(table) == "CREATING":  # realistic latency only (ext/readiness.py)
        raise AwsError(
            "ResourceInUseException",
            f"Attempt to change a resource which is still in use: Table is being created: {table.name}",
        )
    with _lock:
        state = _state(table, create=True)
        assert state is not None
        _advance(state, observed=False)
        if any(d.status in LIVE for d in state.entries):
            raise validation_error(MSG_ENABLE_STATE)
        dest = state.find(arn)
        if dest is None:
            dest = Destination(arn, "ENABLING", precision, precision)
            state.entries.insert(0, dest)
        else:  # a DISABLED or ENABLE_FAILED entry flips; its old precision is forgotten
            dest.status, dest.description = "ENABLING", None
            dest.precision = dest.effective_precision = precision
        dest.pending = _Transition("enable", _ready_at(req, "enable"))
    return {
        "TableName": table.name,
        "StreamArn": arn,
        "DestinationStatus": "ENABLING",
        "EnableKinesisStreamingConfiguration": cfg if cfg is not None else {},
    }


@handles("dynamodb", "DescribeKinesisStreamingDestination")
def describe_kinesis_streaming_destination(req: SandboxRequest) -> dict[str, Any]:
    table = _get_table(req, _required_str(req.params, "TableName"))
    with _lock:
        state = _state(table, create=False)
        if state is None:
            return {"TableName": table.name, "KinesisDataStreamDestinations": []}
        _advance(state, observed=True)
        return {"TableName": table.name, "KinesisDataStreamDestinations": [d.to_json() for d in state.entries]}


@handles("dynamodb", "UpdateKinesisStreamingDestination")
def update_kinesis_streaming_destination(req: SandboxRequest) -> dict[str, Any]:
    table_name = _required_str(req.params, "TableName")
    arn = _required_str(req.params, "StreamArn", min_len=37)
    cfg, precision = _precision(req.params, "UpdateKinesisStreamingConfiguration")
    table = _get_table(req, table_name)
    if cfg is None or precision is None:
        raise validation_error(MSG_UPDATE_NULL)
    with _lock:
        state = _state(table, create=False)
        dest = state.find(arn) if state else None
        if state is None or dest is None:
            raise validation_error(_STATE_PREFIX + f"No streaming destination with streamArn: {arn}")
        _advance(state, observed=False)
        if dest.status != "ACTIVE":
            raise validation_error(
                _STATE_PREFIX + "Kinesis streaming is not in ACTIVE state. Updates are only allowed in "
                f"ACTIVE state. TableName: {table.name}, kdsArn: {arn}"
            )
        if (dest.precision or "MILLISECOND") == precision:
            raise validation_error(
                f"Invalid Request: Precision is already set to the desired value of {precision} "
                f"for tableId: {state.table_uid}, kdsArn: {arn}"
            )
        dest.status, dest.precision = "UPDATING", precision
        dest.pending = _Transition("update", _ready_at(req, "update"))
    return {
        "TableName": table.name,
        "StreamArn": arn,
        "DestinationStatus": "UPDATING",
        "UpdateKinesisStreamingConfiguration": cfg,
    }


@handles("dynamodb", "DisableKinesisStreamingDestination")
def disable_kinesis_streaming_destination(req: SandboxRequest) -> dict[str, Any]:
    table_name = _required_str(req.params, "TableName")
    arn = _required_str(req.params, "StreamArn")
    _precision(req.params, "EnableKinesisStreamingConfiguration")
    table = _get_table(req, table_name)
    if req.params.get("EnableKinesisStreamingConfiguration") is not None:
        raise validation_error(MSG_DISABLE_WITH_CONFIG)
    with _lock:
        state = _state(table, create=False)
        dest = state.find(arn) if state else None
        if state is not None:
            _advance(state, observed=False)
        if dest is not None and dest.status == "DISABLING":
            return {"TableName": table.name, "StreamArn": arn, "DestinationStatus": "DISABLING"}
        if dest is None or dest.status != "ACTIVE":
            raise validation_error(MSG_DISABLE_STATE)
        dest.status = "DISABLING"
        dest.pending = _Transition("disable", _ready_at(req, "disable"))
    return {"TableName": table.name, "StreamArn": arn, "DestinationStatus": "DISABLING"}


# --- data plane: capture item changes -------------------------------------------------------

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
        key = (*_key(table), json.dumps(keys, sort_keys=True))
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
    return _key(table) in _tables


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
        return  # nothing changed: no record (see module docstring)
    table = change.table
    with _lock:
        state = _tables.get(_key(table))
        if state is None or state.table_created_at != table.created_at:
            return
        _advance(state, observed=False)
        dest = next((d for d in state.entries if d.status in EMITTING), None)
        if dest is None:
            return
        arn, precision = dest.stream_arn, dest.effective_precision
    record = build_record(table, change, precision)
    data = json.dumps(record, separators=(",", ":")).encode()
    if len(data) > MAX_RECORD_BYTES:
        log.warning("sandbox: change record of %d bytes for %s skipped", len(data), table.name)
        return
    partition_key = hashlib.md5(
        json.dumps(record["dynamodb"]["Keys"], sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest().upper()
    _put_record(table.account_id, table.region_name, arn, partition_key, data)


def _put_record(account_id: str, region: str, arn: str, partition_key: str, data: bytes) -> None:
    from moto.kinesis.models import kinesis_backends

    stream = _find_stream(account_id, region, arn)
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
        with _lock:
            _tables.pop((self.account_id, self.region_name, table.name), None)
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
