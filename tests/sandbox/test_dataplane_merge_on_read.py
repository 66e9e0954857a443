"""Merge-on-read commits (``row_delta``, what chaos delivery writes) and the readers that apply them
(``lake.merge_on_read``) against the Iceberg spec's scan planning: an equality delete at sequence
number n removes matching rows of data files with a sequence number < n only, within its
partition. The last test reads the files with pyarrow alone and applies the rule by hand."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
import pytest
from test_dataplane_helpers import destroy_created, new_lake, table_payload

from s3tstream.lake import merge_on_read
from s3tstream.sandbox.dataplane import row_delta
from s3tstream.sandbox.dataplane.iceberg_writer import Op

pytestmark = pytest.mark.sandbox

COLUMNS = [("pk", "string", True), ("region", "string", False), ("n", "long", False)]


@pytest.fixture(autouse=True)
def _cleanup() -> Any:
    yield
    destroy_created()


def _lake(sandbox: Any, client: Any, partitioned: bool = False) -> Any:
    payload = table_payload(COLUMNS, ["pk"])
    if partitioned:  # identity on `region` (field id 2)
        payload["iceberg"]["partitionSpec"] = {"specId": 0, "fields": [
            {"sourceId": 2, "fieldId": 1000, "name": "region", "transform": "identity"}]}
    return new_lake(sandbox, client, payload)


def _ops(*specs: tuple[str, str, int | None, str | None]) -> list[Op]:
    return [Op(op, {"pk": pk, "n": n, "region": region}) for op, pk, n, region in specs]


def _rows(table: Any) -> list[tuple[str, int | None]]:
    data, _ = merge_on_read.scan(table)
    return sorted((r["pk"], r["n"]) for r in data.to_pylist())


def test_an_equality_delete_removes_older_rows_only_never_a_same_commit_insert(sandbox, client) -> None:
    lake = _lake(sandbox, client)
    t = lake.load()
    row_delta.apply(t, _ops(("insert", "a", 1, None), ("insert", "c", 1, None)), ["pk"])
    # seq 2: a updated once, b inserted then updated in the same commit, c deleted
    row_delta.apply(t, _ops(("update", "a", 2, None), ("insert", "b", 1, None), ("update", "b", 2, None),
                            ("delete", "c", None, None)), ["pk"])
    assert _rows(t) == [("a", 2), ("b", 1), ("b", 2)]  # the seq-2 delete of b spares both seq-2 rows of b
    # seq 3: an insert then a delete of d in one commit leaves d (resurrection); b's delete now applies
    row_delta.apply(t, _ops(("delete", "b", None, None), ("insert", "d", 1, None), ("delete", "d", None, None)), ["pk"])
    assert _rows(t) == [("a", 2), ("d", 1)]
    t = lake.load()
    snap = t.current_snapshot()
    assert snap.sequence_number == 3 and snap.summary["added-equality-delete-files"] == "1"
    assert snap.summary.operation.value == "overwrite"


def test_equality_deletes_apply_only_within_their_partition(sandbox, client) -> None:
    lake = _lake(sandbox, client, partitioned=True)
    t = lake.load()
    row_delta.apply(t, _ops(("insert", "a", 1, "eu"), ("insert", "b", 1, "eu")), ["pk"])
    # a moves to us: its delete is written in partition us and cannot reach the eu row
    row_delta.apply(t, _ops(("update", "a", 2, "us"), ("delete", "b", None, "eu")), ["pk"])
    assert _rows(t) == [("a", 1), ("a", 2)]
    row_delta.apply(t, _ops(("delete", "a", None, "eu")), ["pk"])
    assert _rows(t) == [("a", 2)]


def test_the_local_engine_and_athena_apply_the_deletes(sandbox, client) -> None:
    from s3tstream.lake.query import LocalEngine

    lake = _lake(sandbox, client)
    t = lake.load()
    row_delta.apply(t, _ops(("insert", "a", 1, None), ("insert", "b", 1, None)), ["pk"])
    row_delta.apply(t, _ops(("update", "a", 2, None), ("delete", "b", None, None)), ["pk"])
    local = LocalEngine(lake.load, lake.table, lake.namespace).run(f"SELECT pk, n FROM {lake.table} ORDER BY pk")
    assert local.rows == [["a", 2]]
    athena = client("athena")
    qid = athena.start_query_execution(
        QueryString=f'SELECT pk, n FROM "s3tablescatalog/{lake.bucket}"."{lake.namespace}"."{lake.table}"',
        ResultConfiguration={"OutputLocation": f"s3://{lake.error_bucket}/athena/"})["QueryExecutionId"]
    for _ in range(200):
        state = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]["State"]
        if state not in ("QUEUED", "RUNNING"):
            break
    assert state == "SUCCEEDED"
    rows = athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"][1:]
    assert [[c.get("VarCharValue") for c in r["Data"]] for r in rows] == [["a", "2"]]


def test_the_files_read_with_pyarrow_alone_follow_the_spec(sandbox, client) -> None:
    """No PyIceberg on the read side: the manifests tell sequence numbers and content, the Parquet
    files are read with pyarrow, and the spec's rule is applied by hand."""
    lake = _lake(sandbox, client)
    t = lake.load()
    row_delta.apply(t, _ops(("insert", "a", 1, None), ("insert", "b", 1, None)), ["pk"])
    row_delta.apply(t, _ops(("update", "a", 2, None), ("update", "a", 3, None), ("delete", "b", None, None)), ["pk"])
    t = lake.load()
    files = []  # (content, sequence number, path, equality ids) from the manifests
    for manifest in t.current_snapshot().manifests(t.io):
        for e in manifest.fetch_manifest_entry(t.io):
            files.append((int(manifest.content), int(e.data_file.content), e.sequence_number, e.data_file.file_path,
                          e.data_file.equality_ids))
    deletes = [f for f in files if f[1] == 2]
    assert deletes and all(m == 1 for m, *_ in deletes)  # delete files live in delete manifests
    assert all(ids == [1] for *_, ids in deletes)  # equality on field id 1 (pk)
    assert all(m == 0 and ids is None for m, c, _, _, ids in files if c == 0)

    def read(path: str) -> Any:
        with t.io.new_input(path).open() as fh:
            return pq.read_table(fh)

    for _, _, _, path, _ in deletes:
        tbl = read(path)
        assert tbl.column_names == ["pk"] and tbl.schema.field("pk").metadata[b"PARQUET:field_id"] == b"1"
    survivors = []
    for _, content, seq, path, _ in files:
        if content != 0:
            continue
        dead = {k for _, c, dseq, dpath, _ in files if c == 2 and seq < dseq for k in read(dpath).column("pk").to_pylist()}
        survivors += [(r["pk"], r["n"]) for r in read(path).to_pylist() if r["pk"] not in dead]
    assert sorted(survivors) == [("a", 2), ("a", 3)] == _rows(t)


