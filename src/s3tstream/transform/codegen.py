"""The code generator: straight-line Python for one settings' row mapper and struct types.

A generic loop over columns costs a call and a few lookups per column; the
generated functions instead hold one local per column and convert the usual
case of each type in place: primitives, times, decimals, base64, JSON texts of
string columns, and lists, maps and structs of them (a struct field by field).  They handle the usual case only: on anything unusual (an
error, a missing required value) they raise, and their caller redoes the work
with the per-type converters (converters.py), which explain the problem.

Standard library only.
"""

from __future__ import annotations

import binascii
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable

from .plaintext import elements_text, members_text
from .values import (
    _CTX,
    _EPOCH,
    _EPOCH_ORDINAL,
    _EPOCH_UTC,
    _INT_RANGE,
    _LONG_RANGE,
    _MAX_US,
    _MILLIS_THRESHOLD,
    _MIN_US,
    _ONE_US,
)

Converter = Callable[[dict], Any]

_INLINE_RANGES = {"int": _INT_RANGE, "long": _LONG_RANGE}
_DECIMAL = re.compile(r"decimal\((\d+),(\d+)\)").fullmatch


class _Slow(Exception):
    """Internal: leave the generated fast path for the diagnosing loop."""


class Undeclared(Exception):
    """Internal: a struct value has fields its type does not declare.

    Raised by struct converters (and passed through by every other converter) so
    that the row is mapped again by mapping.py, which puts those fields in the
    catch-all column or reports them as dropped.
    """


def _namespace(**names: Any) -> dict[str, Any]:
    """A generated function's globals: what _inline's statements refer to, and ``names``."""
    return {"_Slow": _Slow, "_members_text": members_text, "_elements_text": elements_text,
            "_a2b": binascii.a2b_base64, "_fromiso": datetime.fromisoformat, "_EPOCH": _EPOCH,
            "_EPOCH_UTC": _EPOCH_UTC, "_ONE_US": _ONE_US, "_date_fromiso": date.fromisoformat,
            "_Decimal": Decimal, "_quantize": _CTX.quantize, "_bad": _bad, **names}


def _run(body: list[str], ns: dict[str, Any], name: str, label: str) -> Any:
    exec(compile("\n".join(body), f"<s3tstream.transform {label[:60]}>", "exec"), ns)  # noqa: S102
    return ns[name]


