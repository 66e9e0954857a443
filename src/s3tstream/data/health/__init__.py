"""`s3tstream health`: is the pipeline healthy, and why not.

collect.py reads (CloudWatch metrics, the error bucket, the transform's timeout, the Iceberg
table's metadata and maintenance jobs, the alarms); checks.py turns that into one status per
concern and a verdict. The metric names live in aws/metrics.py, shared with create-alarms.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import TYPE_CHECKING

from s3tstream.errors import UsageError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.data.health.checks import Report

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 15 * 86400  # CloudWatch keeps 1-minute datapoints 15 days


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """'90s', '15m', '1h', '2d' before now, or an ISO-8601 time (UTC unless it says otherwise)."""
    t = text.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", t)
    if m:
        seconds = float(m.group(1)) * UNITS[m.group(2)]
    else:
        try:
            when = dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--since {text!r} is neither a duration (15m, 1h, 2d) nor an ISO-8601 time",
                             "for example --since 1h or --since 2026-12-06T01:00:00Z") from None
        when = when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
        seconds = (now - when).total_seconds()
    if seconds < 60:
        raise UsageError(f"--since {text!r} is less than a minute before now", "CloudWatch's finest period here is one minute")
    if seconds > MAX_WINDOW_S:
        raise UsageError(f"--since {text!r} is more than 15 days ago", "CloudWatch keeps minute datapoints for 15 days")
    return now - dt.timedelta(seconds=seconds)


def check(cfg: "Config", aws: "Aws", since: dt.datetime, now: dt.datetime) -> "Report":
    from s3tstream.data.health.checks import evaluate
    from s3tstream.data.health.collect import collect

    return evaluate(cfg, collect(cfg, aws, since, now))


def freshness_seen(cfg: "Config", aws: "Aws", since: dt.datetime, now: dt.datetime) -> float | None:
    """The highest DeliveryToIceberg.DataFreshness (seconds) since a time, or None without datapoints."""
    from s3tstream.data.health.collect import metric_series, period_for

    series = metric_series(aws.client("cloudwatch"), cfg, since, now, period_for((now - since).total_seconds()))
    values = [v for _, v in series.get("freshness", [])]
    return max(values) if values else None
