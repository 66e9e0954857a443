"""A flush's records through the processor Lambda (in chunks of its BufferSizeInMBs, retried
NumberOfRetries times, the response checked against the contract) and the routing of each Ok
record to its table and operation (``metadata.otfMetadata``)."""

from __future__ import annotations

import logging

from s3tstream.sandbox.dataplane import contract, iceberg_writer, lambda_runner
from s3tstream.sandbox.dataplane.buffering import MIB, chunks
from s3tstream.sandbox.dataplane.contract import Outcome, SourceRecord
from s3tstream.sandbox.dataplane.streams import StreamConfig

log = logging.getLogger("s3tstream.sandbox.firehose")

DEFAULT_RETRIES = 3  # processor NumberOfRetries default (data-transformation-failure-handling)
DEFAULT_PROCESSOR_MB = 1.0  # processor BufferSizeInMBs default (data-transformation.html)


def transform(cfg: StreamConfig, records: list[SourceRecord]) -> tuple[list[Outcome], str]:
    """Outcomes of the processor for every record (records pass unchanged without one)."""
    params = cfg.processor()
    if params is None:
        return [Outcome(r, contract.OK, data=r.data()) for r in records], ""
    arn = params.get("LambdaArn", "")
    retries = int(float(params.get("NumberOfRetries", DEFAULT_RETRIES)))
    max_mb = min(float(params.get("BufferSizeInMBs", DEFAULT_PROCESSOR_MB)), 3.0)
    try:
        spec = lambda_runner.find_function(cfg.account_id, cfg.region, arn)
    except lambda_runner.FunctionNotFound as exc:
        return contract.failed_batch(records, "Lambda.FunctionNotFound", str(exc), 1), arn
    out: list[Outcome] = []
    for batch in chunks(records, max_mb * MIB):
        out += _invoke_batch(cfg, spec, batch, retries)
    return out, arn


def _invoke_batch(cfg: StreamConfig, spec: lambda_runner.FunctionSpec, batch: list[SourceRecord], retries: int) -> list[Outcome]:
    attempts = 0
    code, message = "Lambda.FunctionError", contract.ERRORS["Lambda.FunctionError"]
    while attempts <= retries:
        attempts += 1
        event = contract.build_event(batch, cfg.arn, cfg.source_arn, cfg.region)
        result = lambda_runner.invoke_json(spec, event)
        if not result.ok:
            code, message = "Lambda.FunctionError", contract.ERRORS["Lambda.FunctionError"]
            detail = result.payload.decode("utf-8", "replace")[:500]
            log.info("sandbox firehose %s: transform %s failed (attempt %d): %s", cfg.name, spec.name, attempts, detail)
            continue
        try:
            outcomes = contract.check_response(batch, contract.parse_payload(result.payload))
        except contract.ContractViolation as exc:
            code, message = exc.code, contract.ERRORS.get(exc.code, str(exc))
            log.info("sandbox firehose %s: transform %s broke the contract (attempt %d): %s", cfg.name, spec.name,
                     attempts, exc)
            continue
        return outcomes
    return contract.failed_batch(batch, code, message, attempts)


# --------------------------------------------------------------------------- routing
def route(cfg: StreamConfig, outcome: Outcome) -> tuple[str, str, str]:
    """(database, table, operation) of an Ok record; RowError when it cannot be routed."""
    otf = (outcome.metadata or {}).get("otfMetadata") if outcome.metadata else None
    if otf is not None and not isinstance(otf, dict):
        raise iceberg_writer.RowError(iceberg_writer.INVALID_OPERATION, "metadata.otfMetadata must be an object")
    otf = otf or {}
    db, table = otf.get("destinationDatabaseName"), otf.get("destinationTableName")
    if not db or not table:
        if len(cfg.tables) != 1:
            raise iceberg_writer.RowError(
                iceberg_writer.INVALID_TABLE_NAME,
                "The record names no destination table (metadata.otfMetadata) and the stream does not configure exactly one.",
            )
        db = db or cfg.tables[0].get("DestinationDatabaseName")
        table = table or cfg.tables[0].get("DestinationTableName")
    op = str(otf.get("operation") or "insert").lower()
    if op not in iceberg_writer.OPERATIONS:
        raise iceberg_writer.RowError(iceberg_writer.INVALID_OPERATION,
                                      f"Unknown operation '{otf.get('operation')}': use insert, update or delete.")
    if op != "insert" and cfg.append_only:
        raise iceberg_writer.RowError(iceberg_writer.INVALID_OPERATION,
                                      f"Operation '{op}' is not allowed on an AppendOnly stream.")
    return str(db), str(table), op

