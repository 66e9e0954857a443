"""Every IAM and Lake Formation document the stack uses, as pure functions of config + Identity.

Rules (tests/test_policies.py checks them):
- the partition comes from the caller's ARN (``Identity.partition``), never a literal "aws";
- no wildcard actions; resources are the stack's own ARNs. A ``"*"`` (or ``/*``) resource is
  used only where AWS offers nothing narrower, each listed in WILDCARD_RESOURCES with why;
- every trust policy names one service principal and carries
  ``Condition: StringEquals aws:SourceAccount = <account>`` (confused-deputy protection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from s3tstream.aws.client import Identity
    from s3tstream.config.model import Config

VERSION = "2012-10-17"

# Inline policy names on the roles (the Firehose role carries two: its Glue/Lake Formation part,
# written by grant-lf, and its delivery part, written by create-firehose).
LAKE_POLICY_NAME = "s3tstream-lake"
DELIVERY_POLICY_NAME = "s3tstream-delivery"
TRANSFORM_POLICY_NAME = "s3tstream-transform"
LF_INTEGRATION_POLICY_NAME = "s3tstream-s3tables-integration"

# The two access-control modes of the account's S3 Tables analytics integration (aws-notes,
# "Settled since the first build"): Lake Formation grants, or IAM policies on the tables.
MODE_LF = "lakeformation"
MODE_IAM = "iam"

# IAM mode: what the Firehose role needs on the table bucket and table (Firehose prerequisites,
# "IAM access control"), and what a reader needs (Athena guide, option 1: the read actions).
S3TABLES_WRITE_ACTIONS = (
    "s3tables:GetTableBucket", "s3tables:GetNamespace", "s3tables:GetTable", "s3tables:GetTableMetadataLocation",
    "s3tables:UpdateTableMetadataLocation", "s3tables:GetTableData", "s3tables:PutTableData",
)
S3TABLES_READ_ACTIONS = (
    "s3tables:GetTableBucket", "s3tables:GetNamespace", "s3tables:GetTable", "s3tables:GetTableMetadataLocation",
    "s3tables:GetTableData",
)
# Actions whose resource is the table bucket (Service Authorization Reference, S3 Tables:
# resource type TableBucket); the others act on a Table. Of these, GetNamespace supports the
# condition key s3tables:namespace and GetTableBucket none of s3tables:namespace/tableName
# (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3tables.html);
# every table action here (GetTable, GetTableMetadataLocation, UpdateTableMetadataLocation,
# GetTableData, PutTableData) supports both s3tables:namespace and s3tables:tableName.
S3TABLES_BUCKET_ACTIONS = ("s3tables:GetTableBucket", "s3tables:GetNamespace")
S3TABLES_NAMESPACE_ACTIONS = ("s3tables:GetNamespace",)


def reader_policy_name(cfg: "Config") -> str:
    """The inline policy IAM mode puts on each reader (named for the stack: `down` removes only it)."""
    return f"s3tstream-{cfg.stack.name}-read"

# Resources that are "*" or a wildcard ARN on purpose: (action, reason). Tests fail on any other.
WILDCARD_RESOURCES: dict[str, str] = {
    "lakeformation:GetDataAccess": "takes no resource-level permissions: '*' is the only form it accepts",
    "s3tables:ListTableBuckets": "a list call with no resource-level permissions; scoped by aws:ResourceAccount",
    "lf-integration:bucket/*": "the S3 Tables integration is registered for every table bucket of the account and "
    "Region (ResourceArn bucket/*, aws-notes), so Lake Formation's role must reach all of them",
    "s3tables:bucket/<bucket>/table/*": "a table's ARN ends in an id S3 Tables makes at creation; the statement is "
    "pinned to this stack's table by the condition keys s3tables:namespace and s3tables:tableName instead",
}

# Lake Formation permissions the Firehose role gets on the table. Chosen over ALL ("Super"):
# DESCRIBE (Firehose calls glue:GetTable at stream creation and to read the schema), INSERT
# (appends data files), DELETE (writes delete files for updates/deletes, merge-on-read), SELECT
# (reads table data and metadata through Lake Formation's credential vending), ALTER (commits new
# snapshots: glue:UpdateTable). Not DROP, and no grant option: nothing Firehose needs.
# UNCONFIRMED: AWS's tutorials grant ALL; aws-notes lists this explicit set as equivalent for
# Firehose. `lakeformation.firehose_table_permissions = "all"` switches to ALL.
FIREHOSE_TABLE_PERMISSIONS = ("SELECT", "INSERT", "DELETE", "ALTER", "DESCRIBE")
FIREHOSE_DATABASE_PERMISSIONS = ("DESCRIBE",)
READER_TABLE_PERMISSIONS = ("SELECT", "DESCRIBE")


# ------------------------------------------------------------------ ARNs
def _arn(ident: "Identity", service: str, region: str, account: str, resource: str) -> str:
    return f"arn:{ident.partition}:{service}:{region}:{account}:{resource}"


def service_principal(service: str, ident: "Identity") -> str:
    # UNCONFIRMED: China partitions use the same "<service>.amazonaws.com" principals for these
    # services (the product refuses China Regions anyway: no Firehose Iceberg destination there).
    return f"{service}.amazonaws.com"


def role_arn(ident: "Identity", name: str) -> str:
    return f"arn:{ident.partition}:iam::{ident.account}:role/{name}"


def firehose_role_arn(cfg: "Config", ident: "Identity") -> str:
    return role_arn(ident, cfg.names.firehose_role)


def transform_role_arn(cfg: "Config", ident: "Identity") -> str:
    return role_arn(ident, cfg.names.transform_role)


def lf_integration_role_name(cfg: "Config") -> str:
    return f"s3tstream-{cfg.stack.name}-s3tables-lf"


def table_bucket_arn(cfg: "Config", ident: "Identity") -> str:
    return _arn(ident, "s3tables", cfg.stack.region, ident.account, f"bucket/{cfg.names.table_bucket}")


def s3tables_all_buckets_arn(cfg: "Config", ident: "Identity") -> str:
    """The ResourceArn the analytics integration registers with Lake Formation (aws-notes)."""
    return _arn(ident, "s3tables", cfg.stack.region, ident.account, "bucket/*")


def child_catalog_id(cfg: "Config", ident: "Identity") -> str:
    """Glue / Lake Formation catalog id of the table bucket: <account>:s3tablescatalog/<bucket>."""
    return f"{ident.account}:s3tablescatalog/{cfg.names.table_bucket}"


def glue_catalog_arn(cfg: "Config", ident: "Identity") -> str:
    """Firehose's CatalogConfiguration.CatalogARN for the table bucket (no resource link needed)."""
    return _arn(ident, "glue", cfg.stack.region, ident.account, f"catalog/s3tablescatalog/{cfg.names.table_bucket}")


