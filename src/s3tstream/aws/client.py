"""The one place that builds boto3 sessions and clients and turns ClientError into our errors.

Every client gets the profile, Region and endpoint_url from the config and botocore's
`standard` retry mode (throttling and 5xx retried with backoff). A process-wide call log
counts calls by operation, so tests can assert that a second `up` mutates nothing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

from s3tstream import __version__
from s3tstream.errors import AwsError, UsageError, WaitTimeout

if TYPE_CHECKING:
    from s3tstream.config.model import Config

READ_PREFIXES = ("Describe", "Get", "List", "Head", "Query", "Scan", "Search", "BatchGet", "Select")


def is_mutating(operation: str) -> bool:
    return not operation.startswith(READ_PREFIXES)


class CallLog:
    """Counts AWS calls by 'service:Operation' (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[str] = []

    def add(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self.calls)

    def mutating(self) -> list[str]:
        with self._lock:
            return [c for c in self.calls if is_mutating(c.split(":", 1)[1])]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()


CALLS = CallLog()


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str
    user_id: str

    @property
    def partition(self) -> str:
        # arn:<partition>:sts::<account>:assumed-role/...: never a literal "aws".
        return self.arn.split(":")[1]


class Aws:
    """Sessions and clients for one stack."""

    def __init__(self, cfg: "Config", call_log: CallLog = CALLS) -> None:
        self.cfg = cfg
        self.region = cfg.stack.region
        self.endpoint_url = cfg.stack.endpoint_url
        self.call_log = call_log
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._identity: Identity | None = None
        try:
            self.session = boto3.Session(profile_name=cfg.stack.profile or None, region_name=self.region)
        except ProfileNotFound as e:
            raise UsageError(str(e), "fix stack.profile or create the profile with `aws configure`") from None

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                conf = BotoConfig(
                    # total_max_attempts counts the first call too ("max_attempts" would count retries only)
                    retries={"mode": "standard", "total_max_attempts": self.cfg.stack.max_attempts},
                    user_agent_extra=f"s3tstream/{__version__}",
                    connect_timeout=10,
                    read_timeout=70,
                    # a local endpoint serves every bucket on one host
                    s3={"addressing_style": "path"} if self.endpoint_url else None,
                )
                c = self.session.client(service, endpoint_url=self.endpoint_url, config=conf)
                sname = c.meta.service_model.service_name
                c.meta.events.register(
                    "before-call.*.*", lambda model, **_: self.call_log.add(f"{sname}:{model.name}")
                )
                self._clients[service] = c
            return self._clients[service]

    def identity(self) -> Identity:
        if self._identity is None:
            try:
                r = self.client("sts").get_caller_identity()
            except NoCredentialsError:
                raise UsageError(
                    "no AWS credentials found",
                    "configure credentials (aws configure, AWS_PROFILE or stack.profile); for the sandbox any value works",
                ) from None
            except ClientError as e:
                raise translate(e, "checking credentials (sts:GetCallerIdentity)") from None
            self._identity = Identity(account=r["Account"], arn=r["Arn"], user_id=r["UserId"])
        return self._identity

    def arn(self, service: str, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        ident = self.identity()
        reg = self.region if region is None else region
        acct = ident.account if account is None else account
        return f"arn:{ident.partition}:{service}:{reg}:{acct}:{resource}"


# ------------------------------------------------------------------ errors
NOT_FOUND = {
    "ResourceNotFoundException", "NotFoundException", "NoSuchEntity", "NoSuchBucket", "EntityNotFoundException",
    "NoSuchKey", "404", "NotFound",
}
ACCESS = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
          "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch"}


def error_code(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "") or str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def error_message(e: ClientError) -> str:
    return e.response.get("Error", {}).get("Message", "") or str(e)


# An optional setting of an existing resource that was never set (S3 answers these per setting).
NOT_CONFIGURED = {
    "NoSuchTagSet", "NoSuchTagSetError", "NoSuchBucketPolicy", "NoSuchLifecycleConfiguration",
    "NoSuchPublicAccessBlockConfiguration", "ServerSideEncryptionConfigurationNotFoundError",
}


def is_not_found(e: BaseException) -> bool:
    """The one test for "this resource does not exist" (every service's spelling)."""
    return isinstance(e, ClientError) and error_code(e) in NOT_FOUND


def is_not_configured(e: BaseException) -> bool:
    """The resource exists but this optional setting (tags, policy, lifecycle, ...) was never set."""
    return isinstance(e, ClientError) and error_code(e) in NOT_CONFIGURED


def translate(e: ClientError | BotoCoreError, doing: str) -> AwsError:
    """One ClientError -> one AwsError saying what we were doing and what to try."""
    if isinstance(e, BotoCoreError):
        return AwsError(f"{doing}: {e}", "check stack.endpoint_url / network, then run the command again")
    code, msg = error_code(e), error_message(e)
    op = e.operation_name
    if code in ACCESS:
        hint = f"the credentials lack permission for {op}; see the README's IAM section"
    elif code in ("ThrottlingException", "Throttling", "LimitExceededException", "TooManyRequestsException",
                  "ProvisionedThroughputExceededException", "RequestLimitExceeded"):
        hint = "AWS throttled the calls beyond the retry budget; wait a little and run the command again (it resumes)"
    elif code in NOT_FOUND:
        hint = "the resource is gone; `s3tstream status` shows what is recorded and live"
    else:
        hint = "fix the cause, then run the command again: it resumes where it stopped"
    return AwsError(f"{doing}: {op} failed with {code}: {msg}", hint, code="aws")


# ------------------------------------------------------------------ waiting
Progress = Callable[[str], None]


def wait_until(
    check: Callable[[], tuple[bool, str]],
    what: str,
    *,
    timeout: float,
    interval: float,
    progress: Progress | None = None,
    max_interval: float | None = None,
) -> str:
    """Poll check() -> (done, status) until done; backoff from interval up to max_interval.

    max_interval defaults to 2x interval (at most 30 s): it bounds how late a resource that
    became ready is noticed, which adds up along `up`'s critical path
    (benchmarks/up_critical_path.py). check() raises to fail fast on a final bad state.
    """
    start = time.monotonic()
    delay = interval
    cap = max_interval if max_interval is not None else max(interval, min(30.0, interval * 2))
    while True:
        done, status = check()
        elapsed = time.monotonic() - start
        if progress:
            progress(f"{what}: {status} ({elapsed:.0f}s)")
        if done:
            return status
        if elapsed + delay > timeout:
            raise WaitTimeout(
                f"timed out after {elapsed:.0f}s waiting for {what} (last status {status})",
                "run the command again to keep waiting: it resumes, or raise stack.wait_timeout",
            )
        time.sleep(delay)
        delay = min(cap, delay * 1.5)


def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])
