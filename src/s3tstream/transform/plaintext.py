"""Typed values straight to the JSON text of their plain values (catch-all column, maps kept as text).

``members_text(m, skip)`` is an exact, faster stand-in for
``dumps_exact({k: plain_value(x) for k, x in m.items() if k not in skip}, True)`` and
``elements_text(items)`` for ``dumps_exact([plain_value(x) for x in items], True)``:
same text, same exceptions.  Building the plain values and then encoding them costs
most in the numbers: an N text parsed to a float or int that the encoder prints back
to the same text, or to a Decimal that needs dumps_exact's marker pass.  Here a
canonical N text (see _canonical) is written as it is, and the text is appended piece
by piece, one join per call.

Only the usual shapes are rendered here: S, canonical N, M, L, BOOL, NULL, SS, B and
integer NS.  Any other value (an N such as "1e5", "007" or "-0", a BS, an unknown tag)
is rendered by plain_value and dumps_exact themselves, whose compact sorted output
composes with this.  Anything that raises, and nesting deeper than DynamoDB allows,
redoes the whole call with plain_value and dumps_exact, which return the same text or
raise what they always raised.  mapping._map_slow keeps that reference form.

Standard library only.
"""

from __future__ import annotations

import json
import re
from itertools import filterfalse
from typing import Any

from .exactjson import dumps_exact
from .values import _check_b64, _sorted_strings, plain_value

__all__ = ["elements_text", "members_text"]

# N texts that plain_value + dumps_exact write back unchanged: integers without sign
# noise or leading zeros (int() then repr() gives the text back; "-0" would give "0"),
# and such integers with a fraction ("1.5", "-0.10", "0.0000001"): either repr(float) is
# the text, or plain_value falls back to the exact Decimal, whose token is the text.
_canonical = re.compile(r"-?(?:[1-9][0-9]*|0(?=\.))(?:\.[0-9]+)?|0").fullmatch
# (_members and _elements test the commonest canonical texts, ASCII digits without a leading
# zero, with str methods first: cheaper than the regex, which takes the rest.)


_esc = json.encoder.encode_basestring  # the escaping dumps_exact's encoder uses
_MAX_DEPTH = 32  # DynamoDB's nesting limit; deeper values take the reference path
_KEYS: dict[str, str] = {}  # key -> ',"key":' (attribute and map keys repeat across records)
_KEYS_MAX = 4096


class _Deep(Exception):
    """Internal: nesting beyond _MAX_DEPTH."""


def _key(k: str) -> str:
    q = "," + _esc(k) + ":"
    if len(_KEYS) < _KEYS_MAX:
        _KEYS[k] = q
    return q


def _value(v: Any, out: list, depth: int) -> None:
    """Append the text of one typed value (plain_value's first-tag rule)."""
    for tag in v:
        val = v[tag]
        if tag == "BOOL":
            if val is True or val is False:
                out.append("true" if val else "false")
                return
        elif tag == "M":
            if val.__class__ is dict:
                _members(val, sorted(val), out, depth + 1)
                return
        elif tag == "L":
            if val.__class__ is list:
                _elements(val, out, depth + 1)
                return
        elif tag == "NULL":
            out.append("null")
            return
        elif tag == "SS":
            out.append("[" + ",".join([_esc(s) for s in _sorted_strings(val)]) + "]")
            return
        elif tag == "NS":
            if val.__class__ is list:
                try:  # plain_value's integer case (_p_ns), else its general one below
                    ints = sorted([int(x, 10) for x in val])
                except (TypeError, ValueError):
                    pass
                else:
                    out.append("[" + ",".join(map(str, ints)) + "]")
                    return
        elif tag == "B":
            out.append(_esc(_check_b64(val)))
            return
        elif tag == "N":
            if val.__class__ is str and _canonical(val):
                out.append(val)
                return
        elif tag == "S":
            if val.__class__ is str:
                out.append(_esc(val))
                return
        break
    out.append(dumps_exact(plain_value(v), True))


