"""The sandbox's data plane: what moto stores but never runs.

Modules (imported on demand; ``ext/lambda_invoke.py`` loads ``delivery`` when a server starts):

- ``delivery``       Firehose: Kinesis source -> buffer -> Lambda transform -> Iceberg table or
                     error bucket; the ``firehose-delivery`` worker and the control routes
                     ``POST /_sandbox/firehose/flush``, ``POST /_sandbox/firehose/drain``,
                     ``GET|POST /_sandbox/firehose/status`` (client helpers in
                     ``s3tstream.sandbox.client``: ``firehose_flush``, ``firehose_wait_drained``,
                     ``firehose_status``).
- ``streams``        the delivery streams served and their settings; ``stream_state`` what is kept
                     per stream (checkpoints, buffer, the flush in progress, totals).
- ``kinesis_source`` reading a stream's Kinesis source into its buffer.
- ``processing``     the processor Lambda over a flush, and the routing of Ok records to tables.
- ``table_write``    one table's share of a flush: grants, row conversion, one commit.
- ``buffering``      checkpoints (per stream and shard) and BufferingHints buffers.
- ``contract``       the Firehose -> Lambda event and the checks on the Lambda's response.
- ``lambda_runner``  runs a function from its deployed zip in a warm worker process (also used by
                     Lambda ``Invoke``, ``ext/lambda_invoke.py``).
- ``iceberg_writer`` JSON rows -> Iceberg rows; insert/update/delete by unique keys with PyIceberg
                     (ordered delivery: copy-on-write).
- ``chaos``          chaos delivery (``--delivery chaos``): duplicates, held-back records, shuffled
                     batches; ``row_delta`` its merge-on-read commits (data + equality delete files).
- ``error_output``   Firehose's error records and object keys in the error bucket.
- ``timescale``      ``S3TSTREAM_SANDBOX_TIME_SCALE`` (default 1/15; 0 in tests): buffering
                     intervals and retry windows run that much faster than on AWS.

Athena (``services/athena.py`` + ``athena/engine.py``) reads the same Iceberg tables, deletes
applied by ``s3tstream.lake.merge_on_read``.
"""
