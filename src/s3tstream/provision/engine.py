"""Steps -> plan (what exists, what will change) -> apply / destroy.

Intent is recorded in the state file before every create and the result right after it,
so a run killed at any point can be run again and converges. Independent steps run at the
same time (create-source/create-stream beside create-table-bucket/set-metadata/grant-lf).
"""

from __future__ import annotations

import importlib
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import is_not_found, translate
from s3tstream.errors import CANCEL, Interrupted, PlanError, S3tError
from s3tstream.provision.resource import KINDS, Ctx, Observed, ResourceSpec
from s3tstream.provision.catalog import BY_NAME, PROVISIONING, StepInfo, dependents


@dataclass
class Change:
    step: str
    kind: str
    name: str
    action: str  # create | update | adopt | claim | none | conflict
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"step": self.step, "kind": self.kind, "name": self.name, "action": self.action, "detail": self.detail}


@dataclass
class Result:
    changes: list[Change] = field(default_factory=list)
    errors: dict[str, S3tError] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def step_module(info: StepInfo) -> Any:
    if info.module is None:
        raise PlanError(
            f"step {info.name} is not built yet in this version of s3tstream",
            "see `s3tstream step --help` for the steps that exist",
        )
    # a dotted name is a module path of its own (tests use fake steps)
    return importlib.import_module(info.module if "." in info.module else f"s3tstream.provision.steps.{info.module}")


def resources(ctx: Ctx, info: StepInfo) -> list[ResourceSpec]:
    return step_module(info).resources(ctx)


def built_steps() -> list[StepInfo]:
    return [s for s in PROVISIONING if s.module is not None]


