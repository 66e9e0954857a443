"""backfill: bring the items that existed before the stream into the lake.

Two strategies, both refused (exit 2) unless the table's Kinesis streaming destination is ACTIVE
on the stack's stream and the Firehose stream is ACTIVE (``checks``): every change after the
snapshot then reaches the lake through the stream, so nothing falls between snapshot and stream.

``scan`` (default below ``backfill.scan_threshold_items``; ``scan``): a parallel Scan
(``segments``), read at a limited rate (``ratelimit``: a token bucket, ``max_read_share`` of a
provisioned table's read capacity charged with the ConsumedCapacity each page reports, or
``items_per_second`` on an on-demand table). Each item goes to the Kinesis stream as an INSERT
change record with eventSource "s3tstream:backfill" (``records``; sent by ``data.changes``: 500
records / 5 MiB a call, failed entries retried, a record over Kinesis' limit reported by key and
not sent), so it takes the transform and upsert path of every other change; in changelog mode
the transform writes it with ``_op = 'backfill'``. Each segment reads its next page while it
sends the current one; Scan items and GetRecords records are taken as wire JSON before
botocore's parse (``wire``).

Checkpoints (``jobs``): in the stack's state file under ``jobs.backfill``, written atomically
after every page that Kinesis accepted: per segment the LastEvaluatedKey and the counts. A rerun
continues from them; ``--restart`` starts over, ``--abort`` gives up (``cleanup``). A completed
backfill leaves a record (phase ``done``): a later `backfill` says so and sends nothing unless
``--restart``. The stack lock is held while a backfill runs, and ``down`` removes what an
interrupted run left (``cleanup.remove_leftovers``).

Ordering (``catchup``). Each backfill record's ApproximateCreationDateTime is the time its page
was read minus CLOCK_SKEW_US, so any change after the read is newer. In changelog mode the lake's
current view orders by ``_event_time``, which makes the result exact. Upsert mode applies
operations in delivery order, so a snapshot record sent after a newer change to the same item
would win: the catch-up reads the stream from the backfill's start, collects the keys DynamoDB
changed meanwhile, reads them again (consistent BatchGetItem) and sends them again (INSERT, or
REMOVE when gone), repeating for keys changed again while it ran.

``export`` (large tables; ``export``, ``export_sql``): ExportTableToPointInTime to S3
(point-in-time recovery required: ``--enable-pitr`` turns it on, otherwise exit 2), waited on
with DescribeExport; then a Glue database and external table owned by the stack over the
export's data files, and one Athena statement through the ``s3tablescatalog/<bucket>`` catalog:
upsert ``MERGE INTO ... WHEN NOT MATCHED THEN INSERT`` (a key already in the lake came through
the stream and is at least as new), changelog ``INSERT INTO`` with ``_op = 'backfill'``. Then the
catch-up (upsert) from the export time, then the Glue table, database and export files are
removed (the export files are kept while a checkpoint refers to them, so a rerun does not export
again).
"""

from s3tstream.data.backfill.cleanup import abort, leftovers, remove_leftovers
from s3tstream.data.backfill.run import STRATEGIES, Result, run

__all__ = ["STRATEGIES", "Result", "abort", "leftovers", "remove_leftovers", "run"]
