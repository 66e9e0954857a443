"""Engine: dependency order, concurrency, intent before create, resume, adopt/claim/conflict,
and destroy in reverse order, with fake steps and a fake world (no AWS)."""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

import pytest

from s3tstream.config import model as cfgmod
from s3tstream.provision import engine
from s3tstream.errors import PlanError
from s3tstream.state import StateStore
from s3tstream.provision.resource import Action, Ctx, Drift, Observed, ResourceSpec
from s3tstream.provision.catalog import StepInfo, closure, dependents

WORLD: dict[str, dict[str, Any]] = {}
LOG: list[tuple[str, str, float]] = []
HOOKS: dict[str, Any] = {}


class Fake(ResourceSpec):
    kind = "fake"

    def __init__(self, ctx: Ctx, name: str, **kw: Any) -> None:
        super().__init__(ctx)
        self._name = name
        self.kw = kw

    @property
    def name(self) -> str:
        return self._name

    @property
    def adoptable(self) -> bool:  # type: ignore[override]
        return self.kw.get("adoptable", False)

    def observe(self) -> Observed:
        w = WORLD.get(self.name)
        if w is None:
            return Observed(False)
        return Observed(True, id=f"id-{self.name}", owned=w.get("owned"), drift=list(w.get("drift", [])))

    def create(self) -> dict[str, Any]:
        LOG.append(("start", self.name, time.monotonic()))
        rec = self.ctx.state.get(self.kind, self.name)
        assert rec is not None and rec.status == "creating", "intent must be recorded before create"
        if self.name in HOOKS:
            HOOKS[self.name]()
        WORLD[self.name] = {"owned": True}
        LOG.append(("end", self.name, time.monotonic()))
        return {"id": f"id-{self.name}"}

    def update(self, observed: Observed) -> dict[str, Any]:
        # reads the fields, never the wording of the messages
        WORLD[self.name]["drift"] = [d for d in WORLD[self.name]["drift"] if not observed.drifted(d.field)]
        LOG.append(("update", self.name, time.monotonic()))
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: Any) -> None:
        LOG.append(("delete", record.name, time.monotonic()))
        WORLD.pop(record.name, None)


class FakeData(Fake):
    kind = "fake-data"
    data = True

    def observe(self) -> Observed:
        return super().observe()


def _module(name: str, specs: list[tuple[type, str, dict]]) -> str:
    mod = types.ModuleType(name)
    mod.resources = lambda ctx: [cls(ctx, n, **kw) for cls, n, kw in specs]  # type: ignore[attr-defined]
    sys.modules[name] = mod
    return name


def steps(layout: dict[str, tuple[tuple[str, ...], list[tuple[type, str, dict]]]]) -> list[StepInfo]:
    return [StepInfo(n, n, req, _module(f"fake_steps.{n}", specs)) for n, (req, specs) in layout.items()]


@pytest.fixture
def ctx(tmp_path):
    WORLD.clear()
    LOG.clear()
    HOOKS.clear()
    cfg = cfgmod.build({"stack": {"name": "orders"}})
    state = StateStore(tmp_path / "s.json", "orders", "us-east-1")
    return Ctx(cfg, aws=None, state=state)  # type: ignore[arg-type]


def test_dependency_order_and_independent_chains_run_together(ctx):
    barrier = threading.Barrier(2, timeout=5)
    HOOKS["a"] = barrier.wait  # a and c must be in create() at the same time
    HOOKS["c"] = barrier.wait
    plan = steps({
        "A": ((), [(Fake, "a", {})]),
        "B": (("A",), [(Fake, "b", {})]),
        "C": ((), [(Fake, "c", {})]),
        "D": (("C",), [(Fake, "d", {})]),
        "E": (("B", "D"), [(Fake, "e", {})]),
    })
    res = engine.apply(ctx, plan)
    assert not res.errors
    t = {(ev, n): ts for ev, n, ts in LOG}
    for before, after in [("a", "b"), ("c", "d"), ("b", "e"), ("d", "e")]:
        assert t[("end", before)] <= t[("start", after)], f"{after} started before {before} ended"
    assert {c.name for c in res.changes if c.action == "create"} == set("abcde")


