"""Merge-on-read writes, the way Firehose writes an Iceberg table: one commit (a "row delta") adds
the batch's new rows as data files and its updated/deleted keys as equality delete files.

Used by chaos delivery (``chaos``). Per the Iceberg spec v2 (https://iceberg.apache.org/spec/):
- an equality delete file (``content`` 2) holds the unique key columns under the table's field
  ids and lists them in ``equality_ids``; it is tracked in a delete manifest (manifest ``content``
  1, Avro metadata ``content: deletes``); both files inherit the commit's sequence number;
- scan planning applies it only to data files with a LOWER data sequence number and, for a
  partitioned spec, only within its partition. So an insert and an update of one key in one
  commit leave two rows, and an insert then a delete in one commit leaves the row: exactly what
  a batch carrying several changes to one key does to the lake unless the writer (or the
  transform, which collapses a batch to the latest change per key) prevents it.
- each delete file is written in the partition of the row that the record names (for an update
  the new row, for a delete the old image the transform sends): a row that moved partitions keeps
  its old copy, as with any partition-scoped equality delete.

PyIceberg 0.12 writes no delete files; the data files are PyIceberg's own writer's, the delete
files are written here with pyarrow, with PyIceberg's statistics, and committed through a
subclass of PyIceberg's fast-append snapshot producer that adds the delete manifest.
"""

from __future__ import annotations

import uuid
from typing import Any

from s3tstream.sandbox.dataplane.iceberg_writer import ApplyResult, Op


def _delete_manifest_writer_class() -> Any:
    from pyiceberg.manifest import ManifestContent, ManifestWriterV2

    class DeleteManifestWriter(ManifestWriterV2):
        """A v2 manifest of delete files (``content`` 1 in the manifest list and its metadata)."""

        def content(self) -> ManifestContent:
            return ManifestContent.DELETES

        @property
        def _meta(self) -> dict[str, str]:
            return {**super()._meta, "content": "deletes"}

    return DeleteManifestWriter


def _row_delta_class() -> Any:
    from pyiceberg.manifest import DataFileContent, ManifestEntry, ManifestEntryStatus
    from pyiceberg.table.update.snapshot import _FastAppendFiles

    writer_cls = _delete_manifest_writer_class()

    class RowDelta(_FastAppendFiles):
        """A fast append that also adds delete files (PyIceberg's summary counts both kinds)."""

        def _manifests(self) -> list[Any]:
            every = self._added_data_files
            self._added_data_files = [f for f in every if f.content == DataFileContent.DATA]
            try:
                out = super()._manifests()
            finally:
                self._added_data_files = every
            deletes = [f for f in every if f.content != DataFileContent.DATA]
            if deletes:
                spec = self._transaction.table_metadata.spec()
                with writer_cls(spec, self.schema(), self.new_manifest_output(), self._snapshot_id,
                                self._compression) as writer:
                    for f in deletes:
                        writer.add(ManifestEntry.from_args(status=ManifestEntryStatus.ADDED, snapshot_id=self._snapshot_id,
                                                           sequence_number=None, file_sequence_number=None, data_file=f))
                out = [writer.to_manifest_file(), *out]
            return out

    return RowDelta


def _partitions(table_metadata: Any, arrow: Any) -> list[tuple[Any, Any]]:
    """[(PartitionKey or None, rows)] of an Arrow table of full rows."""
    from pyiceberg.io.pyarrow import _determine_partitions

    spec = table_metadata.spec()
    if spec.is_unpartitioned():
        return [(None, arrow)]
    return [(p.partition_key, p.arrow_table_partition)
            for p in _determine_partitions(spec=spec, schema=table_metadata.schema(), arrow_table=arrow)]