def _inline(i: "int | str", type_name: str, ns: dict[str, Any], date_format: str,
            conv: Converter | None = None) -> list[str]:
    """Statements setting x{i} from v{i} (a typed value or None) for the usual case.

    The common primitives, times, decimals and base64 are converted in place (the
    same calls as their converters in converters.py and values.py, without the
    function calls around them); anything else calls c{i}.  On bad input the
    statements may raise anything (or _Slow): the generated function's caller then
    redoes the work with the converters, which explain the problem.  ns receives
    the per-column constants (a decimal's quantum, a struct's fields and their
    converters); conv is c{i}, the column's converter.
    """
    v, x, c = f"v{i}", f"x{i}", f"c{i}"
    if type_name == "string":
        # convert_string's order: S, then an M or L as JSON text (a NULL has neither), else c.
        return [f"{x} = None if {v} is None else {v}.get('S')",
                f"if {x}.__class__ is not str and {v} is not None:",
                f"    {x} = {v}.get('M')",
                f"    if {x}.__class__ is dict: {x} = _members_text({x})",
                "    else:",
                f"        {x} = {v}.get('L')",
                f"        {x} = _elements_text({x}) if {x}.__class__ is list else {c}({v})"]
    if type_name == "boolean":
        return [f"{x} = None if {v} is None else {v}.get('BOOL')",
                f"if {x} is not True and {x} is not False and {v} is not None: {x} = {c}({v})"]
    if type_name == "binary":  # _check_b64
        return [f"{x} = None if {v} is None else {v}.get('B')",
                f"if {x}.__class__ is str: _a2b({x}, strict_mode=True)",
                f"elif {v} is not None: {x} = {c}({v})"]
    lines = [f"if {v} is None: {x} = None", "else:"]
    if type_name in ("timestamp", "timestamptz"):  # convert_time: S by _iso_micros, N by _epoch_micros
        return lines + [
            f"    {x} = {v}.get('S')",
            f"    if {x}.__class__ is str:",
            f"        {x} = _fromiso({x})",
            f"        {x} = ({x} - (_EPOCH if {x}.tzinfo is None else _EPOCH_UTC)) // _ONE_US",
            f"        if not {_MIN_US} <= {x} <= {_MAX_US}: raise _Slow",
            f"    elif {x} is None and ({x} := {v}.get('N')).__class__ is str:",
            f"        {x} = int({x})",
            f"        {x} = {x} * 1000 if {x} >= {_MILLIS_THRESHOLD} or {x} <= -{_MILLIS_THRESHOLD} "
            f"else {x} * 1000000",
            f"        if not {_MIN_US} <= {x} <= {_MAX_US}: raise _Slow",
            f"    else: {x} = {c}({v})"]
    if type_name == "date":  # the S case of convert_time for dates
        tail = ".isoformat()" if date_format == "iso" else f".toordinal() - {_EPOCH_ORDINAL}"
        return lines + [f"    {x} = {v}.get('S')",
                        f"    if {x}.__class__ is str: {x} = _date_fromiso({x}){tail}",
                        f"    else: {x} = {c}({v})"]
    dec = _DECIMAL(type_name)
    if dec is not None:  # decimal_n: exact, never rounded
        precision, scale = int(dec[1]), int(dec[2])
        ns[f"q{i}"] = Decimal(1).scaleb(-scale)
        return lines + [f"    {x} = {v}.get('N')",
                        f"    if {x}.__class__ is str:",
                        f"        _d = _Decimal({x})",
                        f"        if not _d.is_finite() or (_d and _d.adjusted() > {precision - scale - 1}):",
                        "            raise _Slow",
                        f"        {x} = _quantize(_d, q{i})",
                        f"        if {x} != _d: raise _Slow",
                        f"    else: {x} = {c}({v})"]
    fields = getattr(conv, "struct_fields", None)
    if fields is not None:
        return lines + _inline_struct(i, fields, ns, date_format)
    if type_name.startswith("list<") and (e := _expr(type_name[5:-1], "_x")) is not None:
        return lines + _inline_list(i, type_name[5:-1], e)
    if type_name.startswith("map<string,") and (e := _expr(type_name[11:-1], "_x")) is not None:
        # convert_map (generate_map) without its call
        return lines + [f"    {x} = {v}.get('M')",
                        f"    if {x}.__class__ is dict:",
                        f"        {x} = {{_k: {e} for _k, _x in {x}.items()}}",
                        *["        " + r for r in _range(type_name[11:-1], f"{x}.values()")],
                        f"    else: {x} = {c}({v})"]
    if type_name in _INLINE_RANGES or type_name == "double":
        if type_name == "double":
            parse, check = "float", f"{x} - {x} != 0.0"  # inf or nan
        else:
            lo, hi = _INLINE_RANGES[type_name]
            parse, check = "int", f"not {lo} <= {x} <= {hi}"
        return lines + [f"    {x} = {v}.get('N')",
                        f"    if {x}.__class__ is str:",
                        f"        {x} = {parse}({x})",
                        f"        if {check}: raise _Slow",
                        f"    else: {x} = {c}({v})"]
    return [f"{x} = None if {v} is None else {c}({v})"]


def _inline_struct(i: "int | str", fields: tuple, ns: dict[str, Any], date_format: str) -> list[str]:
    """_inline's statements (under its ``else:``) for a struct: generate_struct's body without
    its call, each field inlined as v{i}_{j} -> x{i}_{j}; anything else (not an M, an
    undeclared field: Undeclared) calls c{i}."""
    v, x, c = f"v{i}", f"x{i}", f"c{i}"
    ns[f"f{i}"] = frozenset(f[0] for f in fields)
    body = [f"    {x} = {v}.get('M')", f"    if {x}.__class__ is dict and {x}.keys() <= f{i}:"]
    items = []
    for j, (fname, ftype, fconv) in enumerate(fields):
        k = f"{i}_{j}"
        ns[f"c{k}"] = fconv
        body.append(f"        v{k} = {x}.get({fname!r})")
        body.extend("        " + line for line in _inline(k, ftype, ns, date_format, fconv))
        items.append(f"{fname!r}: x{k}")
    return body + [f"        {x} = {{" + ", ".join(items) + "}", f"    else: {x} = {c}({v})"]


