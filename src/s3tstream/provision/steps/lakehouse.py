"""create-table-bucket: the S3 table bucket, the namespace and the table with its full schema.

aws-notes: create_namespace takes a one-element list; create_table(metadata=...) carries the
schema (schema.py builds it), partition spec and properties (it also takes
s3tables:PutTableData on AWS); S3 Tables has no waiters, so we poll get_* until visible.
Encryption: AES256 unless table.kms_key_arn (aws:kms). Maintenance (on by default on AWS) is
brought to the config with put_*_maintenance_configuration only when it differs.
Delete order on `down` (reverse creation): table, namespace, bucket. All three are data:
`down --keep-data` keeps them; one that existed before the stack is adopted, never deleted.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from s3tstream.lake import schema
from s3tstream.aws.client import error_code, is_not_found, wait_until
from s3tstream.errors import AwsError
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec

def bucket_arn(ctx: Ctx) -> str:
    rec = ctx.state.get(TableBucket.kind, ctx.names.table_bucket)
    if rec is not None and rec.id:
        return rec.id
    return ctx.aws.arn("s3tables", f"bucket/{ctx.names.table_bucket}")


def _s3t(ctx: Ctx) -> Any:
    return ctx.aws.client("s3tables")


def _live_tags(ctx: Ctx, arn: str) -> dict[str, str] | None:
    """The resource's tags; None when the caller may not read them (ownership unknown)."""
    try:
        return dict(_s3t(ctx).list_tags_for_resource(resourceArn=arn).get("tags", {}))
    except ClientError as e:
        if error_code(e) in ("AccessDeniedException", "ForbiddenException", "MethodNotAllowedException"):
            return None
        raise


def _tags_for_delete(ctx: Ctx, arn: str) -> dict[str, str] | None:
    """Live tags for `down`: None when gone; unreadable tags count as none (so it is kept)."""
    try:
        return dict(_s3t(ctx).list_tags_for_resource(resourceArn=arn).get("tags", {}))
    except ClientError as e:
        if is_not_found(e):
            return None
        if error_code(e) in ("AccessDeniedException", "ForbiddenException", "MethodNotAllowedException"):
            return {}
        raise


def _judge(ctx: Ctx, obs: Observed, arn: str) -> None:
    tags = _live_tags(ctx, arn)
    if tags is None:
        obs.owned = None
    else:
        ctx.judge(obs, tags)


def desired_encryption(ctx: Ctx) -> dict[str, str]:
    kms = ctx.cfg.table.kms_key_arn
    return {"sseAlgorithm": "aws:kms", "kmsKeyArn": kms} if kms else {"sseAlgorithm": "AES256"}


def desired_bucket_maintenance(ctx: Ctx) -> dict[str, dict[str, Any]]:
    m = ctx.cfg.table.maintenance
    return {
        "icebergUnreferencedFileRemoval": {
            "status": "enabled" if m.unreferenced_file_removal else "disabled",
            "settings": {"icebergUnreferencedFileRemoval": {"unreferencedDays": m.unreferenced_days,
                                                            "nonCurrentDays": m.noncurrent_days}},
        }
    }


def desired_table_maintenance(ctx: Ctx) -> dict[str, dict[str, Any]]:
    m = ctx.cfg.table.maintenance
    return {
        "icebergCompaction": {
            "status": "enabled" if m.compaction else "disabled",
            "settings": {"icebergCompaction": {"targetFileSizeMB": m.target_file_size_mb}},
        },
        "icebergSnapshotManagement": {
            "status": "enabled" if m.snapshot_management else "disabled",
            "settings": {"icebergSnapshotManagement": {"minSnapshotsToKeep": m.min_snapshots_to_keep,
                                                       "maxSnapshotAgeHours": m.max_snapshot_age_hours}},
        },
    }


