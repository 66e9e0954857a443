"""create-source: the DynamoDB table the pipeline reads from (created, or adopted)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws.client import is_not_found, unless_gone, wait_until
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec, tag_map


def desired_keys(ctx: Ctx) -> list[tuple[str, str, str]]:
    """(attribute, HASH|RANGE, S|N|B) as the config wants them."""
    src = ctx.cfg.source
    out = [(src.partition_key.name, "HASH", src.partition_key.type)]
    if src.sort_key:
        out.append((src.sort_key.name, "RANGE", src.sort_key.type))
    return out


def live_keys(table: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    keys = sorted(table.get("KeySchema", []), key=lambda k: k["KeyType"] != "HASH")
    return [(k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")) for k in keys]


def fmt_keys(keys: list[tuple[str, str, str]]) -> str:
    return ", ".join(f"{a} {k} ({t})" for a, k, t in keys)


class SourceTable(ResourceSpec):
    kind = "dynamodb-table"
    data = True
    taggable = True
    per_table = True
    singular = True  # a renamed table of an entry: the old one stays with its data (engine.renamed)

    @property
    def adoptable(self) -> bool:  # type: ignore[override]
        return self.ctx.cfg.source.adopt_existing

    @property
    def name(self) -> str:
        return self.ctx.names.source_table

    def _client(self) -> Any:
        return self.ctx.aws.client("dynamodb")

    def observe(self) -> Observed:
        ddb = self._client()
        try:
            t = ddb.describe_table(TableName=self.name)["Table"]
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        obs = Observed(exists=True, id=t["TableArn"], outputs={"arn": t["TableArn"], "status": t["TableStatus"]})
        want, have = desired_keys(self.ctx), live_keys(t)
        if want != have:
            obs.conflict = (
                f"the existing table's key schema differs from the config:\n"
                f"    config: {fmt_keys(want)}\n    table:  {fmt_keys(have)}"
            )
            return obs
        tags = [tg for page in ddb.get_paginator("list_tags_of_resource").paginate(ResourceArn=t["TableArn"])
                for tg in page.get("Tags", [])]
        self.ctx.judge(obs, tags)
        rec = self.ctx.state.get(self.kind, self.name)
        if rec is not None and rec.ownership == "owned":
            # Only a table we own is brought in line; an adopted one is the user's to change.
            src = self.ctx.cfg.source
            billing = t.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
            if billing != src.billing:
                obs.drift.append(Drift("billing", billing, src.billing))
            elif billing == "PROVISIONED":
                pt = t.get("ProvisionedThroughput", {})
                if (pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")) != (src.read_capacity, src.write_capacity):
                    obs.drift.append(Drift("capacity", (pt.get("ReadCapacityUnits"), pt.get("WriteCapacityUnits")),
                                           (src.read_capacity, src.write_capacity), "provisioned capacity"))
            if self._pitr() != src.point_in_time_recovery:
                obs.drift.append(Drift("pitr", not src.point_in_time_recovery, src.point_in_time_recovery,
                                       "point-in-time recovery -> {new}"))
        return obs

    def _pitr(self) -> bool:
        r = self._client().describe_continuous_backups(TableName=self.name)
        desc = r["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        return desc.get("PointInTimeRecoveryStatus") == "ENABLED"

    def _billing_args(self) -> dict[str, Any]:
        src = self.ctx.cfg.source
        if src.billing == "PROVISIONED":
            return {
                "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": {"ReadCapacityUnits": src.read_capacity, "WriteCapacityUnits": src.write_capacity},
            }
        return {"BillingMode": "PAY_PER_REQUEST"}

    def create(self) -> dict[str, Any]:
        keys = desired_keys(self.ctx)
        t = self._client().create_table(
            TableName=self.name,
            KeySchema=[{"AttributeName": a, "KeyType": k} for a, k, _ in keys],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, _, t in keys],
            Tags=[{"Key": k, "Value": v} for k, v in self.ctx.tags().items()],
            **self._billing_args(),
        )["TableDescription"]
        self._wait_active()
        if self.ctx.cfg.source.point_in_time_recovery:
            self._set_pitr(True)
        return {"id": t["TableArn"], "arn": t["TableArn"]}

    def _wait_active(self) -> None:
        def check() -> tuple[bool, str]:
            st = self._client().describe_table(TableName=self.name)["Table"]["TableStatus"]
            return st == "ACTIVE", st

        wait_until(check, f"table {self.name}", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)

    def _set_pitr(self, on: bool) -> None:
        self._client().update_continuous_backups(
            TableName=self.name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": on}
        )

    def update(self, observed: Observed) -> dict[str, Any]:
        src = self.ctx.cfg.source
        if observed.drifted("billing", "capacity"):
            self._client().update_table(TableName=self.name, **self._billing_args())
            self._wait_active()
        if observed.drifted("pitr"):
            self._set_pitr(src.point_in_time_recovery)
        return {}

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        ctx.aws.client("dynamodb").tag_resource(ResourceArn=record.id, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        ddb = ctx.aws.client("dynamodb")

        def read() -> dict[str, str]:
            arn = ddb.describe_table(TableName=record.name)["Table"]["TableArn"]
            # ListTagsOfResource pages (NextToken): every page is read
            return tag_map([tg for page in ddb.get_paginator("list_tags_of_resource").paginate(ResourceArn=arn)
                            for tg in page.get("Tags", [])])

        return unless_gone(read)

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        # the table holds data: the engine checked its live tags first (engine.not_ours)
        ddb = ctx.aws.client("dynamodb")
        try:
            ddb.delete_table(TableName=record.name)
        except ClientError as e:
            if is_not_found(e):
                return
            raise

        ctx.wait_for(lambda: ddb.describe_table(TableName=record.name)["Table"]["TableStatus"], f"table {record.name}", gone=True)


def resources(ctx: Ctx) -> list[ResourceSpec]:
    return [SourceTable(ctx.scoped(c)) for c in ctx.cfg.scopes()]
