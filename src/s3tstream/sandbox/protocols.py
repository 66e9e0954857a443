"""Which AWS operation a raw HTTP request is, and how each wire protocol answers errors.

Identification uses botocore's own service models, so it follows the SDK the product uses:
- signing name and region from the SigV4 credential scope of the Authorization header;
- ``json``: the ``X-Amz-Target: <targetPrefix>.<Operation>`` header;
- ``query`` / ``ec2``: the ``Action`` parameter (form body or query string);
- ``rest-json`` / ``rest-xml``: method + path against each operation's ``http.requestUri``, plus
  its required query keys and required header members (best effort: most specific wins);
- ``smithy-rpc-v2-cbor``: ``/service/<Service>/operation/<Operation>``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qs, unquote

# Signing name -> botocore service names that share it (checked in order). Any other signing
# name is tried as a service name itself.
SIGNING_ALIASES: dict[str, list[str]] = {
    "dynamodb": ["dynamodb", "dynamodbstreams"],
    "monitoring": ["cloudwatch"],
    "s3": ["s3", "s3control"],
    "email": ["ses", "sesv2"],
    "states": ["stepfunctions"],
    "execute-api": ["apigateway"],
    "elasticmapreduce": ["emr"],
}


@dataclasses.dataclass(frozen=True)
class ServiceInfo:
    name: str
    # operation -> input member name -> (location, wire name) for members bound to the uri,
    # querystring or headers (rest protocols)
    bound_members: dict[str, dict[str, tuple[str, str]]]
    protocol: str
    target_prefix: str | None
    json_version: str
    # (method, path regex, group -> member name, required query (key, value|None),
    #  required headers, score, operation), most specific first
    rest_ops: tuple[
        tuple[
            str,
            re.Pattern[str],
            dict[str, str],
            tuple[tuple[str, str | None], ...],
            tuple[str, ...],
            tuple[int, int],
            str,
        ],
        ...,
    ]
    operations: frozenset[str]


@dataclasses.dataclass
class Identified:
    service: str
    operation: str
    protocol: str
    region: str
    signing_name: str
    json_version: str
    path_params: dict[str, str]


_lock = threading.Lock()
_cache: dict[str, ServiceInfo | None] = {}


@functools.lru_cache(maxsize=1)
def _loader() -> Any:
    import botocore.loaders

    return botocore.loaders.create_loader()


def _pick_protocol(metadata: dict[str, Any]) -> str:
    protocols = metadata.get("protocols") or [metadata.get("protocol", "json")]
    # botocore's preference order
    for p in ("smithy-rpc-v2-cbor", "json", "rest-json", "rest-xml", "query", "ec2"):
        if p in protocols:
            return p
    return protocols[0]


def _compile_uri(
    request_uri: str,
) -> tuple[re.Pattern[str], dict[str, str], tuple[tuple[str, str | None], ...], tuple[int, int]]:
    path, _, query = request_uri.partition("?")
    regex = ""
    literal = 0
    names: dict[str, str] = {}
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
            greedy = name.endswith("+")
            name = name.rstrip("+")
            group = f"g{len(names)}"
            names[group] = name
            regex += f"(?P<{group}>.+)" if greedy else f"(?P<{group}>[^/]+)"
        else:
            literal += len(part)
            regex += re.escape(part)
    pattern = re.compile("^" + regex.rstrip("/") + "/?$")
    required: list[tuple[str, str | None]] = []
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        required.append((key, value if eq else None))
    return pattern, names, tuple(required), (len(required), literal)


def service_info(name: str) -> ServiceInfo | None:
    with _lock:
        if name in _cache:
            return _cache[name]
    try:
        model = _loader().load_service_model(name, "service-2")
    except Exception:  # noqa: BLE001 - unknown service name
        info = None
    else:
        md = model["metadata"]
        protocol = _pick_protocol(md)
        rest_ops = []
        bound: dict[str, dict[str, tuple[str, str]]] = {}
        if protocol in ("rest-json", "rest-xml"):
            for op_name, op in model["operations"].items():
                http = op.get("http", {})
                if "requestUri" not in http:
                    continue
                pattern, names, required, (_, literal) = _compile_uri(http["requestUri"])
                headers: list[str] = []
                shape = model["shapes"].get(op.get("input", {}).get("shape", ""), {})
                bound[op_name] = {
                    member: (ref["location"], ref.get("locationName", member))
                    for member, ref in shape.get("members", {}).items()
                    if ref.get("location") in ("uri", "querystring", "header", "headers")
                }
                for member in shape.get("required", []):
                    ref = shape.get("members", {}).get(member, {})
                    if ref.get("location") == "header":
                        headers.append(ref.get("locationName", member).lower())
                    elif ref.get("location") == "querystring":
                        key = ref.get("locationName", member)
                        if all(k != key for k, _ in required):
                            required = (*required, (key, None))
                score = (len(required) + len(headers), literal)
                rest_ops.append(
                    (http.get("method", "POST"), pattern, names, required, tuple(headers), score, op_name)
                )
            rest_ops.sort(key=lambda r: r[5], reverse=True)
        info = ServiceInfo(
            name=name,
            bound_members=bound,
            protocol=protocol,
            target_prefix=md.get("targetPrefix"),
            json_version=md.get("jsonVersion", "1.0"),
            rest_ops=tuple(rest_ops),
            operations=frozenset(model["operations"]),
        )
    with _lock:
        _cache[name] = info
    return info


def signing_scope(environ: dict[str, Any]) -> tuple[str, str] | None:
    """(signing name, region) from a SigV4 Authorization header, or None."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    m = re.search(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request", auth)
    if not m:
        return None
    return m.group(4).lower(), m.group(3)


