"""Giving a job up (`backfill --abort`, `--restart`, an unusable verify checkpoint) and what `down`
removes of an interrupted export backfill or `verify --export`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from s3tstream.aws.client import error_code, is_not_found, translate
from s3tstream.data.backfill.export import ExportBackfill
from s3tstream.data.backfill.export_sql import temp_database
from s3tstream.data.backfill.jobs import Checkpoints, VerifyCheckpoint
from s3tstream.data.progress import Progress
from s3tstream.errors import StateError

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore


def discard(store: Checkpoints, aws: "Aws", progress: Progress = lambda m: None) -> dict[str, Any]:
    """Give up the job whose checkpoint ``store`` holds: stop its Athena load if one may be
    running, remove its temporary Glue table and export files, forget the checkpoint. Nothing
    already sent to the stream (or loaded) is taken back. A checkpoint unusable for a rerun
    (another table or mode) still names what to remove."""
    cfg = store.cfg
    try:
        doc = store.load()
    except StateError:
        doc = store.state.job(store.JOB)
    doc = doc or {}
    out: dict[str, Any] = {"strategy": doc.get("strategy"), "phase": doc.get("phase"), "removed_objects": 0, "notes": []}
    ex = doc.get("export") or {}
    if doc.get("strategy") == "export":
        if ex.get("query_id") and not ex.get("loaded"):
            try:
                aws.client("athena").stop_query_execution(QueryExecutionId=ex["query_id"])
                out["stopped_query"] = ex["query_id"]
            except ClientError as e:
                if error_code(e) != "InvalidRequestException":  # already finished
                    raise translate(e, f"stopping the Athena load {ex['query_id']}") from None
        eb = ExportBackfill(cfg, aws, store, doc, enable_pitr=False, progress=progress)
        eb.drop_temp_table()
        out["removed_objects"] = eb.remove_export_files()
        if (ex.get("arn") or ex.get("client_token")) and ex.get("status") not in ("COMPLETED", "FAILED"):
            # DynamoDB has no call to cancel an export (and a run killed right after starting one never saw its ARN)
            out["notes"].append(f"an export ({ex.get('id') or 'started, id not recorded'}) may still be running and "
                                f"write its files under s3://{ex.get('bucket')}/{ex.get('prefix')}/; delete them once it ends")
        if (ex.get("pitr_enabled_by_backfill") or ex.get("pitr_enabling")) and not cfg.source.point_in_time_recovery:
            out["notes"].append("point-in-time recovery stays on; `s3tstream up` turns it off again")
    store.delete()
    return out


def abort(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None,
          state: "StateStore | None" = None) -> dict[str, Any]:
    """`backfill --abort`: give up the backfill in progress (see :func:`discard`)."""
    store = Checkpoints(cfg, state)
    if not store.exists():
        return {"aborted": False, "strategy": None, "phase": None, "notes": []}
    return {"aborted": True, **discard(store, aws, progress)}


def _job_stores(cfg: "Config", state: "StateStore | None") -> list[Checkpoints]:
    return [store for c in cfg.scopes() for store in (Checkpoints(c, state), VerifyCheckpoint(c, state))]


def _own_temp_database(cfg: "Config", aws: "Aws", progress: Progress) -> bool:
    """Whether the temporary Glue database exists and its parameters name this stack."""
    db = temp_database(cfg)
    try:
        params = aws.client("glue").get_database(Name=db)["Database"].get("Parameters") or {}
    except ClientError as e:
        if not is_not_found(e):  # e.g. no Glue rights: `down` of everything else goes on
            progress(f"could not check for a leftover temporary Glue database {db}: {error_code(e)}")
        return False
    return params.get("s3tstream:stack") == cfg.stack.name


def leftovers(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None,
              state: "StateStore | None" = None) -> list[tuple[str, str]]:
    """(kind, name) of what an interrupted export backfill or `verify --export` left, for `down`
    to list before it asks (read calls only): its checkpoint, export files, and the temporary
    Glue database when its parameters name this stack."""
    out: list[tuple[str, str]] = []
    for store in _job_stores(cfg, state):
        job = store.state.job(store.JOB)
        if job is None or job.get("phase") == "done":
            continue
        out.append(("checkpoint", f"jobs.{store.JOB} in {store.path}"))
        ex = job.get("export") or {}
        if ex.get("bucket") and ex.get("prefix"):
            out.append(("s3-export-files", f"s3://{ex['bucket']}/{ex['prefix']}/"))
    if _own_temp_database(cfg, aws, progress):
        out.append(("glue-database", temp_database(cfg)))
    return out


def remove_leftovers(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None,
                     state: "StateStore | None" = None) -> list[tuple[str, str]]:
    """Remove what :func:`leftovers` lists; (kind, name) of what was removed."""
    removed: list[tuple[str, str]] = []
    for store in _job_stores(cfg, state):
        job = store.state.job(store.JOB)
        if job is None:
            continue
        if job.get("phase") == "done":
            store.delete()  # the record of a completed backfill: of no use once the stack is gone
            continue
        out = discard(store, aws, progress)
        for note in out["notes"]:
            progress(note)
        if out["removed_objects"]:
            ex = job.get("export") or {}
            removed.append(("s3-export-files", f"s3://{ex.get('bucket')}/{ex.get('prefix')}/ ({out['removed_objects']} object(s))"))
        removed.append(("checkpoint", f"jobs.{store.JOB} in {store.path}"))
    if _own_temp_database(cfg, aws, progress):
        db = temp_database(cfg)
        try:
            aws.client("glue").delete_database(Name=db)  # Glue deletes its tables with it
        except ClientError as e:
            if not is_not_found(e):
                raise translate(e, f"removing the temporary Glue database {db}") from None
        removed.append(("glue-database", db))
    return removed