def maintenance_differs(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    """Types whose status or configured settings differ (settings AWS adds are ignored)."""
    out = []
    for typ, w in want.items():
        h = have.get(typ) or {}
        if h.get("status") != w["status"]:
            out.append(typ)
            continue
        if w["status"] == "disabled":
            continue
        hs = (h.get("settings") or {}).get(typ) or {}
        ws = w["settings"][typ]
        if any(hs.get(k) != v for k, v in ws.items()):
            out.append(typ)
    return out


def maintenance_drift(want: dict[str, Any], have: dict[str, Any]) -> list[Drift]:
    """One Drift per maintenance type that differs; its field is the type (what update() puts)."""
    return [Drift(t, (have.get(t) or {}).get("status"), want[t]["status"], "maintenance {field}")
            for t in maintenance_differs(want, have)]


class TableBucket(ResourceSpec):
    kind = "s3tables-table-bucket"
    data = True
    taggable = True
    adoptable = True  # a bucket made before the stack (the old sample's CDK) is adopted, never deleted

    @property
    def name(self) -> str:
        return self.ctx.names.table_bucket

    def observe(self) -> Observed:
        arn = bucket_arn(self.ctx)
        try:
            b = _s3t(self.ctx).get_table_bucket(tableBucketARN=arn)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        arn = b["arn"]
        obs = Observed(exists=True, id=arn, outputs={"arn": arn})
        _judge(self.ctx, obs, arn)
        rec = self.ctx.state.get(self.kind, self.name)
        if rec is not None and rec.ownership == "owned":  # only our own bucket is brought in line
            obs.drift += self._drift(arn)
        return obs

    def _drift(self, arn: str) -> list[Drift]:
        s3t = _s3t(self.ctx)
        out = []
        enc = s3t.get_table_bucket_encryption(tableBucketARN=arn).get("encryptionConfiguration", {})
        want = desired_encryption(self.ctx)
        if {k: enc.get(k) for k in ("sseAlgorithm", "kmsKeyArn")} != {"kmsKeyArn": None, **want}:
            out.append(Drift("encryption", enc.get("sseAlgorithm"), want["sseAlgorithm"]))
        return out + self._maintenance_drift(arn)

    def create(self) -> dict[str, Any]:
        s3t = _s3t(self.ctx)
        arn = s3t.create_table_bucket(
            name=self.name, encryptionConfiguration=desired_encryption(self.ctx), tags=self.ctx.tags()
        )["arn"]

        self.ctx.wait_for(lambda: s3t.get_table_bucket(tableBucketARN=arn), f"table bucket {self.name}")
        self._apply(arn, self._maintenance_drift(arn))
        return {"id": arn, "arn": arn}

    def _maintenance_drift(self, arn: str) -> list[Drift]:
        have = _s3t(self.ctx).get_table_bucket_maintenance_configuration(tableBucketARN=arn).get("configuration", {})
        return maintenance_drift(desired_bucket_maintenance(self.ctx), have)

    def _apply(self, arn: str, drift: list[Drift]) -> None:
        s3t = _s3t(self.ctx)
        fields = {d.field for d in drift}
        if "encryption" in fields:
            s3t.put_table_bucket_encryption(tableBucketARN=arn, encryptionConfiguration=desired_encryption(self.ctx))
        want = desired_bucket_maintenance(self.ctx)
        for typ, value in want.items():
            if typ in fields:
                s3t.put_table_bucket_maintenance_configuration(tableBucketARN=arn, type=typ, value=value)

    def update(self, observed: Observed) -> dict[str, Any]:
        self._apply(observed.id or bucket_arn(self.ctx), observed.drift)
        return {}

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        _s3t(ctx).tag_resource(resourceArn=record.id or ctx.aws.arn("s3tables", f"bucket/{record.name}"), tags=tags)

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        return _tags_for_delete(ctx, record.id or ctx.aws.arn("s3tables", f"bucket/{record.name}"))

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        s3t = ctx.aws.client("s3tables")
        arn = record.id or ctx.aws.arn("s3tables", f"bucket/{record.name}")
        try:
            s3t.delete_table_bucket(tableBucketARN=arn)
        except ClientError as e:
            if is_not_found(e):
                return
            if error_code(e) == "ConflictException":
                raise AwsError(
                    f"table bucket {record.name} is not empty: {e}",
                    "delete the namespaces and tables you added to it yourself, then run `s3tstream down` again",
                ) from None
            raise

        ctx.wait_for(lambda: s3t.get_table_bucket(tableBucketARN=arn), f"table bucket {record.name}", gone=True)


class Namespace(ResourceSpec):
    kind = "s3tables-namespace"
    data = True
    adoptable = True

    @property
    def name(self) -> str:
        return f"{self.ctx.names.table_bucket}/{self.ctx.names.namespace}"

    def observe(self) -> Observed:
        try:
            _s3t(self.ctx).get_namespace(tableBucketARN=bucket_arn(self.ctx), namespace=self.ctx.names.namespace)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        # Namespaces carry no tags: one inside a bucket this stack owns is this stack's.
        brec = self.ctx.state.get(TableBucket.kind, self.ctx.names.table_bucket)
        owned = brec is not None and brec.ownership == "owned"
        return Observed(exists=True, id=self.name, owned=owned, outputs={"bucket_arn": bucket_arn(self.ctx),
                                                                         "namespace": self.ctx.names.namespace})

    def create(self) -> dict[str, Any]:
        s3t = _s3t(self.ctx)
        arn, ns = bucket_arn(self.ctx), self.ctx.names.namespace
        s3t.create_namespace(tableBucketARN=arn, namespace=[ns])  # a one-element list (aws-notes)

        self.ctx.wait_for(lambda: s3t.get_namespace(tableBucketARN=arn, namespace=ns), f"namespace {ns}")
        return {"id": self.name, "bucket_arn": arn, "namespace": ns}

    @classmethod
    def owner(cls, ctx: Ctx, record: Any) -> tuple[str, str] | None:
        return (TableBucket.kind, record.name.partition("/")[0])  # namespaces take no tags

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        s3t = ctx.aws.client("s3tables")
        bucket, _, ns = record.name.partition("/")
        arn = record.outputs.get("bucket_arn") or ctx.aws.arn("s3tables", f"bucket/{bucket}")
        try:
            s3t.delete_namespace(tableBucketARN=arn, namespace=ns)
        except ClientError as e:
            if is_not_found(e):
                return
            if error_code(e) == "ConflictException":
                raise AwsError(
                    f"namespace {ns} in {bucket} still holds tables: {e}",
                    "delete the tables you added to it yourself, then run `s3tstream down` again",
                ) from None
            raise


class Table(ResourceSpec):
    kind = "s3tables-table"
    data = True
    taggable = True
    per_table = True
    adoptable = True  # e.g. the legacy table without metadata: set-metadata then fixes it

    @property
    def name(self) -> str:
        n = self.ctx.names
        return f"{n.table_bucket}/{n.namespace}/{n.table}"

    def _get(self) -> dict[str, Any] | None:
        n = self.ctx.names
        try:
            return _s3t(self.ctx).get_table(tableBucketARN=bucket_arn(self.ctx), namespace=n.namespace, name=n.table)
        except ClientError as e:
            if is_not_found(e):
                return None
            raise

    def observe(self) -> Observed:
        t = self._get()
        if t is None:
            return Observed(exists=False)
        arn = t["tableARN"]
        obs = Observed(exists=True, id=arn, outputs=self._outputs(t))
        _judge(self.ctx, obs, arn)
        rec = self.ctx.state.get(self.kind, self.name)
        if rec is not None and rec.ownership == "owned":
            obs.drift += self._maintenance_drift()
        return obs

    def _outputs(self, t: dict[str, Any]) -> dict[str, Any]:
        return {"arn": t["tableARN"], "bucket_arn": bucket_arn(self.ctx), "namespace": self.ctx.names.namespace,
                "table": self.ctx.names.table, "warehouse_location": t.get("warehouseLocation")}

    def _maintenance_drift(self) -> list[Drift]:
        n = self.ctx.names
        have = _s3t(self.ctx).get_table_maintenance_configuration(
            tableBucketARN=bucket_arn(self.ctx), namespace=n.namespace, name=n.table).get("configuration", {})
        return maintenance_drift(desired_table_maintenance(self.ctx), have)

    def _apply(self, drift: list[Drift]) -> None:
        n = self.ctx.names
        fields = {d.field for d in drift}
        for typ, value in desired_table_maintenance(self.ctx).items():
            if typ in fields:
                _s3t(self.ctx).put_table_maintenance_configuration(
                    tableBucketARN=bucket_arn(self.ctx), namespace=n.namespace, name=n.table, type=typ, value=value)

    def create(self) -> dict[str, Any]:
        n = self.ctx.names
        _s3t(self.ctx).create_table(
            tableBucketARN=bucket_arn(self.ctx), namespace=n.namespace, name=n.table, format="ICEBERG",
            metadata=schema.metadata_payload(self.ctx.cfg), tags=self.ctx.tags(),
        )
        found: dict[str, Any] = {}

        def visible() -> tuple[bool, str]:
            t = self._get()
            if t is None:
                return False, "not visible yet"
            found.update(t)
            return bool(t.get("metadataLocation")), "visible" if t.get("metadataLocation") else "waiting for metadata"

        wait_until(visible, f"table {n.namespace}.{n.table}", timeout=self.ctx.timeout, interval=self.ctx.poll,
                   progress=self.ctx.progress)
        self._apply(self._maintenance_drift())
        return {"id": found["tableARN"], **self._outputs(found)}

    def update(self, observed: Observed) -> dict[str, Any]:
        self._apply(observed.drift)
        return {}

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        _s3t(ctx).tag_resource(resourceArn=record.id or record.outputs["arn"], tags=tags)

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        arn = record.id or record.outputs.get("arn")
        if not arn:
            bucket, ns, table = record.name.split("/", 2)
            barn = record.outputs.get("bucket_arn") or ctx.aws.arn("s3tables", f"bucket/{bucket}")
            try:
                arn = _s3t(ctx).get_table(tableBucketARN=barn, namespace=ns, name=table)["tableARN"]
            except ClientError as e:
                if is_not_found(e):
                    return None
                raise
        return _tags_for_delete(ctx, arn)

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        s3t = ctx.aws.client("s3tables")
        bucket, ns, table = record.name.split("/", 2)
        arn = record.outputs.get("bucket_arn") or ctx.aws.arn("s3tables", f"bucket/{bucket}")
        try:
            s3t.delete_table(tableBucketARN=arn, namespace=ns, name=table)
        except ClientError as e:
            if is_not_found(e):
                return
            raise

        ctx.wait_for(lambda: s3t.get_table(tableBucketARN=arn, namespace=ns, name=table), f"table {ns}.{table}", gone=True)


def resources(ctx: Ctx) -> list[ResourceSpec]:
    scopes = ctx.cfg.scopes()
    for c in scopes:
        schema.metadata_payload(c)  # columns and partition spec validated before any call
    # one bucket and namespace for the stack (config/tables.py), one table per entry
    return [TableBucket(ctx), Namespace(ctx), *(Table(ctx.scoped(c)) for c in scopes)]
