"""What a step's resources look like: observe / create / update / delete.

A resource class is registered by its `kind`, so `down` can delete a recorded resource
from its record alone, even after the config stopped naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config, Names
    from s3tstream.state import Resource as Record, StateStore


@dataclass
class Observed:
    exists: bool
    id: str | None = None
    # Differences from the config that update() can fix in place.
    drift: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Tagged as this stack's (True), someone else's or untagged (False), cannot tell (None).
    owned: bool | None = None
    # Exists but cannot be made to match the config (a different key schema, say).
    conflict: str | None = None


@dataclass
class Ctx:
    cfg: "Config"
    aws: "Aws"
    state: "StateStore"
    progress: Callable[[str], None] = lambda msg: None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> "Names":
        return self.cfg.names

    @property
    def poll(self) -> float:
        return self.cfg.stack.poll_interval

    @property
    def timeout(self) -> float:
        return self.cfg.stack.wait_timeout

    def wait_for(self, probe: Callable[[], Any], what: str, *, gone: bool = False) -> None:
        """Wait until probe() stops raising not-found (gone=False) or starts (gone=True).

        probe() is a describe call; a string it returns is shown as the status."""
        from botocore.exceptions import ClientError

        from s3tstream.aws.client import is_not_found, wait_until

        def check() -> tuple[bool, str]:
            try:
                status = probe()
            except ClientError as e:
                if is_not_found(e):
                    return gone, "deleted" if gone else "not visible yet"
                raise
            return not gone, status if isinstance(status, str) else ("deleting" if gone else "visible")

        wait_until(check, f"{what} deletion" if gone else what, timeout=self.timeout, interval=self.poll,
                   progress=self.progress)

    def scoped(self, cfg: "Config") -> "Ctx":
        """This context for one table: cfg scoped to it (config/tables.py), the rest shared."""
        return replace(self, cfg=cfg)

    def tags(self) -> dict[str, str]:
        """The stack tag plus the user's tags; the stack tag is how `down` knows what is ours."""
        return {**self.cfg.stack.tags, **self.names.stack_tag()}


KINDS: dict[str, type["ResourceSpec"]] = {}


class ResourceSpec:
    kind: ClassVar[str]
    # Kept by `down --keep-data` (the source table and the lake).
    data: ClassVar[bool] = False
    # An existing one that this stack did not create is adopted and never deleted.
    adoptable: ClassVar[bool] = False
    # One per table of the config (built with a ctx scoped to it): a record of this kind the
    # config no longer names is a removed table's (provision/engine.py: removed()).
    per_table: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "kind" in cls.__dict__:
            KINDS[cls.kind] = cls

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def table(self) -> str | None:
        """The lake table this resource serves (per-table kinds), None for the stack's shared ones."""
        return self.ctx.cfg.names.table if self.per_table else None

    def observe(self) -> Observed:
        raise NotImplementedError

    def create(self) -> dict[str, Any]:
        """Create and wait until usable; return outputs (with 'id' when there is one)."""
        raise NotImplementedError

    def update(self, observed: Observed) -> dict[str, Any]:
        """Fix the drift observe() reported; return new outputs."""
        return {}

    @classmethod
    def delete(cls, ctx: Ctx, record: "Record") -> str | None:
        """Delete by record and wait until gone; "already gone" is success.

        Return a reason instead to keep the resource (and its record) on purpose."""
        raise NotImplementedError
