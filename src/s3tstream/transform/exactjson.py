"""Exact JSON text: ``dumps_exact`` writes Decimals as their exact number tokens.

Compact (no spaces), UTF-8 text (not ASCII-escaped), optionally with sorted keys,
using CPython's C encoder built once.  Used for the rows the transform sends and
for the JSON texts of plain values (catch-all column, maps kept as strings).

Standard library only.
"""

from __future__ import annotations

import json
import os
import threading
from decimal import Decimal
from typing import Any, Callable

__all__ = ["decimal_token", "dumps_exact", "dumps_no_decimal"]

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


def decimal_token(d: Decimal) -> str:
    """The exact JSON number token of a finite Decimal (no exponent)."""
    token = str(d)  # the same text as format(d, "f") unless it has an exponent, and faster
    return token if "E" not in token else format(d, "f")


def _json_default(o: Any) -> Any:
    if isinstance(o, Decimal):
        _tls.count += 1
        return _OPEN + decimal_token(o) + _CLOSE
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _no_default(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _make_encoder(sort_keys: bool, default: Callable[[Any], Any] = _json_default) -> Callable[[Any], str]:
    enc = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys, default=default,
        check_circular=False, allow_nan=False,
    )
    # CPython's C encoder, built once (json.dumps builds one per call).  Any surprise
    # (another interpreter, a changed signature) falls back to the public API.
    try:
        c_enc = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
            None, default, json.encoder.encode_basestring, None, ":", ",",
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
# dumps_exact without the Decimal bookkeeping, for values known to hold none: a Decimal
# raises TypeError (as anything else json cannot write) instead of being written.
dumps_no_decimal = _make_encoder(False, _no_default)


def _slow_dumps(obj: Any, sort_keys: bool) -> str:
    if obj is None or obj is True or obj is False or isinstance(obj, (str, int, float)):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, Decimal):
        return decimal_token(obj)
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

