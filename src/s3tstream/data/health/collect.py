"""What `s3tstream health` reads (read calls only): the pipeline's CloudWatch metrics over a
window (one GetMetricData call), the error bucket's objects since the window's start, the
transform's timeout, the Iceberg table's snapshot summary (lake/catalog.py through the query
module's table loader) and its maintenance jobs (s3tables GetTableMaintenanceJobStatus), and,
with [alarms] enabled, the alarms' states.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import is_not_found, translate
from s3tstream.aws.metrics import METRICS, dimensions
from s3tstream.errors import S3tError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

MAX_POINTS = 60  # datapoints per metric (the sparkline's width)
MIB = 1024 * 1024


@dataclass
class Observations:
    start: dt.datetime
    end: dt.datetime
    period: int
    # metric key -> [(epoch seconds, value)], oldest first, only periods with data
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    error_bucket: str = ""
    error_prefix: str = ""
    error_objects: int | None = None  # None: could not list (the reason in notes)
    lambda_timeout_s: float | None = None
    table: dict[str, Any] | None = None
    maintenance: dict[str, dict[str, Any]] | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # per check: why something could not be read
    # a [[tables]] stack: each lake table's own table/maintenance/notes (the fields above stay None)
    by_table: dict[str, "Observations"] = field(default_factory=dict)

    def total(self, key: str) -> float:
        return sum(v for _, v in self.series.get(key, []))

    def latest(self, key: str) -> float | None:
        pts = self.series.get(key) or []
        return pts[-1][1] if pts else None

    def peak(self, key: str) -> float | None:
        pts = self.series.get(key) or []
        return max(v for _, v in pts) if pts else None

    def buckets(self, key: str) -> list[float | None]:
        """One value per period of the window (None: no datapoint), for a sparkline."""
        n = max(1, math.ceil((self.end - self.start).total_seconds() / self.period))
        out: list[float | None] = [None] * n
        t0 = self.start.timestamp()
        for ts, v in self.series.get(key, []):
            i = min(n - 1, max(0, int((ts - t0) // self.period)))
            out[i] = v if out[i] is None else max(out[i], v)  # type: ignore[type-var]
        return out


def period_for(window_s: float) -> int:
    """A CloudWatch period (a multiple of 60 s) giving at most MAX_POINTS datapoints."""
    return max(60, math.ceil(window_s / MAX_POINTS / 60) * 60)


def metric_series(cw: Any, cfg: "Config", start: dt.datetime, end: dt.datetime, period: int) -> dict[str, list[tuple[float, float]]]:
    queries = [{
        "Id": f"m{i}",
        "Label": m.key,
        "MetricStat": {"Metric": {"Namespace": m.namespace, "MetricName": m.name, "Dimensions": dimensions(cfg, m)},
                       "Period": period, "Stat": m.stat},
        "ReturnData": True,
    } for i, m in enumerate(METRICS)]
    by_id = {q["Id"]: q["Label"] for q in queries}
    out: dict[str, list[tuple[float, float]]] = {m.key: [] for m in METRICS}
    # naive UTC: botocore sends it as UTC, and the sandbox's moto compares naive datetimes
    utc = dt.timezone.utc
    kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start.astimezone(utc).replace(tzinfo=None),
                              # a minute past now: the datapoints of the current second and minute count
                              "EndTime": (end + dt.timedelta(seconds=60)).astimezone(utc).replace(tzinfo=None),
                              "ScanBy": "TimestampAscending"}
    while True:
        r = cw.get_metric_data(**kwargs)
        for res in r.get("MetricDataResults", []):
            key = by_id.get(res["Id"])
            if key is not None:
                out[key] += [(_epoch(t), float(v)) for t, v in zip(res.get("Timestamps", []), res.get("Values", []))]
        token = r.get("NextToken")
        if not token:
            break
        kwargs["NextToken"] = token
    for pts in out.values():
        pts.sort()
    return out


def _epoch(t: dt.datetime) -> float:
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def error_objects_since(s3: Any, bucket: str, prefix: str, since: dt.datetime) -> int:
    n = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        n += sum(1 for o in page.get("Contents", []) if not o["Key"].endswith("/") and o["LastModified"] >= since)
    return n


def table_stats(cfg: "Config", aws: "Aws") -> dict[str, Any]:
    """Snapshots and the current snapshot's totals (Iceberg snapshot summary: no manifest read)."""
    from s3tstream.lake.query import local_table_loader

    table = local_table_loader(cfg, aws)()
    md = table.metadata
    snap = table.current_snapshot()
    summary = snap.summary if snap is not None else None

    def total(name: str) -> int:
        v = summary.get(name) if summary is not None else None
        return int(v) if v not in (None, "") else 0

    data_files = total("total-data-files")
    size = total("total-files-size")
    return {
        "snapshots": len(md.snapshots),
        "data_files": data_files,
        "delete_files": total("total-delete-files"),
        "records": total("total-records"),
        "total_bytes": size,
        # total-files-size counts delete files too; close enough to judge small files
        "avg_file_mb": round(size / data_files / MIB, 3) if data_files else None,
        "last_commit": (dt.datetime.fromtimestamp(snap.timestamp_ms / 1000, dt.timezone.utc).isoformat()
                        if snap is not None else None),
    }


