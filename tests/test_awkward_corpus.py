"""A corpus of awkward items written straight into DynamoDB (boto3 PutItem on the source table,
not through `put-item`) on a partitioned lake table (upsert, bucket(4, pk)) with a catch-all
column, through the real CLI and the sandbox's data plane: every item is in the lake exactly, or
reported by `verify` (by key, with the reason) or `errors` (the failed record, by key) - none is
dropped in silence. The NULL cases are read back from the lake's Parquet files with pyarrow alone.

The corpus: 38-digit and tiny decimals, 1e125 (as a double and as string text; refused by a
decimal(38,0) and a float column), 1e-130, the smallest long, empty strings, binary, lists and
maps, string/number/binary sets, a 32-deep map (declared as string, and undeclared: to the
catch-all), a ~380 KB item of accented text, non-ASCII and dotted attribute names (declared and
undeclared) and a non-ASCII, dotted key, NULL in every column type (nested list<struct>, map,
struct included), undeclared nested fields of struct columns (to the catch-all), dates and
timestamps in years 1 and 9999, a fraction and an out-of-range value for integer columns.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import pyarrow.parquet as pq
import pytest

from s3tstream.sandbox import client as sc

PIPELINE = ("[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"
            "[firehose]\nbuffer_interval_seconds = 0\n")
CATCH_ALL = 'extra_column = "extra"\npartition = ["bucket(4, pk)"]\n'
COLUMNS = ", ".join([
    '{ name = "pk", type = "string", required = true }',
    '{ name = "big", type = "decimal(38,0)" }',
    '{ name = "tiny", type = "decimal(38,38)" }',
    '{ name = "dbl", type = "double" }',
    '{ name = "flt", type = "float" }',
    '{ name = "n", type = "long" }',
    '{ name = "i", type = "int" }',
    '{ name = "ok", type = "boolean" }',
    '{ name = "s", type = "string" }',
    '{ name = "b", type = "binary" }',
    '{ name = "ss", type = "list<string>" }',
    '{ name = "ns", type = "list<long>" }',
    '{ name = "bs", type = "list<binary>" }',
    '{ name = "blobs", type = "struct<raw:binary,more:map<string,binary>,n:long>" }',
    '{ name = "deep", type = "string" }',
    '{ name = "text", type = "string" }',
    '{ name = "prenom", type = "string", source = "prénom" }',
    '{ name = "dotted", type = "string", source = "a.b" }',
    '{ name = "lines", type = "list<struct<sku:string,qty:long>>" }',
    '{ name = "attrs", type = "map<string,string>" }',
    '{ name = "addr", type = "struct<city:string,geo:struct<lat:double>>" }',
    '{ name = "day", type = "date" }',
    '{ name = "at", type = "timestamp" }',
    '{ name = "atz", type = "timestamptz" }',
])
NON_KEY = [c.split('"')[1] for c in COLUMNS.split("}, ")][1:]
SOURCE = {"prenom": "prénom", "dotted": "a.b"}  # column -> attribute, where they differ
ACCENTED = "é" * (190 * 1024)  # 380 KB in UTF-8 (an item's limit is 400 KB)
BIG38 = "99999999999999999999999999999999999999"
TINY = "0.00000000000000000000000000000000000001"


def S(v: str) -> dict: return {"S": v}  # noqa: E704
def N(v: str) -> dict: return {"N": v}  # noqa: E704
def M(v: dict) -> dict: return {"M": v}  # noqa: E704
def L(v: list) -> dict: return {"L": v}  # noqa: E704


NULL = {"NULL": True}


def deep_map(levels: int) -> dict:
    """A map ``levels`` deep (the attribute's value is level 1): DynamoDB's limit is 32."""
    v: dict = {"S": "bottom"}
    for i in range(levels):
        v = M({f"l{levels - i}": v})
    return v


def deep_plain(levels: int) -> Any:
    v: Any = "bottom"
    for i in range(levels):
        v = {f"l{levels - i}": v}
    return v


# key -> the item's attributes (besides pk), in typed DynamoDB JSON
CORPUS: dict[str, dict[str, Any]] = {
    "dec-38": {"big": N(BIG38), "tiny": N(TINY)},
    "dec-38-neg": {"big": N("-" + BIG38), "tiny": N("0.99999999999999999999999999999999999999")},
    "num-1e125-double": {"dbl": N("1E+125"), "n": N("-9223372036854775808")},
    "num-tiny-double": {"dbl": N("1E-130")},
    "num-1e125-string": {"s": N("1E+125")},
    "empty": {"s": S(""), "b": {"B": b""}, "ss": L([]), "attrs": M({}), "lines": L([])},
    "sets": {"ss": {"SS": ["b", "a", "é"]}, "ns": {"NS": ["3", "-1", "2"]}},
    "sets-binary": {"bs": {"BS": [b"\xff", b"\x00"]}},
    "nested-binary": {"blobs": M({"raw": {"B": b"\x00\x01"}, "more": M({"k": {"B": b"\xfe"}, "z": NULL}), "n": N("1")})},
    "deep-32": {"deep": deep_map(32)},
    "deep-32-undeclared": {"tree": deep_map(32)},
    "text-380k": {"text": S(ACCENTED)},
    "names-ñ.é": {"prénom": S("Zoë"), "a.b": S("dotted value"), "ñandú": S("undeclared"), "x.y": N("1")},
    "nulls": {c: NULL for c in [SOURCE.get(c, c) for c in NON_KEY]},
    "absent": {},
    "nested-nulls": {"lines": L([NULL, M({"sku": NULL, "qty": N("1")})]), "attrs": M({"k": NULL}),
                     "addr": M({"city": NULL, "geo": NULL})},
    "undeclared": {"addr": M({"city": S("Oslo"), "floor": N("3"), "geo": M({"lat": N("59.9"), "alt": N("12")}),
                              "été": S("x")}),
                   "lines": L([M({"sku": S("a"), "qty": N("1")}), M({"sku": S("b"), "qty": N("2"), "color": S("red")})])},
    "year-1": {"day": S("0001-01-01"), "at": S("0001-01-01T00:00:00Z"), "atz": S("0001-01-01T00:00:00+00:00")},
    "year-9999": {"day": S("9999-12-31"), "at": S("9999-12-31T23:59:59.999999Z"), "atz": S("9999-12-31T23:59:59.999999Z")},
    # values a column refuses: reported by verify (unmappable) and in the error bucket
    "refused-1e125-decimal": {"big": N("1E+125")},
    "refused-1e125-float": {"flt": N("1E+125")},  # past a float's range (not written as infinity)
    "refused-fraction-long": {"n": N("1.5")},
    "refused-int-range": {"i": N("2147483648")},
}
REFUSED = {k for k in CORPUS if k.startswith("refused-")}

# what the lake's Parquet files must hold, exactly, per key (columns not named: NULL)
EXPECTED: dict[str, dict[str, Any]] = {
    "dec-38": {"big": Decimal(BIG38), "tiny": Decimal(TINY)},
    "dec-38-neg": {"big": Decimal("-" + BIG38), "tiny": Decimal("0.99999999999999999999999999999999999999")},
    "num-1e125-double": {"dbl": 1e125, "n": -9223372036854775808},
    "num-tiny-double": {"dbl": 1e-130},
    "num-1e125-string": {"s": "1E+125"},
    "empty": {"s": "", "b": b"", "ss": [], "attrs": [], "lines": []},
    "sets": {"ss": ["a", "b", "é"], "ns": [-1, 2, 3]},
    "sets-binary": {"bs": [b"\x00", b"\xff"]},
    "nested-binary": {"blobs": {"raw": b"\x00\x01", "more": [("k", b"\xfe"), ("z", None)], "n": 1}},
    "deep-32": {"deep": deep_plain(32)},  # JSON text, compared parsed
    "deep-32-undeclared": {"extra": {"tree": deep_plain(32)}},
    "text-380k": {"text": ACCENTED},
    "names-ñ.é": {"prenom": "Zoë", "dotted": "dotted value", "extra": {"ñandú": "undeclared", "x.y": 1}},
    "nulls": {},
    "absent": {},
    "nested-nulls": {"lines": [None, {"sku": None, "qty": 1}], "attrs": [("k", None)], "addr": {"city": None, "geo": None}},
    "undeclared": {"addr": {"city": "Oslo", "geo": {"lat": 59.9}},
                   "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
                   "extra": {"addr": {"floor": 3, "geo": {"alt": 12}, "été": "x"}, "lines": [None, {"color": "red"}]}},
    "year-1": {"day": date(1, 1, 1), "at": datetime(1, 1, 1), "atz": datetime(1, 1, 1, tzinfo=timezone.utc)},
    "year-9999": {"day": date(9999, 12, 31), "at": datetime(9999, 12, 31, 23, 59, 59, 999999),
                  "atz": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc)},
}
assert set(EXPECTED) | REFUSED == set(CORPUS)


def lake_table(stack):
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config
    from s3tstream.lake.catalog import S3TablesCatalog
    from s3tstream.lake.query import bucket_arn

    cfg = config.load(stack.config_path)
    aws = Aws(cfg)
    return S3TablesCatalog.for_stack(aws, bucket_arn(cfg, aws)).load_table((cfg.names.namespace, cfg.names.table))


def parquet_rows(stack) -> tuple[dict[str, dict[str, Any]], int]:
    """The lake's current rows read from its data files with pyarrow alone (no PyIceberg
    projection: a NULL it turned into [] would not be seen), and how many files hold them."""
    t = lake_table(stack)
    rows: dict[str, dict[str, Any]] = {}
    files = t.scan().plan_files()
    for task in files:
        assert not task.delete_files, "the corpus writes each key once: no deletes expected"
        with t.io.new_input(task.file.file_path).open() as fh:
            for r in pq.read_table(fh).to_pylist():
                assert r["pk"] not in rows, f"{r['pk']} twice in the lake"
                rows[r["pk"]] = r
    return rows, len(files)


def normalise(col: str, v: Any) -> Any:
    if col in ("extra", "deep") and isinstance(v, str):
        return json.loads(v)
    return v


@pytest.fixture(scope="module")
def run(request, sandbox, tmp_path_factory):
    """One partitioned pipeline, the corpus written straight into DynamoDB and drained; then what
    the lake's Parquet files hold, what `verify` and `errors` say, and every failed record."""
    import uuid

    conftest = next(p for p in request.config.pluginmanager.get_plugins() if hasattr(p, "StackEnv"))
    stack = conftest.StackEnv(dir=tmp_path_factory.mktemp("corpus"), endpoint_url=sandbox.endpoint_url,
                              name="t" + uuid.uuid4().hex[:8])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
        try:
            stack.write(extra=CATCH_ALL + PIPELINE, columns=COLUMNS)  # extra starts inside [table], after columns
            stack.cli("up")
            ddb = stack.client("dynamodb")
            for pk, attrs in CORPUS.items():  # straight into DynamoDB: the stream carries them
                ddb.put_item(TableName=stack.name, Item={"pk": S(pk), **attrs})
            assert ddb.scan(TableName=stack.name, Select="COUNT")["Count"] == len(CORPUS)
            sc.firehose_wait_drained(stack.endpoint_url, f"{stack.name}-to-lake", timeout=120)
            rows, files = parquet_rows(stack)
            v = stack.cli("verify", "--settle", "0", "--output", "json", ok=None)
            yield {"stack": stack, "spec": lake_table(stack).spec(), "rows": rows, "files": files,
                   "verify": json.loads(v.stdout), "verify_exit": v.exit_code,
                   "errors": stack.json("errors"), "failed": failed_record_keys(stack)}
        finally:
            conftest.teardown(stack)


