"""Readiness under the ``realistic`` latency: resources take AWS-like times to become usable.

moto makes every table and stream ACTIVE, and every role usable, the moment it is created.
Under ``realistic`` (delays in ``sandbox/latency.py``, scaled by the server's latency_scale),
a resource created through a realistic server is not ready until its delay has passed,
whoever looks at it (any server, any describe):

- DynamoDB CreateTable: TableStatus CREATING (in CreateTable's TableDescription and in
  DescribeTable) until ``dynamodb.table.create``. Meanwhile PutItem, GetItem, UpdateItem,
  DeleteItem, Query and Scan answer ResourceNotFoundException (the API reference: "its status might not be ACTIVE"; "You can
  perform read and write operations only on an ACTIVE table"), DeleteTable answers
  ResourceInUseException ("You tried to delete a table currently in the CREATING state"), and
  EnableKinesisStreamingDestination (ext/dynamodb.py, via :func:`table_status`) answers
  ResourceInUseException. UNCONFIRMED: AWS's exact message texts for these.
- Kinesis CreateStream: StreamStatus CREATING until ``kinesis.stream.create``; Start/Stop
  StreamEncryption, UpdateShardCount and UpdateStreamMode make it UPDATING for
  ``kinesis.stream.update``. Those operations and Increase/DecreaseStreamRetentionPeriod
  refuse a stream that is not ACTIVE with ResourceInUseException (Kinesis API reference: "the
  resource must be in the ACTIVE state"); DeleteStream refuses a CREATING stream ("If the
  stream is in the ACTIVE state, you can delete it"). A DynamoDB streaming destination enabled
  towards a stream that is still CREATING when the enable completes ends ENABLE_FAILED
  (ext/dynamodb.py reads the stream's status).
- IAM CreateRole: the role is not assumable by Firehose for ``iam.role.propagation``;
  ext/firehose.py asks :func:`role_unusable` and answers CreateDeliveryStream with
  InvalidArgumentException "Firehose is unable to assume role ...".
- Firehose CREATING -> ACTIVE after ``firehose.delivery_stream.create`` lives in ext/firehose.py.

Under ``instant`` nothing here changes moto's answers. Which server's profile applies to a
call moto handles: the one serving it (``latency.serving``, set by the server's middleware).
"""

from __future__ import annotations

import functools
import inspect
import time
from typing import Any

from s3tstream.sandbox import latency
from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.dynamodb.exceptions import ResourceInUseException as DdbInUse  # noqa: E402
from moto.dynamodb.exceptions import ResourceNotFoundException as DdbNotFound  # noqa: E402
from moto.dynamodb.models import DynamoDBBackend  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402
from moto.iam.models import IAMBackend, iam_backends  # noqa: E402
from moto.kinesis.exceptions import ResourceInUseError as KinesisInUse  # noqa: E402
from moto.kinesis.models import KinesisBackend, Stream  # noqa: E402

_clock = time.monotonic  # deadlines (tests may replace it)

_READY_AT = "_s3t_ready_at"  # attribute set on moto objects: _clock() deadline
_STATUS = "_s3t_status"
_PENDING = "_s3t_pending"  # (deadline, final status) of a Kinesis stream transition


# --- DynamoDB tables ------------------------------------------------------------------------


def table_status(table: Any) -> str:
    """CREATING until the table's realistic creation delay passed, else ACTIVE."""
    ready_at = getattr(table, _READY_AT, None)
    return "CREATING" if ready_at is not None and _clock() < ready_at else "ACTIVE"


def _creating_table(backend: DynamoDBBackend, name: Any) -> Any:
    try:
        table = backend.get_table(name)
    except Exception:  # noqa: BLE001 - moto answers for a missing table itself
        return None
    return table if table_status(table) == "CREATING" else None


ITEM_OPERATIONS = ("put_item", "get_item", "update_item", "delete_item", "query", "scan")


# --- Kinesis streams ------------------------------------------------------------------------


def _get_stream_status(self: Stream) -> str:
    d = self.__dict__
    pending = d.get(_PENDING)
    if pending is not None and _clock() >= pending[0]:
        d[_STATUS] = pending[1]
        d.pop(_PENDING, None)
    return str(d.get(_STATUS, d.get("status", "ACTIVE")))


def _set_stream_status(self: Stream, value: str) -> None:
    self.__dict__[_STATUS] = value
    self.__dict__.pop(_PENDING, None)


def _transition(stream: Stream, status: str, seconds: float) -> None:
    stream.status = status
    stream.__dict__[_PENDING] = (_clock() + seconds, "ACTIVE")


# Backend operations that need an ACTIVE stream; True: they make it UPDATING.
STREAM_OPERATIONS = {
    "start_stream_encryption": True,
    "stop_stream_encryption": True,
    "update_shard_count": True,
    "update_stream_mode": True,
    "increase_stream_retention_period": False,
    "decrease_stream_retention_period": False,
}


def _stream_of(backend: KinesisBackend, bound: inspect.BoundArguments) -> Stream | None:
    args = bound.arguments
    try:
        if args.get("stream_name") or args.get("stream_arn"):
            return backend.describe_stream(stream_arn=args.get("stream_arn"), stream_name=args.get("stream_name"))
    except Exception:  # noqa: BLE001 - moto raises its own not-found error
        return None
    return None


# --- IAM roles ------------------------------------------------------------------------------


