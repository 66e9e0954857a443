"""`schema infer`: a `[table] columns` block proposed from sampled DynamoDB items.

The proposal must hold the data still to come, not only the sample (README "schema infer"):

* numbers with a fraction become ``decimal(38, s)``, s the largest scale seen: a sample whose
  largest amount was 19.25 must not give decimal(4,2), which every order of 100.00 would fail;
  integers within 64 bits are ``long``, larger ones ``decimal(38,0)``; beyond 38 digits, ``string``;
* strings that are all ISO-8601 dates (YYYY-MM-DD) become ``date``; all ISO-8601 timestamps
  (the transform parses them with ``datetime.fromisoformat``) become ``timestamptz`` when any
  carries an offset (one without is read as UTC), else ``timestamp``;
* every column gets a comment line saying what was seen, so the reader can check the choice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from s3tstream.lake.schema import KEY_TYPES

_FIELD_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")
MAX_STRUCT_FIELDS = 64
MAX_PRECISION = 38  # Iceberg's decimal
INT64 = (-(2**63), 2**63 - 1)
# The extended ISO-8601 forms only: "20240501" or "2024" are more likely ids than dates.
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?\Z")


@dataclass
class Shape:
    """What the sampled values of one attribute (or nested value) look like."""

    kinds: set[str] = field(default_factory=set)  # S N B BOOL L M (NULL ignored)
    integral: bool = True
    fits_long: bool = True
    int_digits: int = 1
    scale: int = 0
    # strings: how many were ISO dates, ISO timestamps with / without an offset, anything else
    dates: int = 0
    zoned: int = 0
    naive: int = 0
    texts: int = 0
    elem: "Shape | None" = None  # L and SS/NS/BS elements
    fields: dict[str, "Shape"] = field(default_factory=dict)  # M values by key
    seen: int = 0  # items (top level) that carried the attribute

    def add_number(self, text: str) -> None:
        try:
            d = Decimal(text)
        except InvalidOperation:
            self.add_string(text)
            return
        self.kinds.add("N")
        if d == 0:
            digits, exp = 1, 0
        else:
            tup = d.normalize().as_tuple()
            digits, exp = len(tup.digits), int(tup.exponent)
        scale = max(0, -exp)
        int_digits = max(1, digits + exp)
        if scale:
            self.integral = False
        elif not (INT64[0] <= int(d) <= INT64[1]):
            self.fits_long = False
        self.scale = max(self.scale, scale)
        self.int_digits = max(self.int_digits, int_digits)

    def add_string(self, s: str) -> None:
        self.kinds.add("S")
        if _DATE_RE.match(s) and _parses(date.fromisoformat, s):
            self.dates += 1
        elif _TS_RE.match(s) and _parses(datetime.fromisoformat, s):
            if s.endswith("Z") or re.search(r"[+-]\d{2}:?\d{2}\Z", s):
                self.zoned += 1
            else:
                self.naive += 1
        else:
            self.texts += 1


def _parses(fn: Any, s: str) -> bool:
    try:
        fn(s)
        return True
    except ValueError:
        return False


def observe_value(shape: Shape, v: dict[str, Any]) -> None:
    """Fold one typed DynamoDB value ({"S": ...}, {"N": ...}, ...) into a shape."""
    (tag, val), = v.items()
    if tag == "NULL":
        return
    if tag == "S":
        shape.add_string(val)
    elif tag in ("B", "BOOL"):
        shape.kinds.add(tag)
    elif tag == "N":
        shape.add_number(val)
    elif tag in ("SS", "NS", "BS"):
        shape.kinds.add("L")
        shape.elem = shape.elem or Shape()
        for x in val:
            observe_value(shape.elem, {tag[0]: x})
    elif tag == "L":
        shape.kinds.add("L")
        shape.elem = shape.elem or Shape()
        for x in val:
            observe_value(shape.elem, x)
    elif tag == "M":
        shape.kinds.add("M")
        for k, x in val.items():
            observe_value(shape.fields.setdefault(k, Shape()), x)
    else:
        shape.kinds.add("S")
        shape.texts += 1


def _string_type(shape: Shape) -> str:
    if shape.texts or not (shape.dates or shape.zoned or shape.naive):
        return "string"
    if not (shape.zoned or shape.naive):
        return "date"
    return "timestamptz" if shape.zoned else "timestamp"


def _number_type(shape: Shape) -> str:
    if shape.integral and shape.fits_long:
        return "long"
    if shape.int_digits + shape.scale > MAX_PRECISION:
        return "string"  # beyond Iceberg's decimal(38): the exact number text
    # room for the values to come: all 38 digits, the largest scale seen
    return f"decimal({MAX_PRECISION},{shape.scale})"


def type_of(shape: Shape) -> str:
    """The Iceberg type string for a shape (the rules table in the README)."""
    kinds = shape.kinds
    if not kinds:
        return "string"  # only NULLs seen
    if len(kinds) > 1:
        return "string"  # mixed types: the transform writes S as is, N as its text, others as JSON
    kind = next(iter(kinds))
    if kind == "S":
        return _string_type(shape)
    if kind == "B":
        return "binary"
    if kind == "BOOL":
        return "boolean"
    if kind == "N":
        return _number_type(shape)
    if kind == "L":
        if shape.elem is None or not shape.elem.kinds:
            return "list<string>"
        et = type_of(shape.elem)
        if len(shape.elem.kinds) > 1:
            return "string"  # a list of mixed values: JSON text
        return f"list<{et}>"
    if kind == "M":
        if not shape.fields:
            return "string"
        names_ok = all(_FIELD_RE.match(k) for k in shape.fields) and len(shape.fields) <= MAX_STRUCT_FIELDS
        if names_ok:
            return "struct<" + ",".join(f"{k}:{type_of(s)}" for k, s in shape.fields.items()) + ">"
        # keys that are data (ids, camelCase): a map when every value has one type
        merged = Shape()
        for s in shape.fields.values():
            _merge(merged, s)
        if len(merged.kinds) == 1 and "M" not in merged.kinds:
            return f"map<string,{type_of(merged)}>"
        return "string"
    return "string"


def describe(shape: Shape) -> str:
    """What was seen, in words, for the comment line beside a column."""
    kinds = shape.kinds
    if not kinds:
        return "only NULL seen"
    if len(kinds) > 1:
        return "mixed types (" + ", ".join(sorted(kinds)) + "): kept as text"
    kind = next(iter(kinds))
    if kind == "N":
        if shape.integral and shape.fits_long:
            return f"integers of up to {shape.int_digits} digit(s)"
        what = "integers beyond 64 bits" if shape.integral else "numbers with a fraction"
        seen = f"{what}, up to {shape.int_digits} integer digit(s) and {shape.scale} decimal place(s)"
        if shape.int_digits + shape.scale > MAX_PRECISION:
            return seen + f": more than {MAX_PRECISION} digits, kept as exact text"
        return seen + f"; precision {MAX_PRECISION} leaves room for larger values"
    if kind == "S":
        iso = shape.dates + shape.zoned + shape.naive
        if shape.texts or not iso:
            return "text" + (f" ({shape.texts} of {shape.texts + iso} not ISO-8601)" if iso else "")
        if not (shape.zoned or shape.naive):
            return f"ISO-8601 dates ({shape.dates})"
        parts = [f"{n} {w}" for n, w in ((shape.zoned, "with an offset"), (shape.naive, "without one (read as UTC)"),
                                         (shape.dates, "date-only")) if n]
        return "ISO-8601 timestamps: " + ", ".join(parts)
    if kind == "L":
        return "lists" if shape.elem is None or len(shape.elem.kinds) <= 1 else "lists of mixed values: JSON text"
    if kind == "M":
        return f"maps with {len(shape.fields)} distinct key(s)"
    return {"B": "binary", "BOOL": "booleans"}.get(kind, kind)


def _merge(into: Shape, s: Shape) -> None:
    into.kinds |= s.kinds
    into.integral &= s.integral
    into.fits_long &= s.fits_long
    into.int_digits = max(into.int_digits, s.int_digits)
    into.scale = max(into.scale, s.scale)
    into.dates += s.dates
    into.zoned += s.zoned
    into.naive += s.naive
    into.texts += s.texts
    if s.elem is not None:
        into.elem = into.elem or Shape()
        _merge(into.elem, s.elem)
    for k, v in s.fields.items():
        _merge(into.fields.setdefault(k, Shape()), v)


def column_name_for(attr: str) -> str:
    """A valid lowercase column name for a DynamoDB attribute name."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", attr)  # createdAt -> created_At
    name = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_") or "col"
    if name[0].isdigit():
        name = "_" + name
    return name[:255]


