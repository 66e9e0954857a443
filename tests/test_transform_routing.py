"""The transform's settings for many tables (transform/routing.py)."""

from __future__ import annotations

import hashlib
import json

import pytest

from s3tstream.transform import routing
from s3tstream.transform.settings import ENV_SETTINGS, ENV_SETTINGS_Z, SettingsError


def table_doc(table: str, ncols: int = 1, mode: str = "upsert") -> dict:
    cols = [{"name": "pk", "type": "string", "required": True}]
    # names as varied as real ones (zlib would squeeze a repeated pattern into nothing)
    cols += [{"name": "c_" + hashlib.sha256(f"{table}{i}".encode()).hexdigest()[:12], "type": "decimal(12,2)",
              "source": hashlib.sha256(f"{i}{table}".encode()).hexdigest()[:10]} for i in range(ncols - 1)]
    return {"database": "shop", "table": table, "mode": mode, "keys": ["pk"], "columns": cols}


def test_one_table_document_maps_every_record():
    r = routing.Routes.from_dict(table_doc("orders"))
    assert r.for_table("anything").table == "orders"
    env, files = routing.deploy(table_doc("orders"))
    assert list(env) == [ENV_SETTINGS] and files == {}
    # the environment a one-table stack had before many tables is the one it has now
    assert json.loads(env[ENV_SETTINGS])["table"] == "orders"


def test_routes_by_source_table():
    doc = {"routes": {"Orders": table_doc("orders"), "events": table_doc("events", mode="changelog")}}
    r = routing.Routes.from_dict(doc)
    assert r.for_table("Orders").table == "orders"
    assert r.for_table("events").mode == "changelog"
    with pytest.raises(SettingsError, match="table 'nope', which this pipeline does not carry"):
        r.for_table("nope")
    assert routing.Routes.from_dict(r.to_dict()).to_dict() == r.to_dict()


@pytest.mark.parametrize("doc,words", [
    ({"routes": {}}, "must map each DynamoDB table"),
    ({"routes": {"a": table_doc("t"), "b": table_doc("t")}}, "'a' and 'b' both write shop.t"),
    ({"routes": {"a": {**table_doc("t"), "mode": "x"}}}, "routes['a']: settings.mode"),
    ({"routes": {"a": table_doc("t")}, "extra": 1}, "unknown settings keys beside routes"),
])
def test_bad_routes(doc, words):
    with pytest.raises(SettingsError, match=words.replace("[", r"\[").replace("]", r"\]")):
        routing.Routes.from_dict(doc)


def test_sizes_pick_inline_compressed_or_packaged(tmp_path):
    small = {"routes": {"a": table_doc("a"), "b": table_doc("b")}}
    env, files = routing.deploy(small)
    assert list(env) == [ENV_SETTINGS] and not files
    medium = {"routes": {f"t{i}": table_doc(f"t{i}", 8) for i in range(4)}}
    env, files = routing.deploy(medium)
    assert list(env) == [ENV_SETTINGS_Z] and not files
    assert routing.load_routes(env).for_table("t3").table == "t3"
    # 20 tables of 20 columns: far over Lambda's 4 KB of environment, so it travels in the zip
    big = {"routes": {f"t{i}": table_doc(f"t{i}", 20) for i in range(20)}}
    env, files = routing.deploy(big)
    assert list(env) == [routing.ENV_SETTINGS_FILE] and list(files) == [routing.PACKAGED_PATH]
    assert sum(len(k) + len(v) for k, v in env.items()) < 100
    (tmp_path / routing.PACKAGED_NAME).write_bytes(files[routing.PACKAGED_PATH])
    r = routing.load_routes(env, base_dir=str(tmp_path))
    assert r.for_table("t19").table == "t19" and len(r.for_table("t19").columns) == 20
    # another document is another variable (the digest), so the cache never serves a stale one
    bigger = {"routes": {**big["routes"], "t20": table_doc("t20", 20)}}
    assert routing.deploy(bigger)[0] != env