def write_equality_deletes(table: Any, table_metadata: Any, rows: list[dict[str, Any]], keys: list[str],
                           write_uuid: uuid.UUID) -> list[Any]:
    """One Parquet equality delete file per partition of ``rows`` (full rows; the key columns are kept)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
        schema_to_pyarrow,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.table.locations import load_location_provider
    from pyiceberg.typedef import Record

    schema = table_metadata.schema()
    key_schema = schema.select(*keys, case_sensitive=True)
    key_arrow = schema_to_pyarrow(key_schema)  # carries PARQUET:field_id on every column
    equality_ids = [schema.find_field(k).field_id for k in keys]
    full = pa.Table.from_pylist(rows, schema=schema_to_pyarrow(schema))
    locations = load_location_provider(table_location=table_metadata.location, table_properties=table_metadata.properties)
    out = []
    for n, (partition_key, part) in enumerate(_partitions(table_metadata, full)):
        key_rows = pa.Table.from_arrays([part.column(k).combine_chunks() for k in keys], schema=key_arrow)
        path = locations.new_data_location(data_file_name=f"{write_uuid}-eq-{n:05d}.parquet", partition_key=partition_key)
        fo = table.io.new_output(path)
        # a fresh name: overwrite=True skips the existence check (S3 Tables buckets refuse ListObjects)
        with fo.create(overwrite=True) as fos, pq.ParquetWriter(fos, schema=key_arrow) as writer:
            writer.write_table(key_rows)
        with table.io.new_input(path).open() as fh:
            metadata = pq.ParquetFile(fh).metadata
        stats = data_file_statistics_from_parquet_metadata(
            parquet_metadata=metadata,
            stats_columns=compute_statistics_plan(key_schema, table_metadata.properties),
            parquet_column_mapping=parquet_path_to_id_mapping(key_schema),
        )
        out.append(DataFile.from_args(
            content=DataFileContent.EQUALITY_DELETES,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=partition_key.partition if partition_key else Record(),
            file_size_in_bytes=len(fo),
            sort_order_id=None,
            spec_id=table_metadata.default_spec_id,
            equality_ids=equality_ids,
            key_metadata=None,
            **stats.to_serialized_dict(),
        ))
    return out


def apply(table: Any, ops: list[Op], keys: list[str]) -> ApplyResult:
    """One commit applying ``ops`` merge-on-read: every insert/update row appended, every
    update/delete key written as an equality delete at the same sequence number. Nothing is
    reconciled within the batch (the spec decides what a reader sees)."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import _dataframe_to_data_files, schema_to_pyarrow

    from s3tstream.lake import pyiceberg_nulls

    pyiceberg_nulls.install()  # a NULL list<struct> must not be written as []
    new_rows = [op.row for op in ops if op.operation in ("insert", "update")]
    deleted = [op.row for op in ops if op.operation in ("update", "delete")]
    if not new_rows and not deleted:
        return ApplyResult(0, 0, 0, committed=False)
    if deleted and table.metadata.format_version < 2:
        raise ValueError(f"table {table.name()} is format v{table.metadata.format_version}: delete files need v2")
    from pyiceberg.table.snapshots import Operation

    with table.transaction() as tx:
        producer = _row_delta_class()(operation=Operation.OVERWRITE if deleted else Operation.APPEND,
                                      transaction=tx, io=table.io)
        if new_rows:
            arrow = pa.Table.from_pylist(new_rows, schema=schema_to_pyarrow(tx.table_metadata.schema()))
            for f in _dataframe_to_data_files(table_metadata=tx.table_metadata, write_uuid=producer.commit_uuid,
                                              df=arrow, io=table.io):
                producer.append_data_file(f)
        if deleted:
            for f in write_equality_deletes(table, tx.table_metadata, deleted, keys, producer.commit_uuid):
                producer.append_data_file(f)
        producer.commit()
    snap = table.current_snapshot()
    return ApplyResult(len(new_rows), len({tuple(r[k] for k in keys) for r in deleted if all(r.get(k) is not None for k in keys)}),
                       0, committed=True, snapshot_id=snap.snapshot_id if snap is not None else None)
