"""What exists in a (sandbox) account for one stack, listed service by service.

``inventory(endpoint_url, stack)`` lists every service the pipeline touches and keeps what
belongs to the stack: a name derived from the stack name (``<stack>``, ``<stack>-...``,
``s3tstream-<stack>-...``, ``/aws/.../<stack>-...``) or the tag ``s3tstream:stack=<stack>``.
Each resource is reduced to its name and key settings (no timestamps, version ids or other
values that differ between two equivalent runs), so two inventories compare with ``==`` and
``diff`` says how they differ. ``shared`` holds the account-wide things the stack may touch
(Lake Formation admins, the s3tablescatalog integration, registered resources).
"""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import urlparse

STACK_TAG = "s3tstream:stack"


_CLIENTS: dict[tuple[str, str, str], Any] = {}
_SESSION: Any = None
_LOCK = threading.Lock()


def _client(endpoint_url: str, service: str, region: str) -> Any:
    """One client per (endpoint, service, Region) for the whole process: building a botocore
    client costs far more than the calls an inventory makes."""
    global _SESSION
    import boto3
    from botocore.config import Config

    key = (endpoint_url, service, region)
    with _LOCK:
        if key not in _CLIENTS:
            if _SESSION is None:
                _SESSION = boto3.session.Session()
            _CLIENTS[key] = _SESSION.client(
                service, region_name=region, endpoint_url=endpoint_url,
                config=Config(retries={"mode": "standard", "total_max_attempts": 3}, s3={"addressing_style": "path"}),
            )
        return _CLIENTS[key]