def exact_keys(rows: dict[str, dict[str, Any]]) -> tuple[set[str], dict[str, Any]]:
    """Keys whose lake row holds exactly what EXPECTED says, and the differences of the others."""
    exact, wrong = set(), {}
    for pk, want in EXPECTED.items():
        row = rows.get(pk)
        if row is None:
            continue  # not in the lake: must be reported
        got = {c: normalise(c, row[c]) for c in ["pk", *NON_KEY, "extra"]}
        expect = {"pk": pk, **{c: None for c in [*NON_KEY, "extra"]}, **want}
        diff = {c: (repr(got[c])[:80], repr(expect[c])[:80]) for c in expect if got[c] != expect[c]}
        if diff:
            wrong[pk] = diff
        else:
            exact.add(pk)
    return exact, wrong


def verify_reported(doc: dict[str, Any]) -> dict[str, str]:
    """Every key `verify -o json` reports, with why (all of them: none left out of its examples)."""
    counts, ex = doc["counts"], doc["examples"]
    for kind in ("missing", "extra", "differing", "duplicates", "unmappable", "dropped_fields"):
        assert counts[kind] == len(ex[kind]), f"{kind}: more keys than verify lists ({counts[kind]})"
    reported = {e["key"]["pk"]: e["reason"] for e in ex["unmappable"]}
    for kind in ("missing", "extra", "duplicates"):
        reported.update({k["pk"]: kind for k in ex[kind]})
    reported.update({e["key"]["pk"]: f"differing: {e['columns']}" for e in ex["differing"]})
    reported.update({e["key"]["pk"]: f"dropped fields: {e['paths']}" for e in ex["dropped_fields"]})
    return reported


