"""Benchmark the Firehose transform Lambda (s3tstream.transform).

Plain script: prints results, asserts nothing.

* A deterministic batch of DynamoDB change records (60% INSERT, 30% MODIFY with old
  and new images, 10% REMOVE), ~22 attributes with nested maps, lists and sets,
  in Firehose events of 500 records (the standard batch), run through:
    ours      - s3tstream.transform.handler (upsert mode), in three configurations:
                declared     - every attribute a typed column (SETTINGS);
                catch-all    - only the key columns, everything else in the catch-all
                               column (the schemaless start);
                nested       - the key plus the nested attributes declared as typed
                               structs, lists and maps, the rest in the catch-all;
                and, in a separate pair of alternating runs, "declared" with the batch
                collapse on and off (settings collapse_per_key) for what it costs;
    (a)       - a conventional transform: boto3 TypeDeserializer + json.dumps;
    (b) floor - base64 decode, json.loads, json.dumps of the raw image (the one ours
                maps: NewImage, or OldImage for REMOVE), base64 encode.
  Best of N repetitions per event (process CPU time), all interleaved; records/s
  for each, and per configuration the ratios against (a) and (b).
* Many tables, one pipeline: the same records spread over 20 tables of 20 columns (each
  record's tableName picks its table's settings, transform/routing.py) against one table of
  the same 20 columns, in alternating runs: the per-record cost ratio (target <= 1.10).
* Peak memory (tracemalloc) of the handler on one ~6 MB event, and the Lambda cost
  per million records it implies.
"""

from __future__ import annotations

import base64
import binascii
import gc
import json
import os
import random
import sys
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from boto3.dynamodb.types import Binary, TypeDeserializer  # noqa: E402

from s3tstream.transform import encode_settings, handler, transform_records  # noqa: E402
from s3tstream.transform.routing import Routes  # noqa: E402

SEED = 20240501
N_RECORDS = 20_000
BATCH = 500
REPEATS = 7
PRICE_GB_S = 0.0000133334  # arm64, per GB-second
PRICE_REQUEST = 0.20 / 1_000_000
FULL_VCPU_MB = 1769  # Lambda gives one full vCPU at 1,769 MB, proportionally less below
RECOMMENDED_MB = 256

SETTINGS = {
    "database": "bench",
    "table": "items",
    "mode": "upsert",
    "keys": ["pk", "sk"],
    "columns": [
        {"name": "pk", "type": "string", "required": True},
        {"name": "sk", "type": "long", "required": True},
        {"name": "name", "type": "string"},
        {"name": "email", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "score", "type": "double"},
        {"name": "balance", "type": "decimal(18,2)"},
        {"name": "active", "type": "boolean"},
        {"name": "created_at", "type": "timestamptz", "source": "createdAt"},
        {"name": "updated_at", "type": "timestamptz", "source": "updatedAt"},
        {"name": "birthday", "type": "date"},
        {"name": "avatar", "type": "binary"},
        {"name": "tags", "type": "list<string>"},
        {"name": "lucky", "type": "list<long>"},
        {"name": "address", "type": "struct<street:string,city:string,zip:string,"
                                    "geo:struct<lat:double,lon:double>>"},
        {"name": "metrics", "type": "map<string,double>"},
        {"name": "history", "type": "list<long>"},
        {"name": "events", "type": "string"},  # list of maps, kept as JSON text
        {"name": "prefs", "type": "string"},  # map, kept as JSON text
        {"name": "notes", "type": "string"},
    ],
    "extra_column": "extra",
    "ttl_deletes": "delete",
}
KEY_COLUMNS = SETTINGS["columns"][:2]
CATCH_ALL = {**SETTINGS, "columns": KEY_COLUMNS}
NESTED = {**SETTINGS, "columns": KEY_COLUMNS + [
    {"name": "tags", "type": "list<string>"},
    {"name": "lucky", "type": "list<long>"},
    {"name": "address", "type": "struct<street:string,city:string,zip:string,"
                                "geo:struct<lat:double,lon:double>>"},
    {"name": "metrics", "type": "map<string,double>"},
    {"name": "history", "type": "list<long>"},
    {"name": "events", "type": "list<struct<type:string,at:long,ok:boolean>>"},
    {"name": "prefs", "type": "struct<theme:string,lang:string,beta:boolean>"},
]}
CONFIGS = {"declared": SETTINGS, "catch-all": CATCH_ALL, "nested": NESTED}
COLLAPSE_OFF = {**SETTINGS, "collapse_per_key": False}
TARGET_FLOOR, TARGET_CONVENTIONAL, TARGET_COLLAPSE = 0.8, 1.3, 0.05
# many tables: 20 tables of 20 columns (the declared configuration's first 20), against one
TWENTY = {**SETTINGS, "columns": SETTINGS["columns"][:20]}
N_TABLES, TARGET_MANY = 20, 1.10

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
         "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
