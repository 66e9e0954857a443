"""One read-only check's outcome, shared by preflight/doctor and the Lake Formation admin check."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"check": self.name, "ok": self.ok, "skipped": self.skipped, "detail": self.detail, "fix": self.fix}
