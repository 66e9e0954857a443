"""Data: the transform under fuzzing never raises and answers every recordId exactly once;
1,000 keys end to end on the sandbox under inserts, updates, deletes and re-inserts end with
`verify` clean (benchmarks/e2e_10k.py runs the same with 10,000).

tests/test_transform_properties.py already fuzzes one fixed settings document with junk
records; here the *settings* are random too (column types, nesting, required flags, upsert or
changelog, TTL handling, extra column, date format) and the records are well-formed change
records whose values have random, often wrong, DynamoDB types, mixed with junk, through the
Lambda handler (settings read from the environment, inline or compressed)."""

from __future__ import annotations

import base64
import json
import os
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3tstream.transform import ENV_SETTINGS, ENV_SETTINGS_Z, Settings, encode_settings, handler, transform_records

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PRIMITIVES = ["string", "long", "int", "double", "float", "boolean", "date", "timestamp", "timestamptz", "binary",
              "decimal(10,2)", "decimal(38,9)"]
iceberg_types = st.recursive(
    st.sampled_from(PRIMITIVES),
    lambda inner: st.one_of(
        inner.map(lambda t: f"list<{t}>"),
        inner.map(lambda t: f"map<string,{t}>"),
        st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), inner), min_size=1, max_size=3,
                 unique_by=lambda x: x[0]).map(lambda fs: "struct<" + ",".join(f"{n}:{t}" for n, t in fs) + ">"),
    ),
    max_leaves=4,
)


@st.composite
def settings_docs(draw):
    key_types = {"S": "string", "N": draw(st.sampled_from(["long", "int", "decimal(20,0)"])), "B": "binary"}
    pk_kind = draw(st.sampled_from(["S", "N", "B"]))
    cols = [{"name": "pk", "type": key_types[pk_kind], "required": True}]
    keys = ["pk"]
    if draw(st.booleans()):
        cols.append({"name": "sk", "type": draw(st.sampled_from(["string", "long"])), "required": True})
        keys.append("sk")
    n = draw(st.integers(0, 6))
    for i in range(n):
        cols.append({"name": f"c{i}", "type": draw(iceberg_types), "required": draw(st.booleans()),
                     "source": draw(st.sampled_from([f"c{i}", f"Attr{i}", f"a.{i}"]))})
    mode = draw(st.sampled_from(["upsert", "changelog"]))
    doc = {"database": "db", "table": "t", "mode": mode, "keys": keys, "columns": cols,
           "ttl_deletes": draw(st.sampled_from(["delete", "keep"])),
           "date_format": draw(st.sampled_from(["days", "iso"]))}
    if draw(st.booleans()):
        doc["extra_column"] = "extra"
    return doc


scalar_json = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.text(max_size=8),
                        st.floats(allow_nan=False, allow_infinity=False))
# DynamoDB typed values of any type (so a column often gets the wrong one), plus malformed ones.
typed_value = st.recursive(
    st.one_of(
        st.text(max_size=10).map(lambda s: {"S": s}),
        st.one_of(st.integers(-10**40, 10**40).map(str), st.sampled_from(["1e400", "-0", "NaN", "1.5", "x", "", "0.000001"]))
        .map(lambda s: {"N": s}),
        st.booleans().map(lambda b: {"BOOL": b}),
        st.just({"NULL": True}),
        st.binary(max_size=8).map(lambda b: {"B": base64.b64encode(b).decode()}),
        st.sampled_from([{"B": "not base64!"}, {"S": None}, {"N": 5}, {"BOOL": "yes"}, {"Q": "?"}, {}, {"S": "a", "N": "1"},
                         {"S": "2024-02-30"}, {"S": "2024-05-01T12:00:00Z"}, {"N": "1714564800000"}]),
        st.lists(st.text(max_size=4), max_size=3).map(lambda xs: {"SS": xs}),
        st.lists(st.integers(-5, 5).map(str), max_size=3).map(lambda xs: {"NS": xs}),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda xs: {"L": xs}),
        st.dictionaries(st.sampled_from(["a", "b", "c", "d", "x"]), inner, max_size=3).map(lambda d: {"M": d}),
    ),
    max_leaves=6,
)


def good_key(typ: str):
    if typ == "string":
        return st.text(min_size=1, max_size=6).map(lambda s: {"S": s})
    if typ == "binary":
        return st.binary(min_size=1, max_size=6).map(lambda b: {"B": base64.b64encode(b).decode()})
    return st.integers(-(2**31), 2**31 - 1).map(lambda i: {"N": str(i)})


@st.composite
def images(draw, doc):
    img = {}
    for c in doc["columns"]:
        src = c.get("source", c["name"])
        choice = draw(st.sampled_from(["typed", "typed", "absent", "null"]))
        if c["name"] in doc["keys"] and draw(st.integers(0, 9)) < 8:
            img[src] = draw(good_key(c["type"]))  # mostly valid keys, so the Ok path is exercised too
        elif choice == "typed":
            img[src] = draw(typed_value)
        elif choice == "null":
            img[src] = {"NULL": True}
    if draw(st.booleans()):
        img[draw(st.sampled_from(["zz", "other", "c0"]))] = draw(typed_value)
    return img


