"""Builders shared by the data-plane, Lambda and Athena tests (no tests here).

``Lake``: a table bucket, namespace and Iceberg table (real metadata), an error bucket, the
Lake Formation setup (admin + grants to the Firehose role) and readers for rows and error
records. ``Pipeline`` adds a Kinesis stream, a transform Lambda deployed from a zip and an ACTIVE
Firehose stream with the Iceberg destination; ``with_dynamodb`` feeds it from a DynamoDB table
through Kinesis Data Streams for DynamoDB and the product's transform (lambda_zip.py).
``scripted_zip`` builds a small transform whose behaviour the test chooses (contract tests).

Pipelines default to a 900 s buffer and a 0 s retry window: at time scale 1 the worker reads
records but never flushes on its own, so each ``drain()`` is exactly one flush (deterministic
commits), and a failing table goes to the error bucket at once.
"""

from __future__ import annotations

import base64
import io
import json
import textwrap
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from s3tstream.provision import lambda_zip
from s3tstream.lake import merge_on_read
from s3tstream.lake.catalog import S3TablesCatalog
from s3tstream.sandbox import client as sbc
from s3tstream.lake.schema import Col, TableSchema, schema_json
from s3tstream.transform import encode_settings
from s3tstream.transform import types as T
from s3tstream.transform.settings import CHANGELOG_COLUMNS

ACCOUNT = "123456789012"
REGION = "us-east-1"

# name, type, required (the transform's settings columns and the table's columns)
RICH_COLUMNS: list[tuple[str, str, bool]] = [
    ("pk", "string", True),
    ("amount", "decimal(12,2)", False),
    ("ts", "timestamp", False),
    ("day", "date", False),
    ("tags", "list<string>", False),
    ("nums", "list<long>", False),
    ("blob", "binary", False),
    ("info", "struct<a:string,b:long>", False),
    ("attrs", "map<string,string>", False),
    ("flag", "boolean", False),
    ("score", "double", False),
]


