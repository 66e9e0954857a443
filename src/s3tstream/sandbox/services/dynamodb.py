"""DynamoDB: Kinesis Data Streams for DynamoDB (moto 5.2.5 has neither the API nor the records).

Control plane: Enable/Describe/Update/DisableKinesisStreamingDestination with AWS's state
machine and error texts. The data plane (change records, TTL deletes) is
``dynamodb_changes.py``; it asks this module which destination a table emits to
(:func:`emitting_destination`).

AWS behaviour followed (sources in the package docstring):
- Errors of the destination APIs: missing table -> ResourceNotFoundException; every state
  violation -> ValidationException (never ResourceInUseException/ResourceNotFoundException
  for a destination). Enable does not check the stream synchronously: it answers ENABLING and
  the entry ends ENABLE_FAILED with a DestinationStatusDescription (stream missing, not ACTIVE,
  other Region or account). At most one ENABLING/ACTIVE/UPDATING/DISABLING entry per table;
  DISABLED and ENABLE_FAILED entries stay listed; re-enabling an ARN flips its entry.
- Enable without a configuration leaves the precision unset (Describe shows no field; records
  use milliseconds). Update to the precision already in force is a ValidationException.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
import uuid
from typing import Any

from s3tstream.sandbox import latency
from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.services import readiness
from s3tstream.sandbox.registry import (
    AwsError,
    SandboxRequest,
    handles,
    on_reset,
    validation_error,
)

check_moto_version()

from moto.dynamodb.models import dynamodb_backends  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

PRECISIONS = ("MICROSECOND", "MILLISECOND")
LIVE = frozenset({"ENABLING", "ACTIVE", "UPDATING", "DISABLING"})
EMITTING = frozenset({"ACTIVE", "UPDATING"})

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


# --- what the data plane asks (dynamodb_changes.py) -----------------------------------------


def tracks(table: Table) -> bool:
    """Whether ``table`` ever had a streaming destination (only those tables' writes are watched)."""
    return _key(table) in _tables


def emitting_destination(table: Table) -> tuple[str, str | None] | None:
    """(stream ARN, precision records use) of the table's ACTIVE or UPDATING destination, or None."""
    with _lock:
        state = _tables.get(_key(table))
        if state is None or state.table_created_at != table.created_at:
            return None
        _advance(state, observed=False)
        dest = next((d for d in state.entries if d.status in EMITTING), None)
        return None if dest is None else (dest.stream_arn, dest.effective_precision)


def forget_table(account_id: str, region: str, table_name: str) -> None:
    """The table was deleted: its destinations go with it."""
    with _lock:
        _tables.pop((account_id, region, table_name), None)


def find_stream(account_id: str, region: str, arn: str) -> Any:
    """moto's Kinesis stream with this ARN, or None."""
    return _find_stream(account_id, region, arn)
