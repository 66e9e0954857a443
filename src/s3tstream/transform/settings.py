"""Transform settings: the environment-variable contract between provisioning and the Lambda.

Provisioning calls :func:`encode_settings` and puts the returned variables on the
function; the Lambda calls :func:`load_settings` (cached per environment string).

Variables (exactly one is set):

* ``S3T_SETTINGS``   - the settings JSON document, when it is at most 3000 bytes;
* ``S3T_SETTINGS_Z`` - base64(zlib(JSON)) when the JSON is larger (Lambda allows 4 KB
  of environment variables in total).

Document (keys not listed are refused)::

    {"database": "ns", "table": "name",
     "mode": "upsert" | "changelog",
     "keys": ["pk_col", "sk_col"?],            # column names, 1 or 2
     "columns": [{"name": "pk_col", "type": "string", "required": true,
                  "source": "pk"}, ...],        # type: Iceberg type string;
                                                # source: DynamoDB attribute (default name)
     "extra_column": null | "colname",          # catch-all JSON string column
     "ttl_deletes": "delete" | "keep",          # default "delete"
     "date_format": "days" | "iso",             # default "days", see mapping.py
     "collapse_per_key": true | false}          # default true, see records.py (upsert only)

Standard library only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from .types import IcebergType, Primitive, is_valid_name, parse_type

__all__ = [
    "CHANGELOG_COLUMNS",
    "ENV_SETTINGS",
    "ENV_SETTINGS_Z",
    "Column",
    "Settings",
    "SettingsError",
    "encode_settings",
    "load_settings",
]

ENV_SETTINGS = "S3T_SETTINGS"
ENV_SETTINGS_Z = "S3T_SETTINGS_Z"
INLINE_LIMIT = 3000  # bytes of JSON kept inline; larger documents are compressed
COMPRESSED_LIMIT = 3800  # Lambda: 4 KB for all variables, keys included

MODES = ("upsert", "changelog")
TTL_DELETES = ("delete", "keep")
DATE_FORMATS = ("days", "iso")
# Extra columns every changelog row carries.
CHANGELOG_COLUMNS = {"_op": "string", "_event_time": "timestamptz", "_event_id": "string"}

_NAMESPACE_RE = re.compile(r"[a-z0-9](?:[a-z0-9_]{0,253}[a-z0-9])?\Z")
_KNOWN_KEYS = frozenset(
    {"database", "table", "mode", "keys", "columns", "extra_column", "ttl_deletes", "date_format",
     "collapse_per_key"}
)
_COLUMN_KEYS = frozenset({"name", "type", "required", "source"})


class SettingsError(ValueError):
    """The settings document or its environment encoding is invalid."""


@dataclass(frozen=True)
class Column:
    name: str
    type: IcebergType
    required: bool = False
    source: str = ""  # DynamoDB attribute name; "" means "same as name"

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": str(self.type),
            "required": self.required,
            "source": self.source,
        }


@dataclass(frozen=True)
class Settings:
    database: str
    table: str
    mode: str
    keys: tuple[str, ...]
    columns: tuple[Column, ...]
    extra_column: str | None = None
    ttl_deletes: str = "delete"
    date_format: str = "days"
    # Upsert: each batch keeps only the latest change per key (the rest are Dropped).
    # False only to measure what the collapse buys (benchmarks/chaos.py).
    collapse_per_key: bool = True
    # Compiled converters (mapping.py), attached lazily; not part of equality.
    _plan: Any = field(default=None, init=False, repr=False, compare=False, hash=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "Settings":
        """Validate a settings document and build Settings (SettingsError when invalid)."""
        if not isinstance(doc, Mapping):
            raise SettingsError(f"settings must be a JSON object, got {type(doc).__name__}")
        unknown = set(doc) - _KNOWN_KEYS
        if unknown:
            raise SettingsError(f"unknown settings keys: {sorted(unknown)}")
        for key in ("database", "table"):
            value = doc.get(key)
            if not isinstance(value, str) or not _NAMESPACE_RE.match(value):
                raise SettingsError(
                    f"settings.{key} must be 1-255 chars of [a-z0-9_] starting and ending "
                    f"with a letter or digit, got {value!r}"
                )
        mode = doc.get("mode")
        if mode not in MODES:
            raise SettingsError(f"settings.mode must be one of {MODES}, got {mode!r}")
        ttl = doc.get("ttl_deletes", "delete")
        if ttl not in TTL_DELETES:
            raise SettingsError(f"settings.ttl_deletes must be one of {TTL_DELETES}, got {ttl!r}")
        date_format = doc.get("date_format", "days")
        if date_format not in DATE_FORMATS:
            raise SettingsError(
                f"settings.date_format must be one of {DATE_FORMATS}, got {date_format!r}"
            )

        collapse = doc.get("collapse_per_key", True)
        if not isinstance(collapse, bool):
            raise SettingsError(f"settings.collapse_per_key must be true or false, got {collapse!r}")

        raw_columns = doc.get("columns")
        if not isinstance(raw_columns, list) or not raw_columns:
            raise SettingsError("settings.columns must be a non-empty list")
        columns: list[Column] = []
        names: set[str] = set()
        for i, rc in enumerate(raw_columns):
            if not isinstance(rc, Mapping):
                raise SettingsError(f"settings.columns[{i}] must be an object")
            unknown = set(rc) - _COLUMN_KEYS
            if unknown:
                raise SettingsError(f"settings.columns[{i}]: unknown keys {sorted(unknown)}")
            name = rc.get("name")
            if not is_valid_name(name):
                raise SettingsError(
                    f"settings.columns[{i}].name must match [a-z_][a-z0-9_]*, got {name!r}"
                )
            if name in names:
                raise SettingsError(f"duplicate column name {name!r}")
            names.add(name)
            try:
                ctype = parse_type(rc.get("type"))
            except ValueError as exc:
                raise SettingsError(f"column {name!r}: {exc}") from None
            required = rc.get("required", False)
            if not isinstance(required, bool):
                raise SettingsError(f"column {name!r}: required must be true or false")
            source = rc.get("source", name)
            if source is None:
                source = name
            if not isinstance(source, str) or not source:
                raise SettingsError(f"column {name!r}: source must be a non-empty string")
            columns.append(Column(name, ctype, required, source))

        raw_keys = doc.get("keys")
        if (
            not isinstance(raw_keys, list)
            or not 1 <= len(raw_keys) <= 2
            or len(set(map(str, raw_keys))) != len(raw_keys)
        ):
            raise SettingsError(
                "settings.keys must list the partition key column and optionally the sort key column"
            )
        for k in raw_keys:
            if k not in names:
                raise SettingsError(f"key column {k!r} is not among the columns")

        extra = doc.get("extra_column")
        if extra is not None:
            if not is_valid_name(extra):
                raise SettingsError(f"settings.extra_column must match [a-z_][a-z0-9_]*, got {extra!r}")
            for c in columns:
                if c.name == extra and c.type != Primitive("string"):
                    raise SettingsError(f"extra column {extra!r} must have type string, not {c.type}")
            if extra in raw_keys:
                raise SettingsError(f"extra column {extra!r} cannot be a key column")

        if mode == "changelog":
            taken = names | ({extra} if extra else set())
            clash = taken & set(CHANGELOG_COLUMNS)
            if clash:
                raise SettingsError(f"column names {sorted(clash)} are reserved in changelog mode")

        return cls(
            database=doc["database"],
            table=doc["table"],
            mode=mode,
            keys=tuple(raw_keys),
            columns=tuple(columns),
            extra_column=extra,
            ttl_deletes=ttl,
            date_format=date_format,
            collapse_per_key=collapse,
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical settings document (defaults filled in, types canonical)."""
        return {
            "database": self.database,
            "table": self.table,
            "mode": self.mode,
            "keys": list(self.keys),
            "columns": [c.to_dict() for c in self.columns],
            "extra_column": self.extra_column,
            "ttl_deletes": self.ttl_deletes,
            "date_format": self.date_format,
            "collapse_per_key": self.collapse_per_key,
        }


