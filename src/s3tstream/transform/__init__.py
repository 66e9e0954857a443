"""Firehose transform Lambda: DynamoDB change records -> Iceberg rows with otfMetadata.

Lambda handler: ``s3tstream.transform.handler``.  Standard library only, and nothing
else from s3tstream is imported: the deployment zip holds ``s3tstream/__init__.py``
and ``s3tstream/transform/*.py``.

Public API:

* ``handler(event, context)`` - the Firehose data-transformation entry point;
* ``map_item(image, settings) -> dict`` - the item -> row mapping (also used by verify),
  raising ``RecordError`` (``.reason``) for a missing required column or a value
  that cannot be converted;
* ``dropped_paths(settings, item) -> [JSONPath]`` - nested fields of struct columns
  that the row drops (no catch-all column), see ``nested.py``;
* ``encode_settings(settings_dict) -> {env var: value}`` and
  ``load_settings(environ) -> Settings`` - the ``S3T_SETTINGS`` /
  ``S3T_SETTINGS_Z`` environment contract (``SettingsError`` when invalid);
* ``parse_type(text) -> IcebergType`` (``s3tstream.transform.types``).
"""

from .exactjson import dumps_exact
from .mapping import RecordError, dropped_paths, keys_row, map_item
from .records import handler, transform_records
from .settings import (
    ENV_SETTINGS,
    ENV_SETTINGS_Z,
    Column,
    Settings,
    SettingsError,
    encode_settings,
    load_settings,
)
from .types import IcebergType, parse_type
from .values import plain_value

__all__ = [
    "ENV_SETTINGS",
    "ENV_SETTINGS_Z",
    "Column",
    "IcebergType",
    "RecordError",
    "Settings",
    "SettingsError",
    "dropped_paths",
    "dumps_exact",
    "encode_settings",
    "handler",
    "keys_row",
    "load_settings",
    "map_item",
    "parse_type",
    "plain_value",
    "transform_records",
]
