"""The Firehose streams the sandbox delivers: every ACTIVE Kinesis-sourced delivery stream with an
Iceberg destination in moto's firehose backend, and the settings of each that delivery reads."""

from __future__ import annotations

import dataclasses
from typing import Any

DEFAULT_RETRY_SECONDS = 300  # Iceberg RetryOptions.DurationInSeconds default (UNCONFIRMED)


@dataclasses.dataclass
class StreamConfig:
    account_id: str
    region: str
    name: str
    arn: str
    version: str
    created: float  # epoch seconds
    source_arn: str
    iceberg: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str, float]:
        return (self.account_id, self.region, self.name, self.created)

    @property
    def role_arn(self) -> str:
        return str(self.iceberg.get("RoleARN") or "")

    @property
    def catalog_arn(self) -> str:
        return str((self.iceberg.get("CatalogConfiguration") or {}).get("CatalogARN") or "")

    @property
    def s3(self) -> dict[str, Any]:
        return self.iceberg.get("S3DestinationDescription") or self.iceberg.get("S3Configuration") or {}

    @property
    def tables(self) -> list[dict[str, Any]]:
        return list(self.iceberg.get("DestinationTableConfigurationList") or [])

    @property
    def hints(self) -> tuple[float | None, float | None]:
        h = self.iceberg.get("BufferingHints") or {}
        return h.get("SizeInMBs"), h.get("IntervalInSeconds")

    @property
    def retry_seconds(self) -> float:
        return float((self.iceberg.get("RetryOptions") or {}).get("DurationInSeconds", DEFAULT_RETRY_SECONDS))

    @property
    def append_only(self) -> bool:
        return bool(self.iceberg.get("AppendOnly"))

    def processor(self) -> dict[str, str] | None:
        """The Lambda processor's parameters, or None without (enabled) processing."""
        pc = self.iceberg.get("ProcessingConfiguration") or {}
        if not pc.get("Enabled", False):
            return None
        for p in pc.get("Processors") or []:
            if p.get("Type") == "Lambda":
                return {x.get("ParameterName"): str(x.get("ParameterValue")) for x in p.get("Parameters") or []}
        return None

    def table_config(self, database: str, table: str) -> dict[str, Any] | None:
        return next((t for t in self.tables if t.get("DestinationDatabaseName") == database
                     and t.get("DestinationTableName") == table), None)

    def bucket_name(self) -> str | None:
        prefix = ":catalog/s3tablescatalog/"
        return self.catalog_arn.split(prefix, 1)[1] if prefix in self.catalog_arn else None


def _epoch(value: Any) -> float:
    if hasattr(value, "timestamp"):
        if getattr(value, "tzinfo", None) is None:
            import datetime as _dt

            return value.replace(tzinfo=_dt.timezone.utc).timestamp()
        return float(value.timestamp())
    return float(value or 0)


def active_streams(name: str | None = None, account: str | None = None, region: str | None = None) -> list[StreamConfig]:
    """Every ACTIVE Kinesis-sourced stream with an Iceberg destination (without creating backends)."""
    from moto.firehose.models import firehose_backends

    out = []
    for acct, regions in list(dict.items(firehose_backends)):
        if account and acct != account:
            continue
        for reg, backend in list(dict.items(regions)):
            if region and reg != region:
                continue
            for ds in list(backend.delivery_streams.values()):
                if name and ds.delivery_stream_name != name:
                    continue
                if ds.delivery_stream_status != "ACTIVE" or ds.delivery_stream_type != "KinesisStreamAsSource":
                    continue
                iceberg = next((d.get("Iceberg") for d in ds.destinations if d.get("Iceberg")), None)
                source = (ds.source or {}).get("KinesisStreamARN")
                if not iceberg or not source:
                    continue
                out.append(StreamConfig(acct, reg, ds.delivery_stream_name, ds.delivery_stream_arn,
                                        str(ds.version_id), _epoch(ds.create_timestamp), source, iceberg))
    return out

