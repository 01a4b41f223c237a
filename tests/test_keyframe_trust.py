"""Where AV1 and VP9 keyframes come from. The sparse decode and span starts use the keyframe flags
FFmpeg gives each packet. An MP4 without a sync-sample table (``stss``) declares every sample a sync
sample, so a demuxer that believed the container would call every frame a keyframe: the sparse decode
would drop packets a frame depends on, and a span could start at an inter frame. FFmpeg's AV1 and VP9
parsers read the frame headers instead; these tests pin that down, so an FFmpeg that stops doing it
fails here and not in a dataset."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest

from tests.videos import encode
from trajshard.sources.video import decode_frames, probe_video


def without_sync_tables(path: Path) -> Path:
    """A copy of an MP4 whose ``stss`` and ``sdtp`` boxes are renamed ``free`` (same sizes): nothing in
    the container says which samples are keyframes, so by ISOBMFF every sample is a sync sample."""
    data = path.read_bytes()
    for box in (b"stss", b"sdtp"):
        assert data.count(box) <= 1
        data = data.replace(box, b"free")
    out = path.with_name(f"{path.stem}-no-sync-table.mp4")
    out.write_bytes(data)
    return out


def keyframes(path: Path) -> list[bool]:
    with av.open(str(path)) as container:
        return [p.is_keyframe for p in container.demux(video=0) if p.size]


def pixels(frames) -> dict[int, str]:
    return {int(f.pts): hashlib.sha256(f.to_ndarray().tobytes()).hexdigest() for f in frames}


@pytest.mark.parametrize("codec", ["libsvtav1", "libaom-av1", "libvpx-vp9"])
def test_keyframes_come_from_the_bitstream_not_the_container(tmp_path, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} is not in this PyAV build")
    original = tmp_path / f"{codec}.mp4"
    options = {"g": "15"} if codec != "libaom-av1" else {"g": "15", "cpu-used": "8"}
    encode(original, codec, None, options, "yuv420p", n=45)
    stripped = without_sync_tables(original)
    assert b"stss" not in stripped.read_bytes() and b"sdtp" not in stripped.read_bytes()

    flags = keyframes(stripped)
    assert flags == keyframes(original)
    assert 1 < sum(flags) < len(flags)  # a few keyframes, not every frame

    probe = probe_video(str(stripped))
    assert probe.entry is not None and probe.entry.tolist() == flags

    with av.open(str(stripped)) as container:
        full = pixels(container.decode(video=0))
    needed = probe.pts[np.arange(0, len(probe.pts), 3)]
    sparse = pixels(decode_frames(str(stripped), int(needed[0]), needed))
    assert {int(p): sparse.get(int(p)) for p in needed} == {int(p): full[int(p)] for p in needed}
