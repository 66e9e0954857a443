"""Security audit of what the tool really sends: every IAM policy, trust policy, Lake Formation
grant and bucket setting captured from the requests of a sandbox `up` (botocore's
before-parameter-build event on the product's own clients), checked against the rules:

- no wildcard action in an Allow statement (a Deny may say s3:* : it denies everything);
- a "*" resource, or a wildcard inside an ARN, only where AWS offers nothing narrower:
  RESOURCE_WILDCARDS below lists each one with its reason, and nothing else passes;
- every trust policy names one service principal and carries aws:SourceAccount;
- Lake Formation grants: only the stack's principals, only the stack's table/database, never
  with grant option, never ALL unless asked; the admin list is only ever added to;
- every S3 bucket the stack creates blocks public access, denies non-TLS requests, is encrypted;
- the state file holds no credentials; `down` never deletes an adopted resource or one without
  the stack's tag; a traceback never shows local variables.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from reliability_helpers import write_config

from s3tstream.aws import policies

ACCOUNT = "123456789012"

# (action, resource pattern) -> why nothing narrower exists. A wildcard resource not matched here fails.
RESOURCE_WILDCARDS: dict[tuple[str, str], str] = {
    ("lakeformation:GetDataAccess", r"\*"): policies.WILDCARD_RESOURCES["lakeformation:GetDataAccess"],
    ("s3tables:ListTableBuckets", r"\*"): policies.WILDCARD_RESOURCES["s3tables:ListTableBuckets"],
    ("s3tables:*Table*|s3tables:*Namespace*", r"arn:aws:s3tables:us-east-1:\d{12}:bucket/\*(/table/\*)?"):
        policies.WILDCARD_RESOURCES["lf-integration:bucket/*"],
    ("lambda:InvokeFunction|lambda:GetFunctionConfiguration", r"arn:aws:lambda:[^*]+:function:[^:*]+:\*"):
        "the transform function's versions and aliases (Firehose may call a qualified ARN)",
    ("logs:CreateLogStream|logs:PutLogEvents", r"arn:aws:logs:[^*]+:log-group:/aws/lambda/[^:*]+:log-stream:\*"):
        "Lambda names its log streams at run time; scoped to the function's own log group",
    ("s3:AbortMultipartUpload|s3:GetObject|s3:PutObject", r"arn:aws:s3:::[^/*]+/errors/\*"):
        "objects under the error prefix of the stack's error bucket (S3 object ARNs are keys)",
}


# ------------------------------------------------------------------ capture
class Capture:
    """Every API call the product's clients make, with its parameters (before serialization)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from s3tstream.aws import client as aws

        original = aws.Aws.client
        cap = self

        def client(self: Any, service: str) -> Any:
            c = original(self, service)
            if getattr(c, "_audit_capture", None) is not cap:
                sname = c.meta.service_model.service_name

                def record(params: dict[str, Any], model: Any, **_: Any) -> None:
                    keep = {k: v for k, v in params.items() if not isinstance(v, (bytes, bytearray)) and k != "Code"}
                    cap.calls.append((sname, model.name, json.loads(json.dumps(keep, default=str))))

                c.meta.events.register("before-parameter-build.*.*", record)
                c._audit_capture = cap
            return c

        monkeypatch.setattr(aws.Aws, "client", client)
        # clients are shared by the process's stacks: this test gets its own, dropped with it
        monkeypatch.setattr(aws, "_SHARED", {})

    def of(self, service: str, *ops: str) -> list[tuple[str, dict[str, Any]]]:
        return [(op, p) for s, op, p in self.calls if s == service and op in ops]


def as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def _allowed_wildcard(action: str, resource: str) -> str | None:
    for (acts, res), why in RESOURCE_WILDCARDS.items():
        if any(re.fullmatch(a.replace("*", ".*"), action) for a in acts.split("|")) and re.fullmatch(res, resource):
            return why
    return None


