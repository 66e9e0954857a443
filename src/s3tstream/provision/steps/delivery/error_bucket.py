"""The Firehose error bucket: holds the only copy of rows Firehose could not deliver."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import error_code, is_not_configured, is_not_found
from s3tstream.errors import AwsError
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec, tag_map
from s3tstream.provision.steps.delivery.common import error_bucket_name, ident_of, tags_list

LIFECYCLE_RULE_ID = "s3tstream-expire-failed-rows"


class ErrorBucket(ResourceSpec):
    """Holds the only copy of rows Firehose could not deliver: kept by `down` when not empty."""

    kind = "error-bucket"
    taggable = True

    @property
    def name(self) -> str:
        return error_bucket_name(self.ctx)

    def _s3(self) -> Any:
        return self.ctx.aws.client("s3")

    def observe(self) -> Observed:
        s3 = self._s3()
        try:
            s3.head_bucket(Bucket=self.name)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            if error_code(e) in ("403", "AccessDenied", "Forbidden"):
                return Observed(
                    exists=True,
                    conflict=f"the S3 bucket name {self.name} is taken (by another account, or you may not read it); "
                    "set firehose.error_bucket to another name",
                )
            raise
        arn = policies.s3_bucket_arn(ident_of(self.ctx), self.name)
        obs = Observed(exists=True, id=arn, outputs={"arn": arn, "bucket": self.name})
        self.ctx.judge(obs, self._tags())
        obs.drift = self._drift()
        return obs

    def _tags(self) -> dict[str, str]:
        try:
            ts = self._s3().get_bucket_tagging(Bucket=self.name).get("TagSet", [])
        except ClientError as e:
            if is_not_configured(e):
                return {}
            raise
        return {t["Key"]: t["Value"] for t in ts}

    def _lifecycle_rule(self) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        return {
            "ID": LIFECYCLE_RULE_ID,
            "Status": "Enabled",
            "Filter": {"Prefix": fh.error_prefix},
            "Expiration": {"Days": fh.error_expiry_days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }

    def _drift(self) -> list[Drift]:
        s3 = self._s3()
        drift: list[Drift] = []
        if not self.ctx.owns(self._tags()):
            # a run killed between CreateBucket and PutBucketTagging left it untagged
            drift.append(Drift("tags", fmt="{field} (s3tstream:stack)"))
        try:
            rules = s3.get_bucket_encryption(Bucket=self.name)["ServerSideEncryptionConfiguration"]["Rules"]
            algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else None
        except ClientError as e:
            if not is_not_configured(e):
                raise
            algo = None
        if algo not in ("AES256", "aws:kms", "aws:kms:dsse"):
            drift.append(Drift("encryption", algo, "AES256", "{field} -> {new}"))
        try:
            pab = s3.get_public_access_block(Bucket=self.name)["PublicAccessBlockConfiguration"]
        except ClientError as e:
            if not is_not_configured(e):
                raise
            pab = {}
        if not all(pab.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")):
            drift.append(Drift("public access block", fmt="{field}"))
        try:
            have = json.loads(s3.get_bucket_policy(Bucket=self.name)["Policy"])
        except ClientError as e:
            if not is_not_configured(e):
                raise
            have = None
        if have is None or policies.normalize(have) != policies.normalize(policies.error_bucket_policy(ident_of(self.ctx), self.name)):
            drift.append(Drift("bucket policy", fmt="{field} (TLS only)"))
        try:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=self.name).get("Rules", [])
        except ClientError as e:
            if not is_not_configured(e):
                raise
            rules = []
        want = self._lifecycle_rule()
        mine = next((r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID), None)
        if (
            mine is None
            or mine.get("Status") != "Enabled"
            or mine.get("Expiration", {}).get("Days") != want["Expiration"]["Days"]
            or (mine.get("Filter") or {}).get("Prefix", mine.get("Prefix")) != want["Filter"]["Prefix"]
        ):
            drift.append(Drift("lifecycle", new=self.ctx.cfg.firehose.error_expiry_days, fmt="{field}: expire after {new} days"))
        return drift

    def create(self) -> dict[str, Any]:
        s3 = self._s3()
        args: dict[str, Any] = {"Bucket": self.name}
        if self.ctx.cfg.stack.region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": self.ctx.cfg.stack.region}
        try:
            s3.create_bucket(**args)
        except ClientError as e:
            if error_code(e) == "BucketAlreadyExists":
                raise AwsError(
                    f"the S3 bucket name {self.name} is taken by another account",
                    "set firehose.error_bucket to a name of your own, then run `s3tstream up` again",
                ) from None
            if error_code(e) != "BucketAlreadyOwnedByYou":
                raise
        # Tag first. A run killed before this finds the intent on record and the tag missing
        # (drift "tags"), and tags it then.
        self._apply(["tags", "encryption", "public access block", "bucket policy", "lifecycle"])
        arn = policies.s3_bucket_arn(ident_of(self.ctx), self.name)
        return {"id": arn, "arn": arn, "bucket": self.name}

    def _apply(self, what: list[str]) -> None:
        """Put the named settings (Drift fields)."""
        s3 = self._s3()

        def wants(field: str) -> bool:
            return field in what

        if wants("tags"):
            # PutBucketTagging replaces the whole set: keep tags someone else added
            s3.put_bucket_tagging(Bucket=self.name, Tagging={"TagSet": tags_list({**self._tags(), **self.ctx.tags()})})
        if wants("public access block"):
            s3.put_public_access_block(
                Bucket=self.name,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True, "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True, "RestrictPublicBuckets": True,
                },
            )
        if wants("encryption"):
            s3.put_bucket_encryption(
                Bucket=self.name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
        if wants("bucket policy"):
            s3.put_bucket_policy(Bucket=self.name, Policy=json.dumps(policies.error_bucket_policy(ident_of(self.ctx), self.name)))
        if wants("lifecycle"):
            s3.put_bucket_lifecycle_configuration(
                Bucket=self.name, LifecycleConfiguration={"Rules": [self._lifecycle_rule()]}
            )

    def update(self, observed: Observed) -> dict[str, Any]:
        self._apply([d.field for d in observed.drift])
        return {}

    @staticmethod
    def _is_empty(s3: Any, bucket: str) -> bool:
        r = s3.list_object_versions(Bucket=bucket, MaxKeys=1)
        return not (r.get("Versions") or r.get("DeleteMarkers"))

    @staticmethod
    def _purge(s3: Any, bucket: str) -> int:
        n = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            objs = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            for i in range(0, len(objs), 1000):
                chunk = objs[i : i + 1000]
                r = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
                if r.get("Errors"):
                    e = r["Errors"][0]
                    raise AwsError(
                        f"emptying error bucket {bucket}: {e.get('Code')}: {e.get('Message')} ({e.get('Key')})",
                        "check your permissions on the bucket, then run `s3tstream down --purge-errors` again",
                    )
                n += len(chunk)
        return n

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        # PutBucketTagging replaces the whole set: keep the tags already there
        bucket = record.outputs.get("bucket") or record.name
        have = cls.live_tags(ctx, record) or {}
        ctx.aws.client("s3").put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags_list({**have, **tags})})

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        s3 = ctx.aws.client("s3")
        try:
            return tag_map(s3.get_bucket_tagging(Bucket=record.outputs.get("bucket") or record.name).get("TagSet", []))
        except ClientError as e:
            if is_not_found(e):
                return None
            if is_not_configured(e):
                return {}
            raise

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        """Delete the bucket when empty. A non-empty bucket holds the only copy of failed rows:
        it is kept (and its record with it) unless `down --purge-errors`. Returns the reason
        when kept, None when deleted."""
        s3 = ctx.aws.client("s3")
        bucket = record.outputs.get("bucket") or record.name
        try:
            empty = cls._is_empty(s3, bucket)
        except ClientError as e:
            if is_not_found(e):
                return None
            raise
        if not empty:
            if not ctx.options.get("purge_errors"):
                reason = (
                    f"kept error bucket {bucket}: it holds failed rows (their only copy); "
                    "read them, then run `s3tstream down --purge-errors` to delete it"
                )
                ctx.progress(f"warning: {reason}")
                return reason
            n = cls._purge(s3, bucket)
            ctx.progress(f"emptied error bucket {bucket} ({n} object version(s)) as --purge-errors asked")
        try:
            s3.delete_bucket(Bucket=bucket)
        except ClientError as e:
            if is_not_found(e):
                return None
            raise
        return None

