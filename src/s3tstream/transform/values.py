"""DynamoDB typed values: the exact scalar parsers and the "plain value" form.

``RecordError`` (a value or record that cannot be carried, with ``.reason``), the
checked parsers each column converter is built from (numbers, times, base64,
sets), and ``plain_value``: a typed value as plain JSON-able data (S -> string,
N -> exact number, B -> base64 string, BOOL, NULL -> None, M -> object, L -> array,
SS/NS/BS -> sorted arrays), see mapping.py.

Standard library only.
"""

from __future__ import annotations

import binascii
import struct
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Context, Decimal, InvalidOperation
from typing import Any, Callable


__all__ = ["RecordError", "plain_value"]


class RecordError(ValueError):
    """A change record or item cannot be turned into a row; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason



# --------------------------------------------------------------------------- scalars
_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_FLOAT32_MAX = 3.4028234663852886e38
_pack_f = struct.Struct("<f")
_CTX = Context(prec=400, traps=[InvalidOperation])
_EPOCH = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_US = timedelta(microseconds=1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MIN_US = (datetime(1, 1, 1) - _EPOCH) // _EPOCH.resolution
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999) - _EPOCH) // _EPOCH.resolution
_US_PER_DAY = 86_400_000_000
_MILLIS_THRESHOLD = 10**11  # abs(N) >= 1e11: epoch milliseconds, else seconds


def _str(val: Any, what: str) -> str:
    if val.__class__ is not str:
        raise RecordError(f"{what} value must be a JSON string, got {type(val).__name__}")
    return val


def _number(n: Any) -> Decimal:
    """A DynamoDB N text as an exact, finite Decimal."""
    if n.__class__ is not str:
        raise RecordError(f"N value must be a JSON string, got {type(n).__name__}")
    try:
        d = Decimal(n)
    except InvalidOperation:
        raise RecordError(f"not a number: {n[:60]!r}") from None
    if not d.is_finite():
        raise RecordError(f"not a finite number: {n[:60]!r}")
    return d


def _integer(n: Any, lo: int, hi: int, type_name: str) -> int:
    if n.__class__ is str:
        try:
            i = int(n)
        except ValueError:
            d = _number(n)
            if d.adjusted() > 40:
                raise RecordError(f"{n[:60]} is out of range for {type_name}") from None
            if d != d.to_integral_value():
                raise RecordError(f"{n[:60]} is not an integer (column type {type_name})") from None
            i = int(d)
        if lo <= i <= hi:
            return i
        raise RecordError(f"{n[:60]} is out of range for {type_name}")
    raise RecordError(f"N value must be a JSON string, got {type(n).__name__}")


def _double(n: Any) -> float:
    if n.__class__ is not str:
        raise RecordError(f"N value must be a JSON string, got {type(n).__name__}")
    try:
        f = float(n)
    except ValueError:
        raise RecordError(f"not a number: {n[:60]!r}") from None
    if f - f != 0.0:  # inf or nan
        raise RecordError(f"{n[:60]} is out of range for double")
    return f


def _float32(n: Any) -> float:
    f = _double(n)
    if abs(f) > _FLOAT32_MAX:
        raise RecordError(f"{n[:60]} is out of range for float")
    return _pack_f.unpack(_pack_f.pack(f))[0]


def _epoch_micros(n: Any) -> int:
    """Epoch seconds (or milliseconds when abs >= 1e11) as an N -> microseconds."""
    if n.__class__ is not str:
        raise RecordError(f"N value must be a JSON string, got {type(n).__name__}")
    try:
        i = int(n)
        us = i * 1000 if abs(i) >= _MILLIS_THRESHOLD else i * 1_000_000
    except ValueError:
        d = _number(n)
        if d.adjusted() > 30:
            raise RecordError(f"{n[:60]} is out of range for a timestamp") from None
        scale = 1000 if abs(d) >= _MILLIS_THRESHOLD else 1_000_000
        us = int(_CTX.multiply(d, scale).to_integral_value(rounding=ROUND_FLOOR))
    if _MIN_US <= us <= _MAX_US:
        return us
    raise RecordError(f"{n[:60]} is out of range for a timestamp (years 1..9999)")


def _iso_micros(s: Any) -> int:
    s = _str(s, "S")
    try:
        dt = datetime.fromisoformat(s)
        us = (dt - (_EPOCH if dt.tzinfo is None else _EPOCH_UTC)) // _ONE_US
    except (ValueError, OverflowError):
        raise RecordError(f"not an ISO-8601 timestamp: {s[:60]!r}") from None
    if _MIN_US <= us <= _MAX_US:
        return us
    raise RecordError(f"{s[:60]!r} is out of range for a timestamp (years 1..9999)")


def _check_b64(s: Any) -> str:
    s = _str(s, "B")
    try:
        binascii.a2b_base64(s, strict_mode=True)
    except (binascii.Error, ValueError):
        raise RecordError("B value is not valid base64") from None
    return s


def _number_text(n: Any) -> str:
    _number(n)
    return n


def _plain_number(n: Any) -> Any:
    """N as a plain JSON number: int, float when its repr is the text, else exact Decimal."""
    if n.__class__ is not str:
        raise RecordError(f"N value must be a JSON string, got {type(n).__name__}")
    if "." not in n:  # int() never parses a ".": spare the exception
        try:
            return int(n)
        except ValueError:
            pass
    try:
        f = float(n)
        if repr(f) == n:
            return f
    except ValueError:
        pass
    return _number(n)


# --------------------------------------------------------------------------- sets
def _list(vals: Any, tag: str) -> list:
    if vals.__class__ is not list:
        raise RecordError(f"{tag} value must be a list")
    return vals


def _sorted_strings(vals: Any, tag: str = "SS") -> list:
    try:
        out = sorted(_list(vals, tag))
    except TypeError:  # mixed types do not sort
        raise RecordError(f"{tag} elements must be strings") from None
    # Sorted without error means mutually comparable: all str iff the first one is.
    if out and (out[0].__class__ is not str or out[-1].__class__ is not str):
        raise RecordError(f"{tag} elements must be strings")
    return out


def _sorted_bs(vals: Any) -> list:
    for v in _list(vals, "BS"):
        _check_b64(v)
    return sorted(vals, key=binascii.a2b_base64)


# --------------------------------------------------------------------------- plain values
def _p_s(val: Any) -> str:
    if val.__class__ is str:
        return val
    return _str(val, "S")


def _p_m(val: Any) -> dict:
    if val.__class__ is not dict:
        raise RecordError("M value must be an object")
    return {k: plain_value(x) for k, x in val.items()}


def _p_l(val: Any) -> list:
    return [plain_value(x) for x in _list(val, "L")]


def _p_bool(val: Any) -> bool:
    if val is True or val is False:
        return val
    raise RecordError("BOOL value must be true or false")


def _p_ns(val: Any) -> list:
    # int, float and Decimal compare exactly with each other, so this is numeric order.
    vals = _list(val, "NS")
    try:
        return sorted([int(x, 10) for x in vals])  # all integers (an explicit base refuses non-text)
    except (TypeError, ValueError):
        return sorted([_plain_number(x) for x in vals])


_PLAIN: dict[str, Callable[[Any], Any]] = {
    "S": _p_s,
    "N": _plain_number,
    "M": _p_m,
    "L": _p_l,
    "BOOL": _p_bool,
    "NULL": lambda _: None,
    "SS": _sorted_strings,
    "NS": _p_ns,
    "B": _check_b64,
    "BS": _sorted_bs,
}
_plain_get = _PLAIN.get


def plain_value(v: Any) -> Any:
    """DynamoDB typed value -> plain JSON-able value (see module docstring).

    RecordError for a bad value; input that is not typed JSON at all (a list where
    a ``{"S": ...}`` belongs) may raise TypeError and the like (map_item wraps them).
    """
    for tag in v:
        val = v[tag]
        # The common cases inline; everything else (and every error) via _PLAIN.
        if val.__class__ is str:
            if tag == "S":
                return val
            if tag == "N":
                if "." not in val:
                    try:
                        return int(val)
                    except ValueError:
                        pass
                else:
                    try:
                        f = float(val)
                    except ValueError:
                        pass
                    else:
                        if repr(f) == val:
                            return f
                return _plain_number(val)  # the rest, and every error
        elif tag == "M":
            if val.__class__ is dict:
                return {k: plain_value(x) for k, x in val.items()}
        elif tag == "L":
            if val.__class__ is list:
                return [plain_value(x) for x in val]
        elif tag == "BOOL" and (val is True or val is False):
            return val
        fn = _plain_get(tag)
        if fn is None:
            raise RecordError(f"unknown DynamoDB type {str(tag)[:20]!r}")
        return fn(val)
    raise RecordError("empty DynamoDB attribute value")
