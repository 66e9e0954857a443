"""Athena queries that run (moto 5.2.5 never runs a query; its results are empty).

StartQueryExecution runs the SQL with the sandbox's engine (``s3tstream.sandbox.athena.engine``:
DuckDB over the Iceberg tables of ``s3tablescatalog/<bucket>`` catalogs, read with PyIceberg
through ``s3tstream.lake.catalog``). Served like Athena
(https://docs.aws.amazon.com/athena/latest/APIReference/):

- StartQueryExecution validates the request: QueryString 1..262144 chars; the workgroup
  (default ``primary``) must exist and be ENABLED (InvalidRequestException "WorkGroup <x> is not
  found."); the output location is the request's ResultConfiguration.OutputLocation or the
  workgroup's (the workgroup's wins when EnforceWorkGroupConfiguration); with neither:
  InvalidRequestException "No output location provided. An output location is required either
  through the Workgroup result configuration setting or as an API input." (the text Athena
  returns, quoted in aws-sdk-js-v3#3589 and other public reports). ClientRequestToken makes the
  call idempotent. The query then goes QUEUED -> RUNNING -> SUCCEEDED or FAILED
  (StateChangeReason and AthenaError like ``TABLE_NOT_FOUND: line 1:15: Table '...' does not
  exist``); StopQueryExecution makes a query not yet finished CANCELLED.
- Latency ``instant``: GetQueryExecution waits for the query and shows its final state (pollers
  never wait); ``realistic``: states as they are (QUEUED ~0.2 s, then RUNNING while it runs).
- GetQueryResults pages like Athena: MaxResults 1..1000 (default 1000), NextToken; the first row
  of a SELECT holds the column names; every value is a ``VarCharValue`` string (NULL: no
  VarCharValue); ResultSetMetadata.ColumnInfo with Athena type names. Asking for the results of
  a query that has not succeeded is an InvalidRequestException.
- The results are also written as CSV to ``<OutputLocation>/<QueryExecutionId>.csv`` in the
  sandbox S3 (a missing bucket fails the query: "Unable to verify/create output bucket <b>").
- Writes: ``INSERT INTO`` and ``MERGE INTO ... WHEN NOT MATCHED THEN INSERT`` on an
  s3tablescatalog table append in one Iceberg commit (``athena_dml``); Glue Data Catalog text
  tables (``awsdatacatalog``, ``glue_tables``) can be read, e.g. a DynamoDB export's files.
  SubstatementType is SELECT, INSERT or MERGE.
- GetQueryExecution, BatchGetQueryExecution, ListQueryExecutions (this module's queries),
  StopQueryExecution, GetWorkGroup (InvalidRequestException for an unknown workgroup; moto
  answered ``{"WorkGroup": null}``). ListWorkGroups/CreateWorkGroup stay moto's.

Control route ``POST /_sandbox/athena/hold {"hold": true|false}``: keep new queries QUEUED (to
test CANCELLED deterministically); releasing runs the held ones.

UNCONFIRMED: AthenaError.ErrorCategory values per code, the exact texts of CATALOG_NOT_FOUND /
SCHEMA_NOT_FOUND, ColumnInfo Precision values, the StateChangeReason of a cancelled query.
A caller that is an IAM role or user of the sandbox must be allowed in the account's
integration mode (``sandbox.access``): Lake Formation SELECT and DESCRIBE (INSERT too for DML),
or in IAM mode its IAM policies' glue:GetTable and s3tables read (or write) actions on the table;
otherwise the query FAILS with PERMISSION_DENIED. The default credentials are not checked.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import threading
import time
import uuid
from typing import Any

from s3tstream.lake import merge_on_read
from s3tstream.sandbox.athena import dml, engine
from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, SandboxRequest, control_route, handles, on_reset

check_moto_version()

log = logging.getLogger("s3tstream.sandbox.athena")

MAX_RESULTS = 1000
MAX_QUERY = 262144
QUEUE_SECONDS_REALISTIC = 0.2
NO_OUTPUT = ("No output location provided. An output location is required either through the Workgroup "
             "result configuration setting or as an API input.")
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclasses.dataclass
class Execution:
    id: str
    account_id: str
    region: str
    query: str
    catalog: str | None
    database: str | None
    workgroup: str
    output: str  # s3://bucket/prefix/<id>.csv
    endpoint: str
    latency: str
    state: str = "QUEUED"
    reason: str | None = None
    category: int | None = None
    submitted: float = dataclasses.field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    result: engine.Result | None = None
    thread: threading.Thread | None = None
    held: bool = False
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    principal: str = ""  # the caller, as Lake Formation / IAM see it (sandbox.access checks it)

    def to_json(self) -> dict[str, Any]:
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.completed is not None:
            status["CompletionDateTime"] = self.completed
        if self.reason:
            status["StateChangeReason"] = self.reason
        if self.state == "FAILED" and self.reason:
            status["AthenaError"] = {"ErrorCategory": self.category or 2, "Retryable": False, "ErrorMessage": self.reason}
        end = self.completed or time.time()
        run_start = self.started or end
        stats = {
            "EngineExecutionTimeInMillis": int((end - run_start) * 1000),
            "DataScannedInBytes": self.result.data_scanned if self.result else 0,
            "TotalExecutionTimeInMillis": int((end - self.submitted) * 1000),
            "QueryQueueTimeInMillis": int((run_start - self.submitted) * 1000),
            "ServicePreProcessingTimeInMillis": 0,
            "QueryPlanningTimeInMillis": 0,
            "ServiceProcessingTimeInMillis": 0,
            "ResultReuseInformation": {"ReusedPreviousResult": False},
        }
        context: dict[str, Any] = {}
        if self.catalog:
            context["Catalog"] = self.catalog
        if self.database:
            context["Database"] = self.database
        return {
            "QueryExecutionId": self.id,
            "Query": self.query,
            "StatementType": "DML",
            "SubstatementType": engine.substatement(self.query),
            "ResultConfiguration": {"OutputLocation": self.output},
            "ResultReuseConfiguration": {"ResultReuseByAgeConfiguration": {"Enabled": False}},
            "QueryExecutionContext": context,
            "Status": status,
            "Statistics": stats,
            "WorkGroup": self.workgroup,
            "EngineVersion": {"SelectedEngineVersion": "AUTO", "EffectiveEngineVersion": "Athena engine version 3"},
        }


_lock = threading.RLock()
_executions: dict[tuple[str, str], dict[str, Execution]] = {}
_tokens: dict[tuple[str, str, str], str] = {}
_hold = False
_workgroup_created: dict[tuple[str, str, str], float] = {}


@on_reset
def _reset() -> None:
    global _hold
    with _lock:
        _executions.clear()
        _tokens.clear()
        _workgroup_created.clear()
        _hold = False


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidRequestException", message)


def _store(req: SandboxRequest) -> dict[str, Execution]:
    return _executions.setdefault((req.account_id, req.region), {})


def _workgroup(req: SandboxRequest, name: str) -> Any:
    from moto.athena.models import athena_backends

    wg = athena_backends[req.account_id][req.region].work_groups.get(name)
    if wg is None:
        raise _invalid(f"WorkGroup {name} is not found.")
    return wg


# ------------------------------------------------------------------ running a query
def _iceberg_table(ex: Execution, catalog: str, schema: str, table: str, write: bool = False) -> Any:
    """The PyIceberg table behind ``s3tablescatalog/<bucket>.<namespace>.<table>``, when the caller
    may read (or write) it in the account's integration mode."""
    from moto.s3tables.models import s3tables_backends
    from pyiceberg.exceptions import NoSuchTableError

    from s3tstream.lake.catalog import TableWithoutMetadata
    from s3tstream.sandbox.dataplane.iceberg_writer import catalogs_for, find_bucket_arn

    bucket = catalog.split("/", 1)[1]
    arn = find_bucket_arn(ex.account_id, ex.region, bucket)
    if arn is None:
        raise engine.not_found_catalog(catalog)
    tb = s3tables_backends[ex.account_id][ex.region].table_buckets.get(arn)
    if tb is None or schema not in tb.namespaces:
        raise engine.not_found_schema(schema)
    if table not in tb.namespaces[schema].tables:
        raise engine.not_found_table(catalog, schema, table)
    from s3tstream.sandbox.access import reader_denied

    denied = reader_denied(ex.account_id, ex.region, ex.principal, bucket, schema, table, write=write)
    if denied:
        raise engine.QueryError("PERMISSION_DENIED", denied)  # UNCONFIRMED: Athena's code for it
    try:
        return catalogs_for(ex.endpoint).catalog(ex.account_id, ex.region, arn).load_table((schema, table))
    except TableWithoutMetadata:
        raise engine.QueryError(
            "ICEBERG_INVALID_METADATA", f"Table '{catalog}.{schema}.{table}' has no Iceberg metadata") from None
    except NoSuchTableError:
        raise engine.not_found_table(catalog, schema, table) from None


