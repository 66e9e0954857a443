"""set-metadata: bring the table's Iceberg metadata in line with the config (PyIceberg).

- A table without metadata (the old sample's CDK made it, or `create_table` without metadata):
  initial Iceberg v2 metadata is written at its warehouse location and committed with
  update_table_metadata_location (versionToken lock).
- Columns added in the config, widened types (int->long, float->double, decimal precision),
  a required column made optional, table properties, format v1 -> v2: one new metadata version.
- Already in line: nothing is written (no mutating call at all).
- An incompatible change (type narrowed or changed, key columns changed, a new required column)
  is refused (exit 2) with what to do; nothing is written.
Commits retry on ConflictException (another writer moved the table), reloading each time.
Columns the table has but the config no longer names are kept (never dropped: that loses data).
"""

from __future__ import annotations

from typing import Any, Callable

from pyiceberg.exceptions import CommitFailedException, NoSuchTableError

from s3tstream.lake import schema
from s3tstream.errors import AwsError, PlanError
from s3tstream.lake.catalog import S3TablesCatalog, TableWithoutMetadata
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec
from s3tstream.provision.steps.lakehouse import bucket_arn

COMMIT_ATTEMPTS = 5
# Properties Iceberg keeps out of the properties map (format-version is a table attribute).
RESERVED_PROPERTIES = {"format-version"}


