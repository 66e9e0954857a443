"""Audit against AWS's own references: every parameter the audited calls send is validated by
botocore's Stubber against the service model, and every s3tables condition key in a policy is
one the Service Authorization Reference lists for each action of its statement."""

from __future__ import annotations

from typing import Any
from unittest.mock import ANY

import pytest

from s3tstream.config import model as config
from s3tstream.aws import policies
from s3tstream.aws.client import Identity

ACCOUNT = "111122223333"
IDENT = Identity(account=ACCOUNT, arn=f"arn:aws:iam::{ACCOUNT}:user/me", user_id="x")

# Service Authorization Reference, Amazon S3 Tables (list_amazons3tables.html), "Actions" table:
# the s3tables:* condition keys each action supports (aws:* keys left out).
S3TABLES_ACTION_KEYS: dict[str, set[str]] = {
    "s3tables:GetTableBucket": set(),
    "s3tables:ListTableBuckets": set(),
    "s3tables:GetNamespace": {"s3tables:namespace"},
    "s3tables:ListNamespaces": set(),
    "s3tables:CreateNamespace": set(),
    "s3tables:DeleteNamespace": {"s3tables:namespace"},
    "s3tables:ListTables": {"s3tables:namespace"},
    "s3tables:CreateTable": {"s3tables:namespace", "s3tables:KMSKeyArn", "s3tables:SSEAlgorithm"},
    **{f"s3tables:{a}": {"s3tables:namespace", "s3tables:tableName"} for a in (
        "GetTable", "DeleteTable", "RenameTable", "GetTableMetadataLocation", "UpdateTableMetadataLocation",
        "GetTableData", "PutTableData", "GetTableMaintenanceJobStatus")},
}


def _cfg() -> Any:
    return config.build({"stack": {"name": "orders", "region": "us-east-1"},
                         "lakeformation": {"readers": [f"arn:aws:iam::{ACCOUNT}:role/analyst"]}})


def _docs() -> list[dict[str, Any]]:
    c = _cfg()
    return [policies.firehose_lake_policy(c, IDENT, policies.MODE_IAM), policies.reader_policy(c, IDENT),
            policies.lf_integration_policy(c, IDENT)]


def test_s3tables_condition_keys_are_supported_by_every_action_of_their_statement() -> None:
    seen = 0
    for doc in _docs():
        for st in doc["Statement"]:
            actions = [a for a in policies_as_list(st["Action"]) if a.startswith("s3tables:")]
            keys = {k for op in (st.get("Condition") or {}).values() for k in op if k.startswith("s3tables:")}
            for a in actions:
                assert a in S3TABLES_ACTION_KEYS, f"{a}: add its condition keys from the reference"
                # StringEquals on a key the request does not carry denies: every action must carry it
                assert keys <= S3TABLES_ACTION_KEYS[a], f"{st.get('Sid')}: {a} does not support {keys - S3TABLES_ACTION_KEYS[a]}"
                seen += 1
    assert seen


def test_get_namespace_is_pinned_to_the_stacks_namespace() -> None:
    for doc in _docs()[:2]:
        sts = [st for st in doc["Statement"] if "s3tables:GetNamespace" in policies_as_list(st["Action"])]
        assert sts and all(st["Condition"] == {"StringEquals": {"s3tables:namespace": "orders"}} for st in sts)


def policies_as_list(x: Any) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _s3() -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return s3, Stubber(s3)


def test_state_access_denied_names_list_bucket_which_turns_a_missing_state_into_403() -> None:
    """GetObject of a missing key without s3:ListBucket answers 403 AccessDenied (S3 API
    reference, GetObject): the hint must name ListBucket or a new stack looks unreadable."""
    from s3tstream.aws import remote_state
    from s3tstream.errors import StateError

    s3, stub = _s3()
    stub.add_client_error("get_object", "AccessDenied", http_status_code=403,
                          expected_params={"Bucket": "b", "Key": "p/orders.json"})
    with stub, pytest.raises(StateError) as e:
        remote_state.S3Backend(s3, "s3://b/p/", "orders").read()
    assert "s3:ListBucket" in e.value.hint