def _loader(ex: Execution) -> engine.Loader:
    def load(catalog: str, schema: str, table: str) -> tuple[Any, int]:
        if catalog == engine.DEFAULT_CATALOG:
            from s3tstream.sandbox.athena.glue_tables import read_glue_table

            return read_glue_table(ex.account_id, ex.region, schema, table)
        if not catalog.startswith("s3tablescatalog/"):
            raise engine.not_found_catalog(catalog)
        # merge-on-read as Athena does: equality/position deletes applied per the Iceberg spec
        return merge_on_read.scan(_iceberg_table(ex, catalog, schema, table))

    return load


COMMIT_ATTEMPTS = 4


def _writer(ex: Execution) -> engine.Writer:
    """Appends a DML statement's rows to the target Iceberg table in one commit. The rows are
    computed once, against the table as the query found it (Athena reads one snapshot); a commit
    that loses a race (Firehose committed meanwhile) appends the same rows to the new snapshot,
    as Iceberg's own retry of an append does. A query stopped meanwhile commits nothing.
    UNCONFIRMED: how many times Athena retries a commit before ICEBERG_COMMIT_ERROR."""
    def write(ref: engine.TableRef, rows_for: Any) -> int:
        from pyiceberg.exceptions import CommitFailedException

        from s3tstream.sandbox.athena.dml import conform

        tbl = _iceberg_table(ex, ref.catalog, ref.schema, ref.table, write=True)
        rows = conform(rows_for(merge_on_read.scan(tbl)[0]), tbl.schema(), ref.qualified)
        if not rows.num_rows:
            return 0
        for _ in range(COMMIT_ATTEMPTS):
            with _lock:
                if ex.state != "RUNNING":  # StopQueryExecution came first
                    raise engine.QueryError("", "Query was cancelled before it committed")
            try:
                with tbl.transaction() as tx:
                    tx.append(rows)
                return int(rows.num_rows)
            except CommitFailedException:
                tbl = _iceberg_table(ex, ref.catalog, ref.schema, ref.table, write=True)
        raise engine.QueryError("ICEBERG_COMMIT_ERROR", f"Failed to commit to table {ref.qualified}: "
                                "the table kept changing during the query", category=1)

    return write


