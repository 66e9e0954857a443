"""grant-lf through the CLI against the sandbox: integration, admin check, the Firehose role,
exactly the grants expected, and `down` revoking exactly them before deleting the role."""

from __future__ import annotations

import json
from typing import Any

import pytest

from s3tstream.config import model as config
from s3tstream.aws import policies
from s3tstream.aws.client import Identity
from s3tstream.sandbox.services import lakeformation as lf_ext

MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"
OTHER_ADMIN = "arn:aws:iam::123456789012:role/SomeoneElse"
LF_OK = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"



@pytest.fixture(autouse=True)
def _cleanup(stack: Any) -> Any:
    yield
    # leave the process-wide sandbox as other tests expect it: the caller an admin, the integration there
    lf = stack.client("lakeformation")
    settings = lf.get_data_lake_settings()["DataLakeSettings"]
    if MOTO_CALLER not in [a["DataLakePrincipalIdentifier"] for a in settings.get("DataLakeAdmins", [])]:
        settings["DataLakeAdmins"] = settings.get("DataLakeAdmins", []) + [{"DataLakePrincipalIdentifier": MOTO_CALLER}]
        lf.put_data_lake_settings(DataLakeSettings=settings)
    stack.purge()  # before the integration is restored: down may remove the one this stack made
    ensure_integration(stack, True)


def set_admins(stack: Any, admins: list[str]) -> None:
    lf = stack.client("lakeformation")
    settings = lf.get_data_lake_settings()["DataLakeSettings"]
    settings["DataLakeAdmins"] = [{"DataLakePrincipalIdentifier": a} for a in admins]
    lf.put_data_lake_settings(DataLakeSettings=settings)


def ensure_integration(stack: Any, present: bool) -> None:
    glue, lf = stack.client("glue"), stack.client("lakeformation")
    try:
        if present:
            glue.create_catalog(Name="s3tablescatalog", CatalogInput={"FederatedCatalog": {
                "Identifier": "arn:aws:s3tables:us-east-1:123456789012:bucket/*", "ConnectionName": "aws:s3tables"}})
        else:
            glue.delete_catalog(CatalogId="s3tablescatalog")
    except (glue.exceptions.AlreadyExistsException, glue.exceptions.EntityNotFoundException):
        pass
    if not present:
        try:
            lf.deregister_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*")
        except lf.exceptions.EntityNotFoundException:
            pass


def grants_of(stack: Any, principal: str) -> list[tuple[str, list[str]]]:
    rows = stack.client("lakeformation").list_permissions(
        Principal={"DataLakePrincipalIdentifier": principal})["PrincipalResourcePermissions"]
    return sorted((json.dumps(r["Resource"], sort_keys=True), sorted(r["Permissions"])) for r in rows)


def ident() -> Identity:
    return Identity(account="123456789012", arn=MOTO_CALLER, user_id="x")


