"""A CloudWatch Logs group (Firehose's delivery logs, the transform's logs)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import error_code, is_not_found, unless_gone
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec
from s3tstream.provision.steps.delivery.common import ident_of


class LogGroup(ResourceSpec):
    kind = "log-group"
    taggable = True

    def __init__(self, ctx: Ctx, group: str) -> None:
        super().__init__(ctx)
        self._group = group

    @property
    def name(self) -> str:
        return self._group

    def _logs(self) -> Any:
        return self.ctx.aws.client("logs")

    def _find(self) -> dict[str, Any] | None:
        r = self._logs().describe_log_groups(logGroupNamePrefix=self.name)
        return next((g for g in r.get("logGroups", []) if g["logGroupName"] == self.name), None)

    def observe(self) -> Observed:
        g = self._find()
        if g is None:
            return Observed(exists=False)
        arn = policies.log_group_arn(self.ctx.cfg, ident_of(self.ctx), self.name)
        obs = Observed(exists=True, id=arn, outputs={"arn": arn})
        tags = self._logs().list_tags_for_resource(resourceArn=arn).get("tags", {})
        self.ctx.judge(obs, tags)
        want = self.ctx.cfg.firehose.log_retention_days
        if g.get("retentionInDays") != want:
            obs.drift.append(Drift("retention", g.get("retentionInDays") or "never expire", want, "{field} {old} -> {new} days"))
        return obs

    def create(self) -> dict[str, Any]:
        logs = self._logs()
        try:
            logs.create_log_group(logGroupName=self.name, tags=self.ctx.tags())
        except ClientError as e:
            if error_code(e) != "ResourceAlreadyExistsException":
                raise
        logs.put_retention_policy(logGroupName=self.name, retentionInDays=self.ctx.cfg.firehose.log_retention_days)
        arn = policies.log_group_arn(self.ctx.cfg, ident_of(self.ctx), self.name)
        return {"id": arn, "arn": arn}

    def update(self, observed: Observed) -> dict[str, Any]:
        self._logs().put_retention_policy(logGroupName=self.name, retentionInDays=self.ctx.cfg.firehose.log_retention_days)
        return {}

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        arn = record.id or policies.log_group_arn(ctx.cfg, ident_of(ctx), record.name)
        ctx.aws.client("logs").tag_resource(resourceArn=arn, tags=tags)

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        arn = record.id or policies.log_group_arn(ctx.cfg, ident_of(ctx), record.name)
        got = unless_gone(lambda: ctx.aws.client("logs").list_tags_for_resource(resourceArn=arn))
        return None if got is None else dict(got.get("tags", {}))

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        try:
            ctx.aws.client("logs").delete_log_group(logGroupName=record.name)
        except ClientError as e:
            if not is_not_found(e):
                raise