def _write_results(ex: Execution, result: engine.Result) -> None:
    from moto.s3.models import s3_backends

    bucket, _, key = ex.output.removeprefix("s3://").partition("/")
    backend = s3_backends[ex.account_id]["aws"]
    try:
        backend.get_bucket(bucket)
    except Exception:  # noqa: BLE001 - moto's MissingBucket
        raise engine.QueryError("", f"Unable to verify/create output bucket {bucket}") from None
    backend.put_object(bucket, key, engine.csv_text(result.columns, result.rows).encode("utf-8"))


def _run(ex: Execution) -> None:
    try:
        if ex.latency == "realistic":
            time.sleep(QUEUE_SECONDS_REALISTIC)
        with _lock:
            if ex.state != "QUEUED":
                return
            ex.state, ex.started = "RUNNING", time.time()
        try:
            if engine.is_dml(ex.query):
                result = dml.run_dml(ex.query, ex.catalog, ex.database, _loader(ex), _writer(ex))
            else:
                result = engine.run(ex.query, ex.catalog, ex.database, _loader(ex))
            _write_results(ex, result)
            state, reason, category = "SUCCEEDED", None, None
        except engine.QueryError as exc:
            result, state = None, "FAILED"
            reason = exc.reason if exc.code else exc.reason.removeprefix(": ")
            category = exc.category
        except Exception as exc:  # noqa: BLE001 - the engine broke: Athena's internal error
            log.exception("sandbox athena query %s failed", ex.id)
            result, state, reason, category = None, "FAILED", f"GENERIC_INTERNAL_ERROR: {exc}", 1
        with _lock:
            if ex.state == "RUNNING":
                ex.state, ex.reason, ex.category, ex.result = state, reason, category, result
                ex.completed = time.time()
    finally:
        ex.done.set()


def _launch(ex: Execution) -> None:
    ex.held = False
    ex.thread = threading.Thread(target=_run, args=(ex,), name=f"athena-{ex.id[:8]}", daemon=True)
    ex.thread.start()


def _caller(req: SandboxRequest) -> str:
    from s3tstream.sandbox.services.lakeformation import caller_principal

    try:
        return caller_principal(req)
    except Exception:  # noqa: BLE001 - an unknown access key: not an IAM entity, not checked
        return ""


