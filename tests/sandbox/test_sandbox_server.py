"""The server, its middleware (faults, extension handlers, control routes), workers, reset, pin."""

from __future__ import annotations

import json
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sandbox_helpers import REGION, create_table

from s3tstream.sandbox import _pin, instances, registry
from s3tstream.sandbox import client as sandbox_client
from s3tstream.sandbox.server import SandboxServer

BUCKET_ARN = f"arn:aws:s3tables:{REGION}:123456789012:bucket/my-bucket"


@pytest.fixture
def faults(sandbox):
    yield sandbox.endpoint_url
    sandbox_client.clear_faults(sandbox.endpoint_url)


def code_of(exc_info) -> str:
    return exc_info.value.response["Error"]["Code"]


@pytest.mark.parametrize(
    ("service", "operation", "call"),
    [
        ("dynamodb", "ListTables", lambda c: c("dynamodb").list_tables()),  # json 1.0
        ("kinesis", "ListStreams", lambda c: c("kinesis").list_streams()),  # json 1.1
        ("s3tables", "ListTableBuckets", lambda c: c("s3tables").list_table_buckets()),  # rest-json
        ("lambda", "ListFunctions", lambda c: c("lambda").list_functions()),  # rest-json
        ("iam", "ListRoles", lambda c: c("iam").list_roles()),  # query
        ("sts", "GetCallerIdentity", lambda c: c("sts").get_caller_identity()),  # query
        ("s3", "ListBuckets", lambda c: c("s3").list_buckets()),  # rest-xml
        ("cloudwatch", "ListMetrics", lambda c: c("cloudwatch").list_metrics()),  # rpc-v2-cbor
    ],
)
def test_injected_fault_raises_that_code_in_each_protocol(client, faults, service, operation, call):
    sandbox_client.inject_fault(faults, service, operation, "ThrottlingException", "Rate exceeded")
    with pytest.raises(ClientError) as exc:
        call(client)
    assert code_of(exc) == "ThrottlingException"
    assert exc.value.response["Error"]["Message"] == "Rate exceeded"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert sandbox_client.list_faults(faults) == []


def test_fault_count_status_and_modeled_exception(client, faults, name):
    firehose = client("firehose")
    message = "Firehose is unable to assume role arn:aws:iam::123456789012:role/fh. Please check the role provided."
    sandbox_client.inject_fault(faults, "firehose", "CreateDeliveryStream", "InvalidArgumentException", message, count=2)
    kwargs = {
        "DeliveryStreamName": name("fh"),
        "S3DestinationConfiguration": {
            "RoleARN": "arn:aws:iam::123456789012:role/fh",
            "BucketARN": "arn:aws:s3:::some-bucket",
        },
    }
    for _ in range(2):
        with pytest.raises(firehose.exceptions.InvalidArgumentException) as exc:
            firehose.create_delivery_stream(**kwargs)
        assert "unable to assume role" in exc.value.response["Error"]["Message"]
    firehose.create_delivery_stream(**kwargs)  # the third call reaches moto

    sandbox_client.inject_fault(faults, "dynamodb", "DescribeTable", "InternalServerError", "boom", status=500)
    with pytest.raises(ClientError) as exc:
        client("dynamodb").describe_table(TableName="whatever")
    assert code_of(exc) == "InternalServerError"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_fault_is_checked_before_extension_handlers(client, faults, name):
    ddb = client("dynamodb")
    table = name("tbl")
    create_table(ddb, table)
    sandbox_client.inject_fault(faults, "dynamodb", "DescribeKinesisStreamingDestination", "ThrottlingException", "slow down")
    with pytest.raises(ClientError) as exc:
        ddb.describe_kinesis_streaming_destination(TableName=table)
    assert code_of(exc) == "ThrottlingException"
    assert ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"] == []


def test_rest_xml_operations_are_told_apart(client, faults, name):
    s3 = client("s3")
    bucket = name("bucket")
    s3.create_bucket(Bucket=bucket)
    sandbox_client.inject_fault(faults, "s3", "GetObject", "AccessDenied", "denied")
    s3.put_object(Bucket=bucket, Key="a/b c.txt", Body=b"x")  # PutObject is not GetObject
    s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "a/b c.txt"})
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="a/b c.txt")
    assert code_of(exc) == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="copy.txt")["Body"].read() == b"x"


