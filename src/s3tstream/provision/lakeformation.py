"""Lake Formation: who the caller is to Lake Formation, the admin check, settings and grants.

- The grantor of a Lake Formation permission must be a data lake administrator (aws-notes).
  The admin list holds IAM role and user ARNs; an assumed-role session is compared by its role's
  ARN (with the role's path, read with iam:GetRole when allowed).
- ``put_data_lake_settings`` replaces the whole settings document, so the admin list is only
  ever changed by read-modify-write of the full document, keeping every other admin.
- The account's S3 Tables analytics integration is the Glue catalog ``s3tablescatalog``, in one
  of two access-control modes (aws-notes): IAM (the catalog's default permissions give
  IAM_ALLOWED_PRINCIPALS ALL; what the S3 console makes) or Lake Formation (bucket/* registered
  with Lake Formation). ``integration_mode`` tells which one this stack works with.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import error_code, is_not_found

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws, Identity
    from s3tstream.config.model import Config
    from s3tstream.aws.policies import LfGrant
    from s3tstream.provision.check import Check

INTEGRATION_CATALOG = "s3tablescatalog"
ASSUMED_ROLE_RE = re.compile(r"^arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/.+$")

MODE_LF, MODE_IAM = policies.MODE_LF, policies.MODE_IAM
MODE_TEXT = {MODE_LF: "Lake Formation access control", MODE_IAM: "IAM access control"}


def integration_fix(cfg: "Config") -> str:
    """How to get the integration, true for the mode the stack will work with."""
    wanted = cfg.lakeformation.integration_mode
    create = {
        MODE_LF: "set `[lakeformation] integrate = true` to let s3tstream create it with Lake Formation access control "
                 "(an IAM role for Lake Formation, register_resource, glue create_catalog)",
        MODE_IAM: "set `[lakeformation] integrate = true` to let s3tstream create it with IAM access control "
                  "(glue create_catalog with IAM_ALLOWED_PRINCIPALS default permissions)",
    }
    if wanted == MODE_LF:
        # the console's "Enable integration" makes IAM mode: sending this config there would not help
        return (f"{create[MODE_LF]}; the S3 console's \"Enable integration\" creates IAM access control, which this "
                "config refuses (set `[lakeformation] integration_mode = \"auto\"` to use it)")
    return ("enable the S3 Tables integration with AWS analytics services once for the account and Region "
            "(S3 console > Table buckets > Enable integration: IAM access control, which s3tstream then uses), or "
            + create[MODE_IAM if wanted == MODE_IAM else MODE_LF])


def role_arn_from_session(arn: str) -> str | None:
    """arn:<p>:sts::<acct>:assumed-role/<role>/<session> -> arn:<p>:iam::<acct>:role/<role> (no path)."""
    m = ASSUMED_ROLE_RE.match(arn)
    return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}" if m else None


def caller_principal(aws: "Aws") -> str:
    """The caller as a Lake Formation principal: the role ARN for an assumed-role session."""
    ident = aws.identity()
    m = ASSUMED_ROLE_RE.match(ident.arn)
    if not m:
        return ident.arn
    try:
        return str(aws.client("iam").get_role(RoleName=m.group(3))["Role"]["Arn"])  # keeps the role's path
    except ClientError:
        return role_arn_from_session(ident.arn) or ident.arn


def principal_for(ident: "Identity") -> str:
    """Pure form of caller_principal (no path lookup)."""
    return role_arn_from_session(ident.arn) or ident.arn


def get_settings(aws: "Aws") -> dict[str, Any]:
    return dict(aws.client("lakeformation").get_data_lake_settings().get("DataLakeSettings", {}))


def admins(settings: dict[str, Any]) -> list[str]:
    return [p.get("DataLakePrincipalIdentifier", "") for p in settings.get("DataLakeAdmins", [])]


def with_admin(settings: dict[str, Any], principal: str) -> dict[str, Any]:
    """The full settings document with principal added to DataLakeAdmins (others kept)."""
    out = dict(settings)
    cur = list(out.get("DataLakeAdmins", []))
    if principal not in admins(out):
        cur.append({"DataLakePrincipalIdentifier": principal})
    out["DataLakeAdmins"] = cur
    return out


def without_admin(settings: dict[str, Any], principal: str) -> dict[str, Any]:
    out = dict(settings)
    out["DataLakeAdmins"] = [p for p in out.get("DataLakeAdmins", []) if p.get("DataLakePrincipalIdentifier") != principal]
    return out


def get_integration(aws: "Aws") -> dict[str, Any] | None:
    """The account's s3tablescatalog catalog (Glue GetCatalog), or None when it has none."""
    try:
        return dict(aws.client("glue").get_catalog(CatalogId=INTEGRATION_CATALOG).get("Catalog") or {})
    except ClientError as e:
        if is_not_found(e):
            return None
        raise


