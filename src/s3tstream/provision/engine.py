"""Steps -> plan (what exists, what will change) -> apply / destroy.

Intent is recorded in the state file before every create and the result right after it,
so a run killed at any point can be run again and converges. Independent steps run at the
same time (create-source/create-stream beside create-table-bucket/set-metadata/grant-lf).
"""

from __future__ import annotations

import importlib
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import is_not_found, translate
from s3tstream.errors import CANCEL, Interrupted, PlanError, S3tError
from s3tstream.provision.resource import KINDS, STACK_ID_TAG, Action, Ctx, Observed, ResourceSpec
from s3tstream.provision.catalog import BY_NAME, PROVISIONING, StepInfo, dependents


@dataclass
class Change:
    step: str
    kind: str
    name: str
    action: Action
    detail: str = ""
    shared: bool = False  # an account-wide resource (shown apart; `down` keeps it by default)
    foreign: bool = field(default=False, repr=False)  # another stack's (by its live tags)

    def __post_init__(self) -> None:
        self.action = Action(self.action)  # a plain "delete" from a caller becomes the enum

    def to_dict(self) -> dict[str, str]:
        return {"step": self.step, "kind": self.kind, "name": self.name, "action": self.action.value,
                "detail": self.detail, "shared": self.shared}


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
    ch = Change(info.name, spec.kind, spec.name, Action.NONE, shared=spec.shared)
    if obs.foreign:
        ch.action, ch.detail, ch.foreign = Action.CONFLICT, obs.foreign, True
    elif obs.conflict:
        ch.action, ch.detail = Action.CONFLICT, obs.conflict
    elif not obs.exists:
        ch.action = Action.CREATE
    elif rec is None:
        if obs.owned:
            ch.action, ch.detail = Action.CLAIM, "exists with this stack's tag; recording it"
        elif spec.adoptable:
            ch.action, ch.detail = Action.ADOPT, "exists; adopted (never deleted by down)"
        else:
            ch.action = Action.CONFLICT
            ch.detail = "exists but was not created by this stack"
    elif obs.drift:
        ch.action, ch.detail = Action.UPDATE, obs.drift_text()
    return ch


def renamed(ctx: Ctx, spec: ResourceSpec) -> list[Any]:
    """Records of a singular kind under another name than the config's: renamed in the config.
    A per-table kind is singular per table; a record of no entry's table is a removed table's
    (removed())."""
    if not spec.singular:
        return []
    recs = [r for r in ctx.state.doc.resources if r.kind == spec.kind and r.name != spec.name]
    if spec.per_table:
        # the entry's own record under its old name (same lake table); another table's record was
        # removed from the config (removed()). A record from before [[tables]] names no lake table:
        # with one table, it is this one's.
        one = len(ctx.cfg.table_names) == 1
        recs = [r for r in recs if r.outputs.get(TABLE_OUTPUT) == spec.table
                or (one and r.outputs.get(TABLE_OUTPUT) is None)]
    return recs


def replacement(info: StepInfo, spec: ResourceSpec, rec: Any) -> Change:
    if spec.replace_first:
        how = "disabled by `up` before the new one is enabled" if rec.ownership == "owned" else "adopted: left as it is"
    else:
        how = "left in place (it may hold data); `down` removes it" if rec.ownership == "owned" else "adopted: left in place"
    return Change(info.name, spec.kind, rec.name, Action.REPLACE, f"replaced by {spec.name} (renamed in the config); {how}")


def plan(ctx: Ctx, steps: list[StepInfo] | None = None) -> list[Change]:
    """Read-only: what `up` would do, per resource (and to the resources of removed tables)."""
    out: list[Change] = []
    for info in steps or built_steps():
        for spec in resources(ctx, info):
            out += [replacement(info, spec, r) for r in renamed(ctx, spec)]
            obs = _aws_call(f"observing {spec.kind} {spec.name}", spec.observe)
            out.append(classify(ctx, info, spec, obs))
    return out + [ch for ch, _ in removals(ctx, list(steps or built_steps()))]


# ------------------------------------------------------------------ tables removed from the config
TABLE_OUTPUT = "lake_table"


