"""Injected faults: the next N calls of an operation fail with a given AWS error; or, in
random mode, a seeded fraction of all calls fails with one of a list of transient errors.

Random mode (``RandomFaults``): each call is hashed with the seed, its (service, operation)
and how many calls of that operation came before it, so one seed fails the same calls of a
run whatever the threads' interleaving. Only requests whose User-Agent contains
``user_agent`` are touched (default "s3tstream/": the product's own clients), so the test's
own clients and the sandbox's data plane are not. A fault answers before the request reaches
the backend (the call had no effect), like a throttle or a 5xx from AWS's front end.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
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


# Transient errors as each service answers them; "services" limits an error to those services.
DEFAULT_RANDOM_ERRORS: list[dict[str, Any]] = [
    {"code": "ThrottlingException", "status": 400, "message": "Rate exceeded",
     "services": ["dynamodb", "kinesis", "firehose", "lambda", "logs", "glue", "lakeformation", "s3tables", "athena"]},
    {"code": "Throttling", "status": 400, "message": "Rate exceeded", "services": ["iam", "sts"]},
    {"code": "SlowDown", "status": 503, "message": "Please reduce your request rate.", "services": ["s3"]},
    {"code": "ProvisionedThroughputExceededException", "status": 400, "message": "Rate of requests exceeds the allowed throughput.",
     "services": ["dynamodb", "kinesis"]},
    {"code": "LimitExceededException", "status": 400, "message": "Rate exceeded for the account.",
     "services": ["kinesis", "firehose", "iam"]},
    {"code": "InternalFailure", "status": 500, "message": "The request processing has failed because of an unknown error."},
    {"code": "ServiceUnavailable", "status": 503, "message": "The service is unavailable. Please try again later."},
]


@dataclasses.dataclass
class RandomFaults:
    rate: float
    seed: int = 0
    errors: list[dict[str, Any]] = dataclasses.field(default_factory=lambda: list(DEFAULT_RANDOM_ERRORS))
    user_agent: str | None = "s3tstream/"
    services: list[str] | None = None  # None: every service
    exclude: list[str] = dataclasses.field(default_factory=list)  # "service:Operation"
    seen: int = 0
    injected: int = 0
    by_code: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    by_operation: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    _counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        if not 0 <= self.rate <= 1:
            raise ValueError("rate must be between 0 and 1")
        for e in self.errors:
            if "code" not in e:
                raise ValueError("every error needs a code")

    def _applicable(self, service: str) -> list[dict[str, Any]]:
        return [e for e in self.errors if not e.get("services") or service in e["services"]]

    def decide(self, service: str, operation: str, user_agent: str = "") -> Fault | None:
        """Called with the registry's lock held."""
        if self.user_agent and self.user_agent not in (user_agent or ""):
            return None
        if self.services is not None and service not in self.services:
            return None
        name = f"{service}:{operation}"
        if name in self.exclude:
            return None
        errors = self._applicable(service)
        if not errors:
            return None
        self.seen += 1
        n = self._counts[name]
        self._counts[name] += 1
        digest = hashlib.sha256(f"{self.seed}:{name}:{n}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.rate:
            return None
        err = errors[int.from_bytes(digest[8:12], "big") % len(errors)]
        self.injected += 1
        self.by_code[err["code"]] += 1
        self.by_operation[name] += 1
        return Fault(service, operation, str(err["code"]), str(err.get("message", "")), int(err.get("status", 400)), 0)

    def to_json(self) -> dict[str, Any]:
        return {"rate": self.rate, "seed": self.seed, "errors": self.errors, "user_agent": self.user_agent,
                "services": self.services, "exclude": self.exclude, "seen": self.seen, "injected": self.injected,
                "by_code": dict(self.by_code), "by_operation": dict(self.by_operation)}


class FaultRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random: RandomFaults | None = None

    def add(self, fault: Fault) -> Fault:
        if fault.remaining < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, service: str, operation: str, user_agent: str = "") -> Fault | None:
        """Consume one use of the oldest fault for (service, operation); else, in random
        mode, maybe fail this call."""
        with self._lock:
            for fault in self._faults:
                if fault.service == service and fault.operation == operation:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
            if self._random is not None:
                return self._random.decide(service, operation, user_agent)
        return None

    def pending(self) -> bool:
        return bool(self._faults) or self._random is not None

    def set_random(self, random: RandomFaults | None) -> dict[str, Any] | None:
        """Start (or with None stop) random mode; returns the previous mode's counts."""
        with self._lock:
            old, self._random = self._random, random
        return old.to_json() if old is not None else None

    def random_status(self) -> dict[str, Any] | None:
        with self._lock:
            return self._random.to_json() if self._random is not None else None

    def clear(self) -> int:
        """Remove every fault (and stop random mode); returns how many queued faults there were."""
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
            self._random = None
        return n

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]
