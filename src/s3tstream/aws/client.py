"""The one place that builds boto3 sessions and clients and turns ClientError into our errors.

Every client gets the profile, Region and endpoint_url from the config and botocore's
`standard` retry mode (throttling and 5xx retried with backoff). A process-wide call log
counts calls by operation, so tests can assert that a second `up` mutates nothing.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (BotoCoreError, ClientError, ConnectionError as BotoConnectionError, NoCredentialsError,
                                 ProfileNotFound)
from botocore.parsers import ResponseParserError

from s3tstream import __version__
from s3tstream.errors import CANCEL, AwsError, UsageError, WaitTimeout, raise_if_cancelled

if TYPE_CHECKING:
    from s3tstream.config.model import Config

# The sandbox accepts any credentials; these are used for a loopback endpoint_url when none are
# configured (never for any other endpoint: a real AWS call must never go out with them).
SANDBOX_KEY = "sandbox"
CONNECT_TIMEOUT = 10  # seconds; also bounds how long an unreachable endpoint_url takes to report
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


_LOADERS: dict[Any, Any] = {}
_LOADERS_LOCK = threading.Lock()


def share_model_loader(session: "boto3.Session") -> None:
    """Give the session the process's botocore model loader. Each new session would otherwise parse
    every service's JSON model again (tens of ms a client): a process that opens several stacks (the
    demo, `health` over many tables, the tests) paid it on every one. The models are read-only; one
    loader per data path, so a profile's AWS_DATA_PATH still gets its own."""
    core = session._session
    path = core.get_config_variable("data_path")
    key = tuple(path) if isinstance(path, list) else path
    with _LOADERS_LOCK:
        loader = _LOADERS.get(key)
        if loader is None:
            # boto3.Session has already added its own data folder to this loader's search path
            _LOADERS[key] = core.get_component("data_loader")
        else:
            core.register_component("data_loader", loader)


def _has_credentials(session: "boto3.Session") -> bool:
    """Only for a loopback endpoint_url (the sandbox): are there credentials, without asking the
    EC2/container metadata services (meaningless for a local endpoint, and a 1 s timeout each)?"""
    resolver = session._session.get_component("credential_provider")
    for name in ("iam-role", "container-role"):
        resolver.remove(name)
    return session.get_credentials() is not None


def _before_call(name: str) -> None:
    # after Ctrl-C, a worker thread makes no further call (its step stops where it is)
    raise_if_cancelled(f"about to call {name}")
    CALLS.add(name)


@dataclass
class _Shared:
    """One boto3 session and its clients, for every Aws of this process with the same settings."""

    session: Any
    dummy_credentials: bool
    clients: dict[str, Any]
    lock: threading.Lock


# Building a botocore client costs ~15 ms (copies of the session's event handlers, a generated
# class): a process that opens several stacks or one stack many times (the demo, `health` over
# tables, the tests) built the same clients again for each. Keyed by everything a client is made
# from: the stack's profile, Region, endpoint and attempts, and the AWS_* environment (credentials,
# config files), so a changed setting gets new clients. Clients are thread-safe; sessions are
# only used here, under the lock.
_SHARED: dict[tuple[Any, ...], _Shared] = {}
_SHARED_LOCK = threading.Lock()
_ENV_PREFIXES = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def forget_clients() -> None:
    """Drop the shared sessions and clients (the next Aws builds new ones)."""
    with _SHARED_LOCK:
        _SHARED.clear()


def _shared_key(cfg: "Config") -> tuple[Any, ...]:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_ENV_PREFIXES)))
    s = cfg.stack
    return (s.profile or None, s.region, s.endpoint_url, s.max_attempts, env)


