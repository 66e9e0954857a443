"""test-insert: tagged items inserted, updated and deleted, followed into the lake (latency, verdict)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from s3tstream.cli.common import ConfigOpt, EngineOpt, OutputOpt, TableOpt, check_engine, handle_errors, open_stack
from s3tstream.cli.output import Format, Output


@handle_errors(interrupted="run the command again: it starts over with a new run; the interrupted run's items stay in the "
               "source table (tagged with its run id)")
def test_insert(
    count: Annotated[int, typer.Option("--count", "-n", help="Items to insert.")] = 20,
    updates: Annotated[Optional[int], typer.Option("--updates", help="Items to update afterwards (default count/4).", show_default=False)] = None,
    deletes: Annotated[Optional[int], typer.Option("--deletes", help="Items to delete afterwards (default count/4).", show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="Seconds to wait for each phase (default: Firehose buffer interval + 180).", show_default=False)] = None,
    interval: Annotated[Optional[float], typer.Option("--interval", help="Seconds between lake queries (default stack.poll_interval).", show_default=False)] = None,
    engine: EngineOpt = None,
    keep_items: Annotated[bool, typer.Option("--keep-items", help="Leave the run's test items in the table and the lake "
                                             "(by default they are deleted and the deletes followed into the lake).")] = False,
    table: TableOpt = None,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Insert tagged items, update and delete some, and follow them into the lake: latency and verdict."""
    from s3tstream.errors import UsageError, WaitTimeout
    from s3tstream.lake.query import open_engine
    from s3tstream.data.testinsert import TestInsert, stats

    check_engine(engine)
    for name, v in (("--timeout", timeout), ("--interval", interval)):
        if v is not None and v < 0:
            raise UsageError(f"{name} must not be negative, got {v}")
    out = Output(output)
    stack = open_stack(config, out, "test-insert", lock=False, needs=("create-firehose",), table=table)
    cfg = stack.cfg
    started = _freshness_window_start()
    with out.spinner("test-insert") as progress:
        # the engine's per-query states would drown the follow loop's own progress
        eng = open_engine(cfg, stack.aws, engine, progress=lambda m: progress(m) if m.startswith("creating") else None)
        ti = TestInsert(cfg, stack.aws.client("dynamodb"), eng, count=count, updates=updates, deletes=deletes,
                        timeout=timeout, interval=cfg.stack.poll_interval if interval is None else interval,
                        progress=progress)
        res = ti.run_all()
        # the deletes are followed into the lake only when the pipeline carried the run's changes
        cleaned = None if keep_items else ti.cleanup(follow=res.passed)
    res.freshness_seconds = _freshness_seen(stack, started, res)
    doc = res.to_json()
    if cleaned is not None:
        doc["cleaned_up"] = cleaned
    err = None
    if cleaned and cleaned["left_in_lake"]:
        err = WaitTimeout(f"test-insert run {res.run_id}: {len(cleaned['left_in_lake'])} test item(s) deleted from the "
                          "source are still in the lake", "check the Firehose stream (`s3tstream status`) and "
                          "`s3tstream errors`; `s3tstream verify` lists them as extra")
    if not res.passed:
        missing = {k: len(v) for k, v in res.missing.items() if v}
        err = WaitTimeout(
            f"test-insert run {res.run_id}: timed out waiting for {res.timed_out}; not in the lake: "
            + ", ".join(f"{n} {k}" for k, n in missing.items()),
            "check the Firehose stream (`s3tstream status`), failed records (`s3tstream errors`), or raise --timeout",
        )
    if out.is_json:
        return out.json_result(doc, err)
    rows = []
    for kind in ("insert", "update", "delete"):
        if kind in res.latency:
            s = stats(res.latency[kind])
            fmt = lambda x: "-" if x is None else f"{x:.2f}s"  # noqa: E731
            rows.append([kind, str(s["count"]), fmt(s["p50"]), fmt(s["p95"]), fmt(s["max"])])
    out.table(f"test-insert run {res.run_id} ({res.engine})", ["change", "seen", "p50", "p95", "max"], rows)
    for note in res.notes:
        out.warn(note)
    if err:
        for kind, keys in res.missing.items():
            for k in keys[:10]:
                out.err.print(f"  missing {kind[:-1]}: {k}", markup=False)
        for k in (cleaned or {}).get("left_in_lake", [])[:10]:
            out.err.print(f"  still in the lake: {k}", markup=False)
        raise err
    c = res.counts
    out.line(f"PASS: {c['inserts']} insert(s), {c['updates']} update(s), {c['deletes']} delete(s) reached the lake "
             f"in {res.elapsed:.1f}s")
    if cleaned is not None:
        out.line(f"removed the run's {cleaned['deleted_from_source']} test item(s) from the source and the lake")
    if res.freshness_seconds is not None:
        out.line(f"freshness: Firehose's DeliveryToIceberg.DataFreshness peaked at {res.freshness_seconds:.1f}s during the run")


def _freshness_window_start() -> Any:
    import datetime as dt

    # a minute early: CloudWatch windows are whole minutes
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)


def _freshness_seen(stack: Any, started: Any, res: Any) -> float | None:
    """Firehose's freshness metric over the run; a metric that cannot be read is a note, not a failure."""
    import datetime as dt

    from s3tstream.data.health import freshness_seen

    try:
        return freshness_seen(stack.cfg, stack.aws, started, dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    except Exception as e:  # noqa: BLE001 - the latencies above are the result; this is extra
        res.notes.append(f"could not read Firehose's freshness metric: {getattr(e, 'message', e)}")
        return None
