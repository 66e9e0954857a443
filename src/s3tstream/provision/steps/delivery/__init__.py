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

The step's resources, one module per kind: error_bucket, log_group, log_stream, role,
role_policy, function (the transform Lambda), firehose_stream (with destination.py, its
requests and drift). common.py holds the IAM-propagation retries they share.
"""

from __future__ import annotations

from s3tstream.aws import policies
from s3tstream.provision.resource import Ctx, ResourceSpec
from s3tstream.provision.steps.delivery.common import error_bucket_name, ident_of
from s3tstream.provision.steps.delivery.error_bucket import ErrorBucket
from s3tstream.provision.steps.delivery.firehose_stream import DeliveryStream
from s3tstream.provision.steps.delivery.function import TransformFunction
from s3tstream.provision.steps.delivery.log_group import LogGroup
from s3tstream.provision.steps.delivery.log_stream import LogStream
from s3tstream.provision.steps.delivery.role import Role
from s3tstream.provision.steps.delivery.role_policy import RolePolicy


def lanes(ctx: Ctx) -> list[tuple[str, tuple[str, ...], list[ResourceSpec]]]:
    """What needs neither the stream nor the lake starts at once, beside them: the error bucket
    and the log groups. The transform role and function wait for set-metadata only (the
    function's settings carry the columns: a schema change set-metadata refuses must not reach
    it; no modelled wait lies on that path). The Firehose role's delivery policy and the stream
    itself wait for those, the Kinesis stream and grant-lf (the role, the grants)."""
    r = resources(ctx)
    own = [("error-bucket", (), r[0:1]), ("logs", (), r[1:4]), ("transform", ("set-metadata",), r[4:7])]
    return own + [("stream", ("create-stream#stream", "grant-lf", *(f"create-firehose#{n}" for n, _, _ in own)), r[7:])]


def resources(ctx: Ctx) -> list[ResourceSpec]:
    names = ctx.names
    cfg = ctx.cfg
    return [
        ErrorBucket(ctx),
        LogGroup(ctx, names.firehose_log_group),
        LogStream(ctx, names.firehose_log_group, names.firehose_log_stream),
        LogGroup(ctx, names.transform_log_group),
        Role(ctx, names.transform_role, lambda: policies.transform_trust(cfg, ident_of(ctx)),
             f"s3tstream {names.stack}: the Firehose transform Lambda"),
        RolePolicy(ctx, names.transform_role, policies.TRANSFORM_POLICY_NAME,
                   lambda: policies.transform_policy(cfg, ident_of(ctx))),
        TransformFunction(ctx),
        # The Firehose role itself (trust + Glue/Lake Formation policy) is grant-lf's.
        RolePolicy(ctx, names.firehose_role, policies.DELIVERY_POLICY_NAME,
                   lambda: policies.firehose_delivery_policy(cfg, ident_of(ctx), error_bucket_name(ctx))),
        DeliveryStream(ctx),
    ]
