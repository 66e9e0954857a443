"""grant-lf: the S3 Tables analytics integration, the caller as Lake Formation admin, the
Firehose delivery role (with its Glue/Lake Formation inline policy) and its Lake Formation grants.

The integration has two access-control modes (lakeformation.Integration): in Lake Formation
mode all of the below; in IAM mode there is no admin and no grant: the Firehose role's inline
policy carries the s3tables actions on this bucket and table, and each reader gets an inline
policy (5. below) instead of grants.

Resources, in creation order (`down` walks them backwards: grants are revoked before the role
is deleted, while the caller is still an administrator):
1. s3tables-analytics-integration: the Glue catalog s3tablescatalog. Present: adopted (never
   deleted). Missing: created with `lakeformation.integrate = true` (an IAM role trusted by
   lakeformation.amazonaws.com, register_resource with federation, create_catalog; aws-notes),
   otherwise exit 2 saying how.
2. lf-data-lake-admin: the caller in DataLakeAdmins. Already there: adopted. Missing: added with
   `lakeformation.make_caller_admin = true` (read-modify-write of the whole settings; the other
   admins are kept), otherwise exit 2 with the fix. `down` leaves the caller an administrator.
3. firehose-role: trusted by firehose.amazonaws.com (aws:SourceAccount), inline policy
   policies.LAKE_POLICY_NAME. create-firehose adds its delivery policy to the same role.
4. lf-grant, one per (principal, resource): only the permissions missing are granted
   (list_permissions first); the record keeps exactly what this stack granted, so `down`
   revokes exactly that. A grant that was already complete is adopted (never revoked).
5. iam-reader-policy (IAM mode), one per reader: the inline policy s3tstream-<stack>-read on the
   reader's role or user; its stack-named policy name is the proof that it is ours (IAM inline
   policies take no tags), and `down` deletes only that policy.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from s3tstream.provision import lakeformation as lfm
from s3tstream.aws import policies
from s3tstream.aws.client import error_code, error_message, is_not_found, unless_gone, wait_until
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec, tag_map

def canon(doc: Any) -> str:
    """Canonical JSON of a policy document (IAM may hand back one-element lists as scalars)."""

    def norm(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items()}
        if isinstance(x, list):
            items = [norm(v) for v in x]
            return items[0] if len(items) == 1 else sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        return x

    if isinstance(doc, str):
        doc = json.loads(doc)
    return json.dumps(norm(doc), sort_keys=True)


# ------------------------------------------------------------------ IAM role helpers
def ensure_role(ctx: Ctx, name: str, trust: dict[str, Any], policies_: dict[str, dict[str, Any]], description: str) -> str:
    """Create the role (or bring an existing one's trust in line) and put its inline policies."""
    iam = ctx.aws.client("iam")
    try:
        arn = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Description=description,
            Tags=[{"Key": k, "Value": v} for k, v in ctx.tags().items()],
        )["Role"]["Arn"]
    except ClientError as e:
        if error_code(e) != "EntityAlreadyExists":
            raise
        role = iam.get_role(RoleName=name)["Role"]
        arn = role["Arn"]
        have = role.get("AssumeRolePolicyDocument")
        if isinstance(have, str):
            from urllib.parse import unquote

            have = json.loads(unquote(have))
        if policies.normalize(have) != policies.normalize(trust):
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
    for pname, doc in policies_.items():
        iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=json.dumps(doc))

    ctx.wait_for(lambda: iam.get_role(RoleName=name), f"role {name}")
    return str(arn)


def role_tags(ctx: Ctx, name: str) -> dict[str, str] | None:
    """A role's live tags (None: no such role)."""
    got = unless_gone(lambda: ctx.aws.client("iam").list_role_tags(RoleName=name))
    return None if got is None else tag_map(got.get("Tags", []))


