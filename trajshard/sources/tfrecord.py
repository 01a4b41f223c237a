"""TFRecord files and ``tf.train.Example`` messages, read without TensorFlow.

A TFRecord file is a sequence of records: ``uint64 length, uint32 masked_crc32c(length), data,
uint32 masked_crc32c(data)`` (little endian). An Example is ``Features { map<string, Feature> }``
with ``Feature`` one of ``bytes_list`` (1), ``float_list`` (2) or ``int64_list`` (3); this module
decodes that protobuf wire format directly (about sixty lines, no generated code). CRCs are checked
with google-crc32c, so a flipped bit is reported, not decoded into garbage.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import google_crc32c
import numpy as np

MAX_RECORD_BYTES = 1 << 30


class RecordError(ValueError):
    """A TFRecord file or an Example that cannot be read; the message says where and why."""


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def scan_records(path: str) -> tuple[list[tuple[int, int]], RecordError | None]:
    """(offset of data, length) of every record up to the first broken header, reading only the
    12-byte headers; and that header's error, or None. Nothing after a broken header can be read (its
    length is the only way to the next record), but every record before it is intact."""
    out: list[tuple[int, int]] = []
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        pos = 0
        while pos < size:
            f.seek(pos)
            head = f.read(12)
            if len(head) < 12:
                return out, RecordError(f"truncated record header at byte {pos}")
            length, crc = struct.unpack("<QI", head)
            if _masked_crc(head[:8]) != crc:
                return out, RecordError(
                    f"record header at byte {pos} fails its CRC (corrupt or not a TFRecord)"
                )
            if length > MAX_RECORD_BYTES or pos + 16 + length > size:
                return out, RecordError(
                    f"record at byte {pos} claims {length} bytes, past the end of the file "
                    f"({size} bytes) or over the {MAX_RECORD_BYTES} a record may hold"
                )
            out.append((pos + 12, length))
            pos += 16 + length
    return out, None


def index_records(path: str) -> list[tuple[int, int]]:
    """(offset of data, length) of every record; RecordError when a header is broken."""
    records, error = scan_records(path)
    if error is not None:
        raise error
    return records


def read_record(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
        (crc,) = struct.unpack("<I", f.read(4))
    if len(data) != length or _masked_crc(data) != crc:
        raise RecordError(f"record at byte {offset - 12} fails its data CRC (corrupt)")
    return data


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise RecordError("truncated varint in an Example")
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise RecordError("varint longer than 64 bits in an Example")


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """(field number, wire type, value) of a protobuf message: bytes for length-delimited, int for varint."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise RecordError("length-delimited field runs past the end of an Example")
            yield field, wire, buf[i : i + n]
            i += n
        elif wire == 0:
            v, i = _varint(buf, i)
            yield field, wire, v
        elif wire == 5:
            yield field, wire, buf[i : i + 4]
            i += 4
        elif wire == 1:
            yield field, wire, buf[i : i + 8]
            i += 8
        else:
            raise RecordError(f"unsupported protobuf wire type {wire} in an Example")


def parse_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """``{feature name: list of bytes | float32 array | int64 array}`` of a serialized Example."""
    out: dict[str, list[bytes] | np.ndarray] = {}
    for field, _, features in _fields(data):
        if field != 1:
            continue
        for f2, _, entry in _fields(features):  # map entries
            if f2 != 1:
                continue
            name, value = "", b""
            for f3, _, v in _fields(entry):
                if f3 == 1:
                    name = v.decode("utf-8")
                elif f3 == 2:
                    value = v
            out[name] = _feature(value)
    return out


def _feature(buf: bytes) -> list[bytes] | np.ndarray:
    for kind, wire, lst in _fields(buf):
        values = [v for f, w, v in _fields(lst) if f == 1]
        if kind == 1:
            return values
        if kind == 2:  # packed floats, or one float per field
            raw = b"".join(values) if values and isinstance(values[0], bytes) else b""
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if kind == 3:
            ints: list[int] = []
            for v in values:
                if isinstance(v, bytes):  # packed varints
                    j = 0
                    while j < len(v):
                        x, j = _varint(v, j)
                        ints.append(x)
                else:
                    ints.append(v)
            return np.array([x - (1 << 64) if x >= 1 << 63 else x for x in ints], dtype=np.int64)
        del wire
    return []