def test_failed_step_skips_dependents_but_not_independent_steps(ctx):
    def fail() -> None:
        raise PlanError("b broke", "fix b")

    HOOKS["b"] = fail
    plan = steps({
        "A": ((), [(Fake, "a", {})]),
        "B": (("A",), [(Fake, "b", {})]),
        "C": ((), [(Fake, "c", {})]),
        "E": (("B", "C"), [(Fake, "e", {})]),
    })
    res = engine.apply(ctx, plan)
    assert list(res.errors) == ["B"] and res.errors["B"].message == "b broke"
    assert res.skipped == ["E"]
    assert "e" not in WORLD and "c" in WORLD
    # b's intent is on record, so a rerun knows about it
    assert ctx.state.get("fake", "b").status == "creating"


def test_killed_during_create_then_rerun_converges_without_recreating(ctx):
    def die_after_creating() -> None:
        WORLD["a"] = {"owned": True}
        raise KeyboardInterrupt  # like a kill between the AWS call and the state write

    HOOKS["a"] = die_after_creating
    plan = steps({"A": ((), [(Fake, "a", {}), (Fake, "a2", {})])})
    with pytest.raises(KeyboardInterrupt):
        engine.apply_step(ctx, plan[0])
    HOOKS.clear()
    LOG.clear()
    res = engine.apply(ctx, plan)
    assert not res.errors
    assert ("start", "a", ) not in [(e, n) for e, n, _ in LOG], "a was created again"
    assert ctx.state.get("fake", "a").status == "present"
    assert ctx.state.get("fake", "a2").status == "present"


def test_second_apply_changes_nothing(ctx):
    plan = steps({"A": ((), [(Fake, "a", {})])})
    engine.apply(ctx, plan)
    LOG.clear()
    res = engine.apply(ctx, plan)
    assert [c.action for c in res.changes] == ["none"] and LOG == []


def test_drift_is_updated_in_place(ctx):
    plan = steps({"A": ((), [(Fake, "a", {})])})
    engine.apply(ctx, plan)
    WORLD["a"]["drift"] = [Drift("retention", 24, 48, "{field} {old}h -> {new}h")]
    res = engine.apply(ctx, plan)
    assert [(c.action, c.detail) for c in res.changes] == [(Action.UPDATE, "retention 24h -> 48h")]
    assert res.changes[0].to_dict()["action"] == "update"
    assert [e for e, *_ in LOG if e == "update"] == ["update"]
    assert WORLD["a"]["drift"] == []


def test_update_reads_drift_fields_so_rewording_a_message_changes_nothing(ctx):
    plan = steps({"A": ((), [(Fake, "a", {})])})
    engine.apply(ctx, plan)
    WORLD["a"]["drift"] = [Drift("retention", 24, 48, "the stream keeps records {old} hours, the config wants {new}")]
    res = engine.apply(ctx, plan)
    assert res.changes[0].detail == "the stream keeps records 24 hours, the config wants 48"
    assert WORLD["a"]["drift"] == []


def test_existing_untagged_resource_is_a_conflict_unless_adoptable(ctx):
    WORLD["a"] = {"owned": False}
    WORLD["t"] = {"owned": False}
    WORLD["mine"] = {"owned": True}
    plan = steps({"A": ((), [(Fake, "t", {"adoptable": True}), (Fake, "mine", {}), (Fake, "a", {})])})
    res = engine.apply(ctx, plan)
    assert "A" in res.errors and "exists but was not created by this stack" in res.errors["A"].message
    assert ctx.state.get("fake", "t").ownership == "adopted"
    assert ctx.state.get("fake", "mine").ownership == "owned"
    assert ctx.state.get("fake", "a") is None


def test_destroy_reverse_order_keeps_adopted_and_data(ctx):
    WORLD["src"] = {"owned": False}
    plan = steps({
        "A": ((), [(Fake, "src", {"adoptable": True}), (FakeData, "lake", {})]),
        "B": (("A",), [(Fake, "b1", {}), (Fake, "b2", {})]),
    })
    assert not engine.apply(ctx, plan).errors
    WORLD.pop("b1")  # already gone: still fine
    LOG.clear()
    done = engine.destroy(ctx, keep_data=True)
    assert [(c.name, c.action) for c in done] == [("b2", "delete"), ("b1", "delete"), ("lake", "keep"), ("src", "forget")]
    assert [n for e, n, _ in LOG if e == "delete"] == ["b2", "b1"]
    assert "src" in WORLD and "lake" in WORLD
    assert [r.name for r in ctx.state.doc.resources] == ["lake"]
    engine.destroy(ctx)
    assert "lake" not in WORLD and ctx.state.is_empty()


