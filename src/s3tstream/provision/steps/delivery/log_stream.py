"""Firehose's delivery log stream inside its log group."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws.client import error_code, is_not_found
from s3tstream.provision.resource import Ctx, Observed, ResourceSpec
from s3tstream.provision.steps.delivery.common import recorded_owned
from s3tstream.provision.steps.delivery.log_group import LogGroup


class LogStream(ResourceSpec):
    """Firehose's delivery log stream; named '<group>:<stream>'. Streams take no tags: it is
    ours when its group is."""

    kind = "log-stream"

    def __init__(self, ctx: Ctx, group: str, stream: str) -> None:
        super().__init__(ctx)
        self.group, self.stream = group, stream

    @property
    def name(self) -> str:
        return f"{self.group}:{self.stream}"

    def observe(self) -> Observed:
        logs = self.ctx.aws.client("logs")
        try:
            r = logs.describe_log_streams(logGroupName=self.group, logStreamNamePrefix=self.stream)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        if not any(s["logStreamName"] == self.stream for s in r.get("logStreams", [])):
            return Observed(exists=False)
        obs = Observed(exists=True, id=self.name, outputs={"group": self.group, "stream": self.stream})
        obs.owned = recorded_owned(self.ctx, LogGroup.kind, self.group)
        return obs

    def create(self) -> dict[str, Any]:
        try:
            self.ctx.aws.client("logs").create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as e:
            if error_code(e) != "ResourceAlreadyExistsException":
                raise
        return {"id": self.name, "group": self.group, "stream": self.stream}

    @classmethod
    def owner(cls, ctx: Ctx, record: Any) -> tuple[str, str] | None:
        return (LogGroup.kind, record.outputs.get("group") or record.name.rsplit(":", 1)[0])

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        group = record.outputs.get("group") or record.name.rsplit(":", 1)[0]
        stream = record.outputs.get("stream") or record.name.rsplit(":", 1)[1]
        try:
            ctx.aws.client("logs").delete_log_stream(logGroupName=group, logStreamName=stream)
        except ClientError as e:
            if not is_not_found(e):
                raise

