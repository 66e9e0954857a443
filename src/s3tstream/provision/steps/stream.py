"""create-stream: the Kinesis stream, then the table's Kinesis streaming destination.

aws-notes: the stream must be ACTIVE before enable_kinesis_streaming_destination, whose
precision we set explicitly (the docs disagree on the default), then wait for ACTIVE.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws.client import error_code, is_not_found, unless_gone, wait_until
from s3tstream.errors import AwsError
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec, tag_map

MANAGED_KEY = "alias/aws/kinesis"


class KinesisStream(ResourceSpec):
    kind = "kinesis-stream"
    taggable = True
    singular = True

    @property
    def name(self) -> str:
        return self.ctx.names.stream

    def _k(self) -> Any:
        return self.ctx.aws.client("kinesis")

    def observe(self) -> Observed:
        try:
            s = self._k().describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        if s["StreamStatus"] == "DELETING":
            return Observed(exists=False)
        obs = Observed(exists=True, id=s["StreamARN"], outputs={"arn": s["StreamARN"]})
        # ListTagsForStream returns at most Limit tags (its default is not documented): 50, the
        # most a stream can carry, so the stack's tags are always in this page
        tags = self._k().list_tags_for_stream(StreamName=self.name, Limit=50).get("Tags", [])
        self.ctx.judge(obs, tags)
        cfg = self.ctx.cfg.stream
        mode = s.get("StreamModeDetails", {}).get("StreamMode", "PROVISIONED")
        if mode != cfg.mode:
            obs.drift.append(Drift("mode", mode, cfg.mode))
        elif cfg.mode == "PROVISIONED" and s.get("OpenShardCount") != cfg.shards:
            obs.drift.append(Drift("shards", s.get("OpenShardCount"), cfg.shards))
        if s.get("RetentionPeriodHours") != cfg.retention_hours:
            obs.drift.append(Drift("retention", s.get("RetentionPeriodHours"), cfg.retention_hours, "{field} {old}h -> {new}h"))
        encrypted = s.get("EncryptionType", "NONE") == "KMS"
        if encrypted != cfg.encryption:
            obs.drift.append(Drift("encryption", "none" if cfg.encryption else "KMS", "KMS" if cfg.encryption else "none",
                                   "{field} -> {new}"))
        if s["StreamStatus"] != "ACTIVE":
            obs.drift.append(Drift("status", s["StreamStatus"], "ACTIVE", "{field} {old} (waiting for {new})"))
        return obs

    def _wait_active(self) -> str:
        arn = ""

        def check() -> tuple[bool, str]:
            nonlocal arn
            s = self._k().describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]
            arn = s["StreamARN"]
            return s["StreamStatus"] == "ACTIVE", s["StreamStatus"]

        wait_until(check, f"stream {self.name}", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)
        return arn

    def create(self) -> dict[str, Any]:
        cfg = self.ctx.cfg.stream
        args: dict[str, Any] = {"StreamName": self.name, "StreamModeDetails": {"StreamMode": cfg.mode}, "Tags": self.ctx.tags()}
        if cfg.mode == "PROVISIONED":
            args["ShardCount"] = cfg.shards
        try:
            self._k().create_stream(**args)
        except ClientError as e:
            # A stream of this name may be DELETING after a recent down: wait and try once more.
            if error_code(e) != "ResourceInUseException":
                raise
            self._wait_gone(self.ctx, self.name)
            self._k().create_stream(**args)
        arn = self._wait_active()
        self._apply_settings(retention=True, encryption=True)
        return {"id": arn, "arn": arn}

    def _apply_settings(self, *, retention: bool, encryption: bool) -> None:
        cfg = self.ctx.cfg.stream
        k = self._k()
        if retention:
            cur = k.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]["RetentionPeriodHours"]
            if cfg.retention_hours > cur:
                k.increase_stream_retention_period(StreamName=self.name, RetentionPeriodHours=cfg.retention_hours)
                self._wait_active()
            elif cfg.retention_hours < cur:
                k.decrease_stream_retention_period(StreamName=self.name, RetentionPeriodHours=cfg.retention_hours)
                self._wait_active()
        if encryption:
            enc = k.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"].get("EncryptionType", "NONE")
            if cfg.encryption and enc != "KMS":
                k.start_stream_encryption(StreamName=self.name, EncryptionType="KMS", KeyId=MANAGED_KEY)
                self._wait_active()
            elif not cfg.encryption and enc == "KMS":
                k.stop_stream_encryption(StreamName=self.name, EncryptionType="KMS", KeyId=MANAGED_KEY)
                self._wait_active()

    def update(self, observed: Observed) -> dict[str, Any]:
        cfg = self.ctx.cfg.stream
        k = self._k()
        self._wait_active()
        if observed.drifted("mode"):
            k.update_stream_mode(StreamARN=observed.id, StreamModeDetails={"StreamMode": cfg.mode})
            self._wait_active()
        if cfg.mode == "PROVISIONED" and observed.drifted("shards", "mode"):
            summary = k.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]
            if summary.get("OpenShardCount") != cfg.shards:
                k.update_shard_count(StreamName=self.name, TargetShardCount=cfg.shards, ScalingType="UNIFORM_SCALING")
                self._wait_active()
        self._apply_settings(
            retention=observed.drifted("retention"),
            encryption=observed.drifted("encryption"),
        )
        return {}

    @staticmethod
    def _wait_gone(ctx: Ctx, name: str) -> None:
        k = ctx.aws.client("kinesis")
        ctx.wait_for(lambda: k.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"],
                     f"stream {name}", gone=True)

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        ctx.aws.client("kinesis").add_tags_to_stream(StreamName=record.name, Tags=tags)

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        got = unless_gone(lambda: ctx.aws.client("kinesis").list_tags_for_stream(StreamName=record.name, Limit=50))
        return None if got is None else tag_map(got.get("Tags", []))

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        # its records and consumers go with it: the engine checked its live tags first (engine.not_ours)
        try:
            ctx.aws.client("kinesis").delete_stream(StreamName=record.name, EnforceConsumerDeletion=True)
        except ClientError as e:
            if is_not_found(e):
                return
            raise
        cls._wait_gone(ctx, record.name)


LIVE = ("ENABLING", "ACTIVE", "UPDATING")


def _destinations(ddb: Any, table: str) -> list[dict[str, Any]]:
    return ddb.describe_kinesis_streaming_destination(TableName=table).get("KinesisDataStreamDestinations", [])


class StreamingDestination(ResourceSpec):
    """The table -> stream link (Kinesis Data Streams for DynamoDB). Untaggable: a link this
    stack did not make is adopted, so `down` only disables what this stack enabled."""

    kind = "kinesis-streaming-destination"
    adoptable = True
    per_table = True
    singular = True
    replace_first = True  # the renamed table (or stream) stops streaming before the new one starts

    @property
    def name(self) -> str:
        return f"{self.ctx.names.source_table}->{self.ctx.names.stream}"

    def _stream_arn(self) -> str:
        rec = self.ctx.state.get(KinesisStream.kind, self.ctx.names.stream)
        if rec and rec.id:
            return rec.id
        return self.ctx.aws.arn("kinesis", f"stream/{self.ctx.names.stream}")

    def observe(self) -> Observed:
        ddb = self.ctx.aws.client("dynamodb")
        try:
            dests = _destinations(ddb, self.ctx.names.source_table)
        except ClientError as e:
            if is_not_found(e):
                return Observed(exists=False)
            raise
        arn = self._stream_arn()
        mine = next((d for d in dests if d["StreamArn"] == arn and d["DestinationStatus"] in LIVE), None)
        if mine is None:
            # one this stack enabled towards a stream since renamed is disabled by `up` first
            replaced = {r.outputs.get("stream_arn") or r.id for r in self.ctx.state.doc.resources
                        if r.kind == self.kind and r.name != self.name and r.ownership == "owned"}
            other = next((d for d in dests if d["DestinationStatus"] in LIVE and d["StreamArn"] not in replaced), None)
            if other is not None:
                return Observed(
                    exists=True,
                    conflict=f"table {self.ctx.names.source_table} already streams to {other['StreamArn']}",
                )
            return Observed(exists=False)
        obs = Observed(exists=True, id=arn, outputs={"stream_arn": arn, "table": self.ctx.names.source_table})
        want = self.ctx.cfg.stream.timestamp_precision
        have = mine.get("ApproximateCreationDateTimePrecision", "MILLISECOND")
        if mine["DestinationStatus"] != "ACTIVE":
            obs.drift.append(Drift("status", mine["DestinationStatus"], "ACTIVE", "{field} {old} (waiting for {new})"))
        elif have != want:
            obs.drift.append(Drift("timestamp precision", have, want))
        return obs

    def _wait_active(self, arn: str) -> None:
        ddb = self.ctx.aws.client("dynamodb")

        def check() -> tuple[bool, str]:
            d = next((d for d in _destinations(ddb, self.ctx.names.source_table) if d["StreamArn"] == arn), None)
            status = d["DestinationStatus"] if d else "MISSING"
            if status in ("ENABLE_FAILED", "DISABLED", "MISSING"):
                why = (d or {}).get("DestinationStatusDescription", "")
                raise AwsError(
                    f"Kinesis streaming destination for {self.ctx.names.source_table} ended {status}: {why}",
                    "check that the stream is ACTIVE in the same account and Region, then run again",
                )
            return status == "ACTIVE", status

        wait_until(check, "Kinesis streaming destination", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)

    def create(self) -> dict[str, Any]:
        arn = self._stream_arn()
        self.ctx.aws.client("dynamodb").enable_kinesis_streaming_destination(
            TableName=self.ctx.names.source_table,
            StreamArn=arn,
            EnableKinesisStreamingConfiguration={
                "ApproximateCreationDateTimePrecision": self.ctx.cfg.stream.timestamp_precision
            },
        )
        self._wait_active(arn)
        return {"id": arn, "stream_arn": arn, "table": self.ctx.names.source_table}

    def update(self, observed: Observed) -> dict[str, Any]:
        arn = observed.id or self._stream_arn()
        self._wait_active(arn)
        if observed.drifted("timestamp precision"):
            self.ctx.aws.client("dynamodb").update_kinesis_streaming_destination(
                TableName=self.ctx.names.source_table,
                StreamArn=arn,
                UpdateKinesisStreamingConfiguration={
                    "ApproximateCreationDateTimePrecision": self.ctx.cfg.stream.timestamp_precision
                },
            )
            self._wait_active(arn)
        return {}

    @classmethod
    def owner(cls, ctx: Ctx, record: Any) -> tuple[str, str] | None:
        # enabled by this stack (its record) towards this stack's stream (the stream's tags)
        return (KinesisStream.kind, record.name.split("->", 1)[1])

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        table = record.outputs.get("table") or record.name.split("->", 1)[0]
        arn = record.outputs.get("stream_arn") or record.id
        ddb = ctx.aws.client("dynamodb")
        try:
            dests = _destinations(ddb, table)
        except ClientError as e:
            if is_not_found(e):
                return
            raise
        d = next((d for d in dests if d["StreamArn"] == arn), None)
        if d is None or d["DestinationStatus"] in ("DISABLED", "ENABLE_FAILED"):
            return
        if d["DestinationStatus"] != "DISABLING":
            try:
                ddb.disable_kinesis_streaming_destination(TableName=table, StreamArn=arn)
            except ClientError as e:
                if is_not_found(e):
                    return
                raise

        def check() -> tuple[bool, str]:
            cur = next((x for x in _destinations(ddb, table) if x["StreamArn"] == arn), None)
            st = cur["DestinationStatus"] if cur else "DISABLED"
            return st in ("DISABLED", "ENABLE_FAILED"), st

        wait_until(check, "disabling Kinesis streaming destination", timeout=ctx.timeout, interval=ctx.poll, progress=ctx.progress)


def resources(ctx: Ctx) -> list[ResourceSpec]:
    # one stream for the stack; every source table streams into it
    return [KinesisStream(ctx), *(StreamingDestination(ctx.scoped(c)) for c in ctx.cfg.scopes())]


def lanes(ctx: Ctx) -> list[tuple[str, tuple[str, ...], list[ResourceSpec]]]:
    """The stream needs nothing: it is created beside the source tables (its 30 s or so of
    CREATING overlap the tables'); only the tables' streaming destinations need both."""
    stream, *destinations = resources(ctx)
    return [("stream", (), [stream]), ("destination", ("create-source", "create-stream#stream"), destinations)]
