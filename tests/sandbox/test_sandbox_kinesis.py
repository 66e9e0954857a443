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


def test_stream_tags_are_kept_like_aws(client, name):
    """CreateStream's Tags, Add/Remove/ListTagsForStream (ExclusiveStartTagKey is exclusive) and the
    ARN-based Tag/Untag/ListTagsForResource, through the real server (moto dropped them)."""
    import pytest
    from botocore.exceptions import ClientError

    k = client("kinesis")
    stream = name("tagged")
    k.create_stream(StreamName=stream, ShardCount=1, Tags={"s3tstream:stack": "demo", "team": "data"})
    arn = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    try:
        assert k.list_tags_for_stream(StreamName=stream)["Tags"] == [
            {"Key": "s3tstream:stack", "Value": "demo"}, {"Key": "team", "Value": "data"}]
        k.add_tags_to_stream(StreamName=stream, Tags={"a": "1", "team": "lake"})
        page = k.list_tags_for_stream(StreamARN=arn, Limit=2)
        assert page["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "s3tstream:stack", "Value": "demo"}]
        assert page["HasMoreTags"] is True
        rest = k.list_tags_for_stream(StreamName=stream, ExclusiveStartTagKey="s3tstream:stack")
        assert rest == {**rest, "Tags": [{"Key": "team", "Value": "lake"}], "HasMoreTags": False}
        k.remove_tags_from_stream(StreamName=stream, TagKeys=["a"])
        k.tag_resource(ResourceARN=arn, Tags={"b": "2"})
        k.untag_resource(ResourceARN=arn, TagKeys=["team"])
        assert k.list_tags_for_resource(ResourceARN=arn)["Tags"] == [
            {"Key": "b", "Value": "2"}, {"Key": "s3tstream:stack", "Value": "demo"}]
        with pytest.raises(ClientError) as e:
            k.list_tags_for_resource(ResourceARN=arn + "-gone")
        assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    finally:
        k.delete_stream(StreamName=stream)