CITIES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Quito", "Perth", "Tunis", "Zürich"]


def make_image(rng: random.Random, pk: str, sk: int, version: int) -> dict:
    n = rng.randint
    w = lambda: rng.choice(WORDS)  # noqa: E731
    ts_ms = 1_600_000_000_000 + n(0, 10**11)
    return {
        "pk": {"S": pk},
        "sk": {"N": str(sk)},
        "name": {"S": f"{w().title()} {w().title()}"},
        "email": {"S": f"{w()}.{n(1, 9999)}@example.com"},
        "age": {"N": str(n(18, 90))},
        "score": {"N": repr(round(rng.random() * 1000, 3))},
        "balance": {"N": f"{n(0, 10**9)}.{n(0, 99):02d}"},
        "active": {"BOOL": rng.random() < 0.7},
        "createdAt": {"S": f"20{n(10, 24)}-{n(1, 12):02d}-{n(1, 28):02d}T{n(0, 23):02d}:"
                           f"{n(0, 59):02d}:{n(0, 59):02d}.{n(0, 999999):06d}Z"},
        "updatedAt": {"N": str(ts_ms + version)},
        "birthday": {"S": f"19{n(40, 99)}-{n(1, 12):02d}-{n(1, 28):02d}"},
        "avatar": {"B": base64.b64encode(rng.randbytes(24)).decode()},
        "tags": {"SS": sorted({w() for _ in range(n(1, 5))})},
        "lucky": {"NS": [str(x) for x in sorted({n(1, 99) for _ in range(3)})]},
        "address": {"M": {
            "street": {"S": f"{n(1, 999)} {w().title()} St"},
            "city": {"S": rng.choice(CITIES)},
            "zip": {"S": f"{n(10000, 99999)}"},
            "geo": {"M": {"lat": {"N": f"{rng.uniform(-90, 90):.6f}"},
                          "lon": {"N": f"{rng.uniform(-180, 180):.6f}"}}},
        }},
        "metrics": {"M": {w(): {"N": repr(round(rng.random(), 4))} for _ in range(3)}},
        "history": {"L": [{"N": str(n(0, 10**6))} for _ in range(n(2, 6))]},
        "events": {"L": [{"M": {"type": {"S": w()}, "at": {"N": str(ts_ms - n(0, 10**6))},
                                "ok": {"BOOL": True}}} for _ in range(n(1, 3))]},
        "prefs": {"M": {"theme": {"S": rng.choice(["dark", "light"])},
                        "lang": {"S": rng.choice(["en", "pt", "ja"])},
                        "beta": {"BOOL": rng.random() < 0.2}}},
        "notes": {"NULL": True},
        "legacy_code": {"S": f"L-{n(100, 999)}"},
        "legacy_flags": {"NS": [str(n(0, 9)) for _ in range(2)]} if rng.random() < 0.5
        else {"N": "0"},
    }


