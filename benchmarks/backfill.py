"""`s3tstream backfill` (strategy scan) against a naive loop of one PutRecord per item, in the
same run on the sandbox (items/s; a ratio, not an absolute figure). Target: at least 10x.

Both read the same table with Scan and send the same change records to the same stream; the
backfill batches PutRecords (500 records / 5 MiB), runs its segments in parallel, reads each
segment's next page while it sends the current one, and writes a checkpoint per page; its total
includes the catch-up (reading the stream back). No read-rate limit on either side. The sandbox
runs in its own process (like a remote endpoint); Firehose buffers for 900 s there, so delivery
does not compete for the CPU. Each side starts after a full garbage collection: the in-process
`up` leaves ~100k objects in reference cycles, and whichever side ran first paid ~0.2-0.3 s for
collecting them. Printed: the naive loop, the backfill's scan-and-send phase (the like-for-like
figure: both scan and send), and the whole command with its catch-up (which reads every record
back from the stream; on AWS that read runs alongside the scan, in the sandbox's single Python
process it competes with it).
Run: .venv/bin/python benchmarks/backfill.py [ITEMS]   (default 3000)
"""

from __future__ import annotations

import gc
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "S3TSTREAM_SANDBOX_TIME_SCALE": "1"}.items():
    os.environ[k] = v
os.environ.pop("AWS_PROFILE", None)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    import boto3
    from typer.testing import CliRunner

    from s3tstream.data import backfill as bf
    from s3tstream.data.backfill.records import SOURCE
    from s3tstream.data.changes import change_record, encode
    from s3tstream.config import model as config
    from s3tstream.aws.client import Aws
    from s3tstream.cli.app import app
    from s3tstream.data.items import from_boto

    # the sandbox in its own process, as a remote endpoint would be: client and server do not
    # share one interpreter lock
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = subprocess.Popen([sys.executable, "-m", "s3tstream.sandbox", "serve", "--port", str(port)],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = srv.stdout.readline() if srv.stdout else ""
        assert "listening on" in line, f"the sandbox did not start: {line!r}"
        ep = line.split("listening on ", 1)[1].split()[0]
        name = "b" + uuid.uuid4().hex[:8]
        ddb = boto3.client("dynamodb", endpoint_url=ep)
        kinesis = boto3.client("kinesis", endpoint_url=ep)
        ddb.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        for i in range(0, n, 25):
            ddb.batch_write_item(RequestItems={name: [
                {"PutRequest": {"Item": {"pk": {"S": f"k{j:06d}"}, "n": {"N": str(j)}, "note": {"S": "x" * 200}}}}
                for j in range(i, min(n, i + 25))]})
        d = Path(tempfile.mkdtemp())
        cfg_path = d / "s3tstream.toml"
        cfg_path.write_text(
            f'[stack]\nname = "{name}"\nendpoint_url = "{ep}"\npoll_interval = 0.01\nwait_timeout = 60\n'
            '[table]\ncolumns = [{ name = "pk", type = "string", required = true }, { name = "n", type = "long" }, '
            '{ name = "note", type = "string" }]\n'
            "[lakeformation]\nintegrate = true\nmake_caller_admin = true\n"
            "[firehose]\nbuffer_interval_seconds = 900\nbuffer_size_mb = 128\n[backfill]\nitems_per_second = 0\n")
        r = CliRunner().invoke(app, ["up"], env={"S3TSTREAM_CONFIG": str(cfg_path)})
        assert r.exit_code == 0, r.output
        cfg = config.load(cfg_path)

        # the backfill (library entry point the CLI calls)
        gc.collect()
        t = time.perf_counter()
        res = bf.run(cfg, Aws(cfg), strategy="scan")
        total = time.perf_counter() - t
        assert res.items_sent == n, res.to_json()

        # the naive loop: Scan, then one PutRecord per item
        gc.collect()
        t = time.perf_counter()
        sent = 0
        for page in ddb.get_paginator("scan").paginate(TableName=name):
            for raw in page["Items"]:
                item = from_boto(raw)
                rec = change_record(cfg, "INSERT", {"pk": item["pk"]}, item, source=SOURCE)
                data, pk, _ = encode(rec)
                kinesis.put_record(StreamName=cfg.names.stream, Data=data, PartitionKey=pk)
                sent += 1
        naive = time.perf_counter() - t
        assert sent == n

        b_rate, s_rate, n_rate = n / total, res.items_per_second, n / naive
        print(f"items: {n}, segments: {res.segments}")
        print(f"naive put_record loop       {n_rate:9.0f} items/s  ({naive:6.2f} s)  (1.00x)")
        print(f"backfill, scan and send     {s_rate:9.0f} items/s  ({res.scan_seconds:6.2f} s)  ({s_rate / n_rate:.1f}x)")
        print(f"backfill, with catch-up     {b_rate:9.0f} items/s  ({total:6.2f} s)  ({b_rate / n_rate:.1f}x)")
        print(json.dumps({"ratio_total": round(b_rate / n_rate, 1), "ratio_scan": round(s_rate / n_rate, 1),
                          "target": 10}))
    finally:
        srv.terminate()
        srv.wait(timeout=30)


if __name__ == "__main__":
    main()