@dataclass(frozen=True)
class Inferred:
    name: str
    type: str
    required: bool
    source: str | None
    seen: int
    saw: str = ""  # what was seen, in words


def infer_columns(items: Iterable[dict[str, Any]], keys: list[tuple[str, str]]) -> tuple[list[Inferred], int]:
    """Sampled items (typed DynamoDB JSON) -> columns, keys first. keys: [(attribute, S|N|B)]."""
    shapes: dict[str, Shape] = {}
    n = 0
    for item in items:
        n += 1
        for attr, v in item.items():
            s = shapes.setdefault(attr, Shape())
            s.seen += 1
            observe_value(s, v)
    out: list[Inferred] = []
    used: set[str] = set()

    def unique(name: str) -> str:
        base, i = name, 2
        while name in used:
            name = f"{base}_{i}"
            i += 1
        used.add(name)
        return name

    key_attrs = [a for a, _ in keys]
    for attr, ktype in keys:
        s = shapes.get(attr, Shape())
        # a key column has the key's type: an N key is an integer id unless it was seen otherwise
        typ = type_of(s) if ktype == "N" and s.kinds == {"N"} else KEY_TYPES[ktype]
        name = unique(column_name_for(attr))
        out.append(Inferred(name, typ, True, None if name == attr else attr, s.seen,
                            f"key attribute ({ktype})" + (f": {describe(s)}" if ktype == "N" and s.kinds else "")))
    for attr in sorted(shapes, key=lambda a: (-shapes[a].seen, a)):
        if attr in key_attrs:
            continue
        name = unique(column_name_for(attr))
        sh = shapes[attr]
        out.append(Inferred(name, type_of(sh), False, None if name == attr else attr, sh.seen,
                            f"in {sh.seen} of {n} item(s): {describe(sh)}"))
    return out, n


def toml_block(cols: list[Inferred], sampled: int) -> str:
    """A `[table]` columns block to paste into s3tstream.toml, a comment above each column."""
    lines = [f"# inferred from {sampled} sampled item(s); check the types before the first `up`", "[table]", "columns = ["]
    for c in cols:
        parts = [f"name = {json.dumps(c.name)}", f"type = {json.dumps(c.type)}"]
        if c.required:
            parts.append("required = true")
        if c.source is not None:
            parts.append(f"source = {json.dumps(c.source)}")
        if c.saw:
            lines.append(f"  # {c.source or c.name}: {c.saw}")
        lines.append("  { " + ", ".join(parts) + " },")
    lines.append("]")
    return "\n".join(lines) + "\n"
