"""The health checks: observations (collect.py) -> one status per concern and a verdict. Pure.

Statuses: ok, warn, fail. Verdict: failing if any check fails, degraded if any warns, else
healthy. Thresholds come from [alarms] (the same numbers the alarms use) and from the table's
maintenance settings; the ones below say when compaction or snapshot expiry lags.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from s3tstream.data.health.collect import Observations

if TYPE_CHECKING:
    from s3tstream.config.model import Config

OK, WARN, FAIL = "ok", "warn", "fail"
RANK = {OK: 0, WARN: 1, FAIL: 2}
VERDICT = {OK: "healthy", WARN: "degraded", FAIL: "failing"}

# Compaction lags when files stay small: at least this many data files averaging under
# target_file_size_mb / SMALL_FILE_RATIO (S3 Tables compacts towards the target size).
SMALL_FILES_MIN = 100
SMALL_FILE_RATIO = 10
# Merge-on-read delete files (Firehose writes equality deletes for updates and deletes) pile up
# until compaction rewrites them: more than this share of the data files, and at least 10.
DELETE_FILE_SHARE = 0.5
# Lambda Duration this close to the function's timeout is a warning; at the timeout it failed.
DURATION_WARN_SHARE = 0.8


@dataclass
class Check:
    name: str
    status: str
    value: Any
    detail: str
    action: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "value": self.value, "detail": self.detail,
                "action": self.action, "metrics": self.metrics}


@dataclass
class Report:
    stack: str
    checks: list[Check]
    obs: Observations

    @property
    def verdict(self) -> str:
        worst = max((RANK[c.status] for c in self.checks), default=0)
        return VERDICT[[OK, WARN, FAIL][worst]]

    @property
    def healthy(self) -> bool:
        return self.verdict == "healthy"

    def to_json(self) -> dict[str, Any]:
        o = self.obs
        return {
            "verdict": self.verdict,
            "stack": self.stack,
            "checks": [c.to_json() for c in self.checks],
            "window": {"start": o.start.isoformat(), "end": o.end.isoformat(), "period_seconds": o.period},
            "series": {k: o.buckets(k) for k in o.series},
            "alarms": o.alarms,
        }


def _worst(*statuses: str) -> str:
    return max(statuses, key=lambda s: RANK[s])


def _n(x: float | None) -> int:
    return int(round(x or 0))


def freshness_limits(cfg: "Config") -> tuple[float, float]:
    """(warn, fail) seconds. Fail: [alarms] freshness_seconds. Warn: twice what buffering
    explains (the destination's and the transform's buffer intervals), at least a minute."""
    fail = float(cfg.alarms.freshness_seconds)
    warn = max(60.0, 2.0 * (cfg.firehose.buffer_interval_seconds + cfg.firehose.processor_interval_seconds))
    return (warn if warn < fail else fail / 2), fail


def check_freshness(cfg: "Config", o: Observations) -> Check:
    warn_s, fail_s = freshness_limits(cfg)
    fresh, iterator_ms, behind_ms = o.latest("freshness"), o.latest("iterator_age"), o.latest("millis_behind")
    m = {"data_freshness_seconds": fresh, "iterator_age_ms": iterator_ms, "millis_behind_latest": behind_ms,
         "warn_seconds": warn_s, "fail_seconds": fail_s}
    if fresh is None and iterator_ms is None and behind_ms is None:
        return Check("freshness", OK, None, "no records went through Firehose in the window: nothing is waiting", metrics=m)
    lag_s = max((fresh or 0.0), (iterator_ms or 0.0) / 1000, (behind_ms or 0.0) / 1000)
    status = FAIL if lag_s > fail_s else WARN if lag_s > warn_s else OK
    parts = []
    if fresh is not None:
        parts.append(f"the oldest record not yet in the lake is {fresh:.1f}s old (DeliveryToIceberg.DataFreshness)")
    if iterator_ms is not None:
        parts.append(f"stream iterator age {iterator_ms / 1000:.1f}s")
    if behind_ms is not None:
        parts.append(f"Firehose {behind_ms / 1000:.1f}s behind the stream's newest record")
    action = "" if status == OK else (
        "check the delivery and transform checks below and Firehose's log group; "
        "a stream iterator age far above the freshness means Firehose is not keeping up with the stream")
    return Check("freshness", status, round(fresh if fresh is not None else lag_s, 3),
                 "; ".join(parts) + f" (warn above {warn_s:.0f}s, fail above {fail_s:.0f}s)", action, m)


def check_delivery(cfg: "Config", o: Observations) -> Check:
    read, delivered, failed = o.total("records_read"), o.total("delivered_rows"), o.total("failed_rows")
    incoming = o.total("incoming_records")
    m = {"records_read": _n(read), "rows_delivered": _n(delivered), "rows_failed": _n(failed),
         "error_objects": o.error_objects, "error_bucket": o.error_bucket, "error_prefix": o.error_prefix}
    where = f"s3://{o.error_bucket}/{o.error_prefix}"
    detail = (f"{_n(read)} record(s) read, {_n(delivered)} row(s) delivered, {_n(failed)} failed; "
              f"{'?' if o.error_objects is None else o.error_objects} object(s) in {where} since {o.start:%H:%M}")
    if failed > cfg.alarms.failed_records or (o.error_objects or 0) > 0:
        return Check("delivery", FAIL, _n(failed), detail,
                     f"`s3tstream errors` groups the failed records in {where} by cause; fix it, then `s3tstream errors replay`", m)
    if "delivery" in o.notes:
        return Check("delivery", WARN, _n(failed), f"{detail}; {o.notes['delivery']}",
                     "check that the error bucket exists (`s3tstream status`) and that you may list it", m)
    if incoming > 0 and read == 0:
        return Check("delivery", WARN, 0, f"{_n(incoming)} record(s) came into the stream but Firehose read none",
                     "check the Firehose stream's status (`s3tstream status`) and its role's Kinesis permissions", m)
    return Check("delivery", OK, _n(failed), detail, "", m)


def check_transform(cfg: "Config", o: Observations) -> Check:
    errors, throttles = o.total("lambda_errors"), o.total("lambda_throttles")
    invocations, longest = o.total("lambda_invocations"), o.peak("lambda_duration")
    timeout_ms = o.lambda_timeout_s * 1000 if o.lambda_timeout_s else None
    m = {"invocations": _n(invocations), "errors": _n(errors), "throttles": _n(throttles),
         "max_duration_ms": longest, "timeout_ms": timeout_ms}
    detail = f"{_n(invocations)} invocation(s), {_n(errors)} error(s), {_n(throttles)} throttled"
    if longest is not None:
        detail += f", longest {longest:.0f} ms" + (f" of a {timeout_ms:.0f} ms timeout" if timeout_ms else "")
    fn = cfg.names.transform_function
    status, action = OK, ""
    if errors > cfg.alarms.transform_errors:
        status, action = FAIL, f"read the errors in /aws/lambda/{fn}; Firehose retries an invocation, then fails its records"
    elif timeout_ms and longest is not None and longest >= timeout_ms:
        status, action = FAIL, "the transform timed out: raise [firehose] lambda_timeout_seconds or lower processor_buffer_mb"
    elif throttles > 0:
        status, action = WARN, "raise the function's reserved concurrency ([firehose] lambda_reserved_concurrency) or the account's"
    elif timeout_ms and longest is not None and longest >= DURATION_WARN_SHARE * timeout_ms:
        status, action = WARN, "close to its timeout: raise [firehose] lambda_timeout_seconds or lambda_memory_mb"
    if "transform" in o.notes:
        status, detail = _worst(status, WARN), f"{detail}; {o.notes['transform']}"
    return Check("transform", status, _n(errors), detail, action, m)


def check_stream(cfg: "Config", o: Observations) -> Check:
    throttles, incoming = o.total("write_throttles"), o.total("incoming_records")
    m = {"incoming_records": _n(incoming), "write_throttles": _n(throttles)}
    detail = f"{_n(incoming)} record(s) in, {_n(throttles)} write(s) throttled (WriteProvisionedThroughputExceeded)"
    if throttles > cfg.alarms.stream_throttles:
        return Check("stream", FAIL, _n(throttles), detail,
                     "the stream refuses writes: add shards ([stream] shards) or set [stream] mode = \"ON_DEMAND\"", m)
    if throttles > 0:
        return Check("stream", WARN, _n(throttles), detail, "writes are retried, but the stream is near its limit", m)
    return Check("stream", OK, _n(throttles), detail, "", m)


def snapshot_limit(cfg: "Config") -> int:
    """Snapshots to expect: one commit per buffer interval over the snapshot age kept, twice."""
    keep_s = cfg.table.maintenance.max_snapshot_age_hours * 3600
    return 2 * int(keep_s / max(cfg.firehose.buffer_interval_seconds, 1)) + 100


def check_table(cfg: "Config", o: Observations) -> Check:
    t, jobs = o.table, o.maintenance or {}
    m: dict[str, Any] = {**(t or {}), "maintenance": jobs}
    if t is None:
        return Check("table", WARN, None, o.notes.get("table", "the table could not be read"),
                     "run `s3tstream status`; `s3tstream up` creates the table", m)
    target = cfg.table.maintenance.target_file_size_mb
    avg = t["avg_file_mb"]
    parts = [f"{t['snapshots']} snapshot(s), {t['data_files']} data file(s), {t['delete_files']} delete file(s)"
             + (f", {avg:.3g} MB average (target {target} MB)" if avg is not None else "")]
    status, actions = OK, []
    failed = {j: v for j, v in jobs.items() if v.get("status") == "Failed"}
    for job, v in failed.items():
        parts.append(f"{job} failed: {v.get('failure') or 'no message'}")
    if "icebergCompaction" in failed:
        status = FAIL
        actions.append("compaction failed: see the message (KMS key access, table properties), fix it; it retries on its own")
    elif failed:
        status = WARN
        actions.append("a maintenance job failed: see the message")
    if jobs:
        parts.append("maintenance: " + ", ".join(f"{j} {v.get('status')}" for j, v in sorted(jobs.items())))
    elif "maintenance" in o.notes:
        parts.append(o.notes["maintenance"])
    if t["data_files"] >= SMALL_FILES_MIN and avg is not None and avg < target / SMALL_FILE_RATIO:
        status = _worst(status, WARN)
        off = jobs.get("icebergCompaction", {}).get("status") == "Disabled" or not cfg.table.maintenance.compaction
        parts.append(f"compaction lags: {t['data_files']} files average {avg:.3g} MB, under a tenth of the target")
        actions.append("turn compaction on ([table.maintenance] compaction = true)" if off else
                       "compaction runs on AWS's schedule; raise [firehose] buffer_interval_seconds / buffer_size_mb for larger files")
    if t["delete_files"] >= 10 and t["delete_files"] > DELETE_FILE_SHARE * max(t["data_files"], 1):
        status = _worst(status, WARN)
        parts.append(f"delete files pile up ({t['delete_files']} for {t['data_files']} data files): compaction has not merged them")
        actions.append("queries read every delete file until compaction merges them; check the compaction job")
    limit = snapshot_limit(cfg)
    if t["snapshots"] > limit:
        status = _worst(status, WARN)
        parts.append(f"snapshot expiry lags: {t['snapshots']} snapshots, more than {limit} expected")
        actions.append("check icebergSnapshotManagement ([table.maintenance] snapshot_management, max_snapshot_age_hours)")
    return Check("table", status, avg, "; ".join(parts), "; ".join(actions), m)


def check_alarms(o: Observations) -> Check | None:
    if not o.alarms and "alarms" not in o.notes:
        return None
    firing = [a["name"] for a in o.alarms if a["state"] == "ALARM"]
    detail = ", ".join(f"{a['name']} {a['state']}" for a in o.alarms) or o.notes.get("alarms", "")
    if firing:
        return Check("alarms", FAIL, len(firing), detail, "the checks above say why; the alarm clears itself once the metric recovers")
    return Check("alarms", WARN if "alarms" in o.notes else OK, 0, detail)


def evaluate(cfg: "Config", o: Observations) -> Report:
    checks = [check_freshness(cfg, o), check_delivery(cfg, o), check_transform(cfg, o), check_stream(cfg, o)]
    if o.by_table:  # a [[tables]] stack: one table check per lake table ("table <name>")
        for scoped in cfg.scopes():
            c = check_table(scoped, o.by_table[scoped.names.table])
            c.name = f"table {scoped.names.table}"
            checks.append(c)
    else:
        checks.append(check_table(cfg, o))
    alarms = check_alarms(o)
    if alarms is not None:
        checks.append(alarms)
    return Report(cfg.stack.name, checks, o)
