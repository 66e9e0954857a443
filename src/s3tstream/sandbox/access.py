"""Who may reach an S3 table: the two access-control modes of the S3 Tables analytics integration.

The account's mode is read from its ``s3tablescatalog`` catalog (glue ext), as the tool reads
it: default permissions for IAM_ALLOWED_PRINCIPALS = IAM mode, otherwise Lake Formation mode
(aws-notes, "Settled since the first build").

- Lake Formation mode: a table is reached through Lake Formation grants (lakeformation ext).
- IAM mode: the principal's own IAM policies must allow the s3tables actions on the table bucket
  and table (and the Glue actions on the s3tablescatalog objects); no grant is looked at.

IAM policies are read from moto's IAM backend (inline and attached policies of a role or user)
and evaluated here: an explicit Deny wins, else an Allow whose Action, Resource and Condition
match. Conditions: StringEquals/StringLike (and their IfExists forms) against the request's
context keys; any other operator never matches, so an Allow that depends on one is not granted.
(moto's own evaluator turns a failed condition on an Allow into a Deny, hence this one.)
A caller that is no IAM role or user in the sandbox (its default credentials, standing for the
account's administrator) is not checked.
"""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any
from urllib.parse import unquote

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.iam.models import iam_backends  # noqa: E402

MODE_LF, MODE_IAM = "lakeformation", "iam"
IAM_PRINCIPAL_RE = re.compile(r"^arn:([^:]+):iam::(\d{12}):(role|user)/(?:.*/)?([\w+=,.@-]+)$")
# Firehose's documented destination error codes (aws-notes): S3.AccessDenied for the table's
# storage (s3tables actions), Glue.AccessDenied for the catalog.
S3_ACCESS_DENIED = "S3.AccessDenied"
GLUE_ACCESS_DENIED = "Glue.AccessDenied"

FIREHOSE_S3TABLES_ACTIONS = (
    "s3tables:GetTableBucket", "s3tables:GetNamespace", "s3tables:GetTable", "s3tables:GetTableMetadataLocation",
    "s3tables:UpdateTableMetadataLocation", "s3tables:GetTableData", "s3tables:PutTableData",
)
READER_S3TABLES_ACTIONS = (
    "s3tables:GetTableBucket", "s3tables:GetNamespace", "s3tables:GetTable", "s3tables:GetTableMetadataLocation",
    "s3tables:GetTableData",
)
BUCKET_ACTIONS = ("s3tables:GetTableBucket", "s3tables:GetNamespace")


# ------------------------------------------------------------------ the account's mode
def integration_mode(account: str, region: str) -> str | None:
    """The mode of the account's integration, None without one."""
    from s3tstream.sandbox.services import glue as glue_ext

    with glue_ext._lock:
        cat = glue_ext._catalogs.get((account, region), {}).get("s3tablescatalog")
        if cat is None:
            return None
        perms = list(cat.get("CreateTableDefaultPermissions") or []) + list(cat.get("CreateDatabaseDefaultPermissions") or [])
    iam = any((p.get("Principal") or {}).get("DataLakePrincipalIdentifier") == "IAM_ALLOWED_PRINCIPALS" for p in perms)
    return MODE_IAM if iam else MODE_LF


# ------------------------------------------------------------------ IAM evaluation
def _documents(account: str, principal: str) -> list[dict[str, Any]] | None:
    """The policy documents of an IAM role or user of the sandbox; None: not an IAM entity here."""
    m = IAM_PRINCIPAL_RE.match(principal)
    if not m or m.group(2) != account:
        return None
    backend = iam_backends[account][m.group(1)]
    try:
        entity = backend.get_role(m.group(4)) if m.group(3) == "role" else backend.get_user(m.group(4))
    except Exception:  # noqa: BLE001 - moto's NoSuchEntity
        return None
    docs = []
    for raw in list(entity.policies.values()):
        docs.append(json.loads(unquote(raw) if isinstance(raw, str) and raw.startswith("%") else raw))
    for pol in list(entity.managed_policies.values()):
        version = next((v for v in pol.versions if v.is_default), None)
        if version is not None:
            doc = version.document
            docs.append(json.loads(unquote(doc) if doc.startswith("%") else doc))
    return docs


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _matches(patterns: Any, value: str, *, ignore_case: bool = False) -> bool:
    for p in _as_list(patterns):
        if ignore_case:
            if fnmatch.fnmatchcase(value.lower(), str(p).lower()):
                return True
        elif fnmatch.fnmatchcase(value, str(p)):
            return True
    return False