def policy_problems(name: str, doc: dict[str, Any]) -> list[str]:
    out = []
    if doc.get("Version") != "2012-10-17":
        out.append(f"{name}: Version {doc.get('Version')}")
    for st in doc["Statement"]:
        actions = as_list(st.get("Action", []))
        if "NotAction" in st or "NotResource" in st:
            out.append(f"{name}: NotAction/NotResource")
        if st["Effect"] == "Deny":
            continue
        for a in actions:
            if "*" in a or "?" in a:
                out.append(f"{name}: wildcard action {a}")
        for r in as_list(st.get("Resource", [])):
            if "*" in r:
                bad = [a for a in actions if not _allowed_wildcard(a, r)]
                if bad:
                    out.append(f"{name}: wildcard resource {r} for {bad} is not in RESOURCE_WILDCARDS")
    return out


def trust_problems(name: str, doc: dict[str, Any]) -> list[str]:
    out = []
    for st in doc["Statement"]:
        principal = st.get("Principal", {})
        services = as_list(principal.get("Service", [])) if isinstance(principal, dict) else []
        if st["Effect"] == "Allow" and (len(services) != 1 or set(principal) != {"Service"}):
            out.append(f"{name}: principal {principal} is not one service")
        if services and not services[0].endswith(".amazonaws.com"):
            out.append(f"{name}: principal {services[0]}")
        cond = st.get("Condition", {}).get("StringEquals", {})
        if cond.get("aws:SourceAccount") != ACCOUNT:
            out.append(f"{name}: no aws:SourceAccount condition ({st.get('Condition')})")
    return out


# ------------------------------------------------------------------ the audit of a real `up`
AUDITED = ('[lakeformation]\nintegrate = true\nmake_caller_admin = true\n'
           f'readers = ["arn:aws:iam::{ACCOUNT}:role/analyst"]\n')


