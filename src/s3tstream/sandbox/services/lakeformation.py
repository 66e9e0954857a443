"""Lake Formation as the pipeline needs it (moto 5.2.5: nothing validated, revoke of a grant
made twice raises KeyError, list_permissions under a child catalog id returns nothing).

- Grants are sets per (principal, resource): granting twice is idempotent; revoke removes the
  named permissions (revoking permissions not held: InvalidInputException, UNCONFIRMED text).
- The grantor must be a data lake administrator (AccessDeniedException otherwise; UNCONFIRMED
  text). The caller is found like STS does (moto's get_caller_identity for the access key); an
  assumed-role session counts as its role.
- Resources under ``<account>:s3tablescatalog/<bucket>`` must exist: the integration catalog
  (glue ext), then the bucket, namespace (database) and table in the s3tables backend
  (EntityNotFoundException otherwise). Permissions must suit the resource type.
- Get/PutDataLakeSettings as AWS: put replaces the whole document.
- Register/Deregister/Describe/ListResources (with WithFederation / WithPrivilegedAccess).

For a future Firehose data plane: ``has_table_permission(account, catalog_id, db, table,
principal, perm)`` answers from the same grants (ALL implies every permission).
Control route ``POST /_sandbox/lakeformation/bootstrap`` {"admins": [arn...], "integration":
true, "mode": "lakeformation" | "iam", "account": ..., "region": ...}: make principals admins and
create the integration catalog, for demos (defaults: moto's default caller, 123456789012,
us-east-1, Lake Formation mode). Mode "iam" makes it as the S3 console does: default permissions
ALL for IAM_ALLOWED_PRINCIPALS (sandbox.access then checks IAM policies instead of grants).
"""

from __future__ import annotations

import copy
import datetime
import re
import threading
from typing import Any

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, SandboxRequest, control_route, handles, on_reset

check_moto_version()

from moto.iam.models import iam_backends  # noqa: E402
from moto.s3tables.models import s3tables_backends  # noqa: E402
from moto.sts.models import sts_backends  # noqa: E402

from s3tstream.sandbox import protocols  # noqa: E402
from s3tstream.sandbox.services import glue as glue_ext  # noqa: E402

DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
ASSUMED_ROLE_RE = re.compile(r"^arn:([^:]+):sts::(\d{12}):assumed-role/([^/]+)/.+$")
IAM_PRINCIPAL_RE = re.compile(r"^arn:([^:]+):iam::(\d{12}):(role|user)/(?:.*/)?([\w+=,.@-]+)$")
PERMISSIONS_BY_TYPE = {
    "Catalog": {"ALL", "ALTER", "CREATE_DATABASE", "DESCRIBE", "DROP", "CREATE_CATALOG", "SUPER_USER"},
    "Database": {"ALL", "ALTER", "CREATE_TABLE", "DESCRIBE", "DROP"},
    "Table": {"ALL", "ALTER", "DELETE", "DESCRIBE", "DROP", "INSERT", "SELECT"},
    "TableWithColumns": {"SELECT"},
    "DataLocation": {"DATA_LOCATION_ACCESS"},
}


def default_settings() -> dict[str, Any]:
    """A new account's settings, as get_data_lake_settings shows them."""
    iam_allowed = [{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}]
    return {
        "DataLakeAdmins": [],
        "ReadOnlyAdmins": [],
        "CreateDatabaseDefaultPermissions": copy.deepcopy(iam_allowed),
        "CreateTableDefaultPermissions": copy.deepcopy(iam_allowed),
        "Parameters": {"CROSS_ACCOUNT_VERSION": "1", "SET_CONTEXT": "TRUE"},
        "TrustedResourceOwners": [],
        "AllowExternalDataFiltering": False,
        "AllowFullTableExternalDataAccess": False,
        "ExternalDataFilteringAllowList": [],
        "AuthorizedSessionTagValueList": [],
    }


class _Account:
    def __init__(self) -> None:
        self.settings = default_settings()
        # (principal, resource key) -> {"resource": doc, "perms": set, "grant": set, "updated": iso, "by": arn}
        self.grants: dict[tuple[str, tuple], dict[str, Any]] = {}
        self.resources: dict[str, dict[str, Any]] = {}


_lock = threading.RLock()
_accounts: dict[tuple[str, str], _Account] = {}


@on_reset
def _reset() -> None:
    with _lock:
        _accounts.clear()


def _acct(account: str, region: str) -> _Account:
    with _lock:
        return _accounts.setdefault((account, region), _Account())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