def test_extension_handler_rest_json_params_and_errors(client, monkeypatch):
    seen = {}

    def handler(req: registry.SandboxRequest):
        seen.update(op=req.operation, params=req.params, region=req.region, account=req.account_id, latency=req.latency)
        if req.params["tableBucketARN"].endswith("/missing"):
            raise registry.AwsError("NotFoundException", "The specified bucket does not exist.", 404)
        return {"tableBucketARN": req.params["tableBucketARN"], "configuration": {}}

    monkeypatch.setitem(registry._HANDLERS, ("s3tables", "GetTableBucketMaintenanceConfiguration"), handler)
    s3tables = client("s3tables")
    out = s3tables.get_table_bucket_maintenance_configuration(tableBucketARN=BUCKET_ARN)
    assert out["tableBucketARN"] == BUCKET_ARN
    assert seen == {
        "op": "GetTableBucketMaintenanceConfiguration",
        "params": {"tableBucketARN": BUCKET_ARN},  # path parameter, URL-decoded
        "region": REGION,
        "account": "123456789012",
        "latency": "instant",
    }
    with pytest.raises(s3tables.exceptions.NotFoundException) as exc:
        s3tables.get_table_bucket_maintenance_configuration(tableBucketARN=BUCKET_ARN[:-9] + "missing")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # query-string members arrive under their member names (as strings)
    monkeypatch.setitem(
        registry._HANDLERS, ("s3tables", "ListTables"), lambda req: seen.update(list=req.params) or {"tables": []}
    )
    assert s3tables.list_tables(tableBucketARN=BUCKET_ARN, namespace="ns1", maxTables=5)["tables"] == []
    assert seen["list"] == {"tableBucketARN": BUCKET_ARN, "namespace": "ns1", "maxTables": "5"}


def test_extension_handler_json_and_crash_is_a_500(client, monkeypatch):
    def handler(req: registry.SandboxRequest):
        if req.params.get("CatalogId") == "crash":
            raise ZeroDivisionError("bug in the handler")
        return {"Catalog": {"Name": req.params["CatalogId"]}}

    monkeypatch.setitem(registry._HANDLERS, ("glue", "GetCatalog"), handler)
    glue = client("glue")
    assert glue.get_catalog(CatalogId="s3tablescatalog")["Catalog"]["Name"] == "s3tablescatalog"
    with pytest.raises(ClientError) as exc:
        glue.get_catalog(CatalogId="crash")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_control_routes(sandbox, monkeypatch):
    health = sandbox_client.health(sandbox.endpoint_url)
    assert health["status"] == "ok" and health["moto"] == "5.2.5" and health["latency"] == "instant"
    with pytest.raises(sandbox_client.SandboxControlError, match="NotFound"):
        sandbox_client.call(sandbox.endpoint_url, "GET", "no/such/route")
    monkeypatch.setitem(registry._CONTROL, ("POST", "echo"), lambda server, body: {"got": body, "port": server.port})
    assert sandbox_client.call(sandbox.endpoint_url, "POST", "echo", {"a": 1}) == {"got": {"a": 1}, "port": sandbox.port}


def test_workers_run_with_the_server_and_on_demand(sandbox, monkeypatch):
    calls: list[object] = []
    monkeypatch.setitem(registry._WORKERS, "probe", registry.Worker("probe", calls.append, interval=0.005))
    assert "probe" in sandbox_client.run_workers(sandbox.endpoint_url)  # on demand
    assert calls == [sandbox]
    with SandboxServer() as other:
        deadline = time.monotonic() + 5
        while other not in calls and time.monotonic() < deadline:
            time.sleep(0.005)
        assert other in calls  # the loop started with the server
    stopped_at = len(calls)
    time.sleep(0.03)
    assert len(calls) == stopped_at  # and stopped with it


def test_reset_clears_backends_destinations_and_faults(client, sandbox, name):
    ddb, kinesis = client("dynamodb"), client("kinesis")
    table = name("tbl")
    create_table(ddb, table)
    kinesis.create_stream(StreamName=name("s"), ShardCount=1)
    arn = kinesis.list_streams()["StreamSummaries"][0]["StreamARN"]
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    sandbox_client.inject_fault(sandbox.endpoint_url, "kinesis", "PutRecord", "ThrottlingException")
    sandbox_client.reset(sandbox.endpoint_url)
    assert table not in ddb.list_tables()["TableNames"]
    assert kinesis.list_streams()["StreamNames"] == []
    assert sandbox_client.list_faults(sandbox.endpoint_url) == []
    create_table(ddb, table)
    assert ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"] == []
    # moto's own reset route clears the extensions' state too
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    request = urllib.request.Request(sandbox.endpoint_url + "/moto-api/reset", data=b"", method="POST",
                                     headers={instances.TOKEN_HEADER: sandbox.token})
    assert json.loads(urllib.request.urlopen(request, timeout=5).read()) == {"status": "ok"}
    create_table(ddb, table)
    assert ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"] == []


