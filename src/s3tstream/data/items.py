"""Items: plain JSON <-> DynamoDB typed values by the table schema, key checks, batch writes.

Plain JSON (what `put-item --item` takes) is converted attribute by attribute with the type of
the column that reads the attribute (schema.py's effective columns, ``source`` or name):

============== ==============================================================================
column type    plain JSON value -> DynamoDB value
============== ==============================================================================
string         string -> S (anything else is refused: quote it)
boolean        true/false -> BOOL
int, long,     number, or a string holding a number -> N. Numbers are parsed as Decimal
float, double, (``json.loads(parse_float=Decimal)``): the N text is the literal the user
decimal(p,s)   wrote, never a float on the way
date           ISO date string -> S; a number (epoch seconds/ms) -> N
timestamp(tz)  ISO timestamp string -> S (kept as written); a number (epoch s/ms) -> N
binary         base64 string -> B
list<T>        array -> L, elements as T
map<string,T>  object -> M, values as T
struct<...>    object -> M, declared fields by their type, other fields inferred
(undeclared)   inferred: string -> S, number -> N, bool -> BOOL, null -> NULL, array -> L,
               object -> M (they reach the lake through table.extra_column, or are dropped)
============== ==============================================================================

``null`` is NULL for every type. Then every item is checked the way the pipeline will treat it:
the key attributes first (present, of the key's DynamoDB type, not empty, within DynamoDB's key
size limits), then DynamoDB's own limits (numbers, 400 KB), then the transform's mapping
(``transform.map_item`` with the settings create-firehose deploys), so an item that would land
in the error bucket is refused before anything is written.

Typed values here are DynamoDB's wire JSON: ``B`` is a base64 string. :func:`to_boto` and
:func:`from_boto` convert to and from what the low-level boto3 client takes and returns
(``bytes``), because botocore base64-encodes a ``str`` blob a second time.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from s3tstream.errors import AwsError, UsageError
from s3tstream.transform import types as T

if TYPE_CHECKING:
    from s3tstream.config.model import Config
    from s3tstream.transform import Settings

TAGS = ("S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS")
MAX_ITEM_BYTES = 400 * 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
MAX_NUMBER_DIGITS = 38
BATCH = 25  # BatchWriteItem: at most 25 put or delete requests
MAX_ERRORS_SHOWN = 5
_CTX = Context(prec=400)  # wide enough never to round a DynamoDB number


def norm_number(d: Decimal | str) -> str:
    """Canonical text of a number (trailing zeros dropped), never rounded."""
    return format(_CTX.normalize(Decimal(d)), "f")


def sig_digits(d: Decimal) -> int:
    return len(_CTX.normalize(d).as_tuple().digits)


class ItemError(UsageError):
    """An input item is not usable; nothing was written."""

    code = "bad-item"


class _Bad(ValueError):
    """Internal: a value problem; the message names the attribute path."""


# ------------------------------------------------------------------ schema
@dataclass(frozen=True)
class KeyAttr:
    name: str
    type: str  # S | N | B
    role: str  # partition | sort
    column: str


@dataclass(frozen=True)
class ItemSchema:
    table: str
    keys: tuple[KeyAttr, ...]
    # DynamoDB attribute -> Iceberg type of the column that reads it
    types: dict[str, T.IcebergType]
    settings: "Settings"

    @classmethod
    def from_config(cls, cfg: "Config") -> "ItemSchema":
        from s3tstream.lake.schema import effective_schema

        ts = effective_schema(cfg)
        types: dict[str, T.IcebergType] = {}
        for c in ts.columns:
            if c.source and c.role in ("key", "data"):
                types.setdefault(c.source, c.type)
        keys = tuple(
            KeyAttr(a.name, a.type, "partition" if i == 0 else "sort", col)
            for i, (a, col) in enumerate(cfg.key_columns())
        )
        return cls(cfg.names.source_table, keys, types, transform_settings(cfg))

    def key_of(self, item: dict[str, Any]) -> tuple:
        """A hashable key of a typed item (the key attributes' wire values)."""
        return tuple(next(iter(item[k.name].values())) for k in self.keys)

    def key_item(self, item: dict[str, Any]) -> dict[str, Any]:
        return {k.name: item[k.name] for k in self.keys}


def transform_settings(cfg: "Config") -> "Settings":
    """The transform's Settings exactly as create-firehose deploys them (steps/delivery/function.py)."""
    from s3tstream.provision.steps.delivery.function import transform_settings as doc
    from s3tstream.transform import Settings

    return Settings.from_dict(doc(cfg))


# ------------------------------------------------------------------ numbers
def _number_text(v: Any, path: str) -> str:
    """A plain number (int, Decimal, numeric string) -> DynamoDB N text, exact."""
    if isinstance(v, bool):
        raise _Bad(f"{path}: expected a number, got a boolean")
    if isinstance(v, int):
        d = Decimal(v)
    elif isinstance(v, Decimal):
        d = v
    elif isinstance(v, float):  # only from callers that did not parse with Decimal
        d = Decimal(repr(v))
    elif isinstance(v, str):
        try:
            d = Decimal(v.strip())
        except InvalidOperation:
            raise _Bad(f"{path}: expected a number, got the string {v[:40]!r}") from None
    else:
        raise _Bad(f"{path}: expected a number, got {_kind(v)}")
    check_number(d, path)
    if isinstance(v, int):
        return str(v)
    return str(d)


def check_number(d: Decimal, path: str) -> None:
    """DynamoDB numbers: finite, at most 38 significant digits, 1E-130 <= |x| < 1E126."""
    if not d.is_finite():
        raise _Bad(f"{path}: {d} is not a finite number")
    if d == 0:
        return
    digits = sig_digits(d)
    if digits > MAX_NUMBER_DIGITS:
        raise _Bad(f"{path}: {d} has {digits} significant digits; DynamoDB keeps at most {MAX_NUMBER_DIGITS}")
    adj = d.adjusted()
    if adj >= 126 or adj < -130:
        raise _Bad(f"{path}: {d} is out of DynamoDB's number range (1E-130 to 9.99E+125)")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, Decimal, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _b64(v: Any, path: str) -> str:
    if not isinstance(v, str):
        raise _Bad(f"{path}: binary values are base64 strings, got {_kind(v)}")
    try:
        binascii.a2b_base64(v, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{path}: not valid base64") from None
    return v


# ------------------------------------------------------------------ plain -> typed
def infer(v: Any, path: str) -> dict[str, Any]:
    """A plain value with no declared type -> typed value."""
    if v is None:
        return {"NULL": True}
    if isinstance(v, bool):
        return {"BOOL": v}
    if isinstance(v, (int, Decimal, float)):
        return {"N": _number_text(v, path)}
    if isinstance(v, str):
        return {"S": v}
    if isinstance(v, list):
        return {"L": [infer(x, f"{path}[{i}]") for i, x in enumerate(v)]}
    if isinstance(v, dict):
        return {"M": {str(k): infer(x, f"{path}.{k}") for k, x in v.items()}}
    raise _Bad(f"{path}: cannot store {_kind(v)}")


def to_typed(v: Any, t: T.IcebergType | None, path: str) -> dict[str, Any]:
    """A plain value -> typed value, guided by the column type (None: infer)."""
    if v is None:
        return {"NULL": True}
    if t is None:
        return infer(v, path)
    if isinstance(t, T.DecimalType):
        return {"N": _number_text(v, path)}
    if isinstance(t, T.Primitive):
        p = t.name
        if p == "string":
            if not isinstance(v, str):
                raise _Bad(f"{path}: column type is string, got {_kind(v)} (quote it)")
            return {"S": v}
        if p == "boolean":
            if not isinstance(v, bool):
                raise _Bad(f"{path}: column type is boolean, got {_kind(v)}")
            return {"BOOL": v}
        if p in ("int", "long", "float", "double"):
            return {"N": _number_text(v, path)}
        if p in ("timestamp", "timestamptz", "date"):
            if isinstance(v, str):
                try:
                    (date.fromisoformat if p == "date" else datetime.fromisoformat)(v)
                except ValueError:
                    want = "an ISO-8601 date like 2024-05-01" if p == "date" else "an ISO-8601 timestamp like 2024-05-01T12:00:00Z"
                    raise _Bad(f"{path}: column type is {p}; {v[:40]!r} is not {want}") from None
                return {"S": v}
            return {"N": _number_text(v, path)}
        if p == "binary":
            return {"B": _b64(v, path)}
        raise _Bad(f"{path}: unsupported column type {p}")  # pragma: no cover
    if isinstance(t, T.ListType):
        if not isinstance(v, list):
            raise _Bad(f"{path}: column type is {t}, got {_kind(v)}")
        return {"L": [to_typed(x, t.element, f"{path}[{i}]") for i, x in enumerate(v)]}
    if isinstance(t, T.MapType):
        if not isinstance(v, dict):
            raise _Bad(f"{path}: column type is {t}, got {_kind(v)}")
        return {"M": {k: to_typed(x, t.value, f"{path}.{k}") for k, x in v.items()}}
    if isinstance(t, T.StructType):
        if not isinstance(v, dict):
            raise _Bad(f"{path}: column type is {t}, got {_kind(v)}")
        fields = {f.name: f.type for f in t.fields}
        return {"M": {k: to_typed(x, fields.get(k), f"{path}.{k}") for k, x in v.items()}}
    raise _Bad(f"{path}: unsupported column type {t}")  # pragma: no cover


_DDB_TAGS = {"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"}


def item_from_plain(obj: Any, schema: ItemSchema) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad(f"an item must be a JSON object, got {_kind(obj)}")
    if obj and all(isinstance(v, dict) and len(v) == 1 and next(iter(v)) in _DDB_TAGS for v in obj.values()):
        # every value is {"S": ...}-shaped: typed input without the flag, not a string to quote
        raise _Bad('the item looks like DynamoDB JSON ({"pk": {"S": "a"}}): pass --dynamodb-json to write it as typed')
    return {k: to_typed(v, schema.types.get(k), k) for k, v in obj.items()}


# ------------------------------------------------------------------ typed JSON (validated)
def check_typed(v: Any, path: str) -> dict[str, Any]:
    """Validate one DynamoDB JSON value ({"S": "x"}, {"N": "1"}, ...)."""
    if not isinstance(v, dict) or len(v) != 1:
        raise _Bad(f"{path}: a DynamoDB JSON value is an object with one type key like {{\"S\": \"text\"}}")
    tag, x = next(iter(v.items()))
    if tag == "S":
        if not isinstance(x, str):
            raise _Bad(f"{path}: S takes a string")
    elif tag == "N":
        if not isinstance(x, str):
            raise _Bad(f"{path}: N takes a number as a string, like {{\"N\": \"1.5\"}}")
        _number_text(x, path)
    elif tag == "B":
        _b64(x, path)
    elif tag == "BOOL":
        if not isinstance(x, bool):
            raise _Bad(f"{path}: BOOL takes true or false")
    elif tag == "NULL":
        if x is not True:
            raise _Bad(f"{path}: NULL takes true")
    elif tag == "M":
        if not isinstance(x, dict):
            raise _Bad(f"{path}: M takes an object")
        for k, y in x.items():
            check_typed(y, f"{path}.{k}")
    elif tag == "L":
        if not isinstance(x, list):
            raise _Bad(f"{path}: L takes an array")
        for i, y in enumerate(x):
            check_typed(y, f"{path}[{i}]")
    elif tag in ("SS", "NS", "BS"):
        if not isinstance(x, list) or not x:
            raise _Bad(f"{path}: {tag} takes a non-empty array")
        for i, y in enumerate(x):
            check_typed({tag[0]: y}, f"{path}[{i}]")
        if len(set(x)) != len(x):
            raise _Bad(f"{path}: {tag} holds duplicates")
    else:
        raise _Bad(f"{path}: unknown DynamoDB type {tag!r} (one of {', '.join(TAGS)})")
    return v


def item_from_dynamodb_json(obj: Any, schema: ItemSchema | None = None) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _Bad(f"an item must be a JSON object, got {_kind(obj)}")
    if "Item" in obj and len(obj) == 1 and isinstance(obj["Item"], dict):
        obj = obj["Item"]  # `aws dynamodb get-item` output
    return {k: check_typed(v, k) for k, v in obj.items()}


# ------------------------------------------------------------------ checks
def _size(v: dict[str, Any]) -> int:
    """Bytes a value counts toward DynamoDB's 400 KB item limit (documented rules)."""
    tag, x = next(iter(v.items()))
    if tag == "S":
        return len(x.encode())
    if tag == "N":
        return (sig_digits(Decimal(x)) + 1) // 2 + 1
    if tag == "B":
        return len(base64.b64decode(x))
    if tag in ("BOOL", "NULL"):
        return 1
    if tag == "M":
        return 3 + sum(len(k.encode()) + _size(y) + 1 for k, y in x.items())
    if tag == "L":
        return 3 + sum(_size(y) + 1 for y in x)
    return sum(_size({tag[0]: y}) for y in x)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + _size(v) for k, v in item.items())


def check_item(item: dict[str, Any], schema: ItemSchema) -> None:
    """Key attributes, DynamoDB limits, then the transform's mapping; raises _Bad."""
    from s3tstream.transform import RecordError, map_item

    for k in schema.keys:
        v = item.get(k.name)
        if v is None:
            raise _Bad(f"{k.role} key attribute {k.name!r} is missing")
        tag = next(iter(v))
        if tag != k.type:
            raise _Bad(f"{k.role} key attribute {k.name!r} must be of DynamoDB type {k.type}, got {tag}")
        raw = v[tag]
        size = len(raw.encode()) if tag in ("S", "N") else len(base64.b64decode(raw))
        if size == 0:
            raise _Bad(f"{k.role} key attribute {k.name!r} must not be empty")
        limit = MAX_PARTITION_KEY_BYTES if k.role == "partition" else MAX_SORT_KEY_BYTES
        if size > limit:
            raise _Bad(f"{k.role} key attribute {k.name!r} is {size} bytes; DynamoDB allows {limit}")
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise _Bad(f"the item is {size} bytes; DynamoDB allows {MAX_ITEM_BYTES}")
    try:
        map_item(item, schema.settings)
    except RecordError as e:
        raise _Bad(f"the pipeline could not map it to a lake row: {e.reason}") from None


def checked_plain(obj: Any, schema: ItemSchema, where: str = "item") -> dict[str, Any]:
    """item_from_plain + check_item, raising ItemError (exit 2) naming ``where``."""
    try:
        item = item_from_plain(obj, schema)
        check_item(item, schema)
    except _Bad as e:
        raise ItemError(f"{where}: {e}", "nothing was written") from None
    return item


# ------------------------------------------------------------------ parsing input
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(text: str) -> Any:
    """JSON with exact numbers (Decimal), refusing NaN/Infinity."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


def parse_items(
    sources: Iterable[tuple[str, str]], schema: ItemSchema, *, dynamodb_json: bool = False
) -> list[dict[str, Any]]:
    """(where, JSON text) pairs -> checked typed items. Raises ItemError naming every bad item
    (up to 5) and what is wrong, so nothing is written when any item is bad."""
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    total_bad = 0
    for where, text in sources:
        try:
            try:
                obj = loads(text)
            except ValueError as e:
                raise _Bad(f"not valid JSON: {e}") from None
            item = item_from_dynamodb_json(obj) if dynamodb_json else item_from_plain(obj, schema)
            check_item(item, schema)
            items.append(item)
        except _Bad as e:
            total_bad += 1
            if len(problems) < MAX_ERRORS_SHOWN:
                problems.append(f"{where}: {e}")
    if total_bad:
        more = f"\n  ... and {total_bad - len(problems)} more" if total_bad > len(problems) else ""
        hint = ("items are plain JSON converted by the table's columns"
                + (" (or pass --dynamodb-json for typed DynamoDB JSON)" if not dynamodb_json else "")
                + "; nothing was written")
        raise ItemError(f"{total_bad} bad item(s):\n  " + "\n  ".join(problems) + more, hint)
    return items


def jsonl_sources(lines: Iterable[str], name: str) -> Iterator[tuple[str, str]]:
    for n, line in enumerate(lines, 1):
        if line.strip():
            yield f"{name} line {n}", line


# ------------------------------------------------------------------ boto3 <-> wire
def to_boto(v: Any) -> Any:
    """Wire typed JSON (B as base64 text) -> what the low-level client takes (B as bytes)."""
    if isinstance(v, dict):
        if len(v) == 1:
            tag, x = next(iter(v.items()))
            if tag == "B" and isinstance(x, str):
                return {"B": base64.b64decode(x)}
            if tag == "BS" and isinstance(x, list):
                return {"BS": [base64.b64decode(y) for y in x]}
            if tag == "M" and isinstance(x, dict):
                return {"M": {k: to_boto(y) for k, y in x.items()}}
            if tag == "L" and isinstance(x, list):
                return {"L": [to_boto(y) for y in x]}
            if tag in TAGS:
                return v
        return {k: to_boto(y) for k, y in v.items()}  # an item
    return v


def from_boto(v: Any) -> Any:
    """What the low-level client returns (B as bytes) -> wire typed JSON (B as base64 text)."""
    if isinstance(v, dict):
        if len(v) == 1:
            tag, x = next(iter(v.items()))
            if tag == "B" and isinstance(x, (bytes, bytearray)):
                return {"B": base64.b64encode(x).decode()}
            if tag == "BS" and isinstance(x, list):
                return {"BS": [base64.b64encode(y).decode() if isinstance(y, (bytes, bytearray)) else y for y in x]}
            if tag == "M" and isinstance(x, dict):
                return {"M": {k: from_boto(y) for k, y in x.items()}}
            if tag == "L" and isinstance(x, list):
                return {"L": [from_boto(y) for y in x]}
            if tag in TAGS:
                return v
        return {k: from_boto(y) for k, y in v.items()}
    return v


def item_to_plain(item: dict[str, Any]) -> dict[str, Any]:
    """Typed item -> plain JSON values (N as int or exact Decimal, B as base64, sets as sorted lists)."""
    from s3tstream.transform import plain_value

    return {k: plain_value(v) for k, v in item.items()}


# ------------------------------------------------------------------ writing
def batch_write(
    client: Any,
    table: str,
    requests: list[dict[str, Any]],
    *,
    key_of: Callable[[dict[str, Any]], tuple],
    progress: Callable[[str], None] = lambda m: None,
    sleep: Callable[[float], None] = time.sleep,
    max_attempts: int = 8,
    base_delay: float = 0.05,
    max_delay: float = 5.0,
    on_batch: Callable[[list[dict[str, Any]], float], None] | None = None,
) -> int:
    """BatchWriteItem in batches of 25, retrying UnprocessedItems with bounded jittered backoff.

    ``requests`` are wire-JSON {"PutRequest": {"Item": ...}} / {"DeleteRequest": {"Key": ...}}.
    A batch never holds two requests for one key (DynamoDB refuses that): a repeated key starts
    a new batch, so later requests still win. ``on_batch(requests, returned_at)`` is called when
    every request of a batch has been accepted. Returns the number of requests written.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from s3tstream.aws.client import is_not_found, translate

    def req_key(r: dict[str, Any]) -> tuple:
        return key_of(r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"])

    batches: list[list[dict[str, Any]]] = []
    cur: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for r in requests:
        k = req_key(r)
        if len(cur) == BATCH or k in seen:
            batches.append(cur)
            cur, seen = [], set()
        cur.append(r)
        seen.add(k)
    if cur:
        batches.append(cur)

    from s3tstream.aws.retry import Exhausted, retry_rest

    written = 0

    def call(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            resp = client.batch_write_item(RequestItems={table: [_boto_request(r) for r in pending]})
        except ClientError as e:
            if is_not_found(e):
                raise UsageError(f"the source table {table} does not exist ({written} of {len(requests)} written)",
                                 "run `s3tstream up` (or `s3tstream step create-source`) first") from None
            raise translate(e, f"writing items to {table} ({written} of {len(requests)} written before)") from None
        except BotoCoreError as e:
            raise translate(e, f"writing items to {table} ({written} of {len(requests)} written before)") from None
        return [_wire_request(r) for r in resp.get("UnprocessedItems", {}).get(table, [])]

    for batch in batches:
        try:
            retry_rest(call, batch, max_attempts=max_attempts, base_delay=base_delay, max_delay=max_delay, sleep=sleep,
                       on_retry=lambda n, a, d: progress(f"{n} unprocessed item(s); retry {a} in {d:.2f}s"))
        except Exhausted as e:
            keys = [req_key(r) for r in e.left][:MAX_ERRORS_SHOWN]
            raise AwsError(
                f"DynamoDB left {len(e.left)} item(s) unprocessed after {e.attempts} attempts "
                f"({written + len(batch) - len(e.left)} of {len(requests)} written); first keys: {keys}",
                "the table is throttled; wait and run the command again (puts are idempotent)",
                code="throttled",
            ) from None
        written += len(batch)
        if on_batch:
            on_batch(batch, time.time())
        progress(f"wrote {written}/{len(requests)}")
    return written


def _boto_request(r: dict[str, Any]) -> dict[str, Any]:
    if "PutRequest" in r:
        return {"PutRequest": {"Item": to_boto(r["PutRequest"]["Item"])}}
    return {"DeleteRequest": {"Key": to_boto(r["DeleteRequest"]["Key"])}}


def _wire_request(r: dict[str, Any]) -> dict[str, Any]:
    if "PutRequest" in r:
        return {"PutRequest": {"Item": from_boto(r["PutRequest"]["Item"])}}
    return {"DeleteRequest": {"Key": from_boto(r["DeleteRequest"]["Key"])}}


def put_items(client: Any, schema: ItemSchema, items: list[dict[str, Any]], **kw: Any) -> int:
    return batch_write(client, schema.table, [{"PutRequest": {"Item": i}} for i in items], key_of=schema.key_of, **kw)


# ------------------------------------------------------------------ reading current items
BATCH_GET = 100  # BatchGetItem: at most 100 keys a call


def key_id(item: dict[str, Any], attrs: list[str]) -> str:
    """The identity of an item's key (wire JSON): its key attributes ``attrs``, numbers in
    DynamoDB's normal form (DynamoDB returns 1.0 as "1", so a key asked as {"N": "1.0"} comes
    back as {"N": "1"}: both must name one key)."""
    def norm(v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("N"), str):
            try:
                return {"N": norm_number(v["N"])}
            except ArithmeticError:
                return v
        return v

    return json.dumps({a: norm(item.get(a)) for a in attrs}, sort_keys=True, separators=(",", ":"))


def batch_get(client: Any, table: str, keys: list[dict[str, Any]], attrs: list[str], *,
              sleep: Callable[[float], None] = time.sleep, max_attempts: int = 8) -> dict[str, dict[str, Any]]:
    """Consistent reads of ``keys`` (wire JSON; ``attrs``: the table's key attributes) ->
    key_id -> item (wire JSON); keys with no item are left out. UnprocessedKeys are retried
    (aws.retry); still unprocessed after ``max_attempts``: AwsError."""
    from botocore.exceptions import BotoCoreError, ClientError

    from s3tstream.aws.client import translate
    from s3tstream.aws.retry import Exhausted, retry_rest

    out: dict[str, dict[str, Any]] = {}
    uniq = list({key_id(k, attrs): k for k in keys}.values())  # BatchGetItem refuses a key twice

    def call(pending: list[Any]) -> list[Any]:
        try:
            r = client.batch_get_item(RequestItems={table: {"Keys": pending, "ConsistentRead": True}})
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"reading current items from {table}") from None
        for it in r.get("Responses", {}).get(table, []):
            item = from_boto(it)
            out[key_id(item, attrs)] = item
        return r.get("UnprocessedKeys", {}).get(table, {}).get("Keys", [])

    for i in range(0, len(uniq), BATCH_GET):
        try:
            retry_rest(call, [to_boto(k) for k in uniq[i:i + BATCH_GET]], max_attempts=max_attempts, sleep=sleep)
        except Exhausted as e:
            raise AwsError(f"DynamoDB left {len(e.left)} key(s) of {table} unprocessed after {e.attempts} attempts",
                           "the table is throttled; wait and run the command again", code="throttled") from None
    return out
