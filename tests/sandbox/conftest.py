"""Fixtures for the sandbox tests: one in-process sandbox per test process, boto3 clients on it."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if str(Path(__file__).parent) not in sys.path:  # sandbox_helpers, whatever the import mode
    sys.path.insert(0, str(Path(__file__).parent))

import boto3
import pytest
from botocore.config import Config

from sandbox_helpers import REGION, create_stream, create_table, read_records

from s3tstream.sandbox.server import SandboxServer

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}


_CLIENTS: dict[tuple[str, str, str, bool], Any] = {}


@pytest.fixture(scope="session")
def _fake_aws_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_ENV.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
            mp.delenv(key, raising=False)
        mp.setenv("AWS_CONFIG_FILE", "/dev/null")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield


@pytest.fixture(scope="session")
def sandbox(_fake_aws_env: None) -> Iterator[SandboxServer]:
    with SandboxServer() as server:
        yield server


@pytest.fixture
def client(sandbox: SandboxServer) -> Callable[..., Any]:
    """client("dynamodb") -> boto3 client on the sandbox; retries=False: one attempt only.

    Note: botocore's ``retries={"max_attempts": 1}`` still allows one *retry* (max_attempts
    counts retries); ``total_max_attempts`` counts the first attempt too.
    """

    def make(service: str, region: str = REGION, retries: bool = False) -> Any:
        key = (sandbox.endpoint_url, service, region, retries)
        if key not in _CLIENTS:  # one per process: building a client costs botocore ~15 ms
            config = Config(retries={"total_max_attempts": 3 if retries else 1, "mode": "standard"})
            _CLIENTS[key] = boto3.client(service, region_name=region, endpoint_url=sandbox.endpoint_url, config=config)
        return _CLIENTS[key]

    return make


@pytest.fixture
def name() -> Callable[[str], str]:
    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def pipeline(client: Callable[..., Any], name: Callable[[str], str]) -> Callable[..., dict[str, Any]]:
    """pipeline(precision=..., range_key=...) -> table + stream with an ACTIVE destination."""

    def make(precision: str | None = "MICROSECOND", range_key: str | None = None, activate: bool = True) -> dict[str, Any]:
        ddb, kinesis = client("dynamodb"), client("kinesis")
        table, stream = name("tbl"), name("stream")
        table_arn = create_table(ddb, table, range_key)
        stream_arn = create_stream(kinesis, stream)
        kwargs: dict[str, Any] = {"TableName": table, "StreamArn": stream_arn}
        if precision:
            kwargs["EnableKinesisStreamingConfiguration"] = {"ApproximateCreationDateTimePrecision": precision}
        ddb.enable_kinesis_streaming_destination(**kwargs)
        if activate:
            status = ddb.describe_kinesis_streaming_destination(TableName=table)
            assert status["KinesisDataStreamDestinations"][0]["DestinationStatus"] == "ACTIVE"
        return {
            "ddb": ddb,
            "kinesis": kinesis,
            "table": table,
            "table_arn": table_arn,
            "stream": stream,
            "stream_arn": stream_arn,
            "records": lambda: read_records(kinesis, stream),
        }

    return make
