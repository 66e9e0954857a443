"""Upsert batches keep the latest change per key; the superseded records come back Dropped."""

import base64
import json

import pytest

from s3tstream.transform import Settings, transform_records

T0 = 1_700_000_000_000  # ms


def settings(key_types=("string",), mode="upsert", collapse=None, ttl_deletes="delete"):
    names = ["pk", "sk"][: len(key_types)]
    doc = {"database": "db", "table": "t", "mode": mode, "keys": names, "ttl_deletes": ttl_deletes,
           "columns": [{"name": n, "type": t, "required": True} for n, t in zip(names, key_types)]
           + [{"name": "v", "type": "string"}]}
    if collapse is not None:
        doc["collapse_per_key"] = collapse
    return Settings.from_dict(doc)


def change(name, keys, v=None, when=T0, event_id="e", precision=None, ttl=False):
    ddb = {"Keys": keys}
    if when is not None:
        ddb["ApproximateCreationDateTime"] = when
    if precision:
        ddb["ApproximateCreationDateTimePrecision"] = precision
    if name != "REMOVE":
        ddb["NewImage"] = {**keys, "v": {"S": v}}
    identity = {"type": "Service", "principalId": "dynamodb.amazonaws.com"} if ttl else None
    return {"eventID": event_id, "eventName": name, "eventSource": "aws:dynamodb",
            "userIdentity": identity, "dynamodb": ddb}


def run(s, *changes):
    records = [{"recordId": f"r{i}", "data": c if isinstance(c, str) else
                base64.b64encode(json.dumps(c).encode()).decode()} for i, c in enumerate(changes)]
    out = transform_records(records, s)
    assert [r["recordId"] for r in out] == [r["recordId"] for r in records]  # each once, in order
    return out


def summary(out):
    """result per record: ('Ok', operation, v) / 'Dropped' / 'ProcessingFailed'."""
    got = []
    for r in out:
        if r["result"] == "Ok":
            row = json.loads(base64.b64decode(r["data"]))
            got.append(("Ok", r["metadata"]["otfMetadata"]["operation"], row["v"]))
        else:
            got.append(r["result"])
    return got


A = {"pk": {"S": "a"}}
B = {"pk": {"S": "b"}}


def test_a_duplicated_change_is_sent_once():
    out = run(settings(), change("INSERT", A, "x", event_id="e1"), change("INSERT", A, "x", event_id="e1"))
    assert summary(out) == ["Dropped", ("Ok", "update", "x")]
    # the Dropped record echoes its input
    first = base64.b64encode(json.dumps(change("INSERT", A, "x", event_id="e1")).encode()).decode()
    assert out[0]["data"] == first and "metadata" not in out[0]


def test_modify_then_remove_sends_the_delete():
    out = run(settings(), change("MODIFY", A, "x", when=T0), change("REMOVE", A, when=T0 + 1),
              change("INSERT", B, "y", when=T0))
    assert summary(out) == ["Dropped", ("Ok", "delete", None), ("Ok", "update", "y")]


def test_remove_then_insert_sends_the_insert():
    out = run(settings(), change("REMOVE", A, when=T0), change("INSERT", A, "new", when=T0 + 1))
    assert summary(out) == ["Dropped", ("Ok", "update", "new")]


def test_an_older_change_arriving_late_is_dropped():
    out = run(settings(), change("MODIFY", A, "newer", when=T0 + 5), change("MODIFY", A, "older", when=T0),
              change("REMOVE", A, when=T0 + 2))
    assert summary(out) == [("Ok", "update", "newer"), "Dropped", "Dropped"]


def test_equal_or_missing_times_leave_it_to_arrival_order():
    out = run(settings(), change("MODIFY", A, "1", when=T0), change("MODIFY", A, "2", when=T0),
              change("MODIFY", A, "3", when=T0))
    assert summary(out) == ["Dropped", "Dropped", ("Ok", "update", "3")]
    out = run(settings(), change("MODIFY", A, "1", when=T0 + 9), change("MODIFY", A, "2", when=None))
    assert summary(out) == ["Dropped", ("Ok", "update", "2")]