def make_records(n_records: int, seed: int = SEED, tables: list[str] | None = None) -> list[dict]:
    """Deterministic change records: 60% INSERT, 30% MODIFY, 10% REMOVE (of the DynamoDB
    tables named round-robin; default one table, "items")."""
    rng = random.Random(seed)
    records = []
    for i in range(n_records):
        pk, sk = f"user#{i % 5000:06d}", i // 5000
        keys = {"pk": {"S": pk}, "sk": {"N": str(sk)}}
        r = i % 10
        ddb: dict = {"Keys": keys, "ApproximateCreationDateTime": 1_700_000_000_000_000 + i,
                     "ApproximateCreationDateTimePrecision": "MICROSECOND",
                     "SizeBytes": 0}
        if r < 6:
            name = "INSERT"
            ddb["NewImage"] = make_image(rng, pk, sk, 0)
        elif r < 9:
            name = "MODIFY"
            ddb["OldImage"] = make_image(rng, pk, sk, 0)
            ddb["NewImage"] = make_image(rng, pk, sk, 1)
        else:
            name = "REMOVE"
            ddb["OldImage"] = make_image(rng, pk, sk, 1)
        change = {"awsRegion": "us-east-1", "eventID": f"{i:032x}", "eventName": name,
                  "userIdentity": None, "recordFormat": "application/json",
                  "tableName": tables[i % len(tables)] if tables else "items", "dynamodb": ddb,
                  "eventSource": "aws:dynamodb"}
        data = json.dumps(change, ensure_ascii=False).encode()
        records.append({
            "recordId": f"{i:056d}",
            "approximateArrivalTimestamp": 1_700_000_000_000 + i,
            "data": base64.b64encode(data).decode(),
            "kinesisRecordMetadata": {"sequenceNumber": str(i), "subsequenceNumber": 0,
                                      "partitionKey": pk, "shardId": "shardId-000000000000",
                                      "approximateArrivalTimestamp": 1_700_000_000_000 + i},
        })
    return records


def make_events(records: list[dict], batch: int = BATCH) -> list[dict]:
    return [{"invocationId": f"inv-{i}", "deliveryStreamArn": "arn:aws:firehose:::x",
             "sourceKinesisStreamArn": "arn:aws:kinesis:::x", "region": "us-east-1",
             "records": records[i:i + batch]} for i in range(0, len(records), batch)]


# ------------------------------------------------------------------ (a) conventional
class _StreamDeserializer(TypeDeserializer):
    """boto3's deserializer expects bytes for B; change records carry base64 text."""

    def _deserialize_b(self, value):
        return Binary(base64.b64decode(value))

    def _deserialize_bs(self, value):
        return {self._deserialize_b(v) for v in value}


_deser = _StreamDeserializer()


