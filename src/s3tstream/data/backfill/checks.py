"""What must hold before a backfill sends anything: the stream is an ACTIVE Kinesis streaming
destination of the table, and the Firehose stream is ACTIVE (else exit 2, nothing sent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import is_not_found, translate
from s3tstream.errors import UsageError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config


def check_destination(cfg: "Config", aws: "Aws") -> str:
    """Exit 2 unless the stack's stream is an ACTIVE Kinesis streaming destination of the table."""
    table = cfg.names.source_table
    stream_arn = aws.arn("kinesis", f"stream/{cfg.names.stream}")
    try:
        r = aws.client("dynamodb").describe_kinesis_streaming_destination(TableName=table)
    except ClientError as e:
        if is_not_found(e):
            raise UsageError(f"the source table {table} does not exist", "run `s3tstream up` first") from None
        raise translate(e, f"reading the Kinesis streaming destination of {table}") from None
    except BotoCoreError as e:
        raise translate(e, f"reading the Kinesis streaming destination of {table}") from None
    dests = r.get("KinesisDataStreamDestinations", [])
    ours = next((d for d in dests if d.get("StreamArn") == stream_arn), None)
    status = ours.get("DestinationStatus") if ours else None
    if status in ("ACTIVE", "UPDATING"):
        return ours.get("ApproximateCreationDateTimePrecision") or "MILLISECOND"
    other = next((d for d in dests if d.get("DestinationStatus") == "ACTIVE"), None)
    if other is not None:
        raise UsageError(
            f"table {table} streams to {other['StreamArn']}, not to the stack's stream {cfg.names.stream}",
            "set stream.name to that stream, or disable that destination and run `s3tstream up`",
        )
    what = f"is {status}" if status else "is not enabled"
    raise UsageError(
        f"refusing to backfill: the Kinesis streaming destination of table {table} to stream {cfg.names.stream} {what}; "
        "changes made between the snapshot and the stream would be lost",
        "run `s3tstream up` (step create-stream) and wait until it is ACTIVE, then run the backfill again",
    )


def check_firehose(cfg: "Config", aws: "Aws") -> None:
    name = cfg.names.firehose
    try:
        d = aws.client("firehose").describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    except ClientError as e:
        if is_not_found(e):
            raise UsageError(f"refusing to backfill: the Firehose stream {name} does not exist, so nothing would "
                             "carry the records to the lake", "run `s3tstream up` first") from None
        raise translate(e, f"reading the Firehose stream {name}") from None
    except BotoCoreError as e:
        raise translate(e, f"reading the Firehose stream {name}") from None
    if d.get("DeliveryStreamStatus") != "ACTIVE":
        raise UsageError(f"refusing to backfill: the Firehose stream {name} is {d.get('DeliveryStreamStatus')}",
                         "run `s3tstream up` and wait until it is ACTIVE")


def describe_table(cfg: "Config", aws: "Aws") -> dict[str, Any]:
    table = cfg.names.source_table
    try:
        return aws.client("dynamodb").describe_table(TableName=table)["Table"]
    except ClientError as e:
        if is_not_found(e):
            raise UsageError(f"the source table {table} does not exist", "run `s3tstream up` first") from None
        raise translate(e, f"describing the source table {table}") from None
    except BotoCoreError as e:
        raise translate(e, f"describing the source table {table}") from None

