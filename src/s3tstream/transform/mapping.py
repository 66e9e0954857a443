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
             attributes of the map that are not fields are ignored.
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
when there are none) and are dropped otherwise.

Standard library only.
"""

from __future__ import annotations

import binascii
import json
import os
import struct
import threading
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_FLOOR, Context, Decimal, InvalidOperation
from typing import Any, Callable

from . import types as T
from .settings import Settings

__all__ = ["RecordError", "dumps_exact", "map_item", "keys_row", "plain_value"]


class RecordError(ValueError):
    """A change record or item cannot be turned into a row; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- JSON output
# json cannot emit a Decimal verbatim, so a Decimal is written as the string
# "<open><token><close>" and the quotes and markers are stripped afterwards.  The
# markers are random per process; if the output holds more markers than Decimals were
# written (a string value that happens to contain one), a slow exact encoder is used
# instead, so the output is always exact.

_OPEN = "S3T" + os.urandom(8).hex() + "<"
_CLOSE = ">" + os.urandom(8).hex() + "S3T"
_OPEN_Q = '"' + _OPEN
_CLOSE_Q = _CLOSE + '"'
_tls = threading.local()


def _decimal_token(d: Decimal) -> str:
    return format(d, "f")


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        _tls.count += 1
        return _OPEN + _decimal_token(o) + _CLOSE
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _make_encoder(sort_keys: bool) -> Callable[[Any], str]:
    enc = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, default=_json_default,
        check_circular=False, allow_nan=False,
    )
    # CPython's C encoder, built once (json.dumps builds one per call).  Any surprise
    # (another interpreter, a changed signature) falls back to the public API.
    try:
        c_enc = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, _json_default, json.encoder.encode_basestring, None, ":", ",",
            sort_keys, False, False,
        )
        join = "".join

        def encode(obj: Any) -> str:
            return join(c_enc(obj, 0))

        probe = {"b": [1, 2.5, "\u00e9", None, True], "a": {"x": "y"}}
        if encode(probe) != enc.encode(probe):
            raise ValueError("C encoder disagrees")
        return encode
    except Exception:  # pragma: no cover - depends on the interpreter
        return enc.encode


_encode_plain = _make_encoder(False)
_encode_sorted = _make_encoder(True)


def _slow_dumps(obj: Any, sort_keys: bool) -> str:
    if obj is None or obj is True or obj is False or isinstance(obj, (str, int, float)):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, Decimal):
        return _decimal_token(obj)
    if isinstance(obj, dict):
        items = sorted(obj.items()) if sort_keys else obj.items()
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + _slow_dumps(v, sort_keys) for k, v in items
        ) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(_slow_dumps(v, sort_keys) for v in obj) + "]"
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps_exact(obj: Any, sort_keys: bool = False) -> str:
    """Compact JSON (UTF-8 text, not ASCII-escaped) with Decimals as exact number tokens."""
    tls = _tls
    tls.count = 0
    out = (_encode_sorted if sort_keys else _encode_plain)(obj)
    n = tls.count
    if n:
        # Each Decimal is '"<open>token<close>"'.  Exactly n openings means none came
        # from a string value (whose quotes would be escaped but whose text is kept);
        # each part then starts with a token ([-0-9.]) followed by its closing marker.
        parts = out.split(_OPEN_Q)
        if len(parts) != n + 1:
            return _slow_dumps(obj, sort_keys)
        close = _CLOSE_Q
        for i in range(1, n + 1):
            token, sep, rest = parts[i].partition(close)
            if not sep:
                return _slow_dumps(obj, sort_keys)
            parts[i] = token + rest
        out = "".join(parts)
    return out


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
    return sorted([_plain_number(x) for x in _list(val, "NS")])


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
                try:
                    return int(val)
                except ValueError:
                    return _plain_number(val)
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


def _json_text(tag: str, val: Any) -> str:
    """JSON text (sorted keys, exact numbers) of the plain form of a typed value."""
    fn = _plain_get(tag)
    if fn is None:
        raise RecordError(f"unknown DynamoDB type {str(tag)[:20]!r}")
    return dumps_exact(fn(val), sort_keys=True)


