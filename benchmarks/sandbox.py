"""Requests per second of the sandbox against moto's own, unpatched server, for the same requests.

Both servers run as background processes on loopback: ours as `s3tstream sandbox start` runs it
(``python -m s3tstream.sandbox serve``), moto's as ``python -m moto.server`` (a fresh interpreter,
so none of the sandbox's patches apply). The client builds each request of a demo-like mix once
with botocore (signed, serialized: DynamoDB PutItem/GetItem/Query/DescribeTable, Kinesis
PutRecord/DescribeStreamSummary, S3 PutObject/GetObject/ListObjectsV2, STS GetCallerIdentity,
IAM GetRole) and replays it over plain HTTP, so the time measured is the servers', not boto3's.
Rounds alternate between the servers; the median round of each is compared. Then the same mix
through the sandbox's WSGI app in this process, with moto's dispatch and with ``sandbox.dispatch``'s
caches (what the per-request folder listing costs).

Then, unless --no-demo, the demo (`s3tstream demo`) is run once and its wall time printed.

Run: .venv/bin/python benchmarks/sandbox.py [--rounds 7] [--per-round 300] [--no-demo]
Target (issue 18): ours >= 1.5x moto's requests per second.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
    os.environ[k] = v
os.environ.pop("AWS_PROFILE", None)

REGION = "us-east-1"
TABLE, STREAM, BUCKET, ROLE = "bench-table", "bench-stream", "bench-bucket", "bench-role"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_answering(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {url} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()  # noqa: S310 - loopback
            return
        except urllib.error.HTTPError:
            return  # it answers (an error document is an answer)
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server {url} did not answer within {timeout:.0f}s")


def _clients(url: str) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    cfg = Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"})
    return {s: boto3.client(s, region_name=REGION, endpoint_url=url, config=cfg)
            for s in ("dynamodb", "kinesis", "s3", "sts", "iam")}


def seed(url: str) -> None:
    """The resources the mix reads and writes (made through boto3 on each server)."""
    c = _clients(url)
    c["dynamodb"].create_table(TableName=TABLE, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                                           {"AttributeName": "sk", "KeyType": "RANGE"}],
                               AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                     {"AttributeName": "sk", "AttributeType": "N"}],
                               BillingMode="PAY_PER_REQUEST")
    c["kinesis"].create_stream(StreamName=STREAM, ShardCount=2)
    c["s3"].create_bucket(Bucket=BUCKET)
    c["iam"].create_role(RoleName=ROLE, AssumeRolePolicyDocument="{}")
    for i in range(20):
        c["dynamodb"].put_item(TableName=TABLE, Item={"pk": {"S": "order-1"}, "sk": {"N": str(i)}, "v": {"S": "x" * 200}})


def prepared(url: str) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(method, path?query, headers, body) of each request of the mix, serialized and signed once."""
    c = _clients(url)
    item = {"pk": {"S": "order-2"}, "sk": {"N": "1"}, "amount": {"N": "19.25"}, "tags": {"SS": ["a", "b"]},
            "address": {"M": {"city": {"S": "Lisbon"}}}, "note": {"S": "é" * 100}}
    calls = [
        ("dynamodb", "PutItem", {"TableName": TABLE, "Item": item}),
        ("dynamodb", "GetItem", {"TableName": TABLE, "Key": {"pk": {"S": "order-2"}, "sk": {"N": "1"}}}),
        ("dynamodb", "Query", {"TableName": TABLE, "KeyConditionExpression": "pk = :p",
                               "ExpressionAttributeValues": {":p": {"S": "order-1"}}}),
        ("dynamodb", "DescribeTable", {"TableName": TABLE}),
        ("kinesis", "PutRecord", {"StreamName": STREAM, "Data": b'{"k": 1}' * 20, "PartitionKey": "pk-1"}),
        ("kinesis", "DescribeStreamSummary", {"StreamName": STREAM}),
        ("s3", "PutObject", {"Bucket": BUCKET, "Key": "data/part-0.json", "Body": b"x" * 2048}),
        ("s3", "GetObject", {"Bucket": BUCKET, "Key": "data/part-0.json"}),
        ("s3", "ListObjectsV2", {"Bucket": BUCKET, "Prefix": "data/"}),
        ("sts", "GetCallerIdentity", {}),
        ("iam", "GetRole", {"RoleName": ROLE}),
    ]
    out = []
    for service, op, params in calls:
        client = c[service]
        model = client.meta.service_model.operation_model(op)
        request_dict = client._convert_to_request_dict(params, model, endpoint_url=client.meta.endpoint_url,  # noqa: SLF001
                                                       context={"client_region": REGION, "has_streaming_input": False})
        from botocore.awsrequest import prepare_request_dict

        prepare_request_dict(request_dict, endpoint_url=client.meta.endpoint_url)
        req = client._endpoint.create_request(request_dict, model)  # noqa: SLF001 - signs it
        prep = req.prepare() if hasattr(req, "prepare") else req
        parts = urllib.parse.urlsplit(prep.url)
        body = prep.body if isinstance(prep.body, bytes) else (prep.body or "").encode() if isinstance(prep.body, str) \
            else (prep.body.read() if prep.body is not None else b"")
        headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in prep.headers.items()}
        out.append((prep.method, parts.path + (f"?{parts.query}" if parts.query else ""), headers, body))
    return out