def delete_role(ctx: Ctx, name: str) -> str | None:
    """Inline policies (ours and create-firehose's), attached policies, then the role; only when
    its live tags still say it is this stack's (else: why it was kept, for `down` to report). The
    engine checks recorded roles before (engine.not_ours); this also covers the integration's
    role, which is recorded under the catalog."""
    iam = ctx.aws.client("iam")
    tags = role_tags(ctx, name)
    if tags is None:
        return None  # gone
    if not ctx.owns(tags):
        return f"kept IAM role {name}: its live tags do not name this stack"
    try:
        for pname in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
            try:
                iam.delete_role_policy(RoleName=name, PolicyName=pname)
            except ClientError as e:
                if not is_not_found(e):
                    raise
        for att in iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []):
            iam.detach_role_policy(RoleName=name, PolicyArn=att["PolicyArn"])
        iam.delete_role(RoleName=name)
    except ClientError as e:
        if not is_not_found(e):
            raise
    return None


def integration(ctx: Ctx) -> lfm.Integration:
    """The account's integration and the stack's mode, read once per command (kept in ctx.options)."""
    got = ctx.options.get("_integration")
    if got is None:
        got = ctx.options["_integration"] = lfm.Integration(ctx.cfg, ctx.aws)
    return got


# ------------------------------------------------------------------ 1. integration
class AnalyticsIntegration(ResourceSpec):
    kind = "s3tables-analytics-integration"
    adoptable = True  # the usual case: the account already has it; never deleted then
    # Every table bucket of the account (in the Region) is reached through it: `down` keeps it
    # unless --include-shared, and then only when no other table bucket is left.
    shared = True

    @property
    def name(self) -> str:
        return lfm.INTEGRATION_CATALOG

    def observe(self) -> Observed:
        integ = lfm.Integration(self.ctx.cfg, self.ctx.aws)
        if integ.exists:
            if integ.conflict():
                return Observed(exists=True, id=self.name, owned=False, conflict=integ.conflict())
            return Observed(exists=True, id=self.name, owned=False,
                            outputs={"catalog": self.name, "mode": integ.account_mode})
        if not self.ctx.cfg.lakeformation.integrate:
            return Observed(
                exists=False,
                conflict=f"the account's S3 Tables integration with AWS analytics services is missing in "
                f"{self.ctx.cfg.stack.region} (no Glue catalog s3tablescatalog); {lfm.integration_fix(self.ctx.cfg)}",
            )
        return Observed(exists=False)

    def _wait_visible(self) -> None:
        aws = self.ctx.aws

        def visible() -> tuple[bool, str]:
            return lfm.integration_exists(aws), "waiting for s3tablescatalog"

        wait_until(visible, "S3 Tables analytics integration", timeout=self.ctx.timeout, interval=self.ctx.poll,
                   progress=self.ctx.progress)

    def create(self) -> dict[str, Any]:
        if integration(self.ctx).mode == lfm.MODE_IAM:
            return self._create_iam_mode()
        cfg, aws = self.ctx.cfg, self.ctx.aws
        ident = aws.identity()
        role_name = policies.lf_integration_role_name(cfg)
        # the role is ours from the moment CreateRole may have run
        self.ctx.state.record("grant-lf", self.kind, self.name, outputs={"role_name": role_name})
        role_arn = ensure_role(
            self.ctx, role_name, policies.lf_integration_trust(cfg, ident),
            {policies.LF_INTEGRATION_POLICY_NAME: policies.lf_integration_policy(cfg, ident)},
            "Lake Formation access to S3 Tables (s3tstream analytics integration)",
        )
        resource_arn = policies.s3tables_all_buckets_arn(cfg, ident)
        # Record only what this stack made, so `down` undoes exactly that: a registration or a
        # catalog found in place (a half-done integration) is used and left alone. Each intent
        # is recorded before its call: after a kill, AlreadyExists on a resume is then ours.
        rec = self.ctx.state.get(self.kind, self.name)
        prev = dict(rec.outputs) if rec else {}

        def note(**outputs: Any) -> None:
            self.ctx.state.record("grant-lf", self.kind, self.name, outputs=outputs)

        note(role_name=role_name, role_arn=role_arn, resource_arn=resource_arn)
        registered = catalog_made = True
        note(registered=True)
        try:
            aws.client("lakeformation").register_resource(
                ResourceArn=resource_arn, RoleArn=role_arn, WithFederation=True, WithPrivilegedAccess=True,
            )
        except ClientError as e:
            if error_code(e) != "AlreadyExistsException":
                raise
            registered = bool(prev.get("registered"))
        note(registered=registered, catalog_created=True)
        glue = aws.client("glue")
        try:
            glue.create_catalog(Name=lfm.INTEGRATION_CATALOG,
                                CatalogInput=policies.glue_integration_catalog_input(cfg, ident, lfm.MODE_LF))
        except ClientError as e:
            if error_code(e) != "AlreadyExistsException":  # AlreadyExists is success (aws-notes)
                raise
            catalog_made = bool(prev.get("catalog_created"))
        note(catalog_created=catalog_made)
        self._wait_visible()
        return {"id": self.name, "catalog": self.name, "mode": lfm.MODE_LF, "role_name": role_name, "role_arn": role_arn,
                "resource_arn": resource_arn, "registered": registered, "catalog_created": catalog_made}

    def _create_iam_mode(self) -> dict[str, Any]:
        """IAM access control, as the S3 console makes it: only the catalog, with
        IAM_ALLOWED_PRINCIPALS default permissions; no Lake Formation role or registration."""
        cfg, aws = self.ctx.cfg, self.ctx.aws
        rec = self.ctx.state.get(self.kind, self.name)
        prev = dict(rec.outputs) if rec else {}
        # intent first: AlreadyExists on a resume after a kill is then ours
        self.ctx.state.record("grant-lf", self.kind, self.name, outputs={"mode": lfm.MODE_IAM, "catalog_created": True})
        made = True
        try:
            aws.client("glue").create_catalog(
                Name=lfm.INTEGRATION_CATALOG,
                CatalogInput=policies.glue_integration_catalog_input(cfg, aws.identity(), lfm.MODE_IAM))
        except ClientError as e:
            if error_code(e) != "AlreadyExistsException":
                raise
            made = bool(prev.get("catalog_created"))
        self.ctx.state.record("grant-lf", self.kind, self.name, outputs={"catalog_created": made})
        self._wait_visible()
        return {"id": self.name, "catalog": self.name, "mode": lfm.MODE_IAM, "catalog_created": made}

    @classmethod
    def in_use(cls, ctx: Ctx, record: Any) -> str | None:
        ours = {r.id for r in ctx.state.doc.resources if r.kind == "s3tables-table-bucket" and r.ownership == "owned"}
        others = [b["name"] for page in ctx.aws.client("s3tables").get_paginator("list_table_buckets").paginate()
                  for b in page.get("tableBuckets", []) if b["arn"] not in ours]
        if others:
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            return f"still used by table bucket(s) {', '.join(others[:3])}{more}"
        return None

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        out = record.outputs
        if out.get("catalog_created", True):
            try:
                ctx.aws.client("glue").delete_catalog(CatalogId=lfm.INTEGRATION_CATALOG)
            except ClientError as e:
                if not is_not_found(e):
                    raise
        if out.get("resource_arn") and out.get("registered", True):
            try:
                ctx.aws.client("lakeformation").deregister_resource(ResourceArn=out["resource_arn"])
            except ClientError as e:
                if not is_not_found(e):
                    raise
        if out.get("role_name"):
            return delete_role(ctx, out["role_name"])
        return None