def integration_exists(aws: "Aws") -> bool:
    return get_integration(aws) is not None


def _iam_allowed(perms: Any) -> bool:
    return any((p.get("Principal") or {}).get("DataLakePrincipalIdentifier") == policies.IAM_ALLOWED_PRINCIPALS
               for p in perms or [])


def catalog_mode(aws: "Aws", catalog: dict[str, Any]) -> str:
    """The access-control mode of an existing integration catalog (aws-notes): default
    permissions for IAM_ALLOWED_PRINCIPALS = IAM mode, default permissions without it = Lake
    Formation mode. A catalog shown without default permissions at all is told by
    lakeformation.describe_resource of bucket/*: registered = Lake Formation mode, not = IAM.
    UNCONFIRMED: whether GetCatalog always returns the default permissions of s3tablescatalog."""
    keys = ("CreateTableDefaultPermissions", "CreateDatabaseDefaultPermissions")
    if any(_iam_allowed(catalog.get(k)) for k in keys):
        return MODE_IAM
    if any(k in catalog for k in keys):
        return MODE_LF
    registered = registered_for_lake_formation(aws)
    return MODE_IAM if registered is False else MODE_LF


def registered_for_lake_formation(aws: "Aws") -> bool | None:
    """Whether bucket/* is registered with Lake Formation (None: not allowed to ask)."""
    ident = aws.identity()
    arn = f"arn:{ident.partition}:s3tables:{aws.region}:{ident.account}:bucket/*"
    try:
        aws.client("lakeformation").describe_resource(ResourceArn=arn)
        return True
    except ClientError as e:
        if is_not_found(e) or error_code(e) == "EntityNotFoundException":
            return False
        if error_code(e) in ("AccessDeniedException", "AccessDenied"):
            return None
        raise


class Integration:
    """The account's integration as this stack sees it: does it exist, in which mode, and the
    mode the stack works in (the configured one; with "auto" the account's, else Lake Formation)."""

    def __init__(self, cfg: "Config", aws: "Aws") -> None:
        self.catalog = get_integration(aws)
        self.account_mode = catalog_mode(aws, self.catalog) if self.catalog is not None else None
        wanted = cfg.lakeformation.integration_mode
        self.mode = (self.account_mode or MODE_LF) if wanted == "auto" else wanted
        self.wanted = wanted

    @property
    def exists(self) -> bool:
        return self.catalog is not None

    def conflict(self) -> str | None:
        """A configured mode the account's integration does not have (the integration is
        account-wide: s3tstream never changes its mode)."""
        if self.account_mode is None or self.wanted == "auto" or self.wanted == self.account_mode:
            return None
        return (f"the account's S3 Tables integration (s3tablescatalog) uses {MODE_TEXT[self.account_mode]}, but "
                f"lakeformation.integration_mode = \"{self.wanted}\"; set it to \"{self.account_mode}\" or \"auto\" "
                "(the integration is account-wide: every table bucket of the account and Region uses it)")


def foreign_readers(cfg: "Config", ident: "Identity") -> list[str]:
    """Readers (arn:<p>:iam::<account>:...) outside the caller's account: IAM mode cannot put an
    inline policy on them (IAM's PutRolePolicy/PutUserPolicy act on this account's principals)."""
    return [r for r in cfg.lakeformation.readers if r.split(":")[4] != ident.account]


def admin_fix(principal: str) -> str:
    return (
        f"ask a Lake Formation administrator to add {principal} to the data lake administrators (Lake Formation "
        "console > Administrative roles and tasks), or set `[lakeformation] make_caller_admin = true` to add it "
        "(s3tstream keeps every existing administrator; needs lakeformation:PutDataLakeSettings)"
    )


