"""test-insert: write tagged items, update and delete some, follow them into the lake.

1. N items built from the schema (:func:`sample_item`), tagged with a run id in the partition
   key (S/B keys: ``s3t-test-<run>-<i>``; N keys: a random block of numbers), written with
   BatchWriteItem; each insert's time is when its batch returned.
2. Follow: query the lake (the query interface, current rows: changelog mode reads the latest
   change per key) until every inserted key is there.
3. Update some items (a *marker* attribute gets a new value: the first non-key string or number
   column, else an undeclared attribute seen through table.extra_column) and delete others.
4. Follow until every update is visible and every delete is gone.

Each wait stops after ``timeout`` seconds (default: the Firehose buffer interval + 180 s).
Latency of a change = start of the first lake query that shows it - the time its write
returned (Athena reads the snapshot current when the query starts; the resolution is the time
between queries).
"""

from __future__ import annotations

import base64
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from s3tstream.errors import UsageError
from s3tstream.lake.query import quote_ident, sql_literal
from s3tstream.transform import types as T

if TYPE_CHECKING:
    from s3tstream.config.model import Config
    from s3tstream.data.items import ItemSchema

Progress = Callable[[str], None]
MARKER_ATTR = "s3t_test_version"
MAX_COUNT = 10_000


# ------------------------------------------------------------------ generated values
def sample_value(t: T.IcebergType, i: int, tag: str) -> Any:
    """A plain JSON value of type ``t`` (for items.item_from_plain)."""
    if isinstance(t, T.DecimalType):
        whole = i % (10 ** max(0, t.precision - t.scale)) if t.precision > t.scale else 0
        frac = Decimal(1).scaleb(-t.scale) * 25 if t.scale >= 2 else Decimal(0)
        return (Decimal(whole) + frac).quantize(Decimal(1).scaleb(-t.scale))
    if isinstance(t, T.Primitive):
        p = t.name
        return {
            "string": lambda: f"{tag}-{i}",
            "boolean": lambda: i % 2 == 0,
            "int": lambda: i,
            "long": lambda: 10_000_000_000 + i,
            "float": lambda: Decimal(i) + Decimal("0.5"),
            "double": lambda: Decimal(i) + Decimal("0.25"),
            "date": lambda: "2024-05-01",
            "timestamp": lambda: datetime.now(timezone.utc).replace(tzinfo=None).isoformat(),
            "timestamptz": lambda: datetime.now(timezone.utc).isoformat(),
            "binary": lambda: base64.b64encode(f"{tag}-{i}".encode()).decode(),
        }[p]()
    if isinstance(t, T.ListType):
        return [sample_value(t.element, i, tag)]
    if isinstance(t, T.MapType):
        return {"k": sample_value(t.value, i, tag)}
    if isinstance(t, T.StructType):
        return {f.name: sample_value(f.type, i, tag) for f in t.fields}
    raise AssertionError(t)  # pragma: no cover


def _key_max(t: T.IcebergType | None) -> int:
    if isinstance(t, T.DecimalType):
        return 10 ** max(1, t.precision - t.scale) - 1
    if isinstance(t, T.Primitive) and t.name == "int":
        return 2**31 - 1
    return 10**15


