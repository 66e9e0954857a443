"""A small PyIceberg catalog over the boto3 ``s3tables`` API: one code path for AWS and the sandbox.

Tables are found with ``get_table`` / ``get_table_metadata_location``; metadata files are read
and written at the table's warehouse location through PyIceberg's FileIO (PyArrow's S3
filesystem, configured with the stack's endpoint, credentials and Region; on AWS writing there
takes ``s3tables:PutTableData``); a commit moves the pointer with
``update_table_metadata_location`` using the ``versionToken`` as an optimistic lock
(ConflictException when another writer moved it first -> CommitFailedException).

Metadata files are written with overwrite and never listed: the warehouse location refuses
ListObjects and DeleteObject (aws-notes; AWS manages unreferenced files itself).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pyiceberg.catalog import MetastoreCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError, NoSuchTableError
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC, PartitionSpec
from pyiceberg.serializers import FromInputFile, ToOutputFile
from pyiceberg.table import CommitTableResponse, Table
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortOrder

from s3tstream.aws.client import error_code, is_not_found

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import TableRequirement, TableUpdate
    from pyiceberg.typedef import Identifier

    from s3tstream.aws.client import Aws


class TableWithoutMetadata(NoSuchTableError):
    """The S3 table exists but has no metadataLocation (created without metadata)."""


def fileio_properties(aws: "Aws") -> dict[str, str]:
    """PyIceberg FileIO properties for the stack: PyArrow S3 with its endpoint, keys, Region."""
    props = {
        "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO",
        "s3.region": aws.region,
        "s3.force-virtual-addressing": "false",
    }
    if aws.endpoint_url:
        props["s3.endpoint"] = aws.endpoint_url
    creds = aws.session.get_credentials()
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        props["s3.access-key-id"] = frozen.access_key
        props["s3.secret-access-key"] = frozen.secret_key
        if frozen.token:
            props["s3.session-token"] = frozen.token
    return props


def metadata_file(location: str, version: int) -> str:
    return f"{location.rstrip('/')}/metadata/{version:05d}-{uuid.uuid4()}.metadata.json"


class S3TablesCatalog(MetastoreCatalog):
    """PyIceberg catalog for the tables of one table bucket, through boto3 ``s3tables``."""

    def __init__(self, client: Any, bucket_arn: str, name: str = "s3tables", **properties: str) -> None:
        super().__init__(name, **properties)
        self.client = client
        self.bucket_arn = bucket_arn

    @classmethod
    def for_stack(cls, aws: "Aws", bucket_arn: str) -> "S3TablesCatalog":
        return cls(aws.client("s3tables"), bucket_arn, **fileio_properties(aws))

    # ---------------------------------------------------------------- lookups
    def _split(self, identifier: "str | Identifier") -> tuple[str, str]:
        return self.identifier_to_database_and_table(identifier, NoSuchTableError)

    def table_info(self, identifier: "str | Identifier") -> dict[str, Any]:
        """get_table: versionToken, metadataLocation (maybe absent), warehouseLocation, tableARN."""
        ns, name = self._split(identifier)
        try:
            return self.client.get_table(tableBucketARN=self.bucket_arn, namespace=ns, name=name)
        except ClientError as e:
            if is_not_found(e):
                raise NoSuchTableError(f"no table {ns}.{name} in {self.bucket_arn}") from None
            raise

    def _location(self, identifier: "str | Identifier") -> dict[str, Any]:
        ns, name = self._split(identifier)
        try:
            return self.client.get_table_metadata_location(tableBucketARN=self.bucket_arn, namespace=ns, name=name)
        except ClientError as e:
            if is_not_found(e):
                raise NoSuchTableError(f"no table {ns}.{name} in {self.bucket_arn}") from None
            raise

    def read_metadata(self, location: str) -> TableMetadata:
        io = self._load_file_io(location=location)
        return FromInputFile.table_metadata(io.new_input(location))

    def load_table(self, identifier: "str | Identifier") -> Table:
        ns, name = self._split(identifier)
        loc = self._location(identifier)
        where = loc.get("metadataLocation")
        if not where:
            raise TableWithoutMetadata(f"table {ns}.{name} has no Iceberg metadata yet")
        metadata = self.read_metadata(where)
        return Table(identifier=(ns, name), metadata=metadata, metadata_location=where,
                     io=self._load_file_io(metadata.properties, where), catalog=self)

    # ---------------------------------------------------------------- writes
    def _write_and_point(self, ns: str, name: str, version_token: str, metadata: TableMetadata, location: str) -> str:
        io = self._load_file_io(metadata.properties, location)
        # overwrite: no existence check (that would list the warehouse, which refuses it)
        ToOutputFile.table_metadata(metadata, io.new_output(location), overwrite=True)
        try:
            r = self.client.update_table_metadata_location(
                tableBucketARN=self.bucket_arn, namespace=ns, name=name,
                versionToken=version_token, metadataLocation=location,
            )
        except ClientError as e:
            if error_code(e) in ("ConflictException", "VersionTokenMismatch", "409"):
                raise CommitFailedException(f"table {ns}.{name} changed meanwhile: {e}") from None
            raise
        return r.get("versionToken", "")

    def initialize_table(
        self,
        identifier: "str | Identifier",
        schema: "Schema",
        partition_spec: PartitionSpec = UNPARTITIONED_PARTITION_SPEC,
        sort_order: SortOrder = UNSORTED_SORT_ORDER,
        properties: dict[str, str] | None = None,
    ) -> Table:
        """Write first metadata (v0) for a table that has none, then point the table at it.

        Raises CommitFailedException when the table got metadata (or moved) meanwhile.
        """
        ns, name = self._split(identifier)
        loc = self._location(identifier)
        if loc.get("metadataLocation"):
            raise CommitFailedException(f"table {ns}.{name} already has metadata at {loc['metadataLocation']}")
        warehouse = loc["warehouseLocation"].rstrip("/")
        metadata = new_table_metadata(
            schema=schema, partition_spec=partition_spec, sort_order=sort_order,
            location=warehouse, properties=dict(properties or {}),
        )
        where = metadata_file(warehouse, 0)
        self._write_and_point(ns, name, loc["versionToken"], metadata, where)
        return Table(identifier=(ns, name), metadata=metadata, metadata_location=where,
                     io=self._load_file_io(metadata.properties, where), catalog=self)

    def commit_table(
        self, table: Table, requirements: "tuple[TableRequirement, ...]", updates: "tuple[TableUpdate, ...]"
    ) -> CommitTableResponse:
        ns, name = self._split(table.name())
        loc = self._location((ns, name))
        if loc.get("metadataLocation") != table.metadata_location:
            raise CommitFailedException(f"table {ns}.{name} moved to {loc.get('metadataLocation')} meanwhile")
        current = self.load_table((ns, name)) if loc.get("metadataLocation") else None
        staged = self._update_and_stage_table(current, (ns, name), requirements, updates)
        if current is not None and staged.metadata == current.metadata:
            return CommitTableResponse(metadata=current.metadata, metadata_location=current.metadata_location)
        self._write_and_point(ns, name, loc["versionToken"], staged.metadata, staged.metadata_location)
        return CommitTableResponse(metadata=staged.metadata, metadata_location=staged.metadata_location)

    # ---------------------------------------------------------------- namespaces / listing
    def list_tables(self, namespace: "str | Identifier") -> list["Identifier"]:
        ns = self.namespace_to_string(namespace)
        out: list[Identifier] = []
        for page in self.client.get_paginator("list_tables").paginate(tableBucketARN=self.bucket_arn, namespace=ns):
            out += [(ns, t["name"]) for t in page.get("tables", [])]
        return out

    def list_namespaces(self, namespace: "str | Identifier" = ()) -> list["Identifier"]:
        if namespace:
            return []
        out: list[Identifier] = []
        for page in self.client.get_paginator("list_namespaces").paginate(tableBucketARN=self.bucket_arn):
            out += [tuple(n["namespace"]) for n in page.get("namespaces", [])]
        return out

    def load_namespace_properties(self, namespace: "str | Identifier") -> dict[str, str]:
        ns = self.namespace_to_string(namespace)
        try:
            self.client.get_namespace(tableBucketARN=self.bucket_arn, namespace=ns)
        except ClientError as e:
            if is_not_found(e):
                raise NoSuchNamespaceError(ns) from None
            raise
        return {}

    # ---------------------------------------------------------------- not offered here
    def _unsupported(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError("s3tstream provisions tables with the s3tables API, not through this catalog")

    create_table = _unsupported  # type: ignore[assignment]
    create_namespace = _unsupported  # type: ignore[assignment]
    drop_namespace = _unsupported  # type: ignore[assignment]
    drop_table = _unsupported  # type: ignore[assignment]
    register_table = _unsupported  # type: ignore[assignment]
    rename_table = _unsupported  # type: ignore[assignment]
    update_namespace_properties = _unsupported  # type: ignore[assignment]
    list_views = lambda self, namespace: []  # noqa: E731
    load_view = _unsupported  # type: ignore[assignment]
    drop_view = _unsupported  # type: ignore[assignment]
    register_view = _unsupported  # type: ignore[assignment]
    view_exists = lambda self, identifier: False  # noqa: E731