# --------------------------------------------------------------------------- converters
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
                # Maps and lists kept as JSON text: common enough to skip the dispatch.
                m = v.get("M")
                if m.__class__ is dict:
                    return dumps_exact({k: plain_value(x) for k, x in m.items()}, True)
                m = v.get("L")
                if m.__class__ is list:
                    return dumps_exact([plain_value(x) for x in m], True)
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

        def convert_map(v: dict) -> Any:
            val = v.get("M")
            if val.__class__ is dict:
                return {k: value_conv(x) for k, x in val.items()}
            return slow(v)

        return convert_map, None

    if isinstance(t, T.StructType):
        fields = tuple((f.name, str(f.type), _compile(f.type, date_format)[0]) for f in t.fields)
        return _generate_struct(name, fields), None

    raise TypeError(f"not an Iceberg type: {t!r}")  # pragma: no cover


_INLINE_RANGES = {"int": _INT_RANGE, "long": _LONG_RANGE}


def _inline(i: int, type_name: str) -> list[str]:
    """Statements setting x{i} from v{i} (a typed value or None) for the usual case.

    The common primitives are converted in place; anything else calls c{i}.  On bad
    input the statements may raise anything (or _Slow): the generated function's
    caller then redoes the work with the converters, which explain the problem.
    """
    v, x, c = f"v{i}", f"x{i}", f"c{i}"
    if type_name == "string":
        return [f"{x} = None if {v} is None else {v}.get('S')",
                f"if {x}.__class__ is not str and {v} is not None: {x} = {c}({v})"]
    if type_name == "boolean":
        return [f"{x} = None if {v} is None else {v}.get('BOOL')",
                f"if {x} is not True and {x} is not False and {v} is not None: {x} = {c}({v})"]
    if type_name in _INLINE_RANGES or type_name == "double":
        if type_name == "double":
            parse, check = "float", f"{x} - {x} != 0.0"  # inf or nan
        else:
            lo, hi = _INLINE_RANGES[type_name]
            parse, check = "int", f"not {lo} <= {x} <= {hi}"
        return [f"if {v} is None: {x} = None",
                "else:",
                f"    {x} = {v}.get('N')",
                f"    if {x}.__class__ is str:",
                f"        {x} = {parse}({x})",
                f"        if {check}: raise _Slow",
                f"    else: {x} = {c}({v})"]
    return [f"{x} = None if {v} is None else {c}({v})"]


def _generate_struct(type_name: str, fields: tuple) -> Converter:
    """Straight-line converter for one struct type, falling back to a loop on trouble."""

    def struct_m(val: Any) -> dict:
        if val.__class__ is not dict:
            raise RecordError("M value must be an object")
        out = {}
        for fname, _ftype, fconv in fields:
            x = val.get(fname)
            out[fname] = None if x is None else fconv(x)
        return out

    ns: dict[str, Any] = {"_slow": _dispatch(type_name, {"M": struct_m}), "_loop": struct_m,
                          "_Slow": _Slow}
    body = ["def convert_struct(v):", "    m = v.get('M')", "    if m.__class__ is not dict:",
            "        return _slow(v)", "    try:", "        get = m.get"]
    items = []
    for i, (fname, ftype, fconv) in enumerate(fields):
        ns[f"c{i}"] = fconv
        body.append(f"        v{i} = get({fname!r})")
        body.extend("        " + line for line in _inline(i, ftype))
        items.append(f"{fname!r}: x{i}")
    body.append("        return {" + ", ".join(items) + "}")
    body += ["    except Exception:", "        return _loop(m)"]
    exec(compile("\n".join(body), f"<s3tstream.transform {type_name[:60]}>", "exec"), ns)  # noqa: S102
    return ns["convert_struct"]


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


# --------------------------------------------------------------------------- rows
class _Plan:
    """Per-settings compiled mapping."""

    def __init__(self, settings: Settings) -> None:
        extra = settings.extra_column
        self.columns = tuple(
            (c.name, c.source, _compile(c.type, settings.date_format)[0], c.required)
            for c in settings.columns
            if c.name != extra
        )
        self.sources = frozenset(c[1] for c in self.columns)
        self.extra = extra
        by_name = {c[0]: c for c in self.columns}
        self.keys = tuple(by_name[k] for k in settings.keys)
        types = tuple(str(c.type) for c in settings.columns if c.name != extra)
        self.fast = _generate_mapper(self.columns, types, extra, self.sources)


