"""An IAM role with its trust policy (the transform Lambda's)."""

from __future__ import annotations

import json
from typing import Any, Callable

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import error_code, is_not_found
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec
from s3tstream.provision.steps.delivery.common import tags_list
from s3tstream.provision.steps.grants import role_tags


class Role(ResourceSpec):
    """An IAM role with its trust policy (permissions are separate iam-role-policy resources)."""

    kind = "iam-role"
    taggable = True

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
        self.ctx.judge(obs, tags)
        have = r.get("AssumeRolePolicyDocument")
        if isinstance(have, str):
            have = json.loads(have)
        if policies.normalize(have) != policies.normalize(self.trust()):
            obs.drift.append(Drift("trust policy", fmt="{field}"))
        return obs

    def create(self) -> dict[str, Any]:
        iam = self.ctx.aws.client("iam")
        try:
            r = iam.create_role(
                RoleName=self.role,
                AssumeRolePolicyDocument=json.dumps(self.trust()),
                Description=self.description,
                Tags=tags_list(self.ctx.tags()),
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
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        ctx.aws.client("iam").tag_role(RoleName=record.name, Tags=tags_list(tags))

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        return role_tags(ctx, record.name)

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

