"""Firehose control plane: what moto 5.2.5 lacks for the Iceberg destination (aws-notes).

moto creates every stream ACTIVE at once, deletes at once and checks nothing about an
Iceberg destination. Here, on top of moto's own backend:

- CreateDeliveryStream validates the Iceberg destination as AWS does at create: the catalog
  ``arn:<p>:glue:<r>:<a>:catalog/s3tablescatalog/<bucket>`` names an existing table bucket,
  each destination table exists (namespace = database), the account's s3tablescatalog
  integration exists (glue ext) and the destination role holds DESCRIBE or ALL on the table
  in Lake Formation (lakeformation ext) — else InvalidArgumentException with AWS's "not
  authorized to perform: glue:GetTable ... or the table does not exist"; and
  every UniqueKeys column is a column of the table's current Iceberg schema
  (https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-prereq.html: "Firehose
  validates if the table and unique keys exist as a part of stream creation").
  UNCONFIRMED: the exact code and text AWS answers for a unique key that is not a column.
  A table without Iceberg metadata (moto's create_table without metadata) has no columns to
  check: only its existence is checked.
- A new stream is CREATING at the first DescribeDeliveryStream and ACTIVE (or CREATING_FAILED,
  when armed through ``POST /_sandbox/firehose/fail-create``) from the next one on. Under the
  ``realistic`` latency it stays CREATING until ``firehose.delivery_stream.create`` has passed
  (sandbox/latency.py), and CreateDeliveryStream refuses a role created less than
  ``iam.role.propagation`` ago with InvalidArgumentException "Firehose is unable to assume role"
  (aws-notes: IAM is eventually consistent; ext/readiness.py stamps new roles).
- DeleteDeliveryStream refuses a CREATING stream (ResourceInUseException: "You can't delete a
  Firehose stream that is in the CREATING state",
  https://docs.aws.amazon.com/firehose/latest/APIReference/API_DeleteDeliveryStream.html); a
  deleted stream is DELETING at the next describe, then gone. Creating a name that is still
  DELETING is refused with ResourceInUseException.
- UpdateDestination re-validates tables and keys when it changes them, then lets moto apply it.

Control route: ``POST /_sandbox/firehose/fail-create {"name", "type"?, "details"?}`` makes the
next create of that stream end CREATING_FAILED with that FailureDescription.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from typing import Any

from s3tstream.sandbox import latency
from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, SandboxRequest, control_route, handles, on_reset, worker

check_moto_version()

from moto.core.exceptions import ServiceException  # noqa: E402
from moto.firehose.models import firehose_backends  # noqa: E402

CATALOG_RE = re.compile(r"^arn:([^:]+):glue:([^:]+):(\d{12}):catalog/s3tablescatalog/([a-z0-9-]{3,63})$")
FAILURE_TYPES = {
    "VPC_ENDPOINT_SERVICE_NAME_NOT_FOUND", "VPC_INTERFACE_ENDPOINT_SERVICE_ACCESS_DENIED", "RETIRE_KMS_GRANT_FAILED",
    "CREATE_KMS_GRANT_FAILED", "KMS_ACCESS_DENIED", "DISABLED_KMS_KEY", "INVALID_KMS_KEY", "KMS_KEY_NOT_FOUND",
    "KMS_OPT_IN_REQUIRED", "CREATE_ENI_FAILED", "DELETE_ENI_FAILED", "SUBNET_NOT_FOUND", "SECURITY_GROUP_NOT_FOUND",
    "ENI_ACCESS_DENIED", "SUBNET_ACCESS_DENIED", "SECURITY_GROUP_ACCESS_DENIED", "UNKNOWN_ERROR",
}

_lock = threading.RLock()
# (account, region, name) -> what the stream becomes after its first describe
_pending: dict[tuple[str, str, str], dict[str, Any]] = {}
# (account, region, name) -> armed failure for the next create
_fail_next: dict[tuple[str, str, str], dict[str, Any]] = {}
# (account, region, name) -> last description of a deleted stream, shown once as DELETING
_deleting: dict[tuple[str, str, str], dict[str, Any]] = {}
_clock = time.monotonic  # deadlines of "realistic" transitions (tests may replace it)


@on_reset
def _reset() -> None:
    with _lock:
        _pending.clear()
        _fail_next.clear()
        _deleting.clear()


def _backend(req: SandboxRequest) -> Any:
    return firehose_backends[req.account_id][req.region]


def _key(req: SandboxRequest, name: str) -> tuple[str, str, str]:
    return (req.account_id, req.region, name)


def _name(req: SandboxRequest) -> str:
    name = req.params.get("DeliveryStreamName")
    if not isinstance(name, str) or not name:
        raise AwsError("ValidationException", "1 validation error detected: Value null at 'deliveryStreamName' "
                       "failed to satisfy constraint: Member must not be null")
    return name


def _not_found(req: SandboxRequest, name: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Firehose {name} under account {req.account_id} not found.")


# ------------------------------------------------------------------ Iceberg validation
def _table(req: SandboxRequest, catalog_arn: str, database: str, table: str, role: str) -> Any:
    from moto.s3tables.models import s3tables_backends

    denied = AwsError(
        "InvalidArgumentException",
        f"Role {role} is not authorized to perform: glue:GetTable for the given table or the table does not exist.",
    )
    m = CATALOG_RE.match(catalog_arn or "")
    if m is None:
        # Only the s3tablescatalog form is emulated; anything else "does not exist" here.
        raise denied
    _, region, account, bucket = m.groups()
    if account != req.account_id or region != req.region:
        raise denied
    backend = s3tables_backends[account][region]
    tb = next((b for b in backend.table_buckets.values() if b.name == bucket), None)
    if tb is None or database not in tb.namespaces or table not in tb.namespaces[database].tables:
        raise denied
    # Reached through the federated catalog s3tablescatalog: the account's integration must exist
    # and (Lake Formation mode) the role must hold DESCRIBE (or ALL) on the table (aws-notes:
    # "A missing grant shows up only at stream creation as 'not authorized to perform:
    # glue:GetTable'").
    # In IAM mode (the integration's default permissions name IAM_ALLOWED_PRINCIPALS) the role's
    # own IAM policy must allow glue:GetTable instead of a grant (sandbox.access).
    from s3tstream.sandbox import access

    if access.create_time_denied(account, region, role, bucket, database, table):
        raise denied
    return tb.namespaces[database].tables[table]


def table_columns(account: str, table: Any) -> list[str] | None:
    """Top-level column names of the table's current Iceberg schema; None without metadata."""
    from moto.s3.models import s3_backends

    loc = getattr(table, "metadata_location", None)
    if not loc:
        return None
    bucket, _, key = loc.removeprefix("s3://").partition("/")
    try:
        obj = s3_backends[account][table.partition].get_object(bucket, key)
        md = json.loads(obj.value)
    except Exception:  # noqa: BLE001 - unreadable metadata: nothing to check against
        return None
    schemas = md.get("schemas") or ([md["schema"]] if "schema" in md else [])
    current = md.get("current-schema-id", 0)
    schema = next((s for s in schemas if s.get("schema-id", 0) == current), schemas[-1] if schemas else None)
    if schema is None:
        return None
    return [f["name"] for f in schema.get("fields", [])]


