"""create-alarms: CloudWatch alarms on freshness, failed records, transform errors and stream
throttles ([alarms]), and the SNS topic they notify when only `email` is given.

AWS behaviour relied on:
- PutMetricAlarm creates or replaces an alarm by name (so update = put again) and takes Tags only
  at creation; TagResource adds them to an existing one
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
- CreateTopic is idempotent for the same name and attributes; an email subscription stays
  "PendingConfirmation" until the address confirms
  (https://docs.aws.amazon.com/sns/latest/api/API_Subscribe.html).
- With [alarms] disabled the step has no resources: `down --step create-alarms` (or `down`)
  removes alarms made earlier.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import is_not_found
from s3tstream.aws.metrics import AlarmSpec, alarm_specs, dimensions
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec

STACK_TAG = "s3tstream:stack"


def _tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def topic_arn(ctx: Ctx) -> str:
    """Where the alarms notify: the user's topic, else the stack's own."""
    return ctx.cfg.alarms.sns_topic_arn or policies.alarm_topic_arn(ctx.cfg, ctx.aws.identity())


class AlarmTopic(ResourceSpec):
    """The stack's SNS topic with its email subscription (only when no sns_topic_arn is given)."""

    kind = "sns-topic"

    @property
    def name(self) -> str:
        return self.ctx.names.alarm_topic

    def _sns(self) -> Any:
        return self.ctx.aws.client("sns")

    def _policy(self) -> dict[str, Any]:
        return policies.alarm_topic_policy(self.ctx.cfg, self.ctx.aws.identity())

    def _email_subscribed(self, arn: str) -> bool:
        email = self.ctx.cfg.alarms.email
        for page in self._sns().get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
            if any(s.get("Protocol") == "email" and s.get("Endpoint") == email for s in page.get("Subscriptions", [])):
                return True
        return False

    def observe(self) -> Observed:
        arn = policies.alarm_topic_arn(self.ctx.cfg, self.ctx.aws.identity())
        try:
            attrs = self._sns().get_topic_attributes(TopicArn=arn)["Attributes"]
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        obs = Observed(exists=True, id=arn, outputs={"arn": arn})
        tags = self._sns().list_tags_for_resource(ResourceArn=arn).get("Tags", [])
        self.ctx.judge(obs, tags)  # its stack id (or, made before ids, its stack name)
        have = json.loads(attrs.get("Policy") or "{}")
        if policies.normalize(have) != policies.normalize(self._policy()):
            obs.drift.append(Drift("topic policy", fmt="topic policy"))
        if not self._email_subscribed(arn):
            obs.drift.append(Drift("email subscription", new=self.ctx.cfg.alarms.email, fmt="email subscription {new}"))
        return obs

    def create(self) -> dict[str, Any]:
        sns = self._sns()
        arn = sns.create_topic(
            Name=self.name,
            Attributes={"Policy": json.dumps(self._policy())},
            Tags=[{"Key": k, "Value": v} for k, v in self.ctx.tags().items()],
        )["TopicArn"]
        self._subscribe(arn)
        return {"id": arn, "arn": arn}

    def _subscribe(self, arn: str) -> None:
        if not self._email_subscribed(arn):
            self._sns().subscribe(TopicArn=arn, Protocol="email", Endpoint=self.ctx.cfg.alarms.email)
            self.ctx.progress(f"subscribed {self.ctx.cfg.alarms.email} to {self.name}: confirm the email AWS sends")

    def update(self, observed: Observed) -> dict[str, Any]:
        arn = observed.id or policies.alarm_topic_arn(self.ctx.cfg, self.ctx.aws.identity())
        if observed.drifted("topic policy"):
            self._sns().set_topic_attributes(TopicArn=arn, AttributeName="Policy", AttributeValue=json.dumps(self._policy()))
        self._subscribe(arn)
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        sns = ctx.aws.client("sns")
        arn = record.id or record.outputs.get("arn")
        try:
            tags = _tag_dict(sns.list_tags_for_resource(ResourceArn=arn).get("Tags", []))
        except ClientError as e:
            if is_not_found(e):
                return None
            raise
        if not ctx.owns(tags):
            return f"kept SNS topic {arn}: its live tags do not name this stack"
        sns.delete_topic(TopicArn=arn)  # its subscriptions go with it
        return None