def test_state_conditional_calls_match_the_s3_model() -> None:
    """Stubber validates each call's parameters against botocore's S3 model (IfNoneMatch,
    IfMatch on PutObject; IfMatch on DeleteObject)."""
    from s3tstream.aws import remote_state

    s3, stub = _s3()
    stub.add_response("put_object", {"ETag": '"l1"'}, {"Bucket": "b", "Key": "p/orders.lock", "Body": ANY,
                                                       "ContentType": "application/json", "IfNoneMatch": "*"})
    stub.add_response("put_object", {"ETag": '"s1"'}, {"Bucket": "b", "Key": "p/orders.json", "Body": b"{}",
                                                       "ContentType": "application/json", "IfNoneMatch": "*"})
    stub.add_response("put_object", {"ETag": '"s2"'}, {"Bucket": "b", "Key": "p/orders.json", "Body": b"{}",
                                                       "ContentType": "application/json", "IfMatch": '"s1"'})
    stub.add_response("delete_object", {}, {"Bucket": "b", "Key": "p/orders.lock", "IfMatch": '"l1"'})
    with stub:
        b = remote_state.S3Backend(s3, "s3://b/p/", "orders")
        b.lock("orders", "up")
        b.write(b"{}")
        b.write(b"{}")
        b.unlock()
    stub.assert_no_pending_responses()


class _FakeAws:
    """ctx.aws with stubbed clients (Stubber validates parameters against the models)."""

    def __init__(self, **clients: Any) -> None:
        self.clients = clients

    def client(self, name: str) -> Any:
        return self.clients[name]