def _aws_call(doing: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ClientError as e:
        raise translate(e, doing) from None
    except BotoCoreError as e:
        raise translate(e, doing) from None


def classify(ctx: Ctx, info: StepInfo, spec: ResourceSpec, obs: Observed) -> Change:
    rec = ctx.state.get(spec.kind, spec.name)
    ch = Change(info.name, spec.kind, spec.name, "none")
    if obs.conflict:
        ch.action, ch.detail = "conflict", obs.conflict
    elif not obs.exists:
        ch.action = "create"
    elif rec is None:
        if obs.owned:
            ch.action, ch.detail = "claim", "exists with this stack's tag; recording it"
        elif spec.adoptable:
            ch.action, ch.detail = "adopt", "exists; adopted (never deleted by down)"
        else:
            ch.action = "conflict"
            ch.detail = "exists but was not created by this stack"
    elif obs.drift:
        ch.action, ch.detail = "update", "; ".join(obs.drift)
    return ch


def plan(ctx: Ctx, steps: list[StepInfo] | None = None) -> list[Change]:
    """Read-only: what `up` would do, per resource (and to the resources of removed tables)."""
    out: list[Change] = []
    for info in steps or built_steps():
        for spec in resources(ctx, info):
            obs = _aws_call(f"observing {spec.kind} {spec.name}", spec.observe)
            out.append(classify(ctx, info, spec, obs))
    return out + [ch for ch, _ in removals(ctx, steps or built_steps())]


# ------------------------------------------------------------------ tables removed from the config
TABLE_OUTPUT = "lake_table"


def removed(ctx: Ctx, steps: list[StepInfo]) -> list[Any]:
    """Records of per-table kinds that no resource of the config names: a table's entry was
    taken out of [[tables]] (or renamed). Newest first, the order they are undone in."""
    load_all_kinds()
    named = {(spec.kind, spec.name) for info in steps for spec in resources(ctx, info)}
    ours = {info.name for info in steps}
    return [r for r in reversed(list(ctx.state.doc.resources))
            if r.step in ours and getattr(KINDS.get(r.kind), "per_table", False) and r.key not in named]


def removals(ctx: Ctx, steps: list[StepInfo]) -> list[tuple[Change, Any]]:
    """What `up` does to each removed table's record: its streaming and grants stop (delete); its
    data (source table, lake table) stays (keep) unless `up --prune`; an adopted one is forgotten."""
    prune = bool(ctx.options.get("prune"))
    out = []
    for rec in removed(ctx, steps):
        cls = KINDS[rec.kind]
        table = rec.outputs.get(TABLE_OUTPUT)
        whose = f"table {table}" if table else "a table"
        ch = Change(rec.step, rec.kind, rec.name, "delete", f"{whose} is no longer in the config")
        if rec.ownership == "adopted":
            ch.action, ch.detail = "forget", f"{ch.detail}; adopted: left in place"
        elif cls.data and not prune:
            # nothing to do, now or on any later run: "none", so plan does not count it as pending
            ch.action, ch.detail = "none", f"{ch.detail}; kept with its data (`up --prune` deletes it, `down` too)"
        out.append((ch, rec))
    return out


def remove_tables(ctx: Ctx, steps: list[StepInfo]) -> list[Change]:
    """Undo the records of removed tables (after the steps: the Firehose stream no longer lists
    them). Kept data stays recorded, so `down` still removes it."""
    done = []
    for ch, rec in removals(ctx, steps):
        if ch.action == "none":
            done.append(ch)
            continue
        if ch.action == "delete":
            ctx.progress(f"removing {rec.kind} {rec.name}: {ch.detail}")
            ctx.state.record(rec.step, rec.kind, rec.name, status="deleting")
            kept = _aws_call(f"removing {rec.kind} {rec.name}", lambda: KINDS[rec.kind].delete(ctx, rec))
            if kept:
                ch.action, ch.detail = "keep", kept
                ctx.state.record(rec.step, rec.kind, rec.name, status="present")
                done.append(ch)
                continue
        ctx.state.drop(rec.kind, rec.name)
        done.append(ch)
    return done


def apply_step(ctx: Ctx, info: StepInfo) -> list[Change]:
    changes = []
    for spec in resources(ctx, info):
        changes.append(apply_resource(ctx, info, spec))
    return changes


def apply_resource(ctx: Ctx, info: StepInfo, spec: ResourceSpec) -> Change:
    state = ctx.state
    obs = _aws_call(f"observing {spec.kind} {spec.name}", spec.observe)
    ch = classify(ctx, info, spec, obs)
    rec = state.get(spec.kind, spec.name)
    # the lake table a per-table record serves: status groups by it, and it outlives the config entry
    mark = {TABLE_OUTPUT: spec.table} if spec.table else {}
    if ch.action == "conflict":
        raise PlanError(
            f"{spec.kind} {spec.name}: {ch.detail}",
            "rename it in the config, or remove the existing one; nothing was changed for it",
        )
    if ch.action == "create":
        ctx.progress(f"creating {spec.kind} {spec.name}")
        # Intent first: a run killed during create finds this record and converges.
        state.record(info.name, spec.kind, spec.name, status="creating", ownership=rec.ownership if rec else "owned",
                     outputs=mark)
        out = _aws_call(f"creating {spec.kind} {spec.name}", spec.create)
        state.record(info.name, spec.kind, spec.name, status="present", id=out.get("id"), outputs={**out, **mark})
        ctx.progress(f"created {spec.kind} {spec.name}")
    elif ch.action in ("adopt", "claim"):
        state.record(
            info.name, spec.kind, spec.name, status="present", id=obs.id, outputs={**obs.outputs, **mark},
            ownership="adopted" if ch.action == "adopt" else "owned",
        )
        ctx.progress(f"{'adopted' if ch.action == 'adopt' else 'recorded'} {spec.kind} {spec.name}")
    elif ch.action == "update":
        ctx.progress(f"updating {spec.kind} {spec.name}: {ch.detail}")
        out = _aws_call(f"updating {spec.kind} {spec.name}", lambda: spec.update(obs))
        state.record(info.name, spec.kind, spec.name, status="present", id=obs.id or (rec and rec.id),
                     outputs={**obs.outputs, **out, **mark})
    elif rec is not None and (rec.status != "present" or (obs.id and rec.id != obs.id)
                              or (mark and rec.outputs.get(TABLE_OUTPUT) != spec.table)):
        state.record(info.name, spec.kind, spec.name, status="present", id=obs.id or rec.id,
                     outputs={**obs.outputs, **mark})
    return ch


def check_requirements(ctx: Ctx, info: StepInfo) -> None:
    """A step whose prerequisite steps have not run exits 2 naming them."""
    missing = []
    for req in info.requires:
        recs = ctx.state.by_step(req)
        if not recs or any(r.status != "present" for r in recs):
            missing.append(req)
    if missing:
        raise PlanError(
            f"step {info.name} needs {', '.join(missing)} to have run first",
            f"run `s3tstream step {missing[0]}` (or `s3tstream up`) first",
        )


def apply(ctx: Ctx, steps: list[StepInfo] | None = None, max_workers: int = 4) -> Result:
    """Run steps in dependency order, independent ones at the same time."""
    infos = list(steps or built_steps())
    todo = {s.name: s for s in infos}
    planned = set(todo)
    done: set[str] = set()
    failed: set[str] = set()
    result = Result()
    lock = threading.Lock()
    running: dict[Future, str] = {}

    def ready(info: StepInfo) -> bool:
        # a requirement outside this run (step <name>) was checked by check_requirements
        return all(r in done or r not in planned for r in info.requires)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="step")
    try:
        while todo or running:
            for name in list(todo):
                info = todo[name]
                if any(r in failed for r in info.requires):
                    failed.add(name)
                    result.skipped.append(name)
                    del todo[name]
                elif ready(info):
                    running[pool.submit(apply_step, ctx, info)] = name
                    del todo[name]
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                name = running.pop(fut)
                try:
                    changes = fut.result()
                except S3tError as e:
                    failed.add(name)
                    result.errors[name] = e
                    continue
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # an unexpected bug: report it as a step failure, keep state
                    failed.add(name)
                    result.errors[name] = S3tError(f"{type(e).__name__}: {e}", "this is a bug in s3tstream; please report it")
                    continue
                with lock:
                    result.changes.extend(changes)
                    done.add(name)
    except KeyboardInterrupt:
        # Ctrl-C reaches the main thread only: stop the steps in progress (their waits and AWS
        # calls check CANCEL), wait for them to stop, then say what was under way.
        CANCEL.set()
        pool.shutdown(wait=True, cancel_futures=True)
        CANCEL.clear()  # every step has stopped; a caller that goes on (a library, a test) is not cancelled
        raise Interrupted(interrupted_message(ctx, sorted(running.values())),
                          "run the same command again: it resumes from the state file (a resource recorded "
                          "as creating is checked and finished, never created twice)") from None
    finally:
        pool.shutdown(wait=True)
    if not result.errors and not result.skipped:
        # every step ran: the Firehose stream and the transform no longer carry removed tables
        try:
            result.changes.extend(remove_tables(ctx, infos))
        except S3tError as e:
            result.errors["remove tables"] = e
    return result


