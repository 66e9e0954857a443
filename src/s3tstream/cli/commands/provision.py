"""up, plan, step, status, down: the provisioning commands (engine calls, rendered)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from s3tstream.cli.common import READ_ONLY, ConfigOpt, OutputOpt, YesOpt, handle_errors, open_stack
from s3tstream.cli.output import Format, Output
from s3tstream.provision.catalog import BY_NAME, PROVISIONING, STEPS

ACTION_STYLE = {"create": "green", "update": "yellow", "adopt": "cyan", "claim": "cyan", "none": "dim",
                "conflict": "red", "delete": "red", "forget": "cyan", "keep": "dim"}


VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="List every resource, also those left unchanged.")]
# (action, what `up` did, what `plan` says it would do), in the summary's order
SUMMARY = (("create", "created", "to create"), ("update", "updated", "to update"), ("adopt", "adopted", "to adopt"),
           ("claim", "recorded", "to record"), ("none", "unchanged", "unchanged"), ("conflict", "conflicting", "conflicting"))


def _render_changes(out: Output, title: str, changes: list, *, verbose: bool = True) -> None:
    """The stack's own resources, then (apart) the account-wide ones it shares with other stacks;
    rows of "none" only when verbose."""
    for part, head in ((False, title), (True, f"{title} (shared by the account)")):
        rows = [[c.step, c.kind, c.name, out.styled(c.action, ACTION_STYLE.get(c.action, "")), c.detail]
                for c in changes if c.shared == part and (verbose or c.action != "none")]
        if rows:
            out.table(head, ["step", "kind", "name", "action", "detail"], rows)


def summary(changes: list, *, planned: bool) -> str:
    """One line: "3 created, 1 updated, 17 unchanged" (or "3 to create, ..." for a plan)."""
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    parts = [f"{counts[a]} {plan if planned else did}" for a, did, plan in SUMMARY if counts.get(a)]
    return ", ".join(parts) or "no resources"


def _report(out: Output, stack, result, title: str, verbose: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Render an engine result; failed steps make one error (exit code of the worst)."""
    from s3tstream.errors import S3tError

    error: S3tError | None = None
    if result.errors:
        errs = list(result.errors.values())
        error = errs[0]
        if len(errs) > 1:
            error = S3tError(
                "steps failed: " + "; ".join(f"{k}: {v.message}" for k, v in result.errors.items()),
                errs[0].hint, code=errs[0].code,
            )
            error.exit_code = max(e.exit_code for e in errs)
    if out.is_json:
        doc = {
            "stack": stack.cfg.stack.name,
            "changes": [c.to_dict() for c in result.changes],
            "skipped": result.skipped,
        }
        if error:
            doc["error"] = error.to_dict()
        out.json(doc)
        if error:
            raise SystemExit(error.exit_code)
        return
    _render_changes(out, title, result.changes, verbose=verbose)
    for name in result.skipped:
        out.warn(f"step {name} skipped: a step it needs failed")
    if error:
        raise error
    out.line(f"{title}: {summary(result.changes, planned=False)}")


PruneOpt = Annotated[bool, typer.Option(
    "--prune", help="Also delete the source and lake tables of tables removed from the config (their data).")]


@handle_errors
def up(config: ConfigOpt = None, output: OutputOpt = Format.text, verbose: VerboseOpt = False,
       prune: PruneOpt = False) -> None:
    """Create every provisioning step in dependency order; safe to run again (it resumes).

    A table removed from the config stops streaming; its data stays unless --prune."""
    from s3tstream.provision import engine, preflight

    out = Output(output)
    stack = open_stack(config, out, "up")
    try:
        for c in preflight.require(stack.cfg, stack.aws):
            out.info(f"{c.name}: {c.detail}", tag="ok", style="green")
        result = engine.apply(stack.ctx(prune=prune))
        _report(out, stack, result, f"up {stack.cfg.stack.name}", verbose)
    finally:
        stack.close()