def admin_check(cfg: "Config", aws: "Aws") -> "Check":
    """Preflight: the integration exists in a mode the stack can use, and (Lake Formation mode
    only) the caller can grant Lake Formation permissions."""
    from s3tstream.provision.check import Check

    integ = Integration(cfg, aws)
    problems, fixes, notes = [], [], []
    if integ.mode == MODE_LF:
        principal = caller_principal(aws)
        if principal in admins(get_settings(aws)):
            notes.append(f"{principal} is a data lake administrator")
        elif cfg.lakeformation.make_caller_admin:
            notes.append(f"{principal} is not an administrator yet; grant-lf adds it (make_caller_admin = true)")
        else:
            problems.append(f"{principal} is not a Lake Formation data lake administrator, so it cannot grant permissions")
            fixes.append(admin_fix(principal))
    else:
        notes.append("IAM access control: no Lake Formation administrator or grant needed")
        foreign = foreign_readers(cfg, aws.identity())
        if foreign:
            problems.append(f"lakeformation.readers {', '.join(foreign)} belong to another account: in IAM mode each "
                            f"reader gets an inline policy, which only works on roles and users of this account "
                            f"({aws.identity().account})")
            fixes.append("remove them from lakeformation.readers and give them access from their own account")
    if integ.conflict():
        problems.append(integ.conflict())
        fixes.append(f"set `[lakeformation] integration_mode = \"{integ.account_mode}\"` (or \"auto\")")
    elif integ.exists:
        notes.append(f"S3 Tables analytics integration (s3tablescatalog) present, {MODE_TEXT[integ.mode]}")
    elif cfg.lakeformation.integrate:
        notes.append(f"S3 Tables analytics integration missing; grant-lf creates it with {MODE_TEXT[integ.mode]} "
                     "(integrate = true)")
    else:
        problems.append("the account's S3 Tables integration with AWS analytics services (Glue catalog s3tablescatalog) is missing")
        fixes.append(integration_fix(cfg))
    if problems:
        return Check("lake formation admin", False, "; ".join(problems), "; ".join(fixes))
    return Check("lake formation admin", True, "; ".join(notes))


# ------------------------------------------------------------------ grants
def _same_table(res: dict[str, Any], want: dict[str, Any]) -> bool:
    t = want["Table"]
    if "Table" in res:
        r = res["Table"]
        return (r.get("CatalogId"), r.get("DatabaseName"), r.get("Name")) == (t["CatalogId"], t["DatabaseName"], t["Name"])
    if "TableWithColumns" in res:  # SELECT on a whole table may be listed as all columns
        r = res["TableWithColumns"]
        wild = r.get("ColumnWildcard")
        return (r.get("CatalogId"), r.get("DatabaseName"), r.get("Name")) == (t["CatalogId"], t["DatabaseName"], t["Name"]) \
            and wild is not None and not wild.get("ExcludedColumnNames")
    return False


def _same_resource(res: dict[str, Any], want: dict[str, Any]) -> bool:
    if "Table" in want:
        return _same_table(res, want)
    if "Database" in want and "Database" in res:
        return (res["Database"].get("CatalogId"), res["Database"].get("Name")) == (
            want["Database"]["CatalogId"], want["Database"]["Name"])
    return res == want


def present_permissions(aws: "Aws", grant: "LfGrant") -> set[str]:
    """Permissions the grant's principal holds on the grant's resource (list_permissions first)."""
    lf = aws.client("lakeformation")
    out: set[str] = set()
    kwargs: dict[str, Any] = {
        "Principal": {"DataLakePrincipalIdentifier": grant.principal},
        "Resource": grant.resource,
    }
    while True:
        try:
            page = lf.list_permissions(**kwargs)
        except ClientError as e:
            if is_not_found(e):
                return out
            raise
        for p in page.get("PrincipalResourcePermissions", []):
            if p.get("Principal", {}).get("DataLakePrincipalIdentifier") != grant.principal:
                continue
            if _same_resource(p.get("Resource", {}), grant.resource):
                out.update(p.get("Permissions", []))
        token = page.get("NextToken")
        if not token:
            return out
        kwargs["NextToken"] = token


def missing_permissions(present: set[str], wanted: tuple[str, ...]) -> list[str]:
    if "ALL" in present:
        return []
    return [p for p in wanted if p not in present]