def interrupted_message(ctx: Ctx, steps: list[str]) -> str:
    unfinished = [f"{r.kind} {r.name} ({r.status})" for r in ctx.state.doc.resources
                  if r.step in steps and r.status != "present"]
    return ("interrupted during " + (", ".join(steps) or "no step") + "; recorded in the state file: "
            + (", ".join(unfinished) or "no unfinished resource"))


def destroy(ctx: Ctx, *, step: str | None = None, keep_data: bool = False, dry_run: bool = False) -> list[Change]:
    """Delete owned resources in reverse creation order; adopted ones are only forgotten."""
    steps = set(dependents(step)) if step else None
    out: list[Change] = []
    for rec in reversed(list(ctx.state.doc.resources)):
        if steps is not None and rec.step not in steps:
            continue
        cls = KINDS.get(rec.kind)
        if cls is None:
            # make sure the module that defines the kind is imported
            _import_kind(rec.step)
            cls = KINDS.get(rec.kind)
        ch = Change(rec.step, rec.kind, rec.name, "delete")
        if rec.ownership == "adopted":
            ch.action, ch.detail = "forget", "adopted: left in place"
        elif keep_data and cls is not None and cls.data:
            ch.action, ch.detail = "keep", "--keep-data"
        out.append(ch)
        if dry_run:
            continue
        if ch.action == "delete":
            if cls is None:
                raise PlanError(f"no handler for recorded kind {rec.kind!r}", "the state file was written by a newer s3tstream")
            ctx.progress(f"deleting {rec.kind} {rec.name}")
            ctx.state.record(rec.step, rec.kind, rec.name, status="deleting")
            kept: str | None = None
            try:
                kept = cls.delete(ctx, rec)
            except ClientError as e:
                if not is_not_found(e):
                    raise translate(e, f"deleting {rec.kind} {rec.name}") from None
            if kept:
                # delete() declined (a non-empty error bucket holds the only copy of failed
                # rows): keep the record so a later `down` can finish the job.
                ch.action, ch.detail = "keep", kept
                ctx.state.record(rec.step, rec.kind, rec.name, status="present")
                continue
            ctx.progress(f"deleted {rec.kind} {rec.name}")
            ctx.state.drop(rec.kind, rec.name)
        elif ch.action == "forget":
            ctx.state.drop(rec.kind, rec.name)
    return out


def _import_kind(step_name: str) -> None:
    info = BY_NAME.get(step_name)
    if info and info.module:
        step_module(info)


def load_all_kinds() -> None:
    for info in PROVISIONING:
        if info.module:
            step_module(info)
