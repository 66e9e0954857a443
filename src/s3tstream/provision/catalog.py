"""The named steps, their order and what each needs. No AWS imports: `--help` reads this."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    name: str
    help: str
    requires: tuple[str, ...] = ()
    module: str | None = None  # s3tstream.provision.steps.<module>; None: not built yet
    provisioning: bool = True  # False: an action (put-item, query), not resources


STEPS: tuple[StepInfo, ...] = (
    StepInfo("create-source", "the DynamoDB source table (or adopt an existing one)", (), "source"),
    StepInfo("create-stream", "the Kinesis stream and the table's Kinesis streaming destination", ("create-source",), "stream"),
    StepInfo("create-table-bucket", "the S3 table bucket, namespace and Iceberg table with its schema", (), "lakehouse"),
    StepInfo("set-metadata", "bring the table's Iceberg metadata in line with the config", ("create-table-bucket",), "metadata"),
    StepInfo("grant-lf", "the Firehose role and its Lake Formation grants", ("set-metadata",), "grants"),
    StepInfo("create-firehose", "the transform Lambda, error bucket, logs and the Firehose stream", ("create-stream", "grant-lf"), "delivery"),
    StepInfo("create-alarms", "CloudWatch alarms on freshness, failed records, transform errors and stream throttles ([alarms])", ("create-firehose",), "alarms"),
    StepInfo("put-item", "write one sample item built from the schema", ("create-source",), "s3tstream.cli.commands.put_item", provisioning=False),
    StepInfo("query", "run the default query over the lake table", ("create-table-bucket",), "s3tstream.cli.commands.query", provisioning=False),
)

BY_NAME = {s.name: s for s in STEPS}
PROVISIONING = tuple(s for s in STEPS if s.provisioning)


def dependents(name: str) -> list[str]:
    """The step and every provisioning step built on it, in dependency order."""
    out = {name}
    changed = True
    while changed:
        changed = False
        for s in PROVISIONING:
            if s.name not in out and any(r in out for r in s.requires):
                out.add(s.name)
                changed = True
    return [s.name for s in PROVISIONING if s.name in out]


def closure(name: str) -> list[str]:
    """The step and everything it needs, in dependency order."""
    need = {name}
    stack = [name]
    while stack:
        for r in BY_NAME[stack.pop()].requires:
            if r not in need:
                need.add(r)
                stack.append(r)
    return [s.name for s in STEPS if s.name in need]
