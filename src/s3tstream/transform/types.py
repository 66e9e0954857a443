"""Iceberg type strings: parse, validate and print them.

Pure and standard-library only: the config layer imports :func:`parse_type` to
validate column declarations, and the transform Lambda uses it to compile its
converters.

Grammar (keywords are case-insensitive, whitespace is allowed between tokens)::

    type      := primitive | "decimal" "(" P "," S ")" | "list" "<" type ">"
               | "map" "<" "string" "," type ">" | "struct" "<" field ("," field)* ">"
    field     := name ":" type
    primitive := boolean | int | long | float | double | date | timestamp
               | timestamptz | string | binary

``str()`` of a parsed type is its canonical form: lowercase keywords, no spaces,
e.g. ``struct<a:int,b:list<string>>``.

Struct field names (and, by the same rule, top-level column names, see
``settings.py``) must match ``[a-z_][a-z0-9_]*``: Glue and Athena reject
upper-case column names, and the type syntax has no quoting.  Use
``map<string,T>`` for DynamoDB maps whose keys are not such names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn, Union

__all__ = [
    "PRIMITIVE_NAMES",
    "Decimal",
    "DecimalType",
    "Field",
    "IcebergType",
    "ListType",
    "MapType",
    "Primitive",
    "StructType",
    "is_valid_name",
    "parse_type",
]

PRIMITIVE_NAMES = frozenset(
    {
        "boolean",
        "int",
        "long",
        "float",
        "double",
        "date",
        "timestamp",
        "timestamptz",
        "string",
        "binary",
    }
)

MAX_DECIMAL_PRECISION = 38
MAX_NAME_LENGTH = 255
# Deeper nesting than this is refused (Firehose supports 16 levels of nesting).
MAX_DEPTH = 32

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*\Z")


def is_valid_name(name: object) -> bool:
    """True for a usable column or struct field name (``[a-z_][a-z0-9_]*``, <= 255 chars)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and bool(_NAME_RE.match(name))


@dataclass(frozen=True)
class Primitive:
    name: str

    def __post_init__(self) -> None:
        if self.name not in PRIMITIVE_NAMES:
            raise ValueError(f"unknown primitive Iceberg type {self.name!r}")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class DecimalType:
    precision: int
    scale: int

    def __post_init__(self) -> None:
        if not 1 <= self.precision <= MAX_DECIMAL_PRECISION:
            raise ValueError(
                f"decimal precision must be 1..{MAX_DECIMAL_PRECISION}, got {self.precision}"
            )
        if not 0 <= self.scale <= self.precision:
            raise ValueError(
                f"decimal scale must be 0..precision ({self.precision}), got {self.scale}"
            )

    def __str__(self) -> str:
        return f"decimal({self.precision},{self.scale})"


# The brief calls it "Decimal"; DecimalType avoids clashing with decimal.Decimal.
Decimal = DecimalType


@dataclass(frozen=True)
class ListType:
    element: "IcebergType"

    def __str__(self) -> str:
        return f"list<{self.element}>"


@dataclass(frozen=True)
class MapType:
    value: "IcebergType"
    key: "IcebergType" = Primitive("string")

    def __post_init__(self) -> None:
        if self.key != Primitive("string"):
            raise ValueError(f"map keys must be string, got {self.key}")

    def __str__(self) -> str:
        return f"map<{self.key},{self.value}>"


@dataclass(frozen=True)
class Field:
    name: str
    type: "IcebergType"

    def __str__(self) -> str:
        return f"{self.name}:{self.type}"


@dataclass(frozen=True)
class StructType:
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        if not self.fields:
            raise ValueError("struct must have at least one field")
        seen: set[str] = set()
        for f in self.fields:
            if not is_valid_name(f.name):
                raise ValueError(f"bad struct field name {f.name!r} (want [a-z_][a-z0-9_]*)")
            if f.name in seen:
                raise ValueError(f"duplicate struct field name {f.name!r}")
            seen.add(f.name)

    def __str__(self) -> str:
        return "struct<" + ",".join(str(f) for f in self.fields) + ">"


IcebergType = Union[Primitive, DecimalType, ListType, MapType, StructType]