# ------------------------------------------------------------------ 2. admin
class DataLakeAdmin(ResourceSpec):
    kind = "lf-data-lake-admin"
    adoptable = True  # an admin before the stack stays an admin after `down`
    shared = True  # other stacks of the account revoke their grants through it
    never_removed = True

    _principal: str | None = None

    @property
    def name(self) -> str:
        if self._principal is None:
            self._principal = lfm.caller_principal(self.ctx.aws)
        return self._principal

    def observe(self) -> Observed:
        principal = self.name
        if principal in lfm.admins(lfm.get_settings(self.ctx.aws)):
            return Observed(exists=True, id=principal, owned=False, outputs={"principal": principal})
        if not self.ctx.cfg.lakeformation.make_caller_admin:
            return Observed(
                exists=False,
                conflict=f"{principal} is not a Lake Formation data lake administrator, so it cannot grant the "
                f"Firehose role its permissions; {lfm.admin_fix(principal)}",
            )
        return Observed(exists=False)

    def create(self) -> dict[str, Any]:
        principal = self.name
        lf = self.ctx.aws.client("lakeformation")
        settings = lfm.get_settings(self.ctx.aws)  # read-modify-write: put replaces the whole document
        lf.put_data_lake_settings(DataLakeSettings=lfm.with_admin(settings, principal))
        self.ctx.progress(f"added {principal} to the Lake Formation administrators (kept {len(lfm.admins(settings))} others)")
        return {"id": principal, "principal": principal}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        """Left in place: being an administrator is a capability other stacks of the account may
        rely on (their `down` must still revoke their grants). Removing it is the user's call."""
        principal = record.outputs.get("principal") or record.name
        ctx.progress(f"left {principal} a Lake Formation administrator (remove it in the Lake Formation console if you wish)")


