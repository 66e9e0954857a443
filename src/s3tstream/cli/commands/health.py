"""`s3tstream health`: one verdict (healthy, degraded, failing) and the checks behind it;
`--watch` redraws a dashboard every few seconds with a sparkline per metric.

Exit 0 when healthy, 1 otherwise (2 for bad options). The checks: s3tstream.data.health.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Annotated, Any, Callable

import typer

from s3tstream.cli.common import ConfigOpt, OutputOpt, handle_errors, open_stack
from s3tstream.cli.output import Format, Output

if TYPE_CHECKING:
    from s3tstream.data.health.checks import Report

SPARK = "▁▂▃▄▅▆▇█"
STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}
VERDICT_STYLE = {"healthy": "bold green", "degraded": "bold yellow", "failing": "bold red"}
UNIT = {"freshness": "s", "delivery": "failed", "transform": "errors", "stream": "throttled", "table": "MB/file", "alarms": "in ALARM"}


def sparkline(values: list[float | None]) -> str:
    """One character per period: the height is the value against the window's highest; blank: no data."""
    nums = [v for v in values if v is not None]
    top = max(nums) if nums else 0.0
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(SPARK[0])
        else:
            out.append(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))])
    return "".join(out)


def _value(name: str, v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:.3g}"
    return f"{v} {UNIT.get(name.split()[0], '')}".strip()  # "table orders": a table check of a [[tables]] stack


def dashboard(report: "Report", now: dt.datetime) -> Any:
    """The checks and a sparkline per metric, as one rich renderable."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from s3tstream.aws.metrics import METRICS

    o = report.obs
    head = Text.assemble(("s3tstream health ", "bold"), (report.stack, "bold cyan"), "  ",
                         (report.verdict.upper(), VERDICT_STYLE[report.verdict]),
                         f"  {now:%Y-%m-%d %H:%M:%S} UTC, window {o.start:%H:%M}-{o.end:%H:%M}, {o.period}s periods")
    checks = Table(show_lines=False, title_justify="left", expand=False)
    for col in ("check", "status", "value", "detail"):
        checks.add_column(col, overflow="fold")
    for c in report.checks:
        detail = Text(c.detail)
        if c.action:
            detail.append(f"\n-> {c.action}", style="dim")
        checks.add_row(c.name, Text(c.status, style=STYLE[c.status]), _value(c.name, c.value), detail)
    width = len(o.buckets(METRICS[0].key))
    metrics = Table(title=f"last {int((o.end - o.start).total_seconds() // 60)} min, one mark per {o.period}s",
                    title_justify="left")
    metrics.add_column("metric (CloudWatch)", no_wrap=True)
    metrics.add_column("stat", style="dim")
    metrics.add_column("last", justify="right")
    metrics.add_column("trend", no_wrap=True, min_width=width)
    for m in METRICS:
        last = o.latest(m.key)
        metrics.add_row(f"{m.namespace.removeprefix('AWS/')} {m.name}", {"Maximum": "max", "Sum": "sum"}.get(m.stat, m.stat), "-" if last is None else f"{last:.4g}",
                        Text(sparkline(o.buckets(m.key)), style="cyan"))
    return Group(head, checks, metrics)


def watch(build: Callable[[], "Report"], out: Output, interval: float, *, clock: Callable[[], dt.datetime],
          sleep: Callable[[float], None] = time.sleep, iterations: int | None = None) -> "Report":
    """Redraw the dashboard every `interval` seconds until Ctrl-C (or `iterations` draws)."""
    from rich.live import Live

    report = build()
    with Live(dashboard(report, clock()), console=out.out, auto_refresh=False, transient=False) as live:
        drawn = 1
        try:
            while iterations is None or drawn < iterations:
                sleep(interval)
                report = build()
                live.update(dashboard(report, clock()), refresh=True)
                drawn += 1
        except KeyboardInterrupt:
            pass  # Ctrl-C ends the watch; the exit code is the last verdict's
    return report


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@handle_errors
def health(
    since: Annotated[str, typer.Option("--since", help="Window: 15m, 1h, 2d, or an ISO-8601 time.")] = "1h",
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="A live dashboard, redrawn every --interval seconds (Ctrl-C ends).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between redraws with --watch.")] = 5.0,
    config: ConfigOpt = None,
    output: OutputOpt = Format.text,
) -> None:
    """Is the pipeline healthy? Freshness, delivery, transform, stream and table checks: a verdict, and what to do."""
    from s3tstream.data.health import check, parse_since
    from s3tstream.errors import UsageError

    out = Output(output)
    if watch_ and out.is_json:
        raise UsageError("--watch draws a dashboard; it cannot be combined with --output json",
                         "drop --watch for one JSON document")
    if interval < 1:
        raise UsageError(f"--interval must be at least 1 second, got {interval:g}")
    parse_since(since, _utcnow())  # bad input exits 2 before any AWS call
    stack = open_stack(config, out, "health", lock=False)

    def build() -> "Report":
        now = _utcnow()
        return check(stack.cfg, stack.aws, parse_since(since, now), now)

    report = watch(build, out, interval, clock=_utcnow) if watch_ else build()
    if out.is_json:
        out.json(report.to_json())
    elif not watch_:
        out.out.print(dashboard(report, report.obs.end))
    raise SystemExit(0 if report.healthy else 1)