def encode_settings(settings: "Mapping[str, Any] | Settings") -> dict[str, str]:
    """Validate settings and return the Lambda environment variables that carry them."""
    if not isinstance(settings, Settings):
        settings = Settings.from_dict(settings)
    return encode_text(json.dumps(settings.to_dict(), separators=(",", ":")))  # ASCII only


def encode_text(text: str) -> dict[str, str]:
    """The environment variables for a settings document's JSON text (ASCII)."""
    if len(text) <= INLINE_LIMIT:
        return {ENV_SETTINGS: text}
    packed = base64.b64encode(zlib.compress(text.encode("ascii"), 9)).decode("ascii")
    if len(packed) > COMPRESSED_LIMIT:
        raise SettingsError(
            f"settings too large for the Lambda environment: {len(text)} bytes of JSON, "
            f"{len(packed)} compressed (limit {COMPRESSED_LIMIT})"
        )
    return {ENV_SETTINGS_Z: packed}


_CACHE: dict[tuple[str, str], Settings] = {}


def settings_text(environ: Mapping[str, str]) -> tuple[tuple[str, str], str] | None:
    """(cache key, JSON text) of the settings the environment variables carry; None when
    neither is set (routing.py then looks for settings packaged in the zip)."""
    inline = environ.get(ENV_SETTINGS)
    packed = environ.get(ENV_SETTINGS_Z)
    if inline and packed:
        raise SettingsError(f"both {ENV_SETTINGS} and {ENV_SETTINGS_Z} are set; set exactly one")
    if not inline and not packed:
        return None
    if not packed:
        return (ENV_SETTINGS, inline), inline  # type: ignore[return-value]
    try:
        text = zlib.decompress(base64.b64decode(packed, validate=True)).decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as exc:
        raise SettingsError(f"{ENV_SETTINGS_Z} is not base64(zlib(JSON)): {exc}") from None
    return (ENV_SETTINGS_Z, packed), text


def parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SettingsError(f"settings are not valid JSON: {exc}") from None


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Read settings from environment variables (cached per variable value)."""
    found = settings_text(environ)
    if found is None:
        raise SettingsError(f"neither {ENV_SETTINGS} nor {ENV_SETTINGS_Z} is set")
    key, text = found
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    settings = Settings.from_dict(parse_json(text))
    if len(_CACHE) > 8:  # environments change rarely; keep the cache tiny
        _CACHE.clear()
    _CACHE[key] = settings
    return settings
