"""Refused before any change, with nothing written (issue 13 items 7-8): a Region botocore does
not know, and an SSE-KMS table bucket whose key policy shuts out S3 Tables maintenance."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3tstream.aws import policies

LF_OK = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"


@pytest.mark.sandbox
def test_a_region_typo_exits_2_naming_the_key_and_writes_no_state(stack: Any, calls: Any) -> None:
    # the Lake Formation opt-ins: the last plan must not depend on what earlier tests left in the
    # account (a worker that ran this file alone has no integration and no admin: plan exits 1)
    stack.write(extra=LF_OK)
    stack.config_path.write_text(stack.config_path.read_text().replace("[stack]\n", '[stack]\nregion = "us-east-7"\n'))
    for command in ("up", "plan", "status"):
        r = stack.cli(command, ok=False)
        assert r.exit_code == 2 and "stack.region" in r.output and "us-east-7" in r.output, r.output
    assert not stack.state_path.exists()
    assert calls.calls == []
    stack.config_path.write_text(stack.config_path.read_text().replace('region = "us-east-7"\n', ""))
    stack.cli("plan")  # fixed: nothing recorded the typo


def _key(stack: Any, allow_maintenance: bool) -> str:
    kms = stack.client("kms")
    account = "123456789012"
    statements = [{"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                   "Action": "kms:*", "Resource": "*"}]
    if allow_maintenance:
        statements.append(policies.maintenance_key_statement())
    return kms.create_key(Policy=json.dumps({"Version": "2012-10-17", "Statement": statements}))["KeyMetadata"]["Arn"]


@pytest.mark.sandbox
def test_a_kms_key_without_the_maintenance_grant_is_refused_by_preflight_with_no_state(stack: Any, calls: Any) -> None:
    key = _key(stack, allow_maintenance=False)
    stack.write(extra=f'kms_key_arn = "{key}"\n{LF_OK}')
    calls.clear()
    r = stack.cli("up", ok=False)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "maintenance.s3tables.amazonaws.com" in text and "put-key-policy" in text, r.output
    assert calls.mutating() == []
    assert not stack.state_path.exists()

    doc = stack.json("doctor", ok=None)
    check = next(c for c in doc["checks"] if c["check"] == "table KMS key")
    assert check["ok"] is False and "AllowS3TablesMaintenance" in check["fix"]


@pytest.mark.sandbox
def test_a_kms_key_that_allows_maintenance_passes_and_the_integration_role_may_use_it(stack: Any) -> None:
    from s3tstream.config import model as config
    from s3tstream.provision import preflight
    from s3tstream.aws.client import Aws

    key = _key(stack, allow_maintenance=True)
    stack.write(extra=f'kms_key_arn = "{key}"\n{LF_OK}')
    cfg = config.load(stack.config_path, environ={})
    check = preflight._table_kms_key(cfg, Aws(cfg))
    assert check.ok, check
    ident = Aws(cfg).identity()
    st = policies.lf_integration_policy(cfg, ident)["Statement"][0]
    assert st["Sid"] == "TableBucketKmsKey" and st["Resource"] == [key]
    assert set(st["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}


@pytest.mark.sandbox
def test_the_table_bucket_quota_hint_names_aws_support(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config
    from s3tstream.provision import preflight

    monkeypatch.setattr(preflight, "TABLE_BUCKET_QUOTA", 0)
    cfg = config.load(stack.config_path, environ={})
    check = preflight._table_bucket_quota(cfg, Aws(cfg))
    assert not check.ok and "AWS Support" in check.fix and "Service Quotas" not in check.fix
