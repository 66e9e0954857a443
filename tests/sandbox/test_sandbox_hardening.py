"""The sandbox endpoint is this user's only: loopback, a control token from a 0600 file, no web
page can drive it, and its Athena reads only the tables of its catalogs (never host files)."""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from s3tstream.sandbox import client as sandbox_client
from s3tstream.sandbox import instances
from s3tstream.sandbox.server import SandboxServer


def _request(url: str, method: str = "POST", headers: dict[str, str] | None = None, body: bytes = b"{}") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body if method != "GET" else None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_the_token_file_is_private_and_next_to_the_record(sandbox) -> None:
    path = instances.token_path(sandbox.port)
    assert path.read_text() == sandbox.token and len(sandbox.token) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    record = instances.read(sandbox.port)
    assert record is not None and record["kind"] == "in-process" and record["endpoint_url"] == sandbox.endpoint_url
    assert instances.record_path(sandbox.port).parent == path.parent


def test_control_routes_need_the_token(sandbox, client) -> None:
    url = sandbox.endpoint_url
    ddb = client("dynamodb")
    table = f"keep-{uuid.uuid4().hex[:8]}"
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    try:
        for route in ("/_sandbox/reset", "/moto-api/reset"):
            status, body = _request(url + route)
            assert status == 403 and body["error"] == "AccessDenied"
            assert instances.TOKEN_HEADER in body["message"] and str(instances.token_path(sandbox.port)) in body["message"]
            status, _ = _request(url + route, headers={instances.TOKEN_HEADER: "not-the-token"})
            assert status == 403
        status, _ = _request(url + "/_sandbox/faults", method="GET")
        assert status == 403
        assert table in ddb.list_tables()["TableNames"]  # nothing was reset
        # health stays open (it reveals only that a sandbox answers, and its pid)
        assert _request(url + "/_sandbox/health", method="GET")[1]["status"] == "ok"
        # the client reads the token file: it may
        assert sandbox_client.list_faults(url) == []
        status, _ = _request(url + "/_sandbox/faults", method="GET", headers={instances.TOKEN_HEADER: sandbox.token})
        assert status == 200
    finally:
        ddb.delete_table(TableName=table)


def test_a_web_page_cannot_drive_it(sandbox, client) -> None:
    url, token = sandbox.endpoint_url, sandbox.token
    browser = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
    # a cross-origin POST to reset fails, even with the token
    status, body = _request(url + "/_sandbox/reset", headers={**browser, instances.TOKEN_HEADER: token})
    assert status == 403 and "Origin" in body["message"]
    # an AWS API call from a page (a "simple" form POST needs no CORS preflight) fails too
    status, _ = _request(url + "/", headers={"Origin": "null", "Content-Type": "application/x-www-form-urlencoded"},
                         body=b"Action=ListRoles&Version=2010-05-08")
    assert status == 403
    status, _ = _request(url + "/_sandbox/health", method="GET", headers={"Sec-Fetch-Site": "cross-site"})
    assert status == 403
    # a DNS name rebound to 127.0.0.1 arrives with its own Host
    status, body = _request(url + "/_sandbox/health", method="GET", headers={"Host": "attacker.example:80"})
    assert status == 403 and "loopback" in body["message"]
    # what the SDKs and the CLI send still works (a browser's own address bar: Sec-Fetch-Site none)
    assert _request(url + "/_sandbox/health", method="GET", headers={"Sec-Fetch-Site": "none"})[0] == 200
    assert _request(url.replace("127.0.0.1", "localhost") + "/_sandbox/health", method="GET")[0] == 200
    assert "TableNames" in client("dynamodb").list_tables()


def test_it_listens_on_loopback_only() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="loopback only"):
            SandboxServer(host=host)
    from s3tstream.sandbox.__main__ import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2


def test_a_stopped_server_removes_its_token(_fake_aws_env) -> None:
    with SandboxServer() as srv:
        port = srv.port
        assert instances.read_token(port) == srv.token
    assert instances.read_token(port) is None and instances.read(port) is None


# ------------------------------------------------------------------------- Athena
@pytest.fixture
def results(client) -> Any:
    bucket = f"res-{uuid.uuid4().hex[:10]}"
    client("s3").create_bucket(Bucket=bucket)
    return bucket


def _query(client: Any, bucket: str, sql: str) -> dict[str, Any]:
    athena = client("athena")
    qid = athena.start_query_execution(
        QueryString=sql, ResultConfiguration={"OutputLocation": f"s3://{bucket}/q/"}
    )["QueryExecutionId"]
    qe = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]
    if qe["Status"]["State"] == "SUCCEEDED":
        qe["rows"] = [[c.get("VarCharValue") for c in r["Data"]]
                      for r in athena.get_query_results(QueryExecutionId=qid)["ResultSet"]["Rows"]]
    return qe


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_blob('/etc/hostname')",
    "SELECT * FROM read_json_auto('/etc/hostname')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM sniff_csv('/etc/passwd')",
])
def test_athena_never_reads_a_host_file(client, results, sql) -> None:
    qe = _query(client, results, sql)
    assert qe["Status"]["State"] == "FAILED", qe
    reason = qe["Status"]["StateChangeReason"]
    assert "root:" not in reason and "rows" not in qe
    assert qe["Status"]["AthenaError"]["ErrorCategory"] == 2  # the user's query, as Athena says it


def test_athena_refuses_file_access_with_athenas_error(client, results) -> None:
    qe = _query(client, results, "SELECT * FROM read_parquet('/etc/passwd')")
    assert qe["Status"]["StateChangeReason"].startswith("PERMISSION_DENIED: line 1:1: Access Denied:")
    for sql in ("SET enable_external_access = true", "INSTALL httpfs"):
        assert _query(client, results, sql)["Status"]["State"] == "FAILED"
    # plain queries still run
    assert _query(client, results, "SELECT 1 + 1 AS two")["rows"] == [["two"], ["2"]]


def test_athena_prints_timestamps_of_every_year_like_trino(client, results) -> None:
    qe = _query(client, results, "SELECT TIMESTAMP '0001-01-01 00:00:00' AS a, TIMESTAMP '0999-12-31 23:59:59.5' AS b, "
                                 "TIMESTAMP '9999-12-31 23:59:59.999999' AS c, DATE '0001-01-01' AS d")
    assert qe["Status"]["State"] == "SUCCEEDED", qe["Status"]
    assert qe["rows"][1] == ["0001-01-01 00:00:00.000000", "0999-12-31 23:59:59.500000",
                             "9999-12-31 23:59:59.999999", "0001-01-01"]
