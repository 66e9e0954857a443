"""What a step's resources look like: observe / create / update / delete.

A resource class is registered by its `kind`, so `down` can delete a recorded resource
from its record alone, even after the config stopped naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable, ClassVar

if TYPE_CHECKING:
    from s3tstream.aws.client import Aws
    from s3tstream.config.model import Config, Names
    from s3tstream.state import Resource as Record, StateStore


class Action(StrEnum):
    """What `up` (create .. conflict) or `down` (delete, forget, keep) does to one resource."""

    CREATE = "create"
    UPDATE = "update"
    ADOPT = "adopt"
    CLAIM = "claim"
    NONE = "none"
    CONFLICT = "conflict"
    REPLACE = "replace"
    DELETE = "delete"
    FORGET = "forget"
    KEEP = "keep"


@dataclass(frozen=True)
class Drift:
    """One field that differs from the config. update() reads `field` (never the message), so
    the wording can change freely; the message is rendered from the data by `fmt`."""

    field: str
    old: Any = None
    new: Any = None
    fmt: str = "{field} {old} -> {new}"

    @property
    def message(self) -> str:
        return self.fmt.format(field=self.field, old=self.old, new=self.new)

    def __str__(self) -> str:
        return self.message


@dataclass
class Observed:
    exists: bool
    id: str | None = None
    # Differences from the config that update() can fix in place.
    drift: list[Drift] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Tagged as this stack's (True), someone else's or untagged (False), cannot tell (None).
    owned: bool | None = None
    # Exists but cannot be made to match the config (a different key schema, say).
    conflict: str | None = None
    # Tagged with another s3tstream stack's id: why (up/plan refuse it, exit 2).
    foreign: str | None = None

    def drifted(self, *fields: str) -> bool:
        """Whether any of these fields differs."""
        return any(d.field in fields for d in self.drift)

    def drift_text(self) -> str:
        return "; ".join(d.message for d in self.drift)


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

    @property
    def stack_id(self) -> str | None:
        return self.state.doc.stack_id

    def tags(self) -> dict[str, str]:
        """The user's tags plus the stack's name and id tags: the id is how `down` (and another
        folder's `up`) tell this stack's resources from those of a stack with the same name."""
        out = {**self.cfg.stack.tags, **self.names.stack_tag()}
        if self.stack_id:
            out[STACK_ID_TAG] = self.stack_id
        return out

    def owns(self, tags: Any) -> bool:
        """Live tags name this stack: its id, or (made before stacks had ids) its name and no id."""
        t = tag_map(tags)
        sid = t.get(STACK_ID_TAG)
        if sid is not None:
            return sid == self.stack_id
        return t.get(STACK_TAG) == self.names.stack

    def foreign(self, tags: Any) -> str | None:
        """Why the live tags say the resource is another s3tstream stack's (None: they do not)."""
        t = tag_map(tags)
        sid = t.get(STACK_ID_TAG)
        if sid is None or sid == self.stack_id:
            return None
        return (f"it belongs to another s3tstream stack: tagged {STACK_TAG}={t.get(STACK_TAG, '?')} "
                f"{STACK_ID_TAG}={sid} (this stack's id is {self.stack_id or 'not made yet'})")

    def judge(self, obs: "Observed", tags: Any) -> "Observed":
        """Set obs.owned and obs.foreign from the live tags."""
        obs.owned = self.owns(tags)
        obs.foreign = self.foreign(tags)
        return obs


STACK_TAG = "s3tstream:stack"
STACK_ID_TAG = "s3tstream:stack-id"


def tag_map(tags: Any) -> dict[str, str]:
    """Tags as a dict, from a dict or from AWS's [{"Key": .., "Value": ..}] list."""
    if isinstance(tags, list):
        return {t["Key"]: t["Value"] for t in tags}
    return dict(tags or {})


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
    # Account-wide, used by every stack of the account (the S3 Tables integration, the caller's
    # Lake Formation admin entry): shown apart, kept by `down` unless --include-shared.
    shared: ClassVar[bool] = False
    # A shared kind `down` never removes (its record is only forgotten): the caller's LF admin entry.
    never_removed: ClassVar[bool] = False
    # Carries tags: `down` deletes it only when its live tags name this stack (live_tags()).
    # An untaggable kind names the recorded resource that proves it ours (owner()), or None
    # when its own record is the proof (what it records is exactly what this stack did).
    taggable: ClassVar[bool] = False
    # A stack has one of this kind: a recorded one of another name was renamed in the config, and
    # `plan` shows it replaced. replace_first: `up` removes the old one before creating the new
    # (the streaming destination: the old table must stop feeding the lake); otherwise the old
    # one stays (it holds data) until `down`.
    # A per-table kind is singular only in a config of one table.
    singular: ClassVar[bool] = False
    replace_first: ClassVar[bool] = False

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
    def live_tags(cls, ctx: Ctx, record: "Record") -> dict[str, str] | None:
        """A taggable kind's live tags (None: it is gone)."""
        raise NotImplementedError

    @classmethod
    def add_tags(cls, ctx: Ctx, record: "Record", tags: dict[str, str]) -> None:
        """A taggable kind: add these tags to the live resource (others are kept)."""
        raise NotImplementedError

    @classmethod
    def owner(cls, ctx: Ctx, record: "Record") -> tuple[str, str] | None:
        """An untaggable kind: (kind, name) of the record whose live tags prove it ours."""
        return None

    @classmethod
    def in_use(cls, ctx: Ctx, record: "Record") -> str | None:
        """A shared kind: why it must stay even with --include-shared (None: nothing else uses it)."""
        return "it is shared by the account"

    @classmethod
    def delete(cls, ctx: Ctx, record: "Record") -> str | None:
        """Delete by record and wait until gone; "already gone" is success.

        Return a reason instead to keep the resource (and its record) on purpose."""
        raise NotImplementedError