def glue_lake_arns(cfg: "Config", ident: "Identity") -> list[str]:
    """The Glue ARNs a principal touches to reach the table through s3tablescatalog."""
    n, r, a = cfg.names, cfg.stack.region, ident.account
    return [
        _arn(ident, "glue", r, a, "catalog"),  # the account's root catalog (Glue checks it on every call)
        _arn(ident, "glue", r, a, "catalog/s3tablescatalog"),
        _arn(ident, "glue", r, a, f"catalog/s3tablescatalog/{n.table_bucket}"),
        _arn(ident, "glue", r, a, f"database/s3tablescatalog/{n.table_bucket}/{n.namespace}"),
        # one ARN per table of the stack (they share the bucket and namespace: config/tables.py)
        *(_arn(ident, "glue", r, a, f"table/s3tablescatalog/{n.table_bucket}/{n.namespace}/{t}") for t in cfg.table_names),
    ]


def kinesis_stream_arn(cfg: "Config", ident: "Identity") -> str:
    return _arn(ident, "kinesis", cfg.stack.region, ident.account, f"stream/{cfg.names.stream}")


def transform_function_arn(cfg: "Config", ident: "Identity") -> str:
    return _arn(ident, "lambda", cfg.stack.region, ident.account, f"function:{cfg.names.transform_function}")


def log_group_arn(cfg: "Config", ident: "Identity", group: str) -> str:
    return _arn(ident, "logs", cfg.stack.region, ident.account, f"log-group:{group}")


