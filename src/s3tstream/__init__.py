"""s3tstream: DynamoDB changes as Apache Iceberg tables on Amazon S3 Tables."""

__version__ = "0.1.0"
