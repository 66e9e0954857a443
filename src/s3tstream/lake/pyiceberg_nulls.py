"""A fix for PyIceberg 0.12 losing NULLs of nested columns: a NULL ``list<struct>`` or
``map<_, struct>`` becomes an empty list/map.

PyIceberg projects every Arrow batch onto the table schema, on write and on read
(``pyiceberg.io.pyarrow.ArrowProjectionVisitor``). For a list of structs it rebuilds the list
from its offsets (``LargeListArray.from_arrays(offsets, values)``, a workaround for
apache/arrow#38809), and for a map with struct values likewise (``MapArray.from_arrays``); both
drop the validity bitmap, so NULL rows come out as ``[]``. ``install()`` wraps those two visitor
methods and puts the source array's NULLs back. Idempotent; used by the sandbox's Firehose
writer and by the local query engine's reader. Remove once PyIceberg keeps the mask.
"""

from __future__ import annotations

from typing import Any

_MARK = "_s3tstream_keeps_nested_nulls"


def _with_nulls(out: Any, source: Any) -> Any:
    import pyarrow as pa

    if out is None or source is None or not source.null_count or out.null_count == source.null_count:
        return out
    mask = source.is_null()
    if isinstance(out, pa.MapArray):
        return pa.MapArray.from_arrays(out.offsets, out.keys, out.items, type=out.type, mask=mask)
    if isinstance(out, pa.LargeListArray):
        return pa.LargeListArray.from_arrays(out.offsets, out.values, type=out.type, mask=mask)
    if isinstance(out, pa.ListArray):
        return pa.ListArray.from_arrays(out.offsets, out.values, type=out.type, mask=mask)
    return out


def install() -> None:
    from pyiceberg.io.pyarrow import ArrowProjectionVisitor as visitor

    if getattr(visitor, _MARK, False):
        return
    list_, map_ = visitor.list, visitor.map

    def list_keeping_nulls(self: Any, list_type: Any, list_array: Any, value_array: Any) -> Any:
        return _with_nulls(list_(self, list_type, list_array, value_array), list_array)

    def map_keeping_nulls(self: Any, map_type: Any, map_array: Any, key_result: Any, value_result: Any) -> Any:
        return _with_nulls(map_(self, map_type, map_array, key_result, value_result), map_array)

    visitor.list = list_keeping_nulls  # type: ignore[method-assign]
    visitor.map = map_keeping_nulls  # type: ignore[method-assign]
    setattr(visitor, _MARK, True)
