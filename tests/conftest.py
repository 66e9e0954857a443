"""Shared fixtures: fake credentials, one in-process sandbox per test process, and a stack
helper that writes a config with a unique stack name and runs the real CLI against it."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
for var in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
    os.environ.pop(var, None)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
# subprocesses (`python -m tests.support.crash`) import the harness from the repository root
_ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p)


@pytest.fixture(scope="session")
def sandbox():
    """One sandbox endpoint per test process (pytest-xdist workers each get their own)."""
    from s3tstream.sandbox.server import SandboxServer

    srv = SandboxServer(port=0)
    srv.start()
    yield srv
    srv.stop()


_CLIENTS: dict[tuple[str, str, str], Any] = {}


def boto_client(endpoint_url: str, service: str, region: str = "us-east-1") -> Any:
    """A plain boto3 client on the sandbox, one per endpoint, service and Region for the whole
    test process (botocore takes ~15 ms to build one; clients are thread-safe)."""
    key = (endpoint_url, service, region)
    if key not in _CLIENTS:
        import boto3
        from botocore.config import Config

        _CLIENTS[key] = boto3.client(
            service, region_name=region, endpoint_url=endpoint_url,
            config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
        )
    return _CLIENTS[key]


def _cache_typer_commands() -> None:
    """typer's CliRunner rebuilds the click command tree from the functions' signatures on every
    invoke (~20 ms of typing and inspect); the app does not change within a test run."""
    import functools

    import typer.testing

    if not hasattr(typer.testing._get_command, "cache_info"):
        typer.testing._get_command = functools.lru_cache(maxsize=None)(typer.testing._get_command)


_cache_typer_commands()


@dataclass
class StackEnv:
    """A config file for a uniquely named stack pointed at the sandbox, and the CLI to run."""

    dir: Path
    endpoint_url: str
    name: str
    extra: str = ""
    columns: str = '{ name = "pk", type = "string", required = true }'
    last: Any = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.dir / "s3tstream.toml"

    @property
    def state_path(self) -> Path:
        return self.dir / ".s3tstream" / f"{self.name}.json"

    def write(self, extra: str | None = None, columns: str | None = None) -> Path:
        if extra is not None:
            self.extra = extra
        if columns is not None:
            self.columns = columns
        self.config_path.write_text(
            f'[stack]\nname = "{self.name}"\nendpoint_url = "{self.endpoint_url}"\n'
            f"poll_interval = 0.01\nwait_timeout = 30\nmax_attempts = 3\n"
            f"[table]\ncolumns = [{self.columns}]\n{self.extra}\n",
            encoding="utf-8",
        )
        return self.config_path

    def cli(self, *args: str, ok: bool | None = True, env: dict[str, str] | None = None) -> Any:
        """Run the real CLI in process. ok=True asserts exit 0, ok=False asserts non-zero."""
        from typer.testing import CliRunner

        from s3tstream.cli.app import app

        runner = CliRunner()
        result = runner.invoke(app, [*args], env={"S3TSTREAM_CONFIG": str(self.config_path), **(env or {})}, catch_exceptions=True)
        self.last = result
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        if ok is True:
            assert result.exit_code == 0, f"{args} exited {result.exit_code}:\n{result.output}"
        elif ok is False:
            assert result.exit_code != 0, f"{args} unexpectedly succeeded:\n{result.output}"
        return result

    def json(self, *args: str, ok: bool | None = True) -> Any:
        r = self.cli(*args, "--output", "json", ok=ok)
        return json.loads(r.stdout)

    def client(self, service: str) -> Any:
        return boto_client(self.endpoint_url, service)

    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def purge(self) -> None:
        """`down --yes --purge-errors`, then delete any table bucket named after the stack."""
        teardown(self)


@pytest.fixture
def stack(tmp_path: Path, sandbox) -> StackEnv:
    env = StackEnv(dir=tmp_path, endpoint_url=sandbox.endpoint_url, name="t" + uuid.uuid4().hex[:8])
    env.write()
    yield env
    teardown(env)


def _delete_table_bucket(s3t: Any, arn: str) -> None:
    for ns in s3t.list_namespaces(tableBucketARN=arn).get("namespaces", []):
        for t in s3t.list_tables(tableBucketARN=arn, namespace=ns["namespace"][0]).get("tables", []):
            s3t.delete_table(tableBucketARN=arn, namespace=ns["namespace"][0], name=t["name"])
        s3t.delete_namespace(tableBucketARN=arn, namespace=ns["namespace"][0])
    s3t.delete_table_bucket(tableBucketARN=arn)


def _table_buckets_in_process() -> dict[str, Any]:
    """ARN -> its backend, for every table bucket in this process's sandbox state. Every
    SandboxServer of a process shares moto's backends, so a bucket left by a test that started a
    server of its own counts against the quota of every later test. Read in process (no request),
    and nothing at all for a test process that never loaded the sandbox."""
    import sys

    models = sys.modules.get("moto.s3tables.models")
    if models is None:
        return {}
    return {arn: be for regions in list(models.s3tables_backends.values()) for be in list(regions.values())
            for arn in list(be.table_buckets)}


@pytest.fixture(autouse=True)
def _sweep_table_buckets(request):
    """Any test leaves no table bucket behind, whoever made it and on whichever server: the
    sandbox enforces AWS's quota of 10 table buckets a Region, per process."""
    before = set(_table_buckets_in_process())
    yield
    leaked = {arn: be for arn, be in _table_buckets_in_process().items() if arn not in before}
    if not leaked:
        return
    if "sandbox" in request.fixturenames:  # through the API: its namespaces and tables go too
        s3t = boto_client(request.getfixturevalue("sandbox").endpoint_url, "s3tables")
        for arn in leaked:
            try:
                _delete_table_bucket(s3t, arn)
            except Exception as e:  # never hide the test's own result
                print(f"sweep of {arn}: {e}")
    for arn, be in leaked.items():  # a server the test started itself is gone: drop it from the state
        be.table_buckets.pop(arn, None)


def teardown(env: StackEnv) -> None:
    """Leave nothing behind: the sandbox is shared by every test of this process, and its
    quotas (10 table buckets a Region) are checked like AWS's. Tests call it as stack.purge()
    when they must clean up before restoring shared sandbox settings."""
    from s3tstream.aws.client import CALLS

    before = list(CALLS.calls)
    try:
        if env.state_path.exists():
            from typer.testing import CliRunner

            from s3tstream.cli.app import app

            CliRunner().invoke(app, ["down", "--yes", "--purge-errors"], env={"S3TSTREAM_CONFIG": str(env.config_path)})
        s3t = env.client("s3tables")
        for b in s3t.list_table_buckets(prefix=env.name).get("tableBuckets", []):
            _delete_table_bucket(s3t, b["arn"])
    except Exception as e:  # a failed sweep must not hide the test's own result
        print(f"teardown of {env.name}: {e}")
    finally:
        CALLS.calls[:] = before


@pytest.fixture
def calls():
    """The process-wide AWS call log, cleared for the test."""
    from s3tstream.aws.client import CALLS

    CALLS.clear()
    yield CALLS
    CALLS.clear()
