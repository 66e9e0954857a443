"""The lake: table schema, the Iceberg catalog over S3 Tables, query engines."""
