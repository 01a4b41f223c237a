"""Generic file helpers every layer may use: JSON documents, atomic writes, digests, tar samples, sizes.

The bottom layer: it imports nothing of trajshard but ``storage``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
from collections.abc import Iterator

from trajshard.storage import atomic_output

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)


def json_document(obj: object) -> bytes:
    """The bytes of a metadata JSON file: indent 2, sorted keys, UTF-8, final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def read_json(path: str | os.PathLike) -> object:
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_output(path) as f:
        f.write(data)


def write_json_atomic(path: str | os.PathLike, obj: object) -> None:
    write_bytes_atomic(path, json_document(obj))


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """(size, sha256 hex) of a file, read in 1 MiB blocks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return n, h.hexdigest()


def iter_tar_samples(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {field: bytes}) for each sample of a tar, in file order; members grouped by key prefix."""
    key, members = None, {}
    with tarfile.open(path, mode="r|") as tar:
        for info in tar:
            if not info.isfile():
                continue
            base = os.path.basename(info.name)
            k, dot, fieldname = base.partition(".")
            if not dot:
                continue
            data = tar.extractfile(info).read()
            if k != key or fieldname in members:  # a repeated field starts a new (duplicate) sample
                if key is not None:
                    yield key, members
                key, members = k, {}
            members[fieldname] = data
    if key is not None:
        yield key, members


def parse_size(text: str | int) -> int:
    """``"1GB"`` -> 10**9, ``"512MiB"`` -> 512 * 2**20, ``1000`` -> 1000."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size like 1GB, 500MB or 64MiB")
    unit = (m[2] or "").upper()
    base = 1024 if "I" in unit else 1000
    power = "BKMGT".find(unit[:1]) if unit else 0
    return int(float(m[1]) * base ** max(power, 0))