# _members and _elements inline the commonest values (S, canonical N, M, L, BOOL, NULL:
# one key, so the first tag is the only one) and hand the rest to _value.


def _members(m: dict, keys: list, out: list, depth: int) -> None:
    """Append the object of m's typed values under ``keys`` (sorted)."""
    if depth > _MAX_DEPTH:
        raise _Deep
    if not keys:
        out.append("{}")
        return
    append = out.append
    cached = _KEYS.get
    first = len(out)
    for k in keys:
        x = m[k]
        append(cached(k) or _key(k))
        if len(x) == 1:
            if "N" in x:
                s = x["N"]
                if s.__class__ is str and (s.isdigit() and s.isascii() and s[0] != "0" or _canonical(s)):
                    append(s)
                    continue
            elif "S" in x:
                s = x["S"]
                if s.__class__ is str:
                    append(_esc(s))
                    continue
            elif "M" in x:
                s = x["M"]
                if s.__class__ is dict:
                    _members(s, sorted(s), out, depth + 1)
                    continue
            elif "L" in x:
                s = x["L"]
                if s.__class__ is list:
                    _elements(s, out, depth + 1)
                    continue
            elif "BOOL" in x:
                s = x["BOOL"]
                if s is True or s is False:
                    append("true" if s else "false")
                    continue
            elif "NULL" in x:
                append("null")
                continue
            elif "NS" in x:  # _value's integer case
                s = x["NS"]
                if s.__class__ is list:
                    try:
                        ints = sorted([int(n, 10) for n in s])
                    except (TypeError, ValueError):
                        pass
                    else:
                        append("[" + ",".join(map(str, ints)) + "]")
                        continue
        _value(x, out, depth)
    out[first] = "{" + out[first][1:]  # the first key's comma opens the object
    append("}")


def _elements(items: list, out: list, depth: int) -> None:
    """Append the array of typed values ``items``.

    Its fast cases repeat _members' on purpose: a helper shared by both would cost a call per
    value, the cost this module exists to remove (benchmarks/transform.py, catch-all)."""
    if depth > _MAX_DEPTH:
        raise _Deep
    if not items:
        out.append("[]")
        return
    append = out.append
    first = len(out)
    for x in items:
        append(",")
        if len(x) == 1:
            if "N" in x:
                s = x["N"]
                if s.__class__ is str and (s.isdigit() and s.isascii() and s[0] != "0" or _canonical(s)):
                    append(s)
                    continue
            elif "S" in x:
                s = x["S"]
                if s.__class__ is str:
                    append(_esc(s))
                    continue
            elif "M" in x:
                s = x["M"]
                if s.__class__ is dict:
                    _members(s, sorted(s), out, depth + 1)
                    continue
            elif "BOOL" in x:
                s = x["BOOL"]
                if s is True or s is False:
                    append("true" if s else "false")
                    continue
        _value(x, out, depth)
    out[first] = "["
    append("]")


def members_text(m: dict, skip: "frozenset | set" = frozenset()) -> str:
    """``dumps_exact({k: plain_value(x) for k, x in m.items() if k not in skip}, True)``."""
    out: list = []
    try:
        # filterfalse: C-level, and cheaper than the set m.keys() - skip would build
        _members(m, sorted(filterfalse(skip.__contains__, m)) if skip else sorted(m), out, 1)
    except Exception:  # noqa: BLE001 - the reference returns the same text or raises what it raises
        return dumps_exact({k: plain_value(x) for k, x in m.items() if k not in skip}, True)
    return "".join(out)


def elements_text(items: list) -> str:
    """``dumps_exact([plain_value(x) for x in items], True)``."""
    out: list = []
    try:
        _elements(items, out, 1)
    except Exception:  # noqa: BLE001 - as in members_text
        return dumps_exact([plain_value(x) for x in items], True)
    return "".join(out)
