"""The members of a shard, as :func:`trajshard.io.tar_members` gives them, with plain headers parsed here.

``tarfile`` builds a ``TarInfo`` from every header field by field in Python, a large share of the
loader's per-sample time. A shard's headers are almost all plain ustar blocks (a regular file, an
ASCII name without ``/`` that fits the 100-byte field, an octal size, a right checksum): those are
read here from three fields. At the first header that is anything else (a PAX or GNU extension, a
link, a prefix, a base-256 size, a bad checksum, a short block) the rest of the shard is handed to
:func:`trajshard.io.tar_members` from that header on, so every unusual case, and every error it
raises, is ``tarfile``'s and :func:`trajshard.io.check_member`'s, exactly as before. Every member,
plain or not, passes :func:`~trajshard.io.check_member` before it is yielded.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Collection, Iterator

from trajshard.io import check_member, tar_members

BLOCK = tarfile.BLOCKSIZE
_ZERO = bytes(BLOCK)
_MAGICS = (b"ustar\x0000", b"ustar  \x00")  # POSIX and GNU ustar


def shard_members(
    f, shard: str | os.PathLike, suffixes: Collection[str] | None = None
) -> Iterator[tuple[tarfile.TarInfo, str, str]]:
    """``(member, key, field)`` for each member of the tar open as ``f``, in file order (see the module
    docstring). Read a member's data with ``f.seek(member.offset_data); f.read(member.size)``."""
    offset = f.tell()
    while True:
        f.seek(offset)
        block = f.read(BLOCK)
        if block == _ZERO:
            return  # the end-of-archive marker, where tarfile stops too
        info = _plain(block, offset)
        if info is None:
            f.seek(offset)
            yield from tar_members(f, shard, suffixes)
            return
        key, fieldname = check_member(shard, info, suffixes)
        yield info, key, fieldname
        offset = info.offset_data + -(-info.size // BLOCK) * BLOCK


def _plain(block: bytes, offset: int) -> tarfile.TarInfo | None:
    """The member a plain ustar header block describes, or None for any other block."""
    if len(block) != BLOCK or block[257:265] not in _MAGICS or block[156:157] not in (b"0", b"\0"):
        return None
    if any(block[345:500]):  # a name prefix (POSIX) or GNU times: tarfile's business
        return None
    raw_name = block[:100].split(b"\0", 1)[0]
    if not raw_name or not raw_name.isascii() or b"/" in raw_name:
        return None
    if block[124] & 0x80:  # a base-256 size
        return None
    try:  # the fields as tarfile reads them (nti): octal digits up to the first NUL
        size = int(block[124:136].split(b"\0", 1)[0].strip(), 8)
        stored = int(block[148:156].split(b"\0", 1)[0].strip(), 8)
    except ValueError:
        return None
    if size < 0:
        return None
    if stored != sum(block[:148]) + 256 + sum(block[156:]):  # the checksum field counts as 8 spaces
        return None
    info = tarfile.TarInfo(raw_name.decode("ascii"))
    info.size = size
    info.type = block[156:157]
    info.offset = offset
    info.offset_data = offset + BLOCK
    return info
