"""policies.py: no wildcard actions, scoped resources (each exception listed with its reason),
trust policies with aws:SourceAccount, the partition from the caller's ARN."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3tstream.config import model as config
from s3tstream.provision import lakeformation
from s3tstream.aws import policies
from s3tstream.aws.client import Identity

AWS = Identity(account="111122223333", arn="arn:aws:sts::111122223333:assumed-role/Admin/me", user_id="AID")
CN = Identity(account="444455556666", arn="arn:aws-cn:iam::444455556666:user/ops", user_id="AID")

# The only wildcard resources allowed, per action (the reason lives in policies.WILDCARD_RESOURCES).
ALLOWED_WILDCARDS = {
    ("lakeformation:GetDataAccess", "*"),
    ("s3tables:ListTableBuckets", "*"),
}


def cfg(**lf: Any) -> config.Config:
    return config.build({
        "stack": {"name": "orders", "region": "eu-west-1"},
        "table": {"columns": [{"name": "pk", "type": "string", "required": True}]},
        "lakeformation": lf,
    })


def all_documents(c: config.Config, ident: Identity) -> dict[str, dict[str, Any]]:
    return {
        "firehose_lake": policies.firehose_lake_policy(c, ident),
        "firehose_delivery": policies.firehose_delivery_policy(c, ident, "orders-err-bucket",
                                                               stream_kms_key_arn=f"arn:{ident.partition}:kms:eu-west-1:{ident.account}:key/abc"),
        "transform": policies.transform_policy(c, ident),
        "lf_integration": policies.lf_integration_policy(c, ident),
    }


def trusts(c: config.Config, ident: Identity) -> dict[str, dict[str, Any]]:
    return {
        "firehose": policies.firehose_trust(c, ident),
        "transform": policies.transform_trust(c, ident),
        "lf_integration": policies.lf_integration_trust(c, ident),
    }


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


@pytest.mark.parametrize("ident", [AWS, CN], ids=["aws", "aws-cn"])
def test_no_wildcard_actions_and_scoped_resources(ident: Identity) -> None:
    c = cfg()
    for name, doc in all_documents(c, ident).items():
        json.dumps(doc)
        assert doc["Version"] == "2012-10-17"
        for st in doc["Statement"]:
            assert st["Effect"] == "Allow"
            for action in as_list(st["Action"]):
                assert "*" not in action, f"{name}: wildcard action {action}"
                assert ":" in action
            for res in as_list(st["Resource"]):
                if res == "*":
                    assert all((a, "*") in ALLOWED_WILDCARDS for a in as_list(st["Action"])), f"{name}: {st}"
                    assert all(a in policies.WILDCARD_RESOURCES for a in as_list(st["Action"]))
                    continue
                assert res.startswith(f"arn:{ident.partition}:"), f"{name}: {res}"
                if res.endswith("*"):
                    # wildcard tails only: versions/aliases of our function, streams of our log group,
                    # objects under our error prefix, and every table bucket for the LF integration
                    allowed_tails = (
                        f"function:{c.names.transform_function}:*",
                        f"log-group:{c.names.transform_log_group}:log-stream:*",
                        f":::orders-err-bucket/{c.firehose.error_prefix}*",
                        ":bucket/*", ":bucket/*/table/*",
                    )
                    assert res.endswith(allowed_tails), f"{name}: unexpected wildcard resource {res}"
                    if res.endswith((":bucket/*", ":bucket/*/table/*")):
                        assert name == "lf_integration" and "lf-integration:bucket/*" in policies.WILDCARD_RESOURCES


@pytest.mark.parametrize("ident", [AWS, CN], ids=["aws", "aws-cn"])
def test_partition_comes_from_the_identity(ident: Identity) -> None:
    c = cfg(readers=[f"arn:{ident.partition}:iam::{ident.account}:role/Analyst"])
    blob = json.dumps([all_documents(c, ident), trusts(c, ident)])
    other = "aws-cn" if ident.partition == "aws" else "aws"
    assert f"arn:{other}:" not in blob
    assert f"arn:{ident.partition}:" in blob
    assert policies.glue_catalog_arn(c, ident) == f"arn:{ident.partition}:glue:eu-west-1:{ident.account}:catalog/s3tablescatalog/orders-lake"
    assert policies.firehose_role_arn(c, ident) == f"arn:{ident.partition}:iam::{ident.account}:role/s3tstream-orders-firehose"
    assert policies.table_bucket_arn(c, ident).startswith(f"arn:{ident.partition}:s3tables:eu-west-1:")


@pytest.mark.parametrize("ident", [AWS, CN], ids=["aws", "aws-cn"])
def test_trust_policies_carry_source_account(ident: Identity) -> None:
    expected = {"firehose": "firehose.amazonaws.com", "transform": "lambda.amazonaws.com",
                "lf_integration": "lakeformation.amazonaws.com"}
    for name, doc in trusts(cfg(), ident).items():
        (st,) = doc["Statement"]
        assert st["Principal"] == {"Service": expected[name]}
        assert st["Condition"] == {"StringEquals": {"aws:SourceAccount": ident.account}}
        assert "sts:AssumeRole" in as_list(st["Action"])
    lf = trusts(cfg(), ident)["lf_integration"]["Statement"][0]["Action"]
    assert set(lf) == {"sts:AssumeRole", "sts:SetContext", "sts:SetSourceIdentity"}


def test_firehose_lake_policy_targets_the_stack_table() -> None:
    doc = policies.firehose_lake_policy(cfg(), AWS)
    glue = doc["Statement"][0]
    assert set(glue["Action"]) == {"glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"}
    assert glue["Resource"] == [
        "arn:aws:glue:eu-west-1:111122223333:catalog",
        "arn:aws:glue:eu-west-1:111122223333:catalog/s3tablescatalog",
        "arn:aws:glue:eu-west-1:111122223333:catalog/s3tablescatalog/orders-lake",
        "arn:aws:glue:eu-west-1:111122223333:database/s3tablescatalog/orders-lake/orders",
        "arn:aws:glue:eu-west-1:111122223333:table/s3tablescatalog/orders-lake/orders/orders",
    ]
    assert doc["Statement"][1] == {"Sid": "LakeFormationDataAccess", "Effect": "Allow",
                                   "Action": ["lakeformation:GetDataAccess"], "Resource": "*"}
    assert len(doc["Statement"]) == 2  # no KMS statement without a KMS key
    kms = config.build({"stack": {"name": "orders"}, "table": {
        "kms_key_arn": "arn:aws:kms:us-east-1:111122223333:key/1234-abcd"}})
    st = policies.firehose_lake_policy(kms, AWS)["Statement"][-1]
    assert st["Resource"] == ["arn:aws:kms:us-east-1:111122223333:key/1234-abcd"]


def test_delivery_policy_scopes() -> None:
    c = cfg()
    doc = policies.firehose_delivery_policy(c, AWS, "orders-err-bucket")
    res = {st["Sid"]: st["Resource"] for st in doc["Statement"]}
    assert res["ReadSourceStream"] == ["arn:aws:kinesis:eu-west-1:111122223333:stream/orders-changes"]
    assert res["ErrorBucket"] == ["arn:aws:s3:::orders-err-bucket"]
    assert res["ErrorObjects"] == ["arn:aws:s3:::orders-err-bucket/errors/*"]
    assert res["DeliveryLogs"] == [
        "arn:aws:logs:eu-west-1:111122223333:log-group:/aws/kinesisfirehose/orders-to-lake:log-stream:IcebergDelivery"]
    assert "StreamKmsKey" not in res


def test_transform_policy_only_its_log_group() -> None:
    doc = policies.transform_policy(cfg(), AWS)
    resources = [r for st in doc["Statement"] for r in st["Resource"]]
    assert all(r.startswith("arn:aws:logs:eu-west-1:111122223333:log-group:/aws/lambda/orders-transform") for r in resources)


def test_lf_grants() -> None:
    c = cfg(readers=["arn:aws:iam::111122223333:role/Analyst"])
    grants = policies.lf_grants(c, AWS)
    role = "arn:aws:iam::111122223333:role/s3tstream-orders-firehose"
    assert [(g.principal, g.resource, g.permissions) for g in grants] == [
        (role, {"Database": {"CatalogId": "111122223333:s3tablescatalog/orders-lake", "Name": "orders"}}, ("DESCRIBE",)),
        (role, {"Table": {"CatalogId": "111122223333:s3tablescatalog/orders-lake", "DatabaseName": "orders",
                          "Name": "orders"}}, ("SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE")),
        ("arn:aws:iam::111122223333:role/Analyst",
         {"Table": {"CatalogId": "111122223333:s3tablescatalog/orders-lake", "DatabaseName": "orders",
                    "Name": "orders"}}, ("SELECT", "DESCRIBE")),
    ]
    assert grants[1].request() == {
        "Principal": {"DataLakePrincipalIdentifier": role}, "Resource": grants[1].resource,
        "Permissions": ["SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE"]}
    assert policies.lf_grants(cfg(firehose_table_permissions="all"), AWS)[1].permissions == ("ALL",)


def test_integration_catalog_input() -> None:
    assert policies.glue_integration_catalog_input(cfg(), CN) == {
        "FederatedCatalog": {"Identifier": "arn:aws-cn:s3tables:eu-west-1:444455556666:bucket/*",
                             "ConnectionName": "aws:s3tables"},
        "CreateDatabaseDefaultPermissions": [], "CreateTableDefaultPermissions": [],
        "AllowFullTableExternalDataAccess": "True",
    }


def test_caller_principal_for_assumed_role_is_the_role() -> None:
    assert lakeformation.principal_for(AWS) == "arn:aws:iam::111122223333:role/Admin"
    assert lakeformation.principal_for(CN) == "arn:aws-cn:iam::444455556666:user/ops"
    settings = {"DataLakeAdmins": [{"DataLakePrincipalIdentifier": "arn:aws:iam::1:role/Other"}], "Parameters": {"x": "1"}}
    out = lakeformation.with_admin(settings, "arn:aws:iam::1:role/Me")
    assert lakeformation.admins(out) == ["arn:aws:iam::1:role/Other", "arn:aws:iam::1:role/Me"]
    assert out["Parameters"] == {"x": "1"}  # the rest of the document is kept
    assert lakeformation.with_admin(out, "arn:aws:iam::1:role/Me") == out
