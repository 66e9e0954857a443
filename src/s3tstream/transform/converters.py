"""Per-type converters: a DynamoDB typed value -> the value of one Iceberg column type.

``compile_type(type, date_format)`` builds, once per settings, a converter for a
declared type (the rules are the table in mapping.py).  Each converter handles
its usual tag in one call and hands anything else (NULL, other tags, errors) to a
generic dispatcher, which names the problem in a RecordError.  Struct types are
compiled by the code generator (codegen.py).

Standard library only.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, Callable

from . import types as T
from .codegen import Undeclared, generate_list, generate_map, generate_struct
from .exactjson import dumps_exact
from .plaintext import elements_text, members_text
from .values import (
    _CTX,
    _EPOCH_ORDINAL,
    _INT_RANGE,
    _LONG_RANGE,
    _PLAIN,
    _US_PER_DAY,
    RecordError,
    _check_b64,
    _double,
    _epoch_micros,
    _float32,
    _integer,
    _iso_micros,
    _list,
    _number,
    _number_text,
    _p_bool,
    _p_s,
    _sorted_bs,
    _sorted_strings,
    _str,
)

__all__ = ["compile_type"]

Converter = Callable[[dict], Any]
Scalar = Callable[[Any], Any]  # converts the payload of one tag, e.g. the "N" text
_NUMERIC = ("int", "long", "float", "double")


def _null(_: Any) -> None:
    return None


def _dispatch(type_name: str, scalars: dict[str, Scalar]) -> Converter:
    """Generic converter: look up the value's tag (NULL -> None, unknown tag -> error)."""
    handlers = {"NULL": _null, **scalars}
    get = handlers.get

    def convert(v: dict) -> Any:
        for tag in v:
            fn = get(tag)
            if fn is None:
                raise RecordError(f"cannot convert a DynamoDB {str(tag)[:20]} value to {type_name}")
            return fn(v[tag])
        raise RecordError("empty DynamoDB attribute value")

    return convert


def _fast(tag: str, fn: Scalar, slow: Converter) -> Converter:
    """Converter trying the usual tag first."""

    def convert(v: dict) -> Any:
        x = v.get(tag)
        if x is not None:
            return fn(x)
        return slow(v)

    return convert


def _bool_text(val: Any) -> str:
    return "true" if _p_bool(val) else "false"


def _text_of(tag: str) -> Scalar:
    fn = _PLAIN[tag]
    return lambda val: dumps_exact(fn(val), True)


def _primitive_scalars(p: str, date_format: str) -> dict[str, Scalar]:
    if p == "string":
        scalars: dict[str, Scalar] = {"S": _p_s, "N": _number_text, "BOOL": _bool_text, "B": _check_b64}
        for tag in ("M", "L", "SS", "NS", "BS"):
            scalars[tag] = _text_of(tag)
        return scalars
    if p == "boolean":
        return {"BOOL": _p_bool}
    if p in ("int", "long"):
        lo, hi = _INT_RANGE if p == "int" else _LONG_RANGE

        def integer(n: Any) -> int:
            if n.__class__ is str:
                try:
                    i = int(n)
                except ValueError:
                    return _integer(n, lo, hi, p)
                if lo <= i <= hi:
                    return i
            return _integer(n, lo, hi, p)  # raises with the reason

        return {"N": integer}
    if p == "double":
        return {"N": _double}
    if p == "float":
        return {"N": _float32}
    if p in ("timestamp", "timestamptz"):
        return {"S": _iso_micros, "N": _epoch_micros}
    if p == "date":
        iso = date_format == "iso"

        def from_s(s: Any) -> Any:
            s = _str(s, "S")
            try:
                d = date.fromisoformat(s)
            except ValueError:
                raise RecordError(f"not an ISO-8601 date: {s[:60]!r}") from None
            return d.isoformat() if iso else d.toordinal() - _EPOCH_ORDINAL

        def from_n(n: Any) -> Any:
            days = _epoch_micros(n) // _US_PER_DAY
            return date.fromordinal(days + _EPOCH_ORDINAL).isoformat() if iso else days

        return {"S": from_s, "N": from_n}
    if p == "binary":
        return {"B": _check_b64}
    raise AssertionError(p)  # pragma: no cover - parse_type knows no other primitive


def _decimal_scalars(t: T.DecimalType) -> dict[str, Scalar]:
    precision, scale, name = t.precision, t.scale, str(t)
    quantum = Decimal(1).scaleb(-scale)
    max_adjusted = precision - scale - 1

    def decimal_n(n: Any) -> Decimal:
        d = _number(n)
        # Integer digits first (this also keeps quantize within _CTX's precision), then
        # the fractional digits: quantize is exact iff no digit is lost.
        if d and d.adjusted() > max_adjusted:
            raise RecordError(f"{n[:60]} needs more than {precision} digits for {name}")
        q = _CTX.quantize(d, quantum)
        if q != d:
            raise RecordError(f"{n[:60]} has more than {scale} fractional digits for {name}")
        return q

    return {"N": decimal_n}