def test_times_compare_across_precisions():
    # 1 ms after T0 in milliseconds beats T0 + 999 µs in microseconds, whatever the arrival order.
    out = run(settings(), change("MODIFY", A, "ms", when=T0 + 1),
              change("MODIFY", A, "us", when=T0 * 1000 + 999, precision="MICROSECOND"))
    assert summary(out) == [("Ok", "update", "ms"), "Dropped"]


@pytest.mark.parametrize("key_types,k1,k2,other", [
    (("string",), {"pk": {"S": "é"}}, {"pk": {"S": "é"}}, {"pk": {"S": "e"}}),
    (("long",), {"pk": {"N": "10"}}, {"pk": {"N": "1E1"}}, {"pk": {"N": "11"}}),
    (("decimal(10,2)",), {"pk": {"N": "1.5"}}, {"pk": {"N": "1.50"}}, {"pk": {"N": "1.51"}}),
    (("binary",), {"pk": {"B": "AAE="}}, {"pk": {"B": "AAE="}}, {"pk": {"B": "AAI="}}),
    (("string", "long"), {"pk": {"S": "a"}, "sk": {"N": "1"}}, {"pk": {"S": "a"}, "sk": {"N": "1"}},
     {"pk": {"S": "a"}, "sk": {"N": "2"}}),
])
def test_keys_of_every_type(key_types, k1, k2, other):
    s = settings(key_types)
    out = run(s, change("INSERT", k1, "first"), change("INSERT", other, "other"),
              change("MODIFY", k2, "second"))
    assert summary(out) == ["Dropped", ("Ok", "update", "other"), ("Ok", "update", "second")]


def test_composite_keys_differ_in_either_part():
    s = settings(("string", "string"))
    out = run(s, change("INSERT", {"pk": {"S": "a"}, "sk": {"S": "b"}}, "1"),
              change("INSERT", {"pk": {"S": "b"}, "sk": {"S": "a"}}, "2"),
              change("INSERT", {"pk": {"S": "a"}, "sk": {"S": "a"}}, "3"))
    assert summary(out) == [("Ok", "update", "1"), ("Ok", "update", "2"), ("Ok", "update", "3")]


def test_failed_records_take_no_part(capsys):
    bad_value = change("MODIFY", {"pk": {"N": "1.5"}}, "bad")  # not a long: fails alone
    s = settings(("long",))
    one = {"pk": {"N": "1"}}
    out = run(s, change("INSERT", one, "a", when=T0), "!!! not base64 !!!", bad_value,
              change("MODIFY", one, "b", when=T0 + 1), change("MODIFY", one, "late", when=T0 - 1))
    assert summary(out) == ["Dropped", "ProcessingFailed", "ProcessingFailed", ("Ok", "update", "b"),
                            "Dropped"]
    batch = [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]
    assert batch == {"level": "INFO", "msg": "batch", "records": 5, "ok": 1, "dropped": 2,
                     "failed": 2, "superseded": 2, "fields_dropped": 0}


def test_a_kept_ttl_delete_does_not_hide_the_change_before_it():
    s = settings(ttl_deletes="keep")
    out = run(s, change("MODIFY", A, "x", when=T0), change("REMOVE", A, when=T0 + 1, ttl=True))
    assert summary(out) == [("Ok", "update", "x"), "Dropped"]


def test_changelog_keeps_every_change():
    s = settings(mode="changelog")
    out = run(s, change("INSERT", A, "1"), change("INSERT", A, "1"), change("REMOVE", A, when=T0 + 1))
    assert [r["result"] for r in out] == ["Ok"] * 3


def test_the_collapse_can_be_switched_off():
    s = settings(collapse=False)
    assert s.to_dict()["collapse_per_key"] is False
    out = run(s, change("INSERT", A, "1"), change("REMOVE", A, when=T0 + 1))
    assert summary(out) == [("Ok", "update", "1"), ("Ok", "delete", None)]


def test_a_nested_key_value_collapses_by_its_json_text():
    s = settings(("list<string>",))
    k1, k2 = {"pk": {"L": [{"S": "a"}, {"S": "b"}]}}, {"pk": {"L": [{"S": "b"}]}}
    out = run(s, change("INSERT", k1, "1"), change("INSERT", k2, "2"), change("MODIFY", k1, "3", when=T0 + 1))
    assert summary(out) == ["Dropped", ("Ok", "update", "2"), ("Ok", "update", "3")]