def _inline_list(i: int, elem: str, e: str) -> list[str]:
    """_inline's statements (under its ``else:``) for a list of elem, e converting element _x.

    convert_list (generate_list) without its call: an L, else an NS of numbers, else an
    SS alone in its value for strings; the rest calls c{i}.
    """
    v, x, c = f"v{i}", f"x{i}", f"c{i}"
    body = [f"    {x} = {v}.get('L')",
            f"    if {x}.__class__ is list:",
            f"        {x} = [{e} for _x in {x}]",
            *["        " + r for r in _range(elem, x)]]
    if elem in _INLINE_RANGES or elem == "double":
        body += [f"    elif {x} is None and ({x} := {v}.get('NS')).__class__ is list:",
                 f"        {x} = sorted([{_number_expr(elem, '_x')} for _x in {x}])",
                 *["        " + r for r in _range(elem, x, ordered=True)]]
    elif elem == "string":
        body += [f"    elif {x} is None and len({v}) == 1 and ({x} := {v}.get('SS')).__class__ is list:",
                 f"        {x} = sorted({x})",
                 f"        if {x} and ({x}[0].__class__ is not str or {x}[-1].__class__ is not str):",
                 "            raise _Slow"]
    return body + [f"    else: {x} = {c}({v})"]


def _expr(type_name: str, x: str) -> str | None:
    """An expression converting the typed value ``x`` (usual case only), else None.

    Anything unusual (NULL, another tag, a bad value) raises: the caller then
    redoes the whole value with the converters, which explain the problem.
    """
    if type_name == "string":
        return f"(_s if (_s := {x}['S']).__class__ is str else _bad())"
    if type_name == "boolean":
        return f"(_b if (_b := {x}['BOOL']) is True or _b is False else _bad())"
    return _number_expr(type_name, f"{x}['N']")


def _number_expr(type_name: str, n: str) -> str | None:
    """An expression converting the N text ``n`` (usual case only), else None.

    int and long elements are parsed with an explicit base (which refuses anything
    but a string) and range-checked afterwards, for the whole list (_range).
    """
    if type_name in _INLINE_RANGES:
        return f"int({n}, 10)"
    if type_name == "double":
        text = f"(_n if (_n := {n}).__class__ is str else _bad())"
        return f"(_f if (_f := float({text})) - _f == 0.0 else _bad())"  # inf, nan: _bad
    return None


def _range(type_name: str, values: str, ordered: bool = False) -> list[str]:
    """Statements raising _Slow when an int/long element is out of range (ordered: values sorted)."""
    if type_name not in _INLINE_RANGES:
        return []
    lo, hi = _INLINE_RANGES[type_name]
    least, most = (f"{values}[0]", f"{values}[-1]") if ordered else (f"min({values})", f"max({values})")
    return [f"if {values} and ({least} < {lo} or {most} > {hi}): raise _Slow"]


def _bad() -> Any:
    raise _Slow


def generate_list(type_name: str, elem_name: str, elem: Converter, slow: Converter,
                  numeric_set: bool, string_set: bool = False) -> Converter | None:
    """A list converter with the element conversion inline, or None for other elements.

    numeric_set: an NS converts too (sorted numerically after conversion).
    string_set: an SS (alone in its typed value, as the dispatch would pick it) is
    the sorted strings (values._sorted_strings: anything else goes to slow).
    """
    e = _expr(elem_name, "x")
    if e is None:
        return None
    ns: dict[str, Any] = {"_slow": slow, "_elem": elem, "_bad": _bad, "_Slow": _Slow}
    body = ["def convert_list(v):", "    val = v.get('L')", "    if val.__class__ is list:",
            "        try:", f"            out = [{e} for x in val]"]
    body += ["            " + line for line in _range(elem_name, "out")]
    body += ["            return out",
             "        except Exception:",
             "            return [None if x is None else _elem(x) for x in val]"]
    if numeric_set:
        body += ["    val = v.get('NS')", "    if val.__class__ is list:", "        try:",
                 f"            out = sorted([{_number_expr(elem_name, 'x')} for x in val])"]
        body += ["            " + line for line in _range(elem_name, "out", ordered=True)]
        body += ["            return out", "        except Exception:", "            pass"]
    if string_set:
        body += ["    val = v.get('SS')", "    if val.__class__ is list and len(v) == 1:", "        try:",
                 "            out = sorted(val)",
                 "            if not out or (out[0].__class__ is str and out[-1].__class__ is str):",
                 "                return out",
                 "        except Exception:", "            pass"]
    body.append("    return _slow(v)")
    return _run(body, ns, "convert_list", type_name)