# ------------------------------------------------------------------ handlers
@handles("athena", "StartQueryExecution")
def start_query_execution(req: SandboxRequest) -> dict[str, Any]:
    p = req.params
    query = p.get("QueryString")
    if not isinstance(query, str) or not query:
        raise _invalid("1 validation error detected: Value null at 'queryString' failed to satisfy constraint: "
                       "Member must not be null")
    if len(query) > MAX_QUERY:
        raise _invalid(f"1 validation error detected: Value at 'queryString' failed to satisfy constraint: "
                       f"Member must have length less than or equal to {MAX_QUERY}")
    wg_name = p.get("WorkGroup") or "primary"
    wg = _workgroup(req, wg_name)
    if getattr(wg, "state", "ENABLED") != "ENABLED":
        raise _invalid(f"WorkGroup {wg_name} is disabled.")
    token = p.get("ClientRequestToken")
    with _lock:
        if token and (req.account_id, req.region, token) in _tokens:
            return {"QueryExecutionId": _tokens[(req.account_id, req.region, token)]}
    cfg = wg.configuration or {}
    wg_loc = (cfg.get("ResultConfiguration") or {}).get("OutputLocation")
    req_loc = (p.get("ResultConfiguration") or {}).get("OutputLocation")
    location = wg_loc if (wg_loc and cfg.get("EnforceWorkGroupConfiguration")) else (req_loc or wg_loc)
    if not location:
        raise _invalid(NO_OUTPUT)
    if not str(location).startswith("s3://") or len(str(location)) <= len("s3://"):
        raise _invalid(f"outputLocation is not a valid S3 path: {location}")
    ctx = p.get("QueryExecutionContext") or {}
    qid = str(uuid.uuid4())
    if req.server is None or not getattr(req.server, "running", False):
        raise AwsError("InternalServerException", "the sandbox's Athena needs a running SandboxServer", 500)
    ex = Execution(
        id=qid, account_id=req.account_id, region=req.region, query=query,
        catalog=ctx.get("Catalog"), database=ctx.get("Database"), workgroup=wg_name,
        output=f"{str(location).rstrip('/')}/{qid}.csv", endpoint=req.server.endpoint_url, latency=req.latency,
        principal=_caller(req),
    )
    with _lock:
        _store(req)[qid] = ex
        if token:
            _tokens[(req.account_id, req.region, token)] = qid
        if _hold:
            ex.held = True
            return {"QueryExecutionId": qid}
    _launch(ex)
    return {"QueryExecutionId": qid}


def _get(req: SandboxRequest, qid: Any) -> Execution:
    if not isinstance(qid, str) or not qid:
        raise _invalid("1 validation error detected: Value null at 'queryExecutionId' failed to satisfy constraint: "
                       "Member must not be null")
    with _lock:
        ex = _store(req).get(qid)
    if ex is None:
        raise _invalid(f"QueryExecution {qid} was not found")
    return ex


def _settle(ex: Execution) -> None:
    """Latency "instant": a query that is running is waited for, so the caller sees its end."""
    if ex.latency == "instant" and not ex.held and ex.state not in FINAL:
        ex.done.wait(300)


@handles("athena", "GetQueryExecution")
def get_query_execution(req: SandboxRequest) -> dict[str, Any]:
    ex = _get(req, req.params.get("QueryExecutionId"))
    _settle(ex)
    with _lock:
        return {"QueryExecution": ex.to_json()}


@handles("athena", "BatchGetQueryExecution")
def batch_get_query_execution(req: SandboxRequest) -> dict[str, Any]:
    ids = req.params.get("QueryExecutionIds")
    if not isinstance(ids, list) or not 1 <= len(ids) <= 50:
        raise _invalid("1 validation error detected: Value at 'queryExecutionIds' failed to satisfy constraint: "
                       "Member must have length between 1 and 50")
    found, missing = [], []
    for qid in ids:
        with _lock:
            ex = _store(req).get(qid)
        if ex is None:
            missing.append({"QueryExecutionId": qid, "ErrorCode": "INVALID_INPUT",
                            "ErrorMessage": f"QueryExecution {qid} was not found"})
            continue
        _settle(ex)
        with _lock:
            found.append(ex.to_json())
    return {"QueryExecutions": found, "UnprocessedQueryExecutionIds": missing}


