"""DynamoDB item (typed JSON) -> Iceberg row: the mapping shared by the transform and verify.

``map_item(image, settings)`` returns the row that the transform sends to Firehose
(before JSON encoding) and raises :class:`RecordError` when a required column is
missing or a value cannot be converted.  Converters are compiled once per
:class:`~.settings.Settings` object and cached on it.

Mapping, per declared column type (NULL is ``None`` for every type; a required
column that is missing or NULL is an error):

============ ================================================================
boolean      BOOL -> bool.  Nothing else.
int, long    N -> int, exact; non-integral values or values outside the signed
             32/64-bit range are errors ("1.0" and "1E3" are integral and fine).
float        N -> float rounded to IEEE single precision (what Iceberg stores);
             out of single range is an error.
double       N -> float (correctly rounded from the decimal text).
decimal(p,s) N -> decimal.Decimal with exactly ``s`` fractional digits, no float on
             the way.  Values needing more than ``s`` fractional digits or more
             than ``p`` digits are errors (never rounded; AWS rejects
             over-precision too).  JSON output is the exact number token.
date         S (ISO-8601 date, e.g. 2024-05-01) or N (epoch seconds, or epoch
             milliseconds when abs(N) >= 1e11; floored to the UTC day).  Output:
             int days since 1970-01-01 (settings.date_format "days", default) or
             the ISO string "YYYY-MM-DD" ("iso").
timestamp,   S (ISO-8601; no offset means UTC, an offset is converted to UTC) or
timestamptz  N (epoch seconds, or milliseconds when abs(N) >= 1e11; fractions
             floored to the microsecond) -> int microseconds since the epoch.
             Years 1..9999 only.
string       S as is; N as its number text; BOOL as "true"/"false"; B as its
             base64 text; M, L, SS, NS, BS as a JSON text of plain values.
binary       B -> its base64 text (validated).
list<T>      L -> list, elements converted as T; SS/NS/BS -> list of the set's
             elements converted as T, sorted (strings by code point, numbers
             numerically, binaries by bytes) so a set always maps the same way.
map<string,T> M -> dict, values converted as T.
struct<...>  M -> dict with every declared field (missing fields are None);
             fields of the map that are not declared go to the catch-all
             column, or are dropped and reported (nested.py).
============ ================================================================

"Plain values" (JSON texts for string columns, undeclared attributes in the
extra column): S -> string, N -> number (exact token), B -> base64 string,
BOOL -> true/false, NULL -> null, M -> object, L -> array, SS/NS/BS -> sorted
arrays.  JSON texts are compact with sorted keys, so equal items give equal text.

What Firehose wants in the JSON: the "Understand supported data types" page
(https://docs.aws.amazon.com/firehose/latest/dev/apache-iceberg-destination-supp.html)
says timestamps must be sent in microseconds and binary as base64 (or hex) and
defers to the Iceberg spec otherwise; its examples show no date or decimal.

# UNCONFIRMED: dates are sent as int days since 1970-01-01, by analogy with
#   timestamps (Iceberg's own representation of the type, as microseconds are for
#   timestamps).  settings.date_format "iso" sends "YYYY-MM-DD" instead, should AWS
#   want that.
# UNCONFIRMED: decimals are sent as JSON numbers carrying exactly the declared
#   scale (e.g. 1.50 for decimal(5,2)), assuming Firehose reads JSON numbers as
#   BigDecimal; the token is exact, never a float.

Every declared column is present in every row (None when absent), so Firehose
never sees a missing column.  Attributes that no column reads go, as one JSON
object text of plain values, to ``settings.extra_column`` when it is set (None
when there are none) and are dropped otherwise.  Undeclared nested fields of
struct columns join them there under the attribute's name, in the item's shape;
without a catch-all they are dropped, logged by the transform and reported by
verify (``dropped_paths``; nested.py has the format).

Where the code lives: values.py (RecordError, exact scalar parsers, plain values),
exactjson.py (``dumps_exact``), plaintext.py (the same JSON texts of plain values
rendered straight from typed values, for the fast path), converters.py (one converter per declared type),
codegen.py (the generated row mapper and struct converters), nested.py
(undeclared nested fields) and this module (the per-settings plan, ``map_item``,
``map_row``, ``dropped_paths`` and ``keys_row``).

Standard library only.
"""

from __future__ import annotations

from typing import Any

from .codegen import Undeclared, generate_mapper
from .converters import compile_type
from .exactjson import dumps_exact
from .nested import merge, segment, shape_of, split
from .settings import Settings
from .values import RecordError, plain_value

__all__ = ["RecordError", "dropped_paths", "keys_row", "map_item", "map_row", "plan_for"]


class _Plan:
    """Per-settings compiled mapping."""

    def __init__(self, settings: Settings) -> None:
        extra = settings.extra_column
        declared = [c for c in settings.columns if c.name != extra]
        self.columns = tuple(
            (c.name, c.source, compile_type(c.type, settings.date_format), c.required)
            for c in declared
        )
        self.sources = frozenset(c[1] for c in self.columns)
        self.extra = extra
        by_name = {c[0]: c for c in self.columns}
        self.keys = tuple(by_name[k] for k in settings.keys)
        types = tuple(str(c.type) for c in declared)
        self.fast = generate_mapper(self.columns, types, extra, self.sources,
                                    settings.date_format)
        # Struct-bearing columns: what each carries, and per attribute what all carry.
        self.shape = {c.name: shape_of(c.type) for c in declared}
        carried: dict[str, object] = {}
        for c in declared:
            shape = self.shape[c.name]
            carried[c.source] = merge(carried[c.source], shape) if c.source in carried else shape
        self.nested = tuple((src, shape) for src, shape in carried.items() if shape is not None)


