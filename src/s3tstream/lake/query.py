"""SQL over the lake table: Athena, or a local engine (PyIceberg scan + DuckDB), behind one interface.

``engine.run(sql) -> QueryResult`` with typed Python values:

======================================= =====================================================
Athena ColumnInfo.Type                   value
======================================= =====================================================
tinyint, smallint, integer, bigint       int
float, real, double                      float
decimal                                  decimal.Decimal (exact; JSON: an exact number token)
boolean                                  bool
date                                     ISO string "2024-05-01"
timestamp                                ISO string "2024-05-01T12:00:00.123456"
timestamp with time zone                 ISO string "2024-05-01T12:00:00.123456+00:00"
varbinary                                base64 string (Athena's "68 65 6c" hex text decoded)
array, map, row, json, varchar, others   the text Athena returns
======================================= =====================================================

The local engine returns the same kinds (lists, dicts for array/map/row).

Athena (https://docs.aws.amazon.com/athena/latest/APIReference/API_StartQueryExecution.html,
aws-notes "Athena on S3 Tables"): QueryExecutionContext {"Catalog": "s3tablescatalog/<bucket>",
"Database": <namespace>}; no waiter, so get_query_execution is polled with backoff until
SUCCEEDED / FAILED / CANCELLED; results are paged with get_query_results (MaxResults <= 1000,
NextToken) and the first row of a SELECT's first page holds the column names. Ctrl-C while the
query runs calls stop_query_execution.

Results location: athena.output_location when set; else the workgroup's own (when it has an
OutputLocation or managed query results); else the stack's results bucket
``s3://<names.results_bucket(account)>/results/``, created on first use, tagged with the stack
tag, public access blocked and results expiring after RESULTS_EXPIRY_DAYS.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import error_code, is_not_configured, is_not_found, translate
from s3tstream.errors import AwsError, Interrupted, UsageError, WaitTimeout

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.transform.types import IcebergType

Progress = Callable[[str], None]
PAGE = 1000  # get_query_results MaxResults upper bound (botocore model: 1..1000)
RESULTS_EXPIRY_DAYS = 7
RESULTS_PREFIX = "results/"
FINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


class QueryError(AwsError):
    """The query ran and failed, or was cancelled (exit 1)."""

    code = "query-failed"


@dataclass
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    data_scanned_bytes: int | None = None
    query_id: str | None = None
    engine: str = "athena"
    extra: dict[str, Any] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"columns": self.columns, "types": self.types, "rows": self.records(),
                               "data_scanned_bytes": self.data_scanned_bytes}
        if self.query_id:
            doc["query_id"] = self.query_id
        doc["engine"] = self.engine
        return doc


# ------------------------------------------------------------------ value typing
_INTS = {"tinyint", "smallint", "integer", "int", "bigint"}
_FLOATS = {"float", "real", "double"}
_HEX_BYTES = re.compile(r"^[0-9a-fA-F]{2}( [0-9a-fA-F]{2})*$")


def trino_type(t: "IcebergType", binary: str = "VARBINARY") -> str:
    """An Iceberg type -> the Athena (Trino) SQL type of its values (``binary``: what binary becomes)."""
    from s3tstream.transform import types as T

    if isinstance(t, T.DecimalType):
        return f"DECIMAL({t.precision},{t.scale})"
    if isinstance(t, T.Primitive):
        return {"string": "VARCHAR", "boolean": "BOOLEAN", "int": "INTEGER", "long": "BIGINT", "float": "REAL",
                "double": "DOUBLE", "date": "DATE", "timestamp": "TIMESTAMP(6)",
                "timestamptz": "TIMESTAMP(6) WITH TIME ZONE", "binary": binary}[t.name]
    if isinstance(t, T.ListType):
        return f"ARRAY({trino_type(t.element, binary)})"
    if isinstance(t, T.MapType):
        return f"MAP(VARCHAR, {trino_type(t.value, binary)})"
    if isinstance(t, T.StructType):
        return "ROW(" + ", ".join(f"{quote_ident(f.name)} {trino_type(f.type, binary)}" for f in t.fields) + ")"
    raise ValueError(f"unsupported type {t}")  # pragma: no cover


def base64_leaves(expr: str, t: "IcebergType", depth: int = 0) -> str | None:
    """``expr`` (of type ``t``) with every binary value inside it as base64 text, or None when ``t``
    holds no binary: Trino casts no VARBINARY to JSON, so a nested binary must be text first.
    UNCONFIRMED on Athena itself (Trino's documented CAST-to-JSON source types omit VARBINARY)."""
    from s3tstream.transform import types as T

    if isinstance(t, T.Primitive) and t.name == "binary":
        return f"to_base64({expr})"
    v = f"s3t_v{depth}"
    if isinstance(t, T.ListType):
        inner = base64_leaves(v, t.element, depth + 1)
        return inner and f"transform({expr}, {v} -> {inner})"
    if isinstance(t, T.MapType):
        inner = base64_leaves(v, t.value, depth + 1)
        return inner and f"transform_values({expr}, (s3t_k{depth}, {v}) -> {inner})"
    if isinstance(t, T.StructType):
        fields = [(f, base64_leaves(f"{expr}.{quote_ident(f.name)}", f.type, depth + 1)) for f in t.fields]
        if not any(e for _, e in fields):
            return None
        row = ", ".join(e or f"{expr}.{quote_ident(f.name)}" for f, e in fields)
        return f"CASE WHEN {expr} IS NULL THEN NULL ELSE CAST(ROW({row}) AS {trino_type(t, 'VARCHAR')}) END"
    return None


def base_type(t: str) -> str:
    """"decimal(12,4)" -> "decimal", "list<string>" -> "list"."""
    return re.split(r"[(<]", t.strip().lower(), maxsplit=1)[0].strip()


def _iso_timestamp(s: str, with_zone: bool) -> str:
    text = s.strip()
    if with_zone:
        head, _, zone = text.rpartition(" ")
        if head and zone.upper() in ("UTC", "Z", "ETC/UTC", "GMT"):
            text, suffix = head, "+00:00"
        elif head and re.fullmatch(r"[+-]\d{2}:\d{2}", zone):
            text, suffix = head, zone
        else:
            return s  # a named zone: kept as Athena wrote it
    else:
        suffix = ""
    return text.replace(" ", "T", 1) + suffix


def convert_athena(type_name: str, text: str | None) -> Any:
    """One Athena VarCharValue -> a typed Python value by its ColumnInfo.Type (table above)."""
    if text is None:
        return None
    t = type_name.strip().lower()
    b = base_type(t)
    try:
        if b in _INTS:
            return int(text)
        if b in _FLOATS:
            return float(text)
        if b == "decimal":
            return Decimal(text)
        if b == "boolean":
            return text.strip().lower() == "true"
        if b.startswith("timestamp"):
            return _iso_timestamp(text, "with time zone" in t)
        if b == "varbinary":
            if text == "":
                return ""
            if _HEX_BYTES.match(text):
                return base64.b64encode(bytes.fromhex(text.replace(" ", ""))).decode()
            return text
    except (ValueError, ArithmeticError):
        return text  # never fail a query on a value we cannot type
    return text


# ------------------------------------------------------------------ SQL helpers
def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def default_sql(cfg: "Config", limit: int = 10) -> str:
    return f"SELECT * FROM {quote_ident(cfg.names.table)} LIMIT {limit}"


def sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    return "'" + str(v).replace("'", "''") + "'"


# ------------------------------------------------------------------ Athena
class AthenaEngine:
    name = "athena"

    def __init__(
        self,
        client: Any,
        *,
        catalog: str,
        database: str,
        workgroup: str,
        output_location: str | None,
        poll: float = 0.5,
        max_poll: float = 5.0,
        timeout: float | None = None,
        progress: Progress = lambda m: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.catalog = catalog
        self.database = database
        self.workgroup = workgroup
        self.output_location = output_location
        self.poll = poll
        self.max_poll = max(max_poll, poll)
        self.timeout = timeout
        self.progress = progress
        self.sleep = sleep
        self.clock = clock

    # -- the SQL a caller needs to get comparable values (verify)
    @staticmethod
    def select_expr(column: str, iceberg_type: str) -> str:
        q = quote_ident(column)
        b = base_type(iceberg_type)
        if b == "binary":
            return f"to_base64({q}) AS {q}"
        if b in ("list", "map", "struct"):
            from s3tstream.transform.types import parse_type

            return f"json_format(CAST({base64_leaves(q, parse_type(iceberg_type)) or q} AS JSON)) AS {q}"
        return q

    def start(self, sql: str) -> str:
        kw: dict[str, Any] = {
            "QueryString": sql,
            "ClientRequestToken": str(uuid.uuid4()),
            "QueryExecutionContext": {"Catalog": self.catalog, "Database": self.database},
            "WorkGroup": self.workgroup,
        }
        if self.output_location:
            kw["ResultConfiguration"] = {"OutputLocation": self.output_location}
        try:
            return self.client.start_query_execution(**kw)["QueryExecutionId"]
        except ClientError as e:
            if error_code(e) == "InvalidRequestException":
                raise QueryError(f"Athena refused the query: {e.response['Error'].get('Message', '')}",
                                 "fix the SQL (or the workgroup settings) and run it again") from None
            raise translate(e, "starting the Athena query") from None
        except BotoCoreError as e:
            raise translate(e, "starting the Athena query") from None

    def stop(self, qid: str) -> None:
        try:
            self.client.stop_query_execution(QueryExecutionId=qid)
        except (ClientError, BotoCoreError):
            pass  # best effort: we are leaving anyway

    def wait(self, qid: str) -> dict[str, Any]:
        """Poll until a final state; Ctrl-C stops the query (exit 130)."""
        start = self.clock()
        delay = self.poll
        try:
            while True:
                try:
                    qe = self.client.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
                except (ClientError, BotoCoreError) as e:
                    raise translate(e, f"waiting for Athena query {qid}") from None
                status = qe.get("Status", {})
                state = status.get("State", "QUEUED")
                elapsed = self.clock() - start
                self.progress(f"{qid}: {state} ({elapsed:.0f}s)")
                if state == "SUCCEEDED":
                    return qe
                if state in ("FAILED", "CANCELLED"):
                    reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or "no reason given"
                    what = "failed" if state == "FAILED" else "was cancelled"
                    raise QueryError(
                        f"Athena query {qid} {what}: {reason}",
                        "fix the SQL or the cause named above and run it again" if state == "FAILED"
                        else "someone (or the workgroup's limits) cancelled it; run it again",
                    )
                if self.timeout is not None and elapsed + delay > self.timeout:
                    self.stop(qid)
                    raise WaitTimeout(f"Athena query {qid} still {state} after {elapsed:.0f}s; stopped it",
                                      "raise --timeout, or narrow the query")
                self.sleep(delay)
                delay = min(self.max_poll, delay * 1.5)
        except KeyboardInterrupt:
            self.stop(qid)
            raise Interrupted(f"interrupted: stopped Athena query {qid}", "run the query again when ready") from None

    def results(self, qid: str, statement_type: str | None = None) -> tuple[list[str], list[str], list[list[Any]]]:
        columns: list[str] = []
        types: list[str] = []
        rows: list[list[Any]] = []
        token: str | None = None
        first = True
        while True:
            kw: dict[str, Any] = {"QueryExecutionId": qid, "MaxResults": PAGE}
            if token:
                kw["NextToken"] = token
            try:
                page = self.client.get_query_results(**kw)
            except (ClientError, BotoCoreError) as e:
                raise translate(e, f"reading the results of Athena query {qid}") from None
            rs = page.get("ResultSet", {})
            if first:
                info = rs.get("ResultSetMetadata", {}).get("ColumnInfo", [])
                columns = [c.get("Label") or c.get("Name", "") for c in info]
                types = [_athena_type(c) for c in info]
            raw = [[d.get("VarCharValue") for d in r.get("Data", [])] for r in rs.get("Rows", [])]
            if first and raw and statement_type in (None, "DML") and _is_header(raw[0], info):
                raw = raw[1:]
            first = False
            for r in raw:
                rows.append([convert_athena(types[i] if i < len(types) else "varchar", v) for i, v in enumerate(r)])
            token = page.get("NextToken")
            if len(rows) and token:
                self.progress(f"{qid}: read {len(rows)} rows")
            if not token:
                return columns, types, rows

    def run(self, sql: str) -> QueryResult:
        qid = self.start(sql)
        qe = self.wait(qid)
        try:
            columns, types, rows = self.results(qid, qe.get("StatementType"))
        except KeyboardInterrupt:
            raise Interrupted("interrupted while reading results", "run the query again when ready") from None
        scanned = qe.get("Statistics", {}).get("DataScannedInBytes")
        return QueryResult(columns, types, rows, scanned, qid, "athena")


def _athena_type(c: dict[str, Any]) -> str:
    t = (c.get("Type") or "varchar").lower()
    if t == "decimal" and c.get("Precision"):
        return f"decimal({c['Precision']},{c.get('Scale', 0)})"
    return t


def _is_header(row: list[Any], info: list[dict[str, Any]]) -> bool:
    names = [c.get("Label") or c.get("Name") for c in info]
    alt = [c.get("Name") for c in info]
    return row == names or row == alt


# ------------------------------------------------------------------ local (PyIceberg + DuckDB)
class LocalEngine:
    """Scans the table with PyIceberg into Arrow and runs the SQL with DuckDB.

    The table is registered under its name (and as <namespace>.<name>). PyIceberg does not apply
    equality delete files, which Firehose writes for updates and deletes: a table whose current
    snapshot holds delete files is read by ``lake.merge_on_read``, which plans the scan and
    applies them as the Iceberg spec says (by sequence number, within the partition).
    """

    name = "local"

    def __init__(self, load_table: Callable[[], Any], table: str, namespace: str, progress: Progress = lambda m: None,
                 others: dict[str, Callable[[], Any]] | None = None) -> None:
        self.load_table = load_table
        self.table = table
        self.namespace = namespace
        self.progress = progress
        # the stack's other tables ([[tables]]), registered too so SQL may name any of them
        self.others = others or {}

    @staticmethod
    def select_expr(column: str, iceberg_type: str) -> str:
        return quote_ident(column)

    def arrow(self, table: str | None = None) -> Any:
        """A table's current snapshot as Arrow (loaded afresh on every call); default: the main one."""
        from s3tstream.lake import merge_on_read, pyiceberg_nulls

        name = table or self.table
        pyiceberg_nulls.install()  # PyIceberg's projection would read a NULL list<struct> as []
        tbl = (self.others[name] if name != self.table else self.load_table)()
        n = delete_files(tbl)
        if not n:
            self.progress(f"scanning {self.namespace}.{name} with PyIceberg")
            return tbl.scan().to_arrow()
        self.progress(f"scanning {self.namespace}.{name} and applying its {n} delete file(s)")
        try:
            return merge_on_read.scan(tbl)[0]
        except merge_on_read.UnsupportedDeletes as e:
            raise UsageError(f"table {self.namespace}.{name}: {e}; the local engine cannot apply them",
                             "use the athena engine (--engine athena)") from None

    def _named(self, sql: str) -> list[str]:
        """The tables the SQL may read: the main one, and each other one it names (scans cost)."""
        import re

        return [self.table] + [t for t in self.others if re.search(rf"\b{re.escape(t)}\b", sql)]

    def run(self, sql: str) -> QueryResult:
        import duckdb

        data = {t: self.arrow(t) for t in self._named(sql)}
        con = duckdb.connect()
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.namespace)}")
            for i, (table, arrow) in enumerate(data.items()):
                con.register(f"__s3t_lake{i}", arrow)
                for schema in ("main", self.namespace):
                    con.execute(f"CREATE VIEW {quote_ident(schema)}.{quote_ident(table)} AS SELECT * FROM __s3t_lake{i}")
            try:
                rel = con.sql(sql)
            except duckdb.Error as e:
                raise QueryError(f"local query failed: {e}", "fix the SQL and run it again") from None
            if rel is None:
                return QueryResult([], [], [], None, None, "local")
            columns = list(rel.columns)
            types = [_duck_type(str(t)) for t in rel.types]
            table = rel.to_arrow_table()
        finally:
            con.close()
        rows = [[_local_value(v) for v in r.values()] for r in table.to_pylist()] if columns else []
        # to_pylist keys rows by name: duplicate column names collapse, so read by position then
        if rows and len(rows[0]) != len(columns):
            rows = [list(r) for r in zip(*[[_local_value(v) for v in col.to_pylist()] for col in table.columns])]
        return QueryResult(columns, types, rows, None, None, "local")


