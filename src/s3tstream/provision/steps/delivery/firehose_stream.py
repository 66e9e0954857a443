"""The Firehose stream (Kinesis source, Iceberg destination).

A stream goes CREATING -> ACTIVE or CREATING_FAILED (final; delete and create again). It
cannot be deleted while CREATING and can stay DELETING for minutes
(https://docs.aws.amazon.com/firehose/latest/APIReference/API_DeleteDeliveryStream.html).
Updates use the stream's CurrentDeliveryStreamVersionId and DestinationId (an optimistic lock).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from s3tstream.aws import policies
from s3tstream.aws.client import error_code, error_message, is_not_found, unless_gone, wait_until
from s3tstream.errors import AwsError
from s3tstream.provision.resource import Ctx, Drift, Observed, ResourceSpec, tag_map
from s3tstream.provision.steps.delivery.common import (
    error_bucket_name, ident_of, is_firehose_iam_propagation, recorded_owned, retry_iam,
)
from s3tstream.provision.steps.delivery.destination import (
    STREAM_TYPE, create_request, destination, destination_drift, update_request,
)


class DeliveryStream(ResourceSpec):
    kind = "firehose-stream"
    taggable = True

    @property
    def name(self) -> str:
        return self.ctx.names.firehose

    def _f(self) -> Any:
        return self.ctx.aws.client("firehose")

    def _describe(self) -> dict[str, Any] | None:
        try:
            return self._f().describe_delivery_stream(DeliveryStreamName=self.name)["DeliveryStreamDescription"]
        except ClientError as e:
            if is_not_found(e):
                return None
            raise

    def _want(self) -> dict[str, Any]:
        return destination(self.ctx.cfg, ident_of(self.ctx), error_bucket_name(self.ctx))

    def observe(self) -> Observed:
        d = self._describe()
        if d is None:
            return Observed(exists=False)
        status = d["DeliveryStreamStatus"]
        try:
            tags = self._f().list_tags_for_delivery_stream(DeliveryStreamName=self.name).get("Tags", [])
        except ClientError as e:
            if not is_not_found(e):
                raise
            return Observed(exists=False)  # deleted between the two calls
        owned = self.ctx.owns(tags) or recorded_owned(self.ctx, self.kind, self.name)
        if status in ("DELETING", "CREATING_FAILED") and owned:
            # Unusable and ours: create() waits it out or deletes it, then creates it again.
            return Observed(exists=False)
        obs = self.ctx.judge(Observed(exists=True, id=d["DeliveryStreamARN"], outputs={"arn": d["DeliveryStreamARN"]}), tags)
        if status == "DELETING_FAILED":
            obs.conflict = f"Firehose stream {self.name} failed to delete: {_failure(d)}"
            return obs
        if status == "CREATING_FAILED":
            obs.conflict = f"Firehose stream {self.name} (not this stack's) is CREATING_FAILED: {_failure(d)}"
            return obs
        ident = ident_of(self.ctx)
        if d.get("DeliveryStreamType") != STREAM_TYPE:
            obs.conflict = f"stream type is {d.get('DeliveryStreamType')}, not {STREAM_TYPE}; it must be recreated"
            return obs
        src = (d.get("Source") or {}).get("KinesisStreamSourceDescription", {}).get("KinesisStreamARN")
        if src and src != policies.kinesis_stream_arn(self.ctx.cfg, ident):
            obs.conflict = f"it reads {src}, not {policies.kinesis_stream_arn(self.ctx.cfg, ident)}; the source cannot be changed in place"
            return obs
        dests = d.get("Destinations") or [{}]
        have = dests[0].get("IcebergDestinationDescription")
        if have is None:
            obs.conflict = "its destination is not an Iceberg destination; it must be recreated"
            return obs
        want = self._want()
        have_cat = (have.get("CatalogConfiguration") or {}).get("CatalogARN")
        if have_cat != want["CatalogConfiguration"]["CatalogARN"]:
            obs.conflict = (f"it writes to catalog {have_cat}, not {want['CatalogConfiguration']['CatalogARN']}; "
                            "run `s3tstream down --step create-firehose`, then `s3tstream up`")
            return obs
        obs.outputs.update(version_id=d.get("VersionId"), destination_id=dests[0].get("DestinationId"))
        if status == "CREATING":
            obs.drift.append(Drift("status", status, "ACTIVE", "{field} {old} (waiting for {new})"))
        obs.drift.extend(destination_drift(want, have))
        return obs

    def _wait_active(self) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def check() -> tuple[bool, str]:
            d = self._describe()
            if d is None:
                raise AwsError(f"Firehose stream {self.name} disappeared while being created",
                               "run `s3tstream up` again")
            last.clear()
            last.update(d)
            st = d["DeliveryStreamStatus"]
            if st == "CREATING_FAILED":
                return True, st
            return st == "ACTIVE", st

        wait_until(check, f"Firehose stream {self.name}", timeout=self.ctx.timeout, interval=self.ctx.poll, progress=self.ctx.progress)
        if last.get("DeliveryStreamStatus") == "CREATING_FAILED":
            why = _failure(last)
            self.ctx.progress(f"Firehose stream {self.name} is CREATING_FAILED ({why}); deleting it so it can be created again")
            self._delete_and_wait(self.ctx, self.name)
            raise AwsError(
                f"Firehose could not create stream {self.name}: {why}",
                "the failed stream was deleted; fix the cause (role permissions, Lake Formation grants, the table), "
                "then run `s3tstream up` again",
            )
        return last

    def _clear_leftover(self) -> None:
        """A failed or deleting stream of this name (ours: observe said so) blocks the create."""
        d = self._describe()
        if d is None:
            return
        st = d["DeliveryStreamStatus"]
        if st == "CREATING_FAILED":
            self.ctx.progress(f"deleting the CREATING_FAILED stream {self.name} ({_failure(d)})")
            self._delete_and_wait(self.ctx, self.name)
        elif st == "DELETING":
            self._wait_gone(self.ctx, self.name)

    def create(self) -> dict[str, Any]:
        cfg, ident = self.ctx.cfg, ident_of(self.ctx)
        self._clear_leftover()
        d = self._describe()
        if d is None:
            req = create_request(cfg, ident, error_bucket_name(self.ctx), self.ctx.tags())
            try:
                retry_iam(self.ctx, f"creating Firehose stream {self.name}",
                          lambda: self._f().create_delivery_stream(**req), is_firehose_iam_propagation)
            except ClientError as e:
                if is_firehose_iam_propagation(e):
                    raise AwsError(
                        f"creating Firehose stream {self.name}: {error_message(e)}",
                        "IAM or Lake Formation still refuses after retrying: check that grant-lf ran "
                        "(role, Lake Formation grants) and that the table exists, then run `s3tstream up` again",
                    ) from None
                if error_code(e) != "ResourceInUseException":
                    raise
        # else: a run killed during the wait left it CREATING or ACTIVE; wait for it.
        d = self._wait_active()
        return {"id": d["DeliveryStreamARN"], "arn": d["DeliveryStreamARN"], "version_id": d.get("VersionId")}

    def update(self, observed: Observed) -> dict[str, Any]:
        d = self._wait_active()
        fix = [x for x in observed.drift if x.field != "status"]
        if not fix:
            return {"version_id": d.get("VersionId")}
        # Fresh version id and destination id: UpdateDestination is an optimistic lock.
        req = update_request(self.ctx.cfg, ident_of(self.ctx), error_bucket_name(self.ctx),
                             d["VersionId"], d["Destinations"][0]["DestinationId"], fix)
        retry_iam(self.ctx, f"updating Firehose stream {self.name}",
                  lambda: self._f().update_destination(**req), is_firehose_iam_propagation)
        d = self._wait_active()
        return {"version_id": d.get("VersionId")}

    @staticmethod
    def _wait_gone(ctx: Ctx, name: str) -> None:
        f = ctx.aws.client("firehose")
        ctx.wait_for(
            lambda: f.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"],
            f"Firehose stream {name}", gone=True,
        )

    @classmethod
    def _delete_and_wait(cls, ctx: Ctx, name: str) -> None:
        f = ctx.aws.client("firehose")

        def not_creating() -> tuple[bool, str]:
            try:
                st = f.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]["DeliveryStreamStatus"]
            except ClientError as e:
                if is_not_found(e):
                    return True, "deleted"
                raise
            return st != "CREATING", st

        # A stream cannot be deleted while CREATING (DeleteDeliveryStream API reference).
        if wait_until(not_creating, f"Firehose stream {name}", timeout=ctx.timeout, interval=ctx.poll, progress=ctx.progress) == "deleted":
            return
        try:
            f.delete_delivery_stream(DeliveryStreamName=name)
        except ClientError as e:
            if is_not_found(e):
                return
            raise
        cls._wait_gone(ctx, name)

    @classmethod
    def add_tags(cls, ctx: Ctx, record: Any, tags: dict[str, str]) -> None:
        ctx.aws.client("firehose").tag_delivery_stream(
            DeliveryStreamName=record.name, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        got = unless_gone(lambda: ctx.aws.client("firehose").list_tags_for_delivery_stream(DeliveryStreamName=record.name))
        return None if got is None else tag_map(got.get("Tags", []))

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        cls._delete_and_wait(ctx, record.name)


def _failure(d: dict[str, Any]) -> str:
    f = d.get("FailureDescription") or {}
    if not f:
        return "no failure description given"
    return f"{f.get('Type', 'UNKNOWN_ERROR')}: {f.get('Details', '')}".strip()