# ------------------------------------------------------------------ caller
def caller_principal(req: SandboxRequest) -> str:
    """The caller's ARN as STS reports it; an assumed-role session as its role's ARN."""
    key = protocols.access_key({"HTTP_AUTHORIZATION": req.headers.get("authorization", "")}) or ""
    _, arn, _ = sts_backends[req.account_id]["aws"].get_caller_identity(key, req.region)
    m = ASSUMED_ROLE_RE.match(arn)
    if m:
        try:
            return iam_backends[req.account_id][m.group(1)].get_role(m.group(3)).arn
        except Exception:  # noqa: BLE001 - role gone: the path-less form
            return f"arn:{m.group(1)}:iam::{m.group(2)}:role/{m.group(3)}"
    return arn


def _is_admin(acct: _Account, principal: str) -> bool:
    return any(p.get("DataLakePrincipalIdentifier") == principal for p in acct.settings.get("DataLakeAdmins", []))


# ------------------------------------------------------------------ resources
def _resource_key(res: dict[str, Any], default_catalog: str) -> tuple[str, tuple, dict[str, Any]]:
    """(type, key, normalized doc) of a Lake Formation Resource."""
    if not isinstance(res, dict) or len([k for k, v in res.items() if v is not None]) != 1:
        raise AwsError("InvalidInputException", "Resource must name exactly one resource")
    (typ, doc), = [(k, v) for k, v in res.items() if v is not None]
    doc = dict(doc or {})
    if typ == "Catalog":
        doc.setdefault("Id", default_catalog)
        return typ, (doc["Id"],), {typ: doc}
    if typ == "Database":
        doc.setdefault("CatalogId", default_catalog)
        return typ, (doc["CatalogId"], doc.get("Name")), {typ: doc}
    if typ == "Table":
        doc.setdefault("CatalogId", default_catalog)
        name = doc.get("Name") if "TableWildcard" not in doc else "*"
        return typ, (doc["CatalogId"], doc.get("DatabaseName"), name), {typ: doc}
    if typ == "TableWithColumns":
        doc.setdefault("CatalogId", default_catalog)
        cols = tuple(sorted(doc.get("ColumnNames") or []))
        excl = tuple(sorted((doc.get("ColumnWildcard") or {}).get("ExcludedColumnNames") or []))
        return typ, (doc["CatalogId"], doc.get("DatabaseName"), doc.get("Name"), cols, excl,
                     "ColumnWildcard" in doc), {typ: doc}
    if typ == "DataLocation":
        doc.setdefault("CatalogId", default_catalog)
        return typ, (doc["CatalogId"], doc.get("ResourceArn")), {typ: doc}
    raise AwsError("InvalidInputException", f"sandbox: resource type {typ} is not supported")


def _check_exists(req: SandboxRequest, typ: str, doc: dict[str, Any]) -> None:
    """Objects under an S3 Tables child catalog must exist (the rest is not modelled)."""
    catalog = doc.get("CatalogId") or doc.get("Id") or ""
    m = re.fullmatch(r"(\d{12}):s3tablescatalog/([a-z0-9-]+)", catalog)
    if not m:
        return
    if not glue_ext.catalog_exists(m.group(1), req.region, "s3tablescatalog"):
        raise AwsError("EntityNotFoundException", f"Catalog not found: {catalog} (no S3 Tables integration)")
    backend = s3tables_backends[m.group(1)][req.region]
    bucket = next((b for b in backend.table_buckets.values() if b.name == m.group(2)), None)
    if bucket is None:
        raise AwsError("EntityNotFoundException", f"Catalog not found: {catalog}")
    db = doc.get("Name") if typ == "Database" else doc.get("DatabaseName")
    if typ in ("Database", "Table", "TableWithColumns"):
        ns = bucket.namespaces.get(db or "")
        if ns is None:
            raise AwsError("EntityNotFoundException", f"Database not found: {db}")
        if typ != "Database" and "TableWildcard" not in doc and doc.get("Name") not in ns.tables:
            raise AwsError("EntityNotFoundException", f"Table not found: {db}.{doc.get('Name')}")


def _check_principal(req: SandboxRequest, principal: str) -> None:
    if principal in ("IAM_ALLOWED_PRINCIPALS",) or re.fullmatch(r"\d{12}", principal):
        return
    m = IAM_PRINCIPAL_RE.match(principal)
    if not m:
        raise AwsError("InvalidInputException", f"Invalid principal: {principal}")
    if m.group(2) != req.account_id:
        return  # cross-account principals are not modelled
    iam = iam_backends[req.account_id][m.group(1)]
    try:
        if m.group(3) == "role":
            iam.get_role(m.group(4))
        else:
            iam.get_user(m.group(4))
    except Exception:  # noqa: BLE001
        # UNCONFIRMED: AWS's answer for a principal that does not exist (yet).
        raise AwsError("InvalidInputException", f"Invalid principal: {principal} does not exist") from None