def _duck_type(t: str) -> str:
    u = t.upper()
    simple = {"BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "TINYINT": "tinyint",
              "HUGEINT": "decimal(38,0)", "DOUBLE": "double", "FLOAT": "real", "BOOLEAN": "boolean", "VARCHAR": "varchar",
              "DATE": "date", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
              "BLOB": "varbinary"}
    if u in simple:
        return simple[u]
    if u.startswith("DECIMAL"):
        return u.lower().replace(" ", "")
    if u.startswith("STRUCT"):
        return "row"
    if u.startswith("MAP"):
        return "map"
    if u.endswith("[]") or u.startswith("LIST"):
        return "array"
    return u.lower()


def _local_value(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode()
    if isinstance(v, list):
        if v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            return {str(k): _local_value(x) for k, x in v}  # an Arrow map
        return [_local_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _local_value(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):
        if getattr(v, "tzinfo", None) is not None:
            from datetime import timezone

            return v.astimezone(timezone.utc).isoformat()
        return v.isoformat()
    return v


def delete_files(table: Any) -> int:
    """Number of delete files (position or equality) live in the table's current snapshot."""
    from pyiceberg.manifest import ManifestContent

    snap = table.current_snapshot()
    if snap is None:
        return 0
    n = 0
    for m in snap.manifests(table.io):
        if m.content == ManifestContent.DELETES:
            n += (m.added_files_count or 0) + (m.existing_files_count or 0)
    return n


# ------------------------------------------------------------------ wiring to a stack
def bucket_arn(cfg: "Config", aws: "Aws") -> str:
    return aws.arn("s3tables", f"bucket/{cfg.names.table_bucket}")


def local_table_loader(cfg: "Config", aws: "Aws") -> Callable[[], Any]:
    """PyIceberg table: the S3 Tables Iceberg REST endpoint on AWS; iceberg_catalog.py with an endpoint_url."""
    ident = (cfg.names.namespace, cfg.names.table)

    def load() -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        arn = bucket_arn(cfg, aws)
        try:
            if aws.endpoint_url:
                from s3tstream.lake.catalog import S3TablesCatalog

                catalog: Any = S3TablesCatalog.for_stack(aws, arn)
            else:
                from pyiceberg.catalog import load_catalog

                from s3tstream.lake.catalog import fileio_properties

                props = {k: v for k, v in fileio_properties(aws).items() if k != "s3.endpoint"}
                for s3k, ck in (("s3.access-key-id", "client.access-key-id"), ("s3.secret-access-key", "client.secret-access-key"),
                                ("s3.session-token", "client.session-token")):
                    if s3k in props:
                        props[ck] = props[s3k]
                catalog = load_catalog(
                    "s3tables", type="rest", uri=f"https://s3tables.{aws.region}.amazonaws.com/iceberg", warehouse=arn,
                    **{"rest.sigv4-enabled": "true", "rest.signing-name": "s3tables", "rest.signing-region": aws.region,
                       "client.region": aws.region}, **props,
                )
            return catalog.load_table(ident)
        except NoSuchTableError as e:
            raise UsageError(f"cannot read the lake table: {e}", "run `s3tstream up` (create-table-bucket, set-metadata) first") from None
        except ClientError as e:
            raise translate(e, f"loading table {ident[0]}.{ident[1]}") from None

    return load


def results_location(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None) -> str | None:
    """Where Athena writes results: config, else the workgroup's own, else the stack's bucket."""
    if cfg.athena.output_location:
        return cfg.athena.output_location
    athena = aws.client("athena")
    try:
        wg = athena.get_work_group(WorkGroup=cfg.athena.workgroup)["WorkGroup"]
        conf = wg.get("Configuration", {})
        if conf.get("ManagedQueryResultsConfiguration", {}).get("Enabled"):
            return None
        if conf.get("ResultConfiguration", {}).get("OutputLocation"):
            return None
    except ClientError as e:
        if error_code(e) == "InvalidRequestException":
            raise UsageError(f"Athena workgroup {cfg.athena.workgroup!r} was not found: {e.response['Error'].get('Message', '')}",
                             "set athena.workgroup to an existing workgroup") from None
        if error_code(e) not in ("AccessDeniedException", "AccessDenied"):
            raise translate(e, f"reading Athena workgroup {cfg.athena.workgroup}") from None
    bucket = cfg.names.results_bucket(aws.identity().account)
    ensure_results_bucket(cfg, aws, bucket, progress)
    return f"s3://{bucket}/{RESULTS_PREFIX}"


def ensure_results_bucket(cfg: "Config", aws: "Aws", bucket: str, progress: Progress = lambda m: None) -> bool:
    """Create the stack's Athena results bucket when missing. Returns True when it was created.

    An existing bucket of this name without the stack tag is one a run created and then died
    before tagging (the name holds the account and Region): its set-up is finished here.
    """
    s3 = aws.client("s3")
    try:
        s3.head_bucket(Bucket=bucket)
        try:
            tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
        except ClientError as e:
            if not is_not_configured(e):
                raise translate(e, f"reading the tags of the Athena results bucket {bucket}") from None
            tags = {}
        if tags.get("s3tstream:stack") == cfg.names.stack:
            return False
        created = False
    except ClientError as e:
        code = error_code(e)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise AwsError(f"the Athena results bucket {bucket} exists but is not readable by these credentials",
                           "set athena.output_location to an s3:// location you own") from None
        if not is_not_found(e):
            raise translate(e, f"checking the Athena results bucket {bucket}") from None
        created = True
    progress(f"creating the Athena results bucket {bucket}")
    from s3tstream.aws.policies import tls_only_bucket_policy

    tags = {**cfg.stack.tags, **cfg.names.stack_tag()}
    try:
        if created:
            kw: dict[str, Any] = {"Bucket": bucket}
            if aws.region != "us-east-1":
                kw["CreateBucketConfiguration"] = {"LocationConstraint": aws.region}
            try:
                s3.create_bucket(**kw)
            except ClientError as e:
                if error_code(e) != "BucketAlreadyOwnedByYou":
                    raise
        # the tag first: it is how `down` (remove_results_bucket) knows the bucket is ours
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(tls_only_bucket_policy(aws.identity(), bucket)))
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "s3tstream-expire-query-results", "Status": "Enabled", "Filter": {"Prefix": RESULTS_PREFIX},
            "Expiration": {"Days": RESULTS_EXPIRY_DAYS},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})
    except ClientError as e:
        raise translate(e, f"creating the Athena results bucket {bucket}") from None
    return True