def _retry(ctx: Ctx, what: str, fn: Callable[[], Any]) -> Any:
    """Run fn, retrying when another writer committed first (a fresh load each time)."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return fn()
        except CommitFailedException as e:
            if attempt == COMMIT_ATTEMPTS:
                raise AwsError(
                    f"{what}: the table kept changing under us ({e})",
                    "another writer is committing to the table; run the command again",
                ) from None
            ctx.progress(f"{what}: table changed meanwhile, retrying ({attempt}/{COMMIT_ATTEMPTS - 1})")


class IcebergMetadata(ResourceSpec):
    """The table's Iceberg schema/properties as the config wants them (part of the table's data)."""

    kind = "iceberg-metadata"
    data = True
    per_table = True

    @property
    def name(self) -> str:
        n = self.ctx.names
        return f"{n.table_bucket}/{n.namespace}/{n.table}"

    @property
    def ident(self) -> tuple[str, str]:
        return (self.ctx.names.namespace, self.ctx.names.table)

    def catalog(self) -> S3TablesCatalog:
        return S3TablesCatalog.for_stack(self.ctx.aws, bucket_arn(self.ctx))

    def observe(self) -> Observed:
        cat = self.catalog()
        try:
            table = cat.load_table(self.ident)
        except TableWithoutMetadata:
            return Observed(exists=False)
        except NoSuchTableError:
            return Observed(exists=False)  # create-table-bucket makes it (with its metadata) first
        ts = schema.effective_schema(self.ctx.cfg)
        d = schema.diff_schema(table.schema(), ts)
        kept = schema.kept_columns_warning(d)
        if kept:
            self.ctx.progress(f"warning: {kept}")
        obs = Observed(exists=True, id=table.metadata_location, owned=True,
                       outputs={"metadata_location": table.metadata_location,
                                "schema_id": table.metadata.current_schema_id})
        if d.problems:
            obs.conflict = (
                "the config asks for a schema change the table cannot take:\n    "
                + "\n    ".join(d.problems) + "\n  " + schema.INCOMPATIBLE_HINT + "\n  Nothing was written."
            )
            return obs
        spec_problem = self._partition_problem(table)
        if spec_problem:
            obs.conflict = spec_problem
            return obs
        # update() re-diffs the live schema itself; the schema changes are listed as they are
        obs.drift += [Drift("schema", new=c, fmt="{new}") for c in d.changes]
        if table.metadata.format_version < 2:
            obs.drift.append(Drift("format version", table.metadata.format_version, 2, "{field} {old} -> {new} (Firehose needs v2)"))
        for k, v in self._properties().items():
            if table.metadata.properties.get(k) != v:
                obs.drift.append(Drift(f"property {k}", table.metadata.properties.get(k), v, "{field} = {new}"))
        return obs

    def _properties(self) -> dict[str, str]:
        return {k: v for k, v in schema.table_properties(self.ctx.cfg).items() if k not in RESERVED_PROPERTIES}

    def _partition_problem(self, table: Any) -> str | None:
        want = schema.pyiceberg_partition_spec(self.ctx.cfg, table.schema())
        have = table.spec()
        strip = lambda spec: [(f.source_id, str(f.transform), f.name) for f in spec.fields]  # noqa: E731
        if strip(want) == strip(have):
            return None
        return (
            f"table.partition {self.ctx.cfg.table.partition} differs from the table's partition spec "
            f"{[f'{f.name}={f.transform}' for f in have.fields] or 'unpartitioned'}: s3tstream sets the spec when it "
            "creates the table and does not evolve it. Put table.partition back, or start over with "
            "`s3tstream down --step create-table-bucket` (deletes the table's data) and `s3tstream up`."
        )

    def create(self) -> dict[str, Any]:
        """Initial metadata for a table that has none."""
        cfg = self.ctx.cfg
        ts = schema.effective_schema(cfg)
        sch = schema.pyiceberg_schema(ts)
        spec = schema.pyiceberg_partition_spec(cfg, sch)
        cat = self.catalog()

        try:
            cat.table_info(self.ident)
        except NoSuchTableError:
            raise PlanError(
                f"table {'.'.join(self.ident)} does not exist in {self.ctx.names.table_bucket}",
                "run `s3tstream step create-table-bucket` (or `s3tstream up`) first",
            ) from None

        def attempt() -> Any:
            try:
                return cat.initialize_table(self.ident, sch, spec, properties=schema.table_properties(cfg))
            except CommitFailedException:
                try:  # someone gave it metadata meanwhile: the next run's observe compares it
                    return cat.load_table(self.ident)
                except TableWithoutMetadata:
                    raise CommitFailedException("the table moved but still has no metadata") from None

        table = _retry(self.ctx, "writing initial metadata", attempt)
        self.ctx.progress(f"wrote initial Iceberg metadata for {'.'.join(self.ident)}")
        return {"id": table.metadata_location, "metadata_location": table.metadata_location,
                "schema_id": table.metadata.current_schema_id}

    def update(self, observed: Observed) -> dict[str, Any]:
        cat = self.catalog()
        ts = schema.effective_schema(self.ctx.cfg)
        props = self._properties()

        def attempt() -> Any:
            table = cat.load_table(self.ident)
            d = schema.diff_schema(table.schema(), ts)
            if d.problems:  # changed meanwhile into something we refuse
                raise AwsError("the table's schema changed meanwhile: " + "; ".join(d.problems),
                               "run `s3tstream plan` to see the difference")
            with table.transaction() as tx:
                if table.metadata.format_version < 2:
                    tx.upgrade_table_version(2)
                if d.add or d.widen or d.make_optional:
                    with tx.update_schema() as us:
                        for path, typ in d.add:
                            us.add_column(path, schema.to_py_type(typ), required=False)
                        for path, typ, _old in d.widen:
                            us.update_column(path, field_type=schema.to_py_type(typ))
                        for path in d.make_optional:
                            us.update_column(path, required=False)
                changed = {k: v for k, v in props.items() if table.metadata.properties.get(k) != v}
                if changed:
                    tx.set_properties(changed)
            return cat.load_table(self.ident)

        table = _retry(self.ctx, "evolving the table schema", attempt)
        return {"id": table.metadata_location, "metadata_location": table.metadata_location,
                "schema_id": table.metadata.current_schema_id}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        """The metadata lives and dies with the table (create-table-bucket deletes it)."""
        return None


def resources(ctx: Ctx) -> list[ResourceSpec]:
    return [IcebergMetadata(ctx.scoped(c)) for c in ctx.cfg.scopes()]
