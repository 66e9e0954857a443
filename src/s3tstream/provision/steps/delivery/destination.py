"""The Firehose stream's requests (create, update) and the drift of its Iceberg destination.

Pure functions of the config: every name comes from botocore's firehose model. Buffering and
processor changes go through UpdateDestination, never by recreating the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s3tstream.aws import policies
from s3tstream.provision.resource import Drift
from s3tstream.provision.steps.delivery.common import tags_list

if TYPE_CHECKING:
    from s3tstream.aws.client import Identity
    from s3tstream.config.model import Config

STREAM_TYPE = "KinesisStreamAsSource"


def catalog_arn(cfg: "Config", ident: "Identity") -> str:
    # aws-notes "Identifiers": arn:<p>:glue:<r>:<a>:catalog/s3tablescatalog/<bucket>, no resource link.
    return policies.glue_catalog_arn(cfg, ident)


def _fmt_mb(x: float) -> str:
    return f"{x:g}"


def processing_configuration(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    fh = cfg.firehose
    return {
        "Enabled": True,
        "Processors": [
            {
                "Type": "Lambda",
                "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": policies.transform_function_arn(cfg, ident)},
                    {"ParameterName": "NumberOfRetries", "ParameterValue": str(fh.processor_retries)},
                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": _fmt_mb(fh.processor_buffer_mb)},
                    {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": str(fh.processor_interval_seconds)},
                ],
            }
        ],
    }


def s3_configuration(cfg: "Config", ident: "Identity", bucket: str) -> dict[str, Any]:
    return {
        "RoleARN": policies.role_arn(ident, cfg.names.firehose_role),
        "BucketARN": policies.s3_bucket_arn(ident, bucket),
        "ErrorOutputPrefix": cfg.firehose.error_prefix,
    }


def table_configuration(cfg: "Config") -> list[dict[str, Any]]:
    """One DestinationTableConfiguration per table: the transform routes each record to its
    table with metadata.otfMetadata (destinationDatabaseName/destinationTableName)."""
    out = []
    for s in cfg.scopes():
        t: dict[str, Any] = {
            "DestinationDatabaseName": s.names.namespace,
            "DestinationTableName": s.names.table,
            "S3ErrorOutputPrefix": s.firehose.error_prefix,
        }
        if s.table.mode == "upsert":
            # UniqueKeys identify the row for Firehose's update/delete (aws-notes).
            t["UniqueKeys"] = [col for _, col in s.key_columns()]
        out.append(t)
    return out


def destination(cfg: "Config", ident: "Identity", bucket: str) -> dict[str, Any]:
    """IcebergDestinationConfiguration; every name comes from botocore's firehose model."""
    fh, names = cfg.firehose, cfg.names
    return {
        "RoleARN": policies.role_arn(ident, names.firehose_role),
        "CatalogConfiguration": {"CatalogARN": catalog_arn(cfg, ident)},
        "DestinationTableConfigurationList": table_configuration(cfg),
        "BufferingHints": {"SizeInMBs": fh.buffer_size_mb, "IntervalInSeconds": fh.buffer_interval_seconds},
        "RetryOptions": {"DurationInSeconds": fh.retry_seconds},
        "ProcessingConfiguration": processing_configuration(cfg, ident),
        "CloudWatchLoggingOptions": {
            "Enabled": True, "LogGroupName": names.firehose_log_group, "LogStreamName": names.firehose_log_stream,
        },
        "S3BackupMode": "FailedDataOnly",
        # AppendOnly scales throughput but delivers out of order: changelog mode only.
        # It is the stream's, not a table's: one upsert table among them needs update/delete.
        "AppendOnly": all(s.table.mode == "changelog" for s in cfg.scopes()),
        "S3Configuration": s3_configuration(cfg, ident, bucket),
    }


def create_request(cfg: "Config", ident: "Identity", bucket: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "DeliveryStreamName": cfg.names.firehose,
        "DeliveryStreamType": STREAM_TYPE,
        "KinesisStreamSourceConfiguration": {
            "KinesisStreamARN": policies.kinesis_stream_arn(cfg, ident),
            "RoleARN": policies.role_arn(ident, cfg.names.firehose_role),
        },
        "IcebergDestinationConfiguration": destination(cfg, ident, bucket),
        "Tags": tags_list(tags),
    }


# Destination drift: field -> members of IcebergDestinationUpdate that fix it.
UPDATE_MEMBERS = {
    "buffering": ("BufferingHints",),
    "retry": ("RetryOptions",),
    "processor": ("ProcessingConfiguration",),
    "logging": ("CloudWatchLoggingOptions",),
    "tables": ("DestinationTableConfigurationList",),
    "append-only": ("AppendOnly",),
    "error output": ("S3Configuration",),
    "role": ("RoleARN", "S3Configuration"),
    "backup mode": ("S3BackupMode",),
}


