"""create-alarms: [alarms] config, the alarm topic's policy, and the alarms through the CLI on the
sandbox (created, idempotent, drift repaired, ALARM on failed records, removed by down)."""

from __future__ import annotations

import json

import pytest

from s3tstream.aws import policies
from s3tstream.aws.client import Identity
from s3tstream.aws.metrics import alarm_specs
from s3tstream.config import model as c
from s3tstream.errors import ConfigError
from s3tstream.sandbox import client as sandbox_client

PIPELINE = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n[firehose]\nbuffer_interval_seconds = 0\n"
COLUMNS = '{ name = "pk", type = "string", required = true }, { name = "qty", type = "long", required = true }'
ALARMS = '[alarms]\nenabled = true\nemail = "oncall@example.com"\nperiod_seconds = 60\n'
SUFFIXES = ["freshness", "failed-records", "transform-errors", "stream-throttles"]


def cfg_for(**alarms):
    return c.build({"stack": {"name": "shop"}, "alarms": alarms})


# ------------------------------------------------------------------ config
def test_alarms_are_off_by_default_and_need_someone_to_notify():
    a = cfg_for().alarms
    assert (a.enabled, a.freshness_seconds, a.failed_records, a.period_seconds) == (False, 900, 0, 300)
    with pytest.raises(ConfigError, match="email or sns_topic_arn"):
        cfg_for(enabled=True)
    with pytest.raises(ConfigError, match="alarms.email"):
        cfg_for(email="not-an-address")
    with pytest.raises(ConfigError, match="alarms.sns_topic_arn"):
        cfg_for(sns_topic_arn="arn:aws:sqs:us-east-1:123456789012:q")
    with pytest.raises(ConfigError, match="FIFO"):
        cfg_for(sns_topic_arn="arn:aws:sns:us-east-1:123456789012:t.fifo")


def test_alarm_specs_use_aws_names_and_the_configured_thresholds():
    specs = {s.suffix: s for s in alarm_specs(cfg_for(failed_records=3, freshness_seconds=600))}
    assert list(specs) == SUFFIXES
    assert (specs["freshness"].metric.namespace, specs["freshness"].metric.name, specs["freshness"].threshold) == (
        "AWS/Firehose", "DeliveryToIceberg.DataFreshness", 600.0)
    assert (specs["failed-records"].metric.name, specs["failed-records"].threshold) == ("DeliveryToIceberg.FailedRowCount", 3.0)
    assert (specs["transform-errors"].metric.namespace, specs["transform-errors"].metric.name) == ("AWS/Lambda", "Errors")
    assert specs["stream-throttles"].metric.name == "WriteProvisionedThroughputExceeded"


def test_topic_policy_lets_only_cloudwatch_publish_for_this_stacks_alarms():
    ident = Identity(account="123456789012", arn="arn:aws:iam::123456789012:user/me", user_id="x")
    doc = policies.alarm_topic_policy(cfg_for(), ident)
    [st] = doc["Statement"]
    assert st["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and st["Action"] == "sns:Publish"
    assert st["Resource"] == "arn:aws:sns:us-east-1:123456789012:s3tstream-shop-alarms"
    assert st["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:s3tstream-shop-*"},
        "StringEquals": {"aws:SourceAccount": "123456789012"}}


# ------------------------------------------------------------------ through the CLI on the sandbox
@pytest.fixture(autouse=True)
def _instant_data_plane(monkeypatch):
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")


def _alarms(cw, name):
    return {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix=f"s3tstream-{name}-")["MetricAlarms"]}