@st.composite
def change_records(draw, doc):
    kind = draw(st.sampled_from(["INSERT", "MODIFY", "REMOVE", "REMOVE", "junk"]))
    if kind == "junk":
        return draw(st.one_of(st.text(max_size=10), st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()),
                              scalar_json.map(lambda x: base64.b64encode(json.dumps(x).encode()).decode())))
    new, old = draw(images(doc)), draw(images(doc))
    keys = {k: v for k, v in (new if kind != "REMOVE" else old).items() if k in ("pk", "sk")}
    ddb = {"Keys": draw(st.one_of(st.just(keys), typed_value, st.just({})))}
    if kind != "REMOVE" or draw(st.booleans()):
        ddb["NewImage" if kind != "REMOVE" else "OldImage"] = new if kind != "REMOVE" else old
    if kind == "MODIFY" and draw(st.booleans()):
        ddb["OldImage"] = old
    ddb["ApproximateCreationDateTime"] = draw(st.one_of(st.integers(0, 2**53), st.floats(0, 1e13), scalar_json))
    if draw(st.booleans()):
        ddb["ApproximateCreationDateTimePrecision"] = draw(st.sampled_from(["MICROSECOND", "MILLISECOND", "NANO"]))
    change = {"eventID": draw(st.one_of(st.text(max_size=8), st.integers())), "eventName": kind,
              "eventSource": draw(st.sampled_from(["aws:dynamodb"] * 4 + ["s3tstream:backfill", "s3tstream:repair"])),
              "awsRegion": "us-east-1", "tableName": "t", "recordFormat": "application/json", "dynamodb": ddb}
    if kind == "REMOVE" and draw(st.booleans()):
        change["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return base64.b64encode(json.dumps(change).encode()).decode()


@st.composite
def batches(draw):
    doc = draw(settings_docs())
    datas = draw(st.lists(change_records(doc), max_size=12))
    return doc, datas


def _key(doc, rec):
    """The lake key the record maps to, by the transform's own mapping of it alone."""
    alone = transform_records([rec], Settings.from_dict(doc))[0]
    assert alone["result"] == "Ok", alone
    row = json.loads(base64.b64decode(alone["data"]))
    return json.dumps([row[k] for k in doc["keys"]], sort_keys=True)


def _check_output(doc, records, out):
    assert [r["recordId"] for r in out] == [r["recordId"] for r in records]  # each once, in order
    # the keys of the rows sent: upsert keeps the latest change of a key per batch (records.py _collapse)
    ok_keys = {json.dumps([json.loads(base64.b64decode(o["data"]))[k] for k in doc["keys"]], sort_keys=True)
               for o in out if o["result"] == "Ok"}
    ops = {"upsert": {"update", "delete"}, "changelog": {"insert"}}[doc["mode"]]
    for rec, o in zip(records, out):
        assert o["result"] in ("Ok", "Dropped", "ProcessingFailed"), o
        if o["result"] == "Ok":
            row = json.loads(base64.b64decode(o["data"]))
            assert isinstance(row, dict)
            assert all(row.get(k) is not None for k in doc["keys"]), row
            meta = o["metadata"]["otfMetadata"]
            assert meta["operation"] in ops and (meta["destinationDatabaseName"], meta["destinationTableName"]) == ("db", "t")
            if doc["mode"] == "changelog":
                assert {"_op", "_event_time", "_event_id"} <= set(row)
        elif o["result"] == "ProcessingFailed":
            assert o["data"] == (rec["data"] if isinstance(rec["data"], str) else "")  # echoed for the error bucket
        else:  # Dropped: a TTL delete the lake keeps on purpose, or a change another of its key supersedes
            assert doc["mode"] == "upsert"
            if doc.get("ttl_deletes") != "keep":
                assert doc.get("collapse_per_key", True) and _key(doc, rec) in ok_keys, (rec, ok_keys)


@FUZZ
@given(batches())
def test_random_settings_and_records_never_raise_and_answer_each_id_once(batch):
    doc, datas = batch
    s = Settings.from_dict(doc)
    records = [{"recordId": f"49{i:03d}", "approximateArrivalTimestamp": 1, "data": d} for i, d in enumerate(datas)]
    out = transform_records(records, s)
    _check_output(doc, records, out)
    assert transform_records(records, s) == out  # a pure function of its input


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batches(), st.booleans())
def test_the_handler_with_settings_from_the_environment(batch, pad):
    doc, datas = batch
    if pad:  # a settings document too big to stay inline: the compressed variable
        doc = {**doc, "columns": doc["columns"] + [{"name": f"pad_{i:03d}_" + "x" * 40, "type": "string"} for i in range(60)]}
    env = encode_settings(doc)
    assert (ENV_SETTINGS_Z in env) == pad
    records = [{"recordId": f"r{i}", "data": d} for i, d in enumerate(datas)]
    with mock.patch.dict(os.environ, env):
        for name in (ENV_SETTINGS, ENV_SETTINGS_Z):
            if name not in env:
                os.environ.pop(name, None)
        out = handler({"invocationId": "x", "deliveryStreamArn": "arn", "region": "us-east-1", "records": records})["records"]
    _check_output(doc, records, out)