def update_request(cfg: "Config", ident: "Identity", bucket: str, version_id: str, destination_id: str,
                   drift: list[Drift]) -> dict[str, Any]:
    want = destination(cfg, ident, bucket)
    members: list[str] = []
    for d in drift:
        for m in UPDATE_MEMBERS.get(d.field, ()):
            if m not in members:
                members.append(m)
    return {
        "DeliveryStreamName": cfg.names.firehose,
        "CurrentDeliveryStreamVersionId": version_id,
        "DestinationId": destination_id,
        "IcebergDestinationUpdate": {m: want[m] for m in members},
    }


def _params(desc_proc: dict[str, Any] | None) -> dict[str, str]:
    for p in (desc_proc or {}).get("Processors", []):
        if p.get("Type") == "Lambda":
            return {x["ParameterName"]: x["ParameterValue"] for x in p.get("Parameters", [])}
    return {}


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def destination_drift(want: dict[str, Any], have: dict[str, Any]) -> list[Drift]:
    """Compare the desired IcebergDestinationConfiguration with describe's description."""
    drift: list[Drift] = []
    wb, hb = want["BufferingHints"], have.get("BufferingHints") or {}
    if (hb.get("SizeInMBs"), hb.get("IntervalInSeconds")) != (wb["SizeInMBs"], wb["IntervalInSeconds"]):
        drift.append(Drift("buffering", f"{hb.get('SizeInMBs')} MB/{hb.get('IntervalInSeconds')} s",
                           f"{wb['SizeInMBs']} MB/{wb['IntervalInSeconds']} s", "{field}: {old} -> {new}"))
    if (have.get("RetryOptions") or {}).get("DurationInSeconds") != want["RetryOptions"]["DurationInSeconds"]:
        drift.append(Drift("retry", (have.get("RetryOptions") or {}).get("DurationInSeconds"),
                           want["RetryOptions"]["DurationInSeconds"], "{field}: {new} s"))
    wp, hp = _params(want["ProcessingConfiguration"]), _params(have.get("ProcessingConfiguration"))
    # UNCONFIRMED: Firehose may report the function ARN qualified with ":$LATEST" and numbers
    # in another format ("1.0"): compare unqualified ARNs and numeric values.
    same_fn = (hp.get("LambdaArn") or "").removesuffix(":$LATEST") == wp["LambdaArn"]
    same_nums = all(_num(hp.get(k)) == _num(wp[k]) for k in ("NumberOfRetries", "BufferSizeInMBs", "BufferIntervalInSeconds"))
    if not (have.get("ProcessingConfiguration") or {}).get("Enabled") or not same_fn or not same_nums:
        drift.append(Drift("processor", fmt="{field}: transform Lambda settings"))
    wl, hl = want["CloudWatchLoggingOptions"], have.get("CloudWatchLoggingOptions") or {}
    if any(hl.get(k) != wl[k] for k in ("Enabled", "LogGroupName", "LogStreamName")):
        drift.append(Drift("logging", fmt="{field}"))

    def tables(lst: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((t.get("DestinationDatabaseName"), t.get("DestinationTableName"), tuple(t.get("UniqueKeys") or ()))
                      for t in lst or [])

    if tables(have.get("DestinationTableConfigurationList")) != tables(want["DestinationTableConfigurationList"]):
        drift.append(Drift("tables", fmt="{field}: destination table or unique keys"))
    if bool(have.get("AppendOnly", False)) != want["AppendOnly"]:
        drift.append(Drift("append-only", have.get("AppendOnly", False), want["AppendOnly"], "{field} -> {new}"))
    hs = have.get("S3DestinationDescription") or have.get("S3Configuration") or {}
    ws = want["S3Configuration"]
    if hs.get("BucketARN") != ws["BucketARN"] or hs.get("ErrorOutputPrefix") != ws["ErrorOutputPrefix"]:
        drift.append(Drift("error output", fmt="{field}: bucket or prefix"))
    if have.get("RoleARN") != want["RoleARN"]:
        drift.append(Drift("role", have.get("RoleARN"), want["RoleARN"], "{field}"))
    if have.get("S3BackupMode", "FailedDataOnly") != want["S3BackupMode"]:
        drift.append(Drift("backup mode", have.get("S3BackupMode"), want["S3BackupMode"], "{field}"))
    return drift

