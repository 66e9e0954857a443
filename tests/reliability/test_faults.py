"""Transient faults: a seeded 20% of the product's AWS calls fail with throttling or 5xx errors
(ThrottlingException, ProvisionedThroughputExceededException, LimitExceededException, SlowDown,
InternalFailure 500, ServiceUnavailable 503), answered by the sandbox before the call has any
effect. `up`, `test-insert` and `down` still succeed: botocore's standard retry mode retries
each failed call with backoff, up to stack.max_attempts (8 here), and every loop of the
product's own is bounded.

botocore's backoff is rand(0,1) * min(base * 2**attempt, 20 s) with base 1 s for throttling
(50 ms for 5xx); the test scales the throttling base down to 50 ms so the run stays short
(`benchmarks/crash_resume.py --only faults` measures with the real backoff)."""

from __future__ import annotations

import json

import pytest
from reliability_helpers import leftovers, write_config

from s3tstream.sandbox import client as sandbox_client

RATE, SEED = 0.2, 20240917


@pytest.fixture
def fast_backoff(monkeypatch):
    from botocore.retries import standard

    cfg = dict(standard.ExponentialBackoff._DEFAULT_BACKOFF_CONFIG, throttling_base_scale=0.05)
    monkeypatch.setattr(standard.ExponentialBackoff, "_DEFAULT_BACKOFF_CONFIG", cfg)


@pytest.fixture
def random_faults(sandbox):
    from s3tstream.aws.client import forget_clients

    # fresh clients before and after: botocore's retry quota is per client, and the process's
    # clients are shared (aws.client._SHARED), so retries spent here would be missing from the
    # next test (a repeated run exhausted it: "CreateBucket failed with InternalFailure")
    forget_clients()
    sandbox_client.clear_faults(sandbox.endpoint_url)
    yield lambda: sandbox_client.inject_random_faults(sandbox.endpoint_url, RATE, seed=SEED)
    sandbox_client.clear_faults(sandbox.endpoint_url)
    forget_clients()


def test_random_mode_is_seeded_and_only_touches_the_products_calls(sandbox, random_faults):
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    def run(ua: str) -> list[str]:
        c = boto3.client("kinesis", region_name="us-east-1", endpoint_url=sandbox.endpoint_url,
                         config=Config(retries={"total_max_attempts": 1}, user_agent_extra=ua))
        out = []
        for _ in range(200):
            try:
                c.list_streams()
                out.append("ok")
            except ClientError as e:
                out.append(e.response["Error"]["Code"])
        return out

    random_faults()
    first = run("s3tstream/test")
    random_faults()  # same seed again: same calls fail with the same errors
    assert run("s3tstream/test") == first
    failed = [c for c in first if c != "ok"]
    assert 20 <= len(failed) <= 60  # ~20% of 200
    assert set(failed) <= {"ThrottlingException", "ProvisionedThroughputExceededException",
                            "LimitExceededException", "InternalFailure", "ServiceUnavailable"}
    assert set(run("other-client")) == {"ok"}  # not the product's user agent: untouched
    status = sandbox_client.random_faults_status(sandbox.endpoint_url)
    assert status["injected"] == len(failed) and status["by_operation"] == {"kinesis:ListStreams": len(failed)}


@pytest.mark.sandbox
def test_up_test_insert_and_down_succeed_under_20_percent_faults(stack, sandbox, random_faults, fast_backoff,
                                                                 monkeypatch):
    import time

    monkeypatch.setenv("S3TSTREAM_SANDBOX_TIME_SCALE", "0")
    write_config(stack, "[firehose]\nbuffer_interval_seconds = 0\n", max_attempts=8,
                 columns='{ name = "pk", type = "string", required = true }, { name = "note", type = "string" }')
    random_faults()
    t0 = time.monotonic()
    stack.cli("up")
    t_up = time.monotonic() - t0
    doc = stack.json("test-insert", "--count", "20", "--interval", "0.02", "--timeout", "60")
    assert doc["passed"] is True and doc["counts"] == {"inserts": 20, "updates": 5, "deletes": 5}
    t0 = time.monotonic()
    stack.cli("down", "--yes", "--purge-errors", "--include-shared")  # the integration too, when this stack made it
    t_down = time.monotonic() - t0
    status = sandbox_client.stop_random_faults(sandbox.endpoint_url)
    # the faults really happened, to every kind of call, and none got through
    assert status["seen"] > 150 and status["injected"] >= 0.1 * status["seen"], status
    assert {"ThrottlingException", "InternalFailure", "ServiceUnavailable"} <= set(status["by_code"])
    mutating = {op for op in status["by_operation"] if not op.split(":")[1].startswith(("Describe", "Get", "List", "Head"))}
    assert mutating, status["by_operation"]
    assert leftovers(stack) == {}  # the Athena results bucket test-insert made included
    assert json.loads(stack.state_path.read_text())["resources"] == []
    print(f"\nfaults: {status['injected']} of {status['seen']} calls failed and were retried "
          f"({json.dumps(status['by_code'])}); up {t_up:.1f}s, down {t_down:.1f}s")