@pytest.fixture
def audited_up(stack, monkeypatch):
    """A full `up` with distinctive credentials and a pre-existing Lake Formation admin."""
    creds = {"AWS_ACCESS_KEY_ID": "AKIAAUDITKEY00000001", "AWS_SECRET_ACCESS_KEY": "auditSecretValue/abc+XYZ0123456789",
             "AWS_SESSION_TOKEN": "auditSessionTokenValue0123456789"}
    for k, v in creds.items():
        monkeypatch.setenv(k, v)
    lf = stack.client("lakeformation")
    iam = stack.client("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                                 "Action": "sts:AssumeRole"}]})
    for role in ("analyst", "someone-elses-admin"):
        try:
            iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
    other_admin = f"arn:aws:iam::{ACCOUNT}:role/someone-elses-admin"
    settings = lf.get_data_lake_settings()["DataLakeSettings"]
    if other_admin not in [a["DataLakePrincipalIdentifier"] for a in settings.get("DataLakeAdmins", [])]:
        settings["DataLakeAdmins"] = settings.get("DataLakeAdmins", []) + [{"DataLakePrincipalIdentifier": other_admin}]
        lf.put_data_lake_settings(DataLakeSettings=settings)
    write_config(stack, AUDITED, pipeline=False)
    cap = Capture()
    cap.install(monkeypatch)
    r = stack.cli("up")
    return stack, cap, creds, other_admin, r


@pytest.mark.sandbox
def test_audit_of_everything_up_sends(audited_up):
    stack, cap, creds, other_admin, result = audited_up
    problems: list[str] = []

    # IAM: trust policies, permission policies
    trusts = [(p["RoleName"], json.loads(p["AssumeRolePolicyDocument"])) for _, p in cap.of("iam", "CreateRole")]
    trusts += [(p["RoleName"], json.loads(p["PolicyDocument"])) for _, p in cap.of("iam", "UpdateAssumeRolePolicy")]
    assert {n for n, _ in trusts} >= {f"s3tstream-{stack.name}-firehose", f"s3tstream-{stack.name}-transform"}
    for name, doc in trusts:
        problems += trust_problems(f"trust of {name}", doc)
    for _, p in cap.of("iam", "CreateRole"):
        tags = {t["Key"]: t["Value"] for t in p.get("Tags", [])}
        if tags.get("s3tstream:stack") != stack.name:
            problems.append(f"role {p['RoleName']} created without the stack tag")
    inline = [(f"{p['RoleName']}/{p['PolicyName']}", json.loads(p["PolicyDocument"])) for _, p in cap.of("iam", "PutRolePolicy")]
    assert len(inline) >= 3
    for name, doc in inline:
        problems += policy_problems(name, doc)
    assert not cap.of("iam", "AttachRolePolicy", "CreatePolicy", "PutUserPolicy", "CreateUser", "CreateAccessKey")

    # Lake Formation grants and settings
    grants = cap.of("lakeformation", "GrantPermissions")
    assert grants
    catalog = f"{ACCOUNT}:s3tablescatalog/{stack.name}-lake"
    principals = {f"arn:aws:iam::{ACCOUNT}:role/s3tstream-{stack.name}-firehose", f"arn:aws:iam::{ACCOUNT}:role/analyst"}
    for _, g in grants:
        who = g["Principal"]["DataLakePrincipalIdentifier"]
        res = g["Resource"]
        if who not in principals:
            problems.append(f"grant to {who}")
        if g.get("PermissionsWithGrantOption"):
            problems.append(f"grant with grant option to {who}: {g['PermissionsWithGrantOption']}")
        if "ALL" in g["Permissions"] or "DROP" in g["Permissions"]:
            problems.append(f"grant of {g['Permissions']} to {who}")
        where = (res.get("Table") or res.get("Database") or {}).get("CatalogId")
        if where != catalog or set(res) - {"Table", "Database"}:
            problems.append(f"grant on {res}")
        if who.endswith("/analyst") and set(g["Permissions"]) - {"SELECT", "DESCRIBE"}:
            problems.append(f"reader got {g['Permissions']}")
    for _, p in cap.of("lakeformation", "PutDataLakeSettings"):
        admins = [a["DataLakePrincipalIdentifier"] for a in p["DataLakeSettings"].get("DataLakeAdmins", [])]
        if other_admin not in admins:
            problems.append(f"PutDataLakeSettings dropped an existing admin: {admins}")
    lf_admins = [a["DataLakePrincipalIdentifier"] for a in
                 stack.client("lakeformation").get_data_lake_settings()["DataLakeSettings"]["DataLakeAdmins"]]
    assert other_admin in lf_admins

    # buckets: every bucket created blocks public access, denies non-TLS, is encrypted
    created = [p["Bucket"] for _, p in cap.of("s3", "CreateBucket")]
    assert created
    for b in created:
        pab = [p["PublicAccessBlockConfiguration"] for _, p in cap.of("s3", "PutPublicAccessBlock") if p["Bucket"] == b]
        if not pab or not all(pab[-1].get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy",
                                                         "RestrictPublicBuckets")):
            problems.append(f"bucket {b}: public access not fully blocked ({pab})")
        pols = [json.loads(p["Policy"]) for _, p in cap.of("s3", "PutBucketPolicy") if p["Bucket"] == b]
        tls = [st for doc in pols for st in doc["Statement"]
               if st["Effect"] == "Deny" and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
               and st.get("Principal") in ("*", {"AWS": "*"})]
        if not tls or not {f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*"} <= set(as_list(tls[0]["Resource"])):
            problems.append(f"bucket {b}: no deny of non-TLS requests on the bucket and its objects")
        for doc in pols:
            if any(st["Effect"] == "Allow" and st.get("Principal") in ("*", {"AWS": "*"}) for st in doc["Statement"]):
                problems.append(f"bucket {b}: a policy allows everyone")
        if not [p for _, p in cap.of("s3", "PutBucketEncryption") if p["Bucket"] == b]:
            problems.append(f"bucket {b}: no default encryption set")
    assert not cap.of("s3", "PutBucketAcl", "PutObjectAcl")
    for _, p in cap.of("s3tables", "CreateTableBucket"):
        if p.get("encryptionConfiguration", {}).get("sseAlgorithm") not in ("AES256", "aws:kms"):
            problems.append(f"table bucket {p['name']} without encryption")
    for _, p in cap.of("kinesis", "CreateStream"):
        if not cap.of("kinesis", "StartStreamEncryption"):
            problems.append(f"stream {p['StreamName']} not encrypted")

    # nothing created without the stack tag where the service takes tags
    for svc, op, key in (("dynamodb", "CreateTable", "Tags"), ("kinesis", "CreateStream", "Tags"),
                         ("s3tables", "CreateTableBucket", "tags"), ("lambda", "CreateFunction", "Tags"),
                         ("logs", "CreateLogGroup", "tags"), ("firehose", "CreateDeliveryStream", "Tags")):
        for _, p in cap.of(svc, op):
            tags = _tags(p.get(key))
            if tags.get("s3tstream:stack") != stack.name:
                problems.append(f"{svc}:{op} without the stack tag: {p.get(key)}")

    assert problems == [], "\n".join(problems)

    # no credential in the state directory or the output
    secrets = list(creds.values())
    for path in (stack.dir / ".s3tstream").iterdir():
        text = path.read_bytes().decode("utf-8", "replace")
        for s in secrets:
            assert s not in text, f"{path.name} holds a credential"
        assert "secret" not in text.lower(), f"{path.name} mentions a secret"
    for s in secrets:
        assert s not in result.output


def _tags(v: Any) -> dict[str, str]:
    if isinstance(v, dict):
        return v
    return {t["Key"]: t["Value"] for t in v or []}


@pytest.mark.sandbox
def test_athena_results_bucket_denies_non_tls(stack, monkeypatch):
    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
    write_config(stack)
    stack.cli("up")
    cap = Capture()
    cap.install(monkeypatch)
    stack.cli("query", f"SELECT count(*) AS n FROM {stack.name}")
    [bucket] = [p["Bucket"] for _, p in cap.of("s3", "CreateBucket")]
    pols = [json.loads(p["Policy"]) for _, p in cap.of("s3", "PutBucketPolicy") if p["Bucket"] == bucket]
    assert any(st["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(st) for d in pols for st in d["Statement"])


# ------------------------------------------------------------------ ownership
@pytest.mark.sandbox
def test_down_leaves_untagged_and_adopted_resources_alone(stack):
    """Same-named resources made before the stack, without its tag: `up` adopts those it may
    (the source table, the table bucket) and refuses the rest (exit 2 naming them); `down`
    removes only what the stack made, and every pre-existing resource is still there, unchanged."""
    n = stack.name
    ddb, kin, s3t, iam, s3 = (stack.client(s) for s in ("dynamodb", "kinesis", "s3tables", "iam", "s3"))
    ddb.create_table(TableName=n, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    ddb.put_item(TableName=n, Item={"pk": {"S": "precious"}})
    kin.create_stream(StreamName=f"{n}-changes", StreamModeDetails={"StreamMode": "ON_DEMAND"})
    bucket_arn = s3t.create_table_bucket(name=f"{n}-lake")["arn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"},
                                                                 "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName=f"s3tstream-{n}-firehose", AssumeRolePolicyDocument=trust)
    err_bucket = f"{n}-err-{ACCOUNT}-us-east-1"
    s3.create_bucket(Bucket=err_bucket)
    s3.put_object(Bucket=err_bucket, Key="theirs.txt", Body=b"theirs")
    try:
        write_config(stack)
        r = stack.cli("up", "--output", "json", ok=False)
        assert r.exit_code == 2
        msg = json.loads(r.stdout)["error"]["message"]
        for refused in (f"{n}-changes", f"s3tstream-{n}-firehose"):
            assert refused in msg and "not created by this stack" in msg, msg
        state = {(x["kind"], x["name"]): x for x in stack.state()["resources"]}
        assert state[("dynamodb-table", n)]["ownership"] == "adopted"
        assert state[("s3tables-table-bucket", f"{n}-lake")]["ownership"] == "adopted"
        assert ("kinesis-stream", f"{n}-changes") not in state and ("firehose-role", f"s3tstream-{n}-firehose") not in state

        stack.cli("down", "--yes", "--purge-errors")
        assert ddb.get_item(TableName=n, Key={"pk": {"S": "precious"}})["Item"]
        assert "s3tstream:stack" not in {t["Key"] for t in ddb.list_tags_of_resource(
            ResourceArn=ddb.describe_table(TableName=n)["Table"]["TableArn"]).get("Tags", [])}
        assert kin.describe_stream_summary(StreamName=f"{n}-changes")["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        assert s3t.get_table_bucket(tableBucketARN=bucket_arn)["name"] == f"{n}-lake"
        assert iam.get_role(RoleName=f"s3tstream-{n}-firehose")["Role"]["AssumeRolePolicyDocument"]
        assert iam.list_role_policies(RoleName=f"s3tstream-{n}-firehose")["PolicyNames"] == []
        assert s3.get_object(Bucket=err_bucket, Key="theirs.txt")["Body"].read() == b"theirs"
        assert stack.state()["resources"] == []
    finally:
        for fn in (lambda: ddb.delete_table(TableName=n), lambda: kin.delete_stream(StreamName=f"{n}-changes"),
                   lambda: iam.delete_role(RoleName=f"s3tstream-{n}-firehose"),
                   lambda: s3.delete_object(Bucket=err_bucket, Key="theirs.txt"), lambda: s3.delete_bucket(Bucket=err_bucket)):
            try:
                fn()
            except Exception:  # noqa: BLE001 - cleanup of a failed test
                pass


# ------------------------------------------------------------------ tracebacks
def test_an_unexpected_exception_shows_no_local_values(tmp_path):
    """A bug surfacing as an unexpected exception: Typer's traceback must not print locals
    (pretty_exceptions_show_locals=False), so no credential or config value leaks through it."""
    cfg = tmp_path / "s3tstream.toml"
    cfg.write_text('[stack]\nname = "tb"\n')
    script = (
        "import s3tstream.config.model as c\n"
        "def load(path=None, environ=None):\n"
        "    aws_secret_access_key = 'LOCALSECRETVALUE123'\n"
        "    token = {'SessionToken': 'LOCALTOKENVALUE456'}\n"
        "    raise RuntimeError('boom in load')\n"
        "c.load = load\n"
        "from s3tstream.cli.app import app\n"
        "app(args=['plan'], prog_name='s3tstream')\n"
    )
    env = {**os.environ, "S3TSTREAM_CONFIG": str(cfg), "AWS_SECRET_ACCESS_KEY": "ENVSECRETVALUE789",
           "COLUMNS": "200", "TERM": "dumb"}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "boom in load" in out, out
    for secret in ("LOCALSECRETVALUE123", "LOCALTOKENVALUE456", "ENVSECRETVALUE789"):
        assert secret not in out, out
    assert "aws_secret_access_key =" not in out and "token =" not in out


def test_a_bug_inside_a_step_is_reported_without_locals(stack, monkeypatch, calls):
    """Inside `up` the engine turns an unexpected exception into a step failure (exit 1) naming
    the exception only."""
    from s3tstream.provision.steps import source

    def broken(self):
        secret_value = "STEPSECRET42"  # noqa: F841 - must not be printed
        raise KeyError("unexpected shape")

    monkeypatch.setattr(source.SourceTable, "observe", broken)
    write_config(stack, pipeline=False)
    r = stack.cli("step", "create-source", "--output", "json", ok=False)
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert "KeyError" in err["message"] and "bug in s3tstream" in err["hint"]
    assert "STEPSECRET42" not in r.output