def access_key(environ: dict[str, Any]) -> str | None:
    m = re.search(r"Credential=([^/,\s]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    return m.group(1) if m else None


def candidates(signing_name: str) -> list[str]:
    return SIGNING_ALIASES.get(signing_name, [signing_name])


def raw_path(environ: dict[str, Any]) -> str:
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        if "://" in raw:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        return raw.partition("?")[0]
    return environ.get("PATH_INFO", "/")


def identify(environ: dict[str, Any], read_body: Any) -> Identified | None:
    """Name the (service, operation) of a signed request, or None if it cannot be told.

    ``read_body()`` returns the request body (bytes) and is only called for query protocols.
    """
    scope = signing_scope(environ)
    if scope is None:
        return None
    signing_name, region = scope
    target = environ.get("HTTP_X_AMZ_TARGET")
    method = environ.get("REQUEST_METHOD", "GET").upper()
    path = raw_path(environ)
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    for name in candidates(signing_name):
        info = service_info(name)
        if info is None:
            continue
        if info.protocol == "json":
            if target and info.target_prefix and target.startswith(info.target_prefix + "."):
                op = target.split(".", 1)[1]
                return Identified(name, op, "json", region, signing_name, info.json_version, {})
            continue
        if info.protocol == "smithy-rpc-v2-cbor":
            m = re.match(r"^/service/[^/]+/operation/([^/]+)$", path)
            if m and unquote(m.group(1)) in info.operations:
                return Identified(name, unquote(m.group(1)), info.protocol, region, signing_name, "", {})
            if target and info.target_prefix and target.startswith(info.target_prefix + "."):
                op = target.split(".", 1)[1]
                return Identified(name, op, "json", region, signing_name, info.json_version, {})
            continue
        if info.protocol in ("query", "ec2"):
            action = (query.get("Action") or [None])[0]
            if action is None and "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", ""):
                form = parse_qs(read_body().decode("utf-8", "replace"))
                action = (form.get("Action") or [None])[0]
            if action in info.operations:
                return Identified(name, action, info.protocol, region, signing_name, "", {})
            continue
        # rest-json / rest-xml
        for op_method, pattern, names, required, headers, _score, op_name in info.rest_ops:
            if op_method != method:
                continue
            m = pattern.match(path)
            if not m:
                continue
            if any(k not in query or (v is not None and v not in query[k]) for k, v in required):
                continue
            if any("HTTP_" + h.upper().replace("-", "_") not in environ for h in headers):
                continue
            params = {names[g]: unquote(v) for g, v in m.groupdict().items()}
            return Identified(name, op_name, info.protocol, region, signing_name, "", params)
    return None


