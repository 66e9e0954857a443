"""moto's JSON responses, made cheaper where the sandbox spends its time, with the same bytes.

moto serializes a response by walking botocore's output shape: per member of every structure
a value picker tries the member's aliases (``S``, ``s``, ... for all ten members of a DynamoDB
AttributeValue, most of them absent), plus a path push/pop. For the data-heavy responses of a
backfill that walk was most of the sandbox's CPU: Scan/Query/BatchGetItem ~0.3 ms an item,
GetRecords and PutRecords ~0.1 ms a record. So, for the shapes below, values already in moto's
plain form are converted directly, giving what moto's walk gives (tests compare the two); any
other value, and every other shape and service, still takes moto's walk:

- DynamoDB ``AttributeValue`` (item trees: Items, Item, Attributes, Keys, LastEvaluatedKey,
  ...): the one-member dicts of ``moto.dynamodb.models.utilities.dynamo_to_dict``; B and BS are
  base64-encoded (moto's ``_base64``), a member whose value is None is left out, strings,
  booleans and lists of strings stay as they are.
- Kinesis ``Record`` (GetRecords) and ``PutRecordsResultEntry`` (PutRecords): flat dicts whose
  keys are member names; strings as they are, blobs base64-encoded, timestamps (and anything
  else) through moto's own member serializer.

Also: moto's ``BaseResponse._enrich_response`` ran a regular expression over every response
body to fill an XML ``<RequestId>`` (15% of a GetRecords); it is skipped for a body without one.
And DynamoDB's ``dynamo_to_dict`` (DynamoType trees -> plain dicts, before serializing) imported
DynamoType on every call, once per attribute (30% of a Scan): the same function without that.

moto 5.2.5 internals relied on: ``moto.core.serialize.BaseJSONSerializer`` ``._serialize_type_map``
/ ``_serialize_type_list`` / ``_serialize_type_structure`` (serialized, value, shape, key),
``._serialize``, ``._default_serialize``, ``._base64``, ``._value_picker.response_transformers``,
``.service_model``; ``moto.core.responses.BaseResponse._enrich_response(headers, body)``
(a staticmethod; the regex is its only use of the body); ``moto.dynamodb.responses.dynamo_to_dict``
(the name DynamoResult calls; ``moto.dynamodb.models.utilities.dynamo_to_dict`` is the original).
"""

from __future__ import annotations

import base64
import functools
from datetime import datetime
from typing import Any, Callable

from s3tstream.sandbox._pin import check_moto_version

check_moto_version()

from moto.core.responses import BaseResponse  # noqa: E402
from moto.core.serialize import BaseJSONSerializer  # noqa: E402
from moto.dynamodb import responses as dynamodb_responses  # noqa: E402
from moto.dynamodb.models import utilities as dynamodb_utilities  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402


class _Unusual(Exception):
    """A value the direct conversion does not handle: moto's walk serializes it."""


# --- DynamoDB AttributeValue ----------------------------------------------------------------
_PLAIN = frozenset({"S", "N", "BOOL", "NULL"})
_STRINGS = frozenset({"SS", "NS"})
_TAGS = _PLAIN | _STRINGS | {"B", "BS", "M", "L"}


def _b64(value: Any) -> str:
    if isinstance(value, str):  # as moto's ResponseSerializer._base64
        value = value.encode("utf-8")
    return base64.b64encode(value).strip().decode("utf-8")


def attribute_value(v: Any) -> dict[str, Any]:
    """One AttributeValue (moto's plain form) -> its JSON form, as moto's walk makes it."""
    if type(v) is not dict or len(v) != 1:
        raise _Unusual
    (tag, x), = v.items()
    if tag not in _TAGS:
        raise _Unusual  # an alias ("s") moto's picker would find
    if x is None:
        return {}  # moto leaves a member whose value is None out
    if tag in _PLAIN:
        if tag in ("S", "N") and type(x) is not str:
            raise _Unusual  # moto's walk would str() it
        return v
    if tag == "M":
        if type(x) is not dict:
            raise _Unusual
        return {"M": {k: attribute_value(y) for k, y in x.items()}}
    if tag == "L":
        if type(x) is not list:
            raise _Unusual
        return {"L": [attribute_value(y) for y in x]}
    if tag in _STRINGS:
        if type(x) is not list or not all(type(y) is str for y in x):
            raise _Unusual
        return v
    if tag == "B":
        return {"B": _b64(x)}
    if type(x) is not list:  # BS
        raise _Unusual
    return {"BS": [_b64(y) for y in x]}