def _generate_mapper(columns: tuple, types: tuple, extra: str | None,
                     sources: frozenset) -> Callable[[dict], dict]:
    """Straight-line code for the usual case (no errors): one local per column.

    Any problem (an exception, a missing required value) makes it raise, and
    map_item reruns the generic loop, which reports the column and the reason.
    """
    ns: dict[str, Any] = {"_Slow": _Slow, "_sources": sources, "_dumps": dumps_exact,
                          "_plain": plain_value}
    body = ["def _map(image):", "    get = image.get"]
    items = []
    required = []
    for i, ((name, source, conv, req), type_name) in enumerate(zip(columns, types)):
        ns[f"c{i}"] = conv
        body.append(f"    v{i} = get({source!r})")
        body.extend("    " + line for line in _inline(i, type_name))
        items.append(f"{name!r}: x{i}")
        if req:
            required.append(f"x{i} is None")
    if required:
        body.append("    if " + " or ".join(required) + ":")
        body.append("        raise _Slow")
    body.append("    row = {" + ", ".join(items) + "}")
    if extra is not None:
        body.append("    rest = image.keys() - _sources")
        body.append(f"    row[{extra!r}] = _dumps({{k: _plain(image[k]) for k in rest}}, True) "
                    "if rest else None")
    body.append("    return row")
    exec(compile("\n".join(body), "<s3tstream.transform mapper>", "exec"), ns)  # noqa: S102
    return ns["_map"]


class _Slow(Exception):
    """Internal: leave the generated fast path for the diagnosing loop."""


def plan_for(settings: Settings) -> _Plan:
    plan = settings._plan
    if plan is None:
        plan = _Plan(settings)
        object.__setattr__(settings, "_plan", plan)
    return plan


# Shapes that are not DynamoDB typed JSON surface as one of these inside converters.
_MALFORMED = (AttributeError, TypeError, KeyError, IndexError, ValueError, ArithmeticError,
              RecursionError)


def map_item(image: dict, settings: Settings) -> dict:
    """Map a DynamoDB item in typed JSON (``{"pk": {"S": "a"}, ...}``) to a row.

    Raises RecordError naming the column for a missing required column or a value
    that cannot be converted.  Pure; the same mapping the transform Lambda uses.
    ``settings`` is a Settings (compiled once, then cached on it) or a settings dict
    (validated on every call: build a Settings once for repeated use).
    """
    plan = plan_for(settings if settings.__class__ is Settings else Settings.from_dict(settings))
    if image.__class__ is not dict:
        raise RecordError(f"item image must be a JSON object, got {type(image).__name__}")
    try:
        return plan.fast(image)
    except Exception:  # noqa: BLE001 - diagnose (or rarely succeed) on the slow path
        pass
    return _map_slow(image, plan)


def _map_slow(image: dict, plan: _Plan) -> dict:
    row: dict[str, Any] = {}
    name = None
    try:
        for name, source, conv, required in plan.columns:
            v = image.get(source)
            if v is None:
                if required:
                    raise RecordError(f"required attribute {source!r} is missing")
                row[name] = None
                continue
            x = conv(v)
            if x is None and required:
                raise RecordError(f"required attribute {source!r} is NULL")
            row[name] = x
        extra = plan.extra
        if extra is not None:
            name = extra
            rest = {k: v for k, v in image.items() if k not in plan.sources}
            row[extra] = _json_text("M", rest) if rest else None
    except RecordError as exc:
        raise RecordError(f"column {name!r}: {exc.reason}") from None
    except _MALFORMED as exc:
        raise RecordError(f"column {name!r}: malformed value ({type(exc).__name__}: {exc})") from None
    return row


def keys_row(keys: dict, settings: Settings) -> dict:
    """A row with only the key columns set (from a DynamoDB ``Keys`` object), others None."""
    plan = plan_for(settings if settings.__class__ is Settings else Settings.from_dict(settings))
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
