"""What create-firehose's resources share: IAM-propagation retries, tags, the error bucket's name.

AWS behaviour (aws-notes "Firehose"): right after the roles are created, CreateDeliveryStream
fails with messages naming the role (IAM_PROPAGATION_MESSAGES) and CreateFunction with "The
role defined for the function cannot be assumed by Lambda": both are retried with bounded backoff.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from botocore.exceptions import ClientError

from s3tstream.aws.client import error_code, error_message, sleep
from s3tstream.provision.resource import Ctx

if TYPE_CHECKING:
    from s3tstream.aws.client import Identity

# aws-notes: messages CreateDeliveryStream answers (InvalidArgumentException) while a new
# role is not yet usable by Firehose.
IAM_PROPAGATION_MESSAGES = (
    "Firehose is unable to assume role",
    "is not authorized to",
    "Access was denied",
    "Verify that the IAM role has access",
)
FIREHOSE_RETRY_CODES = ("InvalidArgumentException",)
LAMBDA_ROLE_MESSAGE = "cannot be assumed by Lambda"
# Bounded backoff: attempt n waits min(poll * 2**n, poll * IAM_RETRY_CAP) seconds. With the
# default poll interval (5 s) and 8 attempts: 5+10+20+30*4 = 155 s, "a minute or two".
IAM_RETRY_ATTEMPTS = 8
IAM_RETRY_CAP = 6.0
_sleep = sleep  # Ctrl-C ends it at once; tests replace it to count waits


def is_firehose_iam_propagation(e: BaseException) -> bool:
    """True for the CreateDeliveryStream errors that mean "the new role is not usable yet"."""
    if not isinstance(e, ClientError) or error_code(e) not in FIREHOSE_RETRY_CODES:
        return False
    msg = error_message(e)
    return any(m.lower() in msg.lower() for m in IAM_PROPAGATION_MESSAGES)


def is_lambda_iam_propagation(e: BaseException) -> bool:
    return (
        isinstance(e, ClientError)
        and error_code(e) == "InvalidParameterValueException"
        and LAMBDA_ROLE_MESSAGE in error_message(e)
    )


def retry_delays(ctx: Ctx) -> list[float]:
    attempts = int(ctx.options.get("iam_retry_attempts") or IAM_RETRY_ATTEMPTS)
    return [min(ctx.poll * 2**i, ctx.poll * IAM_RETRY_CAP) for i in range(max(0, attempts - 1))]


def retry_iam(ctx: Ctx, what: str, fn: Callable[[], Any], retryable: Callable[[BaseException], bool]) -> Any:
    """Call fn(); while it fails with an IAM-propagation error, wait and call it again."""
    delays = retry_delays(ctx)
    for i in range(len(delays) + 1):
        try:
            return fn()
        except ClientError as e:
            if not retryable(e) or i == len(delays):
                raise
            ctx.progress(
                f"{what}: IAM changes not visible yet ({error_message(e)}); "
                f"retry {i + 1}/{len(delays)} in {delays[i]:.1f}s"
            )
            _sleep(delays[i])
    raise AssertionError("unreachable")  # pragma: no cover




def tags_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def recorded_owned(ctx: Ctx, kind: str, name: str) -> bool:
    rec = ctx.state.get(kind, name)
    return rec is not None and rec.ownership == "owned"


def ident_of(ctx: Ctx) -> "Identity":
    return ctx.aws.identity()


def error_bucket_name(ctx: Ctx) -> str:
    return ctx.names.error_bucket(ident_of(ctx).account)