def removed(ctx: Ctx, steps: list[StepInfo]) -> list[Any]:
    """Records of per-table kinds that no resource of the config names: a table's entry was
    taken out of [[tables]]. Newest first, the order they are undone in. (A renamed source
    table or stream of an entry is renamed()'s.)"""
    load_all_kinds()
    specs = [spec for info in steps for spec in resources(ctx, info)]
    named = {(spec.kind, spec.name) for spec in specs}
    named |= {r.key for spec in specs for r in renamed(ctx, spec)}  # renamed, not removed: plan says "replace"
    ours = {info.name for info in steps}
    out = []
    for r in reversed(list(ctx.state.doc.resources)):
        cls = KINDS.get(r.kind)
        if r.step in ours and cls is not None and cls.per_table and r.key not in named:
            out.append(r)
    return out


def removals(ctx: Ctx, steps: list[StepInfo]) -> list[tuple[Change, Any]]:
    """What `up` does to each removed table's record: its streaming and grants stop (delete); its
    data (source table, lake table) stays unless `up --prune`; an adopted one is forgotten."""
    prune = bool(ctx.options.get("prune"))
    out = []
    for rec in removed(ctx, steps):
        cls = KINDS[rec.kind]
        table = rec.outputs.get(TABLE_OUTPUT)
        ch = Change(rec.step, rec.kind, rec.name, Action.DELETE,
                    f"{f'table {table}' if table else 'its table'} is no longer in the config")
        if rec.ownership == "adopted":
            ch.action, ch.detail = Action.FORGET, f"{ch.detail}; adopted: left in place"
        elif cls.data and not prune:
            # nothing to do, now or on any later run: "none", so plan does not count it as pending
            ch.action, ch.detail = Action.NONE, f"{ch.detail}; kept with its data (`up --prune` deletes it, `down` too)"
        out.append((ch, rec))
    return out


def remove_tables(ctx: Ctx, steps: list[StepInfo]) -> list[Change]:
    """Undo the records of removed tables, after the steps (the Firehose stream and the
    transform no longer carry them). Kept data stays recorded, so `down` still removes it; a
    resource whose live tags do not prove it ours is forgotten, not deleted."""
    done = []
    for ch, rec in removals(ctx, steps):
        cls = KINDS[rec.kind]
        if ch.action == Action.DELETE:
            why = not_ours(ctx, rec, cls)
            if why:
                ch.action, ch.detail = Action.FORGET, why
        if ch.action == Action.DELETE:
            ctx.progress(f"removing {rec.kind} {rec.name}: {ch.detail}")
            ctx.state.record(rec.step, rec.kind, rec.name, status="deleting")
            kept = _aws_call(f"removing {rec.kind} {rec.name}", lambda: cls.delete(ctx, rec))
            if kept:
                ch.action, ch.detail = Action.KEEP, kept
                ctx.state.record(rec.step, rec.kind, rec.name, status="present")
                done.append(ch)
                continue
        if ch.action != Action.NONE:
            ctx.state.drop(rec.kind, rec.name)
        done.append(ch)
    return done


@dataclass(frozen=True)
class Lane:
    """Part of a step whose resources run in order, once the steps (or "step#lane"s) it needs
    are done. A step module may split its resources into lanes (`lanes(ctx)`) so that what does
    not need the step's prerequisites starts at once; by default a step is one lane needing its
    requires. Dependents of a step still wait for all its lanes."""

    step: StepInfo
    name: str
    needs: tuple[str, ...]
    specs: tuple[ResourceSpec, ...]

    @property
    def key(self) -> str:
        return f"{self.step.name}#{self.name}"


def lanes(ctx: Ctx, info: StepInfo) -> list[Lane]:
    mod = step_module(info)
    if hasattr(mod, "lanes"):
        return [Lane(info, name, tuple(needs), tuple(specs)) for name, needs, specs in mod.lanes(ctx)]
    return [Lane(info, "all", info.requires, tuple(mod.resources(ctx)))]


def apply_lane(ctx: Ctx, lane: Lane) -> list[Change]:
    return [apply_resource(ctx, lane.step, spec) for spec in lane.specs]


def apply_step(ctx: Ctx, info: StepInfo) -> list[Change]:
    """One step's resources in order (its lanes one after another)."""
    return [apply_resource(ctx, info, spec) for spec in resources(ctx, info)]


