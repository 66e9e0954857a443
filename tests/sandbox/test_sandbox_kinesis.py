"""ext/kinesis.py: moto's Shard.put_record numbered records without a lock; concurrent
PutRecords (parallel backfill segments) lost records to duplicate sequence numbers."""

from __future__ import annotations

import sys
import threading


def test_load_all_installs_the_locked_put_record():
    from moto.kinesis.models import Shard

    from s3tstream.sandbox import services as ext
    from s3tstream.sandbox.services import kinesis as kinesis_ext

    ext.load_all()
    assert Shard.put_record is kinesis_ext._put_record


def test_concurrent_put_records_get_distinct_sequence_numbers():
    from moto.kinesis.models import Shard

    from s3tstream.sandbox.services import kinesis as kinesis_ext

    shard = Shard(0, 0, 2**128)
    threads, per = 4, 2000

    def put() -> None:
        for _ in range(per):
            kinesis_ext._put_record(shard, "pk", "ZGF0YQ==", None)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible (moto's unlocked version lost ~6%)
    try:
        workers = [threading.Thread(target=put) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(old)
    assert len(shard.records) == threads * per
    assert list(shard.records) == list(range(1, threads * per + 1))
