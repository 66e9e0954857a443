"""The sandbox's realistic latency: resources are CREATING until their delay passed, a new role
is not assumable by Firehose at once, and `up` gets through it all (sandbox/latency.py,
sandbox/ext/readiness.py, ext/firehose.py)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sandbox_helpers import REGION

from s3tstream.sandbox import latency
from s3tstream.sandbox.services import dynamodb as ddb_ext
from s3tstream.sandbox.services import firehose as firehose_ext
from s3tstream.sandbox.services import readiness
from s3tstream.sandbox.server import SandboxServer

SECONDS = latency.REALISTIC_SECONDS


class Clock:
    """One fake monotonic clock for every realistic deadline.

    Exact arithmetic from a whole second: ``advance(d - 0.01); advance(0.01)`` lands exactly on a
    deadline set at ``now + d`` (float sums of such steps can fall a rounding short of it).
    """

    def __init__(self) -> None:
        self.now = Fraction(int(time.monotonic()))

    def __call__(self) -> float:
        return float(self.now)

    def advance(self, seconds: float) -> None:
        self.now += Fraction(str(seconds))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    c = Clock()
    for mod in (readiness, ddb_ext, firehose_ext):
        monkeypatch.setattr(mod, "_clock", c)
    yield c
    c.advance(3600)  # whatever the test left CREATING is ready before the real clock is back


@pytest.fixture
def slow(sandbox: SandboxServer) -> Iterator[Callable[..., Any]]:
    """client(service) on a realistic sandbox at full scale (the fake clock decides)."""
    with SandboxServer(latency="realistic", latency_scale=1.0) as srv:
        def make(service: str) -> Any:
            return boto3.client(service, region_name=REGION, endpoint_url=srv.endpoint_url,
                                config=Config(retries={"total_max_attempts": 1}))
        yield make


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    return exc.value.response["Error"]["Code"], exc.value.response["Error"]["Message"]


def test_delays_scale_and_instant_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "kinesis.stream.create"
    assert latency.delay("instant", key) is None
    assert latency.delay("realistic", key, 0.5) == SECONDS[key] * 0.5
    monkeypatch.setenv(latency.SCALE_ENV, "0.1")
    assert latency.delay("realistic", key) == pytest.approx(SECONDS[key] * 0.1)
    assert latency.server_delay(SandboxServer(latency="realistic"), key) == pytest.approx(SECONDS[key] * 0.1)
    assert latency.server_delay(SandboxServer(latency="realistic", latency_scale=2), key) == SECONDS[key] * 2
    assert latency.server_delay(SandboxServer(latency="instant", latency_scale=2), key) is None
    with pytest.raises(ValueError):
        SandboxServer(latency="realistic", latency_scale=0)
    monkeypatch.setenv(latency.SCALE_ENV, "fast")
    with pytest.raises(ValueError, match=latency.SCALE_ENV):
        latency.delay("realistic", key)


def test_table_is_creating_until_its_delay_passed(slow, client, name, clock: Clock) -> None:
    ddb, fast = slow("dynamodb"), client("dynamodb")
    table = name("tbl")
    out = ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                           AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                           BillingMode="PAY_PER_REQUEST")
    assert out["TableDescription"]["TableStatus"] == "CREATING"
    assert ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "CREATING"
    # whoever looks: the instant server sees the same table CREATING
    assert fast.describe_table(TableName=table)["Table"]["TableStatus"] == "CREATING"
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table, Item={"pk": {"S": "early"}})
    assert code_of(e)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        ddb.enable_kinesis_streaming_destination(
            TableName=table, StreamArn=f"arn:aws:kinesis:{REGION}:123456789012:stream/{name('s')}")
    assert code_of(e) == ("ResourceInUseException",
                          f"Attempt to change a resource which is still in use: Table is being created: {table}")
    with pytest.raises(ClientError) as e:
        ddb.delete_table(TableName=table)
    assert code_of(e)[0] == "ResourceInUseException"

    clock.advance(SECONDS["dynamodb.table.create"] - 0.01)
    assert ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "CREATING"
    clock.advance(0.01)
    assert ddb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
    ddb.put_item(TableName=table, Item={"pk": {"S": "now"}})
    fast.delete_table(TableName=table)


def test_stream_is_creating_then_updating_and_refuses_changes_meanwhile(slow, client, name, clock: Clock) -> None:
    k = slow("kinesis")
    stream = name("s")
    k.create_stream(StreamName=stream, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "CREATING"
    assert client("kinesis").describe_stream(StreamName=stream)["StreamDescription"]["StreamStatus"] == "CREATING"
    for call in (lambda: k.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis"),
                 lambda: k.increase_stream_retention_period(StreamName=stream, RetentionPeriodHours=48),
                 lambda: k.delete_stream(StreamName=stream)):
        with pytest.raises(ClientError) as e:
            call()
        assert code_of(e)[0] == "ResourceInUseException" and "CREATING" in code_of(e)[1]

    clock.advance(SECONDS["kinesis.stream.create"])
    assert k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    k.start_stream_encryption(StreamName=stream, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "UPDATING"
    clock.advance(SECONDS["kinesis.stream.update"])
    summary = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    assert (summary["StreamStatus"], summary["EncryptionType"]) == ("ACTIVE", "KMS")
    k.delete_stream(StreamName=stream)


def test_destination_to_a_stream_still_creating_ends_enable_failed(slow, client, name, clock: Clock) -> None:
    ddb, k = client("dynamodb"), slow("kinesis")
    table, stream = name("tbl"), name("s")
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    k.create_stream(StreamName=stream, ShardCount=1)
    arn = k.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    slow("dynamodb").enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    clock.advance(SECONDS["dynamodb.kinesis_destination.enable"])
    (dest,) = ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"]
    assert dest["DestinationStatus"] == "ENABLE_FAILED"
    assert dest["DestinationStatusDescription"] == ddb_ext.DESC_NO_PERMISSION
    ddb.delete_table(TableName=table)


def test_firehose_refuses_a_new_role_then_is_creating_for_its_delay(slow, client, name, clock: Clock) -> None:
    from s3tstream.provision.steps.delivery.common import is_firehose_iam_propagation

    iam, fh = slow("iam"), slow("firehose")
    role = iam.create_role(RoleName=name("role"), AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }))["Role"]["Arn"]
    bucket = name("b")
    client("s3").create_bucket(Bucket=bucket)
    stream = name("fh")

    def create() -> Any:
        return fh.create_delivery_stream(
            DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={"RoleARN": role, "BucketARN": f"arn:aws:s3:::{bucket}"},
        )

    with pytest.raises(ClientError) as e:
        create()
    assert code_of(e) == ("InvalidArgumentException", readiness.firehose_assume_message(role))
    assert is_firehose_iam_propagation(e.value)  # create-firehose retries exactly this
    clock.advance(SECONDS["iam.role.propagation"])
    create()

    def status() -> str:
        return fh.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]["DeliveryStreamStatus"]

    assert [status(), status()] == ["CREATING", "CREATING"]  # not "ACTIVE at the next describe"
    with pytest.raises(ClientError) as e:
        fh.delete_delivery_stream(DeliveryStreamName=stream)
    assert code_of(e)[0] == "ResourceInUseException"
    clock.advance(SECONDS["firehose.delivery_stream.create"] - 0.01)
    assert status() == "CREATING"
    clock.advance(0.01)
    assert status() == "ACTIVE"
    fh.delete_delivery_stream(DeliveryStreamName=stream)


def test_a_describe_while_a_worker_settles_the_stream_sees_it_active(
    slow, client, name, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The readiness worker and a describe race: the describe must never find the stream taken off
    the pending list but not yet ACTIVE (the cause of a flaky CREATING under load)."""
    role = client("iam").create_role(RoleName=name("role"), AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    bucket, stream, fh = name("b"), name("fh"), slow("firehose")
    client("s3").create_bucket(Bucket=bucket)
    fh.create_delivery_stream(
        DeliveryStreamName=stream, DeliveryStreamType="DirectPut",
        ExtendedS3DestinationConfiguration={"RoleARN": role, "BucketARN": f"arn:aws:s3:::{bucket}"},
    )
    entered, apply = threading.Event(), firehose_ext._apply

    def slow_apply(key: Any, nxt: dict[str, Any]) -> None:  # whoever settles first pauses mid-way
        entered.set()
        time.sleep(0.05)
        apply(key, nxt)

    monkeypatch.setattr(firehose_ext, "_apply", slow_apply)
    clock.advance(SECONDS["firehose.delivery_stream.create"])
    settler = threading.Thread(target=firehose_ext._settle_due)
    settler.start()
    assert entered.wait(10)
    described = fh.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]
    settler.join()
    assert described["DeliveryStreamStatus"] == "ACTIVE"
    fh.delete_delivery_stream(DeliveryStreamName=stream)