def test_grant_lf_makes_role_and_exact_grants_and_down_revokes_them(stack: Any, calls: Any) -> None:
    ensure_integration(stack, True)
    set_admins(stack, [OTHER_ADMIN])
    iam = stack.client("iam")
    reader = iam.create_role(RoleName=f"{stack.name}-analyst", AssumeRolePolicyDocument=json.dumps(
        policies.firehose_trust(None, ident())))["Role"]["Arn"]  # type: ignore[arg-type]
    stack.write(extra=LF_OK + f'readers = ["{reader}"]\n')
    stack.cli("up")
    cfg = config.load(stack.config_path, environ={})
    role_arn = f"arn:aws:iam::123456789012:role/{cfg.names.firehose_role}"
    # the caller was added, the other admin kept
    admins = [a["DataLakePrincipalIdentifier"] for a in
              stack.client("lakeformation").get_data_lake_settings()["DataLakeSettings"]["DataLakeAdmins"]]
    assert admins == [OTHER_ADMIN, MOTO_CALLER]
    # the role: trust with SourceAccount, the lake inline policy
    role = iam.get_role(RoleName=cfg.names.firehose_role)["Role"]
    assert role["AssumeRolePolicyDocument"] == policies.firehose_trust(cfg, ident())
    assert iam.get_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.LAKE_POLICY_NAME)[
        "PolicyDocument"] == policies.firehose_lake_policy(cfg, ident())
    catalog = f"123456789012:s3tablescatalog/{cfg.names.table_bucket}"
    db = {"Database": {"CatalogId": catalog, "Name": cfg.names.namespace}}
    tbl = {"Table": {"CatalogId": catalog, "DatabaseName": cfg.names.namespace, "Name": cfg.names.table}}
    assert grants_of(stack, role_arn) == sorted([
        (json.dumps(db, sort_keys=True), ["DESCRIBE"]),
        (json.dumps(tbl, sort_keys=True), ["ALTER", "DELETE", "DESCRIBE", "INSERT", "SELECT"]),
    ])
    assert grants_of(stack, reader) == [(json.dumps(tbl, sort_keys=True), ["DESCRIBE", "SELECT"])]
    # the sandbox data plane sees the same grants
    assert lf_ext.has_table_permission("123456789012", catalog, cfg.names.namespace, cfg.names.table, role_arn, "INSERT")
    assert not lf_ext.has_table_permission("123456789012", catalog, cfg.names.namespace, cfg.names.table, reader, "INSERT")
    # grants listed under the child catalog id
    rows = stack.client("lakeformation").list_permissions(CatalogId=catalog)["PrincipalResourcePermissions"]
    assert {r["Principal"]["DataLakePrincipalIdentifier"] for r in rows} == {role_arn, reader}
    # again: nothing to do
    calls.clear()
    stack.cli("up")
    assert calls.mutating() == []
    # down: revoke exactly the grants, then delete the role (create-firehose's policy too)
    iam.put_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.DELIVERY_POLICY_NAME,
                        PolicyDocument=json.dumps(policies.firehose_delivery_policy(cfg, ident(), "b-err")))
    calls.clear()
    stack.cli("down", "--yes")
    muts = calls.mutating()
    revokes = [i for i, c in enumerate(muts) if c == "lakeformation:RevokePermissions"]
    assert len(revokes) == 3
    # the Firehose role goes after the last revoke (grant-lf records it before its grants; the
    # transform role, create-firehose's, may go before or after: its lane starts at once)
    assert muts[max(revokes):].count("iam:DeleteRole") >= 1
    assert grants_of(stack, role_arn) == [] and grants_of(stack, reader) == []
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=cfg.names.firehose_role)
    # the caller stays an administrator; the integration the stack created is removed
    assert MOTO_CALLER in [a["DataLakePrincipalIdentifier"] for a in
                           stack.client("lakeformation").get_data_lake_settings()["DataLakeSettings"]["DataLakeAdmins"]]


def test_existing_grant_is_adopted_and_not_revoked(stack: Any) -> None:
    ensure_integration(stack, True)
    set_admins(stack, [MOTO_CALLER])
    stack.write(extra="[lakeformation]\n")
    stack.cli("step", "create-table-bucket")
    cfg = config.load(stack.config_path, environ={})
    iam = stack.client("iam")
    role = iam.create_role(RoleName=cfg.names.firehose_role, AssumeRolePolicyDocument=json.dumps(
        policies.firehose_trust(cfg, ident())), Tags=[{"Key": "s3tstream:stack", "Value": stack.name}])["Role"]["Arn"]
    lf = stack.client("lakeformation")
    db_grant, tbl_grant = policies.lf_grants(cfg, ident())
    lf.grant_permissions(**db_grant.request())  # complete already: adopted
    lf.grant_permissions(**tbl_grant.request(["SELECT", "DESCRIBE"]))  # partial: the rest is granted
    stack.cli("step", "set-metadata")
    doc = stack.json("step", "grant-lf")
    actions = {c["name"]: c["action"] for c in doc["changes"] if c["kind"] == "lf-grant"}
    assert actions == {db_grant.name: "adopt", tbl_grant.name: "create"}
    rec = next(r for r in stack.state()["resources"] if r["name"] == tbl_grant.name)
    assert rec["outputs"]["granted"] == ["ALTER", "DELETE", "INSERT"]
    stack.cli("down", "--yes")
    left = grants_of(stack, role)
    assert left == sorted([(json.dumps(db_grant.resource, sort_keys=True), ["DESCRIBE"]),
                           (json.dumps(tbl_grant.resource, sort_keys=True), ["DESCRIBE", "SELECT"])])


