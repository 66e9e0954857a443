"""Nested fields a struct column does not declare: in the catch-all, or counted and reported."""

import base64
import json
import re

from s3tstream.transform import Settings, dropped_paths, map_item, transform_records
from s3tstream.transform.mapping import map_row

COLUMNS = [
    {"name": "pk", "type": "string", "required": True},
    {"name": "address", "type": "struct<city:string,geo:struct<lat:double>>"},
    {"name": "events", "type": "list<struct<kind:string>>"},
    {"name": "by_day", "type": "map<string,struct<n:long>>"},
]


def settings(extra="extra", columns=COLUMNS, mode="upsert"):
    return Settings.from_dict({"database": "db", "table": "t", "mode": mode, "keys": ["pk"],
                               "columns": columns, "extra_column": extra})


ITEM = {
    "pk": {"S": "k"},
    "note": {"S": "top-level, undeclared"},
    "address": {"M": {"city": {"S": "Oslo"}, "floor": {"N": "3"}, "x.y": {"BOOL": True},
                      "geo": {"M": {"lat": {"N": "59.9"}, "alt": {"N": "12.5"}}}}},
    "events": {"L": [{"M": {"kind": {"S": "a"}}}, {"NULL": True},
                     {"M": {"kind": {"S": "b"}, "by": {"SS": ["z", "y"]}}}]},
    "by_day": {"M": {"2024.01.01": {"M": {"n": {"N": "1"}, "why": {"S": "q\"uote"}}},
                     "mon": {"M": {"n": {"N": "2"}}}}},
}
PATHS = ['$.address.floor', '$.address["x.y"]', "$.address.geo.alt", "$.events[2].by",
         '$.by_day["2024.01.01"].why']
COLUMN_VALUES = {
    "pk": "k",
    "address": {"city": "Oslo", "geo": {"lat": 59.9}},
    "events": [{"kind": "a"}, None, {"kind": "b"}],
    "by_day": {"2024.01.01": {"n": 1}, "mon": {"n": 2}},
}


def test_with_a_catch_all_the_undeclared_fields_go_there_in_the_items_shape():
    row, dropped = map_row(ITEM, settings())
    assert dropped == ()
    assert {k: v for k, v in row.items() if k != "extra"} == COLUMN_VALUES
    assert json.loads(row["extra"]) == {
        "note": "top-level, undeclared",
        "address": {"floor": 3, "x.y": True, "geo": {"alt": 12.5}},
        "events": [None, None, {"by": ["y", "z"]}],
        "by_day": {"2024.01.01": {"why": 'q"uote'}},
    }
    assert dropped_paths(settings(), ITEM) == []


def _get(doc, path):
    """A JSONPath of dropped_paths, resolved like Athena's json_extract."""
    assert path.startswith("$")
    for name, quoted, index in re.findall(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[("(?:[^"\\]|\\.)*")\]|\[(\d+)\]',
                                          path[1:]):
        doc = doc[int(index)] if index else doc[name or json.loads(quoted)]
    return doc


def test_the_reported_paths_find_the_fields_in_the_catch_all():
    extra = json.loads(map_item(ITEM, settings())["extra"])
    paths = dropped_paths(settings(extra=None), ITEM)
    assert sorted(paths) == sorted(PATHS)
    assert [_get(extra, p) for p in PATHS] == [3, True, 12.5, ["y", "z"], 'q"uote']


def test_without_a_catch_all_the_row_drops_them_and_says_which():
    row, dropped = map_row(ITEM, settings(extra=None))
    assert row == COLUMN_VALUES
    assert sorted(dropped) == sorted(PATHS)


def test_declared_fields_only_drop_nothing():
    item = {"pk": {"S": "k"}, "address": {"M": {"city": {"S": "Oslo"}}},
            "events": {"L": [{"M": {"kind": {"S": "a"}}}]}}
    assert map_row(item, settings(extra=None))[1] == ()
    assert dropped_paths(settings(extra=None), item) == []
    assert json.loads(map_item({**item, "z": {"N": "1"}}, settings())["extra"]) == {"z": 1}


def test_a_field_another_column_reads_is_not_dropped():
    cols = [{"name": "pk", "type": "string", "required": True},
            {"name": "a", "type": "struct<x:int>", "source": "obj"},
            {"name": "b", "type": "struct<y:int>", "source": "obj"}]
    item = {"pk": {"S": "k"}, "obj": {"M": {"x": {"N": "1"}, "y": {"N": "2"}, "z": {"N": "3"}}}}
    row, dropped = map_row(item, settings(extra=None, columns=cols))
    assert (row["a"], row["b"], dropped) == ({"x": 1}, {"y": 2}, ["$.obj.z"])
    assert json.loads(map_item(item, settings(columns=cols))["extra"]) == {"obj": {"z": 3}}
    whole = cols + [{"name": "c", "type": "string", "source": "obj"}]  # carries it all
    assert map_row(item, settings(extra=None, columns=whole))[1] == ()


def test_odd_items_give_no_paths_and_no_exception():
    s = settings(extra=None)
    for item in ({"pk": {"S": "k"}, "address": {"S": "not a map"}}, {"pk": {"S": "k"}}, [], {"address": []}):
        assert dropped_paths(s, item) == []


def _records(*changes):
    return [{"recordId": f"r{i}", "data": base64.b64encode(json.dumps(c).encode()).decode()}
            for i, c in enumerate(changes)]


def _change(name, image, pk):
    key = {"pk": {"S": pk}}
    ddb = {"Keys": key, ("OldImage" if name == "REMOVE" else "NewImage"): {**image, **key}}
    return {"eventID": "e", "eventName": name, "eventSource": "aws:dynamodb", "dynamodb": ddb}


def test_the_transform_logs_and_counts_what_it_drops(capsys):
    out = transform_records(_records(_change("INSERT", ITEM, "a"), _change("INSERT", {}, "b")),
                            settings(extra=None))
    assert [r["result"] for r in out] == ["Ok", "Ok"]
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warn = [x for x in lines if x["level"] == "WARN"]
    assert len(warn) == 1 and warn[0]["recordId"] == "r0" and sorted(warn[0]["paths"]) == sorted(PATHS)
    assert lines[-1]["msg"] == "batch" and lines[-1]["fields_dropped"] == len(PATHS)


def test_changelog_counts_drops_in_removed_rows_too(capsys):
    out = transform_records(_records(_change("REMOVE", ITEM, "a")), settings(extra=None, mode="changelog"))
    assert out[0]["result"] == "Ok"
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["fields_dropped"] == len(PATHS)


def test_with_a_catch_all_the_transform_sends_them_there(capsys):
    (rec,) = transform_records(_records(_change("INSERT", ITEM, "a")), settings())
    row = json.loads(base64.b64decode(rec["data"]))
    assert json.loads(row["extra"])["address"] == {"floor": 3, "x.y": True, "geo": {"alt": 12.5}}
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["fields_dropped"] == 0