@handle_errors(interrupted=READ_ONLY)
def plan(
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
    verbose: VerboseOpt = False,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 3 when changes are pending (0: nothing to do, 1: conflicts).")] = False,
    prune: PruneOpt = False,
) -> None:
    """Show what `up` would create, change or leave (read-only calls only).

    Exit 0 when nothing would change (or, without --detailed-exitcode, when only changes are
    pending), 1 when a resource conflicts with the config (up would refuse it), 3 with
    --detailed-exitcode when changes are pending."""
    from s3tstream.errors import PlanError
    from s3tstream.provision import engine

    out = Output(output)
    stack = open_stack(config, out, "plan", lock=False)
    changes = engine.plan(stack.ctx(prune=prune))
    foreign = engine.foreign_error([c for c in changes if c.foreign])  # another stack's resource: exit 2
    conflicts = [c for c in changes if c.action == "conflict"]
    pending = [c for c in changes if c.action not in ("none", "conflict")]
    err = foreign
    if err is None and conflicts:
        err = PlanError(f"{len(conflicts)} resource(s) conflict with the config (`up` would refuse them):\n"
                        + "\n".join(f"  {c.kind} {c.name}: {c.detail}" for c in conflicts),
                        "each line says what to change; then run `s3tstream plan` again", code="conflict")
        err.exit_code = 1
    if out.is_json:
        out.json_result({"stack": stack.cfg.stack.name, "changes": [c.to_dict() for c in changes]}, err)
    else:
        _render_changes(out, f"plan: {stack.cfg.stack.name}", changes, verbose=verbose)
        out.line(f"plan {stack.cfg.stack.name}: " + ("nothing to do; " if not pending and not conflicts else "")
                 + summary(changes, planned=True))
        if err:
            raise err
    if pending and detailed_exitcode:
        raise SystemExit(3)


def _step_names() -> str:
    return "\n\n".join(
        f"{s.name}: {s.help}" + ("" if s.module else " (not built yet)") for s in STEPS
    )


@handle_errors
def step(
    name: Annotated[str, typer.Argument(help="One of: " + ", ".join(s.name for s in STEPS), show_default=False)],
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
    verbose: VerboseOpt = False,
) -> None:
    """Run one named step (its prerequisites must have run)."""
    from s3tstream.errors import UsageError

    info = BY_NAME.get(name)
    if info is None:
        raise UsageError(f"unknown step {name!r}", "steps: " + ", ".join(s.name for s in STEPS))
    if not info.provisioning:
        import importlib

        # an action step (put-item, query): its command module runs it
        return importlib.import_module(info.module).run_step(config, output)  # type: ignore[arg-type]
    from s3tstream.provision import engine

    out = Output(output)
    stack = open_stack(config, out, f"step {name}")
    try:
        engine.step_module(info)  # a step not built yet says so before anything else
        ctx = stack.ctx(name)
        engine.check_requirements(ctx, info)
        result = engine.apply(ctx, [info])
        _report(out, stack, result, f"step {name}", verbose)
    finally:
        stack.close()


step.__doc__ = "Run one named step (its prerequisites must have run).\n\nSteps:\n\n" + _step_names()


@handle_errors(interrupted=READ_ONLY)
def status(config: ConfigOpt = None, output: OutputOpt = Format.text) -> None:
    """List every recorded resource with its recorded and live state (present, missing, drifted).

    Exit 1 when a resource is missing or drifted."""
    from s3tstream.provision import engine

    out = Output(output)
    stack = open_stack(config, out, "status", lock=False)
    ctx = stack.ctx()
    specs = {}
    for info in engine.built_steps():
        for spec in engine.resources(ctx, info):
            specs[(spec.kind, spec.name)] = spec
    rows = []
    for rec in stack.state.doc.resources:
        spec = specs.get(rec.key)
        if spec is None:
            live, detail = "unknown", "no longer in the config; `down` removes it"
            table = rec.outputs.get(engine.TABLE_OUTPUT) or ""
        else:
            obs = engine._aws_call(f"observing {rec.kind} {rec.name}", spec.observe)
            live = "missing" if not obs.exists else ("drifted" if obs.drift or obs.conflict else "present")
            detail = obs.conflict or obs.drift_text()
            table = spec.table or ""
        rows.append({"table": table, "step": rec.step, "kind": rec.kind, "name": rec.name, "ownership": rec.ownership,
                     "recorded": rec.status, "live": live, "id": rec.id, "detail": detail})
    # grouped by table: the stack's shared resources first, then each table's (config order, then removed ones)
    order = {t: i for i, t in enumerate(stack.cfg.table_names)}
    rows.sort(key=lambda r: (bool(r["table"]), order.get(r["table"], len(order)), r["table"]))
    off = [r for r in rows if r["live"] in ("missing", "drifted")]
    if out.is_json:
        out.json({"stack": stack.cfg.stack.name, "account": stack.state.doc.account, "region": stack.cfg.stack.region,
                  "resources": rows})
    elif not rows:
        out.line(f"stack {stack.cfg.stack.name}: nothing recorded (run `s3tstream up`)")
    else:
        out.table(f"status: {stack.cfg.stack.name}",
                  ["table", "step", "kind", "name", "ownership", "recorded", "live", "detail"],
                  [[r["table"] or "(shared)", r["step"], r["kind"], r["name"], r["ownership"], r["recorded"], r["live"],
                    r["detail"]] for r in rows])
        if off:
            out.info(f"{len(off)} resource(s) missing or drifted: `s3tstream plan` shows what `s3tstream up` would "
                     "change to bring them back")
    if off:  # scriptable: exit 1 when the stack is not as recorded (like `diff`)
        raise SystemExit(1)