def test_not_an_admin_exits_2_with_the_fix(stack: Any, calls: Any) -> None:
    ensure_integration(stack, True)
    set_admins(stack, [OTHER_ADMIN])
    calls.clear()
    r = stack.cli("up", ok=False)
    text = " ".join(r.output.split())
    assert r.exit_code == 2
    assert f"{MOTO_CALLER} is not a Lake Formation data lake administrator" in text
    assert "make_caller_admin = true" in text
    assert calls.mutating() == []  # preflight stops `up` before anything is made
    stack.cli("step", "create-table-bucket")
    stack.cli("step", "set-metadata")
    r = stack.cli("step", "grant-lf", ok=False)
    assert r.exit_code == 2 and "make_caller_admin" in " ".join(r.output.split())
    settings = stack.client("lakeformation").get_data_lake_settings()["DataLakeSettings"]
    assert [a["DataLakePrincipalIdentifier"] for a in settings["DataLakeAdmins"]] == [OTHER_ADMIN]  # untouched


def only_this_stacks_table_buckets(stack: Any) -> None:
    """`down --include-shared` removes the integration only when no other table bucket uses it:
    earlier tests in this worker's sandbox may have left theirs (kept data), so remove them."""
    s3t = stack.client("s3tables")
    for b in s3t.list_table_buckets().get("tableBuckets", []):
        if b["name"].startswith(stack.name):
            continue
        for ns in s3t.list_namespaces(tableBucketARN=b["arn"]).get("namespaces", []):
            for tb in s3t.list_tables(tableBucketARN=b["arn"], namespace=ns["namespace"][0]).get("tables", []):
                s3t.delete_table(tableBucketARN=b["arn"], namespace=ns["namespace"][0], name=tb["name"])
            s3t.delete_namespace(tableBucketARN=b["arn"], namespace=ns["namespace"][0])
        s3t.delete_table_bucket(tableBucketARN=b["arn"])


def test_missing_integration_exits_2_or_is_created(stack: Any) -> None:
    ensure_integration(stack, False)
    set_admins(stack, [MOTO_CALLER])
    r = stack.cli("up", ok=False)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "s3tablescatalog" in text and "integrate = true" in text
    stack.write(extra="[lakeformation]\nintegrate = true\n")
    stack.cli("up")
    glue, lf = stack.client("glue"), stack.client("lakeformation")
    cat = glue.get_catalog(CatalogId="s3tablescatalog")["Catalog"]
    assert cat["FederatedCatalog"] == {"Identifier": "arn:aws:s3tables:us-east-1:123456789012:bucket/*",
                                       "ConnectionName": "aws:s3tables"}
    res = lf.describe_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*")["ResourceInfo"]
    assert res["WithFederation"] is True
    cfg = config.load(stack.config_path, environ={})
    role = stack.client("iam").get_role(RoleName=policies.lf_integration_role_name(cfg))["Role"]
    assert res["RoleArn"] == role["Arn"]
    assert role["AssumeRolePolicyDocument"] == policies.lf_integration_trust(cfg, ident())
    doc = stack.json("down", "--yes")  # shared by the account: kept without --include-shared
    assert {(c["kind"], c["action"]) for c in doc["kept"] if c["shared"]} == {
        ("s3tables-analytics-integration", "keep"), ("lf-data-lake-admin", "forget")}
    assert glue.get_catalog(CatalogId="s3tablescatalog")
    only_this_stacks_table_buckets(stack)
    stack.cli("down", "--yes", "--include-shared")  # created by this stack, no other table bucket: removed
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_catalog(CatalogId="s3tablescatalog")
    with pytest.raises(lf.exceptions.EntityNotFoundException):
        lf.describe_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*")
    ensure_integration(stack, True)


def test_half_done_integration_is_completed_and_only_our_part_removed(stack: Any) -> None:
    ensure_integration(stack, False)
    set_admins(stack, [MOTO_CALLER])
    lf, glue = stack.client("lakeformation"), stack.client("glue")
    someone = f"arn:aws:iam::123456789012:role/{stack.name}-theirs"
    lf.register_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*", RoleArn=someone,
                         WithFederation=True)
    stack.write(extra="[lakeformation]\nintegrate = true\n")
    stack.cli("up")
    assert glue.get_catalog(CatalogId="s3tablescatalog")["Catalog"]["Name"] == "s3tablescatalog"
    only_this_stacks_table_buckets(stack)
    stack.cli("down", "--yes", "--include-shared")
    info = lf.describe_resource(ResourceArn="arn:aws:s3tables:us-east-1:123456789012:bucket/*")["ResourceInfo"]
    assert info["RoleArn"] == someone  # their registration stays
    with pytest.raises(glue.exceptions.EntityNotFoundException):
        glue.get_catalog(CatalogId="s3tablescatalog")  # our catalog goes
    ensure_integration(stack, False)
    ensure_integration(stack, True)
