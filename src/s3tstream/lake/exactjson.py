"""Exact JSON and CSV text for query results and `--output json` (standard library only, so the
CLI's output boundary can import it without slowing `--help`).

One rendering everywhere: Decimals as exact number tokens (never through float), datetimes and
dates as ISO-8601 (`isoformat()`), bytes as base64, NaN/Infinity as strings (they are not JSON).
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from decimal import Decimal
from typing import Any


def plain(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return str(o)  # NaN/Infinity are not JSON
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    return o


def exact_json(doc: Any, indent: int | None = 2) -> str:
    """JSON with Decimals written as exact number tokens (never through float)."""
    marker = "\u0000dec" + uuid.uuid4().hex
    count = 0

    def default(o: Any) -> Any:
        nonlocal count
        if isinstance(o, Decimal):
            count += 1
            return f"{marker}{o:f}{marker}" if o.is_finite() else str(o)
        return str(o)

    seps = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(plain(doc), indent=indent, default=default, ensure_ascii=False, separators=seps)
    if count:
        # json escapes the NUL as \u0000: strip the quotes and markers around each number
        esc = json.dumps(marker)[1:-1]
        text = re.sub('"' + re.escape(esc) + r"(-?[0-9.]+)" + re.escape(esc) + '"', r"\1", text)
    return text


def csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, (dict, list, tuple)):
        return exact_json(v, indent=None)
    v = plain(v)
    return v if isinstance(v, str) else str(v)
