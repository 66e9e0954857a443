"""Read an Iceberg table's current snapshot with its row-level deletes applied, as the spec says.

Firehose writes updates and deletes merge-on-read: an equality delete file on the unique key plus
a new data file. PyIceberg 0.12 plans no scan over a table holding equality delete files (it
raises), so this module plans the scan itself and lets PyIceberg only read the files.

Scan planning (https://iceberg.apache.org/spec/#scan-planning):
- an equality delete file applies to a data file when the data file's data sequence number is
  strictly LESS than the delete file's (so it never removes a row committed in the same
  snapshot), and the data file's partition (spec id and values) equals the delete file's, or the
  delete file's spec is unpartitioned;
- a position delete file applies when the data file's sequence number is less than or EQUAL to
  the delete file's and the partitions are equal (PyIceberg then matches ``file_path``/``pos``);
- a row is deleted when its values of the delete file's ``equality_ids`` columns equal one of
  the delete file's rows (NULL equals NULL here: the spec's writers and Java's StructLikeSet do).
Deletion vectors (format v3, Puffin) are refused: S3 Tables are v2.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from typing import Any

_EPOCH = datetime.datetime(1970, 1, 1)
_EPOCH_TZ = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class UnsupportedDeletes(ValueError):
    """The table holds deletes this reader cannot apply (deletion vectors)."""


def norm(value: Any) -> Any:
    """A key value from a data file and the same value from a delete file made equal (timestamps
    as epoch microseconds whatever their Arrow unit or zone, bytes as bytes)."""
    if isinstance(value, datetime.datetime):
        base = _EPOCH if value.tzinfo is None else _EPOCH_TZ
        return ("ts", (value - base) // datetime.timedelta(microseconds=1))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


@dataclasses.dataclass
class ContentFile:
    """A live file of the snapshot with its (inherited) data sequence number."""

    file: Any  # pyiceberg.manifest.DataFile
    sequence_number: int

    @property
    def spec_id(self) -> int:
        return int(self.file.spec_id)


@dataclasses.dataclass
class ScanPlan:
    data: list[ContentFile]
    equality: list[ContentFile]
    position: list[ContentFile]

    @property
    def bytes(self) -> int:
        return sum(int(f.file.file_size_in_bytes) for f in self.data + self.equality + self.position)


def plan(table: Any) -> ScanPlan:
    """Every live file of the current snapshot, by content."""
    from pyiceberg.manifest import DataFileContent, FileFormat

    out = ScanPlan([], [], [])
    snap = table.current_snapshot()
    if snap is None:
        return out
    for manifest in snap.manifests(table.io):
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            f = entry.data_file
            seq = int(entry.sequence_number or 0)
            if f.content == DataFileContent.DATA:
                out.data.append(ContentFile(f, seq))
            elif f.content == DataFileContent.EQUALITY_DELETES:
                out.equality.append(ContentFile(f, seq))
            else:
                if f.file_format == FileFormat.PUFFIN:
                    raise UnsupportedDeletes(f"deletion vector {f.file_path}: format v3 deletes are not supported")
                out.position.append(ContentFile(f, seq))
    return out


def _unpartitioned(table: Any, spec_id: int) -> bool:
    return bool(table.specs()[spec_id].is_unpartitioned())


def applies(table: Any, delete: ContentFile, data: ContentFile) -> bool:
    """Whether ``delete`` applies to ``data`` per the spec's scan planning rules."""
    from pyiceberg.manifest import DataFileContent

    if delete.file.content == DataFileContent.EQUALITY_DELETES:
        if not data.sequence_number < delete.sequence_number:
            return False
        if _unpartitioned(table, delete.spec_id):
            return True
    elif not data.sequence_number <= delete.sequence_number:
        return False
    return delete.spec_id == data.spec_id and delete.file.partition == data.file.partition


def _field_ids(field: Any) -> int | None:
    meta = field.metadata or {}
    raw = meta.get(b"PARQUET:field_id")
    return int(raw) if raw is not None else None


def read_equality_keys(table: Any, delete: ContentFile) -> tuple[tuple[int, ...], set[tuple[Any, ...]]]:
    """(equality field ids, the set of deleted key tuples) of one equality delete file."""
    import pyarrow.parquet as pq

    ids = tuple(int(i) for i in delete.file.equality_ids or ())
    if not ids:
        raise UnsupportedDeletes(f"equality delete file {delete.file.file_path} names no equality_ids")
    with table.io.new_input(delete.file.file_path).open() as fh:
        data = pq.read_table(fh)
    by_id = {_field_ids(f): name for f, name in zip(data.schema, data.column_names)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise UnsupportedDeletes(f"equality delete file {delete.file.file_path} lacks field ids {missing}")
    cols = [data.column(by_id[i]).to_pylist() for i in ids]
    return ids, {tuple(norm(v) for v in vals) for vals in zip(*cols)}


def scan(table: Any) -> tuple[Any, int]:
    """(the current snapshot as a pyarrow.Table with every delete applied, bytes of files read)."""
    import pyarrow as pa
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import FileScanTask

    from s3tstream.lake import pyiceberg_nulls

    pyiceberg_nulls.install()  # PyIceberg's projection would read a NULL list<struct> as []
    p = plan(table)
    schema = table.schema()
    reader = ArrowScan(table.metadata, table.io, schema, AlwaysTrue())
    keysets = {id(d): read_equality_keys(table, d) for d in p.equality}
    plain: list[Any] = []
    parts: list[Any] = []
    for data in p.data:
        positional = {d.file for d in p.position if applies(table, d, data)}
        task = FileScanTask(data.file, delete_files=positional)
        eq = [keysets[id(d)] for d in p.equality if applies(table, d, data)]
        if not eq:
            plain.append(task)
            continue
        rows = reader.to_table([task])
        deleted: dict[tuple[int, ...], set[tuple[Any, ...]]] = defaultdict(set)
        for ids, keys in eq:
            deleted[ids] |= keys
        keep = [True] * rows.num_rows
        for ids, keys in deleted.items():
            names = [schema.find_column_name(i) for i in ids]
            if any(n is None for n in names):
                raise UnsupportedDeletes(f"equality delete columns {list(ids)} are no longer in the table's schema")
            cols = [rows.column(n).to_pylist() for n in names]
            for i, vals in enumerate(zip(*cols)):
                if keep[i] and tuple(norm(v) for v in vals) in keys:
                    keep[i] = False
        parts.append(rows.filter(pa.array(keep, type=pa.bool_())))
    if plain or not parts:
        parts.insert(0, reader.to_table(plain))
    result = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    return result, p.bytes
