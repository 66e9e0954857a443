"""The CloudWatch metrics of the pipeline, exactly as AWS names them: one catalogue for
`s3tstream health` (data/health) and the alarms of `create-alarms` (provision/steps/alarms.py).

Pure data: no boto3. Each metric carries the page that documents it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3tstream.config.model import Config

# Firehose: "Monitoring with CloudWatch metrics" (namespace AWS/Firehose, dimension
# DeliveryStreamName): https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html
FIREHOSE_DOC = "https://docs.aws.amazon.com/firehose/latest/dev/monitoring-with-cloudwatch-metrics.html"
# The Iceberg destination's metrics (DeliveryToIceberg.*):
# https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-metric.html
ICEBERG_DOC = "https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-metric.html"
# Kinesis Data Streams, stream-level metrics (namespace AWS/Kinesis, dimension StreamName):
# https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html
KINESIS_DOC = "https://docs.aws.amazon.com/streams/latest/dev/monitoring-with-cloudwatch.html"
# Lambda function metrics (namespace AWS/Lambda, dimension FunctionName):
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
LAMBDA_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html"


@dataclass(frozen=True)
class Metric:
    key: str  # our short name (JSON keys, dashboard rows)
    namespace: str
    name: str  # MetricName as AWS publishes it
    dimension: str  # the one dimension we query by
    stat: str  # the statistic that answers our question
    unit: str
    doc: str
    label: str


METRICS: tuple[Metric, ...] = (
    # "The age (from getting into Firehose to now) of the earliest record in Firehose. Any record
    # earlier than this age has been delivered to Apache Iceberg Tables." Seconds. (ICEBERG_DOC)
    Metric("freshness", "AWS/Firehose", "DeliveryToIceberg.DataFreshness", "DeliveryStreamName", "Maximum", "Seconds",
           ICEBERG_DOC, "Firehose data freshness"),
    # Rows Firehose tried to deliver / delivered / sent to the S3 error bucket. (ICEBERG_DOC)
    Metric("incoming_rows", "AWS/Firehose", "DeliveryToIceberg.IncomingRowCount", "DeliveryStreamName", "Sum", "Count",
           ICEBERG_DOC, "rows to deliver"),
    Metric("delivered_rows", "AWS/Firehose", "DeliveryToIceberg.SuccessfulRowCount", "DeliveryStreamName", "Sum", "Count",
           ICEBERG_DOC, "rows delivered"),
    Metric("failed_rows", "AWS/Firehose", "DeliveryToIceberg.FailedRowCount", "DeliveryStreamName", "Sum", "Count",
           ICEBERG_DOC, "rows failed"),
    # Kinesis source of a Firehose stream: records read, and how far the last read record is
    # behind the newest record in the stream (milliseconds). (FIREHOSE_DOC, "Data ingestion
    # through Kinesis Data Streams")
    Metric("records_read", "AWS/Firehose", "DataReadFromKinesisStream.Records", "DeliveryStreamName", "Sum", "Count",
           FIREHOSE_DOC, "records read from Kinesis"),
    Metric("millis_behind", "AWS/Firehose", "KinesisMillisBehindLatest", "DeliveryStreamName", "Maximum", "Milliseconds",
           FIREHOSE_DOC, "Firehose behind the stream"),
    # Kinesis stream: "The age of the last record in all GetRecords calls made against a Kinesis
    # stream" (ms); records put; records rejected by throttling. (KINESIS_DOC)
    Metric("iterator_age", "AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName", "Maximum", "Milliseconds",
           KINESIS_DOC, "stream iterator age"),
    Metric("incoming_records", "AWS/Kinesis", "IncomingRecords", "StreamName", "Sum", "Count",
           KINESIS_DOC, "records into the stream"),
    Metric("write_throttles", "AWS/Kinesis", "WriteProvisionedThroughputExceeded", "StreamName", "Sum", "Count",
           KINESIS_DOC, "stream write throttles"),
    # The transform: invocations that failed with a function error, throttled invocation
    # requests, and time in the function (ms; its Maximum is compared with the timeout). (LAMBDA_DOC)
    Metric("lambda_invocations", "AWS/Lambda", "Invocations", "FunctionName", "Sum", "Count",
           LAMBDA_DOC, "transform invocations"),
    Metric("lambda_errors", "AWS/Lambda", "Errors", "FunctionName", "Sum", "Count", LAMBDA_DOC, "transform errors"),
    Metric("lambda_throttles", "AWS/Lambda", "Throttles", "FunctionName", "Sum", "Count", LAMBDA_DOC, "transform throttles"),
    Metric("lambda_duration", "AWS/Lambda", "Duration", "FunctionName", "Maximum", "Milliseconds",
           LAMBDA_DOC, "transform duration (max)"),
)
BY_KEY = {m.key: m for m in METRICS}


def dimension_value(cfg: "Config", metric: Metric) -> str:
    """The dimension value that names this stack's resource."""
    n = cfg.names
    return {"DeliveryStreamName": n.firehose, "StreamName": n.stream, "FunctionName": n.transform_function}[metric.dimension]


def dimensions(cfg: "Config", metric: Metric) -> list[dict[str, str]]:
    return [{"Name": metric.dimension, "Value": dimension_value(cfg, metric)}]


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm of `create-alarms`: the metric, its statistic over a period, the threshold."""

    suffix: str  # the alarm is named <alarm_prefix><suffix>
    metric: Metric
    threshold: float
    description: str


def alarm_specs(cfg: "Config") -> list[AlarmSpec]:
    a = cfg.alarms
    return [
        AlarmSpec("freshness", BY_KEY["freshness"], float(a.freshness_seconds),
                  f"Firehose {cfg.names.firehose}: the oldest record not yet in the lake is older than "
                  f"{a.freshness_seconds}s. Run `s3tstream health`."),
        # UNCONFIRMED: that AWS counts records the transform marked ProcessingFailed in
        # DeliveryToIceberg.FailedRowCount ("failed rows delivered to S3 backup bucket": they are
        # delivered there). The health check also counts the error bucket's objects.
        AlarmSpec("failed-records", BY_KEY["failed_rows"], float(a.failed_records),
                  f"Firehose {cfg.names.firehose}: more than {a.failed_records} row(s) went to the error bucket. "
                  "Run `s3tstream errors`."),
        AlarmSpec("transform-errors", BY_KEY["lambda_errors"], float(a.transform_errors),
                  f"Lambda {cfg.names.transform_function}: more than {a.transform_errors} invocation error(s). "
                  f"Read /aws/lambda/{cfg.names.transform_function}."),
        AlarmSpec("stream-throttles", BY_KEY["write_throttles"], float(a.stream_throttles),
                  f"Kinesis {cfg.names.stream}: more than {a.stream_throttles} write(s) throttled. "
                  "Add shards or use ON_DEMAND ([stream] mode)."),
    ]
