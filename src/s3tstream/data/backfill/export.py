"""The export strategy's steps: point-in-time recovery, ExportTableToPointInTime, a temporary Glue
table over the export's files, the Athena load, and their clean-up (each step's intent recorded
in the checkpoint first, so a killed run resumes or cleans up)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import error_code, is_not_found, translate, wait_until
from s3tstream.data.backfill.export_sql import PERMISSION_WORDS, load_permission_hint, load_sql, temp_names
from s3tstream.data.backfill.jobs import Checkpoints
from s3tstream.data.progress import Progress
from s3tstream.errors import AwsError, Interrupted, UsageError
from s3tstream.lake.query import quote_ident as _qi

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

EXPORT_WAIT_SECONDS = 6 * 3600


def export_location(cfg: "Config", aws: "Aws", progress: Progress) -> tuple[str, str]:
    p = cfg.backfill.export_prefix
    if p.startswith("s3://"):
        bucket, _, prefix = p[5:].partition("/")
        return bucket, prefix
    from s3tstream.lake.query import ensure_results_bucket

    bucket = cfg.names.results_bucket(aws.identity().account)
    ensure_results_bucket(cfg, aws, bucket, progress)
    return bucket, p


def pitr_enabled(cfg: "Config", aws: "Aws") -> bool:
    table = cfg.names.source_table
    try:
        d = aws.client("dynamodb").describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"reading the point-in-time recovery status of {table}") from None
    return d.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED"


def ensure_pitr(cfg: "Config", aws: "Aws", enable: bool, progress: Progress,
                before_enable: Callable[[], None] = lambda: None, otherwise: str = "use --strategy scan") -> bool:
    """True when this call turned point-in-time recovery on; exit 2 when it is off and not
    allowed. ``before_enable`` runs just before the call (to record the intent)."""
    if pitr_enabled(cfg, aws):
        return False
    table = cfg.names.source_table
    if not enable:
        raise UsageError(
            f"a DynamoDB export needs point-in-time recovery on table {table}, and it is off",
            "run again with --enable-pitr (PITR is billed per GB-month; set source.point_in_time_recovery = true so "
            f"`s3tstream up` keeps it on), or {otherwise}",
        )
    before_enable()
    progress(f"enabling point-in-time recovery on {table}")
    ddb = aws.client("dynamodb")
    try:
        ddb.update_continuous_backups(TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"enabling point-in-time recovery on {table}") from None
    wait_until(lambda: (pitr_enabled(cfg, aws), "enabling"), f"point-in-time recovery of {table}",
               timeout=cfg.stack.wait_timeout, interval=cfg.stack.poll_interval, progress=progress)
    return True


def _export_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


class ExportBackfill:
    def __init__(self, cfg: "Config", aws: "Aws", store: Checkpoints, doc: dict[str, Any], *, enable_pitr: bool,
                 progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.cfg, self.aws, self.store, self.doc = cfg, aws, store, doc
        self.enable_pitr = enable_pitr
        self.progress = progress
        self.sleep = sleep
        self.ex: dict[str, Any] = doc.setdefault("export", {})

    def _save(self, **kw: Any) -> None:
        self.ex.update(kw)
        self.store.save(self.doc)

    # -- phase 1: export
    def start_export(self) -> None:
        cfg, aws = self.cfg, self.aws
        if self.ex.get("arn"):
            return
        # the intent first: a run killed right after enabling PITR still knows, on resume, that it was this one
        enabled = ensure_pitr(cfg, aws, self.enable_pitr, self.progress, lambda: self._save(pitr_enabling=True),
                              otherwise=self.store.OTHERWISE)
        self.ex["pitr_enabled_by_backfill"] = enabled or bool(self.ex.get("pitr_enabling"))
        bucket, prefix = export_location(cfg, aws, self.progress)
        s3_prefix = f"{prefix}{self.doc['run_id']}"
        self._save(bucket=bucket, prefix=s3_prefix, client_token=self.ex.get("client_token") or uuid.uuid4().hex)
        table_arn = aws.arn("dynamodb", f"table/{cfg.names.source_table}")
        try:
            d = aws.client("dynamodb").export_table_to_point_in_time(
                TableArn=table_arn, S3Bucket=bucket, S3Prefix=s3_prefix, ExportFormat="DYNAMODB_JSON",
                ExportType="FULL_EXPORT", ClientToken=self.ex["client_token"])["ExportDescription"]
        except ClientError as e:
            if error_code(e) == "PointInTimeRecoveryUnavailableException":
                raise UsageError(f"DynamoDB says point-in-time recovery is unavailable on {cfg.names.source_table}: "
                                 f"{e.response.get('Error', {}).get('Message', '')}",
                                 f"run again with --enable-pitr, or {self.store.OTHERWISE}") from None
            raise translate(e, f"exporting {cfg.names.source_table} to s3://{bucket}/{s3_prefix}") from None
        except BotoCoreError as e:
            raise translate(e, "starting the export") from None
        self._save(arn=d["ExportArn"], id=_export_id(d["ExportArn"]))
        self.progress(f"export {self.ex['id']} started to s3://{bucket}/{s3_prefix}")

    def wait_export(self) -> dict[str, Any]:
        ddb = self.aws.client("dynamodb")
        last: dict[str, Any] = {}

        def check() -> tuple[bool, str]:
            try:
                d = ddb.describe_export(ExportArn=self.ex["arn"])["ExportDescription"]
            except (ClientError, BotoCoreError) as e:
                raise translate(e, f"waiting for export {self.ex['id']}") from None
            last.update(d)
            st = d.get("ExportStatus", "IN_PROGRESS")
            if st == "FAILED":
                self._save(status="FAILED")
                raise AwsError(f"export {self.ex['id']} failed: {d.get('FailureCode')}: {d.get('FailureMessage')}",
                               f"fix the cause (bucket permissions, KMS), then {self.store.AFTER_FAILED_EXPORT}")
            return st == "COMPLETED", st

        # exports of large tables take hours; a timeout (or Ctrl-C) leaves the ARN in the checkpoint
        wait_until(check, f"export {self.ex['id']}", timeout=max(self.cfg.stack.wait_timeout, EXPORT_WAIT_SECONDS),
                   interval=self.cfg.stack.poll_interval, max_interval=max(self.cfg.stack.poll_interval, 30.0),
                   progress=self.progress)
        when = last.get("ExportTime") or last.get("StartTime")
        export_time = when.timestamp() if isinstance(when, datetime) else float(when or self.doc["started_at"])
        manifest = last.get("ExportManifest") or f"{self.ex['prefix']}/AWSDynamoDB/{self.ex['id']}/manifest-summary.json"
        data = manifest.rsplit("/", 1)[0] + "/data/"
        self._save(status="COMPLETED", export_time=export_time, item_count=int(last.get("ItemCount") or 0),
                   billed_bytes=int(last.get("BilledSizeBytes") or 0), data_prefix=data)
        return last

    # -- phase 2: the temporary Glue table over the export
    def create_temp_table(self) -> str:
        glue = self.aws.client("glue")
        db, tbl = temp_names(self.cfg, self.ex["id"])
        self._save(glue_database=db, glue_table=tbl)  # the intent first: a killed run's leftovers stay named
        tags = {**self.cfg.stack.tags, **self.cfg.names.stack_tag()}
        try:
            try:
                glue.create_database(DatabaseInput={
                    "Name": db, "Description": f"s3tstream {self.cfg.stack.name}: temporary, for backfill exports",
                    "Parameters": {"s3tstream:stack": self.cfg.stack.name, "s3tstream:purpose": "backfill"}}, Tags=tags)
            except ClientError as e:
                if error_code(e) != "AlreadyExistsException":
                    raise
                params = glue.get_database(Name=db)["Database"].get("Parameters", {})
                if params.get("s3tstream:stack") != self.cfg.stack.name:
                    raise UsageError(f"Glue database {db} exists and is not this stack's",
                                     "drop it or rename the stack") from None
            location = f"s3://{self.ex['bucket']}/{self.ex['data_prefix']}"
            table_input = {
                "Name": tbl, "TableType": "EXTERNAL_TABLE",
                "Parameters": {"EXTERNAL": "TRUE", "classification": "json", "compressionType": "gzip",
                               "s3tstream:stack": self.cfg.stack.name},
                "StorageDescriptor": {
                    "Columns": [{"Name": "line", "Type": "string"}],
                    "Location": location,
                    "InputFormat": "org.apache.hadoop.mapred.TextInputFormat",
                    "OutputFormat": "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
                                  "Parameters": {"serialization.format": "1"}},
                },
            }
            try:
                glue.create_table(DatabaseName=db, TableInput=table_input)
            except ClientError as e:
                if error_code(e) != "AlreadyExistsException":
                    raise
        except ClientError as e:
            raise translate(e, f"creating the temporary Glue table {db}.{tbl}") from None
        return f"\"awsdatacatalog\".{_qi(db)}.{_qi(tbl)}"

    # -- phase 3: the Athena load
    def _earlier_load(self, eng: Any) -> dict[str, Any] | None:
        """The earlier load's final QueryExecution when it SUCCEEDED after all. A stop (Ctrl-C) is
        asynchronous: the stopped DML may still commit, and loading again would add the rows twice."""
        qid = self.ex.get("failed_query_id")
        if not qid:
            return None
        try:
            qe = eng.client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
        except ClientError as e:
            if error_code(e) == "InvalidRequestException":  # unknown (expired) query: it did not load
                return None
            raise translate(e, f"reading the earlier load {qid}") from None
        state = qe.get("Status", {}).get("State")
        if state in ("QUEUED", "RUNNING"):
            self.progress(f"the earlier load {qid} is still {state} (stopped, not yet ended): waiting for its end")
            try:
                qe = eng.wait(qid)
            except AwsError:
                return None  # it ended FAILED or CANCELLED: it committed nothing
            state = "SUCCEEDED"
        return qe if state == "SUCCEEDED" else None

    def load(self, source: str) -> dict[str, Any]:
        from s3tstream.lake.query import open_engine

        cfg = self.cfg
        eng = open_engine(cfg, self.aws, "athena", progress=self.progress)
        earlier = self._earlier_load(eng)
        if earlier is not None:
            self._save(loaded=True, query_id=self.ex["failed_query_id"])
            self.progress(f"the earlier load {self.ex['failed_query_id']} committed after all: not loading again")
            return {"query_id": self.ex["query_id"], "statement": "INSERT" if cfg.table.mode == "changelog" else "MERGE",
                    "data_scanned_bytes": earlier.get("Statistics", {}).get("DataScannedInBytes")}
        iso = datetime.fromtimestamp(self.ex["export_time"], UTC).isoformat().replace("+00:00", "Z")
        sql = load_sql(cfg, source, self.ex["id"], iso)
        if not self.ex.get("query_token"):
            self._save(query_token=uuid.uuid4().hex + uuid.uuid4().hex[:8])
        kw: dict[str, Any] = {"QueryString": sql, "ClientRequestToken": self.ex["query_token"],
                              "QueryExecutionContext": {"Catalog": eng.catalog, "Database": eng.database},
                              "WorkGroup": eng.workgroup}
        if eng.output_location:
            kw["ResultConfiguration"] = {"OutputLocation": eng.output_location}
        try:
            # the same ClientRequestToken after a crash returns the same query, never a second load
            qid = eng.client.start_query_execution(**kw)["QueryExecutionId"]
        except ClientError as e:
            raise translate(e, "starting the Athena load of the export") from None
        self._save(query_id=qid)
        self.progress(f"loading the export into {cfg.names.namespace}.{cfg.names.table} with Athena ({qid})")
        try:
            qe = eng.wait(qid)
        except (AwsError, Interrupted) as e:
            # a failed or cancelled (Ctrl-C stops it) Iceberg DML commits nothing: the next run starts a new query
            # (the same token would answer this failed one again)
            self.ex.pop("query_token", None)
            self._save(failed_query_id=qid)
            if isinstance(e, AwsError) and any(w in e.message for w in PERMISSION_WORDS):
                raise AwsError(e.message, load_permission_hint(cfg), code=e.code) from None
            raise
        self._save(loaded=True)
        return {"query_id": qid, "statement": "INSERT" if cfg.table.mode == "changelog" else "MERGE",
                "data_scanned_bytes": qe.get("Statistics", {}).get("DataScannedInBytes")}

    # -- cleanup
    def drop_temp_table(self) -> None:
        db, tbl = self.ex.get("glue_database"), self.ex.get("glue_table")
        if not db:
            return
        glue = self.aws.client("glue")
        for call, kw in ((glue.delete_table, {"DatabaseName": db, "Name": tbl}), (glue.delete_database, {"Name": db})):
            try:
                call(**kw)
            except ClientError as e:
                if not is_not_found(e):
                    raise translate(e, f"removing the temporary Glue objects {db}.{tbl}") from None
        self.ex.pop("glue_database", None)
        self.ex.pop("glue_table", None)
        self.store.save(self.doc)

    def remove_export_files(self) -> int:
        bucket, prefix = self.ex.get("bucket"), self.ex.get("prefix")
        if not bucket or not prefix:
            return 0
        s3 = self.aws.client("s3")
        n = 0
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
                keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                    n += len(keys)
        except ClientError as e:
            if not is_not_found(e):
                raise translate(e, f"removing the export files under s3://{bucket}/{prefix}/") from None
        return n

    def run(self) -> dict[str, Any]:
        self.start_export()
        if self.ex.get("status") != "COMPLETED":
            self.wait_export()
        self.doc["phase"] = "load"
        info: dict[str, Any] = {"export_arn": self.ex["arn"], "s3": f"s3://{self.ex['bucket']}/{self.ex['prefix']}/",
                                "items": self.ex.get("item_count", 0),
                                "export_time": datetime.fromtimestamp(self.ex["export_time"], UTC).isoformat(timespec="seconds"),
                                "pitr_enabled_by_backfill": bool(self.ex.get("pitr_enabled_by_backfill"))}
        if not self.ex.get("loaded"):
            try:
                source = self.create_temp_table()
                info["load"] = self.load(source)
            finally:
                try:
                    self.drop_temp_table()
                except Exception as e:  # noqa: BLE001 - never hide the load's own error
                    self.progress(f"could not remove the temporary Glue table: {e}")
        self.doc["phase"] = "catch_up"
        self.store.save(self.doc)
        return info