def apply_resource(ctx: Ctx, info: StepInfo, spec: ResourceSpec) -> Change:
    state = ctx.state
    obs = _aws_call(f"observing {spec.kind} {spec.name}", spec.observe)
    ch = classify(ctx, info, spec, obs)
    rec = state.get(spec.kind, spec.name)
    # the lake table a per-table record serves: status groups by it, and it outlives the config entry
    mark = {TABLE_OUTPUT: spec.table} if spec.table else {}
    if ch.action == Action.CONFLICT:
        raise PlanError(
            f"{spec.kind} {spec.name}: {ch.detail}",
            "rename it in the config, or remove the existing one; nothing was changed for it",
        )
    if ch.action == Action.CREATE:
        if spec.replace_first:
            _remove_replaced(ctx, spec)
        ctx.progress(f"creating {spec.kind} {spec.name}")
        # Intent first: a run killed during create finds this record and converges. What this
        # stack creates is its own, even where it had adopted one of that name before.
        state.record(info.name, spec.kind, spec.name, status="creating", ownership="owned", outputs=mark)
        out = _aws_call(f"creating {spec.kind} {spec.name}", spec.create)
        state.record(info.name, spec.kind, spec.name, status="present", id=out.get("id"), outputs={**out, **mark})
        ctx.progress(f"created {spec.kind} {spec.name}")
    elif ch.action in (Action.ADOPT, Action.CLAIM):
        state.record(
            info.name, spec.kind, spec.name, status="present", id=obs.id, outputs={**obs.outputs, **mark},
            ownership="adopted" if ch.action == Action.ADOPT else "owned",
        )
        ctx.progress(f"{'adopted' if ch.action == Action.ADOPT else 'recorded'} {spec.kind} {spec.name}")
    elif ch.action == Action.UPDATE:
        ctx.progress(f"updating {spec.kind} {spec.name}: {ch.detail}")
        out = _aws_call(f"updating {spec.kind} {spec.name}", lambda: spec.update(obs))
        state.record(info.name, spec.kind, spec.name, status="present", id=obs.id or (rec and rec.id),
                     outputs={**obs.outputs, **out, **mark})
    elif rec is not None and (rec.status != "present" or (obs.id and rec.id != obs.id)
                              or (mark and rec.outputs.get(TABLE_OUTPUT) != spec.table)):
        state.record(info.name, spec.kind, spec.name, status="present", id=obs.id or rec.id,
                     outputs={**obs.outputs, **mark})
    adopt_stack_id(ctx, spec)
    return ch


def _remove_replaced(ctx: Ctx, spec: ResourceSpec) -> None:
    """Before creating a renamed singular resource, remove the old one this stack made (only
    that: an adopted one, or one whose owner is not proved ours, is forgotten, not touched)."""
    cls = type(spec)
    for rec in renamed(ctx, spec):
        if rec.ownership == "owned" and not not_ours(ctx, rec, cls):
            ctx.progress(f"removing {rec.kind} {rec.name}: the config renamed it to {spec.name}")
            ctx.state.record(rec.step, rec.kind, rec.name, status="deleting")
            _aws_call(f"removing {rec.kind} {rec.name}", lambda: cls.delete(ctx, rec))
        ctx.state.drop(rec.kind, rec.name)


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


def ensure_stack_id(ctx: Ctx) -> str:
    """The stack id, made at the first `up` (kept in memory until the state is next saved, so a
    run refused before any change writes nothing). A state written before stacks had ids gets
    one too: this run then tags the id on the recorded resources whose live tags name this
    stack (and no other id), see adopt_stack_id()."""
    if not ctx.state.doc.stack_id:
        ctx.state.doc.stack_id = uuid.uuid4().hex[:16]
        if not ctx.state.is_empty():
            ctx.options["adopt_stack_id"] = True
    return ctx.state.doc.stack_id


def adopt_stack_id(ctx: Ctx, spec: ResourceSpec) -> None:
    """Tag the stack id on a recorded resource of a state from before stack ids, when its live
    tags name this stack by name alone."""
    rec = ctx.state.get(spec.kind, spec.name)
    if not (ctx.options.get("adopt_stack_id") and spec.taggable and rec is not None and rec.ownership == "owned"):
        return
    cls = type(spec)
    tags = _aws_call(f"reading the tags of {spec.kind} {spec.name}", lambda: cls.live_tags(ctx, rec))
    if tags is None or STACK_ID_TAG in tags or not ctx.owns(tags):
        return
    _aws_call(f"tagging {spec.kind} {spec.name}", lambda: cls.add_tags(ctx, rec, {STACK_ID_TAG: ctx.stack_id or ""}))
    ctx.progress(f"tagged {spec.kind} {spec.name} with this stack's id")


