"""Apply Firehose row operations to an Iceberg table in the sandbox's S3 Tables, with PyIceberg.

Rows are matched to columns by exact, case-sensitive top-level JSON key (aws-notes; a missing
required column is ``Iceberg.MissingColumnWithinRecord``); values are converted to the column's
Iceberg type: timestamps as epoch microseconds (or ISO-8601 text), dates as epoch days (or
``YYYY-MM-DD``), binary as base64, decimals exactly (JSON numbers are parsed as Decimal, a value
with more fractional digits than the scale is refused, never rounded), nested JSON to
struct/list/map. A record that does not fit is refused on its own; the rest of the batch goes on.

Operations (``otfMetadata.operation``; https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-format-input-record-different.html):
``insert`` appends (duplicates stay), ``update`` = delete every row with the same unique key +
insert, ``delete`` = delete by unique key. Unique keys: the table configuration's ``UniqueKeys``
(API_DestinationTableConfiguration: "Firehose will use these for running Create, Update, or
Delete operations"), else the table's identifier fields (UNCONFIRMED fallback).

Update of a key that is not in the table: the AWS guide only says update "uses the primary key
to locate and change existing rows" (apache-iceberg-stream.html). Firehose writes updates
merge-on-read (an equality delete on the key plus the new row), which inserts an absent key;
the sandbox does the same (UNCONFIRMED: no AWS page states it outright).

Ordered delivery (the default) differs from Firehose on purpose: Firehose writes equality delete
files (merge-on-read); here ``apply`` deletes by rewriting (copy-on-write: it reads the table,
drops the rows whose key was deleted or updated and overwrites the table with the kept rows
plus the new ones), applying a flush's operations in arrival order. The rows are those of an
in-order Firehose; the files and snapshots are not. Chaos delivery writes merge-on-read as
Firehose does (``row_delta``). Either way a flush is one transaction: one
``update_table_metadata_location`` commit per table.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import json
import logging
import threading
import uuid
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Any

log = logging.getLogger("s3tstream.sandbox.iceberg")

OPERATIONS = ("insert", "update", "delete")
_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_TZ = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_EPOCH_DATE = datetime.date(1970, 1, 1)
INT_RANGE = (-(2**31), 2**31 - 1)
LONG_RANGE = (-(2**63), 2**63 - 1)
_DECIMAL_PREC = 80  # room for 38 digits plus any scale a JSON number can ask for

# Destination error codes (errorCode of iceberg-failed records). Iceberg.NoSuchTable,
# Iceberg.InvalidTableName, S3.AccessDenied and Glue.AccessDenied are the Firehose guide's list
# ("Set up the Firehose stream", https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-stream.html).
# Iceberg.MissingColumnWithinRecord is named in aws-notes and widely reported from real error
# output; Iceberg.InvalidUniqueKeys and its message are quoted from a real delivery error (re:Post
# "firehose delivery stream destination error"). The others are UNCONFIRMED (the sandbox's own).
MISSING_COLUMN = "Iceberg.MissingColumnWithinRecord"
INVALID_VALUE = "Iceberg.InvalidColumnValue"  # UNCONFIRMED
INVALID_JSON = "Iceberg.InvalidJson"  # UNCONFIRMED
INVALID_UNIQUE_KEYS = "Iceberg.InvalidUniqueKeys"
UNIQUE_KEYS_NOT_FOUND = "Iceberg.UniqueKeysNotFound"  # UNCONFIRMED
INVALID_OPERATION = "Iceberg.InvalidOperation"  # UNCONFIRMED
TABLE_NOT_FOUND = "Iceberg.NoSuchTable"  # the table does not exist, or is not format v2
INVALID_TABLE_NAME = "Iceberg.InvalidTableName"  # a null or empty table name
GLUE_ACCESS_DENIED = "Glue.AccessDenied"  # the role may not see the table (Lake Formation DESCRIBE)
S3_ACCESS_DENIED = "S3.AccessDenied"  # the role may not write it (INSERT/DELETE; UNCONFIRMED which code AWS uses)
COMMIT_FAILED = "Iceberg.CommitFailed"  # UNCONFIRMED (sandbox: retries exhausted)
WRITE_FAILED = "Iceberg.WriteFailed"  # UNCONFIRMED (sandbox: the write kept failing for the retry duration)
INVALID_UNIQUE_KEYS_MESSAGE = "The configured unique keys for the table do not match with the fields present in the schema."


class RowError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- value conversion
def parse_record(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RowError(INVALID_JSON, f"The record is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RowError(INVALID_JSON, f"The record is a JSON {type(obj).__name__}, not an object")
    return obj


def _bad(path: str, typ: Any, value: Any, why: str = "") -> RowError:
    shown = json.dumps(value, default=str)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return RowError(INVALID_VALUE, f"Column '{path}' of type {typ}: cannot write value {shown}{': ' + why if why else ''}")


def _integer(value: Any, path: str, typ: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _bad(path, typ, value)
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise _bad(path, typ, value, "not an integer")
        value = int(value)
    if not lo <= value <= hi:
        raise _bad(path, typ, value, "out of range")
    return value


def convert(value: Any, typ: Any, path: str) -> Any:
    """A JSON value -> the Python value PyArrow writes for this Iceberg type (None stays None)."""
    from pyiceberg import types as T

    if value is None:
        return None
    if isinstance(typ, T.BooleanType):
        if not isinstance(value, bool):
            raise _bad(path, typ, value)
        return value
    if isinstance(typ, T.IntegerType):
        return _integer(value, path, typ, *INT_RANGE)
    if isinstance(typ, T.LongType):
        return _integer(value, path, typ, *LONG_RANGE)
    if isinstance(typ, (T.FloatType, T.DoubleType)):
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise _bad(path, typ, value)
        return float(value)
    if isinstance(typ, T.DecimalType):
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise _bad(path, typ, value)
        d = Decimal(value)
        try:
            # Iceberg decimals have up to 38 digits; Python's default context only 28
            with localcontext(Context(prec=_DECIMAL_PREC)):
                q = d.quantize(Decimal(1).scaleb(-typ.scale))
        except InvalidOperation:
            raise _bad(path, typ, value, "does not fit") from None
        if q != d:
            raise _bad(path, typ, value, f"more than {typ.scale} fractional digits")
        if len(q.as_tuple().digits) > typ.precision and q != 0:
            raise _bad(path, typ, value, f"more than {typ.precision} digits")
        return q
    if isinstance(typ, T.StringType):
        if not isinstance(value, str):
            raise _bad(path, typ, value)
        return value
    if isinstance(typ, (T.BinaryType, T.FixedType)):
        if not isinstance(value, str):
            raise _bad(path, typ, value)
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            try:
                raw = bytes.fromhex(value)
            except ValueError:
                raise _bad(path, typ, value, "neither base64 nor hex") from None
        if isinstance(typ, T.FixedType) and len(raw) != len(typ):
            raise _bad(path, typ, value, f"fixed[{len(typ)}] needs {len(typ)} bytes")
        return raw
    if isinstance(typ, T.DateType):
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                raise _bad(path, typ, value) from None
        days = _integer(value, path, typ, -3_000_000, 3_000_000)
        return _EPOCH_DATE + datetime.timedelta(days=days)
    if isinstance(typ, (T.TimestampType, T.TimestamptzType)):
        if isinstance(value, str):
            try:
                dt = datetime.datetime.fromisoformat(value)
            except ValueError:
                raise _bad(path, typ, value) from None
            micros = (dt - (_EPOCH if dt.tzinfo is None else _EPOCH_TZ)) // datetime.timedelta(microseconds=1)
        else:
            micros = _integer(value, path, typ, *LONG_RANGE)
        tz = datetime.timezone.utc if isinstance(typ, T.TimestamptzType) else None
        base = _EPOCH_TZ if tz else _EPOCH
        try:
            return base + datetime.timedelta(microseconds=micros)
        except OverflowError:
            raise _bad(path, typ, value, "out of range") from None
    if isinstance(typ, T.TimeType):
        micros = _integer(value, path, typ, 0, 86_400_000_000 - 1)
        return (datetime.datetime.min + datetime.timedelta(microseconds=micros)).time()
    if isinstance(typ, T.UUIDType):
        try:
            return uuid.UUID(str(value)).bytes
        except ValueError:
            raise _bad(path, typ, value) from None
    if isinstance(typ, T.ListType):
        if not isinstance(value, list):
            raise _bad(path, typ, value)
        return [convert(v, typ.element_type, f"{path}[]") for v in value]
    if isinstance(typ, T.MapType):
        if not isinstance(value, dict):
            raise _bad(path, typ, value)
        return [(convert(k, typ.key_type, f"{path}.key"), convert(v, typ.value_type, f"{path}.{k}")) for k, v in value.items()]
    if isinstance(typ, T.StructType):
        if not isinstance(value, dict):
            raise _bad(path, typ, value)
        return {f.name: convert(value.get(f.name), f.field_type, f"{path}.{f.name}") for f in typ.fields}
    raise _bad(path, typ, value, "type not supported by the sandbox")


def to_row(obj: dict[str, Any], schema: Any) -> dict[str, Any]:
    """A record object -> a row of the table (every column; absent optional ones None)."""
    row: dict[str, Any] = {}
    for field in schema.fields:
        if field.name not in obj:
            if field.required:
                raise RowError(MISSING_COLUMN, f"The record has no value for the required column '{field.name}'.")
            row[field.name] = None
            continue
        value = obj[field.name]
        if value is None and field.required:
            raise RowError(MISSING_COLUMN, f"The record has a null value for the required column '{field.name}'.")
        row[field.name] = convert(value, field.field_type, field.name)
    return row


def norm_key(value: Any) -> Any:
    """Key values from JSON and from a table scan made comparable."""
    if isinstance(value, datetime.datetime):
        base = _EPOCH if value.tzinfo is None else _EPOCH_TZ
        return ("ts", (value - base) // datetime.timedelta(microseconds=1))
    if isinstance(value, bytearray):
        return bytes(value)
    return value


# --------------------------------------------------------------------------- planning
@dataclasses.dataclass
class Op:
    operation: str  # insert | update | delete
    row: dict[str, Any]
    ref: Any = None  # the caller's handle on the source record


def unique_keys_for(schema: Any, configured: list[str] | None) -> list[str]:
    """The key columns for update/delete; RowError(InvalidUniqueKeys) if they are not columns."""
    names = [f.name for f in schema.fields]
    if configured:
        if any(k not in names for k in configured):
            raise RowError(INVALID_UNIQUE_KEYS, INVALID_UNIQUE_KEYS_MESSAGE)
        return list(configured)
    return [schema.find_column_name(i) for i in schema.identifier_field_ids if schema.find_column_name(i)]


def key_of(row: dict[str, Any], keys: list[str]) -> tuple[Any, ...] | None:
    if not keys or any(row.get(k) is None for k in keys):
        return None
    return tuple(norm_key(row[k]) for k in keys)


def plan(ops: list[Op], keys: list[str]) -> tuple[list[dict[str, Any]], set[tuple[Any, ...]]]:
    """(rows to append, keys whose existing rows are deleted), applying ops in order."""
    rows: list[dict[str, Any]] = []
    dead: set[int] = set()
    by_key: dict[tuple[Any, ...], list[int]] = {}
    deleted: set[tuple[Any, ...]] = set()
    for op in ops:
        k = key_of(op.row, keys)
        if op.operation == "insert":
            if k is not None:
                by_key.setdefault(k, []).append(len(rows))
            rows.append(op.row)
            continue
        assert k is not None, "update/delete rows are checked for their keys before planning"
        deleted.add(k)
        dead.update(by_key.pop(k, []))
        if op.operation == "update":
            by_key[k] = [len(rows)]
            rows.append(op.row)
    return [r for i, r in enumerate(rows) if i not in dead], deleted


# --------------------------------------------------------------------------- catalog access
_session_lock = threading.Lock()
_session: Any = None


def _new_client(endpoint_url: str, region: str) -> Any:
    """An s3tables client from one shared boto3 session (a new session reloads every service
    model: ~0.7 s); client creation is serialised (sessions are not thread-safe)."""
    global _session
    import boto3
    from botocore.config import Config

    with _session_lock:
        if _session is None:
            _session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                             region_name="us-east-1")
        return _session.client("s3tables", region_name=region, endpoint_url=endpoint_url,
                               config=Config(retries={"total_max_attempts": 2, "mode": "standard"}))


class Catalogs:
    """PyIceberg catalogs (s3tstream.lake.catalog) on the sandbox's own endpoint, per bucket."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._catalogs: dict[tuple[str, str, str], Any] = {}

    def client(self, account_id: str, region: str) -> Any:
        with self._lock:
            key = (account_id, region)
            if key not in self._clients:
                c = _new_client(self.endpoint_url, region)

                def _account_header(request: Any, **_: Any) -> None:
                    request.headers["x-moto-account-id"] = account_id

                c.meta.events.register("before-send.s3tables", _account_header)
                self._clients[key] = c
            return self._clients[key]

    def catalog(self, account_id: str, region: str, bucket_arn: str) -> Any:
        from s3tstream.lake.catalog import S3TablesCatalog

        key = (account_id, region, bucket_arn)
        client = self.client(account_id, region)
        with self._lock:
            if key not in self._catalogs:
                props = {
                    "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
                    "s3.endpoint": self.endpoint_url,
                    "s3.region": region,
                    "s3.access-key-id": "testing",
                    "s3.secret-access-key": "testing",
                    "s3.force-virtual-addressing": "false",
                }
                self._catalogs[key] = S3TablesCatalog(client, bucket_arn, **props)
            return self._catalogs[key]