def test_a_large_batch_and_a_large_record():
    doc = {"database": "db", "table": "t", "mode": "upsert", "keys": ["pk"],
           "columns": [{"name": "pk", "type": "string", "required": True}, {"name": "body", "type": "string"}]}
    s = Settings.from_dict(doc)

    def rec(i, body):
        change = {"eventName": "INSERT", "eventSource": "aws:dynamodb", "eventID": str(i),
                  "dynamodb": {"Keys": {"pk": {"S": f"k{i}"}}, "NewImage": {"pk": {"S": f"k{i}"}, "body": {"S": body}},
                               "ApproximateCreationDateTime": 1}}
        return {"recordId": f"id{i}", "data": base64.b64encode(json.dumps(change).encode()).decode()}

    records = [rec(i, "x" * 50) for i in range(2000)] + [rec(2000, "é" * 400_000)] + [{"recordId": "bad", "data": None}]
    out = transform_records(records, s)
    _check_output(doc, records, out)
    assert [o["result"] for o in out].count("Ok") == 2001 and out[-1]["result"] == "ProcessingFailed"
    assert json.loads(base64.b64decode(out[2000]["data"]))["body"] == "é" * 400_000


@pytest.mark.parametrize("envelope", [{}, {"records": None}, {"records": "x"}, {"records": [{"data": "x"}]}])
def test_a_bad_envelope_raises_so_firehose_retries_the_batch(envelope):
    """Only an envelope without records (or a record without its id) fails the invocation:
    Firehose then retries the batch and finally sends it to the error bucket."""
    env = encode_settings({"database": "db", "table": "t", "mode": "upsert", "keys": ["pk"],
                           "columns": [{"name": "pk", "type": "string", "required": True}]})
    with mock.patch.dict(os.environ, env), pytest.raises((KeyError, ValueError, TypeError)):
        handler(envelope)


# ------------------------------------------------------------------ end to end
@pytest.mark.sandbox
def test_1000_keys_end_to_end_verify_clean(sandbox, tmp_path, monkeypatch):
    import time
    import uuid

    from tests.support import e2e

    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
    name = "e" + uuid.uuid4().hex[:8]
    t0 = time.monotonic()
    try:
        res = e2e.run(sandbox.endpoint_url, tmp_path, name, 1000, cli=e2e.in_process_cli)
    finally:
        e2e.in_process_cli(tmp_path / "s3tstream.toml", "down", "--yes", "--purge-errors")
    print(f"\n{res.summary()} in {time.monotonic() - t0:.1f}s "
          + ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items()))
    assert res.ok, json.dumps(res.verify, indent=1)[:3000]
    c = res.verify["counts"]
    assert c["missing"] == c["extra"] == c["differing"] == c["duplicates"] == c["unmappable"] == 0
    assert c["source_items"] == c["lake_rows"] == c["matching"] == res.expected_rows
    assert res.updates >= 300 and res.deletes == 200 and res.reinserts == 50


def test_the_fuzz_oracle_accepts_a_change_its_key_supersedes_and_nothing_else():
    """Found by the flake hunt (3 of 20 runs): two changes of one key in a batch, upsert mode, TTL
    deletes applied; the collapse returns the older as Dropped, which the oracle must accept, and
    a Dropped record with no later change of its key must still fail it."""
    doc = {"database": "db", "table": "t", "mode": "upsert", "keys": ["pk"], "ttl_deletes": "delete",
           "columns": [{"name": "pk", "type": "string", "required": True}, {"name": "c0", "type": "string"}]}

    def rec(i, pk, c0):
        change = {"eventName": "INSERT", "eventSource": "aws:dynamodb", "eventID": str(i),
                  "dynamodb": {"Keys": {"pk": {"S": pk}}, "NewImage": {"pk": {"S": pk}, "c0": {"S": c0}},
                               "ApproximateCreationDateTime": i}}
        return {"recordId": f"49{i:03d}", "data": base64.b64encode(json.dumps(change).encode()).decode()}

    records = [rec(0, "0", "old"), rec(1, "0", "new"), rec(2, "1", "x")]
    out = transform_records(records, Settings.from_dict(doc))
    assert [o["result"] for o in out] == ["Dropped", "Ok", "Ok"]
    _check_output(doc, records, out)
    forged = [dict(out[0]), dict(out[1]), {"recordId": out[2]["recordId"], "result": "Dropped", "data": records[2]["data"]}]
    with pytest.raises(AssertionError):
        _check_output(doc, records, forged)