def _validate_iceberg(req: SandboxRequest, dest: dict[str, Any], role: str | None = None) -> None:
    role = role or dest.get("RoleARN") or "(no role)"
    catalog = (dest.get("CatalogConfiguration") or {}).get("CatalogARN", "")
    for t in dest.get("DestinationTableConfigurationList") or []:
        db, name = t.get("DestinationDatabaseName"), t.get("DestinationTableName")
        table = _table(req, catalog, db, name, role)
        keys = t.get("UniqueKeys") or []
        if not keys:
            continue
        cols = table_columns(req.account_id, table)
        if cols is None:
            continue
        missing = [k for k in keys if k not in cols]
        if missing:
            raise AwsError(
                "InvalidArgumentException",
                f"UniqueKeys {missing} are not columns of table {db}.{name} (columns: {', '.join(cols)}).",
            )


# ------------------------------------------------------------------ handlers
@handles("firehose", "CreateDeliveryStream")
def create_delivery_stream(req: SandboxRequest) -> dict[str, Any]:
    p = req.params
    name = _name(req)
    key = _key(req, name)
    with _lock:
        if key in _deleting:
            raise AwsError("ResourceInUseException", f"Firehose {name} under accountId {req.account_id} is being deleted.")
    iceberg = p.get("IcebergDestinationConfiguration")
    _check_roles_assumable(req)
    if iceberg:
        _validate_iceberg(req, iceberg)
    try:
        arn = _backend(req).create_delivery_stream(
            req.region, name, p.get("DeliveryStreamType"), p.get("KinesisStreamSourceConfiguration"),
            p.get("DeliveryStreamEncryptionConfigurationInput"), p.get("S3DestinationConfiguration"),
            p.get("ExtendedS3DestinationConfiguration"), p.get("RedshiftDestinationConfiguration"),
            p.get("ElasticsearchDestinationConfiguration"), p.get("SplunkDestinationConfiguration"),
            p.get("HttpEndpointDestinationConfiguration"), p.get("SnowflakeDestinationConfiguration"),
            iceberg, p.get("Tags"),
        )
    except ServiceException as e:
        raise AwsError(e.code, e.message) from None
    ds = _backend(req).delivery_streams[name]
    ds.delivery_stream_status = "CREATING"
    with _lock:
        failure = _fail_next.pop(key, None)
        _pending[key] = {"status": "CREATING_FAILED", "failure": failure} if failure else {"status": "ACTIVE"}
        seconds = latency.for_request(req, "firehose.delivery_stream.create")
        if seconds is not None:  # realistic: final state after the delay, not at a describe
            _pending[key]["ready_at"] = _clock() + seconds
    return {"DeliveryStreamARN": arn}