def _condition_holds(cond: dict[str, Any], context: dict[str, str]) -> bool:
    ctx = {k.lower(): v for k, v in context.items()}
    for op, pairs in cond.items():
        base = op.removesuffix("IfExists")
        if base not in ("StringEquals", "StringLike") or not isinstance(pairs, dict):
            return False  # not evaluated here: the statement is not applied
        for key, want in pairs.items():
            have = ctx.get(key.lower())
            if have is None:
                if op.endswith("IfExists"):
                    continue
                return False
            ok = have in [str(w) for w in _as_list(want)] if base == "StringEquals" else _matches(want, have)
            if not ok:
                return False
    return True


def iam_allows(account: str, principal: str, action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """Whether principal's IAM policies allow action on resource (True for a caller that is no
    IAM role or user of the sandbox: not checked)."""
    docs = _documents(account, principal)
    if docs is None:
        return True
    allowed = False
    for doc in docs:
        for st in _as_list(doc.get("Statement", [])):
            if "Action" in st and not _matches(st["Action"], action, ignore_case=True):
                continue
            if "NotAction" in st and _matches(st["NotAction"], action, ignore_case=True):
                continue
            if "Resource" in st and not _matches(st["Resource"], resource):
                continue
            if "NotResource" in st and _matches(st["NotResource"], resource):
                continue
            if st.get("Condition") and not _condition_holds(st["Condition"], context or {}):
                continue
            if st.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


def checked(account: str, principal: str) -> bool:
    """Whether the sandbox checks this caller's permissions (an IAM role or user it knows)."""
    return _documents(account, principal) is not None


# ------------------------------------------------------------------ ARNs
def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def glue_table_arns(account: str, region: str, bucket: str, db: str, table: str) -> list[str]:
    p = _partition(region)
    return [f"arn:{p}:glue:{region}:{account}:catalog", f"arn:{p}:glue:{region}:{account}:catalog/s3tablescatalog",
            f"arn:{p}:glue:{region}:{account}:catalog/s3tablescatalog/{bucket}",
            f"arn:{p}:glue:{region}:{account}:database/s3tablescatalog/{bucket}/{db}",
            f"arn:{p}:glue:{region}:{account}:table/s3tablescatalog/{bucket}/{db}/{table}"]


def _table_arns(account: str, region: str, bucket: str, db: str, table: str) -> tuple[str, str]:
    """(bucket ARN, table ARN) from the s3tables backend (the table's ARN ends in its id)."""
    from moto.s3tables.models import s3tables_backends

    b = next((x for x in s3tables_backends[account][region].table_buckets.values() if x.name == bucket), None)
    bucket_arn = b.arn if b is not None else f"arn:{_partition(region)}:s3tables:{region}:{account}:bucket/{bucket}"
    t = b.namespaces.get(db).tables.get(table) if b is not None and db in b.namespaces else None
    return bucket_arn, (t.arn if t is not None else f"{bucket_arn}/table/{db}.{table}")


def s3tables_denied(account: str, region: str, principal: str, action: str, bucket: str, db: str | None,
                    table: str | None, *, bucket_arn: str | None = None, table_arn: str | None = None) -> str | None:
    """AWS's AccessDenied text when principal may not run the s3tables action, else None."""
    if bucket_arn is None or (table and table_arn is None):
        b_arn, t_arn = _table_arns(account, region, bucket, db or "", table or "")
        bucket_arn, table_arn = bucket_arn or b_arn, table_arn or t_arn
    on_table = action not in BUCKET_ACTIONS and table is not None
    resource = table_arn if on_table else bucket_arn
    ctx = {"s3tables:namespace": db or "", **({"s3tables:tableName": table} if table else {})}
    if iam_allows(account, principal, action, str(resource), ctx):
        return None
    return (f"User: {principal} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action")


# ------------------------------------------------------------------ what each reader needs
def firehose_denied(account: str, region: str, role: str, bucket: str, db: str, table: str,
                    lf_permissions: list[str]) -> tuple[str, str] | None:
    """(error code, message) when the Firehose role may not write the table in the account's
    mode, else None. Lake Formation mode: the grants named (the role's IAM is not modelled
    there); IAM mode: Glue then s3tables IAM permissions."""
    mode = integration_mode(account, region)
    if mode == MODE_IAM:
        glue_arn = glue_table_arns(account, region, bucket, db, table)[-1]
        for action in ("glue:GetTable", "glue:UpdateTable"):
            if not iam_allows(account, role, action, glue_arn):
                return GLUE_ACCESS_DENIED, (f"Role {role} is not authorized to perform: {action} on resource: {glue_arn} "
                                            "(IAM access control: no identity-based policy allows it)")
        for action in FIREHOSE_S3TABLES_ACTIONS:
            msg = s3tables_denied(account, region, role, action, bucket, db, table)
            if msg:
                return S3_ACCESS_DENIED, msg
        return None
    from s3tstream.sandbox.services import lakeformation as lf_ext

    catalog_id = f"{account}:s3tablescatalog/{bucket}"
    for perm in lf_permissions:
        if not lf_ext.has_table_permission(account, catalog_id, db, table, role, perm, region=region):
            # UNCONFIRMED: a missing DESCRIBE fails the table load (Glue.AccessDenied); a missing
            # INSERT/DELETE fails the data access (S3.AccessDenied)
            code = GLUE_ACCESS_DENIED if perm == "DESCRIBE" else S3_ACCESS_DENIED
            return code, (f"Role {role} is not authorized to perform {perm} on table {db}.{table} in "
                                        f"catalog {catalog_id}: insufficient Lake Formation permission(s); grant it "
                                        "with Lake Formation.")
    return None


def create_time_denied(account: str, region: str, role: str, bucket: str, db: str, table: str) -> bool:
    """Firehose's glue:GetTable at stream creation: IAM (IAM mode) or Lake Formation DESCRIBE."""
    mode = integration_mode(account, region)
    if mode is None:
        return True
    if mode == MODE_IAM:
        return not iam_allows(account, role, "glue:GetTable", glue_table_arns(account, region, bucket, db, table)[-1])
    from s3tstream.sandbox.services import lakeformation as lf_ext

    return not lf_ext.has_table_permission(account, f"{account}:s3tablescatalog/{bucket}", db, table, role,
                                           "DESCRIBE", region)


def reader_denied(account: str, region: str, principal: str, bucket: str, db: str, table: str,
                  write: bool = False) -> str | None:
    """Athena's PERMISSION_DENIED reason for a caller the sandbox checks, else None.
    UNCONFIRMED: Athena's exact texts for both modes."""
    if not checked(account, principal):
        return None
    mode = integration_mode(account, region)
    if mode == MODE_IAM:
        glue_arn = glue_table_arns(account, region, bucket, db, table)[-1]
        if not iam_allows(account, principal, "glue:GetTable", glue_arn):
            return f"{principal} is not authorized to perform: glue:GetTable on resource: {glue_arn}"
        for action in (FIREHOSE_S3TABLES_ACTIONS if write else READER_S3TABLES_ACTIONS):
            msg = s3tables_denied(account, region, principal, action, bucket, db, table)
            if msg:
                return msg
        return None
    from s3tstream.sandbox.services import lakeformation as lf_ext

    catalog_id = f"{account}:s3tablescatalog/{bucket}"
    for perm in (("SELECT", "INSERT", "DESCRIBE") if write else ("SELECT", "DESCRIBE")):
        if not lf_ext.has_table_permission(account, catalog_id, db, table, principal, perm, region=region):
            return (f"Insufficient Lake Formation permission(s): Required {perm.capitalize()} on {table} "
                    f"({catalog_id}/{db})")
    return None
