"""Settings: validation and the S3T_SETTINGS / S3T_SETTINGS_Z environment contract."""

import base64
import json
import zlib

import pytest

from s3tstream.transform import (
    ENV_SETTINGS,
    ENV_SETTINGS_Z,
    Settings,
    SettingsError,
    encode_settings,
    load_settings,
)
from s3tstream.transform.types import parse_type

SMALL = {
    "database": "shop",
    "table": "orders",
    "mode": "upsert",
    "keys": ["pk", "sk"],
    "columns": [
        {"name": "pk", "type": "string", "required": True, "source": "PK"},
        {"name": "sk", "type": "long", "required": True},
        {"name": "total", "type": "decimal(12,2)"},
    ],
}


def big_settings(n_columns: int = 120) -> dict:
    cols = [{"name": "pk", "type": "string", "required": True}]
    cols += [
        {"name": f"column_{i:03d}", "type": "struct<alpha:string,beta:list<decimal(10,2)>>",
         "source": f"AttributeNumber{i}"}
        for i in range(n_columns)
    ]
    return {"database": "shop", "table": "orders", "mode": "changelog", "keys": ["pk"],
            "columns": cols, "extra_column": "extra", "ttl_deletes": "keep"}


def test_small_settings_are_inline_json_and_round_trip():
    env = encode_settings(SMALL)
    assert list(env) == [ENV_SETTINGS]
    loaded = load_settings(env)
    assert loaded == Settings.from_dict(SMALL)
    assert loaded.columns[0].source == "PK"
    assert loaded.columns[1].source == "sk"  # defaults to the name
    assert loaded.columns[2].type == parse_type("decimal(12,2)")
    assert loaded.ttl_deletes == "delete" and loaded.extra_column is None
    assert json.loads(env[ENV_SETTINGS])["columns"][1]["required"] is True


def test_large_settings_use_the_zlib_form_and_round_trip():
    doc = big_settings()
    assert len(json.dumps(doc)) > 3000
    env = encode_settings(doc)
    assert list(env) == [ENV_SETTINGS_Z]
    assert len(env[ENV_SETTINGS_Z]) < 3800  # fits Lambda's 4 KB with room for the key
    text = zlib.decompress(base64.b64decode(env[ENV_SETTINGS_Z])).decode()
    assert json.loads(text) == Settings.from_dict(doc).to_dict()
    loaded = load_settings(env)
    assert loaded == Settings.from_dict(doc)
    assert loaded.mode == "changelog" and loaded.ttl_deletes == "keep"
    assert len(loaded.columns) == 121


def test_too_large_settings_are_refused():
    with pytest.raises(SettingsError, match="too large"):
        encode_settings(big_settings(2000))


def test_load_settings_caches_per_value():
    env = encode_settings(SMALL)
    assert load_settings(dict(env)) is load_settings(dict(env))
    other = encode_settings({**SMALL, "table": "other"})
    assert load_settings(other).table == "other"


def test_load_settings_errors():
    with pytest.raises(SettingsError, match="neither"):
        load_settings({})
    env = {**encode_settings(SMALL), ENV_SETTINGS_Z: "eJw="}
    with pytest.raises(SettingsError, match="both"):
        load_settings(env)
    with pytest.raises(SettingsError, match="base64"):
        load_settings({ENV_SETTINGS_Z: "not base64!"})
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_settings({ENV_SETTINGS: "{nope"})


def mutate(**changes):
    doc = json.loads(json.dumps(SMALL))
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "doc, fragment",
    [
        (mutate(mode="merge"), "settings.mode"),
        (mutate(database="Shop"), "settings.database"),
        (mutate(table=""), "settings.table"),
        (mutate(ttl_deletes="maybe"), "ttl_deletes"),
        (mutate(date_format="unix"), "date_format"),
        (mutate(collapse_per_key="yes"), "collapse_per_key"),
        (mutate(unknown=1), "unknown settings keys"),
        (mutate(keys=[]), "settings.keys"),
        (mutate(keys=["pk", "sk", "total"]), "settings.keys"),
        (mutate(keys=["nope"]), "key column 'nope'"),
        (mutate(columns=[]), "non-empty list"),
        (mutate(columns=[{"name": "pk", "type": "strin"}]), "column 'pk'"),
        (mutate(columns=[{"name": "Pk", "type": "string"}]), "must match"),
        (mutate(columns=[{"name": "pk", "type": "string"}, {"name": "pk", "type": "int"}]),
         "duplicate column"),
        (mutate(columns=[{"name": "pk", "type": "string", "required": "yes"}]), "required"),
        (mutate(columns=[{"name": "pk", "type": "string", "src": "x"}]), "unknown keys"),
        (mutate(extra_column="total"), "must have type string"),
        (mutate(extra_column="pk"), "cannot be a key"),
        (mutate(mode="changelog", columns=SMALL["columns"] + [{"name": "_op", "type": "string"}]),
         "reserved"),
        ([], "JSON object"),
    ],
)
def test_invalid_settings(doc, fragment):
    with pytest.raises(SettingsError) as info:
        encode_settings(doc)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)
