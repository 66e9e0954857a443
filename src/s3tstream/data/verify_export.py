"""`verify --export`: source and lake compared by Athena over a DynamoDB export; only the
differences come back.

For tables too large to Scan from one machine. The same export path as `backfill --strategy
export` (backfill.export.ExportBackfill: point-in-time recovery check, ExportTableToPointInTime, a
temporary Glue table over the export's files), then ONE Athena query (:func:`diff_sql`):

- the source rows, mapped from the export items by the same SQL the export backfill loads with
  (backfill.export_sql.column_exprs: the transform's rules in Trino SQL);
- the lake's current rows (changelog: the latest change per key that is not a remove), one per
  key, with the number of lake rows per key (duplicates);
- a FULL OUTER JOIN on the key columns; each key is 'missing', 'extra', 'differing' (some column
  IS DISTINCT FROM) or 'match'; only non-matching and duplicated keys are returned, each row also
  carrying the totals, so a clean table returns one row of counts.

The export is a snapshot: a key may have changed since. So each returned key is confirmed against
the item as it is now (BatchGetItem, consistent) and the lake row Athena returned, with the same
mapping and digest as the Scan-based verify (transform.map_item, verify.Layout): a key the lake
has caught up with is counted as matching, a key deleted since then and gone from the lake too
is dropped. Keys that changed after the export and were not in the query's answer are not
re-checked (as with any verify, changes younger than the Firehose buffer may be in flight).
The query returns at most CONFIRM_LIMIT differing keys (its totals count them all): the rest
are only counted (``not_returned``), never repaired blind; fix the bulk (a backfill), then verify
again.

Afterwards the temporary Glue table and the export files are removed, and the checkpoint
(``jobs.verify-export`` in the state file: the export in progress, so a run stopped while
DynamoDB exports continues with it) is deleted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from s3tstream.data.backfill.cleanup import discard
from s3tstream.data.backfill.export import ExportBackfill
from s3tstream.data.backfill.export_sql import check_exportable, column_exprs, export_items_sql
from s3tstream.data.backfill.jobs import VerifyCheckpoint
from s3tstream.data.items import batch_get, key_id
from s3tstream.data.verify import Layout, Report, current_rows_sql, typed_key_value
from s3tstream.errors import AwsError, StateError
from s3tstream.lake.query import quote_ident as _qi

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config
    from s3tstream.state import StateStore
    from s3tstream.transform import Settings

Progress = Callable[[str], None]
CONFIRM_LIMIT = 100_000
KIND, DUPS = "__s3t_kind", "__s3t_n"
SOURCE_N, LAKE_N, MATCH_N, DIFF_N = "__s3t_source", "__s3t_lake", "__s3t_match", "__s3t_diffs"


def diff_sql(cfg: "Config", layout: Layout, select_expr: Callable[[str, str], str], source_table: str,
             limit: int = CONFIRM_LIMIT, settings: "Settings | None" = None) -> str:
    """One Athena statement: the keys whose source and lake rows differ (at most ``limit`` of
    them), with the totals (the number of differing keys included, returned or not).

    Run in the sandbox (DuckDB through sqlglot), not on Athena. UNCONFIRMED on Athena engine v3:
    IS DISTINCT FROM on MAP columns (Trino documents maps as comparable for equality) and
    ``LEFT JOIN ... ON true``; both are standard Trino as far as its documentation says."""
    keys = list(layout.keys)
    data = [n for n in layout.names if n not in keys]
    src = f"SELECT {', '.join(column_exprs(cfg, settings))} FROM ({export_items_sql(source_table)})"
    lake = current_rows_sql(layout, [_qi(n) for n in layout.names])
    part = ", ".join(_qi(k) for k in keys)
    ranked = (f"SELECT *, count(*) OVER (PARTITION BY {part}) AS {_qi(DUPS)}, "
              f"row_number() OVER (PARTITION BY {part}) AS \"__s3t_rn\" FROM ({lake})")
    on = " AND ".join(f"s.{_qi(k)} = l.{_qi(k)}" for k in keys)
    differs = " OR ".join(f"s.{_qi(n)} IS DISTINCT FROM l.{_qi(n)}" for n in data) or "false"
    k0 = _qi(keys[0])
    kind = (f"CASE WHEN l.{k0} IS NULL THEN 'missing' WHEN s.{k0} IS NULL THEN 'extra' "
            f"WHEN {differs} THEN 'differing' ELSE 'match' END")
    cols = [f"COALESCE(s.{_qi(k)}, l.{_qi(k)}) AS {_qi(k)}" for k in keys] + [f"l.{_qi(n)} AS {_qi(n)}" for n in data]
    joined = (f"SELECT {kind} AS {_qi(KIND)}, l.{_qi(DUPS)} AS {_qi(DUPS)}, {', '.join(cols)}\n"
              f"FROM ({src}) s\nFULL OUTER JOIN (SELECT * FROM ({ranked}) WHERE \"__s3t_rn\" = 1) l ON {on}")
    counts = (f"SELECT count_if({_qi(KIND)} <> 'extra') AS {_qi(SOURCE_N)}, "
              f"CAST(sum(COALESCE({_qi(DUPS)}, 0)) AS BIGINT) AS {_qi(LAKE_N)}, "
              f"count_if({_qi(KIND)} = 'match') AS {_qi(MATCH_N)}, "
              f"count_if({_qi(KIND)} <> 'match' OR {_qi(DUPS)} > 1) AS {_qi(DIFF_N)} FROM j")
    diffs = f"SELECT * FROM j WHERE {_qi(KIND)} <> 'match' OR {_qi(DUPS)} > 1 LIMIT {int(limit)}"
    shown = [select_expr(n, str(t)) for n, t in layout.columns]
    return (f"WITH j AS ({joined}),\nc AS ({counts}),\nd AS ({diffs})\n"
            f"SELECT c.{_qi(SOURCE_N)}, c.{_qi(LAKE_N)}, c.{_qi(MATCH_N)}, c.{_qi(DIFF_N)}, d.{_qi(KIND)}, d.{_qi(DUPS)}, "
            f"{', '.join(shown)}\nFROM c LEFT JOIN d ON true")


def confirm(cfg: "Config", settings: "Settings", layout: Layout, ddb: Any, rows: list[dict[str, Any]],
            *, progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep) -> Report:
    """The query's answer -> a Report, each difference checked against the item as it is now."""
    from s3tstream.transform import RecordError, map_item

    rep = Report()
    if rows:
        rep.source_items = int(rows[0][SOURCE_N] or 0)
        rep.lake_rows = int(rows[0][LAKE_N] or 0)
        rep.matching = int(rows[0][MATCH_N] or 0)
    cands: list[tuple[tuple, str, dict[str, Any]]] = []
    for r in rows:
        kind = r.get(KIND)
        if kind is None:
            continue  # the counts row of a clean comparison
        key = layout.key_of(r)
        if int(r.get(DUPS) or 0) > 1:
            rep.duplicates.append(key)  # its current item goes to --repair: an update leaves one row
        if any(v is None for v in key):
            rep.unmappable.append(({a: r.get(c) for (a, _), c in zip(layout.key_attrs, layout.keys)},
                                   "a key attribute does not convert to its column's type"))
            continue
        cands.append((key, kind, r))
    names = layout.names
    wire = [{a: typed_key_value(t, v) for (a, t), v in zip(layout.key_attrs, key)} for key, _, _ in cands]
    if cands:
        progress(f"confirming {len(cands)} difference(s) against the current items")
    attrs = [a for a, _ in layout.key_attrs]
    current = batch_get(ddb, cfg.names.source_table, wire, attrs, sleep=sleep) if wire else {}
    for (key, kind, lake_row), w in zip(cands, wire):
        item = current.get(key_id(w, attrs))
        if kind == "match":  # a duplicated key whose row matches
            if item is not None:
                rep.items[key] = item  # --repair sends it: an update leaves one row
            else:
                rep.extra.append(key)  # deleted since the export: --repair removes its rows
            continue
        in_lake = kind != "missing"
        if item is None:
            if in_lake:
                rep.extra.append(key)  # deleted since the export, still in the lake: extra either way
            continue  # deleted since the export and gone from the lake too
        try:
            row = map_item(item, settings)
        except RecordError as e:
            rep.unmappable.append((key, e.reason))
            continue
        if not in_lake:
            rep.missing.append(key)
            rep.items[key] = item
            continue
        want, have = layout.hashes(row), layout.hashes(lake_row)
        if want == have:
            rep.matching += 1  # changed since the export, and the lake has caught up
            continue
        cols = [names[i] for i in range(len(names)) if have[i * 8:(i + 1) * 8] != want[i * 8:(i + 1) * 8]]
        rep.differing.append((key, cols))
        rep.items[key] = item
    for lst in (rep.missing, rep.extra, rep.duplicates):
        lst.sort(key=repr)
    rep.differing.sort(key=lambda x: repr(x[0]))
    return rep