def _trust(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


def table_payload(columns: list[tuple[str, str, bool]], identifier: list[str], extra: dict[str, str] | None = None) -> dict[str, Any]:
    cols = [Col(n, T.parse_type(t), req, n, "data") for n, t, req in columns]
    for name, typ in (extra or {}).items():
        cols.append(Col(name, T.parse_type(typ), True, None, "changelog"))
    sj = schema_json(TableSchema(tuple(cols), tuple(identifier)))
    return {"iceberg": {
        "schemaV2": {"type": "struct", "schemaId": 0, "fields": sj["fields"], "identifierFieldIds": sj["identifier-field-ids"]},
        "properties": {"format-version": "2"},
    }}


def scripted_zip(body: str, module: str = "scripted") -> bytes:
    """A deployment package holding ``<module>.py`` with ``body`` (handler: ``<module>.handler``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(f"{module}.py", textwrap.dedent(body))
    return buf.getvalue()


# A transform driven by the records: each record's data is {"row": {...}, "op": ..., "result": ...};
# MODE (env) breaks the contract for the whole batch, or (collapse) keeps only the latest change
# per row key of the batch (largest "t"), as the product's transform does.
SCRIPTED = """
import base64, json, os

def handler(event, context):
    mode = os.environ.get("MODE", "echo")
    if mode == "raise":
        raise RuntimeError("transform exploded")
    if mode == "not_json":
        return "not a response"
    out = []
    latest = {}  # MODE=collapse: the latest change per row key of the batch, by the record's "t"
    for r in event["records"]:
        doc = json.loads(base64.b64decode(r["data"]))
        k = doc.get("row", {}).get("pk")
        if mode == "collapse" and (k not in latest or doc.get("t", 0) >= latest[k][1]):
            latest[k] = (r["recordId"], doc.get("t", 0))
    for r in event["records"]:
        doc = json.loads(base64.b64decode(r["data"]))
        if mode == "collapse" and latest[doc.get("row", {}).get("pk")][0] != r["recordId"]:
            out.append({"recordId": r["recordId"], "result": "Dropped", "data": r["data"]})
            continue
        row = doc["raw"].encode() if "raw" in doc else json.dumps(doc.get("row", {})).encode()  # raw: JSON text as is
        item = {"recordId": r["recordId"], "result": doc.get("result", "Ok"), "data": base64.b64encode(row).decode()}
        if doc.get("op"):
            item["metadata"] = {"otfMetadata": {"destinationDatabaseName": os.environ["DB"],
                                                "destinationTableName": os.environ["TABLE"],
                                                "operation": doc["op"]}}
        out.append(item)
    if mode == "drop_id" and out:
        out.pop()
    if mode == "dup_id" and out:
        out.append(dict(out[0]))
    if mode == "bad_result" and out:
        out[0]["result"] = "Maybe"
    return {"records": out}
"""


@dataclass
class Lake:
    endpoint: str
    make_client: Callable[..., Any]
    bucket: str
    namespace: str = "ns"
    table: str = "t"
    error_bucket: str = ""
    role_arn: str = ""
    bucket_arn: str = ""
    clients: dict[str, Any] = field(default_factory=dict)

    def c(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = self.make_client(service)
        return self.clients[service]

    @property
    def catalog_id(self) -> str:
        return f"{ACCOUNT}:s3tablescatalog/{self.bucket}"

    @property
    def catalog_arn(self) -> str:
        return f"arn:aws:glue:{REGION}:{ACCOUNT}:catalog/s3tablescatalog/{self.bucket}"

    def create(self, payload: dict[str, Any]) -> "Lake":
        st = self.c("s3tables")
        self.bucket_arn = st.create_table_bucket(name=self.bucket)["arn"]
        st.create_namespace(tableBucketARN=self.bucket_arn, namespace=[self.namespace])
        st.create_table(tableBucketARN=self.bucket_arn, namespace=self.namespace, name=self.table, format="ICEBERG",
                        metadata=payload)
        self.error_bucket = f"err-{self.bucket}"
        self.c("s3").create_bucket(Bucket=self.error_bucket)
        iam = self.c("iam")
        self.role_arn = iam.create_role(RoleName=f"fh-{self.bucket}", AssumeRolePolicyDocument=_trust("firehose.amazonaws.com"))["Role"]["Arn"]
        sbc.call(self.endpoint, "POST", "lakeformation/bootstrap", {})
        self.grant()
        return self

    def destroy(self) -> None:
        """Delete the table bucket (tables, namespaces first): the process-wide sandbox serves
        other tests, and `up`'s preflight counts table buckets against the quota of 10."""
        st = self.c("s3tables")
        for ns in st.list_namespaces(tableBucketARN=self.bucket_arn).get("namespaces", []):
            for t in st.list_tables(tableBucketARN=self.bucket_arn, namespace=ns["namespace"][0]).get("tables", []):
                st.delete_table(tableBucketARN=self.bucket_arn, namespace=ns["namespace"][0], name=t["name"])
            st.delete_namespace(tableBucketARN=self.bucket_arn, namespace=ns["namespace"][0])
        st.delete_table_bucket(tableBucketARN=self.bucket_arn)

    def _table_resource(self) -> dict[str, Any]:
        return {"Table": {"CatalogId": self.catalog_id, "DatabaseName": self.namespace, "Name": self.table}}

    def grant(self) -> None:
        lf = self.c("lakeformation")
        lf.grant_permissions(Principal={"DataLakePrincipalIdentifier": self.role_arn},
                             Resource={"Database": {"CatalogId": self.catalog_id, "Name": self.namespace}},
                             Permissions=["DESCRIBE"])
        lf.grant_permissions(Principal={"DataLakePrincipalIdentifier": self.role_arn},
                             Resource=self._table_resource(), Permissions=["ALL"])

    def revoke(self) -> None:
        self.c("lakeformation").revoke_permissions(Principal={"DataLakePrincipalIdentifier": self.role_arn},
                                                   Resource=self._table_resource(), Permissions=["ALL"])

    def catalog(self) -> S3TablesCatalog:
        props = {"py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO", "s3.region": REGION, "s3.endpoint": self.endpoint,
                 "s3.access-key-id": "testing", "s3.secret-access-key": "testing", "s3.force-virtual-addressing": "false"}
        return S3TablesCatalog(self.c("s3tables"), self.bucket_arn, **props)

    def load(self) -> Any:
        return self.catalog().load_table((self.namespace, self.table))

    def rows(self, key: str = "pk") -> list[dict[str, Any]]:
        rows = merge_on_read.scan(self.load())[0].to_pylist()  # chaos delivery writes delete files
        return sorted(rows, key=lambda r: tuple(str(r[k]) for k in key.split(",")))

    def error_objects(self) -> list[tuple[str, list[dict[str, Any]]]]:
        s3 = self.c("s3")
        out = []
        for obj in s3.list_objects_v2(Bucket=self.error_bucket).get("Contents", []):
            body = s3.get_object(Bucket=self.error_bucket, Key=obj["Key"])["Body"].read().decode()
            out.append((obj["Key"], [json.loads(line) for line in body.splitlines() if line.strip()]))
        return out

    def error_lines(self) -> list[dict[str, Any]]:
        return [line for _, lines in self.error_objects() for line in lines]


@dataclass
class Pipeline:
    lake: Lake
    stream: str = ""
    stream_arn: str = ""
    function_arn: str = ""
    delivery: str = ""
    ddb_table: str = ""

    @property
    def endpoint(self) -> str:
        return self.lake.endpoint

    def create(self, code: bytes, handler: str, env: dict[str, str], *, unique_keys: list[str] | None,
               append_only: bool = False, retries: int = 1, interval: int = 900, size_mb: int = 1,
               timeout: int = 30, retry_seconds: int = 0) -> "Pipeline":
        lake = self.lake
        kin = lake.c("kinesis")
        self.stream = f"ks-{lake.bucket}"
        kin.create_stream(StreamName=self.stream, ShardCount=2)
        self.stream_arn = kin.describe_stream_summary(StreamName=self.stream)["StreamDescriptionSummary"]["StreamARN"]
        iam = lake.c("iam")
        lrole = iam.create_role(RoleName=f"lam-{lake.bucket}", AssumeRolePolicyDocument=_trust("lambda.amazonaws.com"))["Role"]["Arn"]
        self.function_arn = lake.c("lambda").create_function(
            FunctionName=f"xf-{lake.bucket}", Runtime="python3.12", Role=lrole, Handler=handler,
            Code={"ZipFile": code}, Environment={"Variables": env}, Timeout=timeout,
        )["FunctionArn"]
        table_cfg: dict[str, Any] = {"DestinationDatabaseName": lake.namespace, "DestinationTableName": lake.table,
                                     "S3ErrorOutputPrefix": "errors/"}
        if unique_keys:
            table_cfg["UniqueKeys"] = unique_keys
        self.delivery = f"fh-{lake.bucket}"
        fh = lake.c("firehose")
        fh.create_delivery_stream(
            DeliveryStreamName=self.delivery, DeliveryStreamType="KinesisStreamAsSource",
            KinesisStreamSourceConfiguration={"KinesisStreamARN": self.stream_arn, "RoleARN": lake.role_arn},
            IcebergDestinationConfiguration={
                "RoleARN": lake.role_arn,
                "CatalogConfiguration": {"CatalogARN": lake.catalog_arn},
                "S3Configuration": {"RoleARN": lake.role_arn, "BucketARN": f"arn:aws:s3:::{lake.error_bucket}",
                                    "ErrorOutputPrefix": "errors/"},
                "DestinationTableConfigurationList": [table_cfg],
                "BufferingHints": {"SizeInMBs": size_mb, "IntervalInSeconds": interval},
                "RetryOptions": {"DurationInSeconds": retry_seconds},
                "ProcessingConfiguration": {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
                    {"ParameterName": "LambdaArn", "ParameterValue": self.function_arn},
                    {"ParameterName": "NumberOfRetries", "ParameterValue": str(retries)},
                    {"ParameterName": "BufferSizeInMBs", "ParameterValue": "1"},
                    {"ParameterName": "BufferIntervalInSeconds", "ParameterValue": "60"}]}]},
                "S3BackupMode": "FailedDataOnly",
                "AppendOnly": append_only,
            },
        )
        for _ in range(3):
            status = fh.describe_delivery_stream(DeliveryStreamName=self.delivery)["DeliveryStreamDescription"]["DeliveryStreamStatus"]
            if status == "ACTIVE":
                break
        assert status == "ACTIVE", status
        return self

    def destroy(self) -> None:
        fh = self.lake.c("firehose")
        if self.delivery:
            fh.delete_delivery_stream(DeliveryStreamName=self.delivery)
        if self.function_arn:
            self.lake.c("lambda").delete_function(FunctionName=self.function_arn)
        if self.ddb_table:
            self.lake.c("dynamodb").delete_table(TableName=self.ddb_table)
        if self.stream:
            self.lake.c("kinesis").delete_stream(StreamName=self.stream)

    def with_dynamodb(self, precision: str = "MICROSECOND") -> "Pipeline":
        ddb = self.lake.c("dynamodb")
        self.ddb_table = f"src-{self.lake.bucket}"
        ddb.create_table(TableName=self.ddb_table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        ddb.enable_kinesis_streaming_destination(
            TableName=self.ddb_table, StreamArn=self.stream_arn,
            EnableKinesisStreamingConfiguration={"ApproximateCreationDateTimePrecision": precision})
        dests = ddb.describe_kinesis_streaming_destination(TableName=self.ddb_table)["KinesisDataStreamDestinations"]
        assert dests[0]["DestinationStatus"] == "ACTIVE"
        return self

    def put(self, doc: dict[str, Any], key: str = "k") -> None:
        self.lake.c("kinesis").put_record(StreamName=self.stream, Data=json.dumps(doc).encode(), PartitionKey=key)

    def drain(self, timeout: float = 30) -> dict[str, Any]:
        return sbc.firehose_wait_drained(self.endpoint, self.delivery, timeout=timeout)[0]

    def source_records(self) -> list[dict[str, Any]]:
        kin = self.lake.c("kinesis")
        out = []
        for shard in kin.list_shards(StreamName=self.stream)["Shards"]:
            it = kin.get_shard_iterator(StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            out += kin.get_records(ShardIterator=it, Limit=10000)["Records"]
        return out


_created: list[Any] = []  # Lakes and Pipelines of the running test, newest last


def destroy_created() -> None:
    """Remove what the helpers created (call from an autouse fixture after each test)."""
    while _created:
        thing = _created.pop()
        try:
            thing.destroy()
        except Exception as exc:  # noqa: BLE001 - best effort; report, keep cleaning
            print(f"cleanup of {thing!r:.80} failed: {exc}")


def new_lake(sandbox: Any, client: Callable[..., Any], payload: dict[str, Any]) -> Lake:
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    lake = Lake(endpoint=sandbox.endpoint_url, make_client=client, bucket=bucket)
    _created.append(lake)
    return lake.create(payload)


def product_pipeline(sandbox: Any, client: Callable[..., Any], mode: str = "upsert",
                     columns: list[tuple[str, str, bool]] | None = None, **kw: Any) -> Pipeline:
    """DynamoDB -> Kinesis -> Firehose (the product's transform zip) -> Iceberg."""
    columns = columns or RICH_COLUMNS
    extra = CHANGELOG_COLUMNS if mode == "changelog" else None
    identifier = ["pk", "_event_id"] if mode == "changelog" else ["pk"]
    lake = new_lake(sandbox, client, table_payload(columns, identifier, extra))
    settings = {"database": lake.namespace, "table": lake.table, "mode": mode, "keys": ["pk"],
                "columns": [{"name": n, "type": t, "required": r} for n, t, r in columns]}
    p = Pipeline(lake)
    _created.append(p)
    p.create(lambda_zip.package().data, lambda_zip.HANDLER, encode_settings(settings),
                              unique_keys=["pk"] if mode == "upsert" else None, append_only=(mode == "changelog"), **kw)
    return p.with_dynamodb()


def scripted_pipeline(sandbox: Any, client: Callable[..., Any], mode: str = "echo",
                      columns: list[tuple[str, str, bool]] | None = None, unique_keys: list[str] | None = None,
                      **kw: Any) -> Pipeline:
    """Kinesis (records put by the test) -> Firehose (the scripted transform) -> Iceberg."""
    columns = columns or [("pk", "string", True), ("n", "long", False)]
    lake = new_lake(sandbox, client, table_payload(columns, ["pk"]))
    env = {"MODE": mode, "DB": lake.namespace, "TABLE": lake.table}
    p = Pipeline(lake)
    _created.append(p)
    return p.create(scripted_zip(SCRIPTED), "scripted.handler", env,
                    unique_keys=unique_keys if unique_keys is not None else ["pk"], **kw)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
