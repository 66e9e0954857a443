"""DynamoDB export to S3 as AWS writes it (for `s3tstream backfill --strategy export`).

DynamoDB ExportTableToPointInTime / DescribeExport / ListExports. moto 5.2.5 implements them
loosely (an ARN of the form ``table/<table ARN>/import/<id>``, one data file under a random id
instead of the export id, no manifests, no ExportTime/ExportManifest, no idempotency), so they
are answered here, following the DynamoDB developer guide, "DynamoDB table export output
format" (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/S3DataExport.Output.html):

- ``<prefix>/AWSDynamoDB/<ExportId>/_started``, ``manifest-summary.json`` (version, exportArn,
  startTime, endTime, tableArn, tableId, exportTime, s3Bucket, s3Prefix, s3SseAlgorithm,
  manifestFilesS3Key, billedSizeBytes, itemCount, outputFormat), ``manifest-files.json`` (one
  JSON line per data file: itemCount, md5Checksum, etag, dataFileS3Key), their ``.checksum``
  files, and ``data/<name>.json.gz`` with one ``{"Item": {...DynamoDB JSON...}}`` line per item;
- ExportArn ``<table ARN>/export/<ExportId>``, ExportId ``<14 digits>-<8 hex>``;
- point-in-time recovery must be ENABLED (else PointInTimeRecoveryUnavailableException); a
  missing table is TableNotFoundException; ExportTime after now or before the table's
  EarliestRestorableDateTime is InvalidExportTimeException; the same ClientToken with the same
  parameters answers the same export, with other parameters IdempotentParameterMismatchException;
- the export is IN_PROGRESS in the answer to the request and COMPLETED (or FAILED with
  S3NoSuchBucket when the bucket does not exist) from the first DescribeExport on.

Differences from AWS: the items are those of the table when the request arrives, whatever
ExportTime says (the sandbox keeps no history); only DYNAMODB_JSON and FULL_EXPORT; one data file.
UNCONFIRMED: how AWS joins S3Prefix and "AWSDynamoDB" (a "/" is assumed); read the manifest key
from DescribeExport's ExportManifest rather than building it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import secrets
import threading
import time
from typing import Any

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, SandboxRequest, handles, on_reset, validation_error

check_moto_version()

from moto.dynamodb.models import dynamodb_backends  # noqa: E402

_lock = threading.Lock()
_exports: dict[str, dict[str, Any]] = {}  # ExportArn -> state (description + pending work)


@on_reset
def _reset() -> None:
    with _lock:
        _exports.clear()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _table(req: SandboxRequest, arn: str) -> Any:
    name = arn.split(":table/", 1)[-1].split("/", 1)[0] if ":table/" in arn else ""
    tables = dynamodb_backends[req.account_id][req.region].tables
    table = tables.get(name)
    if table is None or table.table_arn != arn:
        raise AwsError("TableNotFoundException", f"Table not found: {arn}")
    return table


def _items(table: Any) -> list[dict[str, Any]]:
    from moto.dynamodb.models.utilities import dynamo_json_dump

    for _ in range(5):
        try:
            items = list(table.all_items())
            break
        except RuntimeError:  # changed during iteration: a concurrent write; read again
            time.sleep(0.01)
    else:  # pragma: no cover
        items = list(table.all_items())
    return [json.loads(dynamo_json_dump(i.to_json(root_attr_name="Item"))) for i in items]


def _when(params: dict[str, Any], key: str) -> float | None:
    v = params.get(key)
    if v in (None, ""):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        try:
            return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise validation_error(f"Invalid {key}: {v!r}") from None


def _required(params: dict[str, Any], key: str) -> str:
    v = params.get(key)
    if not isinstance(v, str) or not v:
        raise validation_error(f"1 validation error detected: Value null at '{key[0].lower() + key[1:]}' failed to "
                               "satisfy constraint: Member must not be null")
    return v


def _description(st: dict[str, Any]) -> dict[str, Any]:
    # timestamps stay epoch seconds: the json protocol's timestamp format
    return {k: v for k, v in st["desc"].items() if v is not None}


@handles("dynamodb", "ExportTableToPointInTime")
def export_table_to_point_in_time(req: SandboxRequest) -> dict[str, Any]:
    p = req.params
    arn = _required(p, "TableArn")
    bucket = _required(p, "S3Bucket")
    prefix = p.get("S3Prefix") or ""
    fmt = p.get("ExportFormat") or "DYNAMODB_JSON"
    kind = p.get("ExportType") or "FULL_EXPORT"
    if fmt not in ("DYNAMODB_JSON", "ION") or kind not in ("FULL_EXPORT", "INCREMENTAL_EXPORT"):
        raise validation_error(f"Invalid ExportFormat {fmt!r} or ExportType {kind!r}")
    if fmt != "DYNAMODB_JSON" or kind != "FULL_EXPORT":
        raise validation_error("the sandbox exports only ExportFormat DYNAMODB_JSON and ExportType FULL_EXPORT")
    token = p.get("ClientToken")
    table = _table(req, arn)
    signature = (arn, bucket, prefix, fmt, kind, p.get("ExportTime"))
    with _lock:
        if token:
            for st in _exports.values():
                if st["token"] == token and st["account"] == req.account_id:
                    if st["signature"] != signature:
                        raise AwsError("IdempotentParameterMismatchException",
                                       "The provided ClientToken was already used with different parameters")
                    return {"ExportDescription": _description(st)}
    pitr = table.continuous_backups.get("PointInTimeRecoveryDescription", {})
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        raise AwsError("PointInTimeRecoveryUnavailableException",
                       f"Point in time recovery is not enabled for table '{table.name}'")
    now = time.time()
    export_time = _when(p, "ExportTime") or now
    earliest = pitr.get("EarliestRestorableDateTime")
    earliest_s = earliest.timestamp() if isinstance(earliest, dt.datetime) else float(earliest or 0)
    if export_time > now + 1 or (earliest_s and export_time < earliest_s - 1):
        raise AwsError("InvalidExportTimeException",
                       "The specified ExportTime is outside of the point in time recovery window")
    export_id = f"{int(now * 1000):014d}-{secrets.token_hex(4)}"
    export_arn = f"{table.table_arn}/export/{export_id}"
    base = f"{prefix.rstrip('/')}/AWSDynamoDB/{export_id}" if prefix else f"AWSDynamoDB/{export_id}"
    st = {
        "account": req.account_id, "region": req.region, "token": token, "signature": signature,
        "items": _items(table), "base": base, "pending": True,
        "desc": {
            "ExportArn": export_arn, "ExportStatus": "IN_PROGRESS", "StartTime": now, "ExportTime": export_time,
            "TableArn": table.table_arn, "TableId": getattr(table, "table_id", None) or hashlib.md5(
                table.table_arn.encode(), usedforsecurity=False).hexdigest(),
            "ClientToken": token, "S3Bucket": bucket, "S3BucketOwner": p.get("S3BucketOwner") or req.account_id,
            "S3Prefix": prefix or None, "S3SseAlgorithm": p.get("S3SseAlgorithm") or "AES256",
            "ExportFormat": fmt, "ExportType": kind,
        },
    }
    _write(st, started_only=True)
    with _lock:
        _exports[export_arn] = st
    return {"ExportDescription": _description(st)}


def _s3(account: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[account]["aws"]


def _write(st: dict[str, Any], started_only: bool = False) -> None:
    """Write the export's objects (``_started`` only, at the request); FAILED without a bucket."""
    d = st["desc"]
    s3 = _s3(d["S3BucketOwner"])
    bucket = d["S3Bucket"]
    if bucket not in s3.buckets:
        if not started_only:
            d.update(ExportStatus="FAILED", FailureCode="S3NoSuchBucket",
                     FailureMessage="The specified bucket does not exist", EndTime=time.time())
        return
    base = st["base"]
    if started_only:
        s3.put_object(bucket, f"{base}/_started", b"")
        return
    lines = "".join(json.dumps(i, separators=(",", ":")) + "\n" for i in st["items"]).encode()
    body = gzip.compress(lines)
    data_key = f"{base}/data/{secrets.token_hex(13)}.json.gz"
    s3.put_object(bucket, data_key, body)
    md5 = hashlib.md5(body, usedforsecurity=False)
    files = json.dumps({"itemCount": len(st["items"]), "md5Checksum": base64_md5(md5.digest()),
                        "etag": md5.hexdigest(), "dataFileS3Key": data_key}) + "\n"
    files_key = f"{base}/manifest-files.json"
    s3.put_object(bucket, files_key, files.encode())
    s3.put_object(bucket, f"{base}/manifest-files.checksum", hashlib.md5(files.encode(), usedforsecurity=False).hexdigest().encode())
    end = time.time()
    d.update(ExportStatus="COMPLETED", EndTime=end, ItemCount=len(st["items"]), BilledSizeBytes=len(lines),
             ExportManifest=f"{base}/manifest-summary.json")
    summary = json.dumps({
        "version": "2020-06-30", "exportArn": d["ExportArn"], "startTime": _iso(d["StartTime"]), "endTime": _iso(end),
        "tableArn": d["TableArn"], "tableId": d["TableId"], "exportTime": _iso(d["ExportTime"]), "s3Bucket": bucket,
        "s3Prefix": d.get("S3Prefix"), "s3SseAlgorithm": d["S3SseAlgorithm"], "s3SseKmsKeyId": None,
        "manifestFilesS3Key": files_key, "billedSizeBytes": len(lines), "itemCount": len(st["items"]),
        "outputFormat": "DYNAMODB_JSON", "exportType": "FULL_EXPORT"})
    s3.put_object(bucket, f"{base}/manifest-summary.json", summary.encode())
    s3.put_object(bucket, f"{base}/manifest-summary.checksum", hashlib.md5(summary.encode(), usedforsecurity=False).hexdigest().encode())


def base64_md5(digest: bytes) -> str:
    import base64

    return base64.b64encode(digest).decode()


def _get(req: SandboxRequest, arn: str) -> dict[str, Any]:
    with _lock:
        st = _exports.get(arn)
    if st is None or st["account"] != req.account_id:
        raise AwsError("ExportNotFoundException", f"Export not found: {arn}")
    return st


@handles("dynamodb", "DescribeExport")
def describe_export(req: SandboxRequest) -> dict[str, Any]:
    st = _get(req, _required(req.params, "ExportArn"))
    with _lock:
        if st["pending"]:
            st["pending"] = False
            _write(st)
            st["items"] = []
    return {"ExportDescription": _description(st)}


@handles("dynamodb", "ListExports")
def list_exports(req: SandboxRequest) -> dict[str, Any]:
    arn = req.params.get("TableArn")
    with _lock:
        rows = [st["desc"] for st in _exports.values()
                if st["account"] == req.account_id and st["region"] == req.region and (not arn or st["desc"]["TableArn"] == arn)]
    return {"ExportSummaries": [{"ExportArn": d["ExportArn"], "ExportStatus": d["ExportStatus"],
                                 "ExportType": d["ExportType"]} for d in rows]}