_registry_lock = threading.Lock()
_registry: dict[str, Catalogs] = {}


def catalogs_for(endpoint_url: str) -> Catalogs:
    """The shared Catalogs of one sandbox endpoint (clients and catalogs hold no AWS state)."""
    with _registry_lock:
        c = _registry.get(endpoint_url)
        if c is None:
            c = _registry[endpoint_url] = Catalogs(endpoint_url)
        return c


def find_bucket_arn(account_id: str, region: str, bucket: str) -> str | None:
    from moto.s3tables.models import s3tables_backends

    if account_id not in dict.keys(s3tables_backends):
        return None
    regions = dict.__getitem__(s3tables_backends, account_id)
    if region not in dict.keys(regions):
        return None
    backend = dict.__getitem__(regions, region)
    return next((arn for arn, b in list(backend.table_buckets.items()) if b.name == bucket), None)


# --------------------------------------------------------------------------- applying a batch
@dataclasses.dataclass
class ApplyResult:
    appended: int
    deleted_keys: int
    rows_removed: int
    committed: bool
    snapshot_id: int | None = None


def apply(table: Any, ops: list[Op], keys: list[str]) -> ApplyResult:
    """One transaction (one commit) applying ``ops`` in order to ``table``."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    from s3tstream.lake import pyiceberg_nulls

    pyiceberg_nulls.install()  # a NULL list<struct> must not be written as []
    rows, deleted = plan(ops, keys)
    arrow_schema = schema_to_pyarrow(table.schema())
    new = pa.Table.from_pylist(rows, schema=arrow_schema) if rows else None
    removed = 0
    kept = None
    if deleted and table.current_snapshot() is not None:
        from s3tstream.lake import merge_on_read

        existing = merge_on_read.scan(table)[0]  # a table chaos delivery wrote holds delete files
        if existing.num_rows:
            cols = [existing.column(k).to_pylist() for k in keys]
            mask = [tuple(norm_key(v) for v in vals) not in deleted for vals in zip(*cols)]
            removed = mask.count(False)
            if removed:
                kept = existing.filter(pa.array(mask, type=pa.bool_())).cast(arrow_schema)
    if not removed and new is None:
        return ApplyResult(0, len(deleted), 0, committed=False)
    with table.transaction() as tx:
        if removed:
            parts = [t for t in (kept, new) if t is not None]
            tx.overwrite(pa.concat_tables(parts) if parts else arrow_schema.empty_table())
        else:
            tx.append(new)
    snap = table.current_snapshot()
    return ApplyResult(len(rows), len(deleted), removed, committed=True,
                       snapshot_id=snap.snapshot_id if snap is not None else None)