def _client(service: str) -> tuple[Any, Any]:
    import boto3
    from botocore.stub import Stubber

    c = boto3.client(service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return c, Stubber(c)


def _ours(tags: Any) -> bool:
    """The ownership rule of a stack named orders made before stack ids (Ctx.owns)."""
    from s3tstream.provision.resource import tag_map

    return tag_map(tags).get("s3tstream:stack") == "orders"


def _ctx(aws: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(aws=aws, cfg=_cfg(), names=_cfg().names, owns=_ours,
                           judge=lambda obs, tags: (setattr(obs, "owned", _ours(tags)), obs)[1])


def test_recover_reads_every_page_of_the_tables_tags() -> None:
    from s3tstream.provision import recover

    ddb, stub = _client("dynamodb")
    arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders"
    stub.add_response("describe_table", {"Table": {"TableArn": arn}}, {"TableName": "orders"})
    stub.add_response("list_tags_of_resource", {"Tags": [{"Key": "team", "Value": "a"}], "NextToken": "t1"},
                      {"ResourceArn": arn})
    stub.add_response("list_tags_of_resource", {"Tags": [{"Key": "s3tstream:stack", "Value": "orders"}]},
                      {"ResourceArn": arn, "NextToken": "t1"})
    with stub:
        tags = recover._tags_of_table(_ctx(_FakeAws(dynamodb=ddb)), "orders")
    assert tags == {"team": "a", "s3tstream:stack": "orders"}


def test_recover_stops_on_a_tag_it_may_not_read_rather_than_calling_it_foreign() -> None:
    from s3tstream.errors import AwsError
    from s3tstream.provision import recover

    iam, stub = _client("iam")
    stub.add_client_error("list_role_tags", "AccessDenied", http_status_code=403)
    stub.add_client_error("list_role_tags", "NoSuchEntity", http_status_code=404)
    with stub:
        ctx = _ctx(_FakeAws(iam=iam))
        with pytest.raises(AwsError) as e:
            recover._tags_of_role(ctx, "s3tstream-orders-firehose")
        assert "AccessDenied" in e.value.message
        assert recover._tags_of_role(ctx, "s3tstream-orders-firehose") == {}  # no such role: no tags


def test_down_deletes_the_firehose_role_only_while_its_live_tags_say_it_is_this_stacks() -> None:
    from types import SimpleNamespace

    from s3tstream.provision.steps.grants import FirehoseRole

    role = "s3tstream-orders-firehose"
    record = SimpleNamespace(name=role, outputs={})
    iam, stub = _client("iam")
    # someone else's role under the recorded name: kept, nothing deleted (Stubber refuses any other call)
    stub.add_response("list_role_tags", {"Tags": [{"Key": "team", "Value": "other"}]}, {"RoleName": role})
    # this stack's: its policies, then the role
    stub.add_response("list_role_tags", {"Tags": [{"Key": "s3tstream:stack", "Value": "orders"}]}, {"RoleName": role})
    stub.add_response("list_role_policies", {"PolicyNames": ["s3tstream-lake"]}, {"RoleName": role})
    stub.add_response("delete_role_policy", {}, {"RoleName": role, "PolicyName": "s3tstream-lake"})
    stub.add_response("list_attached_role_policies", {"AttachedPolicies": []}, {"RoleName": role})
    stub.add_response("delete_role", {}, {"RoleName": role})
    with stub:
        ctx = _ctx(_FakeAws(iam=iam))
        kept = FirehoseRole.delete(ctx, record)
        assert kept and "kept IAM role" in kept and "do not name this stack" in kept
        assert FirehoseRole.delete(ctx, record) is None
    stub.assert_no_pending_responses()


class _AwsWithIdentity(_FakeAws):
    region = "us-east-1"

    def identity(self) -> Identity:
        return IDENT

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT}:{resource}"


def _alarm_cfg() -> Any:
    return config.build({"stack": {"name": "orders", "region": "us-east-1"},
                         "alarms": {"enabled": True, "email": "oncall@example.com"}})


def test_alarm_topic_and_metric_alarm_calls_match_the_sns_and_cloudwatch_models() -> None:
    from types import SimpleNamespace

    from s3tstream.aws.metrics import alarm_specs
    from s3tstream.provision.steps.alarms import AlarmTopic, MetricAlarm

    cfg = _alarm_cfg()
    cw, cw_stub = _client("cloudwatch")
    sns, sns_stub = _client("sns")
    aws = _AwsWithIdentity(cloudwatch=cw, sns=sns)
    ctx = SimpleNamespace(cfg=cfg, aws=aws, names=cfg.names, tags=lambda: {"s3tstream:stack": "orders"},
                          progress=lambda m: None)
    topic = policies.alarm_topic_arn(cfg, IDENT)
    sns_stub.add_response("create_topic", {"TopicArn": topic})
    sns_stub.add_response("list_subscriptions_by_topic", {"Subscriptions": []})
    sns_stub.add_response("subscribe", {"SubscriptionArn": "pending confirmation"},
                          {"TopicArn": topic, "Protocol": "email", "Endpoint": "oncall@example.com"})
    sns_stub.add_response("set_topic_attributes", {})
    specs = alarm_specs(cfg)
    for _ in specs:
        cw_stub.add_response("put_metric_alarm", {})
    with sns_stub, cw_stub:
        t = AlarmTopic(ctx)
        t.create()
        t._sns().set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue="{}")
        for spec in specs:
            MetricAlarm(ctx, spec).create()  # ParamValidationError on any name or type the model refuses
    cw_stub.assert_no_pending_responses()
    sns_stub.assert_no_pending_responses()