def _perm_args(req: SandboxRequest) -> tuple[str, str, tuple, dict[str, Any], set[str], set[str]]:
    p = req.params
    principal = (p.get("Principal") or {}).get("DataLakePrincipalIdentifier")
    if not principal:
        raise AwsError("InvalidInputException", "Principal.DataLakePrincipalIdentifier is required")
    default_catalog = p.get("CatalogId") or req.account_id
    typ, key, doc = _resource_key(p.get("Resource") or {}, default_catalog)
    perms = set(p.get("Permissions") or [])
    grantable = set(p.get("PermissionsWithGrantOption") or [])
    if not perms:
        raise AwsError("InvalidInputException", "Permissions must not be empty")
    bad = sorted((perms | grantable) - PERMISSIONS_BY_TYPE.get(typ, set()))
    if bad:
        raise AwsError("InvalidInputException", f"Permissions {bad} are not valid for a {typ} resource")
    return principal, typ, key, doc, perms, grantable


def _require_admin(acct: Any, caller: str) -> None:
    """Only a data lake administrator grants and revokes (call with _lock held)."""
    if not _is_admin(acct, caller):
        raise AwsError("AccessDeniedException",
                       f"Insufficient Lake Formation permission(s): {caller} is not a data lake administrator")


@handles("lakeformation", "GrantPermissions")
def grant_permissions(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    principal, typ, key, doc, perms, grantable = _perm_args(req)
    caller = caller_principal(req)
    with _lock:
        _require_admin(acct, caller)
    _check_exists(req, typ, doc[typ])
    _check_principal(req, principal)
    with _lock:
        entry = acct.grants.setdefault((principal, (typ,) + key), {"resource": doc, "perms": set(), "grant": set()})
        entry["perms"] |= perms  # idempotent: granting twice is the same grant
        entry["grant"] |= grantable
        entry["updated"], entry["by"] = _now(), caller
    return {}


@handles("lakeformation", "RevokePermissions")
def revoke_permissions(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    principal, typ, key, doc, perms, grantable = _perm_args(req)
    caller = caller_principal(req)
    with _lock:
        _require_admin(acct, caller)
        entry = acct.grants.get((principal, (typ,) + key))
        if entry is None or not (perms & entry["perms"]):
            # UNCONFIRMED: AWS's text for revoking permissions the principal does not hold.
            raise AwsError("InvalidInputException", "Grantee has no permissions and no grantable permissions on resource")
        entry["perms"] -= perms
        entry["grant"] -= grantable | perms
        if not entry["perms"] and not entry["grant"]:
            del acct.grants[(principal, (typ,) + key)]
    return {}


@handles("lakeformation", "ListPermissions")
def list_permissions(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    p = req.params
    want_principal = (p.get("Principal") or {}).get("DataLakePrincipalIdentifier")
    default_catalog = p.get("CatalogId") or req.account_id
    want_key = None
    if p.get("Resource"):
        t, k, _ = _resource_key(p["Resource"], default_catalog)
        want_key = (t,) + k
    rtype = p.get("ResourceType")
    type_names = {"CATALOG": "Catalog", "DATABASE": "Database", "TABLE": "Table", "DATA_LOCATION": "DataLocation"}
    with _lock:
        rows = []
        for (principal, key), e in sorted(acct.grants.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            if want_principal and principal != want_principal:
                continue
            if want_key is not None and key != want_key:
                continue
            if rtype and key[0] != type_names.get(rtype, rtype) and not (rtype == "TABLE" and key[0] == "TableWithColumns"):
                continue
            if p.get("CatalogId") and not want_key and key[1] != p["CatalogId"] and not str(key[1]).startswith(p["CatalogId"] + ":"):
                continue
            rows.append({
                "Principal": {"DataLakePrincipalIdentifier": principal},
                "Resource": copy.deepcopy(e["resource"]),
                "Permissions": sorted(e["perms"]),
                "PermissionsWithGrantOption": sorted(e["grant"]),
                "LastUpdated": e.get("updated"),
                "LastUpdatedBy": e.get("by"),
            })
    start = int(p.get("NextToken") or 0)
    size = int(p.get("MaxResults") or 100)
    out: dict[str, Any] = {"PrincipalResourcePermissions": rows[start:start + size]}
    if start + size < len(rows):
        out["NextToken"] = str(start + size)
    return out


@handles("lakeformation", "GetDataLakeSettings")
def get_data_lake_settings(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    with _lock:
        return {"DataLakeSettings": copy.deepcopy(acct.settings)}


@handles("lakeformation", "PutDataLakeSettings")
def put_data_lake_settings(req: SandboxRequest) -> dict[str, Any]:
    settings = req.params.get("DataLakeSettings")
    if not isinstance(settings, dict):
        raise AwsError("InvalidInputException", "DataLakeSettings is required")
    for p in settings.get("DataLakeAdmins", []) or []:
        ident = p.get("DataLakePrincipalIdentifier", "")
        if not (IAM_PRINCIPAL_RE.match(ident) or ident.startswith("arn:")):
            raise AwsError("InvalidInputException", f"Invalid data lake administrator: {ident}")
    if len(settings.get("DataLakeAdmins", []) or []) > 30:
        raise AwsError("InvalidInputException", "At most 30 data lake administrators")
    acct = _acct(req.account_id, req.region)
    with _lock:
        acct.settings = copy.deepcopy(settings)  # replaces the whole document, as AWS does
    return {}


# ------------------------------------------------------------------ registered locations
@handles("lakeformation", "RegisterResource")
def register_resource(req: SandboxRequest) -> dict[str, Any]:
    arn = req.params.get("ResourceArn")
    if not arn:
        raise AwsError("InvalidInputException", "ResourceArn is required")
    acct = _acct(req.account_id, req.region)
    with _lock:
        if arn in acct.resources:
            raise AwsError("AlreadyExistsException", "Resource is already registered")
        acct.resources[arn] = {
            "ResourceArn": arn,
            "RoleArn": req.params.get("RoleArn"),
            "WithFederation": bool(req.params.get("WithFederation", False)),
            "HybridAccessEnabled": bool(req.params.get("HybridAccessEnabled", False)),
            "WithPrivilegedAccess": bool(req.params.get("WithPrivilegedAccess", False)),
            "LastModified": _now(),
        }
    return {}


@handles("lakeformation", "DeregisterResource")
def deregister_resource(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    with _lock:
        if acct.resources.pop(str(req.params.get("ResourceArn")), None) is None:
            raise AwsError("EntityNotFoundException", "Resource is not registered")
    return {}


@handles("lakeformation", "DescribeResource")
def describe_resource(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    with _lock:
        r = acct.resources.get(str(req.params.get("ResourceArn")))
        if r is None:
            raise AwsError("EntityNotFoundException", "Resource is not registered")
        return {"ResourceInfo": dict(r)}


@handles("lakeformation", "ListResources")
def list_resources(req: SandboxRequest) -> dict[str, Any]:
    acct = _acct(req.account_id, req.region)
    with _lock:
        return {"ResourceInfoList": [dict(r) for r in acct.resources.values()]}


# ------------------------------------------------------------------ data plane query
def has_table_permission(account: str, catalog_id: str, db: str, table: str, principal: str, perm: str,
                         region: str | None = None) -> bool:
    """Whether principal holds perm (or ALL) on the table, directly, through a table wildcard in
    the database, or (SELECT) on all its columns. region None: any Region of the account."""
    with _lock:
        accts = [a for (acc, reg), a in _accounts.items() if acc == account and (region is None or reg == region)]
        for acct in accts:
            for (who, key), e in acct.grants.items():
                if who != principal:
                    continue
                held = e["perms"]
                if perm not in held and "ALL" not in held:
                    continue
                if key[0] == "Table" and key[1:] in ((catalog_id, db, table), (catalog_id, db, "*")):
                    return True
                if (key[0] == "TableWithColumns" and key[1:4] == (catalog_id, db, table) and key[6]
                        and not key[5] and perm == "SELECT"):
                    return True
    return False


@control_route("POST", "lakeformation/bootstrap")
def bootstrap(server: Any, payload: dict[str, Any]) -> dict[str, Any]:
    account = str(payload.get("account") or DEFAULT_ACCOUNT)
    region = str(payload.get("region") or DEFAULT_REGION)
    admins = payload.get("admins") or [f"arn:aws:sts::{account}:user/moto"]
    acct = _acct(account, region)
    with _lock:
        cur = acct.settings.setdefault("DataLakeAdmins", [])
        for a in admins:
            if not any(p.get("DataLakePrincipalIdentifier") == a for p in cur):
                cur.append({"DataLakePrincipalIdentifier": a})
    if payload.get("integration", True):
        iam_mode = payload.get("mode") == "iam"

        def defaults() -> list[dict[str, Any]]:
            return [{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}] \
                if iam_mode else []

        with glue_ext._lock:
            cats = glue_ext._catalogs.setdefault((account, region), {})
            cats.setdefault("s3tablescatalog", {
                "CatalogId": f"{account}:s3tablescatalog", "Name": "s3tablescatalog",
                "ResourceArn": f"arn:aws:glue:{region}:{account}:catalog/s3tablescatalog",
                "FederatedCatalog": {"Identifier": f"arn:aws:s3tables:{region}:{account}:bucket/*",
                                     "ConnectionName": "aws:s3tables"},
                "CreateTableDefaultPermissions": defaults(), "CreateDatabaseDefaultPermissions": defaults(),
                "AllowFullTableExternalDataAccess": "True", "CreateTime": _now(),
            })
    return {"admins": [p["DataLakePrincipalIdentifier"] for p in acct.settings["DataLakeAdmins"]],
            "integration": glue_ext.catalog_exists(account, region, "s3tablescatalog")}
