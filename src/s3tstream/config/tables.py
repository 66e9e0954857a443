"""Many tables, one pipeline: a config's table entries.

A config names its tables in one of two forms:

* top-level ``[source]`` / ``[table]``: one table (every config before ``[[tables]]``);
* ``[[tables]]``: entries, each with a ``source`` and a ``table`` sub-table holding the keys of
  ``[source]`` and ``[table]``.

Per-table code (schema, mapping, items, verify, the per-table resources) reads ``cfg.source``
and ``cfg.table``. A config *scoped* to one entry (:func:`scoped`) is a copy whose source and
table are that entry's, so the same code serves every entry; the shared resources (the Kinesis
stream, the Firehose stream, the transform Lambda, the table bucket and namespace) are named once
per stack. On an unscoped config of several tables, ``cfg.source``/``cfg.table`` are the first
entry's: code that works on one table takes a scoped config (``--table NAME``).

No runtime import of model.py (it imports this module): the Config is duck-typed here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

from s3tstream.errors import UsageError

if TYPE_CHECKING:
    from s3tstream.config.model import Config, SourceConfig, TableConfig

# Keys of `table` that every entry shares: one Firehose destination writes to one catalog
# (s3tablescatalog/<bucket>), and the grants and policies are on one bucket and namespace.
SHARED_TABLE_KEYS = ("bucket", "namespace", "kms_key_arn")
# `table.maintenance` keys that configure the bucket (unreferenced file removal), not the table.
SHARED_MAINTENANCE_KEYS = ("unreferenced_file_removal", "unreferenced_days", "noncurrent_days")
# The column a `table.partition` entry reads: "col", "day(col)", "bucket(16, col)".
PARTITION_SOURCE_RE = re.compile(r"^\s*(?:[a-z]+\s*\(\s*(?:\d+\s*,\s*)?)?([a-z_][a-z0-9_]*)\s*\)?\s*$")


class Entry(NamedTuple):
    """The one entry of a [source]/[table] config (a [[tables]] entry has the same two fields)."""

    source: "SourceConfig"
    table: "TableConfig"


class FieldProblems(ValueError):
    """Problems found across sections, each with the path of the key it is about.

    Raised inside the model's validator; config.model.build turns each into one line of the
    ConfigError, its path appended to where pydantic found it."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


def default_lake_table(source_table: str) -> str:
    """The lake table name derived from a DynamoDB table name (when table.name is not set)."""
    return re.sub(r"[^a-z0-9_]", "_", source_table.lower()).strip("_") or "items"


def key_columns(source: "SourceConfig", table: "TableConfig") -> list[tuple[Any, str]]:
    """(DynamoDB key attribute, lake column name) pairs, partition key first."""
    attrs = [source.partition_key] + ([source.sort_key] if source.sort_key else [])
    return [(a, next((c.name for c in table.columns if c.attribute == a.name), None) or a.name.lower()) for a in attrs]


def entry_problems(source: "SourceConfig", table: "TableConfig", at: str) -> list[tuple[str, str]]:
    """The rules between one table's source and table keys; `at` prefixes each path ("" or "tables[i].")."""
    out = key_problems(source, table, f"{at}table.columns")
    if table.mode == "upsert":
        out += upsert_problems(table, [c for _, c in key_columns(source, table)], at)
    return out


def upsert_problems(table: "TableConfig", keys: list[str], at: str) -> list[tuple[str, str]]:
    out = []
    # A row is found by its key for update/delete: a partition source that changes would leave
    # the old row in its old partition (a stale row), so only key columns may be partitioned by.
    for i, text in enumerate(table.partition):
        m = PARTITION_SOURCE_RE.match(text)
        if m and m.group(1) not in keys:
            out.append((f"{at}table.partition[{i}]", (
                f"{text!r} partitions by {m.group(1)!r}, which is not a key column; in upsert mode only key columns "
                f"({', '.join(keys)}) may be partition sources (an update would leave the old row in its old "
                "partition): partition by a key, or use table.mode = \"changelog\"")))
    # Firehose rejects UniqueKeys whose names also appear inside a struct (Iceberg.InvalidUniqueKeys)
    from s3tstream.transform.types import parse_type

    for c in table.columns:
        clash = sorted(set(keys) & _nested_field_names(parse_type(c.type)))
        if clash:
            out.append((f"{at}table.columns", (
                f"{c.name!r} has a nested field named {clash[0]!r}, like the key column; Firehose rejects unique keys "
                "whose names repeat inside a struct (Iceberg.InvalidUniqueKeys): rename the key column (table.columns "
                "source = ...) or the nested field")))
    return out


def _nested_field_names(t: object) -> set[str]:
    """Names of the struct fields at any depth inside a column type."""
    from s3tstream.transform import types as T

    if isinstance(t, T.StructType):
        out: set[str] = set()
        for f in t.fields:
            out |= {f.name} | _nested_field_names(f.type)
        return out
    if isinstance(t, T.ListType):
        return _nested_field_names(t.element)
    if isinstance(t, T.MapType):
        return _nested_field_names(t.key) | _nested_field_names(t.value)
    return set()


