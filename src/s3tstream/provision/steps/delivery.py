"""create-firehose: error bucket, log groups, the transform Lambda and its role, the delivery
part of the Firehose role's permissions, and the Firehose stream itself.

AWS behaviour this module relies on (aws-notes "Firehose"; sources in the comments):
- The table, its schema and the Lake Formation grants must exist before the stream: Firehose
  calls glue:GetTable at create and, with UniqueKeys, checks the table and key columns
  (https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-prereq.html).
- Right after the roles are created, CreateDeliveryStream fails with messages naming the
  role (IAM_PROPAGATION_MESSAGES) and CreateFunction with "The role defined for the function
  cannot be assumed by Lambda": both are retried with bounded backoff.
- A stream goes CREATING -> ACTIVE or CREATING_FAILED (final; delete and create again). It
  cannot be deleted while CREATING and can stay DELETING for minutes
  (https://docs.aws.amazon.com/firehose/latest/APIReference/API_DeleteDeliveryStream.html).
- Buffering and processor changes go through UpdateDestination with the stream's
  CurrentDeliveryStreamVersionId and DestinationId, never by recreating the stream.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import ClientError

from s3tstream.provision import lambda_zip
from s3tstream.aws import policies

from s3tstream.aws.client import error_code, error_message, is_not_found, sleep, wait_until
from s3tstream.errors import AwsError, PlanError
from s3tstream.provision.resource import Ctx, Observed, ResourceSpec

if TYPE_CHECKING:
    from s3tstream.aws.client import Identity
    from s3tstream.config.model import Config

STACK_TAG = "s3tstream:stack"
STREAM_TYPE = "KinesisStreamAsSource"
LIFECYCLE_RULE_ID = "s3tstream-expire-failed-rows"

# ------------------------------------------------------------------ IAM propagation retries
# aws-notes: messages CreateDeliveryStream answers (InvalidArgumentException) while a new
# role is not yet usable by Firehose.
IAM_PROPAGATION_MESSAGES = (
    "Firehose is unable to assume role",
    "is not authorized to",
    "Access was denied",
    "Verify that the IAM role has access",
)
FIREHOSE_RETRY_CODES = ("InvalidArgumentException",)
LAMBDA_ROLE_MESSAGE = "cannot be assumed by Lambda"
# Bounded backoff: attempt n waits min(poll * 2**n, poll * IAM_RETRY_CAP) seconds. With the
# default poll interval (5 s) and 8 attempts: 5+10+20+30*4 = 155 s, "a minute or two".
IAM_RETRY_ATTEMPTS = 8
IAM_RETRY_CAP = 6.0
_sleep = sleep  # Ctrl-C ends it at once; tests replace it to count waits


def is_firehose_iam_propagation(e: BaseException) -> bool:
    """True for the CreateDeliveryStream errors that mean "the new role is not usable yet"."""
    if not isinstance(e, ClientError) or error_code(e) not in FIREHOSE_RETRY_CODES:
        return False
    msg = error_message(e)
    return any(m.lower() in msg.lower() for m in IAM_PROPAGATION_MESSAGES)


def is_lambda_iam_propagation(e: BaseException) -> bool:
    return (
        isinstance(e, ClientError)
        and error_code(e) == "InvalidParameterValueException"
        and LAMBDA_ROLE_MESSAGE in error_message(e)
    )


def retry_delays(ctx: Ctx) -> list[float]:
    attempts = int(ctx.options.get("iam_retry_attempts") or IAM_RETRY_ATTEMPTS)
    return [min(ctx.poll * 2**i, ctx.poll * IAM_RETRY_CAP) for i in range(max(0, attempts - 1))]


def retry_iam(ctx: Ctx, what: str, fn: Callable[[], Any], retryable: Callable[[BaseException], bool]) -> Any:
    """Call fn(); while it fails with an IAM-propagation error, wait and call it again."""
    delays = retry_delays(ctx)
    for i in range(len(delays) + 1):
        try:
            return fn()
        except ClientError as e:
            if not retryable(e) or i == len(delays):
                raise
            ctx.progress(
                f"{what}: IAM changes not visible yet ({error_message(e)}); "
                f"retry {i + 1}/{len(delays)} in {delays[i]:.1f}s"
            )
            _sleep(delays[i])
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------ small helpers
def _tags_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _ours(ctx: Ctx, tags: dict[str, str] | list[dict[str, str]] | None) -> bool:
    if isinstance(tags, list):
        tags = {t["Key"]: t["Value"] for t in tags}
    return (tags or {}).get(STACK_TAG) == ctx.names.stack


def _recorded_owned(ctx: Ctx, kind: str, name: str) -> bool:
    rec = ctx.state.get(kind, name)
    return rec is not None and rec.ownership == "owned"


def _ident(ctx: Ctx) -> "Identity":
    return ctx.aws.identity()


def error_bucket_name(ctx: Ctx) -> str:
    return ctx.names.error_bucket(_ident(ctx).account)


def transform_settings(cfg: "Config") -> dict[str, Any]:
    """The transform's settings document (see s3tstream.transform.settings)."""
    columns = _effective_columns(cfg)
    return {
        "database": cfg.names.namespace,
        "table": cfg.names.table,
        "mode": cfg.table.mode,
        "keys": [col for _, col in cfg.key_columns()],
        "columns": columns,
        "extra_column": cfg.table.extra_column,
        "ttl_deletes": cfg.table.ttl_deletes,
    }