@handles("athena", "ListQueryExecutions")
def list_query_executions(req: SandboxRequest) -> dict[str, Any]:
    wg = req.params.get("WorkGroup") or "primary"
    _workgroup(req, wg)
    size = int(req.params.get("MaxResults") or 50)
    if not 0 <= size <= 50:
        raise _invalid("1 validation error detected: Value at 'maxResults' failed to satisfy constraint: "
                       "Member must have value less than or equal to 50")
    with _lock:
        ids = [e.id for e in sorted(_store(req).values(), key=lambda e: e.submitted, reverse=True) if e.workgroup == wg]
    start = _decode_token(req.params.get("NextToken"), "list") if req.params.get("NextToken") else 0
    out: dict[str, Any] = {"QueryExecutionIds": ids[start:start + size]}
    if start + size < len(ids):
        out["NextToken"] = _encode_token("list", start + size)
    return out


@handles("athena", "StopQueryExecution")
def stop_query_execution(req: SandboxRequest) -> dict[str, Any]:
    ex = _get(req, req.params.get("QueryExecutionId"))
    with _lock:
        if ex.state not in FINAL:
            ex.state, ex.completed = "CANCELLED", time.time()
            ex.reason = "Query was cancelled by user"
            ex.held = False
            ex.done.set()
    return {}


def _encode_token(qid: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"q": qid, "o": offset}).encode()).decode()


def _decode_token(token: Any, qid: str) -> int:
    try:
        doc = json.loads(base64.urlsafe_b64decode(str(token).encode()))
        if doc.get("q") != qid or int(doc["o"]) < 0:
            raise ValueError
        return int(doc["o"])
    except (ValueError, KeyError, TypeError):
        raise _invalid("The NextToken provided is invalid.") from None


@handles("athena", "GetQueryResults")
def get_query_results(req: SandboxRequest) -> dict[str, Any]:
    ex = _get(req, req.params.get("QueryExecutionId"))
    raw_max = req.params.get("MaxResults")
    size = MAX_RESULTS if raw_max is None else int(raw_max)
    if not 1 <= size <= MAX_RESULTS:
        raise _invalid(f"1 validation error detected: Value '{size}' at 'maxResults' failed to satisfy constraint: "
                       f"Member must have value {'less' if size > MAX_RESULTS else 'greater'} than or equal to "
                       f"{MAX_RESULTS if size > MAX_RESULTS else 1}")
    _settle(ex)
    with _lock:
        state, result = ex.state, ex.result
    if state != "SUCCEEDED" or result is None:
        if state in FINAL:
            raise _invalid(f"Query did not finish successfully. Final query state: {state}"
                           + (f"\n{ex.reason}" if ex.reason else ""))
        raise _invalid(f"Query has not yet finished. Current state: {state}")
    # row 0 of the result set is the header; only this page's rows are rendered (a paged read of
    # a large result rendered every row once a page)
    start = _decode_token(req.params["NextToken"], ex.id) if req.params.get("NextToken") else 0
    page: list[dict[str, Any]] = []
    if start == 0:
        page.append({"Data": [{"VarCharValue": c.name} for c in result.columns]})
    first = max(start - 1, 0)
    for row in result.rows[first:first + size - len(page)]:
        page.append({"Data": [{} if v is None else {"VarCharValue": v} for v in row]})
    total = len(result.rows) + 1
    out: dict[str, Any] = {
        "UpdateCount": 0,
        "ResultSet": {
            "Rows": page,
            "ResultSetMetadata": {"ColumnInfo": [c.info() for c in result.columns]},
        },
    }
    if start + size < total:
        out["NextToken"] = _encode_token(ex.id, start + size)
    return out


@handles("athena", "GetWorkGroup")
def get_work_group(req: SandboxRequest) -> dict[str, Any]:
    name = req.params.get("WorkGroup")
    if not isinstance(name, str) or not name:
        raise _invalid("1 validation error detected: Value null at 'workGroup' failed to satisfy constraint: "
                       "Member must not be null")
    wg = _workgroup(req, name)
    with _lock:
        created = _workgroup_created.setdefault((req.account_id, req.region, name), time.time())
    return {"WorkGroup": {
        "Name": wg.name,
        "State": wg.state,
        "Configuration": json.loads(json.dumps(wg.configuration, default=str)),
        "Description": wg.description or "",
        "CreationTime": created,
    }}


@control_route("POST", "athena/hold")
def hold(server: Any, body: dict[str, Any]) -> dict[str, Any]:
    global _hold
    with _lock:
        _hold = bool(body.get("hold", True))
        released = [] if _hold else [e for store in _executions.values() for e in store.values() if e.held]
    for ex in released:
        if ex.state == "QUEUED":
            _launch(ex)
    return {"hold": _hold, "released": [e.id for e in released]}