def s3_bucket_arn(ident: "Identity", bucket: str) -> str:
    return f"arn:{ident.partition}:s3:::{bucket}"


# ------------------------------------------------------------------ trust policies
def _trust(service: str, ident: "Identity", actions: list[str] | str = "sts:AssumeRole") -> dict[str, Any]:
    return {
        "Version": VERSION,
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": service_principal(service, ident)},
            "Action": actions,
            # Confused-deputy protection: only calls made on behalf of this account.
            "Condition": {"StringEquals": {"aws:SourceAccount": ident.account}},
        }],
    }


def firehose_trust(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    return _trust("firehose", ident)


def transform_trust(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    # UNCONFIRMED: that Lambda sets aws:SourceAccount when assuming an execution role (AWS's own
    # samples use this condition on lambda.amazonaws.com trust policies).
    return _trust("lambda", ident)


def lf_integration_trust(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    # aws-notes: the integration role is trusted by lakeformation.amazonaws.com for these actions.
    return _trust("lakeformation", ident, ["sts:AssumeRole", "sts:SetContext", "sts:SetSourceIdentity"])


# ------------------------------------------------------------------ permission policies
def s3tables_statements(cfg: "Config", ident: "Identity", actions: tuple[str, ...], sid: str) -> list[dict[str, Any]]:
    """IAM mode: ``actions`` on this stack's table bucket and table only."""
    bucket = table_bucket_arn(cfg, ident)
    on_bucket = [a for a in actions if a in S3TABLES_BUCKET_ACTIONS and a not in S3TABLES_NAMESPACE_ACTIONS]
    on_namespace = [a for a in actions if a in S3TABLES_NAMESPACE_ACTIONS]
    on_table = [a for a in actions if a not in S3TABLES_BUCKET_ACTIONS]
    out: list[dict[str, Any]] = []
    if on_bucket:
        out.append({"Sid": f"{sid}Bucket", "Effect": "Allow", "Action": on_bucket, "Resource": [bucket]})
    if on_namespace:
        # a condition key the request does not carry fails StringEquals, so GetTableBucket (no
        # s3tables:namespace) stays in its own statement above
        out.append({"Sid": f"{sid}Namespace", "Effect": "Allow", "Action": on_namespace, "Resource": [bucket],
                    "Condition": {"StringEquals": {"s3tables:namespace": cfg.names.namespace}}})
    return out + [
        {
            "Sid": f"{sid}Table",
            "Effect": "Allow",
            "Action": on_table,
            # WILDCARD_RESOURCES s3tables:bucket/<bucket>/table/*: pinned to the table by name
            "Resource": [f"{bucket}/table/*"],
            # several values: any of them (IAM: a condition key with a list matches any value)
            "Condition": {"StringEquals": {"s3tables:namespace": cfg.names.namespace,
                                           "s3tables:tableName": _one_or_list(cfg.table_names)}},
        },
    ]


def _one_or_list(values: list[str]) -> str | list[str]:
    # one table: the document a stack made before many tables (no drift on an existing stack)
    return values[0] if len(values) == 1 else list(values)


def firehose_lake_policy(cfg: "Config", ident: "Identity", mode: str = MODE_LF) -> dict[str, Any]:
    """The Glue / Lake Formation (or, in IAM mode, Glue / S3 Tables) part of the Firehose role
    (inline policy LAKE_POLICY_NAME)."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "GlueTableInS3TablesCatalog",
            "Effect": "Allow",
            "Action": ["glue:GetDatabase", "glue:GetTable", "glue:UpdateTable"],
            "Resource": glue_lake_arns(cfg, ident),
        },
    ]
    if mode == MODE_IAM:
        # no Lake Formation credential vending: Firehose reads and writes the table with the role's own rights
        statements += s3tables_statements(cfg, ident, S3TABLES_WRITE_ACTIONS, "S3Tables")
    else:
        statements.append({
            "Sid": "LakeFormationDataAccess",
            "Effect": "Allow",
            "Action": ["lakeformation:GetDataAccess"],
            "Resource": "*",  # WILDCARD_RESOURCES: GetDataAccess has no resource-level permissions
        })
    if cfg.table.kms_key_arn:
        statements.append({
            "Sid": "TableBucketKmsKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": [cfg.table.kms_key_arn],
        })
    return {"Version": VERSION, "Statement": statements}


def firehose_delivery_policy(
    cfg: "Config",
    ident: "Identity",
    error_bucket: str,
    *,
    stream_kms_key_arn: str | None = None,
) -> dict[str, Any]:
    """The delivery part of the Firehose role (inline policy DELIVERY_POLICY_NAME, create-firehose).

    Kinesis source, error bucket, transform Lambda, Firehose's own log stream.
    ``stream_kms_key_arn``: a customer managed key on the stream (the default AWS managed key
    alias/aws/kinesis needs no grant: UNCONFIRMED, per its key policy for Kinesis callers).
    """
    n = cfg.names
    bucket = s3_bucket_arn(ident, error_bucket)
    prefix = cfg.firehose.error_prefix
    log_group = log_group_arn(cfg, ident, n.firehose_log_group)
    fn = transform_function_arn(cfg, ident)
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadSourceStream",
            "Effect": "Allow",
            "Action": ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetShardIterator",
                       "kinesis:GetRecords", "kinesis:ListShards"],
            "Resource": [kinesis_stream_arn(cfg, ident)],
        },
        {
            "Sid": "ErrorBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
            "Resource": [bucket],
        },
        {
            "Sid": "ErrorObjects",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{bucket}/{prefix}*"],  # only under the error prefix
        },
        {
            "Sid": "TransformFunction",
            "Effect": "Allow",
            "Action": ["lambda:InvokeFunction", "lambda:GetFunctionConfiguration"],
            "Resource": [fn, f"{fn}:*"],  # the function and its versions/aliases
        },
        {
            "Sid": "DeliveryLogs",
            "Effect": "Allow",
            "Action": ["logs:PutLogEvents"],
            "Resource": [f"{log_group}:log-stream:{n.firehose_log_stream}"],
        },
    ]
    if stream_kms_key_arn:
        statements.append({
            "Sid": "StreamKmsKey", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [stream_kms_key_arn],
        })
    return {"Version": VERSION, "Statement": statements}


def transform_policy(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    """The transform Lambda's execution role: logs on its own log group only."""
    group = log_group_arn(cfg, ident, cfg.names.transform_log_group)
    return {
        "Version": VERSION,
        "Statement": [
            {"Sid": "OwnLogGroup", "Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": [group]},
            {"Sid": "OwnLogStreams", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": [f"{group}:log-stream:*"]},  # stream names are chosen by Lambda at run time
        ],
    }


def lf_integration_policy(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    """What Lake Formation's integration role does with S3 Tables (after AWS's managed policy
    AmazonS3TablesLakeFormationServiceRole, without bucket create/delete)."""
    buckets = s3tables_all_buckets_arn(cfg, ident)
    kms = [{
        # SSE-KMS table bucket: Lake Formation reads and writes its data with this role (aws-notes
        # "Settled since the first build", S3 guide "Permission requirements for S3 Tables SSE-KMS")
        "Sid": "TableBucketKmsKey",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": [cfg.table.kms_key_arn],
    }] if cfg.table.kms_key_arn else []
    return {
        "Version": VERSION,
        "Statement": kms + [
            {
                "Sid": "ListTableBuckets",
                "Effect": "Allow",
                "Action": ["s3tables:ListTableBuckets"],
                "Resource": "*",  # WILDCARD_RESOURCES: no resource-level permissions
                # UNCONFIRMED: that a call with no resource carries aws:ResourceAccount (a missing
                # key fails StringEquals and would deny the listing); AWS's managed policy
                # AmazonS3TablesLakeFormationServiceRole is the reference to compare with.
                "Condition": {"StringEquals": {"aws:ResourceAccount": ident.account}},
            },
            {
                "Sid": "TableData",
                "Effect": "Allow",
                "Action": [
                    "s3tables:GetTableBucket", "s3tables:GetNamespace", "s3tables:ListNamespaces",
                    "s3tables:CreateNamespace", "s3tables:DeleteNamespace",
                    "s3tables:GetTable", "s3tables:ListTables", "s3tables:CreateTable", "s3tables:DeleteTable",
                    "s3tables:RenameTable", "s3tables:GetTableMetadataLocation",
                    "s3tables:UpdateTableMetadataLocation", "s3tables:GetTableData", "s3tables:PutTableData",
                ],
                # WILDCARD_RESOURCES lf-integration:bucket/*: the integration covers every bucket
                "Resource": [buckets, f"{buckets}/table/*"],
                "Condition": {"StringEquals": {"aws:ResourceAccount": ident.account}},
            },
        ],
    }


S3TABLES_MAINTENANCE = "maintenance.s3tables.amazonaws.com"
MAINTENANCE_KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")


def maintenance_key_statement() -> dict[str, Any]:
    """The key policy statement an SSE-KMS table bucket needs: S3 Tables maintenance (compaction,
    snapshot and unreferenced-file removal) reads and writes the data with the key."""
    return {
        "Sid": "AllowS3TablesMaintenance",
        "Effect": "Allow",
        "Principal": {"Service": S3TABLES_MAINTENANCE},
        "Action": list(MAINTENANCE_KMS_ACTIONS),
        # In a key policy "*" is the key itself. UNCONFIRMED: the encryption context S3 Tables
        # maintenance sends (a condition narrowing this statement to one bucket); none is suggested.
        "Resource": "*",
    }


def key_policy_allows_maintenance(policy: dict[str, Any]) -> bool:
    """Whether a key policy lets the S3 Tables maintenance service use the key for both actions."""
    needed = set(MAINTENANCE_KMS_ACTIONS)
    for st in policy.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        svc = (st.get("Principal") or {}).get("Service") if isinstance(st.get("Principal"), dict) else None
        svcs = [svc] if isinstance(svc, str) else (svc or [])
        if S3TABLES_MAINTENANCE not in svcs:
            continue
        acts = st.get("Action", [])
        acts = [acts] if isinstance(acts, str) else acts
        if "kms:*" in acts:
            return True
        needed -= set(acts)
    return not needed


# ------------------------------------------------------------------ Lake Formation grants
@dataclass(frozen=True)
class LfGrant:
    """One grant: a principal, one Lake Formation resource, the permissions on it."""

    label: str
    principal: str
    resource: dict[str, Any]
    permissions: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.label} -> {self.principal}"

    def request(self, permissions: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
        """kwargs for grant_permissions / revoke_permissions."""
        return {
            "Principal": {"DataLakePrincipalIdentifier": self.principal},
            "Resource": self.resource,
            "Permissions": list(permissions if permissions is not None else self.permissions),
        }


def lf_database_resource(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    return {"Database": {"CatalogId": child_catalog_id(cfg, ident), "Name": cfg.names.namespace}}


def lf_table_resource(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    n = cfg.names
    return {"Table": {"CatalogId": child_catalog_id(cfg, ident), "DatabaseName": n.namespace, "Name": n.table}}


def firehose_table_permissions(cfg: "Config") -> tuple[str, ...]:
    return ("ALL",) if cfg.lakeformation.firehose_table_permissions == "all" else FIREHOSE_TABLE_PERMISSIONS


def lf_grants(cfg: "Config", ident: "Identity") -> list[LfGrant]:
    """Every grant the stack makes: the Firehose role (database, then each table), then each
    reader on each table. A grant on one table is that table's: removing the table from the
    config removes its grants (provision/engine.py), the others stay."""
    n = cfg.names
    role = firehose_role_arn(cfg, ident)
    out = [LfGrant(f"database {n.table_bucket}/{n.namespace}", role, lf_database_resource(cfg, ident),
                   FIREHOSE_DATABASE_PERMISSIONS)]
    for scoped in cfg.scopes():
        out.append(table_grant(scoped, ident, role, firehose_table_permissions(cfg)))
    for reader in cfg.lakeformation.readers:
        out += [table_grant(scoped, ident, reader, READER_TABLE_PERMISSIONS) for scoped in cfg.scopes()]
    return out


def table_grant(scoped: "Config", ident: "Identity", principal: str, permissions: tuple[str, ...]) -> LfGrant:
    """A grant on the table of a config scoped to one table."""
    n = scoped.names
    return LfGrant(f"table {n.table_bucket}/{n.namespace}.{n.table}", principal, lf_table_resource(scoped, ident),
                   permissions)


def reader_policy(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    """IAM mode: what a reader (an Athena user) needs to query the table through s3tablescatalog:
    the Glue catalog objects and the s3tables read actions on this bucket and table."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "GlueTableInS3TablesCatalog",
                "Effect": "Allow",
                "Action": ["glue:GetCatalog", "glue:GetDatabase", "glue:GetTable"],
                "Resource": glue_lake_arns(cfg, ident),
            },
            *s3tables_statements(cfg, ident, S3TABLES_READ_ACTIONS, "S3TablesRead"),
        ],
    }


IAM_ALLOWED_PRINCIPALS = "IAM_ALLOWED_PRINCIPALS"


def glue_integration_catalog_input(cfg: "Config", ident: "Identity", mode: str = MODE_LF) -> dict[str, Any]:
    """glue.create_catalog(Name="s3tablescatalog", CatalogInput=...) for the integration (aws-notes).

    Lake Formation mode: no default permissions (Lake Formation grants decide; the bucket/* ARN is
    registered with register_resource first). IAM mode, as the S3 console and the Glue guide's
    `glue create-catalog` make it: IAM_ALLOWED_PRINCIPALS holds ALL by default, so IAM policies decide."""
    iam_all = [{"Principal": {"DataLakePrincipalIdentifier": IAM_ALLOWED_PRINCIPALS}, "Permissions": ["ALL"]}]
    return {
        "FederatedCatalog": {"Identifier": s3tables_all_buckets_arn(cfg, ident), "ConnectionName": "aws:s3tables"},
        "CreateDatabaseDefaultPermissions": iam_all if mode == MODE_IAM else [],
        "CreateTableDefaultPermissions": [dict(p) for p in iam_all] if mode == MODE_IAM else [],
        "AllowFullTableExternalDataAccess": "True",
    }


# ------------------------------------------------------------------ buckets
def tls_only_bucket_policy(ident: "Identity", bucket: str) -> dict[str, Any]:
    """TLS only: deny every request to the bucket that is not made over HTTPS
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html,
    condition key aws:SecureTransport)."""
    arn = s3_bucket_arn(ident, bucket)
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def normalize(doc: Any) -> Any:
    """A policy document in a canonical form, to compare what AWS returns with what we want:
    single strings where IAM allows a list become one-element lists, lists are sorted."""
    if isinstance(doc, dict):
        out = {}
        for k, v in doc.items():
            v = normalize(v)
            if k in ("Action", "NotAction", "Resource", "NotResource") and isinstance(v, str):
                v = [v]
            out[k] = v
        return out
    if isinstance(doc, list):
        return sorted((normalize(x) for x in doc), key=repr)
    return doc


# The error bucket and the Athena results bucket take the same TLS-only policy.
error_bucket_policy = tls_only_bucket_policy


# ------------------------------------------------------------------ alarms (create-alarms)
def alarm_arn(cfg: "Config", ident: "Identity", name: str) -> str:
    return _arn(ident, "cloudwatch", cfg.stack.region, ident.account, f"alarm:{name}")


def alarm_topic_arn(cfg: "Config", ident: "Identity") -> str:
    return _arn(ident, "sns", cfg.stack.region, ident.account, cfg.names.alarm_topic)


def alarm_topic_policy(cfg: "Config", ident: "Identity") -> dict[str, Any]:
    """The stack's alarm topic: only CloudWatch may publish, and only for this stack's alarms in
    this account (aws:SourceArn names the alarms by their prefix; aws:SourceAccount guards
    against a confused deputy). The account's own principals reach the topic through IAM.
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Notify_Users_Alarm_Changes.html"""
    return {
        "Version": VERSION,
        "Statement": [{
            "Sid": "CloudWatchAlarmsOfThisStack",
            "Effect": "Allow",
            "Principal": {"Service": service_principal("cloudwatch", ident)},
            "Action": "sns:Publish",
            "Resource": alarm_topic_arn(cfg, ident),
            "Condition": {
                "ArnLike": {"aws:SourceArn": alarm_arn(cfg, ident, f"{cfg.names.alarm_prefix}*")},
                "StringEquals": {"aws:SourceAccount": ident.account},
            },
        }],
    }
