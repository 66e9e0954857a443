"""One table's share of a flush written in one commit: the destination role's permissions
checked, each row converted (a row that does not fit is refused on its own), the operations
applied with ``iceberg_writer``. What fails the whole table raises ``TableFailure``."""

from __future__ import annotations

import logging
import base64
from typing import Any

from s3tstream.sandbox.dataplane import error_output, iceberg_writer, row_delta
from s3tstream.sandbox.dataplane.contract import Outcome
from s3tstream.sandbox.dataplane.stream_state import StreamState, TableWork
from s3tstream.sandbox.dataplane.streams import StreamConfig

log = logging.getLogger("s3tstream.sandbox.firehose")


def iceberg_error(cfg: StreamConfig, o: Outcome, code: str, message: str, attempts: int,
                   db: str | None, table: str | None) -> dict[str, Any]:
    raw = base64.b64encode(o.data if o.data is not None else o.record.data()).decode()
    return error_output.iceberg_failed_record(
        raw_b64=raw, arrival_ms=o.record.arrival_ms, code=code, message=message, attempts=attempts,
        sequence_number=o.record.sequence_number, subsequence_number=o.record.subsequence_number,
        catalog_arn=cfg.catalog_arn, database=db, table=table, region=cfg.region,
    )


def error_prefix(cfg: StreamConfig, db: str | None, table: str | None) -> str | None:
    tc = cfg.table_config(db, table) if db and table else None
    if tc is not None and tc.get("S3ErrorOutputPrefix"):
        return str(tc["S3ErrorOutputPrefix"])
    return cfg.s3.get("ErrorOutputPrefix")


class TableFailure(Exception):
    """A table-level failure: retried within RetryOptions, then its rows go to the error bucket."""

    def __init__(self, code: str, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable


def _required_permissions(ops: list[iceberg_writer.Op]) -> list[str]:
    perms = {"DESCRIBE"}
    for op in ops:
        if op.operation in ("insert", "update"):
            perms.add("INSERT")
        if op.operation in ("update", "delete"):
            perms.add("DELETE")
    # DESCRIBE first: Firehose loads the table (Glue) before it writes (S3)
    return sorted(perms, key=["DESCRIBE", "INSERT", "DELETE"].index)


def _check_grants(cfg: StreamConfig, work: TableWork, bucket: str) -> None:
    """The destination role's permissions in the account's integration mode (sandbox/access.py)."""
    from s3tstream.sandbox import access

    denied = access.firehose_denied(cfg.account_id, cfg.region, cfg.role_arn, bucket, work.database, work.table,
                                    _required_permissions(work.ops))
    if denied:
        raise TableFailure(*denied)


def write_table(cfg: StreamConfig, st: StreamState, work: TableWork, endpoint_url: str,
                 errors: dict[tuple[str, str | None], list[dict[str, Any]]]) -> None:
    """Apply one table's rows (one commit). Record-level failures go to ``errors``; raises
    TableFailure for what fails the whole table."""
    from pyiceberg.exceptions import CommitFailedException, NoSuchTableError

    bucket = cfg.bucket_name()
    bucket_arn = iceberg_writer.find_bucket_arn(cfg.account_id, cfg.region, bucket) if bucket else None
    if bucket_arn is None:
        raise TableFailure(iceberg_writer.TABLE_NOT_FOUND, f"Catalog {cfg.catalog_arn} does not exist.", retryable=False)
    _check_grants(cfg, work, bucket)  # type: ignore[arg-type]
    catalog = iceberg_writer.catalogs_for(endpoint_url).catalog(cfg.account_id, cfg.region, bucket_arn)
    prefix = error_prefix(cfg, work.database, work.table)
    for attempt in range(4):
        try:
            table = catalog.load_table((work.database, work.table))
        except NoSuchTableError:
            raise TableFailure(iceberg_writer.TABLE_NOT_FOUND,
                                f"Table {work.database}.{work.table} was not found in {cfg.catalog_arn}.",
                                retryable=False) from None
        if table.metadata.format_version < 2:  # the documented meaning of Iceberg.NoSuchTable includes v1 tables
            raise TableFailure(iceberg_writer.TABLE_NOT_FOUND,
                               f"Table {work.database}.{work.table} is in format v{table.metadata.format_version}; "
                               "Firehose supports only v2 tables.", retryable=False)
        schema = table.schema()
        tc = cfg.table_config(work.database, work.table) or {}
        try:
            keys = iceberg_writer.unique_keys_for(schema, tc.get("UniqueKeys"))
        except iceberg_writer.RowError as exc:
            raise TableFailure(exc.code, exc.message, retryable=False) from None
        ops: list[iceberg_writer.Op] = []
        refused: list[tuple[Outcome, iceberg_writer.RowError]] = []
        for op in work.ops:
            o: Outcome = op.ref
            try:
                row = iceberg_writer.to_row(iceberg_writer.parse_record(o.data or b""), schema)
                if op.operation != "insert":
                    if not keys:
                        raise iceberg_writer.RowError(
                            iceberg_writer.INVALID_UNIQUE_KEYS,
                            f"Operation '{op.operation}' needs UniqueKeys for table {work.database}.{work.table}.")
                    if iceberg_writer.key_of(row, keys) is None:
                        raise iceberg_writer.RowError(
                            iceberg_writer.UNIQUE_KEYS_NOT_FOUND,
                            f"The record has no value for the unique key column(s) {', '.join(keys)}.")
                ops.append(iceberg_writer.Op(op.operation, row, ref=o))
            except iceberg_writer.RowError as exc:
                refused.append((o, exc))
        try:
            result = (row_delta.apply if work.merge_on_read else iceberg_writer.apply)(table, ops, keys)
        except CommitFailedException as exc:
            log.info("sandbox firehose %s: commit to %s.%s conflicted (%s), retrying", cfg.name, work.database,
                     work.table, exc)
            if attempt == 3:
                raise TableFailure(iceberg_writer.COMMIT_FAILED, f"Commit to {work.database}.{work.table} failed: {exc}") from None
            continue
        for o, exc in refused:
            errors[(error_output.ICEBERG_FAILED, prefix)].append(
                iceberg_error(cfg, o, exc.code, exc.message, work.attempts, work.database, work.table))
        st.totals["iceberg_failed"] += len(refused)
        st.totals["delivered"] += len(ops)
        st.totals["commits"] += 1 if result.committed else 0
        return

