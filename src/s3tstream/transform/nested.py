"""Nested fields a struct column does not declare: where they go, and their paths.

A ``struct<...>`` column carries only its declared fields.  The other fields of
the DynamoDB map (at any depth: structs inside structs, lists and maps) are

* with a catch-all column: kept in the catch-all JSON object under the
  attribute's name, in the item's own shape (only what the columns do not carry).
  E.g. ``address`` declared as ``struct<city:string>`` and the item's address
  ``{"city": "Oslo", "floor": 3, "geo": {"lat": 1}}`` -> the row's address is
  ``{"city": "Oslo"}`` and the catch-all holds ``{"address": {"floor": 3, "geo":
  {"lat": 1}}}``.  A list keeps its positions, with null for an element that left
  nothing over: ``{"events": [null, {"note": "x"}]}``.  Merging the catch-all
  back into the row's columns gives the item (as plain values) again; the
  catch-all's top-level keys are attribute names, and a declared attribute's name
  never appears there otherwise, so the two kinds cannot clash.
* without one: dropped, counted by the transform (its log) and reported by
  ``s3tstream verify`` through :func:`dropped_paths`.

Paths are JSONPath, as Athena's ``json_extract`` reads them: ``$.address.floor``,
``$.events[1].note``; a name that is not ``[A-Za-z_][A-Za-z0-9_]*`` (a dot, a
space, a bracket...) is quoted as a JSON string: ``$["a.b"]["c d"]``.  With a
catch-all, ``json_extract(extra, '<path>')`` finds the field.
# UNCONFIRMED: that Athena (Trino) json_extract accepts the quoted form $["a.b"];
#   Trino documents bracket notation for its JSON path, not checked against Athena.

A "shape" says which parts of an attribute the columns reading it carry: None
(everything) or ("struct", {field: shape}), ("list", shape), ("map", shape).

Standard library only.
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import types as T
from .values import plain_value

__all__ = ["Shape", "merge", "shape_of", "split"]

Shape = Any  # None | tuple[str, dict | Shape]
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_UNDECLARED = object()


def shape_of(t: T.IcebergType) -> Shape:
    """The shape a column of type ``t`` carries (None: all of the value)."""
    if isinstance(t, T.StructType):
        return ("struct", {f.name: shape_of(f.type) for f in t.fields})
    if isinstance(t, T.ListType):
        inner = shape_of(t.element)
        return None if inner is None else ("list", inner)
    if isinstance(t, T.MapType):
        inner = shape_of(t.value)
        return None if inner is None else ("map", inner)
    return None


def merge(a: Shape, b: Shape) -> Shape:
    """What two columns reading the same attribute carry together."""
    if a is None or b is None or a[0] != b[0]:
        return None  # one carries it all (or the types disagree and one fails the record)
    if a[0] != "struct":
        inner = merge(a[1], b[1])
        return None if inner is None else (a[0], inner)
    fields = dict(a[1])
    for name, sub in b[1].items():
        fields[name] = merge(fields[name], sub) if name in fields else sub
    return ("struct", fields)


def segment(name: str) -> str:
    return "." + name if _IDENT.match(name) else "[" + json.dumps(name, ensure_ascii=False) + "]"


def split(shape: Shape, v: Any, path: str, paths: list[str], plain: bool) -> tuple[Any, Any]:
    """-> (typed value ``v`` without what ``shape`` does not carry, that remainder or None).

    Appends the path of each field left out to ``paths``.  The remainder holds
    plain values when ``plain`` (for the catch-all), else only its structure.  A
    value that does not fit the shape (another tag, NULL) is returned unchanged:
    its converter reports it.
    """
    if shape is None or v.__class__ is not dict:
        return v, None
    kind, inner = shape
    if kind == "list":
        items = v.get("L")
        if items.__class__ is not list:
            return v, None
        kept, rest, left = [], [], False
        for i, x in enumerate(items):
            kx, r = split(inner, x, f"{path}[{i}]", paths, plain)
            kept.append(kx)
            rest.append(r)
            left = left or r is not None
        return {"L": kept}, (rest if left else None)
    m = v.get("M")
    if m.__class__ is not dict:
        return v, None
    kept_m, rest_m = {}, {}
    for k, x in m.items():
        sub = inner if kind == "map" else inner.get(k, _UNDECLARED)
        if sub is _UNDECLARED:
            paths.append(path + segment(k))
            rest_m[k] = plain_value(x) if plain else True
            continue
        kx, r = split(sub, x, path + segment(k), paths, plain)
        kept_m[k] = kx
        if r is not None:
            rest_m[k] = r
    return {"M": kept_m}, (rest_m or None)
