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


@pytest.fixture(scope="session")
def sandbox():
    """One sandbox endpoint per test process (pytest-xdist workers each get their own)."""
    from s3tstream.sandbox.server import SandboxServer

    srv = SandboxServer(port=0)
    srv.start()
    yield srv
    srv.stop()


def boto_client(endpoint_url: str, service: str, region: str = "us-east-1") -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, region_name=region, endpoint_url=endpoint_url,
        config=Config(retries={"total_max_attempts": 1}, s3={"addressing_style": "path"}),
    )


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


@pytest.fixture
def stack(tmp_path: Path, sandbox) -> StackEnv:
    env = StackEnv(dir=tmp_path, endpoint_url=sandbox.endpoint_url, name="t" + uuid.uuid4().hex[:8])
    env.write()
    return env


@pytest.fixture
def calls():
    """The process-wide AWS call log, cleared for the test."""
    from s3tstream.aws import CALLS

    CALLS.clear()
    yield CALLS
    CALLS.clear()
