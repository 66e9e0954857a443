"""What is deployed, as `verify` needs it: the transform's settings (recorded in the state by
create-firehose), the buffering between a change and the lake (read from the live Firehose
stream), and the source table's TTL attribute.

`verify` compares the lake with what the deployed pipeline writes, not with the config: after
`up` refused a change (a type, the mode), the config says one thing and the Lambda does another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore
    from s3tstream.transform import Settings

FUNCTION_KIND = "lambda-function"
# UNCONFIRMED: time for the Lambda invocation, Firehose's read of the Kinesis shard and the
# Iceberg commit after both buffers flushed; Firehose documents no bound for them.
SETTLE_MARGIN_SECONDS = 30.0


def deployed_settings(cfg: "Config", state: "StateStore") -> tuple["Settings", list[str]]:
    """The transform Settings create-firehose deployed (else the config's), and notes saying
    which the config changes or that nothing was recorded."""
    from s3tstream.data.items import transform_settings
    from s3tstream.provision.steps.delivery.function import transform_settings as config_doc
    from s3tstream.transform import Settings, SettingsError

    rec = state.get(FUNCTION_KIND, cfg.names.transform_function)
    doc = (rec.outputs.get("settings") if rec is not None else None)
    if not isinstance(doc, dict):
        return transform_settings(cfg), ["the deployed transform settings are not recorded (a stack made by an older "
                                         "s3tstream): items are mapped with the config's; `s3tstream up` records them "
                                         "when it next updates the function"]
    try:
        deployed = Settings.from_dict(doc)
    except SettingsError as e:
        return transform_settings(cfg), [f"the recorded transform settings are unusable ({e}); items are mapped with "
                                         "the config's"]
    want = config_doc(cfg)
    changed = sorted(k for k in set(doc) | set(want) if doc.get(k) != want.get(k))
    notes = []
    if changed:
        notes.append(f"the config changes the transform's {', '.join(changed)}, which is not deployed: items are "
                     "mapped as the deployed transform maps them; `s3tstream plan` shows the change")
    return deployed, notes


def _interval(params: list[dict[str, Any]], name: str) -> float | None:
    for p in params:
        if p.get("ParameterName") == name:
            try:
                return float(p.get("ParameterValue"))
            except (TypeError, ValueError):
                return None
    return None


def settle_window(cfg: "Config", aws: "Aws") -> tuple[float, str]:
    """(seconds, how it was derived): the longest a change may sit in the pipeline's buffers
    before the lake shows it: the Lambda processor's BufferIntervalInSeconds plus the Iceberg
    destination's BufferingHints.IntervalInSeconds, as the live stream has them, plus a margin."""
    fh = cfg.firehose
    proc, dest, where = float(fh.processor_interval_seconds), float(fh.buffer_interval_seconds), "the config"
    try:
        d = aws.client("firehose").describe_delivery_stream(DeliveryStreamName=cfg.names.firehose)
        desc = d["DeliveryStreamDescription"]["Destinations"][0]["IcebergDestinationDescription"]
    except (ClientError, BotoCoreError, KeyError, IndexError):
        pass  # no stream or no right to describe it: the config's intervals
    else:
        dest = float((desc.get("BufferingHints") or {}).get("IntervalInSeconds", dest))
        procs = (desc.get("ProcessingConfiguration") or {}).get("Processors") or []
        got = _interval(procs[0].get("Parameters") or [], "BufferIntervalInSeconds") if procs else None
        proc = got if got is not None else proc
        where = f"Firehose stream {cfg.names.firehose}"
    total = proc + dest + SETTLE_MARGIN_SECONDS
    return total, (f"{proc:g}s processor + {dest:g}s destination buffer interval ({where}) "
                   f"+ {SETTLE_MARGIN_SECONDS:g}s margin")


def ttl_attribute(cfg: "Config", ddb: Any) -> str | None:
    """The source table's TTL attribute when TTL is on (None: off, or not readable)."""
    try:
        d = ddb.describe_time_to_live(TableName=cfg.names.source_table)["TimeToLiveDescription"]
    except (ClientError, BotoCoreError, KeyError):
        return None
    return d.get("AttributeName") if d.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") else None