def key_problems(source: "SourceConfig", table: "TableConfig", path: str) -> list[tuple[str, str]]:
    """A declared key column must have the key attribute's type and be required."""
    out = []
    by_attr = {c.attribute: c for c in table.columns}
    keys = [source.partition_key] + ([source.sort_key] if source.sort_key else [])
    for attr in keys:
        col = by_attr.get(attr.name) or next((c for c in table.columns if c.name == attr.name.lower()), None)
        if col is None:
            continue
        want = {"S": ("string",), "N": ("long", "int", "decimal"), "B": ("binary",)}[attr.type]
        if not any(col.type == w or col.type.startswith(w + "(") for w in want):
            out.append((path, f"key column {col.name!r} has type {col.type} but the DynamoDB key "
                              f"{attr.name!r} is {attr.type}"))
        elif not col.required:
            out.append((path, f"key column {col.name!r} must be required = true"))
    return out


def check(cfg: "Config") -> None:
    """Every cross-key rule of the table entries; raises FieldProblems naming each key."""
    if not cfg.tables:
        problems = entry_problems(cfg.source, cfg.table, "")
        if problems:
            raise FieldProblems(problems)
        return
    problems: list[tuple[str, str]] = []
    sources: dict[str, int] = {}
    lakes: dict[str, int] = {}
    shared: dict[str, tuple[int, Any]] = {}
    for i, e in enumerate(cfg.tables):
        at = f"tables[{i}]"
        if not e.source.table:
            problems.append((f"{at}.source.table", "required key is missing: each [[tables]] entry names its "
                                                   "DynamoDB table"))
            continue
        problems += entry_problems(e.source, e.table, f"{at}.")
        if e.source.table in sources:
            problems.append((f"{at}.source.table", f"{e.source.table!r} is also tables[{sources[e.source.table]}]'s "
                                                   "source table; each DynamoDB table streams into one lake table"))
        sources.setdefault(e.source.table, i)
        lake = e.table.name or default_lake_table(e.source.table)
        if lake in lakes:
            how = "" if e.table.name else f" (derived from source.table {e.source.table!r}; set table.name)"
            problems.append((f"{at}.table.name", f"lake table {lake!r} is also tables[{lakes[lake]}]'s{how}; "
                                                 "lake table names are unique in the namespace"))
        lakes.setdefault(lake, i)
        for key, value in _set_shared(e.table):
            first = shared.setdefault(key, (i, value))
            if first[1] != value:
                problems.append((f"{at}.table.{key}", f"{value!r} differs from tables[{first[0]}]'s {first[1]!r}: "
                                                      "every table of a stack shares one table bucket, namespace, "
                                                      "encryption and bucket maintenance; set it once, or the same"))
    if problems:
        raise FieldProblems(problems)


def _set_shared(table: "TableConfig") -> list[tuple[str, Any]]:
    """The shared keys this entry sets explicitly (a default is not a choice)."""
    out = [(k, getattr(table, k)) for k in SHARED_TABLE_KEYS if k in table.model_fields_set]
    if "maintenance" in table.model_fields_set:
        m = table.maintenance
        out += [(f"maintenance.{k}", getattr(m, k)) for k in SHARED_MAINTENANCE_KEYS if k in m.model_fields_set]
    return out


def unify(cfg: "Config") -> None:
    """Give every entry the shared keys one of them set, and make cfg.source/cfg.table the first
    entry's (check() has run: the values agree)."""
    if not cfg.tables:
        return
    top: dict[str, Any] = {}
    maint: dict[str, Any] = {}
    for e in cfg.tables:
        for key, value in _set_shared(e.table):
            if key.startswith("maintenance."):
                maint.setdefault(key.split(".", 1)[1], value)
            else:
                top.setdefault(key, value)
    for e in cfg.tables:
        update = dict(top)
        if maint:
            update["maintenance"] = e.table.maintenance.model_copy(update=maint)
        if update:
            # bypass validate_assignment: the values were validated where they were written
            object.__setattr__(e, "table", e.table.model_copy(update=update))
    object.__setattr__(cfg, "source", cfg.tables[0].source)
    object.__setattr__(cfg, "table", cfg.tables[0].table)


def entries(cfg: "Config") -> list[Any]:
    """The table entries: the [[tables]] list, or the one entry [source]/[table] make."""
    if cfg.tables:
        return list(cfg.tables)
    return [Entry(cfg.source, cfg.table)]


def lake_table_of(cfg: "Config", entry: Any) -> str:
    return entry.table.name or default_lake_table(entry.source.table or cfg.stack.name)


def scope(cfg: "Config", entry: Any) -> "Config":
    """A copy of the config whose source and table are this entry's (its only table)."""
    if not cfg.tables:
        return cfg
    return cfg.model_copy(update={"source": entry.source, "table": entry.table, "tables": [entry]})


def scopes(cfg: "Config") -> list["Config"]:
    """One scoped config per table, in config order."""
    return [scope(cfg, e) for e in entries(cfg)]


def table_names(cfg: "Config") -> list[str]:
    """The lake table names, in config order."""
    return [lake_table_of(cfg, e) for e in entries(cfg)]


def scoped(cfg: "Config", table: str | None) -> "Config":
    """The config scoped to the lake table `table` (`--table NAME`); optional with one table."""
    names = table_names(cfg)
    if table is None or table == "":
        if len(names) == 1:
            return scope(cfg, entries(cfg)[0])
        raise UsageError(
            f"this stack has {len(names)} tables ({', '.join(names)}): say which one",
            f"pass --table NAME, e.g. --table {names[0]}",
        )
    for name, e in zip(names, entries(cfg)):
        if name == table:
            return scope(cfg, e)
    raise UsageError(
        f"no table {table!r} in the config; its tables: {', '.join(names)}",
        "--table takes a lake table name (table.name, or the name derived from source.table)",
    )