_TOKEN_RE = re.compile(r"\s*(?:(\d+(?![A-Za-z0-9_]))|([A-Za-z0-9_]+)|([<>(),:]))")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []  # (kind, value, position)
        pos = 0
        n = len(text)
        while pos < n:
            if text[pos:].strip() == "":
                break
            m = _TOKEN_RE.match(text, pos)
            if m is None:
                self.fail(f"unexpected character {text[pos:].lstrip()[:1]!r}", pos)
            if m.group(1) is not None:
                self.tokens.append(("int", m.group(1), m.start(1)))
            elif m.group(2) is not None:
                self.tokens.append(("word", m.group(2), m.start(2)))
            else:
                self.tokens.append(("punct", m.group(3), m.start(3)))
            pos = m.end()
        self.i = 0

    def fail(self, why: str, pos: int | None = None) -> NoReturn:
        where = f" at position {pos}" if pos is not None else ""
        raise ValueError(f"invalid Iceberg type {self.text!r}: {why}{where}")

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def next(self, what: str) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            self.fail(f"unexpected end, expected {what}")
        self.i += 1
        return tok

    def expect(self, punct: str) -> None:
        kind, value, pos = self.next(repr(punct))
        if kind != "punct" or value != punct:
            self.fail(f"expected {punct!r}, got {value!r}", pos)

    def parse(self) -> IcebergType:
        t = self.type(0)
        tok = self.peek()
        if tok is not None:
            self.fail(f"unexpected trailing {tok[1]!r}", tok[2])
        return t

    def type(self, depth: int) -> IcebergType:
        if depth > MAX_DEPTH:
            self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        kind, value, pos = self.next("a type")
        if kind != "word":
            self.fail(f"expected a type, got {value!r}", pos)
        word = value.lower()
        try:
            if word in PRIMITIVE_NAMES:
                return Primitive(word)
            if word == "decimal":
                self.expect("(")
                p = self.integer("decimal precision")
                self.expect(",")
                s = self.integer("decimal scale")
                self.expect(")")
                return DecimalType(p, s)
            if word == "list":
                self.expect("<")
                elem = self.type(depth + 1)
                self.expect(">")
                return ListType(elem)
            if word == "map":
                self.expect("<")
                kpos = self.peek()[2] if self.peek() else None
                key = self.type(depth + 1)
                if key != Primitive("string"):
                    self.fail(f"map key must be string, got {key}", kpos)
                self.expect(",")
                val = self.type(depth + 1)
                self.expect(">")
                return MapType(val)
            if word == "struct":
                self.expect("<")
                tok = self.peek()
                if tok is not None and tok[1] == ">":
                    self.fail("struct must have at least one field", tok[2])
                fields = []
                while True:
                    fkind, fname, fpos = self.next("a field name")
                    if fkind != "word" or not is_valid_name(fname):
                        self.fail(f"bad struct field name {fname!r} (want [a-z_][a-z0-9_]*)", fpos)
                    self.expect(":")
                    fields.append(Field(fname, self.type(depth + 1)))
                    sep = self.next("',' or '>'")
                    if sep[1] == ">":
                        break
                    if sep[1] != ",":
                        self.fail(f"expected ',' or '>', got {sep[1]!r}", sep[2])
                return StructType(tuple(fields))
        except ValueError as exc:
            if str(exc).startswith("invalid Iceberg type"):
                raise
            self.fail(str(exc), pos)
        self.fail(f"unknown type {value!r}", pos)

    def integer(self, what: str) -> int:
        kind, value, pos = self.next(what)
        if kind != "int":
            self.fail(f"expected {what} (an integer), got {value!r}", pos)
        return int(value)


def parse_type(text: "str | IcebergType") -> IcebergType:
    """Parse an Iceberg type string; raise ValueError naming the text when it is bad.

    An already-parsed type is returned unchanged.
    """
    if isinstance(text, (Primitive, DecimalType, ListType, MapType, StructType)):
        return text
    if not isinstance(text, str):
        raise ValueError(f"invalid Iceberg type {text!r}: expected a string")
    if not text.strip():
        raise ValueError(f"invalid Iceberg type {text!r}: empty")
    return _Parser(text).parse()