def test_free_ports_and_one_endpoint_for_all_services(sandbox):
    with SandboxServer() as other:
        assert other.port != sandbox.port and other.port > 0
        assert other.endpoint_url == f"http://127.0.0.1:{other.port}"
        # moto state is process-wide: both endpoints see the same tables
        cfg = Config(retries={"total_max_attempts": 1})
        a = boto3.client("dynamodb", region_name=REGION, endpoint_url=sandbox.endpoint_url, config=cfg)
        b = boto3.client("dynamodb", region_name=REGION, endpoint_url=other.endpoint_url, config=cfg)
        create_table(a, "shared-by-both-servers")
        assert "shared-by-both-servers" in b.list_tables()["TableNames"]
        a.delete_table(TableName="shared-by-both-servers")
    assert not other.running
    with pytest.raises(ValueError, match="latency"):
        SandboxServer(latency="slow")


def test_moto_version_pin(monkeypatch):
    assert _pin.check_moto_version() == "5.2.5"
    monkeypatch.setattr(_pin.metadata, "version", lambda _name: "9.9.9")
    monkeypatch.delenv(_pin.SKIP_ENV, raising=False)
    with pytest.raises(RuntimeError, match=r"written for moto 5\.2\.5, but moto 9\.9\.9 is installed"):
        _pin.check_moto_version()
    monkeypatch.setenv(_pin.SKIP_ENV, "1")
    assert _pin.check_moto_version() == "9.9.9"


def test_dispatch_does_not_list_motos_folder_or_inspect_classes_per_request(sandbox, client, monkeypatch):
    """moto listed its package folder (and ran inspect.getmembers) for every request; the sandbox
    asks once per host name and response class (sandbox/dispatch.py)."""
    import inspect

    from moto import backends
    from moto.dynamodb.responses import DynamoHandler

    from s3tstream.sandbox import dispatch

    ddb, sts = client("dynamodb"), client("sts")
    ddb.list_tables(), sts.get_caller_identity()  # each host and class seen once
    listed, inspected = [], []
    real_list, real_getmembers = backends.list_of_moto_modules, inspect.getmembers
    monkeypatch.setattr(backends, "list_of_moto_modules", lambda: listed.append(1) or real_list())
    monkeypatch.setattr(inspect, "getmembers", lambda *a, **k: inspected.append(1) or real_getmembers(*a, **k))
    for _ in range(3):
        assert "TableNames" in ddb.list_tables()
        assert sts.get_caller_identity()["Account"] == "123456789012"
    assert listed == [] and inspected == []
    # the cache holds exactly what moto computes
    assert dispatch._method_names(DynamoHandler) == frozenset(dispatch._original_method_names(DynamoHandler))
    assert isinstance(sandbox._httpd.app.moto_app, dispatch.Dispatcher)


def test_a_background_sandbox_warms_the_services_up_uses(tmp_path, monkeypatch, _fake_aws_env):
    """The first request of a service imported its backend and loaded its model (80-480 ms each);
    a background sandbox does it as soon as it listens, while its client starts."""
    from s3tstream.sandbox import dispatch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with SandboxServer(kind="serve") as srv:
        assert srv.warming is not None
        srv.warming.join(120)
        apps = srv._httpd.app.moto_app.app_instances
        assert {"sts", "dynamodb", "kinesis", "iam", "s3", "s3tables", "glue", "lakeformation", "firehose",
                "awslambda", "logs", "athena"} <= set(apps)
        assert len(dispatch.WARM_SERVICES) == 12
        ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=srv.endpoint_url,
                           config=Config(retries={"total_max_attempts": 1}))
        assert "TableNames" in ddb.list_tables()
    assert SandboxServer().warming is None  # in process (tests): nothing to overlap with


def test_an_error_response_reuses_the_services_error_lookup(sandbox, client, monkeypatch):
    """moto built a lookup of every error shape of the service's model for each error response;
    the sandbox builds one per service, and the error is still AWS's (code, message, status)."""
    from botocore.exceptions import ClientError
    from moto.core import errors

    iam = client("iam")
    with pytest.raises(ClientError):
        iam.get_role(RoleName="nope-warm")
    built = []
    real = errors.ErrorLookupFactory._create_error_lut
    monkeypatch.setattr(errors.ErrorLookupFactory, "_create_error_lut", staticmethod(lambda m: built.append(1) or real(m)))
    for _ in range(3):
        with pytest.raises(ClientError) as e:
            iam.get_role(RoleName="nope")
        assert e.value.response["Error"]["Code"] == "NoSuchEntity"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404  # as IAM answers
    assert built == []
