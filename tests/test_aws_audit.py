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


def _ctx(aws: Any) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(aws=aws, cfg=_cfg(), names=_cfg().names)


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
