"""The sandbox's clock knob: how much faster than AWS the data plane's timers run.

``S3TSTREAM_SANDBOX_TIME_SCALE`` multiplies every data-plane duration taken from a resource's
configuration: a Firehose stream's ``BufferingHints.IntervalInSeconds`` and its
``RetryOptions.DurationInSeconds``. Default ``1/15``: the demo's 15 s buffer flushes after 1 s,
a 300 s retry window lasts 20 s. ``0`` makes every timer expire at once (tests use it, with the
flush/drain control routes, so nothing ever waits); ``1`` is AWS's own timing.

Accepted forms: a float (``0.25``), a fraction (``1/15``) or ``0``. The variable is read at
every use, so a test can change it with ``monkeypatch.setenv`` while a sandbox runs.
Sizes (``SizeInMBs``) are never scaled. Lambda timeouts are not scaled either: a transform
that is too slow should fail here as it would on AWS.
"""

from __future__ import annotations

import os
from fractions import Fraction

ENV = "S3TSTREAM_SANDBOX_TIME_SCALE"
DEFAULT = 1 / 15


def parse(text: str | None) -> float:
    """``"1/15"`` -> 0.0667; ``""``/None -> the default; ValueError for junk or a negative."""
    if text is None or not text.strip():
        return DEFAULT
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{ENV} must be a number or a fraction like 1/15, not {text!r}") from None
    if value < 0:
        raise ValueError(f"{ENV} must not be negative, got {text!r}")
    return value


def factor() -> float:
    """The current scale factor (an invalid value falls back to the default)."""
    try:
        return parse(os.environ.get(ENV))
    except ValueError:
        return DEFAULT


def scaled(seconds: float | int | None, default: float = 0.0) -> float:
    """``seconds`` (an AWS duration from a resource's configuration) in sandbox seconds."""
    base = float(default if seconds is None else seconds)
    return max(0.0, base) * factor()
