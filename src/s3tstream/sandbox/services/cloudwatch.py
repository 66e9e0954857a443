"""CloudWatch alarms that change state: moto stores metric alarms but never evaluates them.

A worker (``cloudwatch-alarms``) evaluates every metric alarm (not metric-math or composite
ones) against the datapoints in moto's CloudWatch backend, the way AWS documents it
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/AlarmThatSendsEmail.html,
"Evaluating an alarm"): the statistic of each of the last EvaluationPeriods periods is compared
with the threshold; DatapointsToAlarm breaching periods (default: all of them) put it in ALARM;
periods without data follow TreatMissingData (missing -> INSUFFICIENT_DATA when all are missing,
notBreaching -> good, breaching -> bad, ignore -> state kept). A state change is recorded with a
reason like AWS's and notifies the alarm's SNS actions (moto's SNS publish).

Sandbox simplifications (UNCONFIRMED details of AWS): periods end at the moment of evaluation
rather than on period boundaries, and there is no evaluation delay, so a breach shows within a
worker tick (``POST /_sandbox/workers/run`` evaluates at once).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import worker

check_moto_version()

log = logging.getLogger("s3tstream.sandbox.cloudwatch")

OPERATORS = {
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}


def _stat(values: list[float], stat: str) -> float:
    if stat == "Sum":
        return sum(values)
    if stat == "Maximum":
        return max(values)
    if stat == "Minimum":
        return min(values)
    if stat == "SampleCount":
        return float(len(values))
    return sum(values) / len(values)  # Average


def _values(datums: list[Any]) -> list[float]:
    out: list[float] = []
    for d in datums:
        if hasattr(d, "value"):
            out.append(float(d.value))
        else:  # an aggregated datum (StatisticValues): its sum stands for it
            out.append(float(getattr(d, "sum_stat", 0.0)))
    return out


def evaluate(alarm: Any, data: list[Any], now: datetime.datetime) -> tuple[str, str, dict[str, Any]] | None:
    """(state, reason, reason data) for a metric alarm, or None to keep its state."""
    op = OPERATORS.get(alarm.comparison_operator)
    if op is None or not alarm.metric_name or not alarm.statistic:
        return None
    want = sorted((d.name, d.value) for d in alarm.dimensions)
    mine = [d for d in data if d.namespace == alarm.namespace and d.name == alarm.metric_name
            and sorted((x.name, x.value) for x in d.dimensions) == want]
    period = datetime.timedelta(seconds=int(alarm.period))
    n = int(alarm.evaluation_periods)
    need = int(alarm.datapoints_to_alarm or n)
    points: list[tuple[datetime.datetime, float | None]] = []
    for i in range(n):
        end = now - period * i
        start = end - period
        vals = _values([d for d in mine if start <= d.timestamp < end])
        points.append((start, _stat(vals, alarm.statistic) if vals else None))
    compare, words = op
    breaching = [(t, v) for t, v in points if v is not None and compare(v, float(alarm.threshold))]
    missing = sum(1 for _, v in points if v is None)
    treat = alarm.treat_missing_data or "missing"
    if treat == "breaching":
        bad = len(breaching) + missing
    else:
        bad = len(breaching)
    data_json = {"version": "1.0", "queryDate": now.isoformat(), "statistic": alarm.statistic,
                 "period": int(alarm.period), "threshold": float(alarm.threshold),
                 "recentDatapoints": [v for _, v in points if v is not None]}
    if bad >= need:
        shown = breaching or [(points[0][0], None)]
        listed = ", ".join(f"{v} ({t.strftime('%d/%m/%y %H:%M:%S')})" for t, v in shown if v is not None)
        reason = (f"Threshold Crossed: {len(breaching)} out of the last {n} datapoints [{listed}] "
                  f"was {words} the threshold ({float(alarm.threshold)}) (minimum {need} datapoint(s) for OK -> ALARM transition).")
        return "ALARM", reason, data_json
    if missing == n:
        if treat == "ignore":
            return None
        if treat == "missing":
            return "INSUFFICIENT_DATA", f"Insufficient Data: {n} datapoint(s) were unknown.", data_json
    reason = (f"Threshold Crossed: no datapoint of the last {n} was {words} the threshold ({float(alarm.threshold)}) "
              f"often enough (minimum {need} for ALARM).")
    return "OK", reason, data_json


def _notify(account: str, region: str, alarm: Any, old: str) -> None:
    actions = {"ALARM": alarm.alarm_actions, "OK": alarm.ok_actions,
               "INSUFFICIENT_DATA": alarm.insufficient_data_actions}.get(alarm.state_value) or []
    if not alarm.actions_enabled or not actions:
        return
    from moto.sns.models import sns_backends

    message = json.dumps({
        "AlarmName": alarm.name, "AlarmDescription": alarm.description, "AWSAccountId": account,
        "NewStateValue": alarm.state_value, "NewStateReason": alarm.state_reason, "OldStateValue": old,
        "StateChangeTime": alarm.state_updated_timestamp.isoformat(), "Region": region, "AlarmArn": alarm.alarm_arn,
    })
    for arn in actions:
        parts = arn.split(":")
        if len(parts) < 6 or parts[2] != "sns":
            continue
        topic = sns_backends[parts[4]][parts[3]].topics.get(arn)
        if topic is not None:
            try:
                topic.publish(message, subject=f'{alarm.state_value}: "{alarm.name}" in {region}')
            except Exception:  # noqa: BLE001 - a notification must not stop evaluation
                log.exception("sandbox cloudwatch: notifying %s for %s failed", arn, alarm.name)


def evaluate_all() -> int:
    """Evaluate every metric alarm of every account and Region; returns how many changed state."""
    from moto.cloudwatch.models import cloudwatch_backends

    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    changed = 0
    for account, regions in list(dict.items(cloudwatch_backends)):
        for region, backend in list(dict.items(regions)):
            alarms = [a for a in list(backend.alarms.values()) if not a.metric_data_queries and not a.rule]
            if not alarms:
                continue
            data = list(backend.metric_data)
            for alarm in alarms:
                verdict = evaluate(alarm, data, now)
                if verdict is None:
                    continue
                state, reason, reason_data = verdict
                first = alarm.state_reason.startswith("Unchecked")
                if state != alarm.state_value or first:
                    old = alarm.state_value
                    alarm.update_state(reason, json.dumps(reason_data), state)
                    changed += 1
                    if state != old:
                        _notify(account, region, alarm, old)
    return changed


@worker("cloudwatch-alarms", interval=1.0)
def _evaluate_worker(server: Any) -> None:
    evaluate_all()
