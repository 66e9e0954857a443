"""Sandbox extensions for the lakehouse side: s3tables (metadata on create, get_table by ARN,
encryption, maintenance, tags, non-empty deletes), glue catalogs, Lake Formation grants."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3tstream.sandbox.services import lakeformation as lf_ext

ACCOUNT = "123456789012"
CALLER = f"arn:aws:sts::{ACCOUNT}:user/moto"
SCHEMA_V2 = {"schemaV2": {"type": "struct", "schemaId": 0, "identifierFieldIds": [1], "fields": [
    {"id": 1, "name": "pk", "type": "string", "required": True},
    {"id": 2, "name": "tags", "type": {"type": "list", "element-id": 3, "element": "string", "element-required": False},
     "required": False},
]}, "properties": {"format-version": "2"}}


def code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return e.value.response["Error"]["Code"]


@pytest.fixture
def lake(client: Callable[..., Any]) -> Iterator[dict[str, Any]]:
    s3t = client("s3tables")
    bucket = f"lb-{uuid.uuid4().hex[:10]}"
    ns = f"ns_{uuid.uuid4().hex[:8]}"
    arn = s3t.create_table_bucket(name=bucket, tags={"owner": "test"})["arn"]
    s3t.create_namespace(tableBucketARN=arn, namespace=[ns])
    yield {"s3t": s3t, "arn": arn, "bucket": bucket, "ns": ns}
    # the sandbox is shared by the tests of a process: leave no bucket behind (10 per Region)
    try:
        for n in s3t.list_namespaces(tableBucketARN=arn)["namespaces"]:
            for t in s3t.list_tables(tableBucketARN=arn, namespace=n["namespace"][0])["tables"]:
                s3t.delete_table(tableBucketARN=arn, namespace=n["namespace"][0], name=t["name"])
            s3t.delete_namespace(tableBucketARN=arn, namespace=n["namespace"][0])
        s3t.delete_table_bucket(tableBucketARN=arn)
    except s3t.exceptions.NotFoundException:
        pass


def read_metadata(client: Callable[..., Any], location: str) -> dict[str, Any]:
    bucket, _, key = location.removeprefix("s3://").partition("/")
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


# ------------------------------------------------------------------ s3tables
def test_create_table_with_metadata_writes_iceberg_v2(client: Callable[..., Any], lake: dict[str, Any]) -> None:
    s3t = lake["s3t"]
    r = s3t.create_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t1", format="ICEBERG",
                         metadata={"iceberg": SCHEMA_V2})
    t = s3t.get_table(tableArn=r["tableARN"])  # moto crashes on tableArn; the extension answers
    assert t["name"] == "t1" and t["namespace"] == [lake["ns"]] and t["versionToken"] == r["versionToken"]
    loc = t["metadataLocation"]
    assert loc.startswith(t["warehouseLocation"] + "/metadata/00000-") and loc.endswith(".metadata.json")
    md = read_metadata(client, loc)
    assert md["format-version"] == 2 and md["location"] == t["warehouseLocation"]
    (sch,) = md["schemas"]
    assert sch["identifier-field-ids"] == [1]
    assert [(f["id"], f["name"], f["required"]) for f in sch["fields"]] == [(1, "pk", True), (2, "tags", False)]
    assert sch["fields"][1]["type"]["element-id"] == 3
    # the v1-style schema.fields form gets ids 1..n
    s3t.create_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t2", format="ICEBERG",
                     metadata={"iceberg": {"schema": {"fields": [{"name": "a", "type": "long", "required": True},
                                                                 {"name": "b", "type": "decimal(10,2)"}]}}})
    t2 = s3t.get_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t2")
    assert [(f["id"], f["type"]) for f in read_metadata(client, t2["metadataLocation"])["schemas"][0]["fields"]] == [
        (1, "long"), (2, "decimal(10, 2)")]
    # without metadata: no metadataLocation (the legacy case)
    s3t.create_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t3", format="ICEBERG")
    assert "metadataLocation" not in s3t.get_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t3")


def test_bad_metadata_creates_nothing(lake: dict[str, Any]) -> None:
    s3t = lake["s3t"]
    with pytest.raises(ClientError) as e:
        s3t.create_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="bad", format="ICEBERG",
                         metadata={"iceberg": {"schema": {"fields": [{"name": "a", "type": "varchar"}]}}})
    assert code(e) == "BadRequestException"
    assert s3t.list_tables(tableBucketARN=lake["arn"], namespace=lake["ns"])["tables"] == []
    with pytest.raises(ClientError) as e:
        s3t.get_table(tableArn=lake["arn"] + "/table/nope")
    assert code(e) == "NotFoundException"


def test_update_metadata_location_token_and_location_checks(lake: dict[str, Any]) -> None:
    s3t = lake["s3t"]
    s3t.create_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t", format="ICEBERG")
    t = s3t.get_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t")
    kw = {"tableBucketARN": lake["arn"], "namespace": lake["ns"], "name": "t"}
    with pytest.raises(ClientError) as e:
        s3t.update_table_metadata_location(**kw, versionToken=t["versionToken"], metadataLocation="s3://elsewhere/m.metadata.json")
    assert code(e) == "BadRequestException"
    good = t["warehouseLocation"] + "/metadata/00000-x.metadata.json"
    r = s3t.update_table_metadata_location(**kw, versionToken=t["versionToken"], metadataLocation=good)
    assert r["metadataLocation"] == good and r["versionToken"] != t["versionToken"]
    with pytest.raises(ClientError) as e:  # stale token: the optimistic lock
        s3t.update_table_metadata_location(**kw, versionToken=t["versionToken"], metadataLocation=good)
    assert code(e) == "ConflictException"


def test_non_empty_namespace_and_bucket_are_not_deleted(lake: dict[str, Any]) -> None:
    s3t, arn, ns = lake["s3t"], lake["arn"], lake["ns"]
    s3t.create_table(tableBucketARN=arn, namespace=ns, name="t", format="ICEBERG")
    with pytest.raises(ClientError) as e:
        s3t.delete_namespace(tableBucketARN=arn, namespace=ns)
    assert code(e) == "ConflictException"
    with pytest.raises(ClientError) as e:
        s3t.delete_table_bucket(tableBucketARN=arn)
    assert code(e) == "ConflictException"
    s3t.delete_table(tableBucketARN=arn, namespace=ns, name="t")
    s3t.delete_namespace(tableBucketARN=arn, namespace=ns)
    s3t.delete_table_bucket(tableBucketARN=arn)
    with pytest.raises(ClientError) as e:
        s3t.get_table_bucket(tableBucketARN=arn)
    assert code(e) == "NotFoundException"


def test_encryption_maintenance_and_tags(lake: dict[str, Any]) -> None:
    s3t, arn, ns = lake["s3t"], lake["arn"], lake["ns"]
    assert s3t.get_table_bucket_encryption(tableBucketARN=arn)["encryptionConfiguration"] == {"sseAlgorithm": "AES256"}
    kms = {"sseAlgorithm": "aws:kms", "kmsKeyArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/abc"}
    s3t.put_table_bucket_encryption(tableBucketARN=arn, encryptionConfiguration=kms)
    assert s3t.get_table_bucket_encryption(tableBucketARN=arn)["encryptionConfiguration"] == kms
    with pytest.raises(ClientError) as e:
        s3t.put_table_bucket_encryption(tableBucketARN=arn, encryptionConfiguration={"sseAlgorithm": "aws:kms"})
    assert code(e) == "BadRequestException"
    # maintenance: AWS defaults until set
    bm = s3t.get_table_bucket_maintenance_configuration(tableBucketARN=arn)["configuration"]
    assert bm["icebergUnreferencedFileRemoval"]["status"] == "enabled"
    s3t.put_table_bucket_maintenance_configuration(tableBucketARN=arn, type="icebergUnreferencedFileRemoval", value={
        "status": "enabled", "settings": {"icebergUnreferencedFileRemoval": {"unreferencedDays": 7, "nonCurrentDays": 14}}})
    bm = s3t.get_table_bucket_maintenance_configuration(tableBucketARN=arn)["configuration"]
    assert bm["icebergUnreferencedFileRemoval"]["settings"]["icebergUnreferencedFileRemoval"]["unreferencedDays"] == 7
    s3t.create_table(tableBucketARN=arn, namespace=ns, name="t", format="ICEBERG", tags={"k": "v"})
    kw = {"tableBucketARN": arn, "namespace": ns, "name": "t"}
    tm = s3t.get_table_maintenance_configuration(**kw)["configuration"]
    assert tm["icebergCompaction"]["settings"]["icebergCompaction"]["targetFileSizeMB"] == 512
    with pytest.raises(ClientError) as e:
        s3t.put_table_maintenance_configuration(**kw, type="icebergCompaction", value={
            "status": "enabled", "settings": {"icebergCompaction": {"targetFileSizeMB": 1024}}})
    assert code(e) == "BadRequestException"
    s3t.put_table_maintenance_configuration(**kw, type="icebergSnapshotManagement", value={"status": "disabled"})
    assert s3t.get_table_maintenance_configuration(**kw)["configuration"]["icebergSnapshotManagement"]["status"] == "disabled"
    # tags
    assert s3t.list_tags_for_resource(resourceArn=arn)["tags"] == {"owner": "test"}
    s3t.tag_resource(resourceArn=arn, tags={"a": "1", "b": "2"})
    s3t.untag_resource(resourceArn=arn, tagKeys=["owner", "b"])
    assert s3t.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1"}
    assert s3t.list_tags_for_resource(resourceArn=f"{arn}/table/t")["tags"] == {"k": "v"}
    with pytest.raises(ClientError) as e:
        s3t.list_tags_for_resource(resourceArn=f"{arn}/table/missing")
    assert code(e) == "NotFoundException"


# ------------------------------------------------------------------ glue
def test_glue_catalogs(client: Callable[..., Any], lake: dict[str, Any]) -> None:
    glue = client("glue")
    try:
        glue.delete_catalog(CatalogId="s3tablescatalog")
    except glue.exceptions.EntityNotFoundException:
        pass
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_catalog(CatalogId="s3tablescatalog")
    with pytest.raises(glue.exceptions.InvalidInputException):
        glue.create_catalog(Name="s3tablescatalog", CatalogInput={"FederatedCatalog": {
            "Identifier": "arn:aws:s3tables:us-east-1:123456789012:bucket/one", "ConnectionName": "aws:s3tables"}})
    cin = {"FederatedCatalog": {"Identifier": f"arn:aws:s3tables:us-east-1:{ACCOUNT}:bucket/*",
                                "ConnectionName": "aws:s3tables"},
           "CreateDatabaseDefaultPermissions": [], "CreateTableDefaultPermissions": [],
           "AllowFullTableExternalDataAccess": "True"}
    glue.create_catalog(Name="s3tablescatalog", CatalogInput=cin)
    with pytest.raises(glue.exceptions.AlreadyExistsException):
        glue.create_catalog(Name="s3tablescatalog", CatalogInput=cin)
    cat = glue.get_catalog(CatalogId="s3tablescatalog")["Catalog"]
    assert cat["Name"] == "s3tablescatalog" and cat["FederatedCatalog"]["ConnectionName"] == "aws:s3tables"
    child = glue.get_catalog(CatalogId=f"{ACCOUNT}:s3tablescatalog/{lake['bucket']}")["Catalog"]
    assert child["Name"] == lake["bucket"] and child["FederatedCatalog"]["Identifier"] == lake["arn"]


# ------------------------------------------------------------------ lake formation
@pytest.fixture
def lf_table(client: Callable[..., Any], lake: dict[str, Any]) -> dict[str, Any]:
    from s3tstream.sandbox import client as sandbox_client  # the integration and the caller as admin

    sandbox_client.call(client("s3tables").meta.endpoint_url, "POST", "lakeformation/bootstrap", {"admins": [CALLER]})
    lake["s3t"].create_table(tableBucketARN=lake["arn"], namespace=lake["ns"], name="t", format="ICEBERG")
    iam = client("iam")
    role = iam.create_role(RoleName=f"r-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    catalog = f"{ACCOUNT}:s3tablescatalog/{lake['bucket']}"
    return {**lake, "lf": client("lakeformation"), "role": role, "catalog": catalog,
            "table": {"Table": {"CatalogId": catalog, "DatabaseName": lake["ns"], "Name": "t"}},
            "db": {"Database": {"CatalogId": catalog, "Name": lake["ns"]}}}


def test_grant_twice_revoke_once_and_list_under_child_catalog(lf_table: dict[str, Any]) -> None:
    lf, role, table, catalog = lf_table["lf"], lf_table["role"], lf_table["table"], lf_table["catalog"]
    p = {"DataLakePrincipalIdentifier": role}
    lf.grant_permissions(Principal=p, Resource=table, Permissions=["SELECT", "INSERT"])
    lf.grant_permissions(Principal=p, Resource=table, Permissions=["SELECT", "INSERT"])  # idempotent
    lf.grant_permissions(Principal=p, Resource=lf_table["db"], Permissions=["DESCRIBE"])
    rows = lf.list_permissions(CatalogId=catalog)["PrincipalResourcePermissions"]
    assert sorted((list(r["Resource"]), r["Permissions"]) for r in rows) == [
        (["Database"], ["DESCRIBE"]), (["Table"], ["INSERT", "SELECT"])]
    rows = lf.list_permissions(Principal=p, Resource=table)["PrincipalResourcePermissions"]
    assert len(rows) == 1 and rows[0]["Resource"] == table
    assert lf_ext.has_table_permission(ACCOUNT, catalog, lf_table["ns"], "t", role, "INSERT")
    lf.revoke_permissions(Principal=p, Resource=table, Permissions=["SELECT", "INSERT"])  # no KeyError
    assert lf.list_permissions(Principal=p, Resource=table)["PrincipalResourcePermissions"] == []
    assert not lf_ext.has_table_permission(ACCOUNT, catalog, lf_table["ns"], "t", role, "INSERT")
    with pytest.raises(ClientError) as e:
        lf.revoke_permissions(Principal=p, Resource=table, Permissions=["SELECT"])
    assert code(e) == "InvalidInputException"
    lf.grant_permissions(Principal=p, Resource=table, Permissions=["ALL"])
    assert lf_ext.has_table_permission(ACCOUNT, catalog, lf_table["ns"], "t", role, "DELETE")


def test_grant_validation(lf_table: dict[str, Any]) -> None:
    lf, role, catalog = lf_table["lf"], lf_table["role"], lf_table["catalog"]
    p = {"DataLakePrincipalIdentifier": role}
    missing = {"Table": {"CatalogId": catalog, "DatabaseName": lf_table["ns"], "Name": "nope"}}
    with pytest.raises(ClientError) as e:
        lf.grant_permissions(Principal=p, Resource=missing, Permissions=["SELECT"])
    assert code(e) == "EntityNotFoundException"
    with pytest.raises(ClientError) as e:
        lf.grant_permissions(Principal=p, Resource=lf_table["db"], Permissions=["INSERT"])
    assert code(e) == "InvalidInputException"
    with pytest.raises(ClientError) as e:
        lf.grant_permissions(Principal={"DataLakePrincipalIdentifier": f"arn:aws:iam::{ACCOUNT}:role/ghost"},
                             Resource=lf_table["table"], Permissions=["SELECT"])
    assert code(e) == "InvalidInputException"
    # only a data lake administrator may grant
    settings = lf.get_data_lake_settings()["DataLakeSettings"]
    lf.put_data_lake_settings(DataLakeSettings={**settings, "DataLakeAdmins": []})
    try:
        with pytest.raises(ClientError) as e:
            lf.grant_permissions(Principal=p, Resource=lf_table["table"], Permissions=["SELECT"])
        assert code(e) == "AccessDeniedException"
    finally:
        lf.put_data_lake_settings(DataLakeSettings=settings)


def test_settings_put_replaces_the_document_and_resources(client: Callable[..., Any]) -> None:
    lf = client("lakeformation")
    before = lf.get_data_lake_settings()["DataLakeSettings"]
    assert "CreateTableDefaultPermissions" in before
    try:
        lf.put_data_lake_settings(DataLakeSettings={"DataLakeAdmins": [{"DataLakePrincipalIdentifier": CALLER}]})
        after = lf.get_data_lake_settings()["DataLakeSettings"]
        assert after == {"DataLakeAdmins": [{"DataLakePrincipalIdentifier": CALLER}]}
    finally:
        lf.put_data_lake_settings(DataLakeSettings=before)
    arn = f"arn:aws:s3:::reg-{uuid.uuid4().hex[:8]}"
    lf.register_resource(ResourceArn=arn, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/x", WithFederation=True)
    with pytest.raises(lf.exceptions.AlreadyExistsException):
        lf.register_resource(ResourceArn=arn, RoleArn=f"arn:aws:iam::{ACCOUNT}:role/x")
    assert lf.describe_resource(ResourceArn=arn)["ResourceInfo"]["WithFederation"] is True
    lf.deregister_resource(ResourceArn=arn)
    with pytest.raises(lf.exceptions.EntityNotFoundException):
        lf.describe_resource(ResourceArn=arn)
