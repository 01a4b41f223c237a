"""Numeric streams from parquet, CSV or JSONL tables (raw layout v1).

A table has a ``timestamp`` column (floating point = seconds, integer = nanoseconds) and either one
list column named like the stream (``proprio``/``action``) or one numeric column per dimension.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# -- bounds checked before a table is read (docs/robustness.md, "Limits on what a file can make a
# worker allocate"): a small file must not make a worker allocate gigabytes
DEFAULT_EPISODE_MEMORY = 2 << 30  # bytes one episode's table may need, without --task-memory
MAX_TABLE_COLUMNS = 4096  # columns of a table (a wide CSV costs Arrow per column and per block)
MAX_HEADER_BYTES = 1 << 20  # a CSV header line or the first JSONL line
MAX_FOOTER_BYTES = 64 << 20  # a parquet footer (the metadata read before anything else)
TEXT_EXPANSION = 4  # a CSV or JSONL file may take this many times its size while parsed
CONVERTED_BYTES = 12  # per value, besides Arrow's own: the float64 and float32 copies the reader makes
_PHYSICAL_BYTES = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}
_budget = DEFAULT_EPISODE_MEMORY


class TableError(ValueError):
    """A table that cannot be used; the message says what is wrong."""


def episode_budget() -> int:
    """Bytes one episode's table may need in this process (see :func:`set_episode_budget`)."""
    return _budget


def set_episode_budget(nbytes: int | None) -> None:
    """Set the per-episode memory budget of this process (a task sets it from its config before it
    reads); None: :data:`DEFAULT_EPISODE_MEMORY`."""
    global _budget
    _budget = DEFAULT_EPISODE_MEMORY if nbytes is None else int(nbytes)


def check_table_file(path: str) -> None:
    """TableError when the file declares more than the episode budget: checked from the parquet
    footer, or the text file's size and header, before anything is allocated."""
    ext = path.rsplit(".", 1)[-1].lower()
    try:
        if ext == "parquet":
            _check_parquet(path)
        elif ext in ("csv", "jsonl"):
            _check_text(path, ext)
    except OSError as exc:
        raise TableError(f"cannot be read: {exc.strerror or exc}") from exc


def _check_parquet(path: str) -> None:
    import pyarrow.parquet as pq

    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 12:
            f.seek(-8, os.SEEK_END)
            tail = f.read(8)
            footer = int.from_bytes(tail[:4], "little")
            if tail[4:] == b"PAR1" and footer > MAX_FOOTER_BYTES:
                raise TableError(f"its footer declares {footer} bytes, more than {MAX_FOOTER_BYTES}")
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"cannot be read as parquet: {exc}") from exc
    _check_columns(meta.num_columns)
    need = 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        for j in range(rg.num_columns):
            c = rg.column(j)
            width = _PHYSICAL_BYTES.get(c.physical_type, 0)
            need += max(c.total_uncompressed_size, c.num_values * width) + c.num_values * CONVERTED_BYTES
    if need > _budget:
        raise TableError(
            f"declares {meta.num_rows} rows x {meta.num_columns} columns, about {need / 2**20:.0f} MiB "
            f"once read, more than the {_budget / 2**20:.0f} MiB an episode may take (--task-memory)"
        )


def _check_text(path: str, ext: str) -> None:
    size = os.stat(path).st_size
    if size * TEXT_EXPANSION > _budget:
        raise TableError(
            f"{size} bytes of {ext}, more than the {_budget // TEXT_EXPANSION} an episode's text table may "
            f"hold ({TEXT_EXPANSION}x its size once parsed; the budget is {_budget / 2**20:.0f} MiB, --task-memory)"
        )
    with open(path, "rb") as f:
        first = f.readline(MAX_HEADER_BYTES + 1)
    if len(first) > MAX_HEADER_BYTES:
        raise TableError(f"its first line is longer than {MAX_HEADER_BYTES} bytes")
    if ext == "csv":
        _check_columns(first.count(b",") + 1)
    else:
        try:
            row = json.loads(first)
        except ValueError as exc:
            raise TableError(f"its first line is not a JSON object: {exc}") from exc
        _check_columns(len(row) if isinstance(row, dict) else 0)


def _check_columns(n: int) -> None:
    if n > MAX_TABLE_COLUMNS:
        raise TableError(f"has {n} columns, more than {MAX_TABLE_COLUMNS}")


def read_table(path: str) -> pa.Table:
    """The whole table, after :func:`check_table_file`."""
    ext = path.rsplit(".", 1)[-1].lower()
    check_table_file(path)
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