def generate_map(type_name: str, value_name: str, value: Converter, slow: Converter) -> Converter | None:
    """A map converter with the value conversion inline, or None for other values."""
    e = _expr(value_name, "x")
    if e is None:
        return None
    ns: dict[str, Any] = {"_slow": slow, "_value": value, "_bad": _bad, "_Slow": _Slow}
    body = ["def convert_map(v):", "    val = v.get('M')", "    if val.__class__ is not dict:",
            "        return _slow(v)", "    try:", f"        out = {{k: {e} for k, x in val.items()}}"]
    body += ["        " + line for line in _range(value_name, "out.values()")]
    body += ["        return out",
             "    except Exception:", "        return {k: _value(x) for k, x in val.items()}"]
    return _run(body, ns, "convert_map", type_name)


def generate_struct(type_name: str, fields: tuple, slow: Converter,
                    loop: Callable[[dict], dict], date_format: str) -> Converter:
    """Straight-line converter for one struct type.

    fields: (name, type name, converter) per field; slow: the generic converter
    for a value that is not an M; loop: the field loop for an M (used on trouble).
    An M with a field that is not declared raises Undeclared.
    """
    ns = _namespace(_slow=slow, _loop=loop, _Undeclared=Undeclared,
                    _fields=frozenset(f[0] for f in fields))
    body = ["def convert_struct(v):", "    m = v.get('M')", "    if m.__class__ is not dict:",
            "        return _slow(v)",
            "    if not m.keys() <= _fields:",
            "        raise _Undeclared",
            "    try:", "        get = m.get"]
    items = []
    for i, (fname, ftype, fconv) in enumerate(fields):
        ns[f"c{i}"] = fconv
        body.append(f"        v{i} = get({fname!r})")
        body.extend("        " + line for line in _inline(i, ftype, ns, date_format, fconv))
        items.append(f"{fname!r}: x{i}")
    body.append("        return {" + ", ".join(items) + "}")
    body += ["    except _Undeclared:", "        raise",  # from a nested struct
             "    except Exception:", "        return _loop(m)"]
    convert = _run(body, ns, "convert_struct", type_name)
    convert.struct_fields = fields  # what _inline needs to inline it in a mapper or struct
    return convert


def generate_mapper(columns: tuple, types: tuple, extra: str | None,
                    sources: frozenset, date_format: str) -> Callable[[dict], dict]:
    """Straight-line row mapper for the usual case (no errors): one local per column.

    columns: (name, source, converter, required) per column, types their type
    names.  Any problem (an exception, a missing required value) makes it raise,
    and map_item reruns the generic loop, which reports the column and the reason.
    """
    ns = _namespace(_sources=sources)
    body = ["def _map(image):", "    get = image.get"]
    items = []
    required = []
    for i, ((name, source, conv, req), type_name) in enumerate(zip(columns, types)):
        ns[f"c{i}"] = conv
        body.append(f"    v{i} = get({source!r})")
        body.extend("    " + line for line in _inline(i, type_name, ns, date_format, conv))
        items.append(f"{name!r}: x{i}")
        if req:
            required.append(f"x{i} is None")
    if required:
        body.append("    if " + " or ".join(required) + ":")
        body.append("        raise _Slow")
    body.append("    row = {" + ", ".join(items) + "}")
    if extra is not None:
        body.append("    rest = _members_text(image, _sources)")
        body.append(f"    row[{extra!r}] = None if rest == '{{}}' else rest")
    body.append("    return row")
    return _run(body, ns, "_map", "mapper")