def _position_deletes(table: Any, table_metadata: Any, targets: list[tuple[str, int]]) -> Any:
    """A position delete file (spec: file_path id 2147483546, pos id 2147483545) written with pyarrow."""
    import uuid

    import pyarrow as pa
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    schema = pa.schema([
        pa.field("file_path", pa.string(), nullable=False, metadata={b"PARQUET:field_id": b"2147483546"}),
        pa.field("pos", pa.int64(), nullable=False, metadata={b"PARQUET:field_id": b"2147483545"})])
    path = f"{table_metadata.location}/data/{uuid.uuid4()}-pos.parquet"
    fo = table.io.new_output(path)
    with fo.create(overwrite=True) as fos:
        pq.write_table(pa.table({"file_path": [p for p, _ in targets], "pos": [n for _, n in targets]}, schema=schema), fos)
    return DataFile.from_args(content=DataFileContent.POSITION_DELETES, file_path=path, file_format=FileFormat.PARQUET,
                              partition=Record(), record_count=len(targets), file_size_in_bytes=len(fo),
                              spec_id=table_metadata.default_spec_id, equality_ids=None, sort_order_id=None,
                              key_metadata=None)


def test_position_deletes_apply_to_data_files_of_the_same_or_lower_sequence_number(sandbox, client) -> None:
    """Unlike equality deletes, a position delete reaches a data file of its own commit (spec: data
    sequence number <= the delete's)."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import _dataframe_to_data_files, schema_to_pyarrow
    from pyiceberg.table.snapshots import Operation

    lake = _lake(sandbox, client)
    t = lake.load()
    row_delta.apply(t, _ops(("insert", "a", 1, None), ("insert", "b", 1, None)), ["pk"])
    (old,) = merge_on_read.plan(lake.load()).data
    t = lake.load()
    with t.transaction() as tx:
        producer = row_delta._row_delta_class()(operation=Operation.OVERWRITE, transaction=tx, io=t.io)
        rows = pa.Table.from_pylist([{"pk": "c", "n": 1, "region": None}, {"pk": "d", "n": 1, "region": None}],
                                    schema=schema_to_pyarrow(tx.table_metadata.schema()))
        (new,) = _dataframe_to_data_files(table_metadata=tx.table_metadata, write_uuid=producer.commit_uuid, df=rows,
                                          io=t.io)
        producer.append_data_file(new)
        a_pos = [r["pk"] for r in pq.read_table(t.io.new_input(old.file.file_path).open()).to_pylist()].index("a")
        producer.append_data_file(_position_deletes(t, tx.table_metadata, [(old.file.file_path, a_pos),
                                                                            (new.file_path, 0)]))
        producer.commit()
    assert _rows(lake.load()) == [("b", 1), ("d", 1)]  # a (older file) and c (same commit) are gone


def test_ordered_delivery_can_follow_chaos_on_the_same_table(sandbox, client) -> None:
    """The copy-on-write writer reads a table holding equality deletes (written in chaos mode)."""
    from s3tstream.sandbox.dataplane import iceberg_writer

    lake = _lake(sandbox, client)
    t = lake.load()
    row_delta.apply(t, _ops(("insert", "a", 1, None), ("insert", "b", 1, None)), ["pk"])
    row_delta.apply(t, _ops(("update", "a", 2, None), ("delete", "b", None, None)), ["pk"])
    iceberg_writer.apply(lake.load(), _ops(("update", "a", 3, None), ("insert", "c", 1, None)), ["pk"])
    assert _rows(lake.load()) == [("a", 3), ("c", 1)]
