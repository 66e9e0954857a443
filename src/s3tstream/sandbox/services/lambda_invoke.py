"""Lambda Invoke runs the deployed function (moto 5.2.5 needs Docker for it, or echoes the input).

The function runs from the zip moto holds, with its environment, in a warm worker process
(``s3tstream.sandbox.dataplane.lambda_runner``: the same runner the Firehose data plane uses),
so ``aws lambda invoke`` against the sandbox behaves like AWS:

- ``RequestResponse`` (default): 200; the handler's result as the payload; when the handler
  raises (or times out, or its result cannot be serialised) the payload is the Python runtime's
  error document ``{"errorMessage", "errorType", "requestId", "stackTrace"}`` and the header
  ``X-Amz-Function-Error: Unhandled``. ``X-Amz-Executed-Version`` names the version run.
- ``Event``: 202, empty body, the function runs in the background. ``DryRun``: 204.
- ``LogType: Tail``: ``X-Amz-Log-Result`` = base64 of the last 4 KB of what the handler printed.
- Errors (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html): unknown function ->
  ResourceNotFoundException (404, "Function not found: <arn>"); payload not JSON ->
  InvalidRequestContentException (400); payload over 6 MB -> RequestTooLargeException (413).

Limitation of the middleware (server.py, not this module): a payload that is JSON but not an
object (a list, a string) is refused with SerializationException before reaching this handler.

Importing this module also registers the Firehose data plane (worker ``firehose-delivery`` and
the ``/_sandbox/firehose/...`` control routes, ``s3tstream.sandbox.dataplane.delivery``).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.dataplane import lambda_runner
from s3tstream.sandbox.registry import AwsError, Reply, SandboxRequest, handles

check_moto_version()

log = logging.getLogger("s3tstream.sandbox.lambda")

INVOCATION_TYPES = ("Event", "RequestResponse", "DryRun")


def _header(req: SandboxRequest, name: str) -> str | None:
    return req.headers.get(name.lower())


@handles("lambda", "Invoke")
def invoke(req: SandboxRequest) -> Reply:
    name = req.path_params.get("FunctionName") or str(req.params.get("FunctionName") or "")
    qualifier = (req.query.get("Qualifier") or [None])[0]
    itype = _header(req, "X-Amz-Invocation-Type") or "RequestResponse"
    if itype not in INVOCATION_TYPES:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{itype}' at 'invocationType' failed to satisfy constraint: "
            f"Member must satisfy enum value set: [{', '.join(INVOCATION_TYPES)}]",
        )
    try:
        spec = lambda_runner.find_function(req.account_id, req.region, name, qualifier)
    except lambda_runner.FunctionNotFound as exc:
        raise AwsError("ResourceNotFoundException", str(exc), 404) from None
    payload = req.body or b""
    if len(payload) > lambda_runner.MAX_PAYLOAD:
        raise AwsError(
            "RequestTooLargeException",
            f"Request must be smaller than {lambda_runner.MAX_PAYLOAD} bytes for the InvokeFunction operation",
            413,
        )
    if payload.strip():
        try:
            json.loads(payload)
        except ValueError as exc:
            raise AwsError("InvalidRequestContentException", f"Could not parse request body into json: {exc}") from None
    headers = {"X-Amz-Executed-Version": spec.version}
    if itype == "DryRun":
        return Reply(body=b"", status=204, headers=headers)
    if itype == "Event":
        def run() -> None:
            try:
                lambda_runner.invoke(spec, payload)
            except Exception:  # noqa: BLE001 - asynchronous: nobody to answer
                log.exception("sandbox lambda %s: asynchronous invocation failed", spec.name)

        threading.Thread(target=run, name=f"lambda-event-{spec.name}", daemon=True).start()
        return Reply(body=b"", status=202, headers={})
    result = lambda_runner.invoke(spec, payload)
    if not result.ok:
        headers["X-Amz-Function-Error"] = "Unhandled"
    if (_header(req, "X-Amz-Log-Type") or "None") == "Tail":
        tail = _log_tail(result, spec)
        headers["X-Amz-Log-Result"] = base64.b64encode(tail.encode("utf-8")).decode("ascii")
    headers["Content-Type"] = "application/json"
    return Reply(body=result.payload, status=200, headers=headers)


def _log_tail(result: lambda_runner.InvokeResult, spec: lambda_runner.FunctionSpec) -> str:
    text = (
        f"START RequestId: {result.request_id} Version: {spec.version}\n"
        f"{result.logs}"
        f"END RequestId: {result.request_id}\n"
        f"REPORT RequestId: {result.request_id}\tDuration: {result.duration_ms:.2f} ms\t"
        f"Memory Size: {spec.memory_size} MB\n"
    )
    data = text.encode("utf-8")[-lambda_runner.LOG_TAIL:]
    return data.decode("utf-8", "ignore")


def invoke_function(account_id: str, region: str, name_or_arn: str, event: Any) -> Any:
    """In-process helper: invoke and return the decoded payload (raises on a function error)."""
    spec = lambda_runner.find_function(account_id, region, name_or_arn)
    result = lambda_runner.invoke_json(spec, event)
    if not result.ok:
        raise RuntimeError(result.payload.decode("utf-8", "replace"))
    return result.json()
