"""Both access-control modes of the account's S3 Tables analytics integration, through the CLI on
the sandbox. The IAM-mode account lives in its own Region (us-west-2): the integration is
account-and-Region-wide, and the other tests of this process use us-east-1's."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import Identity
from s3tstream.config import model as config
from s3tstream.sandbox import client as sandbox_client
from tests.conftest import boto_client

REGION = "us-west-2"
ACCOUNT = "123456789012"
COLUMNS = '{ name = "pk", type = "string", required = true }, { name = "qty", type = "long" }'


@pytest.fixture(autouse=True)
def _instant_data_plane(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")


class Env:
    def __init__(self, root: Path, endpoint_url: str, extra: str = "") -> None:
        self.dir, self.endpoint_url = root, endpoint_url
        self.name = "m" + uuid.uuid4().hex[:8]
        self.write(extra)

    @property
    def config_path(self) -> Path:
        return self.dir / "s3tstream.toml"

    def write(self, extra: str = "") -> None:
        self.config_path.write_text(
            f'[stack]\nname = "{self.name}"\nregion = "{REGION}"\nendpoint_url = "{self.endpoint_url}"\n'
            "poll_interval = 0.01\nwait_timeout = 30\nmax_attempts = 3\n"
            f"[table]\ncolumns = [{COLUMNS}]\n[firehose]\nbuffer_interval_seconds = 0\n{extra}\n", encoding="utf-8")

    def cli(self, *args: str, ok: bool | None = True, env: dict[str, str] | None = None) -> Any:
        from typer.testing import CliRunner

        from s3tstream.cli.app import app

        r = CliRunner().invoke(app, list(args), env={"S3TSTREAM_CONFIG": str(self.config_path), **(env or {})})
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            raise r.exception
        if ok is True:
            assert r.exit_code == 0, f"{args} exited {r.exit_code}:\n{r.output}"
        elif ok is False:
            assert r.exit_code != 0, f"{args} unexpectedly succeeded:\n{r.output}"
        return r

    def json(self, *args: str, ok: bool | None = True) -> Any:
        return json.loads(self.cli(*args, "--output", "json", ok=ok).stdout)

    def client(self, service: str) -> Any:
        return boto_client(self.endpoint_url, service, REGION)

    def cfg(self) -> config.Config:
        return config.load(self.config_path, environ={})


def _control(endpoint_url: str, route: str, body: dict[str, Any]) -> Any:
    from s3tstream.sandbox import client

    return client.call(endpoint_url, "POST", route, body)


def _drop_integration(env: Env) -> None:
    try:
        env.client("glue").delete_catalog(CatalogId="s3tablescatalog")
    except Exception:  # noqa: BLE001 - not there
        pass
    try:
        env.client("lakeformation").deregister_resource(ResourceArn=f"arn:aws:s3tables:{REGION}:{ACCOUNT}:bucket/*")
    except Exception:  # noqa: BLE001
        pass


def _teardown(env: Env) -> None:
    env.cli("down", "--yes", "--purge-errors", ok=None)
    s3t = env.client("s3tables")
    for b in s3t.list_table_buckets(prefix=env.name).get("tableBuckets", []):
        for ns in s3t.list_namespaces(tableBucketARN=b["arn"]).get("namespaces", []):
            for t in s3t.list_tables(tableBucketARN=b["arn"], namespace=ns["namespace"][0]).get("tables", []):
                s3t.delete_table(tableBucketARN=b["arn"], namespace=ns["namespace"][0], name=t["name"])
            s3t.delete_namespace(tableBucketARN=b["arn"], namespace=ns["namespace"][0])
        s3t.delete_table_bucket(tableBucketARN=b["arn"])


@pytest.fixture
def console_account(tmp_path: Path, sandbox: Any) -> Any:
    """us-west-2 with the integration made the console's way (IAM mode) and nobody a Lake
    Formation administrator."""
    env = Env(tmp_path, sandbox.endpoint_url)
    _drop_integration(env)
    _control(sandbox.endpoint_url, "lakeformation/bootstrap",
             {"region": REGION, "integration": True, "mode": "iam", "admins": []})
    lf = env.client("lakeformation")
    settings = lf.get_data_lake_settings()["DataLakeSettings"]
    settings["DataLakeAdmins"] = []
    lf.put_data_lake_settings(DataLakeSettings=settings)
    yield env
    _teardown(env)
    _drop_integration(env)


def _lf_grants(env: Env) -> list[Any]:
    return env.client("lakeformation").list_permissions()["PrincipalResourcePermissions"]


def _lf_mutations(calls: Any) -> list[str]:
    return [c for c in calls.calls if c in ("lakeformation:GrantPermissions", "lakeformation:PutDataLakeSettings",
                                            "lakeformation:RegisterResource")]


# ------------------------------------------------------------------ IAM mode, made by the console
@pytest.mark.sandbox
def test_console_made_iam_mode_up_and_test_insert_pass_with_no_lake_formation_grant(console_account: Env, calls: Any) -> None:
    env = console_account
    assert "IAM access control" in env.cli("doctor", ok=None).output
    env.cli("up")
    assert _lf_grants(env) == [] and _lf_mutations(calls) == []
    # the Firehose role reaches the table through its own IAM policy, scoped to this bucket and table
    cfg = env.cfg()
    iam = env.client("iam")
    doc = iam.get_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.LAKE_POLICY_NAME)["PolicyDocument"]
    actions = {a for st in doc["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])}
    assert set(policies.S3TABLES_WRITE_ACTIONS) <= actions and "lakeformation:GetDataAccess" not in actions
    table_st = next(st for st in doc["Statement"] if st["Sid"] == "S3TablesTable")
    assert table_st["Resource"] == [f"arn:aws:s3tables:{REGION}:{ACCOUNT}:bucket/{cfg.names.table_bucket}/table/*"]
    assert table_st["Condition"]["StringEquals"] == {"s3tables:namespace": cfg.names.namespace,
                                                     "s3tables:tableName": cfg.names.table}
    out = env.json("test-insert", "--count", "4", "--interval", "0.01", "--timeout", "60")
    assert out["passed"] is True, out
    # the recorded integration is the account's (adopted), never the stack's
    state = json.loads((env.dir / ".s3tstream" / f"{env.name}.json").read_text())
    integ = next(r for r in state["resources"] if r["kind"] == "s3tables-analytics-integration")
    assert integ["ownership"] == "adopted" and integ["outputs"]["mode"] == "iam"
    assert not any(r["kind"] in ("lf-grant", "lf-data-lake-admin") for r in state["resources"])


@pytest.mark.sandbox
def test_iam_mode_without_the_s3tables_statement_sends_records_to_the_error_bucket(console_account: Env) -> None:
    env = console_account
    env.cli("up")
    cfg = env.cfg()
    iam = env.client("iam")
    doc = iam.get_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.LAKE_POLICY_NAME)["PolicyDocument"]
    doc["Statement"] = [st for st in doc["Statement"] if not st["Sid"].startswith("S3Tables")]
    iam.put_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.LAKE_POLICY_NAME, PolicyDocument=json.dumps(doc))
    env.client("dynamodb").put_item(TableName=cfg.names.source_table, Item={"pk": {"S": "a"}, "qty": {"N": "1"}})
    sandbox_client.firehose_wait_drained(env.endpoint_url, cfg.names.firehose, timeout=30, region=REGION)
    errors = env.json("errors")
    assert errors["records"] == 1 and [g["error_code"] for g in errors["groups"]] == ["S3.AccessDenied"]
    assert "s3tables:" in errors["groups"][0]["message"]
    # `plan` shows the removed statement as drift, and `up` puts it back
    assert any(c["action"] == "update" and c["kind"] == "firehose-role" for c in env.json("plan")["changes"])


@pytest.mark.sandbox
def test_iam_mode_without_glue_permission_is_glue_access_denied(console_account: Env) -> None:
    env = console_account
    env.cli("up")
    cfg = env.cfg()
    iam = env.client("iam")
    doc = iam.get_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.LAKE_POLICY_NAME)["PolicyDocument"]
    doc["Statement"] = [st for st in doc["Statement"] if st["Sid"] != "GlueTableInS3TablesCatalog"]
    iam.put_role_policy(RoleName=cfg.names.firehose_role, PolicyName=policies.LAKE_POLICY_NAME, PolicyDocument=json.dumps(doc))
    env.client("dynamodb").put_item(TableName=cfg.names.source_table, Item={"pk": {"S": "g"}})
    sandbox_client.firehose_wait_drained(env.endpoint_url, cfg.names.firehose, timeout=30, region=REGION)
    assert [g["error_code"] for g in env.json("errors")["groups"]] == ["Glue.AccessDenied"]


@pytest.mark.sandbox
def test_configured_lake_formation_mode_on_an_iam_mode_account_is_refused(console_account: Env, calls: Any) -> None:
    env = console_account
    env.write('[lakeformation]\nintegration_mode = "lakeformation"\nmake_caller_admin = true\n')
    r = env.cli("up", ok=False)
    assert r.exit_code == 2 and "IAM access control" in r.output and 'integration_mode' in r.output
    assert calls.mutating() == []


@pytest.mark.sandbox
def test_readers_get_an_inline_policy_in_iam_mode_and_athena_checks_it(console_account: Env) -> None:
    env = console_account
    iam = env.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]})
    reader = iam.create_role(RoleName=f"{env.name}-analyst", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    other = iam.create_role(RoleName=f"{env.name}-other", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    env.write(f'[lakeformation]\nreaders = ["{reader}"]\n')
    env.cli("up")
    cfg = env.cfg()
    pname = policies.reader_policy_name(cfg)
    doc = iam.get_role_policy(RoleName=f"{env.name}-analyst", PolicyName=pname)["PolicyDocument"]
    ident = Identity(account=ACCOUNT, arn=f"arn:aws:iam::{ACCOUNT}:user/moto", user_id="x")
    assert doc == policies.reader_policy(cfg, ident)
    env.client("dynamodb").put_item(TableName=cfg.names.source_table, Item={"pk": {"S": "r"}, "qty": {"N": "2"}})
    sandbox_client.firehose_wait_drained(env.endpoint_url, cfg.names.firehose, timeout=30, region=REGION)

    def athena_as(role_arn: str) -> tuple[str, str]:
        creds = env.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="query")["Credentials"]
        import boto3

        ath = boto3.client("athena", region_name=REGION, endpoint_url=env.endpoint_url,
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"])
        bucket = f"{env.name}-res-{uuid.uuid4().hex[:6]}"
        env.client("s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        qid = ath.start_query_execution(
            QueryString=f"SELECT pk, qty FROM {cfg.names.table}",
            QueryExecutionContext={"Catalog": f"s3tablescatalog/{cfg.names.table_bucket}", "Database": cfg.names.namespace},
            ResultConfiguration={"OutputLocation": f"s3://{bucket}/q/"})["QueryExecutionId"]
        st = ath.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        return st["State"], st.get("StateChangeReason", "")

    assert athena_as(reader)[0] == "SUCCEEDED"
    state, reason = athena_as(other)
    assert state == "FAILED" and reason.startswith("PERMISSION_DENIED") and "glue:GetTable" in reason
    # `down` removes exactly the stack's inline policy from the reader, and leaves the role
    env.cli("down", "--yes", "--purge-errors")
    assert iam.list_role_policies(RoleName=f"{env.name}-analyst")["PolicyNames"] == []
    assert iam.get_role(RoleName=f"{env.name}-analyst")["Role"]["Arn"] == reader


@pytest.mark.sandbox
def test_integrate_creates_the_configured_iam_mode(tmp_path: Path, sandbox: Any, calls: Any) -> None:
    env = Env(tmp_path, sandbox.endpoint_url, '[lakeformation]\nintegration_mode = "iam"\nintegrate = true\n')
    _drop_integration(env)
    try:
        env.cli("up")
        cat = env.client("glue").get_catalog(CatalogId="s3tablescatalog")["Catalog"]
        want = [{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}]
        assert cat["CreateTableDefaultPermissions"] == want and cat["CreateDatabaseDefaultPermissions"] == want
        assert [c for c in calls.calls if c in ("lakeformation:RegisterResource", "lakeformation:GrantPermissions")] == []
        with pytest.raises(Exception):
            env.client("lakeformation").describe_resource(ResourceArn=f"arn:aws:s3tables:{REGION}:{ACCOUNT}:bucket/*")
        assert env.json("test-insert", "--count", "2", "--interval", "0.01", "--timeout", "60")["passed"] is True
    finally:
        _teardown(env)
        _drop_integration(env)


@pytest.mark.sandbox
def test_local_engine_as_a_role_without_s3tables_permission_is_refused(console_account: Env) -> None:
    env = console_account
    env.cli("up")
    cfg = env.cfg()
    iam = env.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]})
    arn = iam.create_role(RoleName=f"{env.name}-noperm", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    creds = env.client("sts").assume_role(RoleArn=arn, RoleSessionName="local")["Credentials"]
    import boto3
    from botocore.exceptions import ClientError

    s3t = boto3.client("s3tables", region_name=REGION, endpoint_url=env.endpoint_url,
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"])
    bucket_arn = f"arn:aws:s3tables:{REGION}:{ACCOUNT}:bucket/{cfg.names.table_bucket}"
    with pytest.raises(ClientError) as e:
        s3t.get_table_metadata_location(tableBucketARN=bucket_arn, namespace=cfg.names.namespace, name=cfg.names.table)
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "s3tables:GetTableMetadataLocation" in e.value.response["Error"]["Message"]
    # the product's local engine, run with that role's credentials, is refused the same way
    as_role = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
               "AWS_SESSION_TOKEN": creds["SessionToken"]}
    r = env.cli("query", "--engine", "local", f"SELECT count(*) AS n FROM {cfg.names.table}", ok=False, env=as_role)
    assert r.exit_code == 1 and "s3tables:GetTable" in " ".join(r.output.split()), r.output
    # with the reader policy the same call passes
    iam.put_role_policy(RoleName=f"{env.name}-noperm", PolicyName="read",
                        PolicyDocument=json.dumps(policies.reader_policy(cfg, Identity(account=ACCOUNT, arn=arn, user_id="x"))))
    assert s3t.get_table_metadata_location(tableBucketARN=bucket_arn, namespace=cfg.names.namespace,
                                           name=cfg.names.table)["metadataLocation"]


# ------------------------------------------------------------------ pure: detection, hints, documents
class _FakeAws:
    """Just enough of aws.client.Aws for lakeformation.Integration (no AWS call leaves it)."""

    region = "us-east-1"

    def __init__(self, catalog: dict[str, Any] | None, registered: str | None = "absent") -> None:
        self.catalog, self.registered, self.asked = catalog, registered, []

    def identity(self) -> Identity:
        return Identity(account=ACCOUNT, arn=f"arn:aws:iam::{ACCOUNT}:user/me", user_id="x")

    def client(self, service: str) -> Any:
        fake = self

        def err(code: str, op: str) -> ClientError:
            return ClientError({"Error": {"Code": code, "Message": code}}, op)

        class C:
            def get_catalog(self, CatalogId: str) -> dict[str, Any]:
                if fake.catalog is None:
                    raise err("EntityNotFoundException", "GetCatalog")
                return {"Catalog": fake.catalog}

            def describe_resource(self, ResourceArn: str) -> dict[str, Any]:
                fake.asked.append(ResourceArn)
                if fake.registered == "absent":
                    raise err("EntityNotFoundException", "DescribeResource")
                if fake.registered == "denied":
                    raise err("AccessDeniedException", "DescribeResource")
                return {"ResourceInfo": {"ResourceArn": ResourceArn}}

        return C()


IAM_DEFAULTS = [{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}]


def _cfg(mode: str = "auto") -> config.Config:
    return config.build({"stack": {"name": "orders"}, "lakeformation": {"integration_mode": mode}})


@pytest.mark.parametrize("catalog, registered, want, asks", [
    ({"CreateTableDefaultPermissions": IAM_DEFAULTS, "CreateDatabaseDefaultPermissions": IAM_DEFAULTS}, "absent", "iam", False),
    ({"CreateTableDefaultPermissions": [], "CreateDatabaseDefaultPermissions": []}, "absent", "lakeformation", False),
    ({"Name": "s3tablescatalog"}, "absent", "iam", True),  # no defaults shown: not registered = IAM mode
    ({"Name": "s3tablescatalog"}, "present", "lakeformation", True),
    ({"Name": "s3tablescatalog"}, "denied", "lakeformation", True),
])
def test_the_accounts_mode_is_told_from_the_catalog_then_describe_resource(catalog: Any, registered: str, want: str,
                                                                         asks: bool) -> None:
    from s3tstream.provision import lakeformation as lfm

    aws = _FakeAws(catalog, registered)
    integ = lfm.Integration(_cfg(), aws)  # type: ignore[arg-type]
    assert integ.account_mode == want and integ.mode == want and integ.conflict() is None
    assert aws.asked == ([f"arn:aws:s3tables:us-east-1:{ACCOUNT}:bucket/*"] if asks else [])


def test_auto_without_an_integration_works_in_lake_formation_mode_and_explicit_modes_must_match() -> None:
    from s3tstream.provision import lakeformation as lfm

    assert lfm.Integration(_cfg("auto"), _FakeAws(None)).mode == "lakeformation"  # type: ignore[arg-type]
    assert lfm.Integration(_cfg("iam"), _FakeAws(None)).mode == "iam"  # type: ignore[arg-type]
    iam_account = _FakeAws({"CreateTableDefaultPermissions": IAM_DEFAULTS})
    clash = lfm.Integration(_cfg("lakeformation"), iam_account).conflict()  # type: ignore[arg-type]
    assert clash and "IAM access control" in clash and '"iam" or "auto"' in clash
    assert lfm.Integration(_cfg("iam"), iam_account).conflict() is None  # type: ignore[arg-type]


def test_the_integration_hint_is_true_for_the_configured_mode() -> None:
    from s3tstream.provision import lakeformation as lfm

    # the console makes IAM mode: a stack that insists on Lake Formation is not sent there
    lf = lfm.integration_fix(_cfg("lakeformation"))
    assert "integrate = true" in lf and "creates IAM access control" in lf and "Enable integration" in lf
    for mode in ("auto", "iam"):
        text = lfm.integration_fix(_cfg(mode))
        assert "S3 console" in text and "IAM access control, which s3tstream then uses" in text


def test_iam_mode_documents() -> None:
    c, ident = _cfg("iam"), Identity(account=ACCOUNT, arn=f"arn:aws:iam::{ACCOUNT}:user/me", user_id="x")
    lake = policies.firehose_lake_policy(c, ident, policies.MODE_IAM)
    actions = [a for st in lake["Statement"] for a in st["Action"]]
    assert "lakeformation:GetDataAccess" not in actions and all("*" not in a for a in actions)
    by_sid = {st["Sid"]: st for st in lake["Statement"]}
    assert by_sid["S3TablesBucket"] == {"Sid": "S3TablesBucket", "Effect": "Allow",
                                        "Action": ["s3tables:GetTableBucket"],
                                        "Resource": [f"arn:aws:s3tables:us-east-1:{ACCOUNT}:bucket/orders-lake"]}
    # GetNamespace takes s3tables:namespace (Service Authorization Reference): pinned to the stack's
    assert by_sid["S3TablesNamespace"]["Condition"] == {"StringEquals": {"s3tables:namespace": "orders"}}
    assert "lakeformation:GetDataAccess" in [a for st in policies.firehose_lake_policy(c, ident)["Statement"]
                                             for a in st["Action"]]
    read = [a for st in policies.reader_policy(c, ident)["Statement"] for a in st["Action"]]
    assert set(policies.S3TABLES_READ_ACTIONS) <= set(read)
    assert "s3tables:PutTableData" not in read and "s3tables:UpdateTableMetadataLocation" not in read
    assert policies.glue_integration_catalog_input(c, ident, policies.MODE_IAM)["CreateTableDefaultPermissions"] == IAM_DEFAULTS
    assert policies.glue_integration_catalog_input(c, ident)["CreateTableDefaultPermissions"] == []


def test_sandbox_iam_evaluation_deny_wins_and_conditions_must_hold() -> None:
    from s3tstream.sandbox import access

    docs = [{"Statement": [
        {"Effect": "Allow", "Action": ["s3tables:Get*"], "Resource": "arn:aws:s3tables:r:1:bucket/b/table/*",
         "Condition": {"StringEquals": {"s3tables:tableName": "t"}}},
        {"Effect": "Deny", "Action": "s3tables:GetTableData", "Resource": "*"},
    ]}]
    orig = access._documents
    access._documents = lambda account, principal: docs  # type: ignore[assignment]
    try:
        arn = "arn:aws:s3tables:r:1:bucket/b/table/123"
        assert access.iam_allows("1", "p", "s3tables:GetTable", arn, {"s3tables:tableName": "t"})
        assert not access.iam_allows("1", "p", "s3tables:GetTable", arn, {"s3tables:tableName": "other"})
        assert not access.iam_allows("1", "p", "s3tables:GetTable", arn, {})
        assert not access.iam_allows("1", "p", "s3tables:GetTableData", arn, {"s3tables:tableName": "t"})
        assert not access.iam_allows("1", "p", "s3tables:PutTableData", arn, {"s3tables:tableName": "t"})
    finally:
        access._documents = orig  # type: ignore[assignment]


def _athena_as(endpoint_url: str, region: str, role_arn: str, cfg: config.Config) -> tuple[str, str]:
    import boto3

    sts = boto_client(endpoint_url, "sts", region)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="query")["Credentials"]
    ath = boto3.client("athena", region_name=region, endpoint_url=endpoint_url,
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["SessionToken"])
    bucket = f"{cfg.stack.name}-res-{uuid.uuid4().hex[:6]}"
    s3 = boto_client(endpoint_url, "s3", region)
    s3.create_bucket(**({"CreateBucketConfiguration": {"LocationConstraint": region}} if region != "us-east-1" else {}),
                     Bucket=bucket)
    qid = ath.start_query_execution(
        QueryString=f"SELECT count(*) FROM {cfg.names.table}",
        QueryExecutionContext={"Catalog": f"s3tablescatalog/{cfg.names.table_bucket}", "Database": cfg.names.namespace},
        ResultConfiguration={"OutputLocation": f"s3://{bucket}/q/"})["QueryExecutionId"]
    st = ath.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    s3.delete_bucket(Bucket=bucket)
    return st["State"], st.get("StateChangeReason", "")


@pytest.mark.sandbox
def test_lake_formation_mode_athena_needs_the_readers_grant(stack: Any) -> None:
    _control(stack.endpoint_url, "lakeformation/bootstrap", {})  # us-east-1: Lake Formation mode
    iam = stack.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]})
    reader = iam.create_role(RoleName=f"{stack.name}-analyst", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    other = iam.create_role(RoleName=f"{stack.name}-other", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    stack.write(extra=f'[lakeformation]\nintegrate = true\nmake_caller_admin = true\nreaders = ["{reader}"]\n')
    stack.cli("up")
    cfg = config.load(stack.config_path, environ={})
    assert _athena_as(stack.endpoint_url, "us-east-1", reader, cfg)[0] == "SUCCEEDED"
    state, reason = _athena_as(stack.endpoint_url, "us-east-1", other, cfg)
    assert state == "FAILED" and reason.startswith("PERMISSION_DENIED") and "Lake Formation" in reason
