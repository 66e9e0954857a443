"""Runs inside a sandbox Lambda worker process: the Python runtime's part of AWS Lambda.

Started as ``python -I -S _lambda_bootstrap.py <task root> <handler>`` with the function's
environment only (see lambda_runner.py). ``-I -S`` keep the sandbox's own packages (and the
installed s3tstream) out of ``sys.path``: the handler is imported from the deployed zip,
extracted in ``<task root>``, and the standard library. Standard library only.

Protocol on the pipes: one JSON line per request on stdin
``{"requestId", "payload" (JSON text), "deadlineMs" (epoch ms), "arn", "version"}``, one JSON
line per response on the original stdout ``{"ok": bool, "payload": JSON text, "logs": text}``.
What the handler prints (stdout or stderr) is captured per invocation and returned as ``logs``.
Errors use the Python runtime's payload shape: ``{"errorMessage", "errorType", "requestId",
"stackTrace"}``; import failures are ``Runtime.ImportModuleError`` / ``Runtime.HandlerNotFound``,
an unserialisable result ``Runtime.MarshalError``, as the AWS Python runtime reports them.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import time
import traceback


class LambdaContext:
    """The subset of the Lambda context object handlers commonly use."""

    def __init__(self, request: dict) -> None:
        self.aws_request_id = request["requestId"]
        self.invoked_function_arn = request.get("arn", "")
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = request.get("version") or os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = int(request.get("deadlineMs") or 0)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc_type: str, message: str, request_id: str, stack: list[str] | None = None) -> dict:
    return {"errorMessage": message, "errorType": exc_type, "requestId": request_id, "stackTrace": stack or []}


def _load(handler: str) -> tuple[object | None, dict | None]:
    """The handler function, or the error every invocation answers with (like Lambda's init)."""
    modname, _, fname = handler.rpartition(".")
    if not modname or not fname:
        return None, _error("Runtime.MalformedHandlerName", f"Bad handler '{handler}': not enough values to unpack", "")
    modname = modname.replace("/", ".")
    try:
        module = importlib.import_module(modname)
    except Exception as exc:  # noqa: BLE001 - reported like Lambda's Python runtime
        return None, _error("Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}", "")
    fn = getattr(module, fname, None)
    if fn is None:
        return None, _error("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'", "")
    return fn, None


def main() -> None:
    task_root, handler = sys.argv[1], sys.argv[2]
    sys.path.insert(0, task_root)
    os.chdir(task_root)
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    proto_in = sys.stdin
    logs = io.StringIO()
    sys.stdout = sys.stderr = logs  # handler output is captured per invocation
    fn, init_error = _load(handler)
    for line in proto_in:
        if not line.strip():
            continue
        request = json.loads(line)
        rid = request["requestId"]
        logs.seek(0)
        logs.truncate()
        ok = False
        try:
            if init_error is not None:
                payload = json.dumps({**init_error, "requestId": rid})
            else:
                event = json.loads(request["payload"])
                result = fn(event, LambdaContext(request))  # type: ignore[operator]
                try:
                    payload = json.dumps(result)
                    ok = True
                except (TypeError, ValueError) as exc:
                    payload = json.dumps(_error("Runtime.MarshalError", f"Unable to marshal response: {exc}", rid))
        except Exception as exc:  # noqa: BLE001 - the handler raised: an "Unhandled" function error
            tb = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
            stack = traceback.format_list(tb)  # the handler's frames only, like Lambda's runtime
            payload = json.dumps(_error(type(exc).__name__, str(exc), rid, stack))
            traceback.print_exc(file=logs)
        proto_out.write(json.dumps({"ok": ok, "payload": payload, "logs": logs.getvalue()}) + "\n")
        proto_out.flush()


if __name__ == "__main__":
    main()