def plan_for(settings: Settings) -> _Plan:
    plan = settings._plan
    if plan is None:
        plan = _Plan(settings)
        object.__setattr__(settings, "_plan", plan)
    return plan


def _plan_of(settings: Settings) -> _Plan:
    return plan_for(settings if settings.__class__ is Settings else Settings.from_dict(settings))


# Shapes that are not DynamoDB typed JSON surface as one of these inside converters.
_MALFORMED = (AttributeError, TypeError, KeyError, IndexError, ValueError, ArithmeticError,
              RecursionError)
_NONE: tuple = ()


def map_item(image: dict, settings: Settings) -> dict:
    """Map a DynamoDB item in typed JSON (``{"pk": {"S": "a"}, ...}``) to a row.

    Raises RecordError naming the column for a missing required column or a value
    that cannot be converted.  Pure; the same mapping the transform Lambda uses.
    ``settings`` is a Settings (compiled once, then cached on it) or a settings dict
    (validated on every call: build a Settings once for repeated use).
    """
    return map_row(image, settings)[0]


def map_row(image: dict, settings: Settings) -> tuple[dict, "tuple | list[str]"]:
    """map_item, and the paths of the nested fields the row drops (see nested.py).

    Nothing is dropped when the settings have a catch-all column: undeclared
    nested fields go there.
    """
    plan = _plan_of(settings)
    if image.__class__ is not dict:
        raise RecordError(f"item image must be a JSON object, got {type(image).__name__}")
    try:
        return plan.fast(image), _NONE
    except Exception:  # noqa: BLE001 - diagnose (or rarely succeed) on the slow path
        pass
    return _map_slow(image, plan)


def dropped_paths(settings: Settings, item: dict) -> list[str]:
    """JSONPaths of the nested fields (of struct columns) that the row of ``item`` drops.

    Empty when the settings have a catch-all column (they go there) or the item has
    none.  Pure and never raises for an odd item: verify reports what it returns.
    """
    plan = _plan_of(settings)
    if plan.extra is not None or not plan.nested or item.__class__ is not dict:
        return []
    paths: list[str] = []
    for source, shape in plan.nested:
        try:
            split(shape, item.get(source), "$" + segment(source), paths, False)
        except _MALFORMED:  # not typed JSON: map_item reports the item
            pass
    return paths


def _map_slow(image: dict, plan: _Plan) -> tuple[dict, "tuple | list[str]"]:
    row: dict[str, Any] = {}
    name = None
    undeclared = False
    try:
        for name, source, conv, required in plan.columns:
            v = image.get(source)
            if v is None:
                if required:
                    raise RecordError(f"required attribute {source!r} is missing")
                row[name] = None
                continue
            try:
                x = conv(v)
            except Undeclared:  # convert what the column declares; the rest is handled below
                undeclared = True
                x = conv(split(plan.shape[name], v, "", [], False)[0])
            if x is None and required:
                raise RecordError(f"required attribute {source!r} is NULL")
            row[name] = x
        extra = plan.extra
        dropped: "tuple | list[str]" = _NONE
        nested: dict[str, Any] = {}
        if undeclared:
            dropped = []
            for source, shape in plan.nested:
                name = source
                rest = split(shape, image.get(source), "$" + segment(source), dropped,
                             extra is not None)[1]
                if rest is not None:
                    nested[source] = rest
        if extra is not None:
            name = extra
            rest = {k: plain_value(v) for k, v in image.items() if k not in plan.sources}
            rest.update(nested)  # declared attributes' keys: never among the undeclared ones
            row[extra] = dumps_exact(rest, True) if rest else None
            dropped = _NONE
    except RecordError as exc:
        raise RecordError(f"column {name!r}: {exc.reason}") from None
    except _MALFORMED as exc:
        raise RecordError(f"column {name!r}: malformed value ({type(exc).__name__}: {exc})") from None
    return row, dropped or _NONE


def keys_row(keys: dict, settings: Settings) -> dict:
    """A row with only the key columns set (from a DynamoDB ``Keys`` object), others None."""
    plan = _plan_of(settings)
    if keys.__class__ is not dict:
        raise RecordError(f"keys must be a JSON object, got {type(keys).__name__}")
    row: dict[str, Any] = {c[0]: None for c in plan.columns}
    if plan.extra is not None:
        row[plan.extra] = None
    name = None
    try:
        for name, source, conv, _required in plan.keys:
            v = keys.get(source)
            x = None if v is None else conv(v)
            if x is None:
                raise RecordError(f"key attribute {source!r} is missing or NULL")
            row[name] = x
    except RecordError as exc:
        raise RecordError(f"column {name!r}: {exc.reason}") from None
    except _MALFORMED as exc:
        raise RecordError(f"column {name!r}: malformed value ({type(exc).__name__}: {exc})") from None
    return row