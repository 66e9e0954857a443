"""The backfill's read rate: a token bucket charged with what each Scan page cost."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from s3tstream.config.model import Config


class TokenBucket:
    """Tokens refill at ``rate`` a second up to ``burst``; a caller waits until the bucket is not
    in debt, reads, then is charged what the read cost (capacity units or items). rate <= 0:
    no limit."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.burst
        self.last = clock()
        self.lock = threading.Lock()
        self.waited = 0.0

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def wait(self, stop: threading.Event | None = None) -> None:
        if self.rate <= 0:
            return
        while True:
            with self.lock:
                self._refill()
                if self.tokens >= 0:
                    return
                delay = -self.tokens / self.rate
            if stop is not None and stop.is_set():
                return
            delay = min(delay, 1.0)
            self.waited += delay
            self.sleep(delay)

    def charge(self, n: float) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            self._refill()
            self.tokens -= n



def read_rate(cfg: "Config", desc: dict[str, Any]) -> tuple[float, str, str]:
    """(rate, unit, text): RCU/s on a provisioned table, items/s on an on-demand one (0: none)."""
    billing = desc.get("BillingModeSummary", {}).get("BillingMode")
    rcu = desc.get("ProvisionedThroughput", {}).get("ReadCapacityUnits") or 0
    if billing != "PAY_PER_REQUEST" and rcu > 0:
        rate = cfg.backfill.max_read_share * rcu
        return rate, "rcu", f"{rate:g} read capacity units/s ({cfg.backfill.max_read_share:g} of {rcu})"
    ips = cfg.backfill.items_per_second
    return float(ips), "items", (f"{ips} items/s" if ips else "none")