def test_health_reads_match_the_cloudwatch_and_s3tables_models() -> None:
    import datetime as dt

    from s3tstream.aws.metrics import METRICS
    from s3tstream.data.health.collect import alarm_states, maintenance_status, metric_series

    cfg = _alarm_cfg()
    cw, cw_stub = _client("cloudwatch")
    s3t, s3t_stub = _client("s3tables")
    end = dt.datetime(2026, 12, 6, 3, 0, tzinfo=dt.timezone.utc)
    start = end - dt.timedelta(hours=1)
    t = dt.datetime(2026, 12, 6, 2, 30, tzinfo=dt.timezone.utc)
    cw_stub.add_response("get_metric_data", {"MetricDataResults": [
        {"Id": "m0", "Label": "freshness", "Timestamps": [t], "Values": [42.0], "StatusCode": "Complete"}],
        "NextToken": "n"})
    cw_stub.add_response("get_metric_data", {"MetricDataResults": []})
    cw_stub.add_response("describe_alarms", {"MetricAlarms": [{"AlarmName": "s3tstream-orders-freshness",
                                                              "StateValue": "OK"}]})
    s3t_stub.add_response("get_table_maintenance_job_status", {
        "tableARN": f"arn:aws:s3tables:us-east-1:{ACCOUNT}:bucket/orders-lake/table/abc",
        "status": {"icebergCompaction": {"status": "Failed", "lastRunTimestamp": t, "failureMessage": "kms"}}},
        {"tableBucketARN": f"arn:aws:s3tables:us-east-1:{ACCOUNT}:bucket/orders-lake", "namespace": "orders",
         "name": "orders"})
    with cw_stub, s3t_stub:
        series = metric_series(cw, cfg, start, end, 60)
        states = alarm_states(cw, cfg)
        jobs = maintenance_status(cfg, _AwsWithIdentity(s3tables=s3t))
    assert METRICS[0].key == "freshness" and series["freshness"] == [(t.timestamp(), 42.0)]
    assert states == [{"name": "s3tstream-orders-freshness", "state": "OK", "reason": ""}]
    assert jobs["icebergCompaction"]["status"] == "Failed"


def test_integration_catalog_input_matches_the_glue_model() -> None:
    glue, stub = _client("glue")
    c = _cfg()
    for mode in (policies.MODE_LF, policies.MODE_IAM):
        stub.add_response("create_catalog", {}, {"Name": "s3tablescatalog",
                                                 "CatalogInput": policies.glue_integration_catalog_input(c, IDENT, mode)})
    with stub:
        for mode in (policies.MODE_LF, policies.MODE_IAM):
            glue.create_catalog(Name="s3tablescatalog", CatalogInput=policies.glue_integration_catalog_input(c, IDENT, mode))
    stub.assert_no_pending_responses()