# ------------------------------------------------------------------ 3. Firehose role
class FirehoseRole(ResourceSpec):
    kind = "firehose-role"
    taggable = True

    @property
    def name(self) -> str:
        return self.ctx.names.firehose_role

    def _iam(self) -> Any:
        return self.ctx.aws.client("iam")

    def _trust(self) -> dict[str, Any]:
        return policies.firehose_trust(self.ctx.cfg, self.ctx.aws.identity())

    def _lake(self) -> dict[str, Any]:
        return policies.firehose_lake_policy(self.ctx.cfg, self.ctx.aws.identity(), integration(self.ctx).mode)

    def observe(self) -> Observed:
        iam = self._iam()
        try:
            role = iam.get_role(RoleName=self.name)["Role"]
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        obs = Observed(exists=True, id=role["Arn"], outputs={"arn": role["Arn"], "name": self.name})
        tags = iam.list_role_tags(RoleName=self.name).get("Tags", [])
        self.ctx.judge(obs, tags)
        if canon(role.get("AssumeRolePolicyDocument", {})) != canon(self._trust()):
            obs.drift.append(Drift("trust policy", fmt="{field}"))
        try:
            doc = iam.get_role_policy(RoleName=self.name, PolicyName=policies.LAKE_POLICY_NAME)["PolicyDocument"]
            if canon(doc) != canon(self._lake()):
                obs.drift.append(Drift("inline policy", fmt=f"inline policy {policies.LAKE_POLICY_NAME}"))
        except ClientError as e:
            if not is_not_found(e):
                raise
            obs.drift.append(Drift("inline policy", fmt=f"inline policy {policies.LAKE_POLICY_NAME} missing"))
        return obs

    def create(self) -> dict[str, Any]:
        arn = ensure_role(self.ctx, self.name, self._trust(), {policies.LAKE_POLICY_NAME: self._lake()},
                          f"Firehose delivery role of s3tstream stack {self.ctx.names.stack}")
        return {"id": arn, "arn": arn, "name": self.name}

    def update(self, observed: Observed) -> dict[str, Any]:
        iam = self._iam()
        if observed.drifted("trust policy"):
            iam.update_assume_role_policy(RoleName=self.name, PolicyDocument=json.dumps(self._trust()))
        if observed.drifted("inline policy"):
            iam.put_role_policy(RoleName=self.name, PolicyName=policies.LAKE_POLICY_NAME, PolicyDocument=json.dumps(self._lake()))
        return {}

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        ctx.aws.client("iam").tag_role(RoleName=record.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        return role_tags(ctx, record.name)

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        return delete_role(ctx, record.name)


# ------------------------------------------------------------------ 4. grants
def _grant(ctx: Ctx, grant: policies.LfGrant, perms: list[str]) -> None:
    lf = ctx.aws.client("lakeformation")

    def attempt() -> tuple[bool, str]:
        try:
            lf.grant_permissions(**grant.request(perms))
            return True, "granted"
        except ClientError as e:
            # A role created seconds ago may not be known to Lake Formation yet (IAM is eventually
            # consistent). UNCONFIRMED: the exact error; we retry InvalidInputException naming the principal.
            if error_code(e) == "InvalidInputException" and "principal" in error_message(e).lower():
                return False, "waiting for the principal to be known"
            raise

    wait_until(attempt, f"granting {', '.join(perms)} on {grant.label}", timeout=min(ctx.timeout, 180),
               interval=ctx.poll, progress=ctx.progress)


class LfGrantResource(ResourceSpec):
    kind = "lf-grant"
    adoptable = True  # complete before the stack: someone else's grant, never revoked by `down`
    # grants on a table the config no longer names are revoked by `up` (the database grant stays named)
    per_table = True

    def __init__(self, ctx: Ctx, grant: policies.LfGrant) -> None:
        super().__init__(ctx)
        self.grant = grant

    @property
    def name(self) -> str:
        return self.grant.name

    @property
    def table(self) -> str | None:
        return (self.grant.resource.get("Table") or {}).get("Name")  # None: the database grant

    def _outputs(self, granted: list[str]) -> dict[str, Any]:
        return {"id": self.name, "principal": self.grant.principal, "resource": self.grant.resource,
                "permissions": list(self.grant.permissions), "granted": sorted(set(granted))}

    def observe(self) -> Observed:
        present = lfm.present_permissions(self.ctx.aws, self.grant)
        missing = lfm.missing_permissions(present, self.grant.permissions)
        rec = self.ctx.state.get(self.kind, self.name)
        if rec is None:
            if missing:
                return Observed(exists=False)
            return Observed(exists=True, id=self.name, owned=False, outputs=self._outputs([]))
        obs = Observed(exists=True, id=self.name, outputs=self._outputs(rec.outputs.get("granted", [])))
        if missing:
            obs.drift.append(Drift("permissions", new=missing, fmt="missing " + ", ".join(missing)))
        return obs

    def create(self) -> dict[str, Any]:
        present = lfm.present_permissions(self.ctx.aws, self.grant)
        missing = lfm.missing_permissions(present, self.grant.permissions)
        rec = self.ctx.state.get(self.kind, self.name)
        # a resume after a kill between GrantPermissions and the save: those are ours too
        granted = list(rec.outputs.get("granted", [])) if rec else []
        if missing:
            # intent before the call, so `down` revokes it even if the run dies right after
            self.ctx.state.record("grant-lf", self.kind, self.name, outputs=self._outputs(granted + missing))
            _grant(self.ctx, self.grant, missing)
        return self._outputs(granted + missing)

    def update(self, observed: Observed) -> dict[str, Any]:
        present = lfm.present_permissions(self.ctx.aws, self.grant)
        missing = lfm.missing_permissions(present, self.grant.permissions)
        rec = self.ctx.state.get(self.kind, self.name)
        before = rec.outputs.get("granted", []) if rec else []
        if missing:
            self.ctx.state.record("grant-lf", self.kind, self.name, outputs=self._outputs(before + missing))
            _grant(self.ctx, self.grant, missing)
        return self._outputs(before + missing)

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> str | None:
        out = record.outputs
        granted = list(out.get("granted", []))
        if not granted:
            return
        grant = policies.LfGrant("recorded", out["principal"], out["resource"], tuple(out.get("permissions", granted)))
        present = lfm.present_permissions(ctx.aws, grant)
        # "ALL" held: revoke only what we granted (when we granted ALL, that is ALL)
        to_revoke = [p for p in granted if p in present]
        if not to_revoke:
            return
        try:
            ctx.aws.client("lakeformation").revoke_permissions(**grant.request(to_revoke))
        except ClientError as e:
            if is_not_found(e) or error_code(e) == "InvalidInputException":
                return  # already revoked
            raise


# ------------------------------------------------------------------ 5. readers (IAM mode)
class ReaderPolicy(ResourceSpec):
    kind = "iam-reader-policy"

    def __init__(self, ctx: Ctx, reader: str) -> None:
        super().__init__(ctx)
        self.reader = reader

    @property
    def name(self) -> str:
        return self.reader

    @staticmethod
    def _target(reader: str) -> tuple[str, str]:
        """("role" | "user", its name) from the reader's ARN (the path is not part of the name)."""
        kind, _, rest = reader.split(":", 5)[5].partition("/")
        return kind, rest.rsplit("/", 1)[-1]

    def _doc(self) -> dict[str, Any]:
        return policies.reader_policy(self.ctx.cfg, self.ctx.aws.identity())

    def observe(self) -> Observed:
        if self.reader.split(":")[4] != self.ctx.aws.identity().account:
            # the name alone would address this account's same-named role or user
            return Observed(exists=False, conflict=f"reader {self.reader} is in another account: IAM mode puts an "
                            "inline policy on each reader, which works only for this account's roles and users")
        kind, name = self._target(self.reader)
        iam, pname = self.ctx.aws.client("iam"), policies.reader_policy_name(self.ctx.cfg)
        try:
            if kind == "role":
                doc = iam.get_role_policy(RoleName=name, PolicyName=pname)["PolicyDocument"]
            else:
                doc = iam.get_user_policy(UserName=name, PolicyName=pname)["PolicyDocument"]
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        # the stack-named inline policy is this stack's (IAM inline policies take no tags)
        obs = Observed(exists=True, id=self.reader, owned=True, outputs={"reader": self.reader, "policy": pname})
        if canon(doc) != canon(self._doc()):
            obs.drift.append(Drift("inline policy", new=pname, fmt="inline policy {new}"))
        return obs

    def create(self) -> dict[str, Any]:
        kind, name = self._target(self.reader)
        iam, pname = self.ctx.aws.client("iam"), policies.reader_policy_name(self.ctx.cfg)
        doc = json.dumps(self._doc())
        if kind == "role":
            iam.put_role_policy(RoleName=name, PolicyName=pname, PolicyDocument=doc)
        else:
            iam.put_user_policy(UserName=name, PolicyName=pname, PolicyDocument=doc)
        return {"id": self.reader, "reader": self.reader, "policy": pname}

    def update(self, observed: Observed) -> dict[str, Any]:
        return self.create()

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        reader, pname = record.outputs.get("reader") or record.name, record.outputs.get("policy")
        if not pname:
            return
        kind, name = cls._target(reader)
        iam = ctx.aws.client("iam")
        if kind == "role":
            iam.delete_role_policy(RoleName=name, PolicyName=pname)
        else:
            iam.delete_user_policy(UserName=name, PolicyName=pname)


def resources(ctx: Ctx) -> list[ResourceSpec]:
    ident = ctx.aws.identity()
    if integration(ctx).mode == lfm.MODE_IAM:
        # IAM access control: no Lake Formation admin and no grant; IAM policies instead
        return [AnalyticsIntegration(ctx), FirehoseRole(ctx), *(ReaderPolicy(ctx, r) for r in ctx.cfg.lakeformation.readers)]
    out: list[ResourceSpec] = [AnalyticsIntegration(ctx), DataLakeAdmin(ctx), FirehoseRole(ctx)]
    out += [LfGrantResource(ctx, g) for g in policies.lf_grants(ctx.cfg, ident)]
    return out

