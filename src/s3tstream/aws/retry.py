"""Retrying what a successful batch call left undone.

botocore's ``standard`` retry mode (aws/client.py) retries a call that failed as a whole
(throttling, 5xx). A batch call that succeeded with some entries not done is the caller's to
retry: PutRecords entries with an ErrorCode, BatchGetItem ``UnprocessedKeys``, BatchWriteItem
``UnprocessedItems``. AWS asks for exponential backoff with jitter for those; this is the one
loop that does it (waiting for a resource to reach a state is aws.client.wait_until).
"""

from __future__ import annotations

import random
import time
from typing import Callable, Generic, TypeVar

E = TypeVar("E")


class Exhausted(Exception, Generic[E]):
    """Entries still undone after ``attempts`` calls; the caller says what that means."""

    def __init__(self, left: list[E], attempts: int) -> None:
        super().__init__(f"{len(left)} entr(y/ies) left undone after {attempts} attempts")
        self.left = left
        self.attempts = attempts


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff (base * 2^(attempt-1), at most ``cap``) with jitter: half to all of it."""
    return min(cap, base * 2 ** (attempt - 1)) * (0.5 + rand() / 2)


def retry_rest(call: Callable[[list[E]], list[E]], pending: list[E], *, max_attempts: int = 8, base_delay: float = 0.05,
               max_delay: float = 5.0, sleep: Callable[[float], None] = time.sleep,
               on_retry: Callable[[int, int, float], None] | None = None) -> None:
    """``call(pending)`` returns the entries it left undone; call again with those, after a
    backoff, until none is left. ``on_retry(left, attempt, delay)`` before each wait. Raises
    Exhausted after ``max_attempts`` calls."""
    attempt = 0
    while pending:
        pending = call(pending)
        if not pending:
            return
        attempt += 1
        if attempt >= max_attempts:
            raise Exhausted(pending, attempt)
        delay = backoff_delay(attempt, base_delay, max_delay)
        if on_retry is not None:
            on_retry(len(pending), attempt, delay)
        sleep(delay)