def _effective_columns(cfg: "Config") -> list[dict[str, Any]]:
    """The columns the transform maps from DynamoDB attributes: schema.py's effective columns
    (declared ones plus undeclared key columns). The changelog columns and the extra column
    are the transform's own (settings "mode" / "extra_column")."""
    from s3tstream.lake.schema import effective_schema

    return [
        {"name": c.name, "type": c.type_str, "required": c.required, "source": c.source or c.name}
        for c in effective_schema(cfg).columns
        if c.role in ("key", "data")
    ]


def transform_document(cfg: "Config") -> dict[str, Any]:
    """The settings of every table: one table's document (as before many tables), or each
    table's by its DynamoDB table name (transform/routing.py)."""
    scopes = cfg.scopes()
    if len(scopes) == 1:
        return transform_settings(scopes[0])
    return {"routes": {s.names.source_table: transform_settings(s) for s in scopes}}


def transform_deployment(cfg: "Config") -> tuple[dict[str, str], tuple[tuple[str, bytes], ...]]:
    """(environment variables, extra files for the zip) that carry the settings: a document over
    the Lambda environment's 4 KB travels in the zip (a settings change is then a code change)."""
    from s3tstream.transform.routing import deploy

    env, files = deploy(transform_document(cfg))
    return env, tuple(sorted(files.items()))


def transform_environment(cfg: "Config") -> dict[str, str]:
    return transform_deployment(cfg)[0]


def transform_package(cfg: "Config") -> lambda_zip.Package:
    extra = transform_deployment(cfg)[1]
    return lambda_zip.package(extra) if extra else lambda_zip.package()


