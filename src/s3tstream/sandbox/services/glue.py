"""Glue: the catalogs API moto 5.2.5 lacks (GetCatalog, CreateCatalog, DeleteCatalog, GetCatalogs).

Enough for the S3 Tables analytics integration: the federated catalog ``s3tablescatalog``
(aws-notes) and, when it exists, its child catalogs (one per table bucket, read from the
s3tables backend) by ``get_catalog(CatalogId="<account>:s3tablescatalog/<bucket>")`` or
``"s3tablescatalog/<bucket>"``.

``catalog_exists(account, region, name)`` lets other sandbox extensions (Lake Formation, a
Firehose data plane) ask whether the integration is in place.
"""

from __future__ import annotations

import datetime
import threading
from typing import Any

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, SandboxRequest, handles, on_reset

check_moto_version()

from moto.s3tables.models import s3tables_backends  # noqa: E402

_lock = threading.RLock()
# (account, region) -> name -> catalog document
_catalogs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}


@on_reset
def _reset() -> None:
    with _lock:
        _catalogs.clear()


def catalog_exists(account: str, region: str, name: str) -> bool:
    with _lock:
        return name in _catalogs.get((account, region), {})


def _partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _child(req: SandboxRequest, parent: str, bucket: str) -> dict[str, Any] | None:
    """A table bucket seen as a child catalog of the federated s3tablescatalog."""
    backend = s3tables_backends[req.account_id][req.region]
    for b in backend.table_buckets.values():
        if b.name == bucket:
            return {
                "CatalogId": f"{req.account_id}:{parent}/{bucket}",
                "Name": bucket,
                "ResourceArn": f"arn:{_partition(req.region)}:glue:{req.region}:{req.account_id}:catalog/{parent}/{bucket}",
                "CreateTime": b.creation_date.isoformat(),
                "FederatedCatalog": {"Identifier": b.arn, "ConnectionName": "aws:s3tables"},
                "CreateTableDefaultPermissions": [],
                "CreateDatabaseDefaultPermissions": [],
            }
    return None


@handles("glue", "GetCatalog")
def get_catalog(req: SandboxRequest) -> dict[str, Any]:
    cid = str(req.params.get("CatalogId") or "")
    if not cid:
        raise AwsError("InvalidInputException", "CatalogId is required")
    name = cid.split(":", 1)[1] if ":" in cid and cid.split(":", 1)[0].isdigit() else cid
    with _lock:
        cats = _catalogs.get((req.account_id, req.region), {})
        if name in cats:
            return {"Catalog": cats[name]}
        parent, _, bucket = name.partition("/")
        if bucket and parent in cats:
            child = _child(req, parent, bucket)
            if child is not None:
                return {"Catalog": child}
    raise AwsError("EntityNotFoundException", f"Catalog not found: {cid}")


@handles("glue", "GetCatalogs")
def get_catalogs(req: SandboxRequest) -> dict[str, Any]:
    with _lock:
        return {"CatalogList": list(_catalogs.get((req.account_id, req.region), {}).values())}


@handles("glue", "CreateCatalog")
def create_catalog(req: SandboxRequest) -> dict[str, Any]:
    name = str(req.params.get("Name") or "")
    cin = req.params.get("CatalogInput")
    if not name or not isinstance(cin, dict):
        raise AwsError("InvalidInputException", "Name and CatalogInput are required")
    fed = cin.get("FederatedCatalog") or {}
    if fed and fed.get("ConnectionName") == "aws:s3tables":
        want = f"arn:{_partition(req.region)}:s3tables:{req.region}:{req.account_id}:bucket/*"
        if fed.get("Identifier") != want:
            raise AwsError("InvalidInputException", f"FederatedCatalog.Identifier must be {want} for aws:s3tables")
        if name != "s3tablescatalog":  # UNCONFIRMED: AWS's check on the name of the S3 Tables catalog
            raise AwsError("InvalidInputException", "the aws:s3tables federated catalog must be named s3tablescatalog")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat()
    doc = {
        "CatalogId": f"{req.account_id}:{name}",
        "Name": name,
        "ResourceArn": f"arn:{_partition(req.region)}:glue:{req.region}:{req.account_id}:catalog/{name}",
        "CreateTime": now,
        "UpdateTime": now,
        # UNCONFIRMED: an omitted default-permission list reads back as empty
        "CreateTableDefaultPermissions": [],
        "CreateDatabaseDefaultPermissions": [],
        **{k: v for k, v in cin.items() if k in (
            "Description", "FederatedCatalog", "Parameters", "CreateTableDefaultPermissions",
            "CreateDatabaseDefaultPermissions", "AllowFullTableExternalDataAccess")},
    }
    with _lock:
        cats = _catalogs.setdefault((req.account_id, req.region), {})
        if name in cats:
            raise AwsError("AlreadyExistsException", f"Catalog already exists: {name}")
        cats[name] = doc
    return {}


@handles("glue", "DeleteCatalog")
def delete_catalog(req: SandboxRequest) -> dict[str, Any]:
    cid = str(req.params.get("CatalogId") or "")
    name = cid.split(":", 1)[1] if ":" in cid else cid
    with _lock:
        cats = _catalogs.get((req.account_id, req.region), {})
        if name not in cats:
            raise AwsError("EntityNotFoundException", f"Catalog not found: {cid}")
        del cats[name]
    return {}
