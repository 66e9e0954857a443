"""Lake Formation: who the caller is to Lake Formation, the admin check, settings and grants.

- The grantor of a Lake Formation permission must be a data lake administrator (aws-notes).
  The admin list holds IAM role and user ARNs; an assumed-role session is compared by its role's
  ARN (with the role's path, read with iam:GetRole when allowed).
- ``put_data_lake_settings`` replaces the whole settings document, so the admin list is only
  ever changed by read-modify-write of the full document, keeping every other admin.
- The account's S3 Tables analytics integration is the Glue catalog ``s3tablescatalog``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from s3tstream.aws.client import is_not_found

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws, Identity
    from s3tstream.config.model import Config
    from s3tstream.aws.policies import LfGrant
    from s3tstream.provision.check import Check

INTEGRATION_CATALOG = "s3tablescatalog"
ASSUMED_ROLE_RE = re.compile(r"^arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/.+$")

INTEGRATION_FIX = (
    "enable the S3 Tables integration with AWS analytics services once for the account and Region "
    "(S3 console > Table buckets > Enable integration), or set `[lakeformation] integrate = true` "
    "to let s3tstream create it (an IAM role for Lake Formation, register_resource, glue create_catalog)"
)


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


def integration_exists(aws: "Aws") -> bool:
    try:
        aws.client("glue").get_catalog(CatalogId=INTEGRATION_CATALOG)
        return True
    except ClientError as e:
        if is_not_found(e):
            return False
        raise


def admin_fix(principal: str) -> str:
    return (
        f"ask a Lake Formation administrator to add {principal} to the data lake administrators (Lake Formation "
        "console > Administrative roles and tasks), or set `[lakeformation] make_caller_admin = true` to add it "
        "(s3tstream keeps every existing administrator; needs lakeformation:PutDataLakeSettings)"
    )


def admin_check(cfg: "Config", aws: "Aws") -> "Check":
    """Preflight: the caller can grant Lake Formation permissions, and the integration exists."""
    from s3tstream.provision.check import Check

    principal = caller_principal(aws)
    problems, fixes, notes = [], [], []
    if principal in admins(get_settings(aws)):
        notes.append(f"{principal} is a data lake administrator")
    elif cfg.lakeformation.make_caller_admin:
        notes.append(f"{principal} is not an administrator yet; grant-lf adds it (make_caller_admin = true)")
    else:
        problems.append(f"{principal} is not a Lake Formation data lake administrator, so it cannot grant permissions")
        fixes.append(admin_fix(principal))
    if integration_exists(aws):
        notes.append("S3 Tables analytics integration (s3tablescatalog) present")
    elif cfg.lakeformation.integrate:
        notes.append("S3 Tables analytics integration missing; grant-lf creates it (integrate = true)")
    else:
        problems.append("the account's S3 Tables integration with AWS analytics services (Glue catalog s3tablescatalog) is missing")
        fixes.append(INTEGRATION_FIX)
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