def foreign_conflicts(ctx: Ctx, steps: list[StepInfo]) -> list[Change]:
    """Live resources tagged with another stack's id, found before any change is made.

    Only taggable kinds can say whose they are. A resource that cannot be observed yet (its
    prerequisites are missing) is skipped here: the step itself reports that."""
    out = []
    for info in steps:
        try:
            specs = resources(ctx, info)
        except Exception:  # noqa: BLE001 - reported by the step itself
            continue
        for spec in specs:
            if not spec.taggable:
                continue
            try:
                obs = spec.observe()
            except Exception:  # noqa: BLE001 - the step itself runs observe again and reports it
                continue
            if obs.foreign:
                out.append(Change(info.name, spec.kind, spec.name, Action.CONFLICT, obs.foreign, foreign=True))
    return out


def foreign_error(foreign: list[Change]) -> PlanError | None:
    """The exit-2 error for resources of another stack of the same name (None: there are none)."""
    if not foreign:
        return None
    c = foreign[0]
    return PlanError(
        f"{len(foreign)} resource(s) belong to another stack of the same name; first: {c.kind} {c.name}: {c.detail}",
        "run this stack from the folder (state file) that created them, or give this one another "
        "stack.name; nothing was changed",
    )


def apply(ctx: Ctx, steps: list[StepInfo] | None = None, max_workers: int = 8) -> Result:
    """Run steps in dependency order, independent ones at the same time.

    A resource of another stack (same name, another folder) stops the run before any change."""
    ensure_stack_id(ctx)
    err = foreign_error(foreign_conflicts(ctx, list(steps or built_steps())))
    if err:
        raise err
    if ctx.options.get("adopt_stack_id"):
        ctx.state.save()  # an existing stack's new id, kept even if this run changes nothing else
    planned_steps = list(steps or built_steps())
    planned = {s.name for s in planned_steps}
    todo: dict[str, Lane] = {}
    left: dict[str, int] = {}  # step -> lanes not finished yet
    result = Result()
    for info in planned_steps:
        try:
            for lane in lanes(ctx, info):
                todo[lane.key] = lane
                left[info.name] = left.get(info.name, 0) + 1
        except S3tError as e:  # its resources cannot even be listed (an invalid partition spec, say)
            result.errors[info.name] = e
    done: set[str] = set()  # steps and lanes finished
    failed: set[str] = set(result.errors)  # steps
    lock = threading.Lock()
    running: dict[Future, Lane] = {}

    def blocked(need: str) -> bool:
        return need.split("#", 1)[0] in failed

    def ready(lane: Lane) -> bool:
        # a requirement outside this run (step <name>) was checked by check_requirements
        return all(n in done or n.split("#", 1)[0] not in planned for n in lane.needs)

    def fail(step: str, e: S3tError | None) -> None:
        failed.add(step)
        if e is not None:
            result.errors.setdefault(step, e)

    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="step")
    try:
        while todo or running:
            for key in list(todo):
                lane = todo[key]
                if lane.step.name in failed or any(blocked(n) for n in lane.needs):
                    if lane.step.name not in failed:
                        fail(lane.step.name, None)
                    if lane.step.name not in result.errors and lane.step.name not in result.skipped:
                        result.skipped.append(lane.step.name)
                    del todo[key]
                elif ready(lane):
                    running[pool.submit(apply_lane, ctx, lane)] = lane
                    del todo[key]
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                lane = running.pop(fut)
                name = lane.step.name
                try:
                    changes = fut.result()
                except S3tError as e:
                    fail(name, e)
                    continue
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # an unexpected bug: report it as a step failure, keep state
                    fail(name, S3tError(f"{type(e).__name__}: {e}", "this is a bug in s3tstream; please report it"))
                    continue
                with lock:
                    result.changes.extend(changes)
                    done.add(lane.key)
                    left[name] -= 1
                    if left[name] == 0 and name not in failed:
                        done.add(name)
    except KeyboardInterrupt:
        # Ctrl-C reaches the main thread only: stop the steps in progress (their waits and AWS
        # calls check CANCEL), wait for them to stop, then say what was under way.
        CANCEL.set()
        pool.shutdown(wait=True, cancel_futures=True)
        CANCEL.clear()  # every step has stopped; a caller that goes on (a library, a test) is not cancelled
        raise Interrupted(interrupted_message(ctx, sorted({lane.step.name for lane in running.values()})),
                          "run the same command again: it resumes from the state file (a resource recorded "
                          "as creating is checked and finished, never created twice)") from None
    finally:
        pool.shutdown(wait=True)
    if not result.errors and not result.skipped:
        # every step ran: the Firehose stream and the transform no longer carry removed tables
        try:
            result.changes.extend(remove_tables(ctx, planned_steps))
        except S3tError as e:
            result.errors["remove tables"] = e
    return result