def test_catalog_dependents_and_closure():
    assert dependents("create-stream") == ["create-stream", "create-firehose", "create-alarms"]
    assert dependents("create-table-bucket") == ["create-table-bucket", "set-metadata", "grant-lf", "create-firehose",
                                                 "create-alarms"]
    assert closure("create-firehose") == [
        "create-source", "create-stream", "create-table-bucket", "set-metadata", "grant-lf", "create-firehose"]


def test_check_requirements_names_the_missing_step(ctx):
    info = StepInfo("B", "B", ("A",), None)
    with pytest.raises(PlanError) as ei:
        engine.check_requirements(ctx, info)
    assert "needs A" in ei.value.message and "s3tstream step A" in ei.value.hint


def test_a_step_not_built_says_so(ctx):
    with pytest.raises(PlanError) as ei:
        engine.apply_step(ctx, StepInfo("later", "later", (), None))
    assert "not built yet" in ei.value.message and ei.value.exit_code == 2


# ------------------------------------------------------------------ stack identity, shared resources
class Tagged(Fake):
    """A taggable fake: WORLD[name]["tags"] are its live tags."""

    kind = "fake-tagged"
    taggable = True

    def observe(self) -> Observed:
        w = WORLD.get(self.name)
        if w is None:
            return Observed(False)
        return self.ctx.judge(Observed(True, id=f"id-{self.name}"), w.get("tags", {}))

    def create(self) -> dict[str, Any]:
        out = super().create()
        WORLD[self.name]["tags"] = self.ctx.tags()
        return out

    @classmethod
    def live_tags(cls, ctx: Ctx, record: Any) -> dict[str, str] | None:
        w = WORLD.get(record.name)
        return None if w is None else dict(w.get("tags", {}))


class Child(Fake):
    """An untaggable fake proved ours by its Tagged parent."""

    kind = "fake-child"

    @classmethod
    def owner(cls, ctx: Ctx, record: Any) -> tuple[str, str] | None:
        return ("fake-tagged", record.name.split("/", 1)[0])


class SharedFake(Fake):
    kind = "fake-shared"
    shared = True
    IN_USE: str | None = None

    @classmethod
    def in_use(cls, ctx: Ctx, record: Any) -> str | None:
        return cls.IN_USE


def test_the_first_apply_makes_a_stack_id_and_tags_it(ctx):
    assert ctx.state.doc.stack_id is None
    engine.apply(ctx, steps({"A": ((), [(Tagged, "t", {})])}))
    sid = ctx.state.doc.stack_id
    assert sid and WORLD["t"]["tags"]["s3tstream:stack-id"] == sid and WORLD["t"]["tags"]["s3tstream:stack"] == "orders"
    assert "stack_id" in ctx.state.path.read_text()


def test_a_resource_of_another_stack_id_stops_apply_before_any_change(ctx):
    WORLD["t"] = {"tags": {"s3tstream:stack": "orders", "s3tstream:stack-id": "someone-else"}}
    plan = steps({"A": ((), [(Fake, "a", {})]), "B": ((), [(Tagged, "t", {})])})
    with pytest.raises(PlanError) as ei:
        engine.apply(ctx, plan)
    assert "someone-else" in ei.value.message and ei.value.exit_code == 2
    assert LOG == [] and ctx.state.is_empty() and not ctx.state.path.exists()
    ch = [c for c in engine.plan(ctx, plan) if c.name == "t"][0]
    assert ch.action == Action.CONFLICT and ch.foreign


def test_a_state_without_stack_id_claims_only_what_carries_its_name(ctx):
    WORLD["old"] = {"tags": {"s3tstream:stack": "orders"}}  # made before stacks had ids
    engine.apply(ctx, steps({"A": ((), [(Tagged, "old", {})])}))
    assert ctx.state.get("fake-tagged", "old").ownership == "owned" and ctx.state.doc.stack_id


