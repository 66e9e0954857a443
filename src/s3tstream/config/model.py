"""The one config model (s3tstream.toml + S3TSTREAM_* overrides).

Every name and ARN the stack uses is derived here, once, and validated here against the
AWS naming rules (aws-notes), so a bad name fails before any AWS call.
"""

from __future__ import annotations

import functools
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from s3tstream.config import tables
from s3tstream.config.rules import (
    rule,
    check_stack_name,
    check_dynamodb_table,
    check_attribute_name,
    check_kinesis_stream,
    check_table_bucket,
    check_s3tables_name,
    check_column_name,
    check_firehose_name,
    check_lambda_name,
    check_s3_bucket,
)
from s3tstream.errors import ConfigError

DEFAULT_CONFIG = "s3tstream.toml"
ENV_CONFIG = "S3TSTREAM_CONFIG"
ENV_PREFIX = "S3TSTREAM_"

# Regions without the Firehose Iceberg destination or S3 Tables (aws-notes: China, GovCloud,
# Taipei, Malaysia, New Zealand, Mexico (Central)).
UNSUPPORTED_REGIONS = {
    "cn-north-1": "China (Beijing)",
    "cn-northwest-1": "China (Ningxia)",
    "us-gov-west-1": "AWS GovCloud (US-West)",
    "us-gov-east-1": "AWS GovCloud (US-East)",
    "ap-east-2": "Asia Pacific (Taipei)",
    "ap-southeast-5": "Asia Pacific (Malaysia)",
    "ap-southeast-6": "Asia Pacific (New Zealand)",
    "mx-central-1": "Mexico (Central)",
}
REGION_RE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")