def _conventional_default(o):
    if isinstance(o, Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    if isinstance(o, set):
        return sorted(o, key=str)
    if isinstance(o, Binary):
        return base64.b64encode(o.value).decode()
    raise TypeError(type(o).__name__)


def conventional_handler(event, context=None):
    out = []
    for rec in event["records"]:
        try:
            change = json.loads(base64.b64decode(rec["data"]))
            ddb = change["dynamodb"]
            if change["eventName"] == "REMOVE":
                image, op = ddb["Keys"], "delete"
            else:
                image, op = ddb["NewImage"], "update"
            item = {k: _deser.deserialize(v) for k, v in image.items()}
            data = json.dumps(item, default=_conventional_default)
            out.append({"recordId": rec["recordId"], "result": "Ok",
                        "data": base64.b64encode(data.encode()).decode(),
                        "metadata": {"otfMetadata": {"destinationDatabaseName": "bench",
                                                     "destinationTableName": "items",
                                                     "operation": op}}})
        except Exception:  # noqa: BLE001
            out.append({"recordId": rec["recordId"], "result": "ProcessingFailed",
                        "data": rec["data"]})
    return {"records": out}


# ------------------------------------------------------------------ (b) stdlib floor
def floor_handler(event, context=None):
    out = []
    a2b, b2a, loads, dumps = binascii.a2b_base64, binascii.b2a_base64, json.loads, json.dumps
    for rec in event["records"]:
        change = loads(a2b(rec["data"]))
        ddb = change["dynamodb"]
        image = ddb.get("NewImage") or ddb.get("OldImage") or ddb["Keys"]  # what ours maps
        out.append({"recordId": rec["recordId"], "result": "Ok",
                    "data": b2a(dumps(image).encode(), newline=False).decode()})
    return {"records": out}


# ------------------------------------------------------------------ runs
class _Quiet:
    """Swallow the handler's per-batch log line while timing."""

    def write(self, s):
        return len(s)

    def flush(self):
        pass


def best_times(impls: dict, events: list, repeats: int) -> dict[str, float]:
    """Sum over events of the best (least) CPU time of each event across repeats.

    impls: name -> (environment to set first, handler).  CPU time of this process
    (time.process_time) rather than wall time, and the best of N per 500-record
    event rather than per whole run: on a shared machine that keeps other
    processes' load out of the numbers.  Implementations are interleaved, in reverse
    order every other repeat so that none always runs right after another.
    """
    return best_times_each({name: (events, fn, env) for name, (env, fn) in impls.items()}, repeats)


def best_times_each(impls: dict, repeats: int) -> dict[str, float]:
    """best_times for implementations that each run their own events: name -> (events, handler,
    environment to set first or None)."""
    best = {name: [float("inf")] * len(impl[0]) for name, impl in impls.items()}
    clock = time.process_time
    order = list(impls.items())
    for _ in range(repeats):
        for name, (evs, fn, env) in order:
            if env is not None:
                _set_env(env)
            gc.collect()
            row = best[name]
            for i, ev in enumerate(evs):
                t0 = clock()
                fn(ev, None)
                dt = clock() - t0
                if dt < row[i]:
                    row[i] = dt
        order.reverse()
    return {name: sum(row) for name, row in best.items()}


def _set_env(env: dict[str, str]) -> None:
    for k in ("S3T_SETTINGS", "S3T_SETTINGS_Z"):
        os.environ.pop(k, None)
    os.environ.update(env)


def main() -> None:
    envs = {name: encode_settings(doc) for name, doc in CONFIGS.items()}
    records = make_records(N_RECORDS)
    events = make_events(records)
    n = len(records)
    in_bytes = sum(len(r["data"]) for r in records)
    load_before = os.getloadavg()

    # Sanity: every implementation transforms every record; ids come back in order.
    real_stdout, sys.stdout = sys.stdout, _Quiet()
    try:
        checks = [(envs[c], handler) for c in CONFIGS] + [({}, conventional_handler), ({}, floor_handler)]
        for env, fn in checks:
            _set_env(env or envs["declared"])
            res = fn(events[-1], None)
            assert [r["recordId"] for r in res["records"]] == \
                [r["recordId"] for r in events[-1]["records"]]
            assert all(r["result"] == "Ok" for r in res["records"]), fn.__name__
    finally:
        sys.stdout = real_stdout

    impls = {f"ours, {c}": (envs[c], handler) for c in CONFIGS}
    impls["conventional (a)"] = ({}, conventional_handler)
    impls["floor (b)"] = ({}, floor_handler)
    sys.stdout = _Quiet()
    try:
        best = best_times(impls, events, REPEATS)
    finally:
        sys.stdout = real_stdout
    _set_env(envs["declared"])

    rate = {k: n / v for k, v in best.items()}
    print(f"python {sys.version.split()[0]} on {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}; {n} records (60% INSERT, 30% MODIFY, "
          f"10% REMOVE) in {len(events)} events of {BATCH}, {in_bytes / n:.0f} bytes of base64 "
          f"per record;\n  CPU time, best of {REPEATS} interleaved runs per event")
    for k in impls:
        print(f"  {k:30s} {rate[k]:>10,.0f} records/s   ({best[k] / n * 1e6:6.2f} µs/record)")
    for c in CONFIGS:
        ours = rate[f"ours, {c}"]
        r_floor, r_conv = ours / rate["floor (b)"], ours / rate["conventional (a)"]
        print(f"  {c:10s} ours / floor = {r_floor:.2f}x (target >= {TARGET_FLOOR}x), "
              f"ours / conventional = {r_conv:.2f}x (target >= {TARGET_CONVENTIONAL}x)")
    sys.stdout = _Quiet()
    try:
        pair = best_times({"on": (envs["declared"], handler),
                           "off": (encode_settings(COLLAPSE_OFF), handler)}, events, REPEATS + 2)
    finally:
        sys.stdout = real_stdout
    _set_env(envs["declared"])
    cost = pair["on"] / pair["off"] - 1
    print(f"  batch collapse (latest change per key) costs {cost:+.1%} on the standard batch "
          f"(declared, collapse_per_key on vs off, {REPEATS + 2} alternating runs; "
          f"target <= {TARGET_COLLAPSE:.0%})")

    # ---- many tables, one pipeline: the same records over 20 tables against one table
    names = [f"t{i:02d}" for i in range(N_TABLES)]
    one = Routes.from_dict(TWENTY)
    many = Routes.from_dict({"routes": {t: {**TWENTY, "table": t} for t in names}})
    many_events = make_events(make_records(N_RECORDS, tables=names))
    for ev, routes in ((events[-1], one), (many_events[-1], many)):
        sys.stdout = _Quiet()
        try:
            res = transform_records(ev["records"], routes)
        finally:
            sys.stdout = real_stdout
        assert all(r["result"] == "Ok" for r in res)
    assert {r["metadata"]["otfMetadata"]["destinationTableName"] for r in res} == set(names)
    # one table per impl, each with its own events (identical but for tableName)
    sys.stdout = _Quiet()
    try:
        pair = best_times_each({"one": (events, lambda ev, c: transform_records(ev["records"], one), None),
                                "many": (many_events, lambda ev, c: transform_records(ev["records"], many), None)},
                               REPEATS + 2)
    finally:
        sys.stdout = real_stdout
    ratio = pair["many"] / pair["one"]
    print(f"  {N_TABLES} tables of 20 columns, records spread over them: {pair['many'] / n * 1e6:.2f} µs/record "
          f"against {pair['one'] / n * 1e6:.2f} for one table = {ratio:.3f}x per record "
          f"({REPEATS + 2} alternating runs; target <= {TARGET_MANY:.2f}x)")

    # ---- memory: one ~6 MB event (Firehose's Lambda payload limit)
    big_records, size = [], 0
    for r in make_records(8000, seed=SEED + 1):
        if size + len(r["data"]) + 200 > 6_000_000:
            break
        big_records.append(r)
        size += len(r["data"]) + 200
    big_event = make_events(big_records, batch=len(big_records))[0]
    event_bytes = len(json.dumps(big_event))
    sys.stdout = _Quiet()
    try:
        gc.collect()
        tracemalloc.start()
        result = handler(big_event, None)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        sys.stdout = real_stdout
    out_bytes = len(json.dumps(result))
    del result
    # The runtime holds the raw request and its parsed form, our peak, and the
    # serialized response; the Python runtime itself takes ~40 MB.
    est = 40 + (2 * event_bytes + peak + out_bytes) / 2**20
    print(f"memory: one event of {len(big_records)} records = {event_bytes / 1e6:.2f} MB of JSON -> "
          f"response {out_bytes / 1e6:.2f} MB; handler peak (tracemalloc) {peak / 2**20:.1f} MiB; "
          f"estimated max memory used ~{est:.0f} MB")

    # ---- cost per million records
    sec_per_rec = best["ours, declared"] / n
    invokes = 1_000_000 / BATCH
    requests = invokes * PRICE_REQUEST
    print(f"Lambda cost per 1M records, arm64 at ${PRICE_GB_S}/GB-s plus $0.20 per 1M requests "
          f"({BATCH} records/invoke = {invokes:.0f} invokes = ${requests:.4f}):")
    print(f"  assumes one Graviton vCPU does per record what one core here does "
          f"({sec_per_rec * 1e6:.1f} µs) and Lambda's CPU share is memory/{FULL_VCPU_MB} MB; "
          f"no cold starts; Firehose's own charges excluded")
    for mem_mb, note in ((128, ""), (RECOMMENDED_MB, "  <- recommended: same cost per record, "
                                                     "twice the speed, room for 6 MB batches")):
        share = min(1.0, mem_mb / FULL_VCPU_MB)
        duration = sec_per_rec / share * BATCH
        compute = invokes * duration * (mem_mb / 1024) * PRICE_GB_S
        print(f"  {mem_mb:4d} MB: {share:5.1%} of a vCPU, ~{duration * 1000:4.0f} ms per invoke, "
              f"${compute:.4f} compute + ${requests:.4f} requests = ${compute + requests:.4f}{note}")


if __name__ == "__main__":
    main()
