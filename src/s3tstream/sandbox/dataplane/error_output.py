"""Firehose's error output: failed records as JSON lines in the stream's S3 error bucket.

Transformation failures (``processing-failed``), per
https://docs.aws.amazon.com/firehose/latest/dev/data-transformation-failure-handling.html:
``{"attemptsMade", "arrivalTimestamp", "errorCode", "errorMessage", "attemptEndingTimestamp",
"rawData" (base64 of the record as it came in), "lambdaArn"}``.

Destination failures (Iceberg): the same common fields, ``rawData`` being the record as the
transform returned it, plus the Kinesis position and the table, shaped after the documented
error record of format conversion (https://docs.aws.amazon.com/firehose/latest/dev/record-format-conversion-error-handling.html:
``sequenceNumber``, ``subSequenceNumber``, ``dataCatalogTable``). UNCONFIRMED: the exact extra
fields and the ``iceberg-failed`` output type name for the Iceberg destination.

Object keys (https://docs.aws.amazon.com/firehose/latest/dev/s3-prefixes.html):
``<evaluated prefix><suffix>``; suffix ``<stream name>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid>``.
The prefix is the table's ``S3ErrorOutputPrefix`` (destination failures) or the
``S3Configuration.ErrorOutputPrefix``; ``!{firehose:error-output-type}``,
``!{firehose:random-string}`` and ``!{timestamp:<pattern>}`` are evaluated (timestamp = the
oldest record's arrival, UTC). A prefix without any expression gets
``<error-output-type>/yyyy/MM/dd/HH/`` appended (UNCONFIRMED: that default; it mirrors the
documented ``processing-failed`` folder and the default ``yyyy/MM/dd/HH`` prefix).

Writes go straight into moto's S3 backend. A missing bucket raises ErrorOutputUnavailable: the
caller keeps the records and tries again (Firehose blocks delivery rather than drop them).
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import string
import time
import uuid
from typing import Any

PROCESSING_FAILED = "processing-failed"
ICEBERG_FAILED = "iceberg-failed"

_EXPR = re.compile(r"!\{([a-zA-Z]+):([^}]*)\}")
_JAVA_TOKENS = [("yyyy", "%Y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("mm", "%M"), ("ss", "%S")]


class ErrorOutputUnavailable(RuntimeError):
    """The error bucket cannot be written (missing bucket, bad ARN): keep the records, retry."""


def now_ms() -> int:
    return int(time.time() * 1000)


def _java_format(pattern: str, when: datetime.datetime) -> str:
    out = pattern.replace("'", "")
    for token, fmt in _JAVA_TOKENS:
        out = out.replace(token, when.strftime(fmt))
    return out


def evaluate_prefix(prefix: str | None, output_type: str, oldest_arrival_ms: int) -> str:
    when = datetime.datetime.fromtimestamp(oldest_arrival_ms / 1000, tz=datetime.timezone.utc)
    prefix = prefix or ""
    if not _EXPR.search(prefix):
        return f"{prefix}{output_type}/{when:%Y/%m/%d/%H}/"

    def sub(m: re.Match[str]) -> str:
        ns, value = m.group(1), m.group(2)
        if ns == "firehose" and value == "error-output-type":
            return output_type
        if ns == "firehose" and value == "random-string":
            return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(11))
        if ns == "timestamp":
            return _java_format(value, when)
        return m.group(0)  # partitionKeyFrom*: not used by Iceberg error output

    return _EXPR.sub(sub, prefix)


def object_key(prefix: str | None, output_type: str, stream_name: str, version: str, oldest_arrival_ms: int) -> str:
    stamp = datetime.datetime.fromtimestamp(time.time(), tz=datetime.timezone.utc)
    suffix = f"{stream_name}-{version}-{stamp:%Y-%m-%d-%H-%M-%S}-{uuid.uuid4()}"
    return evaluate_prefix(prefix, output_type, oldest_arrival_ms) + suffix


def processing_failed_record(*, raw_b64: str, arrival_ms: int, code: str, message: str, attempts: int,
                             lambda_arn: str, ended_ms: int | None = None) -> dict[str, Any]:
    return {
        "attemptsMade": attempts,
        "arrivalTimestamp": arrival_ms,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": ended_ms if ended_ms is not None else now_ms(),
        "rawData": raw_b64,
        "lambdaArn": lambda_arn,
    }


def iceberg_failed_record(*, raw_b64: str, arrival_ms: int, code: str, message: str, attempts: int,
                          sequence_number: str, subsequence_number: int, catalog_arn: str, database: str | None,
                          table: str | None, region: str, ended_ms: int | None = None) -> dict[str, Any]:
    return {
        "attemptsMade": attempts,
        "arrivalTimestamp": arrival_ms,
        "errorCode": code,
        "errorMessage": message,
        "attemptEndingTimestamp": ended_ms if ended_ms is not None else now_ms(),
        "rawData": raw_b64,
        "sequenceNumber": sequence_number,
        "subSequenceNumber": subsequence_number,
        "dataCatalogTable": {"catalogArn": catalog_arn, "databaseName": database, "tableName": table, "region": region},
    }


def bucket_from_arn(bucket_arn: str | None) -> str:
    if not bucket_arn or not bucket_arn.startswith("arn:") or ":s3:::" not in bucket_arn:
        raise ErrorOutputUnavailable(f"the error bucket ARN {bucket_arn!r} is not an S3 bucket ARN")
    return bucket_arn.split(":s3:::", 1)[1].split("/", 1)[0]


def write(account_id: str, bucket_arn: str | None, key: str, lines: list[dict[str, Any]]) -> str:
    """Write one error object (JSON lines); returns ``s3://bucket/key``."""
    from moto.s3.models import s3_backends

    bucket = bucket_from_arn(bucket_arn)
    partition = bucket_arn.split(":")[1] if bucket_arn else "aws"
    backend = s3_backends[account_id][partition]
    try:
        backend.get_bucket(bucket)
    except Exception as exc:  # noqa: BLE001 - moto's MissingBucket
        raise ErrorOutputUnavailable(f"error bucket {bucket} does not exist ({type(exc).__name__})") from None
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    backend.put_object(bucket, key, body)
    return f"s3://{bucket}/{key}"