def compare_export(cfg: "Config", settings: "Settings", aws: "Aws", *, enable_pitr: bool = False,
                   progress: Progress = lambda m: None, sleep: Callable[[float], None] = time.sleep,
                   state: "StateStore | None" = None) -> tuple[Report, Layout, dict[str, Any]]:
    """Export (or continue the export in progress), compare in Athena, confirm, clean up. The
    caller holds the stack lock (``state``: its StateStore, where the checkpoint goes)."""
    from datetime import UTC, datetime

    from s3tstream.lake.query import open_engine

    check_exportable(cfg, "verify --export", VerifyCheckpoint.OTHERWISE)
    layout = Layout.from_config(cfg, settings)
    engine = open_engine(cfg, aws, "athena", progress=progress)
    store = VerifyCheckpoint(cfg, state)
    try:
        doc = store.load()
    except StateError as e:
        # the export of an earlier run for another table or mode: of no use to this one
        progress(f"giving up the checkpoint of an earlier verify --export ({e.message})")
        discard(store, aws, progress)
        doc = None
    resumed = doc is not None
    if doc is None:
        doc = store.new("export")
        store.save(doc)
    eb = ExportBackfill(cfg, aws, store, doc, enable_pitr=enable_pitr, progress=progress, sleep=sleep)
    eb.start_export()
    if eb.ex.get("status") != "COMPLETED":
        try:
            eb.wait_export()
        except AwsError:
            if eb.ex.get("status") == "FAILED":
                discard(store, aws, progress)  # of no use: the next run exports anew
            raise
    try:
        source = eb.create_temp_table()
        progress(f"comparing export {eb.ex['id']} with {cfg.names.namespace}.{cfg.names.table} in Athena")
        res = engine.run(diff_sql(cfg, layout, engine.select_expr, source, limit=CONFIRM_LIMIT, settings=settings))
    finally:
        try:
            eb.drop_temp_table()
        except Exception as e:  # noqa: BLE001 - never hide the query's own error
            progress(f"could not remove the temporary Glue table: {e}")
    rows = res.records()
    returned = sum(1 for r in rows if r.get(KIND) is not None)
    rep = confirm(cfg, settings, layout, aws.client("dynamodb"), rows, progress=progress, sleep=sleep)
    rep.engine = "athena+export"
    rep.data_scanned_bytes = res.data_scanned_bytes
    removed = eb.remove_export_files()
    info = {"export_arn": eb.ex["arn"], "export_time": datetime.fromtimestamp(eb.ex["export_time"], UTC)
            .isoformat(timespec="seconds"), "resumed": resumed, "query_id": res.query_id,
            "differences_returned": returned,
            "not_returned": max(0, int(rows[0][DIFF_N] or 0) - returned) if rows else 0,
            "removed_objects": removed, "pitr_enabled_by_verify": bool(eb.ex.get("pitr_enabled_by_backfill"))}
    store.delete()
    return rep, layout, info
