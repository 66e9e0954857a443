"""Glue Data Catalog tables as the sandbox's Athena reads them (catalog ``awsdatacatalog``).

Athena reads a Hive-style external table from the files under its StorageDescriptor.Location.
The sandbox supports the text tables backfill's export path creates: LazySimpleSerDe over
TextInputFormat, gzip-compressed files decompressed by their ``.gz`` suffix (as Hadoop picks the
codec), one row per line, fields split at ``field.delim`` (default Ctrl-A, ``\\x01``). Files whose
name starts with ``_`` or ``.`` are skipped, as Hive does (the export writes ``_started``).
Everything is read recursively under the location. Columns of type string come back as text;
bigint, int, double and boolean are parsed, a field that does not parse is NULL (as the SerDe
reads it); other column types and other SerDes are refused with NOT_SUPPORTED. Data scanned is the stored (compressed) size of the files read.

UNCONFIRMED: that Athena lists sub-"folders" of a table location (the export has none).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from s3tstream.sandbox.athena.engine import QueryError, not_found_schema, not_found_table

LAZY_SIMPLE = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"
def _number(kind: type) -> Callable[[str], Any]:
    def conv(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            return None  # LazySimpleSerDe reads a field it cannot parse as NULL

    return conv


def _boolean(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text.strip().lower())


# column type -> (Arrow type name, conversion of a field's text)
_CASTS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "string": ("string", None), "varchar": ("string", None), "bigint": ("int64", _number(int)),
    "int": ("int32", _number(int)), "double": ("float64", _number(float)), "boolean": ("bool_", _boolean)}


def _table_input(account: str, region: str, database: str, table: str) -> dict[str, Any]:
    from moto.glue.models import glue_backends

    backend = glue_backends[account][region]
    db = backend.databases.get(database) or next(
        (d for n, d in backend.databases.items() if n.lower() == database), None)
    if db is None:
        raise not_found_schema(database)
    tbl = db.tables.get(table) or next((t for n, t in db.tables.items() if n.lower() == table), None)
    if tbl is None:
        raise not_found_table("awsdatacatalog", database, table)
    return tbl.as_dict()


def _lines(account: str, location: str) -> tuple[list[str], int]:
    from moto.s3.models import s3_backends

    bucket_name, _, prefix = location.removeprefix("s3://").partition("/")
    backend = s3_backends[account]["aws"]
    try:
        bucket = backend.get_bucket(bucket_name)
    except Exception:  # noqa: BLE001 - moto's MissingBucket
        raise QueryError("HIVE_FILESYSTEM_ERROR", f"The specified bucket does not exist: {bucket_name}") from None
    keys, _, _, _ = backend.list_objects(bucket, prefix or None, None, None, None)
    lines: list[str] = []
    scanned = 0
    for key in keys:
        base = key.name.rsplit("/", 1)[-1]
        if not base or base.startswith(("_", ".")):
            continue
        body = key.value
        scanned += len(body)
        if base.endswith(".gz"):
            body = gzip.decompress(body)
        # Hadoop's LineRecordReader ends a line at \n, \r or \r\n only (not at str.splitlines' others)
        text = body.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        lines += text.split("\n")[:-1] if text.endswith("\n") else text.split("\n") if text else []
    return lines, scanned


def read_glue_table(account: str, region: str, database: str, table: str) -> tuple[Any, int]:
    """(Arrow table, bytes scanned) of a Glue text table."""
    import pyarrow as pa

    d = _table_input(account, region, database, table)
    sd = d.get("StorageDescriptor") or {}
    serde = sd.get("SerdeInfo") or {}
    name = f"awsdatacatalog.{database}.{table}"
    if (d.get("Parameters") or {}).get("table_type", "").upper() == "ICEBERG" or \
            serde.get("SerializationLibrary") != LAZY_SIMPLE:
        raise QueryError("NOT_SUPPORTED", f"the sandbox reads Glue tables stored as text (LazySimpleSerDe) only; "
                         f"{name} uses {serde.get('SerializationLibrary') or d.get('Parameters')}")
    cols = sd.get("Columns") or []
    for c in cols:
        if c.get("Type", "").lower() not in _CASTS:
            raise QueryError("NOT_SUPPORTED", f"column {c.get('Name')} of {name} has type {c.get('Type')}, "
                             "which the sandbox does not read from text")
    location = sd.get("Location") or ""
    if not location.startswith("s3://"):
        raise QueryError("HIVE_INVALID_METADATA", f"Table {name} has no S3 location")
    lines, scanned = _lines(account, location)
    delim = (serde.get("Parameters") or {}).get("field.delim", "\x01")
    split = [ln.split(delim) for ln in lines] if len(cols) > 1 else [[ln] for ln in lines]
    arrays = []
    for i, c in enumerate(cols):
        arrow_type, conv = _CASTS[c["Type"].lower()]
        values = [(f[i] if i < len(f) else None) for f in split]
        if conv is not None:
            values = [None if v is None else conv(v) for v in values]
        arrays.append(pa.array(values, type=getattr(pa, arrow_type)()))
    return pa.Table.from_arrays(arrays, names=[c["Name"].lower() for c in cols]), scanned
