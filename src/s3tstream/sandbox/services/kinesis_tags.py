"""Kinesis CreateStream ``Tags``: moto 5.2.5 drops them (its create_stream reads only the name,
shard count and mode), while AWS applies them at creation (CreateStream API reference, Tags).
Without them a stream the tool created looks untagged, so `state recover` could not prove it is
the stack's. Here the tags are applied right after moto creates the stream."""

from __future__ import annotations

from typing import Any

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.kinesis.responses import KinesisResponse  # noqa: E402

_original = KinesisResponse.create_stream


def _create_stream(self: KinesisResponse) -> Any:
    result = _original(self)
    tags = self._get_param("Tags")
    if isinstance(tags, dict) and tags:
        self.kinesis_backend.add_tags_to_stream(stream_arn=None, stream_name=self._get_param("StreamName"), tags=tags)
    return result


if not getattr(KinesisResponse.create_stream, "_s3tstream_patched", False):
    _create_stream._s3tstream_patched = True  # type: ignore[attr-defined]
    KinesisResponse.create_stream = _create_stream  # type: ignore[method-assign]