@pytest.mark.sandbox
def test_a_call_failing_past_max_attempts_is_exit_1_and_resumable(stack, sandbox, calls):
    """Beyond the retry budget the run stops with exit 1 and a hint; the next run resumes."""
    write_config(stack, max_attempts=2)
    # 3 failures: botocore makes max_attempts + 1 = 3 attempts (see the retries test below)
    sandbox_client.inject_fault(sandbox.endpoint_url, "kinesis", "CreateStream", "LimitExceededException",
                                "Rate exceeded for stream", count=3)
    try:
        r = stack.cli("up", "--output", "json", ok=False)
    finally:
        sandbox_client.clear_faults(sandbox.endpoint_url)
    assert r.exit_code == 1
    err = json.loads(r.stdout)["error"]
    assert "LimitExceededException" in err["message"] and "run the command again" in err["hint"]
    assert calls.counts()["kinesis:CreateStream"] == 1  # one operation, its attempts inside botocore
    stack.cli("up")
    calls.clear()
    stack.cli("up")
    assert calls.mutating() == []


def test_product_clients_use_standard_retries_with_the_configured_attempts(tmp_path):
    from s3tstream.config import model as config
    from s3tstream.aws.client import Aws

    p = tmp_path / "s3tstream.toml"
    p.write_text('[stack]\nname = "retries"\nmax_attempts = 8\nendpoint_url = "http://127.0.0.1:1"\n')
    aws = Aws(config.load(p, environ={}))
    for service in ("dynamodb", "kinesis", "s3tables", "iam", "lakeformation", "firehose", "lambda", "s3", "athena"):
        c = aws.client(service)
        r = c.meta.config.retries
        # botocore reads retries["max_attempts"] as *retries*: 8 gives 9 attempts in all
        # (total_max_attempts). Bounded either way; see the report on aws.py.
        assert r["mode"] == "standard" and r.get("total_max_attempts", r.get("max_attempts")) in (8, 9), (service, r)
        assert "s3tstream/" in c.meta.config.user_agent_extra


def test_own_retry_loops_are_bounded(monkeypatch):
    """delivery.common.retry_iam (IAM propagation) gives up after IAM_RETRY_ATTEMPTS with a bounded
    total wait; wait_until gives up at its timeout."""
    from types import SimpleNamespace

    from botocore.exceptions import ClientError

    from s3tstream.aws.client import wait_until
    from s3tstream.errors import WaitTimeout
    from s3tstream.provision.steps.delivery import common as delivery

    slept: list[float] = []
    monkeypatch.setattr(delivery, "_sleep", slept.append)
    ctx = SimpleNamespace(poll=5.0, options={}, progress=lambda m: None)
    err = ClientError({"Error": {"Code": "InvalidArgumentException", "Message": "Firehose is unable to assume role x"}},
                      "CreateDeliveryStream")
    n = 0

    def always() -> None:
        nonlocal n
        n += 1
        raise err

    with pytest.raises(ClientError):
        delivery.retry_iam(ctx, "x", always, delivery.is_firehose_iam_propagation)
    assert n == delivery.IAM_RETRY_ATTEMPTS and sum(slept) <= 5.0 * delivery.IAM_RETRY_CAP * delivery.IAM_RETRY_ATTEMPTS
    assert sum(slept) == pytest.approx(155.0)  # "a minute or two" with the default 5 s poll

    polls = 0

    def never() -> tuple[bool, str]:
        nonlocal polls
        polls += 1
        return False, "CREATING"

    with pytest.raises(WaitTimeout):
        wait_until(never, "thing", timeout=0.05, interval=0.01)
    assert polls < 20
