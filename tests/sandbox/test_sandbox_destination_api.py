"""DynamoDB Kinesis streaming destination control plane: state machine and errors."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

import boto3
from botocore.config import Config
from sandbox_helpers import REGION, create_stream, create_table, read_records

from s3tstream.sandbox.services import dynamodb as ddb_ext
from s3tstream.sandbox.server import SandboxServer


def entries(ddb: Any, table: str) -> list[dict[str, Any]]:
    return ddb.describe_kinesis_streaming_destination(TableName=table)["KinesisDataStreamDestinations"]


def error_of(exc_info: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc_info.value.response["Error"]
    return err["Code"], err["Message"]


@pytest.fixture
def setup(client, name):
    ddb, kinesis = client("dynamodb"), client("kinesis")
    table = name("tbl")
    table_arn = create_table(ddb, table)
    return ddb, kinesis, table, table_arn, create_stream(kinesis, name("s")), create_stream(kinesis, name("s"))


def test_full_lifecycle_instant(setup):
    ddb, _, table, table_arn, arn, _ = setup
    assert entries(ddb, table) == []

    out = ddb.enable_kinesis_streaming_destination(
        TableName=table_arn,  # the ARN form is accepted; the response names the table
        StreamArn=arn,
        EnableKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"},
    )
    assert (out["TableName"], out["StreamArn"], out["DestinationStatus"]) == (table, arn, "ENABLING")
    assert out["EnableKinesisStreamingConfiguration"] == {"ApproximateCreationDateTimePrecision": "MICROSECOND"}
    # instant latency: the transition completes at the next describe
    assert entries(ddb, table) == [
        {"StreamArn": arn, "DestinationStatus": "ACTIVE", "ApproximateCreationDateTimePrecision": "MICROSECOND"}
    ]

    out = ddb.update_kinesis_streaming_destination(
        TableName=table,
        StreamArn=arn,
        UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MILLISECOND"},
    )
    assert out["DestinationStatus"] == "UPDATING"
    assert out["UpdateKinesisStreamingConfiguration"] == {"ApproximateCreationDateTimePrecision": "MILLISECOND"}
    assert entries(ddb, table)[0]["DestinationStatus"] == "ACTIVE"
    assert entries(ddb, table)[0]["ApproximateCreationDateTimePrecision"] == "MILLISECOND"

    out = ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert out["DestinationStatus"] == "DISABLING"
    assert entries(ddb, table) == [
        {"StreamArn": arn, "DestinationStatus": "DISABLED", "ApproximateCreationDateTimePrecision": "MILLISECOND"}
    ]

    # re-enabling flips the DISABLED entry (no duplicate) and forgets the old precision
    out = ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert out["EnableKinesisStreamingConfiguration"] == {}
    assert entries(ddb, table) == [{"StreamArn": arn, "DestinationStatus": "ACTIVE"}]


def test_missing_table_is_resource_not_found(client, name):
    ddb = client("dynamodb")
    arn = f"arn:aws:kinesis:{REGION}:123456789012:stream/{name('s')}"
    missing = name("missing")
    calls = [
        lambda: ddb.describe_kinesis_streaming_destination(TableName=missing),
        lambda: ddb.enable_kinesis_streaming_destination(TableName=missing, StreamArn=arn),
        lambda: ddb.disable_kinesis_streaming_destination(TableName=missing, StreamArn=arn),
        lambda: ddb.update_kinesis_streaming_destination(
            TableName=missing,
            StreamArn=arn,
            UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"},
        ),
    ]
    for call in calls:
        with pytest.raises(ddb.exceptions.ResourceNotFoundException) as exc:
            call()
        assert f"Table: {missing} not found" in error_of(exc)[1]


def test_state_violations_are_validation_errors(setup):
    ddb, _, table, _, arn, other = setup
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)

    # while ENABLING: no second enable (same or other stream), no update, no disable
    for stream in (arn, other):
        with pytest.raises(ClientError) as exc:
            ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=stream)
        assert error_of(exc) == ("ValidationException", ddb_ext.MSG_ENABLE_STATE)
    with pytest.raises(ClientError) as exc:
        ddb.update_kinesis_streaming_destination(
            TableName=table, StreamArn=arn,
            UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"},
        )
    assert error_of(exc)[0] == "ValidationException"
    assert "Updates are only allowed in ACTIVE state" in error_of(exc)[1]
    with pytest.raises(ClientError) as exc:
        ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert error_of(exc) == ("ValidationException", ddb_ext.MSG_DISABLE_STATE)

    assert entries(ddb, table)[0]["DestinationStatus"] == "ACTIVE"
    # while ACTIVE: enabling again (already enabled) or another stream (one per table)
    for stream in (arn, other):
        with pytest.raises(ClientError) as exc:
            ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=stream)
        assert error_of(exc) == ("ValidationException", ddb_ext.MSG_ENABLE_STATE)
    # disabling a stream that is not attached
    with pytest.raises(ClientError) as exc:
        ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=other)
    assert error_of(exc) == ("ValidationException", ddb_ext.MSG_DISABLE_STATE)
    # updating a stream that is not attached
    with pytest.raises(ClientError) as exc:
        ddb.update_kinesis_streaming_destination(
            TableName=table, StreamArn=other,
            UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"},
        )
    assert error_of(exc) == ("ValidationException", ddb_ext._STATE_PREFIX + f"No streaming destination with streamArn: {other}")
    # update without a configuration / to the precision in force (unset means MILLISECOND)
    with pytest.raises(ClientError) as exc:
        ddb.update_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert error_of(exc) == ("ValidationException", ddb_ext.MSG_UPDATE_NULL)
    with pytest.raises(ClientError) as exc:
        ddb.update_kinesis_streaming_destination(
            TableName=table, StreamArn=arn,
            UpdateKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MILLISECOND"},
        )
    assert error_of(exc)[0] == "ValidationException"
    assert "Precision is already set to the desired value of MILLISECOND" in error_of(exc)[1]
    # disable with a configuration; an unknown precision value
    with pytest.raises(ClientError) as exc:
        ddb.disable_kinesis_streaming_destination(
            TableName=table, StreamArn=arn,
            EnableKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "MICROSECOND"},
        )
    assert error_of(exc) == ("ValidationException", ddb_ext.MSG_DISABLE_WITH_CONFIG)
    with pytest.raises(ClientError) as exc:
        ddb.enable_kinesis_streaming_destination(
            TableName=table, StreamArn=other,
            EnableKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": "SECOND"},
        )
    assert error_of(exc)[0] == "ValidationException"
    assert "Member must satisfy enum value set: [MICROSECOND, MILLISECOND]" in error_of(exc)[1]

    ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    # a second disable while DISABLING answers DISABLING again
    again = ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert again["DestinationStatus"] == "DISABLING"
    assert entries(ddb, table)[0]["DestinationStatus"] == "DISABLED"
    with pytest.raises(ClientError) as exc:
        ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert error_of(exc) == ("ValidationException", ddb_ext.MSG_DISABLE_STATE)


def test_bad_streams_fail_asynchronously(setup, name):
    ddb, kinesis, table, _, good, _ = setup
    missing = f"arn:aws:kinesis:{REGION}:123456789012:stream/{name('missing')}"
    other_region = good.replace(f":{REGION}:", ":eu-west-1:")

    # AWS accepts any well-formed ARN with ENABLING and fails later with a description
    out = ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=missing)
    assert out["DestinationStatus"] == "ENABLING"
    assert entries(ddb, table) == [
        {"StreamArn": missing, "DestinationStatus": "ENABLE_FAILED", "DestinationStatusDescription": ddb_ext.DESC_NO_PERMISSION}
    ]
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=other_region)
    listed = entries(ddb, table)
    assert [(e["StreamArn"], e["DestinationStatus"]) for e in listed] == [
        (other_region, "ENABLE_FAILED"),
        (missing, "ENABLE_FAILED"),
    ]
    assert listed[0]["DestinationStatusDescription"] == ddb_ext.DESC_OTHER_REGION

    # failed entries stay listed and do not block a good stream; re-enabling flips, no duplicate
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=missing)
    assert len(entries(ddb, table)) == 2
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=good)
    assert [(e["StreamArn"], e["DestinationStatus"]) for e in entries(ddb, table)] == [
        (good, "ACTIVE"), (other_region, "ENABLE_FAILED"), (missing, "ENABLE_FAILED"),
    ]

    # a stream that is not ACTIVE (moto streams are ACTIVE at once: force CREATING)
    from moto.kinesis.models import kinesis_backends

    creating = name("creating")
    creating_arn = create_stream(kinesis, creating)
    kinesis_backends["123456789012"][REGION].streams[creating].status = "CREATING"
    table2 = name("tbl")
    create_table(ddb, table2)
    ddb.enable_kinesis_streaming_destination(TableName=table2, StreamArn=creating_arn)
    assert entries(ddb, table2)[0]["DestinationStatus"] == "ENABLE_FAILED"


def test_deleting_the_table_drops_its_destinations(setup):
    ddb, _, table, _, arn, _ = setup
    ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
    assert entries(ddb, table)[0]["DestinationStatus"] == "ACTIVE"
    ddb.delete_table(TableName=table)
    create_table(ddb, table)
    assert entries(ddb, table) == []


def test_realistic_latency_completes_by_time_not_by_describe(sandbox, setup, monkeypatch):
    ddb_fast, kinesis, table, _, arn, _ = setup
    now = [1000.0]
    monkeypatch.setattr(ddb_ext, "_clock", lambda: now[0])
    with SandboxServer(latency="realistic") as slow:
        ddb = boto3.client(
            "dynamodb", region_name=REGION, endpoint_url=slow.endpoint_url,
            config=Config(retries={"total_max_attempts": 1}),
        )
        ddb.enable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
        for _ in range(3):
            assert entries(ddb, table)[0]["DestinationStatus"] == "ENABLING"
        ddb.put_item(TableName=table, Item={"pk": {"S": "too-early"}})
        now[0] += 4.0  # latency.REALISTIC_SECONDS["dynamodb.kinesis_destination.enable"]
        ddb.put_item(TableName=table, Item={"pk": {"S": "in-time"}})  # no describe needed
        assert entries(ddb, table)[0]["DestinationStatus"] == "ACTIVE"
        stream = arn.rsplit("/", 1)[1]
        assert [r["data"]["dynamodb"]["Keys"]["pk"]["S"] for r in read_records(kinesis, stream)] == ["in-time"]
        ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
        assert entries(ddb, table)[0]["DestinationStatus"] == "DISABLING"
        now[0] += 2.0
        assert entries(ddb_fast, table)[0]["DestinationStatus"] == "DISABLED"