def test_iam_mode_refuses_a_reader_of_another_account_before_any_change() -> None:
    """ReaderPolicy addresses a reader by name only (PutRolePolicy takes RoleName): a reader of
    another account would have put the policy on this account's same-named role."""
    from types import SimpleNamespace

    from s3tstream.provision import lakeformation as lfm
    from s3tstream.provision.steps.grants import ReaderPolicy

    other = "arn:aws:iam::999999999999:role/analyst"
    cfg = config.build({"stack": {"name": "orders", "region": "us-east-1"},
                        "lakeformation": {"integration_mode": "iam",
                                          "readers": [f"arn:aws:iam::{ACCOUNT}:role/team/analyst", other]}})
    assert lfm.foreign_readers(cfg, IDENT) == [other]
    ctx = SimpleNamespace(cfg=cfg, aws=_AwsWithIdentity(), names=cfg.names)  # no client: no AWS call
    obs = ReaderPolicy(ctx, other).observe()
    assert obs.conflict and "another account" in obs.conflict
    glue, stub = _client("glue")
    stub.add_response("get_catalog", {"Catalog": {"Name": "s3tablescatalog", "CreateTableDefaultPermissions": [
        {"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}]}},
        {"CatalogId": "s3tablescatalog"})
    with stub:
        check = lfm.admin_check(cfg, _AwsWithIdentity(glue=glue))  # preflight: `up` exits 2 on it
    assert not check.ok and other in check.detail and "another account" in check.detail


def test_stream_ownership_reads_all_of_a_streams_tags_in_one_page() -> None:
    """ListTagsForStream pages by Limit (1-50, default undocumented): a stack tag beyond the first
    page would make this stack's stream look foreign. 50 is the most tags a stream can carry."""
    from types import SimpleNamespace

    from s3tstream.provision.steps.stream import KinesisStream

    cfg = _cfg()
    k, stub = _client("kinesis")
    arn = f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{cfg.names.stream}"
    stub.add_response("describe_stream_summary", {"StreamDescriptionSummary": {
        "StreamName": cfg.names.stream, "StreamARN": arn, "StreamStatus": "ACTIVE", "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": 0, "EnhancedMonitoring": [], "OpenShardCount": 1,
        "StreamModeDetails": {"StreamMode": "ON_DEMAND"}}})
    stub.add_response("list_tags_for_stream", {"Tags": [{"Key": "s3tstream:stack", "Value": "orders"}],
                                               "HasMoreTags": False},
                      {"StreamName": cfg.names.stream, "Limit": 50})
    with stub:
        obs = KinesisStream(_ctx(_AwsWithIdentity(kinesis=k))).observe()
    assert obs.owned is True


def test_a_source_tables_live_tags_are_read_from_every_page() -> None:
    """`down` deletes the table only when its live tags name this stack (engine.not_ours, tested
    through the CLI in test_stack_identity); ListTagsOfResource pages (NextToken), so the stack's
    tag on the second page is found."""
    from types import SimpleNamespace

    from s3tstream.provision.steps.source import SourceTable

    record = SimpleNamespace(name="orders", outputs={})
    arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders"
    ddb, stub = _client("dynamodb")
    stub.add_response("describe_table", {"Table": {"TableArn": arn}}, {"TableName": "orders"})
    stub.add_response("list_tags_of_resource", {"Tags": [], "NextToken": "p2"}, {"ResourceArn": arn})
    stub.add_response("list_tags_of_resource", {"Tags": [{"Key": "s3tstream:stack", "Value": "orders"}]},
                      {"ResourceArn": arn, "NextToken": "p2"})
    stub.add_client_error("describe_table", "ResourceNotFoundException", http_status_code=400)
    ctx = _ctx(_AwsWithIdentity(dynamodb=ddb))
    with stub:
        assert SourceTable.live_tags(ctx, record) == {"s3tstream:stack": "orders"}
        assert SourceTable.live_tags(ctx, record) is None  # gone: delete() treats that as done
    stub.assert_no_pending_responses()


def _gone(fn: Any) -> None:
    from botocore.exceptions import ClientError

    try:
        fn()
    except ClientError:
        return
    raise AssertionError("still there")


def test_a_streams_live_tags_are_read_in_one_page_of_50() -> None:
    from types import SimpleNamespace

    from s3tstream.provision.steps.stream import KinesisStream

    k, stub = _client("kinesis")
    stub.add_response("list_tags_for_stream", {"Tags": [{"Key": "team", "Value": "other"}], "HasMoreTags": False},
                      {"StreamName": "orders-changes", "Limit": 50})
    stub.add_client_error("list_tags_for_stream", "ResourceNotFoundException", http_status_code=400)
    ctx = _ctx(_AwsWithIdentity(kinesis=k))
    rec = SimpleNamespace(name="orders-changes", outputs={})
    with stub:
        tags = KinesisStream.live_tags(ctx, rec)
        assert tags == {"team": "other"} and not _ours(tags)  # engine.not_ours keeps such a stream
        assert KinesisStream.live_tags(ctx, rec) is None  # gone already
    stub.assert_no_pending_responses()


def test_unless_gone_answers_none_only_for_a_resource_that_does_not_exist() -> None:
    """The one read of a resource that may be gone: its answer, None on not-found, any other error raised."""
    from botocore.exceptions import ClientError

    from s3tstream.aws.client import unless_gone

    k, stub = _client("kinesis")
    stub.add_response("list_tags_for_stream", {"Tags": [], "HasMoreTags": False}, {"StreamName": "s"})
    stub.add_client_error("list_tags_for_stream", "ResourceNotFoundException", http_status_code=400)
    stub.add_client_error("list_tags_for_stream", "AccessDeniedException", http_status_code=400)
    with stub:
        assert unless_gone(lambda: k.list_tags_for_stream(StreamName="s")) == {"Tags": [], "HasMoreTags": False}
        assert unless_gone(lambda: k.list_tags_for_stream(StreamName="s")) is None
        with pytest.raises(ClientError):
            unless_gone(lambda: k.list_tags_for_stream(StreamName="s"))
    stub.assert_no_pending_responses()
