"""`s3tstream state recover`: rebuild a lost state from the live resources tagged with the stack.

Every resource the config names is observed (read calls only, each step's own observe) in
creation order, and recorded as the engine would have recorded it:
- tagged as this stack's (observe's ``owned``; the tags it reads are the stack name tag and,
  where the stack has one, the stack id tag): owned, so `down` deletes it;
- Lake Formation grants to the stack's own Firehose role (recovered as owned just before): owned,
  with the permissions the role holds as "granted" (no one else grants to a stack's role);
- the Kinesis streaming destination (untaggable) from the stack's own table to its own stream
  (both recovered as owned): owned;
- the account's integration (Lake Formation mode) when its role is this stack's (tagged) and is
  the role registered for bucket/*: owned, as the stack's `integrate = true` made it;
- an existing resource the stack may adopt (the account's integration, the caller as Lake
  Formation admin, an untagged source table): adopted, never deleted;
- anything else that exists (untagged, another stack's): left out and reported.
The stack id, when the live tags carry one (``s3tstream:stack-id``), is put back into the state.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import is_not_found, translate
from s3tstream.errors import StateError
from s3tstream.provision.resource import Ctx

STACK_TAG = "s3tstream:stack"
STACK_ID_TAG = "s3tstream:stack-id"


def _observe(spec: Any) -> Any:
    try:
        return spec.observe()
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"observing {spec.kind} {spec.name}") from None


def _tags_of_role(ctx: Ctx, name: str) -> dict[str, str]:
    """The role's tags ({}: no such role). Any other error stops recover: a tag it could not
    read would silently make an owned resource look foreign."""
    try:
        return {t["Key"]: t["Value"] for t in ctx.aws.client("iam").list_role_tags(RoleName=name).get("Tags", [])}
    except ClientError as e:
        if is_not_found(e):
            return {}
        raise translate(e, f"reading the tags of role {name}") from None


def _tags_of_table(ctx: Ctx, name: str) -> dict[str, str]:
    ddb = ctx.aws.client("dynamodb")
    try:
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        # ListTagsOfResource pages (NextToken in the model), and the stack's tags may come last
        return {t["Key"]: t["Value"] for page in ddb.get_paginator("list_tags_of_resource").paginate(ResourceArn=arn)
                for t in page.get("Tags", [])}
    except ClientError as e:
        if is_not_found(e):
            return {}
        raise translate(e, f"reading the tags of DynamoDB table {name}") from None


def discover_stack_id(ctx: Ctx) -> str | None:
    """The stack id the live resources are tagged with (their stack name tag must match)."""
    n = ctx.names
    for tags in (_tags_of_role(ctx, n.firehose_role), _tags_of_role(ctx, n.transform_role),
                 _tags_of_table(ctx, n.source_table)):
        if tags.get(STACK_TAG) == n.stack and tags.get(STACK_ID_TAG):
            return tags[STACK_ID_TAG]
    return None


def _integration_made_here(ctx: Ctx) -> dict[str, Any] | None:
    """The outputs the integration's record had, when this stack made it (LF mode), else None."""
    from s3tstream.aws import policies

    role_name = policies.lf_integration_role_name(ctx.cfg)
    tags = _tags_of_role(ctx, role_name)
    if tags.get(STACK_TAG) != ctx.names.stack:
        return None
    ident = ctx.aws.identity()
    resource_arn = policies.s3tables_all_buckets_arn(ctx.cfg, ident)
    role_arn = policies.role_arn(ident, role_name)
    try:
        info = ctx.aws.client("lakeformation").describe_resource(ResourceArn=resource_arn)["ResourceInfo"]
    except ClientError as e:
        if is_not_found(e):  # EntityNotFoundException: bucket/* is not registered
            return None
        raise translate(e, f"describing the Lake Formation registration of {resource_arn}") from None
    if info.get("RoleArn") != role_arn:
        return None
    return {"id": "s3tablescatalog", "catalog": "s3tablescatalog", "mode": policies.MODE_LF, "role_name": role_name,
            "role_arn": role_arn, "resource_arn": resource_arn, "registered": True, "catalog_created": True}


def recover(ctx: Ctx) -> list[dict[str, str]]:
    """Rebuild ctx.state from the live resources; returns one row per resource looked at."""
    from s3tstream.provision import engine
    from s3tstream.provision.steps.grants import FirehoseRole, LfGrantResource

    state = ctx.state
    if not state.is_empty():
        raise StateError(
            f"the state {state.where} still records {len(state.doc.resources)} resources; recover only rebuilds a "
            "lost state", "run `s3tstream status` to see it; move it aside first if it is wrong; nothing was changed")
    stack_id = discover_stack_id(ctx)
    if stack_id and "stack_id" in type(state.doc).model_fields:
        state.doc.stack_id = stack_id  # type: ignore[attr-defined]
        state.save()
    rows: list[dict[str, str]] = []
    role_arn: str | None = None
    owned_kinds: set[str] = set()
    for info in engine.built_steps():
        for spec in engine.resources(ctx, info):
            obs = _observe(spec)
            row = {"step": info.name, "kind": spec.kind, "name": spec.name}
            if not obs.exists:
                rows.append({**row, "action": "absent", "detail": "does not exist"})
                continue
            made = _integration_made_here(ctx) if spec.kind == "s3tables-analytics-integration" else None
            if made is not None:
                ownership, detail = "owned", "its Lake Formation role is this stack's"
                obs.outputs = made
            elif obs.owned:
                ownership, detail = "owned", "tagged with this stack"
                if isinstance(spec, FirehoseRole):
                    role_arn = obs.id
            elif spec.kind == "kinesis-streaming-destination" and obs.conflict is None \
                    and {"dynamodb-table", "kinesis-stream"} <= owned_kinds:
                ownership, detail = "owned", "links this stack's table to this stack's stream"
            elif isinstance(spec, LfGrantResource) and role_arn and spec.grant.principal == role_arn:
                ownership, detail = "owned", "granted to this stack's Firehose role"
                obs.outputs = spec._outputs(list(spec.grant.permissions))
            elif obs.conflict is None and spec.adoptable and obs.owned is not True:
                ownership, detail = "adopted", "exists; recorded as adopted (never deleted by down)"
            else:
                rows.append({**row, "action": "skipped", "detail": obs.conflict or "exists but is not tagged as this stack's"})
                continue
            state.record(info.name, spec.kind, spec.name, status="present", id=obs.id, outputs=obs.outputs,
                         ownership=ownership)
            if ownership == "owned":
                owned_kinds.add(spec.kind)
            rows.append({**row, "action": ownership, "detail": detail})
            ctx.progress(f"recovered {spec.kind} {spec.name} ({ownership})")
    return rows