def _role_arns(p: dict[str, Any]) -> list[str]:
    """Every role a CreateDeliveryStream request asks Firehose to assume."""
    arns = [(p.get("KinesisStreamSourceConfiguration") or {}).get("RoleARN")]
    for member in ("IcebergDestinationConfiguration", "ExtendedS3DestinationConfiguration", "S3DestinationConfiguration"):
        dest = p.get(member) or {}
        arns += [dest.get("RoleARN"), (dest.get("S3Configuration") or {}).get("RoleARN")]
    return list(dict.fromkeys(a for a in arns if isinstance(a, str) and a))


def _check_roles_assumable(req: SandboxRequest) -> None:
    from s3tstream.sandbox.services import readiness

    for arn in _role_arns(req.params):
        if readiness.role_unusable(req.account_id, arn):
            raise AwsError("InvalidArgumentException", readiness.firehose_assume_message(arn))


def _apply(key: tuple[str, str, str], nxt: dict[str, Any]) -> None:
    account, region, name = key
    ds = firehose_backends[account][region].delivery_streams.get(name)
    if ds is None:
        return
    ds.delivery_stream_status = nxt["status"]
    if nxt.get("failure"):
        ds.failure_description = dict(nxt["failure"])  # described as FailureDescription


def _advance(req: SandboxRequest, name: str) -> None:
    """Called after a describe answered: CREATING becomes its final state (instant latency)."""
    with _lock:
        nxt = _pending.get(_key(req, name))
        if nxt is None or nxt.get("ready_at") is not None:
            return  # realistic: _settle_due completes it when its delay has passed
        del _pending[_key(req, name)]
        _apply(_key(req, name), nxt)


def _settle_due() -> None:
    """Realistic latency: every stream whose creation delay has passed reaches its final state,
    whoever looks (called before each handler reads a status, and by a worker)."""
    now = _clock()
    with _lock:  # remove and apply under one lock: a describe never sees it gone yet still CREATING
        due = [(k, v) for k, v in _pending.items() if v.get("ready_at") is not None and now >= v["ready_at"]]
        for k, v in due:
            del _pending[k]
            _apply(k, v)


