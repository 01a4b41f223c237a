"""Numeric streams from parquet, CSV or JSONL tables (raw layout v1).

A table has a ``timestamp`` column (floating point = seconds, integer = nanoseconds) and either one
list column named like the stream (``proprio``/``action``) or one numeric column per dimension.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class TableError(ValueError):
    """A table that cannot be used; the message says what is wrong."""


def read_table(path: str) -> pa.Table:
    ext = path.rsplit(".", 1)[-1].lower()
    try:
        if ext == "parquet":
            import pyarrow.parquet as pq

            # one file, read on this thread: half the time of pq.read_table (a dataset reader on
            # Arrow's thread pool), which matters as every pass-2 task reads its episode's tables
            with pq.ParquetFile(path) as f:
                return f.read(use_threads=False)
        if ext == "csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        if ext == "jsonl":
            import pyarrow.json as pjson

            return pjson.read_json(path)
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"cannot be read as {ext}: {exc}") from exc
    raise TableError(f"unknown table extension .{ext}")


def table_to_stream(table: pa.Table, stream: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Return (timestamps float64 seconds [N], values float32 [N, D], dimension names)."""
    if "timestamp" not in table.column_names:
        raise TableError(f"no 'timestamp' column (columns: {table.column_names})")
    if table.num_rows == 0:
        raise TableError("has no rows")
    ts = _timestamps(table.column("timestamp"))
    others = [n for n in table.column_names if n != "timestamp"]
    if stream in others and _is_list(table.schema.field(stream).type):
        values, names = _list_column(table.column(stream)), ()
    else:
        names = tuple(others)
        if not names:
            raise TableError(
                f"no value columns: expected a list column {stream!r} or one column per dimension"
            )
        cols = []
        for name in names:
            col = table.column(name)
            if not (
                pa.types.is_integer(col.type)
                or pa.types.is_floating(col.type)
                or pa.types.is_boolean(col.type)
            ):
                raise TableError(
                    f"column {name!r} has type {col.type}, expected numbers "
                    f"(or a list column named {stream!r})"
                )
            if col.null_count:
                raise TableError(f"column {name!r} has {col.null_count} empty cells")
            cols.append(col.cast(pa.float64()).to_numpy())
        values = np.stack(cols, axis=1)
    return ts, values.astype(np.float32), names


def _timestamps(col: pa.ChunkedArray) -> np.ndarray:
    if col.null_count:
        raise TableError(f"'timestamp' has {col.null_count} empty cells")
    if pa.types.is_integer(col.type):
        return col.cast(pa.int64()).to_numpy().astype(np.float64) / 1e9
    if pa.types.is_floating(col.type):
        return col.cast(pa.float64()).to_numpy()
    if pa.types.is_timestamp(col.type):
        return pc.cast(col, pa.timestamp("ns")).cast(pa.int64()).to_numpy().astype(np.float64) / 1e9
    raise TableError(f"'timestamp' has type {col.type}; expected float seconds or int64 nanoseconds")


def _list_column(col: pa.ChunkedArray) -> np.ndarray:
    col = col.combine_chunks()
    if col.null_count:
        raise TableError(f"list column {col.type} has {col.null_count} empty rows")
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if len(set(lengths.tolist())) != 1:
        i = int(np.argmax(lengths != lengths[0]))
        raise TableError(f"ragged list column: row 0 has {lengths[0]} values, row {i} has {lengths[i]}")
    flat = pc.list_flatten(col)
    if flat.null_count:
        raise TableError("list column holds empty values")
    if not (pa.types.is_integer(flat.type) or pa.types.is_floating(flat.type)):
        raise TableError(f"list column holds {flat.type}, expected numbers")
    return flat.cast(pa.float64()).to_numpy().reshape(len(col), int(lengths[0]))


def _is_list(typ: pa.DataType) -> bool:
    return pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