def interrupted_message(ctx: Ctx, steps: list[str]) -> str:
    unfinished = [f"{r.kind} {r.name} ({r.status})" for r in ctx.state.doc.resources
                  if r.step in steps and r.status != "present"]
    return ("interrupted during " + (", ".join(steps) or "no step") + "; recorded in the state file: "
            + (", ".join(unfinished) or "no unfinished resource"))


def not_ours(ctx: Ctx, rec: Any, cls: type[ResourceSpec] | None) -> str | None:
    """Why `down` must not delete this recorded resource (None: the live resource proves it ours).

    Taggable kinds: the live tags must name this stack. Untaggable kinds: the recorded resource
    they belong to must (a namespace its bucket, a log stream its group, an inline policy its
    role, a streaming destination its stream); lf-grant and iceberg-metadata records are their
    own proof (a grant record lists only what this stack granted)."""
    if cls is None:
        return None
    if cls.taggable:
        tags = _aws_call(f"reading the tags of {rec.kind} {rec.name}", lambda: cls.live_tags(ctx, rec))
        if tags is None or ctx.owns(tags):
            return None  # gone (delete() treats that as done), or ours
        whose = ctx.foreign(tags) or "it carries no tag of this stack"
        return f"not deleted: {whose}"
    parent = cls.owner(ctx, rec)
    if parent is None:
        return None
    prec = ctx.state.get(*parent)
    pcls = KINDS.get(parent[0])
    if prec is None or pcls is None:
        return f"not deleted: the {parent[0]} {parent[1]} it belongs to is not recorded as this stack's"
    why = not_ours(ctx, prec, pcls)
    return f"{why} (its {parent[0]} {parent[1]})" if why else None


def destroy(ctx: Ctx, *, step: str | None = None, keep_data: bool = False, dry_run: bool = False,
            include_shared: bool = False) -> list[Change]:
    """Delete owned resources in reverse creation order; adopted ones are only forgotten, shared
    ones kept (unless include_shared and nothing else uses them), and one whose live tags do
    not name this stack is kept and reported."""
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
        ch = Change(rec.step, rec.kind, rec.name, Action.DELETE, shared=bool(cls and cls.shared))
        if rec.ownership == "adopted":
            ch.action, ch.detail = Action.FORGET, "adopted: left in place"
        elif keep_data and cls is not None and cls.data:
            ch.action, ch.detail = Action.KEEP, "--keep-data"
        elif cls is not None and cls.shared and cls.never_removed and not include_shared:
            ch.action, ch.detail = Action.FORGET, "shared by the account: left in place"
        elif cls is not None and cls.shared and cls.never_removed:
            pass  # delete() only forgets it and says so
        elif cls is not None and cls.shared:
            # kept with its record, so a later `down --include-shared` can still remove it
            used = cls.in_use(ctx, rec) if include_shared else None
            if not include_shared:
                ch.action, ch.detail = Action.KEEP, "shared by the account: left in place (`down --include-shared` removes it)"
            elif used:
                ch.action, ch.detail = Action.KEEP, f"shared by the account: left in place, {used}"
        if ch.action == Action.DELETE:
            why = not_ours(ctx, rec, cls)
            if why:
                ch.action, ch.detail = Action.FORGET, why
        out.append(ch)
        if dry_run:
            continue
        if ch.action == Action.DELETE:
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
                ch.action, ch.detail = Action.KEEP, kept
                ctx.state.record(rec.step, rec.kind, rec.name, status="present")
                continue
            ctx.progress(f"deleted {rec.kind} {rec.name}")
            ctx.state.drop(rec.kind, rec.name)
        elif ch.action == Action.FORGET:
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
