"""Lambda Invoke against the sandbox runs the deployed zip (not the package on disk)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError
from test_dataplane_helpers import scripted_zip

from s3tstream.provision import lambda_zip
from s3tstream.sandbox.dataplane import lambda_runner
from s3tstream.transform import encode_settings

pytestmark = pytest.mark.sandbox

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})

PROBE = """
import json, os, sys, time

def handler(event, context):
    print("probe says hi")
    if event.get("raise"):
        raise ValueError("bad input: " + event["raise"])
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("exit"):
        sys.exit(3)
    if event.get("unserialisable"):
        return {"x": object()}
    return {
        "event": event,
        "env": {k: os.environ.get(k) for k in ("GREETING", "AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION", "_HANDLER", "TZ")},
        "request_id": context.aws_request_id,
        "arn": context.invoked_function_arn,
        "remaining_ok": 0 < context.get_remaining_time_in_millis() <= 5000,
        "has_boto3": _has("boto3"),
        "s3tstream_file": _file("s3tstream"),
    }

def _has(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False

def _file(name):
    try:
        return __import__(name).__file__
    except ImportError:
        return None
"""


@pytest.fixture
def lam(client) -> Any:
    return client("lambda")


@pytest.fixture
def role(client) -> str:
    return client("iam").create_role(RoleName=f"r-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]


def _function(lam: Any, role: str, code: bytes, handler: str, env: dict[str, str] | None = None, timeout: int = 5) -> str:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler=handler, Code={"ZipFile": code},
                        Environment={"Variables": env or {}}, Timeout=timeout)
    return name


def _invoke(lam: Any, name: str, event: Any, **kw: Any) -> tuple[dict[str, Any], Any]:
    r = lam.invoke(FunctionName=name, Payload=json.dumps(event).encode(), **kw)
    return r, json.loads(r["Payload"].read())


def test_invoke_runs_the_deployed_code_with_its_environment(lam, role) -> None:
    name = _function(lam, role, scripted_zip(PROBE, "probe"), "probe.handler", {"GREETING": "hello"})
    r, out = _invoke(lam, name, {"n": 1})
    assert r["StatusCode"] == 200 and "FunctionError" not in r and r["ExecutedVersion"] == "$LATEST"
    assert out["event"] == {"n": 1}
    assert out["env"] == {"GREETING": "hello", "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_REGION": "us-east-1",
                          "_HANDLER": "probe.handler", "TZ": ":UTC"}
    assert out["arn"].endswith(f":function:{name}") and out["remaining_ok"]
    assert out["s3tstream_file"] is None  # the installed package is not visible to the function
    assert out["has_boto3"] is False  # standard library only (AWS also ships boto3)


def test_a_raising_handler_is_an_unhandled_function_error(lam, role) -> None:
    name = _function(lam, role, scripted_zip(PROBE, "probe"), "probe.handler")
    r, out = _invoke(lam, name, {"raise": "x"})
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    assert out["errorType"] == "ValueError" and out["errorMessage"] == "bad input: x"
    assert set(out) == {"errorMessage", "errorType", "requestId", "stackTrace"}
    assert any("probe.py" in frame for frame in out["stackTrace"])
    assert not any("_lambda_bootstrap" in frame for frame in out["stackTrace"])


@pytest.mark.parametrize(("event", "error_type"), [
    ({"unserialisable": True}, "Runtime.MarshalError"),
    ({"exit": True}, "Runtime.ExitError"),
])
def test_runtime_errors(lam, role, event, error_type) -> None:
    name = _function(lam, role, scripted_zip(PROBE, "probe"), "probe.handler")
    r, out = _invoke(lam, name, event)
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == error_type
    r, out = _invoke(lam, name, {"n": 2})  # a fresh worker takes over after an exit
    assert out["event"] == {"n": 2}


def test_import_errors_are_reported_like_the_python_runtime(lam, role) -> None:
    name = _function(lam, role, scripted_zip("import not_a_module\n", "broken"), "broken.handler")
    r, out = _invoke(lam, name, {})
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Runtime.ImportModuleError"
    assert out["errorMessage"].startswith("Unable to import module 'broken'")
    name = _function(lam, role, scripted_zip("x = 1\n", "nohandler"), "nohandler.handler")
    _, out = _invoke(lam, name, {})
    assert out["errorType"] == "Runtime.HandlerNotFound"


def test_a_call_longer_than_the_timeout_is_stopped(lam, role) -> None:
    name = _function(lam, role, scripted_zip(PROBE, "probe"), "probe.handler", timeout=1)
    started = time.monotonic()
    r, out = _invoke(lam, name, {"sleep": 30})
    assert time.monotonic() - started < 10
    assert r["FunctionError"] == "Unhandled" and out["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in out["errorMessage"]


def test_log_tail(lam, role) -> None:
    name = _function(lam, role, scripted_zip(PROBE, "probe"), "probe.handler")
    r, _ = _invoke(lam, name, {}, LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    assert "probe says hi" in log and log.startswith("START RequestId:") and "REPORT RequestId:" in log


def test_new_code_runs_after_update_function_code(lam, role) -> None:
    name = _function(lam, role, scripted_zip("def handler(e, c):\n    return 'v1'\n", "m"), "m.handler")
    assert _invoke(lam, name, {})[1] == "v1"
    lam.update_function_code(FunctionName=name, ZipFile=scripted_zip("def handler(e, c):\n    return 'v2'\n", "m"))
    assert _invoke(lam, name, {})[1] == "v2"
    lam.update_function_configuration(FunctionName=name, Handler="m.other")
    assert _invoke(lam, name, {})[1]["errorType"] == "Runtime.HandlerNotFound"


def test_the_product_transform_runs_from_its_zip(lam, role) -> None:
    settings = {"database": "ns", "table": "t", "mode": "upsert", "keys": ["pk"],
                "columns": [{"name": "pk", "type": "string", "required": True}, {"name": "n", "type": "long"}]}
    name = _function(lam, role, lambda_zip.package().data, lambda_zip.HANDLER, encode_settings(settings))
    change = {"eventName": "INSERT", "eventSource": "aws:dynamodb", "eventID": "e1", "userIdentity": None,
              "dynamodb": {"Keys": {"pk": {"S": "a"}}, "NewImage": {"pk": {"S": "a"}, "n": {"N": "5"}},
                           "ApproximateCreationDateTime": 1}}
    event = {"invocationId": "i", "records": [{"recordId": "r1", "data": base64.b64encode(json.dumps(change).encode()).decode(),
                                               "approximateArrivalTimestamp": 1}]}
    r, out = _invoke(lam, name, event)
    assert "FunctionError" not in r
    (rec,) = out["records"]
    assert rec["recordId"] == "r1" and rec["result"] == "Ok"
    assert json.loads(base64.b64decode(rec["data"])) == {"pk": "a", "n": 5}
    assert rec["metadata"]["otfMetadata"] == {"destinationDatabaseName": "ns", "destinationTableName": "t", "operation": "update"}


def test_unknown_function_dry_run_and_event(lam, role) -> None:
    with pytest.raises(ClientError) as err:
        lam.invoke(FunctionName="no-such-function", Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert err.value.response["Error"]["Message"] == "Function not found: arn:aws:lambda:us-east-1:123456789012:function:no-such-function"
    name = _function(lam, role, scripted_zip(PROBE, "probe"), "probe.handler")
    assert lam.invoke(FunctionName=name, InvocationType="DryRun")["StatusCode"] == 204
    assert lam.invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202


def test_non_python_runtimes_are_refused() -> None:
    spec = lambda_runner.FunctionSpec("1", "r", "f", "arn", "$LATEST", "m.h", "nodejs20.x", 3, 128, (), "x", b"zip")
    result = lambda_runner.invoke(spec, b"{}")
    assert not result.ok and result.json()["errorType"] == "Runtime.InvalidRuntime"


def test_workers_of_deleted_functions_are_stopped(lam, role) -> None:
    name = _function(lam, role, scripted_zip("def handler(e, c):\n    return 1\n", "m"), "m.handler")
    assert _invoke(lam, name, {})[1] == 1
    before = lambda_runner.worker_count()
    lam.delete_function(FunctionName=name)
    lambda_runner.reap()  # (the data plane's worker also reaps every few seconds)
    assert lambda_runner.worker_count() <= before - 1