@pytest.mark.sandbox
def test_up_creates_alarms_that_fire_on_failed_records_and_down_removes_them(stack):
    stack.write(extra=PIPELINE + ALARMS, columns=COLUMNS)
    stack.cli("up")
    cw, sns = stack.client("cloudwatch"), stack.client("sns")
    alarms = _alarms(cw, stack.name)
    assert sorted(alarms) == sorted(f"s3tstream-{stack.name}-{s}" for s in SUFFIXES)
    failed = alarms[f"s3tstream-{stack.name}-failed-records"]
    topic = f"arn:aws:sns:us-east-1:123456789012:s3tstream-{stack.name}-alarms"
    assert failed["Namespace"] == "AWS/Firehose" and failed["MetricName"] == "DeliveryToIceberg.FailedRowCount"
    assert failed["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": f"{stack.name}-to-lake"}]
    assert failed["AlarmActions"] == [topic] and failed["Period"] == 60
    tags = cw.list_tags_for_resource(ResourceARN=failed["AlarmArn"])["Tags"]
    assert {"Key": "s3tstream:stack", "Value": stack.name} in tags
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "oncall@example.com")]
    policy = json.loads(sns.get_topic_attributes(TopicArn=topic)["Attributes"]["Policy"])
    assert policy["Statement"][0]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}

    # idempotent, then drift (a threshold changed by hand, the subscription removed) is repaired
    plan = stack.json("plan")["changes"]
    assert all(ch["action"] == "none" for ch in plan if ch["step"] == "create-alarms")
    cw.put_metric_alarm(**{k: failed[k] for k in ("AlarmName", "Namespace", "MetricName", "Dimensions", "Statistic",
                                                   "Period", "EvaluationPeriods", "ComparisonOperator")}, Threshold=50.0)
    sns.unsubscribe(SubscriptionArn=subs[0]["SubscriptionArn"])
    changed = {ch["name"]: ch for ch in stack.json("plan")["changes"] if ch["action"] == "update"}
    assert set(changed) == {f"s3tstream-{stack.name}-failed-records", f"s3tstream-{stack.name}-alarms"}
    stack.cli("up")
    assert _alarms(cw, stack.name)[f"s3tstream-{stack.name}-failed-records"]["Threshold"] == 0.0
    assert len(sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]) == 1

    # records that fail the transform put the failed-records alarm in ALARM
    ddb = stack.client("dynamodb")
    ddb.put_item(TableName=stack.name, Item={"pk": {"S": "ok"}, "qty": {"N": "1"}})
    ddb.put_item(TableName=stack.name, Item={"pk": {"S": "bad"}})  # no qty: the transform refuses it
    sandbox_client.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=30)
    sandbox_client.run_workers(stack.endpoint_url)  # the sandbox's alarm evaluator, now
    states = {n: a["StateValue"] for n, a in _alarms(cw, stack.name).items()}
    assert states[f"s3tstream-{stack.name}-failed-records"] == "ALARM"
    assert states[f"s3tstream-{stack.name}-transform-errors"] == "OK"  # the function ran; it refused a record
    reason = _alarms(cw, stack.name)[f"s3tstream-{stack.name}-failed-records"]["StateReason"]
    assert reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [1.0")
    alarms_check = next(ch for ch in stack.json("health", ok=False)["checks"] if ch["name"] == "alarms")
    assert alarms_check["status"] == "fail" and alarms_check["value"] == 1

    # down removes them (and the topic), and only this stack's
    stack.cli("down", "--yes", "--purge-errors")
    assert _alarms(cw, stack.name) == {}
    assert topic not in [t["TopicArn"] for t in sns.list_topics()["Topics"]]


@pytest.mark.sandbox
def test_down_keeps_an_alarm_that_lost_this_stacks_tag(stack):
    stack.write(extra=PIPELINE + ALARMS.replace('email = "oncall@example.com"',
                                                'sns_topic_arn = "arn:aws:sns:us-east-1:123456789012:theirs"'))
    stack.cli("up")
    cw = stack.client("cloudwatch")
    name = f"s3tstream-{stack.name}-freshness"
    arn = _alarms(cw, stack.name)[name]["AlarmArn"]
    assert _alarms(cw, stack.name)[name]["AlarmActions"] == ["arn:aws:sns:us-east-1:123456789012:theirs"]
    assert not [t for t in stack.client("sns").list_topics()["Topics"] if stack.name in t["TopicArn"]]
    cw.untag_resource(ResourceARN=arn, TagKeys=["s3tstream:stack", "s3tstream:stack-id"])
    doc = stack.json("down", "--yes", "--step", "create-alarms")
    kept = doc["kept"]
    assert [ch["name"] for ch in kept] == [name] and "do not name this stack" in kept[0]["detail"]
    assert list(_alarms(cw, stack.name)) == [name]
    cw.delete_alarms(AlarmNames=[name])


# ------------------------------------------------------------------ the sandbox's alarm evaluator (pure)
def _alarm(**kw):
    from types import SimpleNamespace

    from moto.cloudwatch.models import Dimension

    base = dict(comparison_operator="GreaterThanThreshold", metric_name="DeliveryToIceberg.FailedRowCount",
                namespace="AWS/Firehose", statistic="Sum", dimensions=[Dimension("DeliveryStreamName", "s")],
                period=60, evaluation_periods=2, datapoints_to_alarm=None, threshold=0.0, treat_missing_data=None)
    base.update(kw)
    return SimpleNamespace(**base)


def _datum(value, seconds_ago, now, name="DeliveryToIceberg.FailedRowCount", stream="s"):
    import datetime as dt
    from types import SimpleNamespace

    from moto.cloudwatch.models import Dimension

    return SimpleNamespace(namespace="AWS/Firehose", name=name, value=value, dimensions=[Dimension("DeliveryStreamName", stream)],
                           timestamp=now - dt.timedelta(seconds=seconds_ago))


def test_sandbox_alarm_evaluation_follows_datapoints_to_alarm_and_missing_data():
    import datetime as dt

    from s3tstream.sandbox.services.cloudwatch import evaluate

    now = dt.datetime(2026, 12, 6, 2, 0)
    both = [_datum(1, 10, now), _datum(2, 70, now)]
    assert evaluate(_alarm(), both, now)[0] == "ALARM"
    one = [_datum(1, 10, now)]  # the other period has no data
    assert evaluate(_alarm(), one, now)[0] == "OK"  # 2 of 2 needed
    assert evaluate(_alarm(datapoints_to_alarm=1), one, now)[0] == "ALARM"
    assert evaluate(_alarm(treat_missing_data="breaching"), one, now)[0] == "ALARM"
    assert evaluate(_alarm(), [], now)[0] == "INSUFFICIENT_DATA"
    assert evaluate(_alarm(treat_missing_data="notBreaching"), [], now)[0] == "OK"
    assert evaluate(_alarm(treat_missing_data="ignore"), [], now) is None
    # other streams' and other metrics' datapoints do not count; zero is not above a 0 threshold
    noise = [_datum(5, 10, now, stream="other"), _datum(5, 10, now, name="DeliveryToIceberg.SuccessfulRowCount"),
             _datum(0, 10, now), _datum(0, 70, now)]
    assert evaluate(_alarm(), noise, now)[0] == "OK"


def test_topic_delete_treats_a_topic_gone_by_hand_as_deleted_and_keeps_one_that_lost_the_tag():
    from types import SimpleNamespace

    import boto3
    from moto import mock_aws

    from s3tstream.provision.steps.alarms import AlarmTopic

    with mock_aws():
        sns = boto3.client("sns", region_name="us-east-1")
        from s3tstream.provision.resource import tag_map

        ctx = SimpleNamespace(aws=SimpleNamespace(client=lambda s: sns), names=cfg_for().names,
                              owns=lambda tags: tag_map(tags).get("s3tstream:stack") == "shop")
        gone = SimpleNamespace(id="arn:aws:sns:us-east-1:123456789012:s3tstream-shop-alarms", outputs={})
        assert AlarmTopic.delete(ctx, gone) is None  # SNS answers ResourceNotFound
        arn = sns.create_topic(Name="s3tstream-shop-alarms", Tags=[{"Key": "owner", "Value": "someone"}])["TopicArn"]
        assert "do not name this stack" in AlarmTopic.delete(ctx, SimpleNamespace(id=arn, outputs={}))
        assert [t["TopicArn"] for t in sns.list_topics()["Topics"]] == [arn]
