"""The Firehose <-> Lambda data-transformation contract, as Firehose enforces it.

Input event (Kinesis source; https://docs.aws.amazon.com/firehose/latest/dev/data-transformation.html):
``{invocationId, deliveryStreamArn, sourceKinesisStreamArn, region, records: [{recordId,
approximateArrivalTimestamp (epoch ms), data (base64), kinesisRecordMetadata: {sequenceNumber,
subsequenceNumber, partitionKey, shardId, approximateArrivalTimestamp}}]}``.

Response: ``{"records": [{recordId, result: Ok|Dropped|ProcessingFailed, data (base64),
metadata?}]}``; every input recordId exactly once
(https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-status-model.html: "Any
mismatch between the ID of the original record and the ID of the transformed record is treated
as a data transformation failure"). A response that breaks the contract fails the whole
invocation: every record of the batch goes to the error output with the invocation's error
code (https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html:
failed invocations are retried NumberOfRetries times (default 3), then "Amazon Data Firehose
then skips that batch of records", delivered to the ``processing-failed`` error output).

Error codes (errorCode of the error records; see ``ERRORS`` for the messages):
- ``Lambda.MissingRecordId`` - a recordId was not returned (code and message seen in real error
  output, e.g. a processing-failed file quoted in a public write-up).
- ``Lambda.DuplicatedRecordId``, ``Lambda.JsonProcessingException``, ``Lambda.FunctionError``,
  ``Lambda.ProcessingFailedStatus`` (a record the function marked ProcessingFailed):
  UNCONFIRMED against an AWS page (commonly reported codes; texts are ours where unknown).
- ``Lambda.FunctionNotFound``: UNCONFIRMED (code and text are the sandbox's).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import uuid
from typing import Any

OK, DROPPED, FAILED = "Ok", "Dropped", "ProcessingFailed"
RESULTS = (OK, DROPPED, FAILED)

ERRORS = {
    "Lambda.MissingRecordId": (
        "One or more record Ids were not returned. Ensure that the Lambda function returns all received record Ids."
    ),
    "Lambda.DuplicatedRecordId": (
        "Multiple records were returned with the same record Id. Ensure that the Lambda function returns "
        "unique record Ids for each record."
    ),
    "Lambda.JsonProcessingException": (
        "There was an error parsing returned records from the Lambda function. Ensure that the returned "
        "records match the expected response model."
    ),
    "Lambda.FunctionError": "The Lambda function was successfully invoked but it returned an error result.",
    "Lambda.ProcessingFailedStatus": "ProcessingFailed status set for record",
    "Lambda.FunctionNotFound": "The Lambda function configured as the processor does not exist.",
}


@dataclasses.dataclass(frozen=True)
class SourceRecord:
    """One Kinesis record as Firehose read it."""

    shard_id: str
    sequence_number: str
    subsequence_number: int
    partition_key: str
    data_b64: str
    arrival_ms: int
    record_id: str

    @property
    def size(self) -> int:
        n = len(self.data_b64)
        return max(0, n * 3 // 4 - self.data_b64[-2:].count("="))

    def data(self) -> bytes:
        return base64.b64decode(self.data_b64)


def record_id(shard_index: int, sequence_number: str, subsequence: int = 0) -> str:
    """An opaque, unique recordId (Firehose's are long digit strings; UNCONFIRMED format)."""
    return f"{int(sequence_number):056d}{shard_index:06d}{subsequence:06d}"


def build_event(records: list[SourceRecord], delivery_stream_arn: str, source_stream_arn: str, region: str) -> dict[str, Any]:
    return {
        "invocationId": str(uuid.uuid4()),
        "deliveryStreamArn": delivery_stream_arn,
        "sourceKinesisStreamArn": source_stream_arn,
        "region": region,
        "records": [
            {
                "recordId": r.record_id,
                "approximateArrivalTimestamp": r.arrival_ms,
                "data": r.data_b64,
                "kinesisRecordMetadata": {
                    "sequenceNumber": r.sequence_number,
                    "subsequenceNumber": r.subsequence_number,
                    "partitionKey": r.partition_key,
                    "shardId": r.shard_id,
                    "approximateArrivalTimestamp": r.arrival_ms,
                },
            }
            for r in records
        ],
    }


@dataclasses.dataclass
class Outcome:
    """What became of one input record after the transform."""

    record: SourceRecord
    result: str  # Ok | Dropped | ProcessingFailed (or an invocation failure)
    data: bytes | None = None  # transformed bytes (Ok)
    metadata: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 1


class ContractViolation(Exception):
    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail or ERRORS.get(code, '')}")
        self.code = code
        self.detail = detail


def check_response(records: list[SourceRecord], response: Any) -> list[Outcome]:
    """Per-record outcomes of a Lambda response; raises ContractViolation when the response
    breaks the contract (then the whole batch fails)."""
    if not isinstance(response, dict) or not isinstance(response.get("records"), list):
        raise ContractViolation("Lambda.JsonProcessingException", "the response has no records list")
    by_id: dict[str, dict[str, Any]] = {}
    for item in response["records"]:
        if not isinstance(item, dict) or not isinstance(item.get("recordId"), str):
            raise ContractViolation("Lambda.JsonProcessingException", "a returned record has no recordId")
        rid = item["recordId"]
        if rid in by_id:
            raise ContractViolation("Lambda.DuplicatedRecordId")
        if item.get("result") not in RESULTS:
            raise ContractViolation(
                "Lambda.JsonProcessingException", f"result must be one of {', '.join(RESULTS)}, not {item.get('result')!r}"
            )
        by_id[rid] = item
    wanted = {r.record_id for r in records}
    if set(by_id) != wanted:
        raise ContractViolation("Lambda.MissingRecordId")
    out: list[Outcome] = []
    for r in records:
        item = by_id[r.record_id]
        result = item["result"]
        if result == DROPPED:
            out.append(Outcome(r, DROPPED))
            continue
        if result == FAILED:
            out.append(Outcome(r, FAILED, error_code="Lambda.ProcessingFailedStatus",
                               error_message=ERRORS["Lambda.ProcessingFailedStatus"]))
            continue
        data = item.get("data")
        if not isinstance(data, str):
            raise ContractViolation("Lambda.JsonProcessingException", "an Ok record has no data")
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ContractViolation("Lambda.JsonProcessingException", "an Ok record's data is not base64") from None
        meta = item.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise ContractViolation("Lambda.JsonProcessingException", "metadata must be an object")
        out.append(Outcome(r, OK, data=decoded, metadata=meta))
    return out


def failed_batch(records: list[SourceRecord], code: str, message: str, attempts: int) -> list[Outcome]:
    return [Outcome(r, FAILED, error_code=code, error_message=message, attempts=attempts) for r in records]


def parse_payload(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        raise ContractViolation("Lambda.JsonProcessingException", "the response is not JSON") from None