@dataclass
class KeyPlan:
    """How test keys are made and found again in the lake."""

    run: str
    attr_types: list[tuple[str, str, str, T.IcebergType | None]]  # (attribute, S|N|B, column, column type)
    base: int = 0

    def values(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for n, (attr, typ, _, _) in enumerate(self.attr_types):
            token = f"s3t-test-{self.run}-{i:05d}" if n == 0 else f"{i:05d}"
            if typ == "S":
                out[attr] = token
            elif typ == "N":
                out[attr] = self.base + i if n == 0 else i
            else:
                out[attr] = base64.b64encode(token.encode()).decode()
        return out

    def where(self, count: int) -> str:
        attr, typ, col, _ = self.attr_types[0]
        q = quote_ident(col)
        if typ == "S":
            return f"{q} LIKE {sql_literal(f's3t-test-{self.run}-%')}"
        if typ == "N":
            return f"{q} BETWEEN {self.base} AND {self.base + count - 1}"
        vals = ", ".join(sql_literal(self.values(i)[attr]) for i in range(count))
        return f"to_base64({q}) IN ({vals})"


def key_plan(cfg: "Config", schema: "ItemSchema", count: int, run: str) -> KeyPlan:
    from s3tstream.lake.schema import effective_schema

    types = {c.name: c.type for c in effective_schema(cfg).columns}
    attrs = [(k.name, k.type, k.column, types.get(k.column)) for k in schema.keys]
    base = 0
    if attrs[0][1] == "N":
        hi = _key_max(attrs[0][3]) - count
        if hi < 1:
            raise UsageError(f"the partition key column {attrs[0][2]!r} cannot hold {count} distinct test keys",
                             "use a smaller --count")
        base = random.randint(max(1, hi // 10), hi)
    return KeyPlan(run, attrs, base)


@dataclass(frozen=True)
class Marker:
    attr: str  # DynamoDB attribute
    column: str  # lake column that shows it
    kind: str  # "string" | "number" | "extra"

    def value(self, run: str, version: int) -> Any:
        return f"{run}-v{version}" if self.kind == "string" else version

    def seen(self, lake_value: Any, run: str, version: int) -> bool:
        if lake_value is None:
            return False
        if self.kind == "string":
            return lake_value == self.value(run, version)
        if self.kind == "number":
            try:
                return Decimal(str(lake_value)) == version
            except ArithmeticError:
                return False
        import json

        try:
            return Decimal(str(json.loads(lake_value).get(self.attr))) == version
        except (ValueError, AttributeError, ArithmeticError, TypeError):
            return False


def find_marker(cfg: "Config", schema: "ItemSchema") -> Marker | None:
    keys = {k.name for k in schema.keys}
    for c in schema.settings.columns:
        if c.source in keys or c.name == cfg.table.extra_column:
            continue
        t = c.type
        if isinstance(t, T.Primitive) and t.name == "string":
            return Marker(c.source, c.name, "string")
        if isinstance(t, T.DecimalType) or (isinstance(t, T.Primitive) and t.name in ("int", "long", "double")):
            return Marker(c.source, c.name, "number")
    if cfg.table.extra_column and MARKER_ATTR not in schema.types:
        return Marker(MARKER_ATTR, cfg.table.extra_column, "extra")
    return None


def sample_item(cfg: "Config", schema: "ItemSchema", i: int, tag: str, keys: dict[str, Any] | None = None,
                marker: tuple["Marker", Any] | None = None) -> dict[str, Any]:
    """A plain item with every declared column filled (keys from ``keys``)."""
    item: dict[str, Any] = {}
    key_attrs = {k.name for k in schema.keys}
    for c in schema.settings.columns:
        if c.source in key_attrs or c.name == cfg.table.extra_column or c.source in item:
            continue
        item[c.source] = sample_value(c.type, i, tag)
    if keys is None:
        plan = key_plan(cfg, schema, 1, tag)
        keys = plan.values(i)
    item.update(keys)
    if marker is not None:
        item[marker[0].attr] = marker[1]
    return item


# ------------------------------------------------------------------ the run
def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


def stats(values: list[float]) -> dict[str, Any]:
    r = lambda x: None if x is None else round(x, 3)  # noqa: E731
    return {"count": len(values), "p50": r(percentile(values, 50)), "p95": r(percentile(values, 95)),
            "max": r(max(values) if values else None)}


@dataclass
class Outcome:
    run_id: str
    counts: dict[str, int]
    latency: dict[str, list[float]] = field(default_factory=dict)
    missing: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    timed_out: str | None = None
    elapsed: float = 0.0
    engine: str = ""
    notes: list[str] = field(default_factory=list)
    # Firehose's DeliveryToIceberg.DataFreshness at its highest during the run (set by the command)
    freshness_seconds: float | None = None

    @property
    def passed(self) -> bool:
        return self.timed_out is None and not any(self.missing.values())

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "passed": self.passed, "engine": self.engine, "counts": self.counts,
                "latency_seconds": {k: stats(v) for k, v in self.latency.items()},
                "missing": self.missing, "timed_out_waiting_for": self.timed_out,
                "elapsed_seconds": round(self.elapsed, 3), "freshness_seconds": self.freshness_seconds,
                "notes": self.notes}


class TestInsert:
    __test__ = False  # not a pytest class

    def __init__(
        self,
        cfg: "Config",
        ddb: Any,
        engine: Any,
        *,
        count: int = 20,
        updates: int | None = None,
        deletes: int | None = None,
        timeout: float | None = None,
        interval: float = 5.0,
        progress: Progress = lambda m: None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        run_id: str | None = None,
    ) -> None:
        from s3tstream.data.items import ItemSchema

        if not 1 <= count <= MAX_COUNT:
            raise UsageError(f"--count must be 1..{MAX_COUNT}, got {count}")
        updates = count // 4 if updates is None else updates
        deletes = count // 4 if deletes is None else deletes
        if updates < 0 or deletes < 0 or updates + deletes > count:
            raise UsageError(f"--updates ({updates}) + --deletes ({deletes}) must be between 0 and --count ({count})")
        self.cfg = cfg
        self.ddb = ddb
        self.engine = engine
        self.schema = ItemSchema.from_config(cfg)
        self.count, self.n_updates, self.n_deletes = count, updates, deletes
        self.timeout = cfg.firehose.buffer_interval_seconds + 180.0 if timeout is None else timeout
        self.interval = interval
        self.progress = progress
        self.sleep = sleep
        self.clock = clock
        self.run = run_id or uuid.uuid4().hex[:8]
        self.marker = find_marker(cfg, self.schema)
        self.keys = key_plan(cfg, self.schema, count, self.run)
        from s3tstream.data.verify import Layout

        self.layout = Layout.from_config(cfg, self.schema.settings)

    # -- writing
    def _write(self, requests: list[dict[str, Any]], when: dict[tuple, float]) -> None:
        from s3tstream.data.items import batch_write

        def on_batch(batch: list[dict[str, Any]], _returned: float) -> None:
            t = self.clock()
            for r in batch:
                item = r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"]
                when[self.schema.key_of(item)] = t

        batch_write(self.ddb, self.schema.table, requests, key_of=self.schema.key_of, progress=lambda m: None,
                    sleep=self.sleep, on_batch=on_batch)

    def _typed(self, i: int, version: int) -> dict[str, Any]:
        from s3tstream.data.items import checked_plain

        mk = (self.marker, self.marker.value(self.run, version)) if self.marker else None
        plain = sample_item(self.cfg, self.schema, i, f"s3t-{self.run}", self.keys.values(i), mk)
        return checked_plain(plain, self.schema, f"generated test item {i}")

    # -- reading the lake
    def _lake(self) -> tuple[float, dict[tuple, dict[str, Any]]]:
        from s3tstream.data.verify import current_rows_sql

        cols = [k for k in self.layout.keys]
        if self.marker and self.marker.column not in cols:
            cols.append(self.marker.column)
        types = dict(self.layout.columns)
        exprs = [self.engine.select_expr(c, str(types.get(c, "string"))) for c in cols]
        sql = current_rows_sql(self.layout, exprs, self.keys.where(self.count))
        started = self.clock()
        res = self.engine.run(sql)
        rows = {}
        for r in res.records():
            rows[self.layout.key_of(r)] = r
        return started, rows

    def _lake_key(self, typed_item: dict[str, Any]) -> tuple:
        from s3tstream.transform import keys_row

        return self.layout.key_of(keys_row(self.schema.key_item(typed_item), self.schema.settings))

    def _follow(self, what: str, pending: dict[tuple, Callable[[dict[tuple, dict[str, Any]]], bool]],
                written: dict[tuple, float], observed: dict[tuple, float]) -> list[tuple]:
        """Query until every pending check holds, recording each key's latency in ``observed``.
        Returns the keys still pending when the timeout is reached."""
        start = self.clock()
        total = len(pending)
        while pending:
            seen_at, rows = self._lake()
            for k in [k for k, check in pending.items() if check(rows)]:
                observed[k] = max(0.0, seen_at - written[k])
                del pending[k]
            elapsed = self.clock() - start
            self.progress(f"{what}: {total - len(pending)}/{total} visible in the lake ({elapsed:.0f}s)")
            if not pending:
                break
            if elapsed + self.interval > self.timeout:
                return list(pending)
            self.sleep(self.interval)
        return []

    def run_all(self) -> Outcome:
        t0 = self.clock()
        marker = self.marker
        n_upd = self.n_updates if marker else 0
        out = Outcome(self.run, {"inserts": self.count, "updates": n_upd, "deletes": self.n_deletes},
                      engine=getattr(self.engine, "name", ""))
        if marker is None and self.n_updates:
            out.notes.append("no non-key string or number column (and no extra_column): updates cannot be seen; none made")
        items = [self._typed(i, 1) for i in range(self.count)]
        lake_keys = [self._lake_key(it) for it in items]
        by_item = {self.schema.key_of(it): lk for it, lk in zip(items, lake_keys)}

        # 1. inserts
        self.progress(f"run {self.run}: writing {self.count} item(s) to {self.schema.table}")
        w1: dict[tuple, float] = {}
        self._write([{"PutRequest": {"Item": it}} for it in items], w1)
        observed: dict[tuple, float] = {}
        left = self._follow("inserts", {lk: (lambda rows, lk=lk: lk in rows) for lk in lake_keys},
                            {by_item[k]: t for k, t in w1.items()}, observed)
        out.latency["insert"] = [observed[k] for k in lake_keys if k in observed]
        if left:
            out.timed_out = "inserts"
            out.missing["inserts"] = [self.layout.key_dict(k) for k in left]
            out.elapsed = self.clock() - t0
            return out

        # 2. updates and deletes
        upd_idx = list(range(n_upd))
        del_idx = list(range(n_upd, n_upd + self.n_deletes))
        reqs = [{"PutRequest": {"Item": self._typed(i, 2)}} for i in upd_idx]
        reqs += [{"DeleteRequest": {"Key": self.schema.key_item(items[i])}} for i in del_idx]
        checks: dict[tuple, Callable[[dict[tuple, dict[str, Any]]], bool]] = {}
        for i in upd_idx:
            lk = lake_keys[i]
            checks[lk] = lambda rows, lk=lk: lk in rows and marker.seen(rows[lk].get(marker.column), self.run, 2)  # type: ignore[union-attr]
        for i in del_idx:
            lk = lake_keys[i]
            checks[lk] = lambda rows, lk=lk: lk not in rows
        observed = {}
        left = []
        if reqs:
            self.progress(f"run {self.run}: updating {len(upd_idx)} and deleting {len(del_idx)} item(s)")
            w2: dict[tuple, float] = {}
            self._write(reqs, w2)
            left = self._follow("updates and deletes", checks, {by_item[k]: t for k, t in w2.items()}, observed)
        out.latency["update"] = [observed[lake_keys[i]] for i in upd_idx if lake_keys[i] in observed]
        out.latency["delete"] = [observed[lake_keys[i]] for i in del_idx if lake_keys[i] in observed]
        if left:
            out.timed_out = "updates and deletes"
            upd = {lake_keys[i] for i in upd_idx}
            out.missing["updates"] = [self.layout.key_dict(k) for k in left if k in upd]
            out.missing["deletes"] = [self.layout.key_dict(k) for k in left if k not in upd]
        out.elapsed = self.clock() - t0
        return out

    def cleanup(self, follow: bool = True) -> dict[str, Any]:
        """Delete every item of the run from the source (deleting one already gone is a no-op
        that DynamoDB's stream does not record); the deletes flow through the pipeline, so with
        ``follow`` the lake is queried until the run's rows are gone (changelog mode: gone from
        the current view; the history keeps the run's changes)."""
        items = [self._typed(i, 1) for i in range(self.count)]
        written: dict[tuple, float] = {}
        self.progress(f"run {self.run}: removing its {len(items)} test item(s) from {self.schema.table}")
        self._write([{"DeleteRequest": {"Key": self.schema.key_item(it)}} for it in items], written)
        out: dict[str, Any] = {"deleted_from_source": len(items), "gone_from_lake": None, "left_in_lake": []}
        if not follow:
            return out
        lake_keys = [self._lake_key(it) for it in items]
        by_item = {self.schema.key_of(it): lk for it, lk in zip(items, lake_keys)}
        left = self._follow("removing the test items", {lk: (lambda rows, lk=lk: lk not in rows) for lk in lake_keys},
                            {by_item[k]: t for k, t in written.items()}, {})
        out["gone_from_lake"] = not left
        out["left_in_lake"] = [self.layout.key_dict(k) for k in left]
        return out