def rest_params(
    ident: Identified, query: dict[str, list[str]], headers: dict[str, str]
) -> dict[str, Any]:
    """Input members bound to the path, query string or headers, by member name (as strings)."""
    info = service_info(ident.service)
    if info is None:
        return dict(ident.path_params)
    out: dict[str, Any] = {}
    for member, (location, wire) in info.bound_members.get(ident.operation, {}).items():
        if location == "uri" and wire in ident.path_params:
            out[member] = ident.path_params[wire]
        elif location == "querystring" and wire in query:
            values = query[wire]
            out[member] = values[0] if len(values) == 1 else values
        elif location == "header" and wire.lower() in headers:
            out[member] = headers[wire.lower()]
    return out


# --- responses ------------------------------------------------------------------------------


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _cbor_text(s: str) -> bytes:
    data = s.encode()
    n = len(data)
    if n < 24:
        head = bytes([0x60 | n])
    elif n < 256:
        head = bytes([0x78, n])
    elif n < 65536:
        head = bytes([0x79]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x7A]) + n.to_bytes(4, "big")
    return head + data


def error_response(
    protocol: str, code: str, message: str, status: int = 400, json_version: str = "1.0"
) -> tuple[int, list[tuple[str, str]], bytes]:
    """(status, headers, body) of an AWS error in ``protocol``'s wire format."""
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id), ("x-amz-request-id", request_id)]
    if protocol == "json":
        headers += [
            ("Content-Type", f"application/x-amz-json-{json_version}"),
            ("x-amzn-ErrorType", code),
        ]
        body = json.dumps({"__type": code, "message": message}).encode()
    elif protocol == "rest-json":
        headers += [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
        body = json.dumps({"__type": code, "message": message}).encode()
    elif protocol == "smithy-rpc-v2-cbor":
        headers += [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor")]
        body = bytes([0xA2]) + _cbor_text("__type") + _cbor_text(code)
        body += _cbor_text("message") + _cbor_text(message)
    elif protocol == "rest-xml":
        headers += [("Content-Type", "application/xml")]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{_xml_escape(code)}</Code><Message>{_xml_escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        ).encode()
    elif protocol == "ec2":
        headers += [("Content-Type", "text/xml")]
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{_xml_escape(code)}</Code>"
            f"<Message>{_xml_escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        ).encode()
    else:  # query
        kind = "Receiver" if status >= 500 else "Sender"
        headers += [("Content-Type", "text/xml")]
        body = (
            f'<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error>'
            f"<Type>{kind}</Type><Code>{_xml_escape(code)}</Code>"
            f"<Message>{_xml_escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
    return status, headers, body


def success_response(
    protocol: str, body: Any, status: int = 200, extra_headers: dict[str, str] | None = None,
    json_version: str = "1.0",
) -> tuple[int, list[tuple[str, str]], bytes]:
    request_id = str(uuid.uuid4())
    headers = [("x-amzn-RequestId", request_id)]
    if isinstance(body, bytes | str):
        payload = body.encode() if isinstance(body, str) else body
        ctype = "application/octet-stream"
    else:
        payload = json.dumps(body if body is not None else {}, default=str).encode()
        ctype = f"application/x-amz-json-{json_version}" if protocol == "json" else "application/json"
    if not any(k.lower() == "content-type" for k in (extra_headers or {})):
        headers.append(("Content-Type", ctype))
    headers += list((extra_headers or {}).items())
    return status, headers, payload