@pytest.mark.sandbox
def test_every_item_is_in_the_lake_exactly_or_reported_by_key(run):
    assert [str(f.transform) for f in run["spec"].fields] == ["bucket[4]"]  # partitioned, as configured
    assert run["files"] >= 2  # bucket(4, pk) spread the keys over partitions
    rows = run["rows"]
    exact, wrong = exact_keys(rows)
    assert not wrong, f"rows in the lake that differ from their items: {wrong}"
    assert not (REFUSED & set(rows)), "a refused item reached the lake"

    doc = run["verify"]
    reported = verify_reported(doc)
    assert doc["counts"]["source_items"] == len(CORPUS)
    assert doc["counts"]["matching"] + len(reported) == len(CORPUS), doc
    assert run["verify_exit"] == 1 and doc["ok"] is False  # something is reported: exit 1

    errs, failed = run["errors"], run["failed"]
    assert errs["unreadable_objects"] == [] and errs["records"] == len(failed) == len(REFUSED)
    assert sum(g["count"] for g in errs["groups"]) == len(failed)
    for g in errs["groups"]:  # one example per error code, by key, with the reason
        assert g["example"]["keys"]["pk"] in failed and g["error_code"] and g["message"]

    # nothing unaccounted: in the lake exactly, or reported by verify or errors
    assert exact | set(reported) | set(failed) == set(CORPUS), (
        f"dropped in silence: {set(CORPUS) - exact - set(reported) - set(failed)}")
    assert exact == set(EXPECTED)  # every item a column accepts arrived exactly
    # each refused item: reported by verify with the column and why, and its record in the error bucket
    unmappable = {e["key"]["pk"]: e["reason"] for e in doc["examples"]["unmappable"]}
    assert set(unmappable) == set(failed) == REFUSED, json.dumps({"verify": reported, "errors": failed}, indent=1)
    assert "column 'big'" in unmappable["refused-1e125-decimal"] and "38 digits" in unmappable["refused-1e125-decimal"]
    assert "column 'flt'" in unmappable["refused-1e125-float"] and "out of range" in unmappable["refused-1e125-float"]
    assert "column 'n'" in unmappable["refused-fraction-long"] and "not an integer" in unmappable["refused-fraction-long"]
    assert "column 'i'" in unmappable["refused-int-range"] and "out of range" in unmappable["refused-int-range"]