class MetricAlarm(ResourceSpec):
    kind = "cloudwatch-alarm"

    def __init__(self, ctx: Ctx, spec: AlarmSpec) -> None:
        super().__init__(ctx)
        self.spec = spec

    @property
    def name(self) -> str:
        return f"{self.ctx.names.alarm_prefix}{self.spec.suffix}"

    def _cw(self) -> Any:
        return self.ctx.aws.client("cloudwatch")

    def wanted(self) -> dict[str, Any]:
        """PutMetricAlarm's arguments, without Tags."""
        a, m = self.ctx.cfg.alarms, self.spec.metric
        topic = topic_arn(self.ctx)
        return {
            "AlarmName": self.name,
            "AlarmDescription": self.spec.description,
            "ActionsEnabled": True,
            "AlarmActions": [topic],
            "OKActions": [topic],  # "who hears" includes hearing that it is over
            "Namespace": m.namespace,
            "MetricName": m.name,
            "Dimensions": dimensions(self.ctx.cfg, m),
            "Statistic": m.stat,
            "Period": a.period_seconds,
            "EvaluationPeriods": a.evaluation_periods,
            "DatapointsToAlarm": a.evaluation_periods,
            "Threshold": self.spec.threshold,
            "ComparisonOperator": "GreaterThanThreshold",
            # No datapoint means no traffic (the metrics are published with activity): not a breach.
            "TreatMissingData": "notBreaching",
        }

    def observe(self) -> Observed:
        found = self._cw().describe_alarms(AlarmNames=[self.name], AlarmTypes=["MetricAlarm"]).get("MetricAlarms", [])
        if not found:
            return Observed(exists=False)
        have = found[0]
        arn = have["AlarmArn"]
        obs = Observed(exists=True, id=arn, outputs={"arn": arn})
        tags = self._cw().list_tags_for_resource(ResourceARN=arn).get("Tags", [])
        self.ctx.judge(obs, tags)  # its stack id (or, made before ids, its stack name)
        want = self.wanted()
        for key, value in want.items():
            got = have.get(key)
            if key == "DatapointsToAlarm" and got is None:
                # UNCONFIRMED: whether DescribeAlarms returns DatapointsToAlarm when it equals
                # EvaluationPeriods; read as equal when absent
                got = have.get("EvaluationPeriods")
            if key in ("AlarmActions", "OKActions", "Dimensions"):
                same = sorted(map(repr, got or [])) == sorted(map(repr, value))
            elif key == "Threshold":
                same = got is not None and float(got) == float(value)
            else:
                same = got == value
            if not same:
                obs.drift.append(Drift(key, got, value, fmt="{field} {old!r} -> {new!r}"))
        return obs

    def create(self) -> dict[str, Any]:
        self._cw().put_metric_alarm(**self.wanted(), Tags=[{"Key": k, "Value": v} for k, v in self.ctx.tags().items()])
        arn = policies.alarm_arn(self.ctx.cfg, self.ctx.aws.identity(), self.name)
        return {"id": arn, "arn": arn}

    def update(self, observed: Observed) -> dict[str, Any]:
        self._cw().put_metric_alarm(**self.wanted())
        if observed.owned is False:
            arn = observed.id or policies.alarm_arn(self.ctx.cfg, self.ctx.aws.identity(), self.name)
            self._cw().tag_resource(ResourceARN=arn, Tags=[{"Key": k, "Value": v} for k, v in self.ctx.tags().items()])
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        cw = ctx.aws.client("cloudwatch")
        found = cw.describe_alarms(AlarmNames=[record.name]).get("MetricAlarms", [])
        if not found:
            return None
        tags = _tag_dict(cw.list_tags_for_resource(ResourceARN=found[0]["AlarmArn"]).get("Tags", []))
        if not ctx.owns(tags):
            return f"kept alarm {record.name}: its live tags do not name this stack"
        cw.delete_alarms(AlarmNames=[record.name])
        return None


def resources(ctx: Ctx) -> list[ResourceSpec]:
    a = ctx.cfg.alarms
    if not a.enabled:
        return []
    out: list[ResourceSpec] = []
    if a.email and not a.sns_topic_arn:
        out.append(AlarmTopic(ctx))
    out += [MetricAlarm(ctx, spec) for spec in alarm_specs(ctx.cfg)]
    return out