def _compile(t: T.IcebergType, date_format: str) -> tuple[Converter, dict[str, Scalar] | None]:
    """-> (converter for a typed value, per-tag scalar converters for primitives).

    Each converter handles its usual tag in one call and hands anything else (NULL,
    other tags, errors) to a generic dispatcher.
    """
    name = str(t)
    if isinstance(t, T.DecimalType):
        scalars = _decimal_scalars(t)
        return _fast("N", scalars["N"], _dispatch(name, scalars)), scalars
    if isinstance(t, T.Primitive):
        scalars = _primitive_scalars(t.name, date_format)
        slow = _dispatch(name, scalars)
        p = t.name
        if p == "string":

            def convert_string(v: dict) -> Any:
                s = v.get("S")
                if s.__class__ is str:
                    return s
                if "NULL" in v and len(v) == 1:
                    return None
                # Maps and lists kept as JSON text: common enough to skip the dispatch.
                m = v.get("M")
                if m.__class__ is dict:
                    return members_text(m)
                m = v.get("L")
                if m.__class__ is list:
                    return elements_text(m)
                return slow(v)

            return convert_string, scalars
        if p in ("int", "long"):
            lo, hi = _INT_RANGE if p == "int" else _LONG_RANGE

            def convert_integer(v: dict) -> Any:
                n = v.get("N")
                if n.__class__ is str:
                    try:
                        i = int(n)
                    except ValueError:
                        return _integer(n, lo, hi, p)
                    if lo <= i <= hi:
                        return i
                return slow(v)

            return convert_integer, scalars
        if p == "double":

            def convert_double(v: dict) -> Any:
                n = v.get("N")
                if n.__class__ is str:
                    try:
                        f = float(n)
                    except ValueError:
                        return _double(n)
                    if f - f == 0.0:
                        return f
                return slow(v)

            return convert_double, scalars
        if p == "boolean":

            def convert_boolean(v: dict) -> Any:
                b = v.get("BOOL")
                if b is True or b is False:
                    return b
                return slow(v)

            return convert_boolean, scalars
        if p in ("timestamp", "timestamptz", "date"):
            from_s, from_n = scalars["S"], scalars["N"]

            def convert_time(v: dict) -> Any:
                x = v.get("S")
                if x is not None:
                    return from_s(x)
                x = v.get("N")
                if x is not None:
                    return from_n(x)
                return slow(v)

            return convert_time, scalars
        usual = "B" if p == "binary" else "N"
        return _fast(usual, scalars[usual], slow), scalars

    if isinstance(t, T.ListType):
        elem, elem_scalars = _compile(t.element, date_format)

        def list_l(val: Any) -> list:
            return [None if x is None else elem(x) for x in _list(val, "L")]

        handlers: dict[str, Scalar] = {"L": list_l}
        numeric = isinstance(t.element, T.DecimalType) or str(t.element) in _NUMERIC
        for tag in ("SS", "NS", "BS"):
            fn = (elem_scalars or {}).get(tag[0])
            if fn is not None:  # else e.g. NS into list<boolean>: the generic error
                handlers[tag] = _set_converter(tag, fn, numeric and tag == "NS", str(t.element))
        slow = _dispatch(name, handlers)
        generated = generate_list(name, str(t.element), elem, slow, numeric and "NS" in handlers,
                                  str(t.element) == "string" and "SS" in handlers)
        if generated is not None:
            return generated, None

        def convert_list(v: dict) -> Any:
            val = v.get("L")
            if val.__class__ is list:
                return [None if x is None else elem(x) for x in val]
            return slow(v)

        return convert_list, None

    if isinstance(t, T.MapType):
        value_conv, _ = _compile(t.value, date_format)

        def map_m(val: Any) -> dict:
            if val.__class__ is not dict:
                raise RecordError("M value must be an object")
            return {k: value_conv(x) for k, x in val.items()}

        slow = _dispatch(name, {"M": map_m})
        generated = generate_map(name, str(t.value), value_conv, slow)
        if generated is not None:
            return generated, None

        def convert_map(v: dict) -> Any:
            val = v.get("M")
            if val.__class__ is dict:
                return {k: value_conv(x) for k, x in val.items()}
            return slow(v)

        return convert_map, None

    if isinstance(t, T.StructType):
        fields = tuple((f.name, str(f.type), _compile(f.type, date_format)[0]) for f in t.fields)
        declared = frozenset(f.name for f in t.fields)

        def struct_m(val: Any) -> dict:
            if val.__class__ is not dict:
                raise RecordError("M value must be an object")
            if not val.keys() <= declared:
                raise Undeclared
            out = {}
            for fname, _ftype, fconv in fields:
                x = val.get(fname)
                out[fname] = None if x is None else fconv(x)
            return out

        return generate_struct(name, fields, _dispatch(name, {"M": struct_m}), struct_m,
                               date_format), None

    raise TypeError(f"not an Iceberg type: {t!r}")  # pragma: no cover


def _set_converter(tag: str, fn: Scalar, sort_converted: bool, elem_name: str) -> Scalar:
    """SS/NS/BS -> list of converted elements in the set's canonical order."""
    if tag == "SS":
        if elem_name == "string":
            return _sorted_strings
        return lambda vals: [fn(x) for x in _sorted_strings(vals)]
    if tag == "BS":
        return lambda vals: [fn(x) for x in _sorted_bs(vals)]
    if sort_converted:  # numbers into a numeric type: conversion keeps the order
        return lambda vals: sorted([fn(x) for x in _list(vals, "NS")])
    return lambda vals: [fn(x) for x in sorted(_list(vals, "NS"), key=_number)]



def compile_type(t: T.IcebergType, date_format: str) -> Converter:
    """The converter of typed values for one declared Iceberg type."""
    return _compile(t, date_format)[0]