@pytest.mark.sandbox
def test_nulls_stay_null_in_the_parquet_files(run):
    """Read with pyarrow alone: NULL in every column type, nested list<struct>, map and struct
    included, is NULL (not [] or {}); empty values stay empty; NULLs inside nested values stay."""
    rows = run["rows"]
    for pk in ("nulls", "absent"):
        assert pk in rows and all(rows[pk][c] is None for c in [*NON_KEY, "extra"]), rows.get(pk)
    nested = rows["nested-nulls"]
    assert nested["lines"] == [None, {"sku": None, "qty": 1}] and nested["attrs"] == [("k", None)]
    assert nested["addr"] == {"city": None, "geo": None}
    empty = rows["empty"]
    assert empty["s"] == "" and empty["b"] == b"" and empty["ss"] == [] and empty["attrs"] == [] and empty["lines"] == []


@pytest.mark.sandbox
def test_verify_reports_only_the_refused_items(run):
    """Every item that arrived exactly is matching: verify reports no false difference (binary
    inside a list, map or struct column is read as base64 text: Trino casts no VARBINARY to JSON)."""
    reported = verify_reported(run["verify"])
    false = {k: why for k, why in reported.items() if k not in REFUSED}
    assert not false, false  # e.g. binary inside list/map/struct columns (sets-binary, nested-binary)
    assert run["verify"]["counts"]["matching"] == len(EXPECTED)


def failed_record_keys(stack) -> dict[str, str]:
    """Every failed record in the error bucket (not only `errors`' one example per code): key -> code."""
    from s3tstream.aws.client import Aws
    from s3tstream.config import model as config
    from s3tstream.data.failed_records import describe, error_location, iter_object, list_objects

    cfg = config.load(stack.config_path)
    aws = Aws(cfg)
    s3 = aws.client("s3")
    bucket, prefix = error_location(cfg, aws)
    out = {}
    for o in list_objects(s3, bucket, prefix):
        for rec in iter_object(s3, bucket, o["Key"]):
            out[describe(rec)["keys"]["pk"]] = rec.error_code
    return out