def test_packaged_file_is_only_the_package_own(tmp_path):
    with pytest.raises(SettingsError, match="must name settings.json"):
        routing.load_routes({routing.ENV_SETTINGS_FILE: "../../etc/passwd"}, base_dir=str(tmp_path))
    with pytest.raises(SettingsError, match="the package has none"):
        routing.load_routes({routing.ENV_SETTINGS_FILE: "settings.json#x"}, base_dir=str(tmp_path))
    with pytest.raises(SettingsError, match="none of"):
        routing.load_routes({})
    with pytest.raises(SettingsError, match="both set"):
        routing.load_routes({routing.ENV_SETTINGS_FILE: "settings.json", ENV_SETTINGS: "{}"})


def test_packaged_settings_are_in_the_deterministic_zip():
    import io
    import zipfile

    from s3tstream.provision import lambda_zip

    big = {"routes": {f"t{i}": table_doc(f"t{i}", 20) for i in range(20)}}
    _, files = routing.deploy(big)
    pkg = lambda_zip.package(tuple(files.items()))
    assert routing.PACKAGED_PATH in pkg.names
    assert pkg.sha256 != lambda_zip.package().sha256
    assert lambda_zip.package(tuple(files.items())).data == lambda_zip.build(extra=tuple(files.items())).data
    with zipfile.ZipFile(io.BytesIO(pkg.data)) as zf:
        assert json.loads(zf.read(routing.PACKAGED_PATH))["routes"]["t0"]["table"] == "t0"


def _record(rid: str, table: str, pk: str, event: str = "INSERT") -> dict:
    import base64

    change = {"eventID": f"e{rid}", "eventName": event, "eventSource": "aws:dynamodb", "tableName": table,
              "dynamodb": {"ApproximateCreationDateTime": 1700000000000, "Keys": {"pk": {"S": pk}},
                           "NewImage": {"pk": {"S": pk}}, "OldImage": {"pk": {"S": pk}}}}
    return {"recordId": rid, "data": base64.b64encode(json.dumps(change).encode()).decode()}


def test_handler_routes_each_record_to_its_table(monkeypatch, capsys):
    from s3tstream.transform import records

    doc = {"routes": {"Orders": table_doc("orders"), "events": table_doc("events", mode="changelog")}}
    env, _ = routing.deploy(doc)
    monkeypatch.setattr(records.os, "environ", env)
    out = records.handler({"records": [
        _record("1", "Orders", "a"), _record("2", "events", "b"), _record("3", "Orders", "c", "REMOVE"),
        _record("4", "customers", "d"), _record("5", "events", "e", "REMOVE"),
    ]})["records"]
    assert [r["recordId"] for r in out] == ["1", "2", "3", "4", "5"]
    meta = {r["recordId"]: r.get("metadata", {}).get("otfMetadata") for r in out}
    assert (meta["1"]["destinationTableName"], meta["1"]["operation"]) == ("orders", "update")
    assert (meta["2"]["destinationTableName"], meta["2"]["operation"]) == ("events", "insert")
    assert (meta["3"]["destinationTableName"], meta["3"]["operation"]) == ("orders", "delete")
    assert (meta["5"]["destinationTableName"], meta["5"]["operation"]) == ("events", "insert")
    # a table the pipeline does not carry is never written to another table: it fails, named
    assert out[3]["result"] == "ProcessingFailed"
    assert "table 'customers', which this pipeline does not carry" in capsys.readouterr().out


def test_batch_collapse_is_per_table(monkeypatch, capsys):
    """The same key in two tables is two rows; twice in one upsert table, the latest wins."""
    from s3tstream.transform import records

    doc = {"routes": {"Orders": table_doc("orders"), "Carts": table_doc("carts")}}
    monkeypatch.setattr(records.os, "environ", routing.deploy(doc)[0])
    out = records.handler({"records": [
        _record("1", "Orders", "a"), _record("2", "Carts", "a"), _record("3", "Orders", "a", "MODIFY"),
    ]})["records"]
    assert [(r["recordId"], r["result"]) for r in out] == [("1", "Dropped"), ("2", "Ok"), ("3", "Ok")]
    assert out[1]["metadata"]["otfMetadata"]["destinationTableName"] == "carts"
