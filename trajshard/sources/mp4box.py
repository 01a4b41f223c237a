"""The display rotation an MP4/MOV file declares, read from its index without decoding.

An ISO media file is a sequence of boxes (``uint32 size, 4-byte type, payload``; size 1: a 64-bit
size follows; size 0: to the end of the file). The video track's ``moov/trak/tkhd`` holds a 3x3
display matrix; players rotate the frames by it, FFmpeg's decoders do not.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

MAX_MOOV_BYTES = 64 << 20  # an MP4 index read to find a display rotation; larger: no rotation read


def display_rotation(path: str) -> int:
    """The display rotation (degrees, counter-clockwise) an MP4/MOV video track's ``tkhd`` matrix
    declares, or 0 (none, another container, or an index too large or broken to read). Players
    rotate such frames; trajshard uses them as stored, and says so (a note naming the file)."""
    try:
        with open(path, "rb") as f:
            moov = _top_box(f, b"moov")
    except (OSError, struct.error):  # unreadable, or cut inside a box header: the probe says more
        return 0
    for trak in _boxes(moov or b"", b"trak"):
        mdia = next(_boxes(trak, b"mdia"), b"")
        hdlr = next(_boxes(mdia, b"hdlr"), b"")
        tkhd = next(_boxes(trak, b"tkhd"), b"")
        if hdlr[8:12] != b"vide" or len(tkhd) < 84:
            continue
        at = 40 + (12 if tkhd[0] == 1 else 0)  # the matrix, after the (version-sized) times
        if len(tkhd) < at + 16:
            continue
        a, b = struct.unpack(">ii", tkhd[at : at + 8])
        return round(-math.degrees(math.atan2(b, a))) % 360  # FFmpeg's av_display_rotation_get sign
    return 0


def _top_box(f, kind: bytes) -> bytes | None:
    """The payload of the first top-level box ``kind`` of an ISO media file, read by seeking."""
    pos, end = 0, f.seek(0, 2)
    while pos + 8 <= end:
        f.seek(pos)
        size, name = struct.unpack(">I4s", f.read(8))
        head = 8
        if size == 1:
            size, head = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = end - pos
        if size < head:
            return None
        if name == kind:
            return f.read(size - head) if size - head <= MAX_MOOV_BYTES else None
        pos += size
    return None


def _boxes(buf: bytes, kind: bytes) -> Iterator[bytes]:
    """The payloads of the boxes ``kind`` directly inside ``buf``."""
    i = 0
    while i + 8 <= len(buf):
        size, name = struct.unpack(">I4s", buf[i : i + 8])
        if size < 8:
            return
        if name == kind:
            yield buf[i + 8 : i + size]
        i += size
