"""Generic file helpers every layer may use: JSON documents, atomic writes, digests, tar samples, sizes.

The bottom layer: it imports nothing of trajshard but ``storage``.

Shards are read as untrusted input (docs/robustness.md#limits-on-what-an-output-can-make-a-reader-do):
:func:`shard_path` confines a shard name read from metadata to ``OUT/shards/``, and every tar member
passes :func:`check_member` (a regular file named ``<key>.<field>``, no ``/``, ``..`` or leading dot,
not sparse, at most ``MAX_MEMBER_BYTES``) before a byte of its data is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import unicodedata
from collections.abc import Collection, Iterator
from pathlib import Path

from trajshard.storage import atomic_output, is_remote, local_path

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)

MAX_MEMBER_BYTES = 64 * 2**20  # a shard member (one JPEG, one array, meta.json) a reader holds at most
# shards/<file>.tar with a plain file name: what the manifest, info.json splits and episodes.parquet name
SHARD_NAME_RE = re.compile(r"shards/[A-Za-z0-9_][A-Za-z0-9_.-]*\.tar")
_KINDS = {
    tarfile.DIRTYPE: "a directory",
    tarfile.SYMTYPE: "a symbolic link",
    tarfile.LNKTYPE: "a hard link",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CONTTYPE: "a contiguous file",
    tarfile.GNUTYPE_LONGNAME: "a GNU long name",
}


class ShardError(ValueError):
    """A shard (or a shard name in the metadata) that readers refuse; the message names the shard and,
    for a member, the member."""


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


def shard_path(out: str | os.PathLike, name: object) -> Path:
    """``OUT/<name>`` for a shard name read from metadata (manifest.json, info.json ``splits``,
    episodes.parquet ``shards``), confined to ``OUT/shards/``.

    ``name`` must be ``shards/<file>.tar`` with a plain file name (letters, digits, ``_``, ``-``, ``.``,
    not starting with a dot), and an existing file must not be a link to a place outside
    ``OUT/shards/``. Raises :class:`ShardError` otherwise, before anything is opened.
    """
    if not isinstance(name, str) or not SHARD_NAME_RE.fullmatch(name):
        raise ShardError(
            f"shard name {name!r} is not shards/<file>.tar: a reader opens only shards inside OUT/shards"
        )
    out = Path(out)
    path = out / name
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(out / "shards"))
    if real.parent != base:
        raise ShardError(f"{name}: is a link to {real}, a place outside OUT/shards")
    return path


def check_member(
    shard: str | os.PathLike, info: tarfile.TarInfo, suffixes: Collection[str] | None = None
) -> tuple[str, str]:
    """``(key, field)`` of a shard member, or :class:`ShardError` naming the shard and the member.

    A member must be a regular file (no directory, link or device), not GNU sparse, at most
    ``MAX_MEMBER_BYTES``, named ``<key>.<field>`` without ``/``, ``\\``, ``..`` or a leading dot, and
    (when ``suffixes`` is given) its field's last suffix must be one of them.
    """
    name = info.name
    where = f"{shard}: member {name!r}"
    if info.issparse():
        raise ShardError(f"{where}: a GNU sparse member (declaring {info.size} bytes); shards hold none")
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        kind = _KINDS.get(info.type, f"of tar type {info.type!r}")
        raise ShardError(f"{where}: is {kind}; a shard holds regular files only")
    if info.size > MAX_MEMBER_BYTES:
        raise ShardError(f"{where}: {info.size} bytes, more than the {MAX_MEMBER_BYTES} a member may hold")
    key, dot, fieldname = name.partition(".")
    if "/" in name or "\\" in name or ".." in name or "\0" in name or not key or not fieldname:
        raise ShardError(f"{where}: not a member name <key>.<field> (no '/', '..' or leading dot)")
    if suffixes is not None and fieldname.rpartition(".")[2] not in suffixes:
        raise ShardError(
            f"{where}: suffix .{fieldname.rpartition('.')[2]} is not one of a shard sample's "
            f"({', '.join('.' + s for s in sorted(suffixes))})"
        )
    return key, fieldname


class _CappedReads:
    """A binary file whose ``read(n)`` refuses n beyond one member: tarfile reads a PAX or GNU long-name
    header's declared size in one call, before any member check could run."""

    def __init__(self, f, shard: str | os.PathLike) -> None:
        self._f, self._shard = f, shard
        self.name = getattr(f, "name", None)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_MEMBER_BYTES + tarfile.BLOCKSIZE:
            raise ShardError(
                f"{self._shard}: a tar header declares {n} bytes, more than the {MAX_MEMBER_BYTES} a member "
                "may hold"
            )
        return self._f.read(n)

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()


def tar_members(
    f, shard: str | os.PathLike, suffixes: Collection[str] | None = None
) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """``(member, key, field)`` for each member of the tar open as ``f`` (a seekable binary file), in
    file order, each passed through :func:`check_member` before it is yielded. Read a member's data
    with ``f.seek(member.offset_data); f.read(member.size)``."""
    with tarfile.open(fileobj=_CappedReads(f, shard), mode="r:") as tar:
        while (info := tar.next()) is not None:
            tar.members.clear()  # nothing looks back: a shard of a million members costs no memory
            key, fieldname = check_member(shard, info, suffixes)
            yield info, key, fieldname


def iter_tar_samples(
    path: str | os.PathLike, suffixes: Collection[str] | None = None
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {field: bytes}) for each sample of a tar, in file order; members grouped by key prefix.

    Every member is checked first (:func:`check_member`, with ``suffixes`` when given): a member that
    fails raises :class:`ShardError` naming the shard and the member, as does a member cut short.
    """
    key, members = None, {}
    with open(path, "rb") as f:
        for info, k, fieldname in tar_members(f, path, suffixes):
            f.seek(info.offset_data)
            data = f.read(info.size)
            if len(data) != info.size:
                raise ShardError(f"{path}: member {info.name!r}: {len(data)} of its {info.size} bytes")
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


def printable(text: str, keep: str = "\n\t") -> str:
    """``text`` safe for a terminal: control and format characters (ESC, BEL, a bidi override) and
    lone surrogates escaped as ``\\x1b``, ``\\u202e``; the characters in ``keep`` (newline, tab) kept. Source text (an
    instruction) is data: printed raw, ``\\x1b]0;...\\x07`` would retitle the terminal or clear it."""
    return "".join(
        c if c in keep or unicodedata.category(c) not in _UNPRINTABLE else _escape(c) for c in text
    )


_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def _escape(c: str) -> str:
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def out_problem(out: str | os.PathLike) -> str | None:
    """Why a local OUT cannot be written at all (a file, a directory that is not writable), or None.
    Checked before a job starts, so that it ends in one line, not a traceback from deep inside."""
    if is_remote(out):
        return None
    path = local_path(out)
    if path.exists() and not path.is_dir():
        return f"OUT {out} is a file, not a directory"
    nearest = next((p for p in (path, *path.parents) if p.exists()), None)
    if nearest is None or not nearest.is_dir():
        return f"OUT {out}: {nearest} is not a directory"
    if not os.access(nearest, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return f"OUT {out} is not writable ({nearest}: permission denied)"
    return None


def printable_name(name: str) -> str:
    """A file name as UTF-8-safe, terminal-safe text: bytes that are not UTF-8 (decoded by Python as
    lone surrogates, which no UTF-8 writer accepts) shown as ``\\xff``, control characters escaped.
    For the ids and files of records about entries whose names could not be used."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "surrogatepass")
    return printable(raw.decode("utf-8", "backslashreplace"), keep="")