class Aws:
    """Sessions and clients for one stack (shared with every other Aws of the process whose
    settings are the same, see _SHARED)."""

    def __init__(self, cfg: "Config") -> None:
        self.cfg = cfg
        self.region = cfg.stack.region
        self.endpoint_url = cfg.stack.endpoint_url
        self._identity: Identity | None = None
        self._reachable = False
        key = _shared_key(cfg)
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is None:
                shared = _SHARED[key] = self._new_session(cfg)
        self.session = shared.session
        # True when the sandbox's dummy credentials are used (the CLI says so)
        self.dummy_credentials = shared.dummy_credentials
        self._clients = shared.clients
        self._lock = shared.lock

    def _new_session(self, cfg: "Config") -> _Shared:
        try:
            session = boto3.Session(profile_name=cfg.stack.profile or None, region_name=self.region)
        except ProfileNotFound as e:
            raise UsageError(str(e), "fix stack.profile or create the profile with `aws configure`") from None
        dummy = is_loopback(self.endpoint_url) and not _has_credentials(session)
        if dummy:
            session = boto3.Session(aws_access_key_id=SANDBOX_KEY, aws_secret_access_key=SANDBOX_KEY,
                                    region_name=self.region)
        share_model_loader(session)
        return _Shared(session, dummy, {}, threading.Lock())

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                conf = BotoConfig(
                    # total_max_attempts counts the first call too ("max_attempts" would count retries only)
                    retries={"mode": "standard", "total_max_attempts": self.cfg.stack.max_attempts},
                    user_agent_extra=f"s3tstream/{__version__}",
                    connect_timeout=CONNECT_TIMEOUT,
                    read_timeout=70,
                    # a local endpoint serves every bucket on one host
                    s3={"addressing_style": "path"} if self.endpoint_url else None,
                )
                c = self.session.client(service, endpoint_url=self.endpoint_url, config=conf)
                sname = c.meta.service_model.service_name
                c.meta.events.register("before-call.*.*", lambda model, **_: _before_call(f"{sname}:{model.name}"))
                self._clients[service] = c
            return self._clients[service]

    def check_endpoint(self) -> None:
        """With an endpoint_url, one TCP connect before any call: a stopped sandbox or a wrong port
        is one clear error within CONNECT_TIMEOUT, not botocore's retries of every call."""
        if not self.endpoint_url or self._reachable:
            return
        parts = urlsplit(self.endpoint_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT).close()
        except OSError as e:
            raise unreachable(self.endpoint_url, e.strerror or str(e) or type(e).__name__) from None
        self._reachable = True

    def identity(self) -> Identity:
        if self._identity is None:
            try:
                r = self.client("sts").get_caller_identity()
            except NoCredentialsError:
                raise UsageError(
                    "no AWS credentials found",
                    "configure credentials (aws configure, AWS_PROFILE or stack.profile); for the sandbox any value works",
                ) from None
            except (ClientError, BotoCoreError, ResponseParserError) as e:
                raise translate(e, "checking credentials (sts:GetCallerIdentity)", self.endpoint_url) from None
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
    "NoSuchKey", "404", "NotFound", "ResourceNotFound",  # SNS ListTagsForResource on a deleted topic
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


_T = TypeVar("_T")


def unless_gone(call: Callable[[], _T]) -> _T | None:
    """call()'s answer, or None when AWS says the resource does not exist (is_not_found); any
    other error is raised. For reads of a resource that may have been deleted meanwhile."""
    try:
        return call()
    except ClientError as e:
        if is_not_found(e):
            return None
        raise


def is_loopback(url: str | None) -> bool:
    """True for an endpoint_url on this machine (the sandbox): localhost or a loopback address."""
    host = urlsplit(url).hostname if url else None
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_hint(endpoint_url: str | None) -> str:
    if not endpoint_url:
        return "check the network and [stack] region; set [stack] endpoint_url only for the local sandbox"
    if is_loopback(endpoint_url):
        return (f"start the sandbox (`s3tstream sandbox start` prints its endpoint_url), or fix [stack] endpoint_url "
                f"({endpoint_url}) to the one it prints")
    return f"check [stack] endpoint_url ({endpoint_url}); remove it to use AWS"


def unreachable(endpoint_url: str | None, reason: str) -> AwsError:
    where = f"the endpoint {endpoint_url} ([stack] endpoint_url)" if endpoint_url else "AWS"
    return AwsError(f"cannot reach {where}: {reason}", endpoint_hint(endpoint_url), code="endpoint")


def is_not_configured(e: BaseException) -> bool:
    """The resource exists but this optional setting (tags, policy, lifecycle, ...) was never set."""
    return isinstance(e, ClientError) and error_code(e) in NOT_CONFIGURED


def translate(e: ClientError | BotoCoreError | ResponseParserError, doing: str, endpoint_url: str | None = None) -> AwsError:
    """One ClientError -> one AwsError saying what we were doing and what to try."""
    if isinstance(e, BotoConnectionError):  # refused, DNS, connect/read timeouts
        if endpoint_url is None:  # a caller without the config: a loopback URL can only be endpoint_url
            url = str(getattr(e, "kwargs", {}).get("endpoint_url") or "")
            endpoint_url = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" if is_loopback(url) else None
        return unreachable(endpoint_url, f"{doing}: {e}")
    if isinstance(e, ResponseParserError) or (endpoint_url and isinstance(e, ClientError) and error_code(e).isdigit()
                                               and not e.response.get("Error", {}).get("Message")):
        # something answers on endpoint_url, but not with AWS's protocol (another web server on the port)
        return AwsError(f"{doing}: the endpoint {endpoint_url or ''} answered, but not like AWS ({str(e)[:120]})",
                        endpoint_hint(endpoint_url), code="endpoint")
    if isinstance(e, BotoCoreError):
        return AwsError(f"{doing}: {e}", "check [stack] endpoint_url and the network, then run the command again")
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


def sleep(seconds: float) -> None:
    """time.sleep that Ctrl-C ends at once in any thread (Interrupted)."""
    if CANCEL.wait(seconds):
        raise_if_cancelled("waiting")


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
        raise_if_cancelled(f"waiting for {what}")
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
        if CANCEL.wait(delay):
            raise_if_cancelled(f"waiting for {what} (last status {status})")
        delay = min(cap, delay * 1.5)


def paginate(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[Any]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(key, [])
