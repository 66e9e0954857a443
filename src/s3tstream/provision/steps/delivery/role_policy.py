"""One inline policy on a role (the transform role's, and the Firehose role's delivery policy)."""

from __future__ import annotations

import json
from typing import Any, Callable

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import is_not_found
from s3tstream.errors import PlanError
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec


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
        self.ctx.judge(obs, tags)
        have = r["PolicyDocument"]
        if isinstance(have, str):
            have = json.loads(have)
        if policies.normalize(have) != policies.normalize(self.document()):
            obs.drift.append(Drift("policy document", fmt="{field}"))
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
    def owner(cls, ctx: Ctx, record: Any) -> tuple[str, str] | None:
        # inline policies take no tags: the role they are on must be this stack's (the
        # transform role is an iam-role, the delivery policy sits on grant-lf's firehose-role)
        role = record.outputs.get("role") or record.name.split("/", 1)[0]
        kind = "iam-role" if ctx.state.get("iam-role", role) is not None else "firehose-role"
        return (kind, role)

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        role = record.outputs.get("role") or record.name.split("/", 1)[0]
        policy = record.outputs.get("policy") or record.name.split("/", 1)[1]
        try:
            ctx.aws.client("iam").delete_role_policy(RoleName=role, PolicyName=policy)
        except ClientError as e:
            if not is_not_found(e):
                raise