def round_rps(port: int, requests: list[tuple[str, str, dict[str, str], bytes]], n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        method, path, headers, body = requests[i % len(requests)]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status >= 400:
            raise SystemExit(f"{method} {path} on port {port}: HTTP {resp.status}: {data[:300]!r}")
    return n / (time.perf_counter() - t0)


def compare(rounds: int, per_round: int) -> float:
    from s3tstream.sandbox import control

    home = Path(tempfile.mkdtemp(prefix="s3t-bench-sandbox-"))
    ours = control.start(home, port=0)
    moto_port = _free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        moto_url = f"http://127.0.0.1:{moto_port}"
        _wait_answering(moto_url, moto)
        servers = {"sandbox": (ours["port"], ours["endpoint_url"]), "moto": (moto_port, moto_url)}
        reqs = {}
        for name, (port, url) in servers.items():
            seed(url)
            reqs[name] = prepared(url)
            round_rps(port, reqs[name], len(reqs[name]) * 3)  # warm up: every handler imported
        results: dict[str, list[float]] = {name: [] for name in servers}
        for r in range(rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            for name in order:
                results[name].append(round_rps(servers[name][0], reqs[name], per_round))
        med = {name: statistics.median(v) for name, v in results.items()}
        ratio = med["sandbox"] / med["moto"]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
              f"load {os.getloadavg()[0]:.1f}")
        print(f"mix: {len(reqs['sandbox'])} requests (DynamoDB, Kinesis, S3, STS, IAM), {rounds} rounds of "
              f"{per_round}, alternating")
        for name in servers:
            print(f"{name:8s} median {med[name]:7.1f} req/s   rounds: " + ", ".join(f"{x:.0f}" for x in results[name]))
        print(f"sandbox / moto: {ratio:.2f}x (target >= 1.5x)")
        return ratio
    finally:
        moto.terminate()
        moto.wait(10)
        control.stop(home)


def dispatch_overhead(rounds: int, per_round: int) -> float:
    """The same mix through the sandbox's WSGI app in this process (no sockets), with moto's own
    dispatch (folder listing and inspect.getmembers per request) against sandbox.dispatch's caches."""
    import moto.core.responses as moto_responses
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.test import EnvironBuilder

    from s3tstream.sandbox import dispatch
    from s3tstream.sandbox.server import SandboxApp, SandboxServer

    with SandboxServer() as srv:
        seed(srv.endpoint_url)
        reqs = prepared(srv.endpoint_url)
        def environ(i: int) -> dict[str, Any]:  # a fresh one each time: the body stream is read once
            method, path, headers, body = reqs[i % len(reqs)]
            p, _, q = path.partition("?")
            return EnvironBuilder(method=method, path=p, query_string=q, headers=headers, data=body).get_environ()

        apps = {"moto dispatch": (SandboxApp(DomainDispatcherApplication(create_backend_app), srv),
                                  dispatch._original_method_names),  # noqa: SLF001
                "cached dispatch": (SandboxApp(dispatch.Dispatcher(create_backend_app), srv), dispatch._method_names)}  # noqa: SLF001

        def run(name: str, n: int) -> float:
            app, names = apps[name]
            moto_responses.method_names_from_class = names
            t0 = time.perf_counter()
            for i in range(n):
                status: list[str] = []
                b"".join(app(environ(i), lambda st, h, e=None: status.append(st)))
                if not status[0].startswith("2"):
                    raise SystemExit(f"{name}: {status[0]}")
            return (time.perf_counter() - t0) / n * 1000

        for name in apps:
            run(name, len(reqs) * 3)
        ms: dict[str, list[float]] = {name: [] for name in apps}
        for r in range(rounds):
            for name in (list(apps) if r % 2 == 0 else list(reversed(apps))):
                ms[name].append(run(name, per_round))
        dispatch.install()
    med = {name: statistics.median(v) for name, v in ms.items()}
    for name in apps:
        print(f"{name:16s} median {med[name]:.2f} ms/request (in process, no sockets)")
    saved = med["moto dispatch"] - med["cached dispatch"]
    print(f"dispatch caches save {saved:.2f} ms/request ({med['moto dispatch'] / med['cached dispatch']:.2f}x)")
    return saved


def demo() -> float:
    with tempfile.TemporaryDirectory(prefix="s3t-bench-demo-") as tmp:
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "s3tstream", "demo"], cwd=tmp, capture_output=True, text=True)
        took = time.monotonic() - t0
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
        raise SystemExit(f"the demo failed (exit {proc.returncode})")
    print(f"demo: {took:.1f}s wall")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--per-round", type=int, default=300)
    ap.add_argument("--no-demo", action="store_true")
    args = ap.parse_args()
    ratio = compare(args.rounds, args.per_round)
    dispatch_overhead(args.rounds, args.per_round)
    if not args.no_demo:
        demo()
    print(json.dumps({"sandbox_over_moto": round(ratio, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
