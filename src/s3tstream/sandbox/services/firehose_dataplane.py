"""Registers the Firehose data plane (worker and /_sandbox/firehose/... routes): reading Kinesis,
running the deployed transform, writing the Iceberg tables, error output.
See s3tstream.sandbox.dataplane.delivery."""

from s3tstream.sandbox.dataplane import delivery  # noqa: F401 - importing registers it
