"""Writing WebDataset samples as tar members, byte for byte what ``webdataset.TarWriter`` writes with
``tarfile`` in PAX format, mtime 0, mode 0o444 and owner ``trajshard`` (a test compares them).

``tarfile`` builds every ustar header field by field and copies each member through a buffer, a
large share of a sample's write time. Here a member whose name fits the 100-byte ustar field (all
trajshard keys do) gets a precomputed header with only its name, size and checksum filled in; a
longer name falls back to ``tarfile`` (which adds the PAX header).
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO

BLOCK = 512
RECORD = 20 * BLOCK
OWNER = "trajshard"
MODE = 0o444


def _template() -> tuple[bytearray, int]:
    info = _info("", 0)
    header = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "ascii", "strict"))
    header[124:136] = b"\0" * 12  # size
    header[148:156] = b" " * 8  # checksum, counted as spaces
    return header, sum(header)


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, 0, MODE, OWNER, OWNER
    return info


_HEADER, _HEADER_SUM = _template()


def member_header(name: str, size: int) -> bytes:
    """The header block(s) of a regular-file member, as ``tarfile`` writes them in PAX format."""
    raw = name.encode("utf-8")
    if len(raw) > 100 or not name.isascii():
        return _info(name, size).tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    header = bytearray(_HEADER)
    header[0 : len(raw)] = raw
    size_field = b"%011o\0" % size
    header[124:136] = size_field
    checksum = _HEADER_SUM + sum(raw) + sum(size_field)
    header[148:155] = b"%06o\0" % checksum
    return bytes(header)


def sample_bytes(sample: dict[str, bytes | str]) -> bytes:
    """A sample's tar members, fields in sorted order, fields starting with ``_`` skipped."""
    key = sample["__key__"]
    parts = []
    for k in sorted(sample):
        if k[0] == "_":
            continue
        data = sample[k]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"{key}.{k} is {type(data).__name__}, not bytes")
        parts.append(member_header(f"{key}.{k}", len(data)))
        parts.append(data)
        pad = -len(data) % BLOCK
        if pad:
            parts.append(b"\0" * pad)
    return b"".join(parts)


class TarStream:
    """Samples (``__key__`` plus ``field: bytes``) to a binary file (``sample_bytes``); ``close``
    writes the two end blocks and pads to a 10,240-byte record."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.offset = 0

    def write(self, sample: dict[str, bytes | str]) -> None:
        self.write_encoded(sample_bytes(sample))

    def write_encoded(self, chunk: bytes) -> None:
        """Write a sample already encoded by ``sample_bytes``."""
        self.f.write(chunk)
        self.offset += len(chunk)

    def close(self) -> None:
        end = 2 * BLOCK
        end += -(self.offset + end) % RECORD
        self.f.write(b"\0" * end)
        self.offset += end
