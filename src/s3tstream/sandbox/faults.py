"""Injected faults: the next N calls of an operation fail with a given AWS error."""

from __future__ import annotations

import dataclasses
import itertools
import threading
from typing import Any

_ids = itertools.count(1)


@dataclasses.dataclass
class Fault:
    service: str  # botocore service name ("firehose", "dynamodb", ...)
    operation: str  # botocore operation name ("CreateDeliveryStream", ...)
    code: str
    message: str
    status: int = 400
    remaining: int = 1
    id: int = dataclasses.field(default_factory=lambda: next(_ids))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, service: str, operation: str) -> Fault | None:
        """Consume one use of the oldest fault for (service, operation)."""
        with self._lock:
            for fault in self._faults:
                if fault.service == service and fault.operation == operation:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def pending(self) -> bool:
        return bool(self._faults)

    def clear(self) -> int:
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
        return n

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]