def role_unusable(account_id: str, role_arn: str) -> bool:
    """True while a role created through a realistic server is too young for Firehose."""
    partition = role_arn.split(":")[1] if role_arn.count(":") >= 5 else "aws"
    try:
        backend = iam_backends[account_id][partition]
        role = backend.get_role_by_arn(role_arn)
    except Exception:  # noqa: BLE001 - a role that does not exist: not ours to judge here
        return False
    ready_at = getattr(role, _READY_AT, None)
    return ready_at is not None and _clock() < ready_at


def firehose_assume_message(role_arn: str) -> str:
    return f"Firehose is unable to assume role {role_arn}. Please check the role provided."


# --- moto patches ---------------------------------------------------------------------------
# moto 5.2.5 internals: DynamoDBBackend.create_table(name, ...) -> Table, .get_table(name),
# .delete_table(name), item operations taking table_name first; Table.describe(base_key) with
# a literal "TableStatus": "ACTIVE"; Stream.status (set in __init__ only), KinesisBackend
# .create_stream(stream_name, ...) -> Stream, .describe_stream(stream_arn, stream_name), the
# stream operations above (stream_arn/stream_name arguments); IAMBackend.create_role(...) -> Role,
# .get_role_by_arn(arn); iam_backends[account][partition].

_patched = False


def _install() -> None:
    global _patched
    if _patched:
        return

    orig_create_table = DynamoDBBackend.create_table
    orig_delete_table = DynamoDBBackend.delete_table
    orig_describe = Table.describe
    orig_create_stream = KinesisBackend.create_stream
    orig_delete_stream = KinesisBackend.delete_stream
    orig_create_role = IAMBackend.create_role

    @functools.wraps(orig_create_table)
    def create_table(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        seconds = latency.current_delay("dynamodb.table.create")
        table = orig_create_table(self, *args, **kwargs)
        if seconds is not None:
            setattr(table, _READY_AT, _clock() + seconds)
        return table

    @functools.wraps(orig_delete_table)
    def delete_table(self: DynamoDBBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        if _creating_table(self, name) is not None:
            raise DdbInUse(f"Attempt to change a resource which is still in use: Table is being created: {name}")
        return orig_delete_table(self, name, *args, **kwargs)

    @functools.wraps(orig_describe)
    def describe(self: Table, *args: Any, **kwargs: Any) -> dict[str, Any]:
        out = orig_describe(self, *args, **kwargs)
        if table_status(self) == "CREATING":
            for body in out.values():
                if isinstance(body, dict) and "TableStatus" in body:
                    body["TableStatus"] = "CREATING"
        return out

    def item_guard(name: str) -> None:
        orig = getattr(DynamoDBBackend, name)

        @functools.wraps(orig)
        def guarded(self: DynamoDBBackend, table_name: Any, *args: Any, **kwargs: Any) -> Any:
            if _creating_table(self, table_name) is not None:
                raise DdbNotFound()
            return orig(self, table_name, *args, **kwargs)

        setattr(DynamoDBBackend, name, guarded)

    @functools.wraps(orig_create_stream)
    def create_stream(self: KinesisBackend, *args: Any, **kwargs: Any) -> Any:
        seconds = latency.current_delay("kinesis.stream.create")
        stream = orig_create_stream(self, *args, **kwargs)
        if seconds is not None:
            _transition(stream, "CREATING", seconds)
        return stream

    @functools.wraps(orig_delete_stream)
    def delete_stream(self: KinesisBackend, *args: Any, **kwargs: Any) -> Any:
        stream = _stream_of(self, inspect.signature(orig_delete_stream).bind(self, *args, **kwargs))
        if stream is not None and stream.status == "CREATING":
            raise KinesisInUse(
                f"Stream {stream.stream_name} under account {self.account_id} not ACTIVE, instead in state CREATING"
            )
        return orig_delete_stream(self, *args, **kwargs)

    def stream_guard(name: str, updates: bool) -> None:
        orig = getattr(KinesisBackend, name)
        sig = inspect.signature(orig)

        @functools.wraps(orig)
        def guarded(self: KinesisBackend, *args: Any, **kwargs: Any) -> Any:
            bound = sig.bind(self, *args, **kwargs)
            stream = _stream_of(self, bound)
            if stream is not None and stream.status != "ACTIVE":
                raise KinesisInUse(
                    f"Stream {stream.stream_name} under account {self.account_id} not ACTIVE, "
                    f"instead in state {stream.status}"
                )
            out = orig(self, *args, **kwargs)
            seconds = latency.current_delay("kinesis.stream.update") if updates else None
            if stream is not None and seconds is not None:
                _transition(stream, "UPDATING", seconds)
            return out

        setattr(KinesisBackend, name, guarded)

    @functools.wraps(orig_create_role)
    def create_role(self: IAMBackend, *args: Any, **kwargs: Any) -> Any:
        seconds = latency.current_delay("iam.role.propagation")
        role = orig_create_role(self, *args, **kwargs)
        if seconds is not None:
            setattr(role, _READY_AT, _clock() + seconds)
        return role

    DynamoDBBackend.create_table = create_table  # type: ignore[method-assign]
    DynamoDBBackend.delete_table = delete_table  # type: ignore[method-assign]
    Table.describe = describe  # type: ignore[method-assign]
    for op in ITEM_OPERATIONS:
        item_guard(op)
    Stream.status = property(_get_stream_status, _set_stream_status)  # type: ignore[assignment]
    KinesisBackend.create_stream = create_stream  # type: ignore[method-assign]
    KinesisBackend.delete_stream = delete_stream  # type: ignore[method-assign]
    for op, updates in STREAM_OPERATIONS.items():
        stream_guard(op, updates)
    IAMBackend.create_role = create_role  # type: ignore[method-assign]
    _patched = True


_install()
