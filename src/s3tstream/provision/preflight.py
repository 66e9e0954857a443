"""Read-only checks run before `up` and shown by `doctor`: credentials, Region, quotas, admin."""

from __future__ import annotations

import json
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import ACCESS, Aws, error_code, is_not_found, translate
from s3tstream.config.model import UNSUPPORTED_REGIONS, Config
from s3tstream.errors import S3tError, UsageError
from s3tstream.provision.check import Check

# Default quotas: 10 table buckets per Region (raised through AWS Support), 50 on-demand
# streams per account (aws-notes).
TABLE_BUCKET_QUOTA = 10
ON_DEMAND_STREAM_QUOTA = 50


def _credentials(cfg: Config, aws: Aws) -> Check:
    try:
        ident = aws.identity()
    except S3tError as e:
        return Check("credentials", False, e.message, e.hint)
    return Check("credentials", True, f"{ident.arn} (account {ident.account})")


def _region(cfg: Config, aws: Aws) -> Check:
    r = cfg.stack.region
    if r in UNSUPPORTED_REGIONS:
        return Check("region", False, f"{r} has no Firehose Iceberg destination or S3 Tables", "set stack.region to a supported Region")
    firehose = set(aws.session.get_available_regions("firehose"))
    if firehose and r not in firehose:
        return Check("region", False, f"Firehose is not offered in {r}", "set stack.region to a Region with Firehose")
    return Check("region", True, f"{r}: S3 Tables and the Firehose Iceberg destination are offered")


def _table_bucket_quota(cfg: Config, aws: Aws) -> Check:
    s3t = aws.client("s3tables")
    names: list[str] = []
    token = None
    while True:
        kw = {"continuationToken": token} if token else {}
        page = s3t.list_table_buckets(**kw)
        names += [b["name"] for b in page.get("tableBuckets", [])]
        token = page.get("continuationToken")
        if not token:
            break
    mine = cfg.names.table_bucket
    if mine in names or len(names) < TABLE_BUCKET_QUOTA:
        return Check("table bucket quota", True, f"{len(names)} of {TABLE_BUCKET_QUOTA} table buckets in use")
    return Check(
        "table bucket quota", False, f"{len(names)} of {TABLE_BUCKET_QUOTA} table buckets in use; up would create one more",
        # aws-notes: table bucket quota increases go through AWS Support, not Service Quotas
        "delete an unused table bucket, or ask AWS Support (a Support case, service limit increase for "
        "Amazon S3 Tables) to raise the quota",
    )


def _stream_quota(cfg: Config, aws: Aws) -> Check:
    if cfg.stream.mode != "ON_DEMAND":
        return Check("on-demand stream quota", True, "stream is PROVISIONED", skipped=True)
    k = aws.client("kinesis")
    summaries = []
    for page in k.get_paginator("list_streams").paginate():
        summaries += page.get("StreamSummaries", [])
    on_demand = [s for s in summaries if s.get("StreamModeDetails", {}).get("StreamMode") == "ON_DEMAND"]
    if any(s["StreamName"] == cfg.names.stream for s in summaries) or len(on_demand) < ON_DEMAND_STREAM_QUOTA:
        return Check("on-demand stream quota", True, f"{len(on_demand)} of {ON_DEMAND_STREAM_QUOTA} on-demand streams in use")
    return Check(
        "on-demand stream quota", False, f"{len(on_demand)} of {ON_DEMAND_STREAM_QUOTA} on-demand streams in use",
        "use stream.mode = PROVISIONED, delete a stream, or ask for a quota increase",
    )


def _table_kms_key(cfg: Config, aws: Aws) -> Check:
    """An SSE-KMS table bucket: the key policy must let S3 Tables maintenance use the key, or
    table creation fails (aws-notes, S3 guide "Permission requirements for S3 Tables SSE-KMS")."""
    key = cfg.table.kms_key_arn
    if not key:
        return Check("table KMS key", True, "table bucket uses SSE-S3 (AES256)", skipped=True)
    try:
        doc = json.loads(aws.client("kms").get_key_policy(KeyId=key, PolicyName="default")["Policy"])
    except ClientError as e:
        if is_not_found(e):
            return Check("table KMS key", False, f"no KMS key {key}", "fix table.kms_key_arn (a key in this account and Region)")
        raise
    if policies.key_policy_allows_maintenance(doc):
        return Check("table KMS key", True, f"{key}: its key policy lets {policies.S3TABLES_MAINTENANCE} use it")
    return Check(
        "table KMS key", False,
        f"the key policy of {key} does not allow {policies.S3TABLES_MAINTENANCE} "
        f"{' and '.join(policies.MAINTENANCE_KMS_ACTIONS)}, so S3 Tables cannot create or maintain the table",
        "add this statement to the key policy (aws kms put-key-policy): "
        + json.dumps(policies.maintenance_key_statement(), separators=(",", ":")),
    )


def _lf_admin(cfg: Config, aws: Aws) -> Check:
    from s3tstream.provision.lakeformation import admin_check

    return admin_check(cfg, aws)


CHECKS: list[Callable[[Config, Aws], Check]] = [_credentials, _region, _table_bucket_quota, _stream_quota,
                                                _table_kms_key, _lf_admin]


def run_checks(cfg: Config, aws: Aws) -> list[Check]:
    out = []
    for fn in CHECKS:
        if out and not out[0].ok:  # nothing else can run without credentials
            break
        try:
            out.append(fn(cfg, aws))
        except (ClientError, BotoCoreError) as e:
            name = fn.__name__.strip("_").replace("_", " ")
            if isinstance(e, ClientError) and error_code(e) in ACCESS:
                out.append(Check(name, False, f"could not check: {error_code(e)}: {e}",
                                 "grant the read permission named, or ignore"))
            else:  # not a permission: the endpoint or network (translate says which and what to do)
                err = translate(e, f"checking {name}", aws.endpoint_url)
                out.append(Check(name, False, f"could not check: {err.message}", err.hint))
    return out


def require(cfg: Config, aws: Aws) -> list[Check]:
    checks = run_checks(cfg, aws)
    bad = [c for c in checks if not c.ok]
    if bad:
        # one line per failed check with its own fix (hints joined on one line read as one)
        raise UsageError(
            "preflight failed:\n" + "\n".join(f"  {c.name}: {c.detail}" + (f"\n    fix: {c.fix}" if c.fix else "")
                                               for c in bad),
            "fix each check above, then run the command again (`s3tstream doctor` runs the checks alone)",
            code="preflight",
        )
    return checks