def test_down_keeps_what_live_tags_do_not_prove_ours(ctx):
    engine.apply(ctx, steps({"A": ((), [(Tagged, "t", {}), (Child, "t/c", {})])}))
    WORLD["t"]["tags"] = {}  # the live resource no longer says it is ours
    ctx.state.record("A", "fake-tagged", "forged", status="present")
    WORLD["forged"] = {"tags": {"owner": "someone"}}
    LOG.clear()
    done = engine.destroy(ctx)
    assert {c.name: c.action for c in done} == {"forged": Action.FORGET, "t/c": Action.FORGET, "t": Action.FORGET}
    assert "carries no tag of this stack" in [c for c in done if c.name == "forged"][0].detail
    assert LOG == [] and "forged" in WORLD and "t" in WORLD


def test_recreating_an_adopted_resource_makes_it_owned(ctx):
    WORLD["src"] = {"owned": False}
    plan = steps({"A": ((), [(Fake, "src", {"adoptable": True})])})
    engine.apply(ctx, plan)
    assert ctx.state.get("fake", "src").ownership == "adopted"
    WORLD.pop("src")
    engine.apply(ctx, plan)
    assert ctx.state.get("fake", "src").ownership == "owned"


def test_shared_resources_are_kept_unless_included_and_unused(ctx):
    plan = steps({"A": ((), [(SharedFake, "integration", {})])})
    engine.apply(ctx, plan)
    done = engine.destroy(ctx)
    assert [(c.action, c.shared) for c in done] == [(Action.KEEP, True)] and "integration" in WORLD
    assert ctx.state.get("fake-shared", "integration") is not None  # a later --include-shared can remove it
    SharedFake.IN_USE = "still used by table bucket(s) other"
    try:
        done = engine.destroy(ctx, include_shared=True)
        assert done[0].action == Action.KEEP and "other" in done[0].detail and "integration" in WORLD
        SharedFake.IN_USE = None
        assert engine.destroy(ctx, include_shared=True)[0].action == Action.DELETE and "integration" not in WORLD
    finally:
        SharedFake.IN_USE = None


# ------------------------------------------------------------------ lanes (issue 18: critical path)
def _laned(name: str, lanes_: list[tuple[str, tuple[str, ...], list[str]]]) -> str:
    mod = types.ModuleType(name)
    mod.resources = lambda ctx: [Fake(ctx, n) for _, _, ns in lanes_ for n in ns]  # type: ignore[attr-defined]
    mod.lanes = lambda ctx: [(ln, needs, [Fake(ctx, n) for n in ns]) for ln, needs, ns in lanes_]  # type: ignore[attr-defined]
    sys.modules[name] = mod
    return name


def test_a_lane_needing_nothing_starts_beside_its_steps_prerequisites(ctx):
    barrier = threading.Barrier(2, timeout=5)
    HOOKS["src"] = barrier.wait  # the source and the stream must be created at the same time
    HOOKS["stream"] = barrier.wait
    plan = [
        StepInfo("S", "S", (), _module("fake_steps.S", [(Fake, "src", {})])),
        StepInfo("K", "K", ("S",), _laned("fake_steps.K", [("stream", (), ["stream"]), ("dest", ("S", "K#stream"), ["dest"])])),
        StepInfo("F", "F", ("K",), _module("fake_steps.F", [(Fake, "fh", {})])),
    ]
    res = engine.apply(ctx, plan)
    assert not res.errors, res.errors
    t = {(e, n): ts for e, n, ts in LOG}
    assert t[("start", "dest")] >= max(t[("end", "src")], t[("end", "stream")])
    assert t[("start", "fh")] >= t[("end", "dest")]  # a dependent waits for every lane of the step
    # `step K` alone still makes both of its resources, in order
    LOG.clear()
    WORLD.clear()
    HOOKS.clear()
    ctx.state.doc.resources.clear()
    assert [c.name for c in engine.apply_step(ctx, plan[1])] == ["stream", "dest"]


def test_a_failed_lane_fails_its_step_and_skips_dependents(ctx):
    def boom() -> None:
        raise PlanError("no")

    HOOKS["bad"] = boom
    plan = [
        StepInfo("K", "K", (), _laned("fake_steps.K2", [("a", (), ["bad"]), ("b", ("K#a",), ["never"])])),
        StepInfo("F", "F", ("K",), _module("fake_steps.F2", [(Fake, "fh", {})])),
    ]
    res = engine.apply(ctx, plan)
    assert list(res.errors) == ["K"] and res.skipped == ["F"]
    assert "never" not in WORLD and "fh" not in WORLD
