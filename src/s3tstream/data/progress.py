"""Progress callbacks of the data commands (messages go to stderr through the CLI)."""

from __future__ import annotations

import threading
import time
from typing import Callable

Progress = Callable[[str], None]


class Throttle:
    """A progress callback that passes at most one message every ``every`` seconds (``force``:
    this one anyway); thread-safe, for parallel scans."""

    def __init__(self, progress: Progress, every: float = 2.0) -> None:
        self.progress = progress
        self.every = every
        self.last = 0.0
        self.lock = threading.Lock()

    def __call__(self, msg: str, force: bool = False) -> None:
        with self.lock:
            now = time.monotonic()
            if force or now - self.last >= self.every:
                self.last = now
                self.progress(msg)