def test_a_role_made_through_an_instant_server_is_usable_at_once(client, name) -> None:
    arn = client("iam").create_role(RoleName=name("role"), AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    assert not readiness.role_unusable("123456789012", arn)


def test_up_succeeds_under_the_scaled_realistic_profile(sandbox, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from s3tstream.cli.app import app

    scale = 0.01  # the whole profile (about 2 minutes at scale 1) in about a second
    with SandboxServer(latency="realistic", latency_scale=scale) as srv:
        stack = "t" + uuid.uuid4().hex[:8]
        cfg = tmp_path / "s3tstream.toml"
        cfg.write_text(
            f'[stack]\nname = "{stack}"\nendpoint_url = "{srv.endpoint_url}"\npoll_interval = 0.02\n'
            f"wait_timeout = 60\nmax_attempts = 3\n"
            f'[table]\ncolumns = [{{ name = "pk", type = "string", required = true }}]\n'
            f"[lakeformation]\nintegrate = true\nmake_caller_admin = true\n",
            encoding="utf-8",
        )
        env = {"S3TSTREAM_CONFIG": str(cfg)}
        runner = CliRunner()
        start = time.monotonic()
        r = runner.invoke(app, ["up"], env=env)
        took = time.monotonic() - start
        try:
            assert r.exit_code == 0, r.output
            # it waited: the stream chain alone is table + stream + encryption + destination + Firehose
            chain = sum(SECONDS[k] for k in ("dynamodb.table.create", "kinesis.stream.create", "kinesis.stream.update",
                                             "dynamodb.kinesis_destination.enable", "firehose.delivery_stream.create"))
            assert took >= chain * scale
            fh = boto3.client("firehose", region_name=REGION, endpoint_url=srv.endpoint_url)
            desc = fh.describe_delivery_stream(DeliveryStreamName=f"{stack}-to-lake")["DeliveryStreamDescription"]
            assert desc["DeliveryStreamStatus"] == "ACTIVE"
        finally:
            d = runner.invoke(app, ["down", "--yes", "--purge-errors"], env=env)
        assert d.exit_code == 0, d.output