def _is_ours(name: str, stack: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (
        base == stack
        or base.startswith(f"{stack}-")
        or base.startswith(f"{stack}_")
        or f"s3tstream-{stack}-" in name
        or name.startswith(f"{stack}->")
    )


def _tags(pairs: Any) -> dict[str, str]:
    if isinstance(pairs, dict):
        return dict(pairs)
    return {t["Key"]: t["Value"] for t in pairs or []}


def _doc(d: Any) -> Any:
    """A policy document in canonical form (IAM may return it URL-encoded or as a string)."""
    if isinstance(d, str):
        from urllib.parse import unquote

        try:
            d = json.loads(d)
        except ValueError:
            d = json.loads(unquote(d))

    def norm(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: norm(v) for k, v in sorted(x.items())}
        if isinstance(x, list):
            items = [norm(v) for v in x]
            return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
        return x

    return norm(d)


class Inventory:
    def __init__(self, endpoint_url: str, stack: str, region: str = "us-east-1") -> None:
        self.endpoint_url = endpoint_url
        self.stack = stack
        self.region = region
        self._clients: dict[str, Any] = {}

    def c(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = _client(self.endpoint_url, service, self.region)
        return self._clients[service]

    def ours(self, name: str, tags: dict[str, str] | None = None) -> bool:
        return _is_ours(name, self.stack) or (tags or {}).get(STACK_TAG) == self.stack

    # ------------------------------------------------------------------ services
    def dynamodb(self) -> dict[str, Any]:
        ddb = self.c("dynamodb")
        out = {}
        for name in ddb.list_tables().get("TableNames", []):
            try:
                t = ddb.describe_table(TableName=name)["Table"]
            except ddb.exceptions.ResourceNotFoundException:
                continue
            tags = _tags(ddb.list_tags_of_resource(ResourceArn=t["TableArn"]).get("Tags", []))
            if not self.ours(name, tags):
                continue
            dests = ddb.describe_kinesis_streaming_destination(TableName=name).get("KinesisDataStreamDestinations", [])
            pitr = ddb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
            out[name] = {
                "status": t["TableStatus"],
                "keys": sorted((k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]),
                "attributes": sorted((a["AttributeName"], a["AttributeType"]) for a in t["AttributeDefinitions"]),
                "billing": t.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED"),
                "pitr": pitr.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus"),
                "tags": tags,
                "kinesis_destinations": sorted(
                    (d["StreamArn"], d["DestinationStatus"], d.get("ApproximateCreationDateTimePrecision"))
                    for d in dests if d["DestinationStatus"] not in ("DISABLED",)
                ),
            }
        return out

    def kinesis(self) -> dict[str, Any]:
        k = self.c("kinesis")
        out = {}
        for page in k.get_paginator("list_streams").paginate():
            for s in page.get("StreamNames", []):
                tags = _tags(k.list_tags_for_stream(StreamName=s).get("Tags", []))
                if not self.ours(s, tags):
                    continue
                d = k.describe_stream_summary(StreamName=s)["StreamDescriptionSummary"]
                out[s] = {
                    "status": d["StreamStatus"],
                    "mode": d.get("StreamModeDetails", {}).get("StreamMode"),
                    "retention_hours": d.get("RetentionPeriodHours"),
                    "encryption": d.get("EncryptionType"),
                    "key": d.get("KeyId"),
                    "tags": tags,
                }
        return out

    def s3tables(self) -> dict[str, Any]:
        s3t = self.c("s3tables")
        out = {}
        for b in s3t.list_table_buckets().get("tableBuckets", []):
            arn = b["arn"]
            tags = s3t.list_tags_for_resource(resourceArn=arn).get("tags", {})
            if not self.ours(b["name"], tags):
                continue
            enc = s3t.get_table_bucket_encryption(tableBucketARN=arn).get("encryptionConfiguration", {})
            maint = s3t.get_table_bucket_maintenance_configuration(tableBucketARN=arn).get("configuration", {})
            namespaces = {}
            for ns in s3t.list_namespaces(tableBucketARN=arn).get("namespaces", []):
                nsname = ns["namespace"][0]
                tables = {}
                for t in s3t.list_tables(tableBucketARN=arn, namespace=nsname).get("tables", []):
                    tables[t["name"]] = self._table(arn, nsname, t["name"])
                namespaces[nsname] = tables
            out[b["name"]] = {"encryption": enc.get("sseAlgorithm"), "kms": enc.get("kmsKeyArn"),
                              "maintenance": maint, "tags": tags, "namespaces": namespaces}
        return out

    def _table(self, bucket_arn: str, ns: str, name: str) -> dict[str, Any]:
        s3t = self.c("s3tables")
        t = s3t.get_table(tableBucketARN=bucket_arn, namespace=ns, name=name)
        maint = s3t.get_table_maintenance_configuration(tableBucketARN=bucket_arn, namespace=ns, name=name)
        tags = s3t.list_tags_for_resource(resourceArn=t["tableARN"]).get("tags", {})
        return {
            "format": t.get("format"),
            "tags": tags,
            "maintenance": maint.get("configuration", {}),
            "iceberg": self._iceberg(t.get("metadataLocation")),
        }

    def _iceberg(self, location: str | None) -> dict[str, Any] | None:
        """Schema, partition spec, format version and properties from the current metadata file."""
        if not location:
            return None
        u = urlparse(location)
        try:
            body = self.c("s3").get_object(Bucket=u.netloc, Key=u.path.lstrip("/"))["Body"].read()
        except Exception as e:  # noqa: BLE001 - say so in the inventory rather than fail
            return {"unreadable": type(e).__name__}
        md = json.loads(body)
        schema = next((s for s in md.get("schemas", []) if s.get("schema-id") == md.get("current-schema-id")), {})
        spec = next((s for s in md.get("partition-specs", []) if s.get("spec-id") == md.get("default-spec-id")), {})
        return {
            "format_version": md.get("format-version"),
            "fields": [(f["name"], json.dumps(f["type"], sort_keys=True), f.get("required")) for f in schema.get("fields", [])],
            "identifier_fields": schema.get("identifier-field-ids", []),
            "partition": [(f["name"], f["transform"]) for f in spec.get("fields", [])],
            "properties": {k: v for k, v in sorted(md.get("properties", {}).items())},
        }

    def iam(self) -> dict[str, Any]:
        iam = self.c("iam")
        out = {}
        for page in iam.get_paginator("list_roles").paginate():
            for r in page.get("Roles", []):
                name = r["RoleName"]
                tags = _tags(iam.list_role_tags(RoleName=name).get("Tags", []))
                if not self.ours(name, tags):
                    continue
                inline = {}
                for p in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
                    inline[p] = _doc(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
                attached = sorted(a["PolicyArn"] for a in iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []))
                out[name] = {"trust": _doc(r["AssumeRolePolicyDocument"]), "inline": inline,
                             "attached": attached, "tags": tags, "path": r.get("Path")}
        return out

    def lakeformation(self) -> list[Any]:
        """Every permission whose principal or resource is the stack's."""
        lf = self.c("lakeformation")
        out = []
        kwargs: dict[str, Any] = {}
        while True:
            page = lf.list_permissions(**kwargs)
            for p in page.get("PrincipalResourcePermissions", []):
                principal = p.get("Principal", {}).get("DataLakePrincipalIdentifier", "")
                res = json.dumps(p.get("Resource", {}), sort_keys=True)
                if self.ours(principal) or f"s3tablescatalog/{self.stack}-" in res:
                    out.append((principal, res, tuple(sorted(p.get("Permissions", []))),
                                tuple(sorted(p.get("PermissionsWithGrantOption", [])))))
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
        return sorted(out)

    def lambda_(self) -> dict[str, Any]:
        lam = self.c("lambda")
        out = {}
        for page in lam.get_paginator("list_functions").paginate():
            for f in page.get("Functions", []):
                name = f["FunctionName"]
                full = lam.get_function(FunctionName=name)
                tags = full.get("Tags", {})
                if not self.ours(name, tags):
                    continue
                c = full["Configuration"]
                conc = lam.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
                out[name] = {k: c.get(k) for k in ("Runtime", "Role", "Handler", "MemorySize", "Timeout",
                                                   "CodeSha256", "Architectures", "Description")}
                out[name].update(environment=(c.get("Environment") or {}).get("Variables", {}), tags=tags,
                                 reserved_concurrency=conc)
        return out

    def logs(self) -> dict[str, Any]:
        logs = self.c("logs")
        out = {}
        for page in logs.get_paginator("describe_log_groups").paginate():
            for g in page.get("logGroups", []):
                name = g["logGroupName"]
                arn = g["arn"].removesuffix(":*")
                tags = logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
                if not self.ours(name, tags):
                    continue
                streams = sorted(s["logStreamName"] for s in logs.describe_log_streams(logGroupName=name).get("logStreams", []))
                out[name] = {"retention": g.get("retentionInDays"), "tags": tags, "streams": streams}
        return out

    def firehose(self) -> dict[str, Any]:
        f = self.c("firehose")
        out = {}
        for name in f.list_delivery_streams(Limit=10000).get("DeliveryStreamNames", []):
            tags = _tags(f.list_tags_for_delivery_stream(DeliveryStreamName=name).get("Tags", []))
            if not self.ours(name, tags):
                continue
            d = f.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
            dests = []
            for dest in d.get("Destinations", []):
                dest = {k: v for k, v in dest.items() if k != "DestinationId"}
                dests.append(json.loads(json.dumps(dest, sort_keys=True, default=str)))
            out[name] = {"status": d["DeliveryStreamStatus"], "type": d.get("DeliveryStreamType"),
                         "source": json.loads(json.dumps(d.get("Source", {}), default=str)),
                         "destinations": dests, "tags": tags}
            for src in out[name]["source"].values():
                if isinstance(src, dict):
                    src.pop("DeliveryStartTimestamp", None)
        return out

    def s3(self) -> dict[str, Any]:
        s3 = self.c("s3")
        out = {}
        for b in s3.list_buckets().get("Buckets", []):
            name = b["Name"]
            if not (name.startswith(f"{self.stack}-")):
                continue

            def get(fn: Any, key: str, **kw: Any) -> Any:
                try:
                    return fn(Bucket=name, **kw).get(key)
                except s3.exceptions.ClientError as e:
                    return f"none ({e.response['Error']['Code']})"

            policy = get(s3.get_bucket_policy, "Policy")
            tagset = get(s3.get_bucket_tagging, "TagSet")
            out[name] = {
                "tags": _tags(tagset) if isinstance(tagset, list) else tagset,
                "public_access_block": get(s3.get_public_access_block, "PublicAccessBlockConfiguration"),
                "encryption": get(s3.get_bucket_encryption, "ServerSideEncryptionConfiguration"),
                "policy": _doc(policy) if policy and not policy.startswith("none") else policy,
                "lifecycle": get(s3.get_bucket_lifecycle_configuration, "Rules"),
            }
        return out

    def shared(self) -> dict[str, Any]:
        """Account-wide things: who administers Lake Formation, the integration, registrations."""
        lf, glue = self.c("lakeformation"), self.c("glue")
        settings = lf.get_data_lake_settings().get("DataLakeSettings", {})
        try:
            glue.get_catalog(CatalogId="s3tablescatalog")
            integration = True
        except glue.exceptions.ClientError:
            integration = False
        regs = sorted((r["ResourceArn"], r.get("RoleArn", "")) for r in lf.list_resources().get("ResourceInfoList", []))
        return {
            "lf_admins": sorted(p["DataLakePrincipalIdentifier"] for p in settings.get("DataLakeAdmins", [])),
            "integration_catalog": integration,
            "registered": regs,
        }

    def collect(self) -> dict[str, Any]:
        return {
            "dynamodb": self.dynamodb(),
            "kinesis": self.kinesis(),
            "s3tables": self.s3tables(),
            "iam": self.iam(),
            "lakeformation": self.lakeformation(),
            "lambda": self.lambda_(),
            "logs": self.logs(),
            "firehose": self.firehose(),
            "s3": self.s3(),
            "shared": self.shared(),
        }


def inventory(endpoint_url: str, stack: str, region: str = "us-east-1") -> dict[str, Any]:
    return Inventory(endpoint_url, stack, region).collect()


def leftovers(inv: dict[str, Any]) -> dict[str, Any]:
    """The stack's own resources in an inventory (what `down` must have removed)."""
    return {k: v for k, v in inv.items() if k != "shared" and v}


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two inventories (a: expected, b: actual)."""
    out: list[str] = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in b:
                out.append(f"{p}: missing (expected {_short(a[k])})")
            elif k not in a:
                out.append(f"{p}: unexpected {_short(b[k])}")
            else:
                out += diff(a[k], b[k], p)
    elif a != b:
        out.append(f"{path}: expected {_short(a)}, got {_short(b)}")
    return out


def _short(x: Any, n: int = 300) -> str:
    s = json.dumps(x, sort_keys=True, default=str)
    return s if len(s) <= n else s[:n] + "..."


def scrub(endpoint_url: str, stack: str, shared: dict[str, Any] | None = None, region: str = "us-east-1") -> list[str]:
    """Delete, directly, everything of the stack an inventory finds (and undo account-wide
    changes not in ``shared``), so that one failed check does not spill into the next.
    Returns what it deleted. For tests only: it ignores ownership on purpose."""
    inv = Inventory(endpoint_url, stack, region)
    found = inv.collect()
    done: list[str] = []

    def attempt(what: str, fn: Any, *a: Any, **kw: Any) -> None:
        try:
            fn(*a, **kw)
            done.append(what)
        except Exception as e:  # noqa: BLE001 - best effort, keep going
            done.append(f"{what} FAILED: {e}")

    f, lam, logs, iam = inv.c("firehose"), inv.c("lambda"), inv.c("logs"), inv.c("iam")
    for name in found["firehose"]:
        attempt(f"firehose {name}", f.delete_delivery_stream, DeliveryStreamName=name, AllowForceDelete=True)
    for name in found["lambda"]:
        attempt(f"lambda {name}", lam.delete_function, FunctionName=name)
    for name in found["logs"]:
        attempt(f"log group {name}", logs.delete_log_group, logGroupName=name)
    lf = inv.c("lakeformation")
    for principal, res, perms, _ in found["lakeformation"]:
        attempt(f"lf {principal} {res}", lf.revoke_permissions, Principal={"DataLakePrincipalIdentifier": principal},
                Resource=json.loads(res), Permissions=list(perms))
    for arn, role in found["shared"]["registered"]:
        if _is_ours(role, stack) and (shared is None or [arn, role] not in [list(x) for x in shared["registered"]]):
            attempt(f"registration {arn}", lf.deregister_resource, ResourceArn=arn)
    if shared is not None and not shared["integration_catalog"] and found["shared"]["integration_catalog"]:
        attempt("catalog s3tablescatalog", inv.c("glue").delete_catalog, CatalogId="s3tablescatalog")
    for name, role in found["iam"].items():
        for p in role["inline"]:
            attempt(f"role policy {name}/{p}", iam.delete_role_policy, RoleName=name, PolicyName=p)
        for p in role["attached"]:
            attempt(f"detach {name} {p}", iam.detach_role_policy, RoleName=name, PolicyArn=p)
        attempt(f"role {name}", iam.delete_role, RoleName=name)
    s3 = inv.c("s3")
    for name in found["s3"]:
        try:
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
                objs = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                        for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                if objs:
                    s3.delete_objects(Bucket=name, Delete={"Objects": objs, "Quiet": True})
        except Exception:  # noqa: BLE001
            pass
        attempt(f"bucket {name}", s3.delete_bucket, Bucket=name)
    ddb, k = inv.c("dynamodb"), inv.c("kinesis")
    for name, t in found["dynamodb"].items():
        for arn, _st, _p in t["kinesis_destinations"]:
            attempt(f"destination {name}->{arn}", ddb.disable_kinesis_streaming_destination, TableName=name, StreamArn=arn)
        attempt(f"table {name}", ddb.delete_table, TableName=name)
    for name in found["kinesis"]:
        attempt(f"stream {name}", k.delete_stream, StreamName=name, EnforceConsumerDeletion=True)
    s3t = inv.c("s3tables")
    for b in s3t.list_table_buckets().get("tableBuckets", []):
        if b["name"] not in found["s3tables"]:
            continue
        for ns in s3t.list_namespaces(tableBucketARN=b["arn"]).get("namespaces", []):
            for t in s3t.list_tables(tableBucketARN=b["arn"], namespace=ns["namespace"][0]).get("tables", []):
                attempt(f"table {t['name']}", s3t.delete_table, tableBucketARN=b["arn"], namespace=ns["namespace"][0],
                        name=t["name"])
            attempt(f"namespace {ns['namespace'][0]}", s3t.delete_namespace, tableBucketARN=b["arn"],
                    namespace=ns["namespace"][0])
        attempt(f"table bucket {b['name']}", s3t.delete_table_bucket, tableBucketARN=b["arn"])
    return done