def dynamo_to_dict(obj: Any) -> Any:
    """moto's ``dynamo_to_dict`` (same result, same order of checks), with DynamoType imported
    once instead of on every call; plain dicts, lists and strings are recognised first."""
    kind = type(obj)
    if kind is str:
        return obj
    if kind is dict:
        return {k: dynamo_to_dict(v) for k, v in obj.items()}
    if kind is list:
        return [dynamo_to_dict(v) for v in obj]
    if isinstance(obj, datetime):
        return obj
    if isinstance(obj, DynamoType):
        if obj.type == "B":
            return {"B": obj.value if isinstance(obj.value, bytes) else base64.b64decode(obj.value)}
        if obj.type == "BS":
            return {"BS": [v if isinstance(v, bytes) else base64.b64decode(v) for v in obj.value]}
        return {obj.type: dynamo_to_dict(obj.value)}
    if hasattr(obj, "to_json"):
        return dynamo_to_dict(obj.to_json())
    if isinstance(obj, dict):
        return {k: dynamo_to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [dynamo_to_dict(v) for v in obj]
    return obj


# --- flat structures (Kinesis records) ------------------------------------------------------
def flat_structure(ser: BaseJSONSerializer, v: Any, shape: Any) -> dict[str, Any]:
    """A dict whose keys are member names of ``shape`` -> its JSON form, as moto's walk makes it."""
    members = shape.members
    if type(v) is not dict or not v.keys() <= members.keys():
        raise _Unusual  # other keys may be aliases moto's picker would find
    out: dict[str, Any] = {}
    for name, member in members.items():
        x = v.get(name)
        if x is None:
            continue
        kind = member.type_name
        if "name" in member.serialization:
            ser._serialize(out, x, member, name)
        elif kind == "string" and type(x) is str:
            out[name] = x
        elif kind == "blob" and type(x) in (bytes, str):
            out[name] = ser._base64(x)
        else:
            ser._serialize(out, x, member, name)  # moto's own serializer for this member
    return out


Converter = Callable[[BaseJSONSerializer, Any, Any], Any]
DIRECT: dict[tuple[str, str], Converter] = {
    ("dynamodb", "AttributeValue"): lambda ser, v, shape: attribute_value(v),
    ("kinesis", "Record"): flat_structure,
    ("kinesis", "PutRecordsResultEntry"): flat_structure,
}

# moto's own methods (tests compare the direct conversion with them)
MOTO_SERIALIZE_MAP = BaseJSONSerializer._serialize_type_map
MOTO_SERIALIZE_LIST = BaseJSONSerializer._serialize_type_list
MOTO_SERIALIZE_STRUCTURE = BaseJSONSerializer._serialize_type_structure
MOTO_ENRICH_RESPONSE = BaseResponse._enrich_response
MOTO_DYNAMO_TO_DICT = dynamodb_utilities.dynamo_to_dict

_patched = False


def _converter(ser: BaseJSONSerializer, shape: Any) -> Converter | None:
    conv = DIRECT.get((ser.service_model.service_name, getattr(shape, "name", None)))
    if conv is not None and getattr(ser._value_picker, "response_transformers", None):
        return None  # moto would transform some values on the way
    return conv


def _install() -> None:
    global _patched
    if _patched:
        return

    @functools.wraps(MOTO_SERIALIZE_MAP)
    def serialize_type_map(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
        conv = _converter(self, shape.value)
        if conv is not None and type(value) is dict:
            try:
                converted = {k: conv(self, v, shape.value) for k, v in value.items()}
            except _Unusual:
                pass
            else:
                self._default_serialize(serialized, converted, shape, key)
                return
        MOTO_SERIALIZE_MAP(self, serialized, value, shape, key)

    @functools.wraps(MOTO_SERIALIZE_LIST)
    def serialize_type_list(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
        conv = _converter(self, shape.member)
        if conv is not None and type(value) is list:
            try:
                converted = [conv(self, v, shape.member) for v in value]
            except _Unusual:
                pass
            else:
                self._default_serialize(serialized, converted, shape, key)
                return
        MOTO_SERIALIZE_LIST(self, serialized, value, shape, key)

    @functools.wraps(MOTO_SERIALIZE_STRUCTURE)
    def serialize_type_structure(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
        conv = _converter(self, shape) if key else None
        if conv is not None:
            try:
                converted = conv(self, value, shape)
            except _Unusual:
                pass
            else:
                self._default_serialize(serialized, converted, shape, key)
                return
        MOTO_SERIALIZE_STRUCTURE(self, serialized, value, shape, key)

    def enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
        if isinstance(body, str) and "<RequestId>" not in body:
            headers, _ = MOTO_ENRICH_RESPONSE(headers, "")  # the headers as moto sets them; no RequestId to fill
            return headers, body
        return MOTO_ENRICH_RESPONSE(headers, body)

    BaseJSONSerializer._serialize_type_map = serialize_type_map  # type: ignore[method-assign]
    BaseJSONSerializer._serialize_type_list = serialize_type_list  # type: ignore[method-assign]
    BaseJSONSerializer._serialize_type_structure = serialize_type_structure  # type: ignore[method-assign]
    BaseResponse._enrich_response = staticmethod(enrich_response)  # type: ignore[method-assign,assignment]
    dynamodb_responses.dynamo_to_dict = dynamo_to_dict  # type: ignore[attr-defined]
    _patched = True


_install()