@worker("firehose-readiness", interval=0.2)
def _settle_worker(server: Any) -> None:
    _settle_due()


@handles("firehose", "DescribeDeliveryStream")
def describe_delivery_stream(req: SandboxRequest) -> dict[str, Any]:
    name = _name(req)
    _settle_due()
    key = _key(req, name)
    with _lock:
        gone = _deleting.pop(key, None)
    if gone is not None:
        return {"DeliveryStreamDescription": gone}
    ds = _backend(req).delivery_streams.get(name)
    if ds is None:
        raise _not_found(req, name)
    out = _backend(req).describe_delivery_stream(name)
    _advance(req, name)
    return json.loads(json.dumps(out, default=str))


@handles("firehose", "DeleteDeliveryStream")
def delete_delivery_stream(req: SandboxRequest) -> dict[str, Any]:
    name = _name(req)
    _settle_due()
    backend = _backend(req)
    ds = backend.delivery_streams.get(name)
    if ds is None:
        raise _not_found(req, name)
    if ds.delivery_stream_status == "CREATING":
        raise AwsError(
            "ResourceInUseException",
            f"Firehose {name} is in CREATING state; you can't delete a Firehose stream that is in the CREATING state.",
        )
    desc = json.loads(json.dumps(backend.describe_delivery_stream(name), default=str))["DeliveryStreamDescription"]
    desc["DeliveryStreamStatus"] = "DELETING"
    backend.delete_delivery_stream(name)
    with _lock:
        _pending.pop(_key(req, name), None)
        _deleting[_key(req, name)] = desc
    return {}


@handles("firehose", "UpdateDestination")
def update_destination(req: SandboxRequest) -> dict[str, Any]:
    p = req.params
    name = _name(req)
    _settle_due()
    backend = _backend(req)
    ds = backend.delivery_streams.get(name)
    if ds is None:
        raise _not_found(req, name)
    if ds.delivery_stream_status != "ACTIVE":
        raise AwsError("ResourceInUseException", f"Firehose {name} is not ACTIVE (it is {ds.delivery_stream_status}).")
    upd = p.get("IcebergDestinationUpdate")
    if upd and ("DestinationTableConfigurationList" in upd or "CatalogConfiguration" in upd):
        current = next((d.get("Iceberg") for d in ds.destinations if "Iceberg" in d), {}) or {}
        merged = {**copy.deepcopy(current), **upd}
        _validate_iceberg(req, merged)
    try:
        backend.update_destination(
            name, p.get("CurrentDeliveryStreamVersionId"), p.get("DestinationId"), p.get("S3DestinationUpdate"),
            p.get("ExtendedS3DestinationUpdate"), p.get("S3BackupMode"), p.get("RedshiftDestinationUpdate"),
            p.get("ElasticsearchDestinationUpdate"), p.get("SplunkDestinationUpdate"),
            p.get("HttpEndpointDestinationUpdate"), p.get("SnowflakeDestinationUpdate"), upd,
        )
    except ServiceException as e:
        raise AwsError(e.code, e.message) from None
    return {}


# ------------------------------------------------------------------ control route
@control_route("POST", "firehose/fail-create")
def arm_create_failure(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise AwsError("BadRequest", "name (the delivery stream name) is required")
    ftype = body.get("type", "UNKNOWN_ERROR")
    if ftype not in FAILURE_TYPES:
        raise AwsError("BadRequest", f"type must be one of {sorted(FAILURE_TYPES)}")
    account = body.get("account_id") or "123456789012"
    region = body.get("region") or "us-east-1"
    failure = {"Type": ftype, "Details": body.get("details") or "The sandbox was asked to fail this stream's creation."}
    with _lock:
        _fail_next[(account, region, name)] = failure
    return {"armed": name, "failure": failure}
