"""create-firehose: request shape (botocore's model), retries, drift, and the step in the sandbox."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from s3tstream.provision import lambda_zip
from s3tstream.aws import policies as pol
from s3tstream.aws.client import Identity
from s3tstream.config.model import build
from s3tstream.provision.resource import Drift
from s3tstream.provision.steps import delivery
from s3tstream.provision.steps.delivery import common, destination, function

IDENT = Identity("123456789012", "arn:aws:sts::123456789012:assumed-role/admin/me", "AROAEXAMPLE")
BUCKET = "demo-err-123456789012-us-east-1"


def cfg_of(**sections: Any) -> Any:
    base: dict[str, Any] = {
        "stack": {"name": "demo"},
        "table": {"columns": [{"name": "pk", "type": "string", "required": True}, {"name": "n", "type": "long"}]},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return build(base)


# ------------------------------------------------------------------ botocore model validation
_MODELS: dict[str, Any] = {}


def model(service: str) -> Any:
    if service not in _MODELS:
        _MODELS[service] = botocore.session.get_session().get_service_model(service)
    return _MODELS[service]


def strict_errors(shape: Any, value: Any, path: str = "") -> list[str]:
    """What ParamValidator leaves out: enums, patterns, maximum lengths/values, unknown keys."""
    errs: list[str] = []
    meta = shape.metadata
    t = shape.type_name
    if t == "structure":
        for k, v in value.items():
            if k not in shape.members:
                errs.append(f"{path}.{k}: not a member of {shape.name}")
            else:
                errs += strict_errors(shape.members[k], v, f"{path}.{k}")
    elif t == "list":
        if "max" in meta and len(value) > meta["max"]:
            errs.append(f"{path}: more than {meta['max']} items")
        for i, v in enumerate(value):
            errs += strict_errors(shape.member, v, f"{path}[{i}]")
    elif t == "map":
        for k, v in value.items():
            errs += strict_errors(shape.value, v, f"{path}[{k}]")
    elif t == "string":
        if "enum" in meta and value not in meta["enum"]:
            errs.append(f"{path}: {value!r} not in {meta['enum']}")
        if "max" in meta and len(value) > meta["max"]:
            errs.append(f"{path}: longer than {meta['max']}")
        if "pattern" in meta:
            try:
                rx = re.compile(meta["pattern"])
            except re.error:  # \p{L} and friends: Java-only classes
                rx = None
            if rx is not None and not rx.fullmatch(value):
                errs.append(f"{path}: {value!r} does not match {meta['pattern']}")
    elif t in ("integer", "long") and "max" in meta and value > meta["max"]:
        errs.append(f"{path}: {value} > {meta['max']}")
    return errs


def validate(service: str, operation: str, params: dict[str, Any]) -> None:
    shape = model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    assert strict_errors(shape, params) == []


@pytest.mark.parametrize("mode", ["upsert", "changelog"])
def test_create_request_is_valid_for_botocore_model(mode: str) -> None:
    cfg = cfg_of(table={"mode": mode}, source={"sort_key": {"name": "sk", "type": "N"}},
                 firehose={"processor_buffer_mb": 0.2, "buffer_size_mb": 128, "buffer_interval_seconds": 900,
                           "retry_seconds": 7200})
    req = destination.create_request(cfg, IDENT, BUCKET, {"s3tstream:stack": "demo", "team": "data"})
    validate("firehose", "CreateDeliveryStream", req)
    dest = req["IcebergDestinationConfiguration"]
    assert req["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert dest["CatalogConfiguration"]["CatalogARN"] == "arn:aws:glue:us-east-1:123456789012:catalog/s3tablescatalog/demo-lake"
    table = dest["DestinationTableConfigurationList"]
    assert [(t["DestinationDatabaseName"], t["DestinationTableName"]) for t in table] == [("demo", "demo")]
    if mode == "upsert":
        assert table[0]["UniqueKeys"] == ["pk", "sk"] and dest["AppendOnly"] is False
    else:
        assert "UniqueKeys" not in table[0] and dest["AppendOnly"] is True
    assert dest["BufferingHints"] == {"SizeInMBs": 128, "IntervalInSeconds": 900}
    assert dest["RetryOptions"] == {"DurationInSeconds": 7200}
    assert dest["S3BackupMode"] == "FailedDataOnly"
    assert dest["S3Configuration"]["ErrorOutputPrefix"] == "errors/"
    params = {p["ParameterName"]: p["ParameterValue"] for p in dest["ProcessingConfiguration"]["Processors"][0]["Parameters"]}
    assert params == {
        "LambdaArn": "arn:aws:lambda:us-east-1:123456789012:function:demo-transform",
        "NumberOfRetries": "3", "BufferSizeInMBs": "0.2", "BufferIntervalInSeconds": "15",
    }
    assert dest["CloudWatchLoggingOptions"] == {
        "Enabled": True, "LogGroupName": "/aws/kinesisfirehose/demo-to-lake", "LogStreamName": "IcebergDelivery",
    }


def test_a_wrong_name_fails_the_model_check() -> None:
    """The check can fail: a misspelt member or a bad value is caught."""
    req = destination.create_request(cfg_of(), IDENT, BUCKET, {})
    req["IcebergDestinationConfiguration"]["BufferingHints"]["IntervalInSecs"] = 5
    with pytest.raises(AssertionError):
        validate("firehose", "CreateDeliveryStream", req)
    req = destination.create_request(cfg_of(), IDENT, BUCKET, {})
    req["IcebergDestinationConfiguration"]["S3BackupMode"] = "FailedOnly"
    with pytest.raises(AssertionError):
        validate("firehose", "CreateDeliveryStream", req)


def test_partition_comes_from_the_caller_identity() -> None:
    other = Identity("123456789012", "arn:aws-eusc:sts::123456789012:assumed-role/a/b", "X")
    req = destination.create_request(cfg_of(), other, BUCKET, {})
    text = json.dumps(req)
    assert "arn:aws:" not in text and "arn:aws-eusc:glue:" in text


def test_update_request_is_valid_and_only_carries_what_drifted() -> None:
    cfg = cfg_of()
    req = destination.update_request(cfg, IDENT, BUCKET, "7", "destinationId-000000000001",
                           [Drift("buffering", "1 MB/15 s", "1 MB/60 s"), Drift("processor")])
    validate("firehose", "UpdateDestination", req)
    assert set(req["IcebergDestinationUpdate"]) == {"BufferingHints", "ProcessingConfiguration"}
    assert req["CurrentDeliveryStreamVersionId"] == "7"


def test_lambda_requests_are_valid_for_botocore_model() -> None:
    cfg = cfg_of(firehose={"lambda_reserved_concurrency": 5})
    ctx = _FakeCtx(cfg)
    fn = function.TransformFunction(ctx)  # type: ignore[arg-type]
    args = {"FunctionName": fn.name, "Code": {"ZipFile": lambda_zip.package().data}, "Architectures": ["arm64"],
            "Tags": {"s3tstream:stack": "demo"}, "Publish": False, **fn.desired_config()}
    validate("lambda", "CreateFunction", args)
    assert args["Runtime"] == "python3.13" and args["Handler"] == "s3tstream.transform.handler"
    validate("lambda", "UpdateFunctionConfiguration", {"FunctionName": fn.name, **fn.desired_config()})


class _FakeAws:
    def identity(self) -> Identity:
        return IDENT


class _FakeCtx:
    def __init__(self, cfg: Any, **options: Any) -> None:
        self.cfg, self.aws, self.options = cfg, _FakeAws(), options
        self.messages: list[str] = []

    names = property(lambda self: self.cfg.names)
    poll = property(lambda self: 5.0)
    timeout = property(lambda self: 900.0)

    def progress(self, m: str) -> None:
        self.messages.append(m)

    def tags(self) -> dict[str, str]:
        return {"s3tstream:stack": "demo"}


# ------------------------------------------------------------------ IAM propagation retries
def client_error(code: str, message: str, op: str = "CreateDeliveryStream") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, op)


@pytest.mark.parametrize("message", [
    "Firehose is unable to assume role arn:aws:iam::123456789012:role/s3tstream-demo-firehose. Please check the role provided.",
    "Role arn:aws:iam::123456789012:role/x is not authorized to perform: glue:GetTable for the given table or the table does not exist.",
    "Access was denied when calling Lake Formation",
    "Verify that the IAM role has access to the AWS Glue Data Catalog.",
])
def test_firehose_iam_messages_are_retried(message: str) -> None:
    assert common.is_firehose_iam_propagation(client_error("InvalidArgumentException", message))


@pytest.mark.parametrize("code,message", [
    ("InvalidArgumentException", "BufferingHints.IntervalInSeconds must be at most 900"),
    ("ResourceInUseException", "Firehose demo is not authorized to ... in use"),  # other code
    ("LimitExceededException", "You have already consumed your firehose quota"),
])
def test_other_firehose_errors_are_not_retried(code: str, message: str) -> None:
    assert not common.is_firehose_iam_propagation(client_error(code, message))


def test_lambda_iam_message_is_retried_and_others_are_not() -> None:
    assert common.is_lambda_iam_propagation(client_error(
        "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda.", "CreateFunction"))
    assert not common.is_lambda_iam_propagation(client_error(
        "InvalidParameterValueException", "Unzipped size must be smaller than 262144000 bytes", "CreateFunction"))
    assert not common.is_lambda_iam_propagation(client_error(
        "AccessDeniedException", "The role defined for the function cannot be assumed by Lambda.", "CreateFunction"))


def test_retry_is_bounded_with_capped_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(common, "_sleep", slept.append)
    ctx = _FakeCtx(cfg_of())
    calls = []

    def always() -> None:
        calls.append(1)
        raise client_error("InvalidArgumentException", "Firehose is unable to assume role x")

    with pytest.raises(ClientError):
        common.retry_iam(ctx, "creating", always, common.is_firehose_iam_propagation)  # type: ignore[arg-type]
    assert len(calls) == common.IAM_RETRY_ATTEMPTS
    assert slept == [5.0, 10.0, 20.0, 30.0, 30.0, 30.0, 30.0]  # 155 s: "a minute or two"
    assert len(ctx.messages) == len(slept)


def test_retry_stops_at_first_success_and_at_other_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(common, "_sleep", slept.append)
    ctx = _FakeCtx(cfg_of())
    n = {"i": 0}

    def twice() -> str:
        n["i"] += 1
        if n["i"] <= 2:
            raise client_error("InvalidArgumentException", "Access was denied")
        return "ok"

    assert common.retry_iam(ctx, "x", twice, common.is_firehose_iam_propagation) == "ok"  # type: ignore[arg-type]
    assert n["i"] == 3 and slept == [5.0, 10.0]

    def other() -> None:
        raise client_error("InvalidArgumentException", "bad buffering")

    with pytest.raises(ClientError):
        common.retry_iam(ctx, "x", other, common.is_firehose_iam_propagation)  # type: ignore[arg-type]
    assert slept == [5.0, 10.0]


# ------------------------------------------------------------------ drift
def description_of(dest: dict[str, Any]) -> dict[str, Any]:
    """What DescribeDeliveryStream reports for a destination created with `dest`."""
    desc = json.loads(json.dumps(dest))
    desc["S3DestinationDescription"] = desc.pop("S3Configuration")
    return desc


def test_no_drift_when_describe_matches_and_format_differences_are_ignored() -> None:
    cfg = cfg_of(firehose={"processor_buffer_mb": 1.0})
    want = destination.destination(cfg, IDENT, BUCKET)
    have = description_of(want)
    assert destination.destination_drift(want, have) == []
    for p in have["ProcessingConfiguration"]["Processors"][0]["Parameters"]:
        if p["ParameterName"] == "LambdaArn":
            p["ParameterValue"] += ":$LATEST"
        if p["ParameterName"] == "BufferSizeInMBs":
            p["ParameterValue"] = "1.0"
    assert destination.destination_drift(want, have) == []


def test_drift_names_what_changed() -> None:
    old = destination.destination(cfg_of(), IDENT, BUCKET)
    new_cfg = cfg_of(firehose={"buffer_interval_seconds": 60, "processor_retries": 5, "error_prefix": "failed/"},
                     table={"mode": "changelog"})
    drift = destination.destination_drift(destination.destination(new_cfg, IDENT, BUCKET), description_of(old))
    labels = sorted(x.field for x in drift)
    assert labels == ["append-only", "buffering", "error output", "processor", "tables"]
    req = destination.update_request(new_cfg, IDENT, BUCKET, "3", "destinationId-000000000001", drift)
    validate("firehose", "UpdateDestination", req)
    upd = req["IcebergDestinationUpdate"]
    assert set(upd) == {"AppendOnly", "BufferingHints", "S3Configuration", "ProcessingConfiguration",
                        "DestinationTableConfigurationList"}
    assert upd["AppendOnly"] is True and "UniqueKeys" not in upd["DestinationTableConfigurationList"][0]


# ------------------------------------------------------------------ settings and policies
def test_transform_settings_encode_and_add_undeclared_keys() -> None:
    from s3tstream.transform import load_settings

    cfg = build({"stack": {"name": "demo"}, "source": {"partition_key": {"name": "id", "type": "N"}},
                 "table": {"columns": [{"name": "title", "type": "string"}], "extra_column": "rest"}})
    env = function.transform_environment(cfg)
    s = load_settings(env)
    assert s.keys == ("id",) and s.extra_column == "rest"
    assert {c.name: (str(c.type), c.required, c.source) for c in s.columns} == {
        "id": ("long", True, "id"), "title": ("string", False, "title"),
    }


def test_the_step_uses_policies_py_documents_and_a_tls_only_bucket_policy() -> None:
    from s3tstream.aws import policies

    cfg = cfg_of()
    ctx = _FakeCtx(cfg)
    specs = {(r.kind, r.name): r for r in delivery.resources(ctx)}  # type: ignore[arg-type]
    dpol = specs[("iam-role-policy", f"s3tstream-demo-firehose/{policies.DELIVERY_POLICY_NAME}")]
    assert dpol.document() == policies.firehose_delivery_policy(cfg, IDENT, BUCKET)  # type: ignore[attr-defined]
    logs = specs[("iam-role-policy", f"s3tstream-demo-transform/{policies.TRANSFORM_POLICY_NAME}")]
    assert logs.document() == policies.transform_policy(cfg, IDENT)  # type: ignore[attr-defined]
    assert specs[("iam-role", "s3tstream-demo-transform")].trust() == policies.transform_trust(cfg, IDENT)  # type: ignore[attr-defined]
    assert [k for k, _ in specs][-1] == "firehose-stream"  # created last, deleted first
    tls = pol.error_bucket_policy(IDENT, BUCKET)["Statement"][0]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert pol.normalize({"Action": "s3:*", "Resource": ["b", "a"]}) == {"Action": ["s3:*"], "Resource": ["a", "b"]}


# ================================================================== in the sandbox
# The account-level Lake Formation setup grant-lf needs (the sandbox starts without it).
LF = "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"


def configure(stack: Any, firehose: str = "") -> None:
    stack.write(extra=LF + (f"[firehose]\n{firehose}\n" if firehose else ""))


def up(stack: Any, ok: bool = True) -> Any:
    if LF not in stack.extra:
        configure(stack)
    return stack.cli("up", ok=ok)


def down(stack: Any, *flags: str) -> str:
    return stack.cli("down", "--yes", *flags).output


def recorded(stack: Any) -> set[tuple[str, str]]:
    return {(r["kind"], r["name"]) for r in stack.state()["resources"] if r["step"] == "create-firehose"}


def describe(stack: Any) -> dict[str, Any]:
    return stack.client("firehose").describe_delivery_stream(DeliveryStreamName=f"{stack.name}-to-lake")["DeliveryStreamDescription"]


def control(stack: Any, route: str, body: dict[str, Any]) -> Any:
    from s3tstream.sandbox import client as sandbox_client  # sends the control token

    return sandbox_client.call(stack.endpoint_url, "POST", route, body)


def test_up_creates_the_delivery_stream_as_specified(stack: Any) -> None:
    out = up(stack).output
    # waited, with progress, for the function (Pending -> Active) and the stream (CREATING -> ACTIVE)
    assert "creation: Pending/Successful" in out and "creation: Active/Successful" in out
    assert f"Firehose stream {stack.name}-to-lake: CREATING" in out
    name, acct = stack.name, "123456789012"
    ds = describe(stack)
    assert ds["DeliveryStreamStatus"] == "ACTIVE"
    assert ds["DeliveryStreamType"] == "KinesisStreamAsSource"
    role = f"arn:aws:iam::{acct}:role/s3tstream-{name}-firehose"
    assert ds["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == f"arn:aws:kinesis:us-east-1:{acct}:stream/{name}-changes"
    dest = ds["Destinations"][0]["IcebergDestinationDescription"]
    assert dest["CatalogConfiguration"]["CatalogARN"] == f"arn:aws:glue:us-east-1:{acct}:catalog/s3tablescatalog/{name}-lake"
    assert dest["DestinationTableConfigurationList"][0]["DestinationDatabaseName"] == name
    assert dest["DestinationTableConfigurationList"][0]["UniqueKeys"] == ["pk"]
    assert dest["RoleARN"] == role and dest["AppendOnly"] is False
    assert dest["BufferingHints"] == {"SizeInMBs": 1, "IntervalInSeconds": 15}
    assert dest["RetryOptions"] == {"DurationInSeconds": 300}
    assert dest["S3BackupMode"] == "FailedDataOnly"
    bucket = f"{name}-err-{acct}-us-east-1"
    assert dest["S3DestinationDescription"]["BucketARN"] == f"arn:aws:s3:::{bucket}"
    params = {p["ParameterName"]: p["ParameterValue"] for p in dest["ProcessingConfiguration"]["Processors"][0]["Parameters"]}
    fn_arn = f"arn:aws:lambda:us-east-1:{acct}:function:{name}-transform"
    assert params["LambdaArn"] == fn_arn
    assert dest["CloudWatchLoggingOptions"]["LogGroupName"] == f"/aws/kinesisfirehose/{name}-to-lake"

    # the function: package, runtime, architecture, handler, settings
    fn = stack.client("lambda").get_function(FunctionName=f"{name}-transform")["Configuration"]
    assert fn["CodeSha256"] == lambda_zip.package().sha256
    assert (fn["Runtime"], fn["Architectures"], fn["Handler"], fn["MemorySize"], fn["Timeout"]) == (
        "python3.13", ["arm64"], "s3tstream.transform.handler", 256, 60)
    assert json.loads(fn["Environment"]["Variables"]["S3T_SETTINGS"])["keys"] == ["pk"]
    assert fn["Role"] == f"arn:aws:iam::{acct}:role/s3tstream-{name}-transform"

    # the error bucket: tagged, SSE, public access blocked, TLS only, lifecycle
    s3 = stack.client("s3")
    assert {"Key": "s3tstream:stack", "Value": name} in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    lc = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
    assert lc["Expiration"]["Days"] == 30

    # logs with retention; the log stream Firehose writes to
    logs = stack.client("logs")
    groups = {g["logGroupName"]: g.get("retentionInDays") for g in logs.describe_log_groups(logGroupNamePrefix="/aws/")["logGroups"]}
    assert groups[f"/aws/kinesisfirehose/{name}-to-lake"] == 14 and groups[f"/aws/lambda/{name}-transform"] == 14
    streams = logs.describe_log_streams(logGroupName=f"/aws/kinesisfirehose/{name}-to-lake")["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["IcebergDelivery"]

    # roles: the transform's trust; the delivery policy on the Firehose role
    iam = stack.client("iam")
    trust = iam.get_role(RoleName=f"s3tstream-{name}-transform")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": acct}}
    from s3tstream.aws import policies

    delivery = iam.get_role_policy(RoleName=f"s3tstream-{name}-firehose", PolicyName=policies.DELIVERY_POLICY_NAME)
    assert {s["Sid"] for s in delivery["PolicyDocument"]["Statement"]} >= {"ReadSourceStream", "TransformFunction", "DeliveryLogs"}
    assert ("firehose-stream", f"{name}-to-lake") in recorded(stack)


def test_second_up_makes_no_mutating_call(stack: Any, calls: Any) -> None:
    up(stack)
    calls.clear()
    up(stack)
    assert calls.mutating() == []
    assert calls.counts()["firehose:DescribeDeliveryStream"] >= 1
    mine = [c for c in stack.json("plan")["changes"] if c["step"] == "create-firehose"]
    assert len(mine) == 9 and {c["action"] for c in mine} == {"none"}
    rows = [r for r in stack.json("status")["resources"] if r["step"] == "create-firehose"]
    assert len(rows) == 9 and {r["live"] for r in rows} == {"present"}
    assert calls.mutating() == []


def test_iam_propagation_errors_on_create_are_retried(stack: Any, calls: Any) -> None:
    from s3tstream.sandbox.client import inject_fault

    inject_fault(stack.endpoint_url, "lambda", "CreateFunction", "InvalidParameterValueException",
                 "The role defined for the function cannot be assumed by Lambda.", 400, 1)
    inject_fault(stack.endpoint_url, "firehose", "CreateDeliveryStream", "InvalidArgumentException",
                 f"Firehose is unable to assume role arn:aws:iam::123456789012:role/s3tstream-{stack.name}-firehose. "
                 "Please check the role provided.", 400, 2)
    calls.clear()
    up(stack)
    counts = calls.counts()
    assert counts["lambda:CreateFunction"] == 2
    assert counts["firehose:CreateDeliveryStream"] == 3
    assert describe(stack)["DeliveryStreamStatus"] == "ACTIVE"


def test_iam_retries_are_bounded_and_then_reported(stack: Any, calls: Any) -> None:
    from s3tstream.sandbox.client import clear_faults, inject_fault

    up(stack)
    stack.client("firehose").delete_delivery_stream(DeliveryStreamName=f"{stack.name}-to-lake")
    inject_fault(stack.endpoint_url, "firehose", "CreateDeliveryStream", "InvalidArgumentException",
                 "Role arn:aws:iam::123456789012:role/x is not authorized to perform: glue:GetTable for the given "
                 "table or the table does not exist.", 400, 20)
    calls.clear()
    try:
        r = up(stack, ok=False)
    finally:
        clear_faults(stack.endpoint_url)
    assert r.exit_code == 1, r.output
    assert calls.counts()["firehose:CreateDeliveryStream"] == common.IAM_RETRY_ATTEMPTS, r.output
    assert "glue:GetTable" in r.output and "grant-lf" in r.output
    up(stack)  # converges once IAM/Lake Formation let it
    assert describe(stack)["DeliveryStreamStatus"] == "ACTIVE"


def test_creating_failed_is_reported_deleted_and_a_rerun_creates_it(stack: Any) -> None:
    control(stack, "firehose/fail-create", {"name": f"{stack.name}-to-lake", "type": "KMS_ACCESS_DENIED",
                                           "details": "Firehose cannot use the KMS key (sandbox)"})
    r = up(stack, ok=False)
    text = r.output
    assert r.exit_code == 1
    assert "KMS_ACCESS_DENIED" in text and "Firehose cannot use the KMS key (sandbox)" in text
    with pytest.raises(ClientError) as e:
        describe(stack)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    up(stack)
    assert describe(stack)["DeliveryStreamStatus"] == "ACTIVE"


def test_changed_buffering_and_processor_use_update_destination(stack: Any, calls: Any) -> None:
    up(stack)
    before = describe(stack)["VersionId"]
    configure(stack, "buffer_interval_seconds = 60\nbuffer_size_mb = 4\nprocessor_buffer_mb = 2")
    calls.clear()
    up(stack)
    counts = calls.counts()
    assert counts["firehose:UpdateDestination"] == 1
    assert counts["firehose:CreateDeliveryStream"] == 0 and counts["firehose:DeleteDeliveryStream"] == 0
    ds = describe(stack)
    dest = ds["Destinations"][0]["IcebergDestinationDescription"]
    assert dest["BufferingHints"] == {"SizeInMBs": 4, "IntervalInSeconds": 60}
    params = {p["ParameterName"]: p["ParameterValue"] for p in dest["ProcessingConfiguration"]["Processors"][0]["Parameters"]}
    assert params["BufferSizeInMBs"] == "2"
    assert int(ds["VersionId"]) == int(before) + 1
    # the function's configuration did not change: nothing else was touched
    assert [c for c in calls.mutating() if not c.startswith("firehose:")] == []
    calls.clear()
    up(stack)
    assert calls.mutating() == []


def test_function_code_and_configuration_update_only_when_changed(stack: Any, calls: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    up(stack)
    configure(stack, "lambda_memory_mb = 512")
    calls.clear()
    out = up(stack).output
    assert "configuration update: Active/InProgress" in out  # waited for LastUpdateStatus Successful
    assert calls.counts()["lambda:UpdateFunctionConfiguration"] == 1
    assert calls.counts()["lambda:UpdateFunctionCode"] == 0
    fn = stack.client("lambda").get_function(FunctionName=f"{stack.name}-transform")["Configuration"]
    assert fn["MemorySize"] == 512

    new = lambda_zip.Package(lambda_zip.build_zip(lambda_zip.source_files() + [("s3tstream/transform/zz.py", b"X = 1\n")]), ())
    monkeypatch.setattr(lambda_zip, "package", lambda: new)
    calls.clear()
    out = up(stack).output
    assert "code update: Active/InProgress" in out
    assert calls.counts()["lambda:UpdateFunctionCode"] == 1
    assert calls.counts()["lambda:UpdateFunctionConfiguration"] == 0
    fn = stack.client("lambda").get_function(FunctionName=f"{stack.name}-transform")["Configuration"]
    assert fn["CodeSha256"] == new.sha256


def test_down_keeps_a_non_empty_error_bucket_and_purge_errors_removes_it(stack: Any) -> None:
    up(stack)
    bucket = f"{stack.name}-err-123456789012-us-east-1"
    s3 = stack.client("s3")
    row = base64.b64encode(b'{"pk": "a"}').decode()
    s3.put_object(Bucket=bucket, Key="errors/processing-failed/2025/01/01/00/x", Body=json.dumps({"rawData": row}).encode())
    out = down(stack)
    assert "kept error bucket" in out and "--purge-errors" in out
    s3.head_bucket(Bucket=bucket)  # still there
    assert recorded(stack) == {("error-bucket", bucket)}
    with pytest.raises(ClientError):
        describe(stack)
    again = stack.json("down", "--yes")
    assert again["deleted"] == []
    assert [(k["kind"], k["action"]) for k in again["kept"]] == [("error-bucket", "keep")]
    assert "--purge-errors" in again["kept"][0]["detail"]

    down(stack, "--purge-errors")
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=bucket)
    assert e.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
    assert recorded(stack) == set()


def test_down_removes_everything_when_the_error_bucket_is_empty(stack: Any) -> None:
    up(stack)
    down(stack)
    assert recorded(stack) == set()
    name = stack.name
    with pytest.raises(ClientError):
        stack.client("s3").head_bucket(Bucket=f"{name}-err-123456789012-us-east-1")
    with pytest.raises(ClientError):
        stack.client("lambda").get_function(FunctionName=f"{name}-transform")
    with pytest.raises(ClientError):
        stack.client("iam").get_role(RoleName=f"s3tstream-{name}-transform")
    with pytest.raises(ClientError):
        stack.client("iam").get_role_policy(RoleName=f"s3tstream-{name}-firehose", PolicyName="s3tstream-delivery")
    groups = stack.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}-")["logGroups"]
    assert groups == []


# ------------------------------------------------------------------ the sandbox's Firehose checks
def _iceberg(stack: Any, table: str, keys: list[str] | None) -> dict[str, Any]:
    acct = "123456789012"
    role = f"arn:aws:iam::{acct}:role/fx-{stack.name}"
    t: dict[str, Any] = {"DestinationDatabaseName": "ns", "DestinationTableName": table}
    if keys is not None:
        t["UniqueKeys"] = keys
    return {
        "RoleARN": role,
        "CatalogConfiguration": {"CatalogARN": f"arn:aws:glue:us-east-1:{acct}:catalog/s3tablescatalog/{stack.name}-fx"},
        "S3Configuration": {"RoleARN": role, "BucketARN": "arn:aws:s3:::b"},
        "DestinationTableConfigurationList": [t],
    }


def test_sandbox_firehose_checks_table_and_unique_keys_and_goes_active_after_creating(stack: Any) -> None:
    s3t, fh = stack.client("s3tables"), stack.client("firehose")
    arn = s3t.create_table_bucket(name=f"{stack.name}-fx")["arn"]
    s3t.create_namespace(tableBucketARN=arn, namespace=["ns"])
    s3t.create_table(tableBucketARN=arn, namespace="ns", name="t", format="ICEBERG",
                     metadata={"iceberg": {"schema": {"fields": [{"name": "pk", "type": "string", "required": True}]}}})
    name = f"{stack.name}-fx"
    stack.client("iam").create_role(RoleName=f"fx-{stack.name}", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    with pytest.raises(ClientError) as e:  # no integration catalog, no Lake Formation grant
        fh.create_delivery_stream(DeliveryStreamName=name, IcebergDestinationConfiguration=_iceberg(stack, "t", ["pk"]))
    assert "not authorized to perform: glue:GetTable" in e.value.response["Error"]["Message"]
    control(stack, "lakeformation/bootstrap", {})
    with pytest.raises(ClientError) as e:  # still no grant to the role
        fh.create_delivery_stream(DeliveryStreamName=name, IcebergDestinationConfiguration=_iceberg(stack, "t", ["pk"]))
    assert "not authorized to perform: glue:GetTable" in e.value.response["Error"]["Message"]
    stack.client("lakeformation").grant_permissions(
        Principal={"DataLakePrincipalIdentifier": f"arn:aws:iam::123456789012:role/fx-{stack.name}"},
        Resource={"Table": {"CatalogId": f"123456789012:s3tablescatalog/{stack.name}-fx", "DatabaseName": "ns", "Name": "t"}},
        Permissions=["DESCRIBE"])
    with pytest.raises(ClientError) as e:
        fh.create_delivery_stream(DeliveryStreamName=name, IcebergDestinationConfiguration=_iceberg(stack, "missing", ["pk"]))
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    assert "glue:GetTable" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        fh.create_delivery_stream(DeliveryStreamName=name, IcebergDestinationConfiguration=_iceberg(stack, "t", ["id"]))
    assert "UniqueKeys" in e.value.response["Error"]["Message"]

    fh.create_delivery_stream(DeliveryStreamName=name, IcebergDestinationConfiguration=_iceberg(stack, "t", ["pk"]))
    st = lambda: fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"]  # noqa: E731
    with pytest.raises(ClientError) as e:
        fh.delete_delivery_stream(DeliveryStreamName=name)  # CREATING: refused
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"
    assert st() == "CREATING"
    assert st() == "ACTIVE"
    fh.delete_delivery_stream(DeliveryStreamName=name)
    assert st() == "DELETING"
    with pytest.raises(ClientError):
        st()


def test_sandbox_tls_only_bucket_policy_denies_only_insecure_requests(stack: Any) -> None:
    s3 = stack.client("s3")
    for secure, allowed in (("false", True), ("true", False)):
        bucket = f"{stack.name}-tls-{secure}"
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [f"arn:aws:s3:::{bucket}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": secure}}}]}))
        if allowed:  # the sandbox stands for HTTPS: a "deny when not TLS" statement does not apply
            s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        else:
            with pytest.raises(ClientError):
                s3.put_object(Bucket=bucket, Key="k", Body=b"x")