@handle_errors
def down(
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
    yes: YesOpt = False,
    keep_data: Annotated[bool, typer.Option("--keep-data", help="Keep the DynamoDB table and the S3 table bucket, namespace and table.")] = False,
    step_name: Annotated[str | None, typer.Option("--step", help="Remove one step's resources and those of the steps built on it.")] = None,
    purge_errors: Annotated[bool, typer.Option("--purge-errors", help="Also delete a non-empty Firehose error bucket.")] = False,
    include_shared: Annotated[bool, typer.Option("--include-shared", help="Also remove the account-wide resources this stack made (the S3 Tables integration), when no other table bucket uses them.")] = False,
) -> None:
    """Remove, in reverse order, everything the stack created, and nothing else."""
    from s3tstream.provision import engine
    from s3tstream.errors import UsageError

    out = Output(output)
    if step_name is not None and (step_name not in BY_NAME or not BY_NAME[step_name].provisioning):
        raise UsageError(f"unknown provisioning step {step_name!r}", "steps: " + ", ".join(s.name for s in PROVISIONING))
    stack = open_stack(config, out, "down")
    try:
        ctx = stack.ctx(purge_errors=purge_errors)
        engine.load_all_kinds()
        todo = engine.destroy(ctx, step=step_name, keep_data=keep_data, dry_run=True, include_shared=include_shared)
        if step_name is None:
            # what an interrupted export backfill or `verify --export` left: unrecorded resources,
            # named for the stack (also on a stack already down)
            from s3tstream.data.backfill import leftovers

            todo += [engine.Change("backfill", k, n, "delete")
                     for k, n in leftovers(stack.cfg, stack.aws, ctx.progress, state=stack.state)]
            # Athena results land in a bucket `query` creates on first use (unrecorded); it
            # carries the stack tag, and only a bucket with that tag is removed, also when it
            # is all the stack has left.
            from s3tstream.lake.query import remove_results_bucket

            if remove_results_bucket(stack.cfg, stack.aws, ctx.progress, dry_run=True):
                todo.append(engine.Change("query", "s3-results-bucket",
                                          stack.cfg.names.results_bucket(stack.aws.identity().account), "delete"))
        if not todo:
            if out.is_json:
                out.json({"stack": stack.cfg.stack.name, "deleted": [], "kept": []})
            else:
                out.line(f"stack {stack.cfg.stack.name}: nothing to remove")
            return
        if not out.is_json:
            _render_changes(out, f"down: {stack.cfg.stack.name}", todo)
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError("down needs confirmation", "pass --yes to delete without asking")
            if not typer.confirm("Delete the resources marked delete?", default=False, err=True):
                raise UsageError("cancelled; nothing was deleted")
        done = engine.destroy(ctx, step=step_name, keep_data=keep_data, include_shared=include_shared)
        if step_name is None:
            from s3tstream.data.backfill import remove_leftovers

            done += [engine.Change("backfill", k, n, "delete")
                     for k, n in remove_leftovers(stack.cfg, stack.aws, ctx.progress, state=stack.state)]
            if remove_results_bucket(stack.cfg, stack.aws, ctx.progress):
                done.append(engine.Change("query", "s3-results-bucket",
                                          stack.cfg.names.results_bucket(stack.aws.identity().account), "delete"))
        if out.is_json:
            out.json({"stack": stack.cfg.stack.name,
                      "deleted": [c.to_dict() for c in done if c.action == "delete"],
                      "kept": [c.to_dict() for c in done if c.action != "delete"]})
        else:
            n = sum(1 for c in done if c.action == "delete")
            out.line(f"deleted {n} resource(s); kept {len(done) - n}")
    finally:
        stack.close()
