"""Lambda control plane: function states moto 5.2.5 skips.

On AWS a new function is ``State: Pending`` until it is ready, and after UpdateFunctionCode or
UpdateFunctionConfiguration ``LastUpdateStatus`` is ``InProgress`` until the change is applied;
a further update before that fails (ResourceConflictException), so callers wait
(https://docs.aws.amazon.com/lambda/latest/dg/functions-states.html). moto answers
Active/Successful at once. Here GetFunction and GetFunctionConfiguration answer Pending once
for a function they have not seen yet, and InProgress once for a function whose code or
configuration changed since they last answered; the call after that shows the steady state.
Everything else (create, update, invoke) stays moto's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any
from urllib.parse import unquote

from s3tstream.sandbox._pin import check_moto_version
from s3tstream.sandbox.registry import AwsError, SandboxRequest, handles, on_reset

check_moto_version()

from moto.awslambda.models import lambda_backends  # noqa: E402
from moto.awslambda.responses import LambdaResponse  # noqa: E402
from moto.core.exceptions import JsonRESTError, ServiceException  # noqa: E402

_lock = threading.Lock()
_seen: dict[tuple[str, str, str], str] = {}


@on_reset
def _reset() -> None:
    with _lock:
        _seen.clear()


def _function(req: SandboxRequest) -> tuple[Any, str, str | None]:
    name = unquote(req.path_params.get("FunctionName") or req.params.get("FunctionName") or "")
    qualifier = req.params.get("Qualifier") or None
    try:
        fn = lambda_backends[req.account_id][req.region].get_function(name, qualifier)
    except JsonRESTError as e:
        raise AwsError(e.error_type, e.message, int(getattr(e, "code", 404) or 404)) from None
    except ServiceException as e:
        raise AwsError(e.code, e.message, 404) from None
    return fn, name, qualifier


def _fingerprint(fn: Any) -> str:
    conf = dict(fn.get_configuration())
    conf.pop("LastModified", None)
    raw = json.dumps([id(fn), fn.code_sha_256, conf], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


def _lifecycle(req: SandboxRequest, fn: Any, conf: dict[str, Any]) -> dict[str, Any]:
    key = (req.account_id, req.region, fn.function_name)
    fp = _fingerprint(fn)
    with _lock:
        before = _seen.get(key)
        _seen[key] = fp
    if before is None:
        conf.update(State="Pending", StateReason="The function is being created.", StateReasonCode="Creating")
        conf.pop("LastUpdateStatus", None)
    elif before != fp:
        conf.update(LastUpdateStatus="InProgress", LastUpdateStatusReason="The function is being updated.",
                    LastUpdateStatusReasonCode="Updating")
    return conf


@handles("lambda", "GetFunction")
def get_function(req: SandboxRequest) -> dict[str, Any]:
    fn, name, qualifier = _function(req)
    code = fn.get_code()
    code["Configuration"] = _lifecycle(req, fn, LambdaResponse._set_configuration_qualifier(code["Configuration"], name, qualifier))
    return json.loads(json.dumps(code, default=str))


@handles("lambda", "GetFunctionConfiguration")
def get_function_configuration(req: SandboxRequest) -> dict[str, Any]:
    fn, name, qualifier = _function(req)
    conf = _lifecycle(req, fn, LambdaResponse._set_configuration_qualifier(fn.get_configuration(), name, qualifier))
    return json.loads(json.dumps(conf, default=str))