# ------------------------------------------------------------------ error bucket
class ErrorBucket(ResourceSpec):
    """Holds the only copy of rows Firehose could not deliver: kept by `down` when not empty."""

    kind = "error-bucket"

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
            code = error_code(e)
            if code in ("404", "NoSuchBucket", "NotFound"):
                return Observed(exists=False)
            if code in ("403", "AccessDenied", "Forbidden"):
                return Observed(
                    exists=True,
                    conflict=f"the S3 bucket name {self.name} is taken (by another account, or you may not read it); "
                    "set firehose.error_bucket to another name",
                )
            raise
        arn = policies.s3_bucket_arn(_ident(self.ctx), self.name)
        obs = Observed(exists=True, id=arn, outputs={"arn": arn, "bucket": self.name})
        obs.owned = _ours(self.ctx, self._tags())
        obs.drift = self._drift()
        return obs

    def _tags(self) -> dict[str, str]:
        try:
            ts = self._s3().get_bucket_tagging(Bucket=self.name).get("TagSet", [])
        except ClientError as e:
            if error_code(e) in ("NoSuchTagSet", "NoSuchTagSetError"):
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

    def _drift(self) -> list[str]:
        s3 = self._s3()
        drift = []
        if not _ours(self.ctx, self._tags()):
            # a run killed between CreateBucket and PutBucketTagging left it untagged
            drift.append("tags (s3tstream:stack)")
        try:
            rules = s3.get_bucket_encryption(Bucket=self.name)["ServerSideEncryptionConfiguration"]["Rules"]
            algo = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] if rules else None
        except ClientError as e:
            if error_code(e) != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            algo = None
        if algo not in ("AES256", "aws:kms", "aws:kms:dsse"):
            drift.append("encryption -> AES256")
        try:
            pab = s3.get_public_access_block(Bucket=self.name)["PublicAccessBlockConfiguration"]
        except ClientError as e:
            if error_code(e) != "NoSuchPublicAccessBlockConfiguration":
                raise
            pab = {}
        if not all(pab.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")):
            drift.append("public access block")
        try:
            have = json.loads(s3.get_bucket_policy(Bucket=self.name)["Policy"])
        except ClientError as e:
            if error_code(e) != "NoSuchBucketPolicy":
                raise
            have = None
        if have is None or policies.normalize(have) != policies.normalize(policies.error_bucket_policy(_ident(self.ctx), self.name)):
            drift.append("bucket policy (TLS only)")
        try:
            rules = s3.get_bucket_lifecycle_configuration(Bucket=self.name).get("Rules", [])
        except ClientError as e:
            if error_code(e) != "NoSuchLifecycleConfiguration":
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
            drift.append(f"lifecycle: expire after {self.ctx.cfg.firehose.error_expiry_days} days")
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
        self._apply(["tags", "encryption", "public", "bucket policy", "lifecycle"])
        arn = policies.s3_bucket_arn(_ident(self.ctx), self.name)
        return {"id": arn, "arn": arn, "bucket": self.name}

    def _apply(self, what: list[str]) -> None:
        s3 = self._s3()

        def wants(prefix: str) -> bool:
            return any(w.startswith(prefix) for w in what)

        if wants("tags"):
            # PutBucketTagging replaces the whole set: keep tags someone else added
            s3.put_bucket_tagging(Bucket=self.name, Tagging={"TagSet": _tags_list({**self._tags(), **self.ctx.tags()})})
        if wants("public"):
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
            s3.put_bucket_policy(Bucket=self.name, Policy=json.dumps(policies.error_bucket_policy(_ident(self.ctx), self.name)))
        if wants("lifecycle"):
            s3.put_bucket_lifecycle_configuration(
                Bucket=self.name, LifecycleConfiguration={"Rules": [self._lifecycle_rule()]}
            )

    def update(self, observed: Observed) -> dict[str, Any]:
        self._apply(observed.drift)
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
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        """Delete the bucket when empty. A non-empty bucket holds the only copy of failed rows:
        it is kept (and its record with it) unless `down --purge-errors`. Returns the reason
        when kept, None when deleted."""
        s3 = ctx.aws.client("s3")
        bucket = record.outputs.get("bucket") or record.name
        try:
            empty = cls._is_empty(s3, bucket)
        except ClientError as e:
            if error_code(e) in ("404", "NoSuchBucket", "NotFound"):
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
            if error_code(e) in ("404", "NoSuchBucket", "NotFound"):
                return None
            raise
        return None


# ------------------------------------------------------------------ logs
class LogGroup(ResourceSpec):
    kind = "log-group"

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
        arn = policies.log_group_arn(self.ctx.cfg, _ident(self.ctx), self.name)
        obs = Observed(exists=True, id=arn, outputs={"arn": arn})
        tags = self._logs().list_tags_for_resource(resourceArn=arn).get("tags", {})
        obs.owned = _ours(self.ctx, tags)
        want = self.ctx.cfg.firehose.log_retention_days
        if g.get("retentionInDays") != want:
            obs.drift.append(f"retention {g.get('retentionInDays') or 'never expire'} -> {want} days")
        return obs

    def create(self) -> dict[str, Any]:
        logs = self._logs()
        try:
            logs.create_log_group(logGroupName=self.name, tags=self.ctx.tags())
        except ClientError as e:
            if error_code(e) != "ResourceAlreadyExistsException":
                raise
        logs.put_retention_policy(logGroupName=self.name, retentionInDays=self.ctx.cfg.firehose.log_retention_days)
        arn = policies.log_group_arn(self.ctx.cfg, _ident(self.ctx), self.name)
        return {"id": arn, "arn": arn}

    def update(self, observed: Observed) -> dict[str, Any]:
        self._logs().put_retention_policy(logGroupName=self.name, retentionInDays=self.ctx.cfg.firehose.log_retention_days)
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        try:
            ctx.aws.client("logs").delete_log_group(logGroupName=record.name)
        except ClientError as e:
            if not is_not_found(e):
                raise


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
        obs.owned = _recorded_owned(self.ctx, LogGroup.kind, self.group)
        return obs

    def create(self) -> dict[str, Any]:
        try:
            self.ctx.aws.client("logs").create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except ClientError as e:
            if error_code(e) != "ResourceAlreadyExistsException":
                raise
        return {"id": self.name, "group": self.group, "stream": self.stream}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        group = record.outputs.get("group") or record.name.rsplit(":", 1)[0]
        stream = record.outputs.get("stream") or record.name.rsplit(":", 1)[1]
        try:
            ctx.aws.client("logs").delete_log_stream(logGroupName=group, logStreamName=stream)
        except ClientError as e:
            if not is_not_found(e):
                raise


# ------------------------------------------------------------------ IAM
class Role(ResourceSpec):
    """An IAM role with its trust policy (permissions are separate iam-role-policy resources)."""

    kind = "iam-role"

    def __init__(self, ctx: Ctx, role: str, trust: Callable[[], dict[str, Any]], description: str) -> None:
        super().__init__(ctx)
        self.role, self.trust, self.description = role, trust, description

    @property
    def name(self) -> str:
        return self.role

    def observe(self) -> Observed:
        iam = self.ctx.aws.client("iam")
        try:
            r = iam.get_role(RoleName=self.role)["Role"]
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        obs = Observed(exists=True, id=r["Arn"], outputs={"arn": r["Arn"]})
        tags = r.get("Tags")
        if tags is None:
            tags = iam.list_role_tags(RoleName=self.role).get("Tags", [])
        obs.owned = _ours(self.ctx, tags)
        have = r.get("AssumeRolePolicyDocument")
        if isinstance(have, str):
            have = json.loads(have)
        if policies.normalize(have) != policies.normalize(self.trust()):
            obs.drift.append("trust policy")
        return obs

    def create(self) -> dict[str, Any]:
        iam = self.ctx.aws.client("iam")
        try:
            r = iam.create_role(
                RoleName=self.role,
                AssumeRolePolicyDocument=json.dumps(self.trust()),
                Description=self.description,
                Tags=_tags_list(self.ctx.tags()),
            )["Role"]
        except ClientError as e:
            if error_code(e) != "EntityAlreadyExists":
                raise
            r = iam.get_role(RoleName=self.role)["Role"]
            iam.update_assume_role_policy(RoleName=self.role, PolicyDocument=json.dumps(self.trust()))
        return {"id": r["Arn"], "arn": r["Arn"]}

    def update(self, observed: Observed) -> dict[str, Any]:
        self.ctx.aws.client("iam").update_assume_role_policy(RoleName=self.role, PolicyDocument=json.dumps(self.trust()))
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        iam = ctx.aws.client("iam")
        role = record.name
        try:
            for p in iam.list_role_policies(RoleName=role).get("PolicyNames", []):
                iam.delete_role_policy(RoleName=role, PolicyName=p)
            for p in iam.list_attached_role_policies(RoleName=role).get("AttachedPolicies", []):
                iam.detach_role_policy(RoleName=role, PolicyArn=p["PolicyArn"])
            iam.delete_role(RoleName=role)
        except ClientError as e:
            if not is_not_found(e):
                raise


class RolePolicy(ResourceSpec):
    """One inline policy on a role; named '<role>/<policy>'. Inline policies take no tags: it
    is ours when its role carries this stack's tag."""

    kind = "iam-role-policy"

    def __init__(self, ctx: Ctx, role: str, policy: str, document: Callable[[], dict[str, Any]]) -> None:
        super().__init__(ctx)
        self.role, self.policy, self.document = role, policy, document

    @property
    def name(self) -> str:
        return f"{self.role}/{self.policy}"

    def observe(self) -> Observed:
        iam = self.ctx.aws.client("iam")
        try:
            r = iam.get_role_policy(RoleName=self.role, PolicyName=self.policy)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        obs = Observed(exists=True, id=self.name, outputs={"role": self.role, "policy": self.policy})
        role = iam.get_role(RoleName=self.role)["Role"]
        tags = role.get("Tags")
        if tags is None:
            tags = iam.list_role_tags(RoleName=self.role).get("Tags", [])
        obs.owned = _ours(self.ctx, tags)
        have = r["PolicyDocument"]
        if isinstance(have, str):
            have = json.loads(have)
        if policies.normalize(have) != policies.normalize(self.document()):
            obs.drift.append("policy document")
        return obs

    def create(self) -> dict[str, Any]:
        iam = self.ctx.aws.client("iam")
        try:
            iam.put_role_policy(RoleName=self.role, PolicyName=self.policy, PolicyDocument=json.dumps(self.document()))
        except ClientError as e:
            if is_not_found(e):
                raise PlanError(
                    f"role {self.role} does not exist, so its {self.policy} policy cannot be added",
                    "run `s3tstream step grant-lf` (or `s3tstream up`) first: it creates the Firehose role",
                ) from None
            raise
        return {"id": self.name, "role": self.role, "policy": self.policy}

    def update(self, observed: Observed) -> dict[str, Any]:
        self.create()
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        role = record.outputs.get("role") or record.name.split("/", 1)[0]
        policy = record.outputs.get("policy") or record.name.split("/", 1)[1]
        try:
            ctx.aws.client("iam").delete_role_policy(RoleName=role, PolicyName=policy)
        except ClientError as e:
            if not is_not_found(e):
                raise


# ------------------------------------------------------------------ the transform function
class TransformFunction(ResourceSpec):
    kind = "lambda-function"

    @property
    def name(self) -> str:
        return self.ctx.names.transform_function

    def _l(self) -> Any:
        return self.ctx.aws.client("lambda")

    def desired_config(self) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        return {
            "Runtime": fh.lambda_runtime,
            "Role": policies.role_arn(_ident(self.ctx), self.ctx.names.transform_role),
            "Handler": lambda_zip.HANDLER,
            "MemorySize": fh.lambda_memory_mb,
            "Timeout": fh.lambda_timeout_seconds,
            "Environment": {"Variables": transform_environment(self.ctx.cfg)},
            "Description": f"s3tstream {self.ctx.names.stack}: DynamoDB change records -> Iceberg rows",
        }

    def observe(self) -> Observed:
        try:
            r = self._l().get_function(FunctionName=self.name)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        c = r["Configuration"]
        obs = Observed(exists=True, id=c["FunctionArn"], outputs={"arn": c["FunctionArn"], "code_sha256": c.get("CodeSha256")})
        obs.owned = _ours(self.ctx, r.get("Tags", {}))
        fh = self.ctx.cfg.firehose
        if c.get("CodeSha256") != transform_package(self.ctx.cfg).sha256 or c.get("Architectures", ["x86_64"]) != [fh.lambda_architecture]:
            obs.drift.append("code")
        want = self.desired_config()
        have_env = (c.get("Environment") or {}).get("Variables", {})
        changed = [k for k in ("Runtime", "Role", "Handler", "MemorySize", "Timeout", "Description") if c.get(k) != want[k]]
        if have_env != want["Environment"]["Variables"]:
            changed.append("Environment")
        if changed:
            obs.drift.append("configuration: " + ", ".join(changed))
        have_rc = self._l().get_function_concurrency(FunctionName=self.name).get("ReservedConcurrentExecutions")
        if have_rc != fh.lambda_reserved_concurrency:
            obs.drift.append(f"reserved concurrency {have_rc} -> {fh.lambda_reserved_concurrency}")
        if c.get("State") not in (None, "Active") or c.get("LastUpdateStatus") == "InProgress":
            obs.drift.append("waiting for the function to be ready")
        return obs

    def _wait_ready(self, what: str) -> None:
        def check() -> tuple[bool, str]:
            c = self._l().get_function_configuration(FunctionName=self.name)
            state, upd = c.get("State", "Active"), c.get("LastUpdateStatus", "Successful")
            if state == "Failed" or upd == "Failed":
                reason = c.get("StateReason") or c.get("LastUpdateStatusReason") or "no reason given"
                raise AwsError(
                    f"Lambda function {self.name} {what} failed: {reason}",
                    "fix the cause, then run `s3tstream up` again",
                )
            return state == "Active" and upd == "Successful", f"{state}/{upd}"

        wait_until(check, f"function {self.name} {what}", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)

    def create(self) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        pkg = transform_package(self.ctx.cfg)
        args = {
            "FunctionName": self.name,
            "Code": {"ZipFile": pkg.data},
            "Architectures": [fh.lambda_architecture],
            "Tags": self.ctx.tags(),
            "Publish": False,
            **self.desired_config(),
        }
        try:
            r = retry_iam(self.ctx, f"creating function {self.name}", lambda: self._l().create_function(**args), is_lambda_iam_propagation)
        except ClientError as e:
            if error_code(e) != "ResourceConflictException":
                raise
            r = self._l().get_function_configuration(FunctionName=self.name)
        self._wait_ready("creation")
        if fh.lambda_reserved_concurrency is not None:
            self._l().put_function_concurrency(FunctionName=self.name, ReservedConcurrentExecutions=fh.lambda_reserved_concurrency)
        # the settings deployed, for `verify` (which maps items as the deployed transform does)
        return {"id": r["FunctionArn"], "arn": r["FunctionArn"], "code_sha256": pkg.sha256,
                "settings": transform_document(self.ctx.cfg)}

    def update(self, observed: Observed) -> dict[str, Any]:
        fh = self.ctx.cfg.firehose
        lam = self._l()
        self._wait_ready("update")
        out: dict[str, Any] = {}
        if "code" in observed.drift:
            pkg = transform_package(self.ctx.cfg)
            lam.update_function_code(FunctionName=self.name, ZipFile=pkg.data, Architectures=[fh.lambda_architecture], Publish=False)
            self._wait_ready("code update")
            out["code_sha256"] = pkg.sha256
            out["settings"] = transform_document(self.ctx.cfg)  # settings too large for the environment ride in the code
        if any(d.startswith("configuration") for d in observed.drift):
            retry_iam(
                self.ctx, f"updating function {self.name}",
                lambda: lam.update_function_configuration(FunctionName=self.name, **self.desired_config()),
                is_lambda_iam_propagation,
            )
            self._wait_ready("configuration update")
            out["settings"] = transform_document(self.ctx.cfg)
        if any(d.startswith("reserved concurrency") for d in observed.drift):
            if fh.lambda_reserved_concurrency is None:
                lam.delete_function_concurrency(FunctionName=self.name)
            else:
                lam.put_function_concurrency(FunctionName=self.name, ReservedConcurrentExecutions=fh.lambda_reserved_concurrency)
        return out

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        try:
            ctx.aws.client("lambda").delete_function(FunctionName=record.name)
        except ClientError as e:
            if not is_not_found(e):
                raise


# ------------------------------------------------------------------ the Firehose stream
def catalog_arn(cfg: "Config", ident: "Identity") -> str:
    # aws-notes "Identifiers": arn:<p>:glue:<r>:<a>:catalog/s3tablescatalog/<bucket>, no resource link.
    return policies.glue_catalog_arn(cfg, ident)


def _fmt_mb(x: float) -> str:
    return f"{x:g}"


def processing_configuration(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    fh = cfg.firehose
    return {
        "Enabled": True,
        "Processors": [
            {
                "Type": "Lambda",
                "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": policies.transform_function_arn(cfg, ident)},
                    {"ParameterName": "NumberOfRetries", "ParameterValue": str(fh.processor_retries)},
                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": _fmt_mb(fh.processor_buffer_mb)},
                    {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": str(fh.processor_interval_seconds)},
                ],
            }
        ],
    }


def s3_configuration(cfg: "Config", ident: "Identity", bucket: str) -> dict[str, Any]:
    return {
        "RoleARN": policies.role_arn(ident, cfg.names.firehose_role),
        "BucketARN": policies.s3_bucket_arn(ident, bucket),
        "ErrorOutputPrefix": cfg.firehose.error_prefix,
    }


def table_configuration(cfg: "Config") -> list[dict[str, Any]]:
    """One DestinationTableConfiguration per table: the transform routes each record to its
    table with metadata.otfMetadata (destinationDatabaseName/destinationTableName)."""
    out = []
    for s in cfg.scopes():
        t: dict[str, Any] = {
            "DestinationDatabaseName": s.names.namespace,
            "DestinationTableName": s.names.table,
            "S3ErrorOutputPrefix": s.firehose.error_prefix,
        }
        if s.table.mode == "upsert":
            # UniqueKeys identify the row for Firehose's update/delete (aws-notes).
            t["UniqueKeys"] = [col for _, col in s.key_columns()]
        out.append(t)
    return out


def destination(cfg: "Config", ident: "Identity", bucket: str) -> dict[str, Any]:
    """IcebergDestinationConfiguration; every name comes from botocore's firehose model."""
    fh, names = cfg.firehose, cfg.names
    return {
        "RoleARN": policies.role_arn(ident, names.firehose_role),
        "CatalogConfiguration": {"CatalogARN": catalog_arn(cfg, ident)},
        "DestinationTableConfigurationList": table_configuration(cfg),
        "BufferingHints": {"SizeInMBs": fh.buffer_size_mb, "IntervalInSeconds": fh.buffer_interval_seconds},
        "RetryOptions": {"DurationInSeconds": fh.retry_seconds},
        "ProcessingConfiguration": processing_configuration(cfg, ident),
        "CloudWatchLoggingOptions": {
            "Enabled": True, "LogGroupName": names.firehose_log_group, "LogStreamName": names.firehose_log_stream,
        },
        "S3BackupMode": "FailedDataOnly",
        # AppendOnly scales throughput but delivers out of order: changelog mode only. It is
        # the stream's, not a table's: one upsert table among them needs update/delete.
        "AppendOnly": all(s.table.mode == "changelog" for s in cfg.scopes()),
        "S3Configuration": s3_configuration(cfg, ident, bucket),
    }


def create_request(cfg: "Config", ident: "Identity", bucket: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "DeliveryStreamName": cfg.names.firehose,
        "DeliveryStreamType": STREAM_TYPE,
        "KinesisStreamSourceConfiguration": {
            "KinesisStreamARN": policies.kinesis_stream_arn(cfg, ident),
            "RoleARN": policies.role_arn(ident, cfg.names.firehose_role),
        },
        "IcebergDestinationConfiguration": destination(cfg, ident, bucket),
        "Tags": _tags_list(tags),
    }


# Destination drift: label -> members of IcebergDestinationUpdate that fix it.
UPDATE_MEMBERS = {
    "buffering": ("BufferingHints",),
    "retry": ("RetryOptions",),
    "processor": ("ProcessingConfiguration",),
    "logging": ("CloudWatchLoggingOptions",),
    "tables": ("DestinationTableConfigurationList",),
    "append-only": ("AppendOnly",),
    "error output": ("S3Configuration",),
    "role": ("RoleARN", "S3Configuration"),
    "backup mode": ("S3BackupMode",),
}


def drift_label(d: str) -> str:
    """'buffering: 1 MB/15 s -> ...' -> 'buffering'; 'append-only -> True' -> 'append-only'."""
    return d.split(":", 1)[0].split(" ->", 1)[0].strip()


def update_request(cfg: "Config", ident: "Identity", bucket: str, version_id: str, destination_id: str,
                   drift: list[str]) -> dict[str, Any]:
    want = destination(cfg, ident, bucket)
    members: list[str] = []
    for d in drift:
        for m in UPDATE_MEMBERS.get(drift_label(d), ()):
            if m not in members:
                members.append(m)
    return {
        "DeliveryStreamName": cfg.names.firehose,
        "CurrentDeliveryStreamVersionId": version_id,
        "DestinationId": destination_id,
        "IcebergDestinationUpdate": {m: want[m] for m in members},
    }


def _params(desc_proc: dict[str, Any] | None) -> dict[str, str]:
    for p in (desc_proc or {}).get("Processors", []):
        if p.get("Type") == "Lambda":
            return {x["ParameterName"]: x["ParameterValue"] for x in p.get("Parameters", [])}
    return {}


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def destination_drift(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """Compare the desired IcebergDestinationConfiguration with describe's description."""
    drift = []
    wb, hb = want["BufferingHints"], have.get("BufferingHints") or {}
    if (hb.get("SizeInMBs"), hb.get("IntervalInSeconds")) != (wb["SizeInMBs"], wb["IntervalInSeconds"]):
        drift.append(f"buffering: {hb.get('SizeInMBs')} MB/{hb.get('IntervalInSeconds')} s -> "
                     f"{wb['SizeInMBs']} MB/{wb['IntervalInSeconds']} s")
    if (have.get("RetryOptions") or {}).get("DurationInSeconds") != want["RetryOptions"]["DurationInSeconds"]:
        drift.append(f"retry: {want['RetryOptions']['DurationInSeconds']} s")
    wp, hp = _params(want["ProcessingConfiguration"]), _params(have.get("ProcessingConfiguration"))
    # UNCONFIRMED: Firehose may report the function ARN qualified with ":$LATEST" and numbers
    # in another format ("1.0"): compare unqualified ARNs and numeric values.
    same_fn = (hp.get("LambdaArn") or "").removesuffix(":$LATEST") == wp["LambdaArn"]
    same_nums = all(_num(hp.get(k)) == _num(wp[k]) for k in ("NumberOfRetries", "BufferSizeInMBs", "BufferIntervalInSeconds"))
    if not (have.get("ProcessingConfiguration") or {}).get("Enabled") or not same_fn or not same_nums:
        drift.append("processor: transform Lambda settings")
    wl, hl = want["CloudWatchLoggingOptions"], have.get("CloudWatchLoggingOptions") or {}
    if any(hl.get(k) != wl[k] for k in ("Enabled", "LogGroupName", "LogStreamName")):
        drift.append("logging")

    def tables(lst: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((t.get("DestinationDatabaseName"), t.get("DestinationTableName"), tuple(t.get("UniqueKeys") or ()))
                      for t in lst or [])

    if tables(have.get("DestinationTableConfigurationList")) != tables(want["DestinationTableConfigurationList"]):
        drift.append("tables: destination table or unique keys")
    if bool(have.get("AppendOnly", False)) != want["AppendOnly"]:
        drift.append(f"append-only -> {want['AppendOnly']}")
    hs = have.get("S3DestinationDescription") or have.get("S3Configuration") or {}
    ws = want["S3Configuration"]
    if hs.get("BucketARN") != ws["BucketARN"] or hs.get("ErrorOutputPrefix") != ws["ErrorOutputPrefix"]:
        drift.append("error output: bucket or prefix")
    if have.get("RoleARN") != want["RoleARN"]:
        drift.append("role")
    if have.get("S3BackupMode", "FailedDataOnly") != want["S3BackupMode"]:
        drift.append("backup mode")
    return drift


class DeliveryStream(ResourceSpec):
    kind = "firehose-stream"

    @property
    def name(self) -> str:
        return self.ctx.names.firehose

    def _f(self) -> Any:
        return self.ctx.aws.client("firehose")

    def _describe(self) -> dict[str, Any] | None:
        try:
            return self._f().describe_delivery_stream(DeliveryStreamName=self.name)["DeliveryStreamDescription"]
        except ClientError as e:
            if is_not_found(e):
                return None
            raise

    def _want(self) -> dict[str, Any]:
        return destination(self.ctx.cfg, _ident(self.ctx), error_bucket_name(self.ctx))

    def observe(self) -> Observed:
        d = self._describe()
        if d is None:
            return Observed(exists=False)
        status = d["DeliveryStreamStatus"]
        try:
            tags = self._f().list_tags_for_delivery_stream(DeliveryStreamName=self.name).get("Tags", [])
        except ClientError as e:
            if not is_not_found(e):
                raise
            return Observed(exists=False)  # deleted between the two calls
        owned = _ours(self.ctx, tags) or _recorded_owned(self.ctx, self.kind, self.name)
        if status in ("DELETING", "CREATING_FAILED") and owned:
            # Unusable and ours: create() waits it out or deletes it, then creates it again.
            return Observed(exists=False)
        obs = Observed(exists=True, id=d["DeliveryStreamARN"], outputs={"arn": d["DeliveryStreamARN"]}, owned=_ours(self.ctx, tags))
        if status == "DELETING_FAILED":
            obs.conflict = f"Firehose stream {self.name} failed to delete: {_failure(d)}"
            return obs
        if status == "CREATING_FAILED":
            obs.conflict = f"Firehose stream {self.name} (not this stack's) is CREATING_FAILED: {_failure(d)}"
            return obs
        ident = _ident(self.ctx)
        if d.get("DeliveryStreamType") != STREAM_TYPE:
            obs.conflict = f"stream type is {d.get('DeliveryStreamType')}, not {STREAM_TYPE}; it must be recreated"
            return obs
        src = (d.get("Source") or {}).get("KinesisStreamSourceDescription", {}).get("KinesisStreamARN")
        if src and src != policies.kinesis_stream_arn(self.ctx.cfg, ident):
            obs.conflict = f"it reads {src}, not {policies.kinesis_stream_arn(self.ctx.cfg, ident)}; the source cannot be changed in place"
            return obs
        dests = d.get("Destinations") or [{}]
        have = dests[0].get("IcebergDestinationDescription")
        if have is None:
            obs.conflict = "its destination is not an Iceberg destination; it must be recreated"
            return obs
        want = self._want()
        have_cat = (have.get("CatalogConfiguration") or {}).get("CatalogARN")
        if have_cat != want["CatalogConfiguration"]["CatalogARN"]:
            obs.conflict = (f"it writes to catalog {have_cat}, not {want['CatalogConfiguration']['CatalogARN']}; "
                            "run `s3tstream down --step create-firehose`, then `s3tstream up`")
            return obs
        obs.outputs.update(version_id=d.get("VersionId"), destination_id=dests[0].get("DestinationId"))
        if status == "CREATING":
            obs.drift.append("status CREATING (waiting for ACTIVE)")
        obs.drift.extend(destination_drift(want, have))
        return obs

    def _wait_active(self) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> tuple[bool, str]:
            d = self._describe()
            if d is None:
                raise AwsError(f"Firehose stream {self.name} disappeared while being created",
                               "run `s3tstream up` again")
            last.clear()
            last.update(d)
            st = d["DeliveryStreamStatus"]
            if st == "CREATING_FAILED":
                return True, st
            return st == "ACTIVE", st

        wait_until(check, f"Firehose stream {self.name}", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)
        if last.get("DeliveryStreamStatus") == "CREATING_FAILED":
            why = _failure(last)
            self.ctx.progress(f"Firehose stream {self.name} is CREATING_FAILED ({why}); deleting it so it can be created again")
            self._delete_and_wait(self.ctx, self.name)
            raise AwsError(
                f"Firehose could not create stream {self.name}: {why}",
                "the failed stream was deleted; fix the cause (role permissions, Lake Formation grants, the table), "
                "then run `s3tstream up` again",
            )
        return last

    def _clear_leftover(self) -> None:
        """A failed or deleting stream of this name (ours: observe said so) blocks the create."""
        d = self._describe()
        if d is None:
            return
        st = d["DeliveryStreamStatus"]
        if st == "CREATING_FAILED":
            self.ctx.progress(f"deleting the CREATING_FAILED stream {self.name} ({_failure(d)})")
            self._delete_and_wait(self.ctx, self.name)
        elif st == "DELETING":
            self._wait_gone(self.ctx, self.name)

    def create(self) -> dict[str, Any]:
        cfg, ident = self.ctx.cfg, _ident(self.ctx)
        self._clear_leftover()
        d = self._describe()
        if d is None:
            req = create_request(cfg, ident, error_bucket_name(self.ctx), self.ctx.tags())
            try:
                retry_iam(self.ctx, f"creating Firehose stream {self.name}",
                          lambda: self._f().create_delivery_stream(**req), is_firehose_iam_propagation)
            except ClientError as e:
                if is_firehose_iam_propagation(e):
                    raise AwsError(
                        f"creating Firehose stream {self.name}: {error_message(e)}",
                        "IAM or Lake Formation still refuses after retrying: check that grant-lf ran "
                        "(role, Lake Formation grants) and that the table exists, then run `s3tstream up` again",
                    ) from None
                if error_code(e) != "ResourceInUseException":
                    raise
        # else: a run killed during the wait left it CREATING or ACTIVE; wait for it.
        d = self._wait_active()
        return {"id": d["DeliveryStreamARN"], "arn": d["DeliveryStreamARN"], "version_id": d.get("VersionId")}

    def update(self, observed: Observed) -> dict[str, Any]:
        d = self._wait_active()
        fix = [x for x in observed.drift if not x.startswith("status")]
        if not fix:
            return {"version_id": d.get("VersionId")}
        # Fresh version id and destination id: UpdateDestination is an optimistic lock.
        req = update_request(self.ctx.cfg, _ident(self.ctx), error_bucket_name(self.ctx),
                             d["VersionId"], d["Destinations"][0]["DestinationId"], fix)
        retry_iam(self.ctx, f"updating Firehose stream {self.name}",
                  lambda: self._f().update_destination(**req), is_firehose_iam_propagation)
        d = self._wait_active()
        return {"version_id": d.get("VersionId")}

    @staticmethod
    def _wait_gone(ctx: Ctx, name: str) -> None:
        f = ctx.aws.client("firehose")
        ctx.wait_for(
            lambda: f.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"],
            f"Firehose stream {name}", gone=True,
        )

    @classmethod
    def _delete_and_wait(cls, ctx: Ctx, name: str) -> None:
        f = ctx.aws.client("firehose")

        def not_creating() -> tuple[bool, str]:
            try:
                st = f.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"]
            except ClientError as e:
                if is_not_found(e):
                    return True, "deleted"
                raise
            return st != "CREATING", st

        # A stream cannot be deleted while CREATING (DeleteDeliveryStream API reference).
        if wait_until(not_creating, f"Firehose stream {name}", timeout=ctx.timeout, interval=ctx.poll, progress=ctx.progress) == "deleted":
            return
        try:
            f.delete_delivery_stream(DeliveryStreamName=name)
        except ClientError as e:
            if is_not_found(e):
                return
            raise
        cls._wait_gone(ctx, name)

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        cls._delete_and_wait(ctx, record.name)


def _failure(d: dict[str, Any]) -> str:
    f = d.get("FailureDescription") or {}
    if not f:
        return "no failure description given"
    return f"{f.get('Type', 'UNKNOWN_ERROR')}: {f.get('Details', '')}".strip()


# ------------------------------------------------------------------ the step
def resources(ctx: Ctx) -> list[ResourceSpec]:
    names = ctx.names
    cfg = ctx.cfg
    return [
        ErrorBucket(ctx),
        LogGroup(ctx, names.firehose_log_group),
        LogStream(ctx, names.firehose_log_group, names.firehose_log_stream),
        LogGroup(ctx, names.transform_log_group),
        Role(ctx, names.transform_role, lambda: policies.transform_trust(cfg, _ident(ctx)),
             f"s3tstream {names.stack}: the Firehose transform Lambda"),
        RolePolicy(ctx, names.transform_role, policies.TRANSFORM_POLICY_NAME,
                   lambda: policies.transform_policy(cfg, _ident(ctx))),
        TransformFunction(ctx),
        # The Firehose role itself (trust + Glue/Lake Formation policy) is grant-lf's.
        RolePolicy(ctx, names.firehose_role, policies.DELIVERY_POLICY_NAME,
                   lambda: policies.firehose_delivery_policy(cfg, _ident(ctx), error_bucket_name(ctx))),
        DeliveryStream(ctx),
    ]
