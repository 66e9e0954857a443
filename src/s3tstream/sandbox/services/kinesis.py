"""Kinesis: lossless sequence numbers under concurrent PutRecord/PutRecords.

moto's Shard.put_record numbers a record "last + 1" without a lock, so concurrent PutRecords
calls (parallel backfill segments, or a put-item racing the DynamoDB change records) gave two
records the same sequence number and one was lost (49 of 10,000 in a 4-thread test). It is
replaced by the same numbering under a lock, in O(1) (moto rebuilt the list of keys per
record). Found while testing the backfill.

moto 5.2.5 internals relied on: Shard.records (an OrderedDict sequence number -> Record, in
insertion order), Record(partition_key, data, sequence_number, explicit_hash_key).
"""

from __future__ import annotations

import threading

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.kinesis.models import Record, Shard  # noqa: E402

_shard_lock = threading.Lock()


def _put_record(self: Shard, partition_key: str, data: str, explicit_hash_key: str) -> str:
    with _shard_lock:
        last = next(reversed(self.records)) if self.records else 0
        seq = last + 1
        self.records[seq] = Record(partition_key, data, seq, explicit_hash_key)
    return str(seq)


Shard.put_record = _put_record  # type: ignore[method-assign]


# CreateStream takes Tags on AWS (botocore's CreateStreamInput); moto 5.2.5 drops them, so a
# stream would look untagged (not this stack's) to `down`.
from moto.kinesis.responses import KinesisResponse  # noqa: E402

_moto_create_stream = KinesisResponse.create_stream


def _create_stream(self: KinesisResponse):  # type: ignore[no-untyped-def]
    out = _moto_create_stream(self)
    tags = self._get_param("Tags")
    if tags:
        self.kinesis_backend.add_tags_to_stream(None, self._get_param("StreamName"), tags)
    return out


KinesisResponse.create_stream = _create_stream  # type: ignore[method-assign]