def maintenance_status(cfg: "Config", aws: "Aws") -> dict[str, dict[str, Any]]:
    from s3tstream.lake.query import bucket_arn

    r = aws.client("s3tables").get_table_maintenance_job_status(
        tableBucketARN=bucket_arn(cfg, aws), namespace=cfg.names.namespace, name=cfg.names.table)
    out = {}
    for job, v in (r.get("status") or {}).items():
        last = v.get("lastRunTimestamp")
        out[job] = {"status": v.get("status"), "last_run": last.isoformat() if hasattr(last, "isoformat") else last,
                    "failure": v.get("failureMessage")}
    return out


def alarm_states(cw: Any, cfg: "Config") -> list[dict[str, Any]]:
    out = []
    for page in cw.get_paginator("describe_alarms").paginate(AlarmNamePrefix=cfg.names.alarm_prefix, AlarmTypes=["MetricAlarm"]):
        out += [{"name": a["AlarmName"], "state": a["StateValue"], "reason": a.get("StateReason", "")}
                for a in page.get("MetricAlarms", [])]
    return out


def _why(e: BaseException, doing: str) -> str:
    if isinstance(e, (ClientError, BotoCoreError)):
        return translate(e, doing).message
    return f"{doing}: {type(e).__name__}: {e}"


def _table_part(cfg: "Config", aws: "Aws", obs: Observations) -> Observations:
    """The table's Iceberg stats and maintenance jobs into obs (cfg scoped to one table)."""
    try:
        obs.table = table_stats(cfg, aws)
    except Exception as e:  # noqa: BLE001 - PyIceberg/PyArrow errors too: reported in the table check
        obs.notes["table"] = e.message if isinstance(e, S3tError) else _why(e, "reading the table's Iceberg metadata")
    try:
        obs.maintenance = maintenance_status(cfg, aws)
    except (ClientError, BotoCoreError) as e:
        if not (isinstance(e, ClientError) and is_not_found(e)) or "table" not in obs.notes:
            obs.notes["maintenance"] = _why(e, "reading the table's maintenance job status")
    return obs


def collect(cfg: "Config", aws: "Aws", start: dt.datetime, end: dt.datetime) -> Observations:
    """Everything the checks need. A part that cannot be read is noted, not fatal, except the
    metrics themselves (no CloudWatch access: the command fails)."""
    from s3tstream.data.failed_records import error_location

    obs = Observations(start=start, end=end, period=period_for((end - start).total_seconds()))
    cw = aws.client("cloudwatch")
    try:
        obs.series = metric_series(cw, cfg, start, end, obs.period)
    except (ClientError, BotoCoreError) as e:
        raise translate(e, "reading the pipeline's CloudWatch metrics (GetMetricData)") from None
    obs.error_bucket, obs.error_prefix = error_location(cfg, aws)
    try:
        obs.error_objects = error_objects_since(aws.client("s3"), obs.error_bucket, obs.error_prefix, start)
    except (ClientError, BotoCoreError) as e:
        obs.notes["delivery"] = _why(e, f"listing s3://{obs.error_bucket}/{obs.error_prefix}")
    try:
        conf = aws.client("lambda").get_function_configuration(FunctionName=cfg.names.transform_function)
        obs.lambda_timeout_s = float(conf["Timeout"])
    except (ClientError, BotoCoreError) as e:
        obs.notes["transform"] = _why(e, f"reading Lambda {cfg.names.transform_function}")
    scopes = cfg.scopes()
    if len(scopes) == 1:
        _table_part(cfg, aws, obs)
    else:  # every table of the stack, each judged on its own
        for scoped in scopes:
            obs.by_table[scoped.names.table] = _table_part(scoped, aws, Observations(start=start, end=end,
                                                                                     period=obs.period))
    if cfg.alarms.enabled:
        try:
            obs.alarms = alarm_states(cw, cfg)
        except (ClientError, BotoCoreError) as e:
            obs.notes["alarms"] = _why(e, "describing the stack's alarms")
    return obs