def open_engine(cfg: "Config", aws: "Aws", engine: str | None = None, *, progress: Progress = lambda m: None,
                timeout: float | None = None) -> Any:
    """The configured engine (or ``engine``) for the stack's lake table."""
    name = engine or cfg.athena.engine
    if name == "local":
        # an unscoped config of several tables: every table is queryable, the first is the main one
        others = {s.names.table: local_table_loader(s, aws) for s in cfg.scopes() if s.names.table != cfg.names.table}
        return LocalEngine(local_table_loader(cfg, aws), cfg.names.table, cfg.names.namespace, progress, others)
    if name != "athena":
        raise UsageError(f"unknown query engine {name!r}", "use athena or local")
    out = results_location(cfg, aws, progress)
    poll = min(cfg.stack.poll_interval, 1.0)
    return AthenaEngine(
        aws.client("athena"), catalog=f"s3tablescatalog/{cfg.names.table_bucket}", database=cfg.names.namespace,
        workgroup=cfg.athena.workgroup, output_location=out, poll=poll, max_poll=max(poll, min(5.0, cfg.stack.poll_interval * 4)),
        timeout=timeout, progress=progress,
    )


def remove_results_bucket(cfg: "Config", aws: "Aws", progress: Progress = lambda m: None, *, dry_run: bool = False) -> bool:
    """For `down`: empty and delete the stack's Athena results bucket when it carries this stack's tag.

    Returns True when a bucket was deleted (dry_run: would be); a missing bucket or one without the
    stack tag is left.
    """
    s3 = aws.client("s3")
    bucket = cfg.names.results_bucket(aws.identity().account)
    try:
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])}
    except ClientError as e:
        if is_not_found(e) or is_not_configured(e):
            return False
        raise translate(e, f"reading the tags of the Athena results bucket {bucket}") from None
    if tags.get("s3tstream:stack") != cfg.names.stack:
        return False
    if dry_run:
        return True
    try:
        n = 0
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                n += len(keys)
        s3.delete_bucket(Bucket=bucket)
    except ClientError as e:
        raise translate(e, f"deleting the Athena results bucket {bucket}") from None
    progress(f"deleted the Athena results bucket {bucket} ({n} result object(s))")
    return True
