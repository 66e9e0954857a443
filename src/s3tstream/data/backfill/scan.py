"""The scan strategy: a parallel Scan at a limited rate, each page sent to the stream as backfill
records, a checkpoint per page Kinesis accepted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from s3tstream.aws.client import translate
from s3tstream.data.backfill.jobs import Checkpoints, record_oversize
from s3tstream.data.backfill.ratelimit import TokenBucket, read_rate
from s3tstream.data.backfill.records import build_entries, quiet
from s3tstream.data.backfill.wire import call_wire
from s3tstream.data.changes import Oversize, Sent, put_records
from s3tstream.data.progress import Progress, Throttle
from s3tstream.errors import AwsError, Interrupted

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config

MAX_PAGE_ITEMS = 1000


class ScanBackfill:
    def __init__(self, cfg: "Config", aws: "Aws", store: Checkpoints, doc: dict[str, Any], desc: dict[str, Any], *,
                 progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep,
                 on_page: Callable[[int, list[dict[str, Any]]], None] | None = None) -> None:
        self.cfg, self.aws, self.store, self.doc = cfg, aws, store, doc
        self.progress = progress
        self.sleep = sleep
        self.on_page = on_page  # tests: called with each page's items before they are sent
        self.stop = threading.Event()
        self.lock = threading.Lock()
        rate, self.unit, self.rate_text = read_rate(cfg, desc)
        self.bucket = TokenBucket(rate, sleep=sleep)
        self.estimate = int(desc.get("ItemCount") or 0)
        self.skipped: list[Oversize] = []  # this run's records over Kinesis' limit (not sent)
        self.read = 0
        self.sent = 0
        self.items_per_rcu = 8.0  # refined from each page (0.5 RCU per 4 KB read, eventually consistent)
        self.tick = Throttle(progress, every=2.0)
        self.t0 = time.monotonic()

    def _limit(self) -> int | None:
        """Items per Scan page: sized to the rate limit (a page's cost is charged after it is
        read); without a limit, DynamoDB's own 1 MB pages (a checkpoint per page either way)."""
        n = int(self.doc["segments"])
        if self.bucket.rate <= 0:
            return None
        per_seg = self.bucket.rate / n
        want = per_seg * (self.items_per_rcu if self.unit == "rcu" else 1.0)
        return max(10, min(MAX_PAGE_ITEMS, int(want)))

    def _report(self, force: bool = False) -> None:
        segs = self.doc["segment_state"]
        total = sum(s["read"] for s in segs)
        elapsed = max(1e-6, time.monotonic() - self.t0)
        rate = self.read / elapsed
        left = sum(1 for s in segs if not s["done"])
        of = f" of ~{self.estimate:,} ({min(100, 100 * total // self.estimate)}%)" if self.estimate else ""
        if not left:
            eta = "done"
        elif self.estimate > total and rate > 0:
            eta = f"ETA {_duration((self.estimate - total) / rate)}"
        else:
            eta = "ETA unknown"  # DescribeTable's ItemCount is refreshed only about every 6 hours
        self.tick(f"backfill: {total:,}{of} items read, {self.sent:,} sent this run, {rate:,.0f} items/s, {eta}, "
                  f"{left} of {len(segs)} segment(s) left", force=force)

    def _read(self, seg: int, lek: dict[str, Any] | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None, float] | None:
        """The Scan page of segment ``seg`` after ``lek``: (items, its LastEvaluatedKey, both in
        wire JSON, the time it was read), after the rate limit allowed it; None once stopped."""
        from s3tstream.data.items import from_boto, to_boto

        self.bucket.wait(self.stop)
        if self.stop.is_set():
            return None
        total = int(self.doc["segments"])
        table = self.cfg.names.source_table
        kw: dict[str, Any] = {"TableName": table, "ReturnConsumedCapacity": "TOTAL"}
        if total > 1:
            kw.update(Segment=seg, TotalSegments=total)
        limit = self._limit()
        if limit:
            kw["Limit"] = limit
        if lek:
            kw["ExclusiveStartKey"] = to_boto(lek)
        read_at = time.time()
        try:
            page, wire = call_wire(self.aws.client("dynamodb"), "scan", "Items", **kw)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"scanning {table} (segment {seg} of {total})") from None
        items = wire if wire is not None else [from_boto(i) for i in page.get("Items", [])]
        consumed = float(page.get("ConsumedCapacity", {}).get("CapacityUnits", 0) or 0)
        if self.unit == "rcu":
            if not consumed:
                consumed = max(0.5, len(items) / self.items_per_rcu)
            elif items:
                self.items_per_rcu = max(1.0, 0.7 * self.items_per_rcu + 0.3 * len(items) / consumed)
            self.bucket.charge(consumed)
        else:
            self.bucket.charge(len(items))
        nxt = page.get("LastEvaluatedKey")
        return items, (from_boto(nxt) if nxt else None), read_at

    def _segment(self, seg: int) -> None:
        """Reads one page ahead: the next page is read while this one is sent. The checkpoint
        moves past a page only once Kinesis accepted all of it, so a page read ahead and not sent
        (stopped, failed) is read again by the next run."""
        cfg = self.cfg
        kinesis = self.aws.client("kinesis")
        st = self.doc["segment_state"][seg]
        if st["done"] or self.stop.is_set():
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"backfill-read-{seg}") as ahead:
            pending: Future[Any] | None = ahead.submit(self._read, seg, st.get("lek"))
            try:
                while pending is not None:
                    page = pending.result()
                    pending = None
                    if page is None:
                        return
                    items, lek, read_at = page
                    if lek is not None:
                        pending = ahead.submit(self._read, seg, lek)
                    if self.on_page is not None:
                        self.on_page(seg, items)
                    entries = build_entries(cfg, items, read_at)
                    res = put_records(kinesis, cfg.names.stream, entries, progress=quiet(self.progress),
                                      sleep=self.sleep) if entries else Sent()
                    with self.lock:
                        st["lek"] = lek
                        st["done"] = lek is None
                        st["read"] += len(items)
                        st["sent"] += res.sent
                        self.read += len(items)
                        self.sent += res.sent
                        self.skipped.extend(res.oversize)
                        record_oversize(self.doc, res.oversize)
                        self.store.save(self.doc)
                    self._report()
                    if self.stop.is_set():
                        return
            except BaseException:
                self.stop.set()  # the run stops anyway: a read ahead waiting on the rate limit need not finish
                raise
            finally:
                if pending is not None:
                    pending.cancel()  # not started yet: never reads; else its page is dropped

    def run(self) -> None:
        segs = self.doc["segment_state"]
        todo = [i for i, s in enumerate(segs) if not s["done"]]
        if not todo:
            return
        pool = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="backfill")
        futures = [pool.submit(self._segment, i) for i in todo]
        try:
            while True:
                done, pending = wait(futures, timeout=0.5, return_when=FIRST_EXCEPTION)
                if any(f.exception() for f in done) or not pending:
                    break
        except KeyboardInterrupt:
            self.stop.set()
            wait(futures)
            pool.shutdown()
            self._report(force=True)
            raise Interrupted(
                f"backfill interrupted after {self.read:,} item(s) this run; checkpoints saved in {self.store.path}",
                "run `s3tstream backfill` again: it continues from the checkpoints",
            ) from None
        self.stop.set()
        wait(futures)
        pool.shutdown()
        self._report(force=True)
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            e = errors[0]
            hint = f"fix the cause, then run `s3tstream backfill` again: it continues from the checkpoints in {self.store.path}"
            if isinstance(e, AwsError):
                raise AwsError(f"backfill stopped after {self.read:,} item(s) this run: {e.message}", hint, code=e.code)
            if isinstance(e, (ClientError, BotoCoreError)):
                err = translate(e, "backfill")
                raise AwsError(err.message, hint, code=err.code)
            raise e


def _duration(s: float) -> str:
    s = int(s)
    if s < 90:
        return f"{s}s"
    if s < 5400:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"