@functools.lru_cache(maxsize=1)
def known_regions() -> frozenset[str]:
    """The Regions botocore knows (its partitions file). S3 Tables has no endpoints.json entry:
    botocore resolves its endpoint from the Region's partition, so an unknown Region would only
    fail at the first call (a DNS error on s3tables.<region>.amazonaws.com)."""
    from botocore.loaders import Loader

    data = Loader().load_data("partitions")
    return frozenset(r for p in data["partitions"] for r in p["regions"] if not r.endswith("-global"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StackConfig(_Section):
    name: str
    region: str = "us-east-1"
    profile: str | None = None
    endpoint_url: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 8
    # Short: lateness in noticing readiness adds up along up's critical path (benchmarks/up_critical_path.py).
    poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    wait_timeout: Annotated[float, Field(gt=0, le=7200)] = 900.0
    # Where the state lives: empty for .s3tstream/<stack>.json beside the config, or
    # s3://bucket/prefix/ (shared by a team; locked with S3 conditional writes).
    state: str | None = None

    _name = field_validator("name")(classmethod(lambda cls, v: check_stack_name(v)))

    @field_validator("state")
    @classmethod
    def _state(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        rule(v.startswith("s3://"), "empty (a local file) or s3://bucket/prefix/")
        bucket, _, key = v[5:].partition("/")
        check_s3_bucket(bucket)
        rule(len(key) <= 512 and not key.startswith("/") and "//" not in key,
              "the key prefix after the bucket is at most 512 characters, without '//'")
        return f"s3://{bucket}/{key}" if not key or key.endswith("/") else f"s3://{bucket}/{key}/"

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        rule(bool(REGION_RE.match(v)), "not an AWS Region code (like us-east-1)")
        rule(v in known_regions(), f"{v} is not a Region botocore knows; check the spelling (like us-east-1)")
        if v in UNSUPPORTED_REGIONS:
            raise ValueError(
                f"{UNSUPPORTED_REGIONS[v]} has no Firehose Iceberg destination or S3 Tables; pick another Region"
            )
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        rule(bool(re.match(r"^https?://[^/\s]+/?$", v)), "must look like http://127.0.0.1:4566")
        return v.rstrip("/")

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        for k, val in v.items():
            rule(1 <= len(k) <= 128 and len(val) <= 256, f"tag {k!r}: keys 1-128, values up to 256 characters")
            rule(not k.lower().startswith("aws:"), f"tag {k!r}: the 'aws:' prefix is reserved")
            rule(not k.startswith("s3tstream:"), f"tag {k!r}: the 's3tstream:' prefix is the tool's own")
        rule(len(v) <= 40, "at most 40 tags (the tool adds its own)")
        return v


class KeyAttribute(_Section):
    name: str
    type: Literal["S", "N", "B"] = "S"

    _n = field_validator("name")(classmethod(lambda cls, v: check_attribute_name(v)))


class SourceConfig(_Section):
    table: str | None = None
    partition_key: KeyAttribute = KeyAttribute(name="pk")
    sort_key: KeyAttribute | None = None
    billing: Literal["PAY_PER_REQUEST", "PROVISIONED"] = "PAY_PER_REQUEST"
    read_capacity: Annotated[int, Field(ge=1)] | None = None
    write_capacity: Annotated[int, Field(ge=1)] | None = None
    point_in_time_recovery: bool = False
    # An existing table with this name is adopted (never deleted) when its keys match.
    adopt_existing: bool = True

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_dynamodb_table(v)

    @model_validator(mode="after")
    def _capacity(self) -> "SourceConfig":
        provisioned = self.billing == "PROVISIONED"
        if provisioned and (self.read_capacity is None or self.write_capacity is None):
            raise ValueError("billing = PROVISIONED needs read_capacity and write_capacity")
        if not provisioned and (self.read_capacity or self.write_capacity):
            raise ValueError("read_capacity/write_capacity only apply with billing = PROVISIONED")
        if self.sort_key and self.sort_key.name == self.partition_key.name:
            raise ValueError("sort_key.name must differ from partition_key.name")
        return self


class StreamConfig(_Section):
    name: str | None = None
    mode: Literal["ON_DEMAND", "PROVISIONED"] = "ON_DEMAND"
    shards: Annotated[int, Field(ge=1, le=500)] | None = None
    retention_hours: Annotated[int, Field(ge=24, le=8760)] = 24
    encryption: bool = True
    timestamp_precision: Literal["MICROSECOND", "MILLISECOND"] = "MICROSECOND"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_kinesis_stream(v)

    @model_validator(mode="after")
    def _shards(self) -> "StreamConfig":
        if self.mode == "PROVISIONED" and self.shards is None:
            raise ValueError("mode = PROVISIONED needs shards")
        if self.mode == "ON_DEMAND" and self.shards is not None:
            raise ValueError("shards only applies with mode = PROVISIONED")
        return self


class Column(_Section):
    name: str
    type: str
    required: bool = False
    # DynamoDB attribute the column reads from (default: the column name).
    source: str | None = None

    _n = field_validator("name")(classmethod(lambda cls, v: check_column_name(v)))

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        from s3tstream.transform.types import parse_type

        return str(parse_type(v))

    @property
    def attribute(self) -> str:
        return self.source or self.name


class Maintenance(_Section):
    compaction: bool = True
    target_file_size_mb: Annotated[int, Field(ge=64, le=512)] = 512
    snapshot_management: bool = True
    min_snapshots_to_keep: Annotated[int, Field(ge=1)] = 1
    max_snapshot_age_hours: Annotated[int, Field(ge=1)] = 120
    unreferenced_file_removal: bool = True
    unreferenced_days: Annotated[int, Field(ge=1)] = 3
    noncurrent_days: Annotated[int, Field(ge=1)] = 10


class TableConfig(_Section):
    bucket: str | None = None
    namespace: str | None = None
    name: str | None = None
    mode: Literal["upsert", "changelog"] = "upsert"
    columns: list[Column] = Field(default_factory=list)
    extra_column: str | None = None
    ttl_deletes: Literal["delete", "keep"] = "delete"
    kms_key_arn: str | None = None
    # Iceberg partition fields like "bucket(16, pk)" (upsert: key columns only), "day(created_at)" (changelog).
    partition: list[str] = Field(default_factory=list)
    properties: dict[str, str] = Field(default_factory=dict)
    maintenance: Maintenance = Maintenance()

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_table_bucket(v)

    @field_validator("namespace")
    @classmethod
    def _ns(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_s3tables_name(v, "namespace")

    @field_validator("name")
    @classmethod
    def _tname(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_s3tables_name(v)

    @field_validator("extra_column")
    @classmethod
    def _extra(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_column_name(v)

    @field_validator("kms_key_arn")
    @classmethod
    def _kms(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        rule(bool(re.fullmatch(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+", v)), "must be a KMS key ARN")
        return v

    @model_validator(mode="after")
    def _columns(self) -> "TableConfig":
        seen: set[str] = set()
        for c in self.columns:
            if c.name in seen:
                raise ValueError(f"columns: {c.name!r} appears twice")
            seen.add(c.name)
        if self.extra_column and self.extra_column in seen:
            raise ValueError(f"extra_column {self.extra_column!r} is also a declared column")
        if self.mode == "changelog":
            clash = seen & {"_op", "_event_time", "_event_id"}
            if clash:
                raise ValueError(f"columns {sorted(clash)} are reserved in changelog mode")
        return self


class FirehoseConfig(_Section):
    name: str | None = None
    # Latency first: Firehose flushes on whichever hint is hit first (aws-notes).
    buffer_interval_seconds: Annotated[int, Field(ge=0, le=900)] = 15
    buffer_size_mb: Annotated[int, Field(ge=1, le=128)] = 1
    retry_seconds: Annotated[int, Field(ge=0, le=7200)] = 300
    error_bucket: str | None = None
    error_prefix: str = "errors/"
    error_expiry_days: Annotated[int, Field(ge=1)] = 30
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] = 14
    lambda_name: str | None = None
    lambda_runtime: Literal["python3.11", "python3.12", "python3.13"] = "python3.13"
    lambda_architecture: Literal["arm64", "x86_64"] = "arm64"
    lambda_memory_mb: Annotated[int, Field(ge=128, le=10240)] = 256
    lambda_timeout_seconds: Annotated[int, Field(ge=1, le=900)] = 60
    lambda_reserved_concurrency: Annotated[int, Field(ge=0)] | None = None
    processor_buffer_mb: Annotated[float, Field(ge=0.2, le=3)] = 1.0
    processor_interval_seconds: Annotated[int, Field(ge=0, le=900)] = 15
    processor_retries: Annotated[int, Field(ge=0, le=300)] = 3

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_firehose_name(v)

    @field_validator("lambda_name")
    @classmethod
    def _lname(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_lambda_name(v)

    @field_validator("error_bucket")
    @classmethod
    def _eb(cls, v: str | None) -> str | None:
        return None if v in (None, "") else check_s3_bucket(v)

    @field_validator("error_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        rule(bool(v) and not v.startswith("/") and len(v) <= 1024, "a non-empty S3 key prefix not starting with '/'")
        return v


class LakeFormationConfig(_Section):
    # Access control of the account's S3 Tables analytics integration: "iam" (IAM policies on
    # the tables; what the S3 console creates), "lakeformation" (Lake Formation grants), or
    # "auto" (the mode the account's integration has; Lake Formation when it has none).
    integration_mode: Literal["auto", "lakeformation", "iam"] = "auto"
    # Create the account's S3 Tables analytics integration when it is missing (in the mode above).
    integrate: bool = False
    # Add the caller to the Lake Formation administrators (keeping the others).
    make_caller_admin: bool = False
    # Lake Formation permissions of the Firehose role on the table: "least" (SELECT, INSERT,
    # DELETE, ALTER, DESCRIBE) or "all" (ALL, as AWS's tutorials grant).
    firehose_table_permissions: Literal["least", "all"] = "least"
    # IAM principals that get SELECT + DESCRIBE on the table.
    readers: list[str] = Field(default_factory=list)

    @field_validator("readers")
    @classmethod
    def _readers(cls, v: list[str]) -> list[str]:
        for r in v:
            rule(bool(re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+", r)), f"{r!r} is not an IAM role or user ARN")
        return v


class AthenaConfig(_Section):
    engine: Literal["athena", "local"] = "athena"
    workgroup: str = "primary"
    # s3://bucket/prefix/ for results; empty: a results bucket owned by the stack.
    output_location: str | None = None

    @field_validator("output_location")
    @classmethod
    def _out(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        rule(v.startswith("s3://") and len(v) > 5, "must be an s3:// URI")
        return v if v.endswith("/") else v + "/"


class BackfillConfig(_Section):
    """`s3tstream backfill`: bring the items that existed before the stream into the lake."""

    # Parallel scan segments (0: by table size, 1-64).
    segments: Annotated[int, Field(ge=0, le=64)] = 0
    # Provisioned tables: the share of the table's read capacity the scan may use (0-1].
    max_read_share: Annotated[float, Field(gt=0, le=1)] = 0.5
    # On-demand tables: items read (and sent to the stream) a second; 0: no limit.
    items_per_second: Annotated[int, Field(ge=0)] = 1000
    # --strategy auto: scan below this many items (DescribeTable ItemCount), export above.
    scan_threshold_items: Annotated[int, Field(ge=0)] = 5_000_000
    # Where DynamoDB exports go: a key prefix in the stack's Athena results bucket, or
    # s3://bucket/prefix/ (a bucket you own in the stack's Region).
    export_prefix: str = "backfill/"
    # Upsert mode: after sending, re-read the keys that changed while the backfill ran and send
    # them again, so a snapshot record never lands after a newer change.
    catch_up: bool = True

    @field_validator("export_prefix")
    @classmethod
    def _export_prefix(cls, v: str) -> str:
        if v.startswith("s3://"):
            bucket, _, key = v[5:].partition("/")
            check_s3_bucket(bucket)
            rule(len(key) <= 512, "the key prefix is at most 512 characters")
            return f"s3://{bucket}/{key}" if not key or key.endswith("/") else f"s3://{bucket}/{key}/"
        rule(bool(v) and not v.startswith("/") and len(v) <= 512 and "//" not in v,
              "a key prefix (not starting with '/', at most 512 characters) or s3://bucket/prefix/")
        return v if v.endswith("/") else v + "/"


class AlarmsConfig(_Section):
    """`create-alarms`: CloudWatch alarms on the pipeline, notifying an SNS topic."""

    enabled: bool = False
    # Subscribed to a topic the stack creates (s3tstream-<stack>-alarms) unless sns_topic_arn is set.
    email: str | None = None
    # An existing topic of yours to notify instead (its policy must let CloudWatch publish).
    sns_topic_arn: str | None = None
    # DeliveryToIceberg.DataFreshness above this many seconds (AWS advises alarming past the
    # 15-minute buffering limit: firehose-cloudwatch-metrics-best-practices).
    freshness_seconds: Annotated[int, Field(ge=60, le=86400)] = 900
    # Sums over one period above these counts: failed rows, transform Lambda errors, stream
    # write throttles.
    failed_records: Annotated[int, Field(ge=0)] = 0
    transform_errors: Annotated[int, Field(ge=0)] = 0
    stream_throttles: Annotated[int, Field(ge=0)] = 0
    # CloudWatch periods (seconds) and how many of them must breach.
    period_seconds: Literal[60, 300, 900, 3600] = 300
    evaluation_periods: Annotated[int, Field(ge=1, le=24)] = 1

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        rule(bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", v)), "not an email address (name@example.com)")
        return v

    @field_validator("sns_topic_arn")
    @classmethod
    def _topic(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        rule(bool(re.fullmatch(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?", v)),
              "must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
        rule(not v.endswith(".fifo"), "CloudWatch alarms notify standard topics only, not FIFO topics")
        return v

    @model_validator(mode="after")
    def _someone(self) -> "AlarmsConfig":
        if self.enabled and not (self.email or self.sns_topic_arn):
            raise ValueError("enabled alarms need email or sns_topic_arn: someone has to hear them")
        return self


class TableEntry(_Section):
    """One [[tables]] entry: the keys of [source] and [table] for one table."""

    source: SourceConfig = SourceConfig()
    table: TableConfig = TableConfig()


class Config(_Section):
    stack: StackConfig
    source: SourceConfig = SourceConfig()
    stream: StreamConfig = StreamConfig()
    table: TableConfig = TableConfig()
    firehose: FirehoseConfig = FirehoseConfig()
    lakeformation: LakeFormationConfig = LakeFormationConfig()
    athena: AthenaConfig = AthenaConfig()
    backfill: BackfillConfig = BackfillConfig()
    alarms: AlarmsConfig = AlarmsConfig()
    # Many tables, one pipeline: entries each with a source and a table (config/tables.py).
    # Empty: the one table of [source]/[table].
    tables: list[TableEntry] = Field(default_factory=list)

    # Where the config was read from; the state directory sits beside it.
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _one_form(cls, data: Any) -> Any:
        # (validate_assignment calls this too, with the fields as models: nothing to check then)
        if isinstance(data, dict) and "tables" in data and not isinstance(data.get("stack"), StackConfig):
            both = [k for k in ("source", "table") if k in data]
            if both:
                raise tables.FieldProblems([(both[0], (
                    "[source]/[table] (one table) and [[tables]] entries cannot both be set: move them into a "
                    "[[tables]] entry (an S3TSTREAM_SOURCE__*/S3TSTREAM_TABLE__* variable sets them too)"))])
            if not data["tables"]:
                raise tables.FieldProblems([("tables", "at least one [[tables]] entry (or use [source]/[table])")])
        return data

    @model_validator(mode="after")
    def _cross(self) -> "Config":
        tables.check(self)  # key columns, upsert rules, [[tables]] uniqueness (each error names its entry)
        tables.unify(self)
        return self

    # ------------------------------------------------------------ derived names
    @property
    def names(self) -> "Names":
        return Names(self)

    def key_columns(self) -> list[tuple[KeyAttribute, str]]:
        """(DynamoDB key attribute, lake column name) pairs, partition key first."""
        return tables.key_columns(self.source, self.table)

    # ------------------------------------------------------------ tables (config/tables.py)
    def scopes(self) -> list["Config"]:
        """One config per table, each scoped to it (source/table are that entry's)."""
        return tables.scopes(self)

    def scoped(self, table: str | None) -> "Config":
        """The config scoped to one lake table (`--table NAME`; optional with one table)."""
        return tables.scoped(self, table)

    def job_name(self, job: str) -> str:
        """A long job's key in the state (`jobs.<key>`): per table in a [[tables]] config (scope
        it first), the bare name in a [source]/[table] one (as state files before [[tables]])."""
        return f"{job}:{self.names.table}" if self.tables else job

    @property
    def table_names(self) -> list[str]:
        """The lake table names, in config order."""
        return tables.table_names(self)

    @property
    def state_dir(self) -> Path:
        base = self.path.parent if self.path else Path.cwd()
        return base / ".s3tstream"

    @property
    def state_path(self) -> Path:
        return self.state_dir / f"{self.stack.name}.json"


class Names:
    """Every resource name of the stack, derived from stack.name unless set in the config."""

    def __init__(self, cfg: Config) -> None:
        s = cfg.stack.name
        self.stack = s
        self.source_table = cfg.source.table or s
        self.stream = cfg.stream.name or f"{s}-changes"
        self.table_bucket = cfg.table.bucket or f"{s}-lake"
        self.namespace = cfg.table.namespace or s.replace("-", "_")
        self.table = cfg.table.name or tables.default_lake_table(self.source_table)
        self.firehose = cfg.firehose.name or f"{s}-to-lake"
        self.transform_function = cfg.firehose.lambda_name or f"{s}-transform"
        self.firehose_role = f"s3tstream-{s}-firehose"
        self.transform_role = f"s3tstream-{s}-transform"
        self.firehose_log_group = f"/aws/kinesisfirehose/{self.firehose}"
        self.firehose_log_stream = "IcebergDelivery"
        self.transform_log_group = f"/aws/lambda/{self.transform_function}"
        self._error_bucket = cfg.firehose.error_bucket
        self._region = cfg.stack.region
        # CloudWatch alarm names are per account and Region: the prefix makes them this stack's.
        self.alarm_prefix = f"s3tstream-{s}-"
        self.alarm_topic = f"s3tstream-{s}-alarms"

    def error_bucket(self, account: str) -> str:
        # S3 bucket names are global: the account and Region make the default unique.
        return self._error_bucket or f"{self.stack}-err-{account}-{self._region}"

    def results_bucket(self, account: str) -> str:
        return f"{self.stack}-ath-{account}-{self._region}"

    def stack_tag(self) -> dict[str, str]:
        return {"s3tstream:stack": self.stack}


# ---------------------------------------------------------------- loading
def _env_overrides(environ: dict[str, str]) -> list[tuple[list[str], Any, str]]:
    out = []
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        path = [p.lower() for p in var[len(ENV_PREFIX):].split("__")]
        try:
            value = tomllib.loads(f"v = {raw}")["v"]  # numbers, booleans, arrays, inline tables
        except tomllib.TOMLDecodeError:
            value = raw
        out.append((path, value, var))
    return sorted(out)


def _loc(loc: tuple) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts[-1] = f"{parts[-1]}[{p}]" if parts else f"[{p}]"
        elif not str(p).startswith(("function-", "constrained-")) and p not in ("list", "dict"):
            parts.append(str(p))
    return ".".join(parts)


def build(data: dict, source: str = "", path: Path | None = None) -> Config:
    """Validate a config dict, turning pydantic's errors into one ConfigError naming each key."""
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = _loc(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, tables.FieldProblems):  # cross-key rules name their own keys
                problems += [(".".join(p for p in (key, path) if p), m) for path, m in cause.problems]
                continue
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            elif err["type"] == "missing":
                msg = "required key is missing"
            problems.append((key, msg))
        raise ConfigError(problems, source) from None
    cfg.path = path
    return cfg


def resolve_path(path: str | Path | None) -> Path:
    return Path(path or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def load(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Read the config file, apply S3TSTREAM_<SECTION>__<KEY> overrides, validate."""
    environ = dict(os.environ if environ is None else environ)
    p = resolve_path(path)
    if not p.is_file():
        raise ConfigError(
            [("", f"no config file at {p}")],
            hint="run `s3tstream init` to write a starter config, or pass --config PATH",
        )
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([("", f"not valid TOML: {e}")], str(p),
                          hint="fix the TOML syntax at the line and column named above") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([("", f"cannot read: {e}")], str(p), hint="check the file's permissions and encoding (UTF-8)") from None
    overrides: dict[str, str] = {}  # "stack.region" -> "S3TSTREAM_STACK__REGION"
    for keys, value, var in _env_overrides(environ):
        node = data
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ConfigError([(".".join(keys), f"{var} overrides a key that is not a table")], str(p),
                                  hint=f"fix or unset the environment variable {var}")
            node = nxt
        node[keys[-1]] = value
        overrides[".".join(keys)] = var
    try:
        return build(data, str(p), p.resolve())
    except ConfigError as e:
        # a key set by an environment variable: name the variable, not (only) the file
        def var_of(key: str) -> str | None:
            return next((v for k, v in overrides.items() if key == k or key.startswith((k + ".", k + "["))), None)

        if not any(var_of(k) for k, _ in e.problems):
            raise
        problems = [(k, f"{m} (set by the environment variable {var_of(k)})" if var_of(k) else m) for k, m in e.problems]
        raise ConfigError(problems, f"{p} with S3TSTREAM_* environment overrides",
                          hint="fix or unset the environment variables named above, or the keys in the file; "
                               "config.example.toml documents every key") from None
