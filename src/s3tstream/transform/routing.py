"""Many tables, one transform: which table's settings apply to a change record.

One Kinesis stream carries the change records of every source table of a stack; each record
names its DynamoDB table in ``tableName`` (Kinesis Data Streams for DynamoDB record format; the
tool's backfill and repair records carry it too). The transform maps it with that table's
settings and sends it to that table's lake table (``metadata.otfMetadata.destinationTableName``).

Settings document, one of:

* one table (settings.py's document): every record is mapped with it, whatever its tableName
  (what a stack of one table deploys: unchanged from before many tables);
* ``{"routes": {"<DynamoDB table>": <settings.py document>, ...}}``: a record of a table not
  listed fails (``ProcessingFailed``, naming the table), never goes to another table.

Where the document travels (Lambda allows 4 KB of environment variables in total):
``S3T_SETTINGS`` (inline) or ``S3T_SETTINGS_Z`` (compressed), see settings.py; when even the
compressed form is too large, in the deployment zip as ``s3tstream/transform/settings.json``
with ``S3T_SETTINGS_FILE`` naming it (then a settings change is a code change).

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

from .settings import (
    ENV_SETTINGS,
    ENV_SETTINGS_Z,
    Settings,
    SettingsError,
    encode_settings,
    encode_text,
    parse_json,
    settings_text,
)

__all__ = ["ENV_SETTINGS_FILE", "PACKAGED_PATH", "Routes", "deploy", "load_routes"]

ENV_SETTINGS_FILE = "S3T_SETTINGS_FILE"
PACKAGED_NAME = "settings.json"
PACKAGED_PATH = f"s3tstream/transform/{PACKAGED_NAME}"  # its path inside the deployment zip


class Routes:
    """The settings of each table this transform carries, by DynamoDB table name."""

    __slots__ = ("by_table", "default")

    def __init__(self, by_table: Mapping[str, Settings], default: Settings | None = None) -> None:
        self.by_table = dict(by_table)
        self.default = default  # a one-table document: it maps every record

    @classmethod
    def from_dict(cls, doc: Any) -> "Routes":
        if not isinstance(doc, Mapping) or "routes" not in doc:
            return cls({}, Settings.from_dict(doc))
        if set(doc) != {"routes"}:
            raise SettingsError(f"unknown settings keys beside routes: {sorted(set(doc) - {'routes'})}")
        routes = doc["routes"]
        if not isinstance(routes, Mapping) or not routes:
            raise SettingsError("settings.routes must map each DynamoDB table name to its settings")
        by_table: dict[str, Settings] = {}
        targets: dict[tuple[str, str], str] = {}
        for name, sub in routes.items():
            if not isinstance(name, str) or not name:
                raise SettingsError(f"settings.routes: {name!r} is not a DynamoDB table name")
            try:
                s = Settings.from_dict(sub)
            except SettingsError as exc:
                raise SettingsError(f"settings.routes[{name!r}]: {exc}") from None
            target = (s.database, s.table)
            if target in targets:  # two sources into one table would mix their rows
                raise SettingsError(f"settings.routes: {targets[target]!r} and {name!r} both write {s.database}.{s.table}")
            targets[target] = name
            by_table[name] = s
        return cls(by_table)

    def to_dict(self) -> dict[str, Any]:
        if self.default is not None:
            return self.default.to_dict()
        return {"routes": {name: s.to_dict() for name, s in self.by_table.items()}}

    def for_table(self, name: Any) -> Settings:
        """The settings for a record of DynamoDB table `name` (SettingsError when none)."""
        if self.default is not None:
            return self.default
        s = self.by_table.get(name)
        if s is None:
            raise SettingsError(
                f"change record of table {name!r:.80}, which this pipeline does not carry "
                f"(its tables: {', '.join(sorted(self.by_table))})"
            )
        return s


def deploy(doc: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, bytes]]:
    """Validate a settings document (either form) and say how it travels to the Lambda:
    (environment variables, extra files for the deployment zip)."""
    routes = Routes.from_dict(doc)
    text = json.dumps(routes.to_dict(), separators=(",", ":"), sort_keys=True)
    if routes.default is not None:
        return encode_settings(routes.default), {}
    try:
        return encode_text(text), {}
    except SettingsError:
        pass
    # The digest makes the variable change with the document (a cache key, and visible drift).
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()[:16]
    return {ENV_SETTINGS_FILE: f"{PACKAGED_NAME}#{digest}"}, {PACKAGED_PATH: text.encode("ascii")}


_CACHE: dict[tuple[str, str], Routes] = {}


def _packaged_text(value: str, base_dir: str | None) -> str:
    name = value.split("#", 1)[0]
    if name != PACKAGED_NAME:  # only the file the package ships, never a path from outside
        raise SettingsError(f"{ENV_SETTINGS_FILE} must name {PACKAGED_NAME}, got {name!r:.80}")
    path = os.path.join(base_dir or os.path.dirname(os.path.abspath(__file__)), PACKAGED_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise SettingsError(f"{ENV_SETTINGS_FILE} names {PACKAGED_NAME} but the package has none: {exc}") from None


def load_routes(environ: Mapping[str, str], base_dir: str | None = None) -> Routes:
    """The routes the Lambda's environment (or its package) carries; cached per value."""
    found = settings_text(environ)
    packaged = environ.get(ENV_SETTINGS_FILE)
    if found is not None and packaged:
        raise SettingsError(f"{ENV_SETTINGS_FILE} and {ENV_SETTINGS}/{ENV_SETTINGS_Z} are both set; set exactly one")
    if found is None and not packaged:
        raise SettingsError(f"none of {ENV_SETTINGS}, {ENV_SETTINGS_Z}, {ENV_SETTINGS_FILE} is set")
    key = found[0] if found is not None else (ENV_SETTINGS_FILE, f"{base_dir}:{packaged}")
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    text = found[1] if found is not None else _packaged_text(packaged, base_dir)  # type: ignore[arg-type]
    routes = Routes.from_dict(parse_json(text))
    if len(_CACHE) > 8:  # environments change rarely; keep the cache tiny
        _CACHE.clear()
    _CACHE[key] = routes
    return routes
