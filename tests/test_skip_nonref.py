"""H.264/HEVC in ``decode_frames``: the decoder skips the non-reference frames no tick needs, and every
needed frame comes out with the pixels of a plain full decode (one decoder thread and frame threads),
on the real GR00T videos and on synthetic ones with B-frames; the tick JPEGs do not change."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import av
import numpy as np
import pytest

from tests.helpers import shared_data
from trajshard.pipelines.frames import ImageConfig, tick_images
from trajshard.sources.video import DECODE_THREADS_ENV, decode_frames, probe_video


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-frame-threads"])
def threads(request, monkeypatch) -> int:
    """Decoder threads for ``decode_frames`` (``thread_type`` is AUTO: 2 means frame threads)."""
    monkeypatch.setenv(DECODE_THREADS_ENV, str(request.param))
    return request.param


def digest(frame: av.VideoFrame) -> str:
    assert frame.format.name == "yuv420p"  # the planes as decoded, no conversion
    return hashlib.sha256(frame.to_ndarray(format="yuv420p").tobytes()).hexdigest()


@functools.cache
def full_decode(path: str) -> dict[int, str]:
    """pts -> pixel digest of every frame, PyAV alone: one thread, every packet, no skipping."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return {int(frame.pts): digest(frame) for frame in container.decode(stream)}


def patterns(n: int) -> dict[str, np.ndarray]:
    """Frame indices a pass might need: every second frame (10 Hz from 20 fps) and a ragged set."""
    ragged = sorted({3, 4, *range(10, min(41, n), 3), n - 1})
    return {"every-second": np.arange(0, n, 2), "ragged": np.asarray(ragged)}


def check_needed_frames(path: str) -> None:
    """For each pattern: the needed frames have the full decode's pixels, in presentation order, and
    fewer frames than the file holds were decoded."""
    reference = full_decode(path)
    pts = probe_video(path).pts
    assert sorted(reference) == [int(p) for p in pts]
    for name, idx in patterns(len(pts)).items():
        needed = pts[idx]
        wanted = {int(p) for p in needed}
        got: dict[int, str] = {}
        seen: list[int] = []
        for frame in decode_frames(path, int(needed[0]), needed):
            seen.append(int(frame.pts))
            if frame.pts in wanted:
                got[int(frame.pts)] = digest(frame)
        assert seen == sorted(seen), f"{name}: frames out of presentation order"
        assert set(got) == wanted, f"{name}: needed frames missing"
        wrong = sorted(p for p in got if got[p] != reference[p])
        assert not wrong, f"{name}: {len(wrong)} frames differ from a full decode, from pts {wrong[:1]}"
        assert len(seen) < len(pts), f"{name}: all {len(pts)} frames were decoded, nothing skipped"


def gr00t_videos() -> list[str]:
    root = shared_data("gr00t_pnp_lerobot_v20")
    videos = sorted((root / "videos" / "chunk-000" / "observation.images.ego_view").glob("*.mp4"))
    assert videos
    return [str(v) for v in videos]


def test_gr00t_needed_frames_equal_full_decode(threads):
    """GR00T ego view: H.264 High with B-frames, 40% of its frames non-reference."""
    for video in gr00t_videos():
        check_needed_frames(video)


def write_video(path: Path, codec: str, options: dict[str, str], n: int = 90) -> None:
    """A moving random texture (so the encoder uses B-frames), 128x96 at 20 fps."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this PyAV has no {codec} encoder")
    width, height = 128, 96
    texture = np.random.default_rng(0).integers(0, 256, (2 * height, 2 * width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=20, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            image = np.ascontiguousarray(np.roll(texture, (2 * i, 3 * i), (0, 1))[:height, :width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def has_b_frames(path: str) -> bool:
    """Some packet is decoded before a frame that is shown earlier (decode order != presentation)."""
    with av.open(path) as container:
        pts = [p.pts for p in container.demux(container.streams.video[0]) if p.size]
    return pts != sorted(pts)


@pytest.fixture(scope="module")
def x264_video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("x264") / "bframes.mp4"
    write_video(path, "libx264", {"bframes": "3", "g": "30", "b-pyramid": "normal"})
    assert has_b_frames(str(path))
    return str(path)


def test_synthetic_h264_needed_frames_equal_full_decode(x264_video, threads):
    check_needed_frames(x264_video)


@pytest.mark.parametrize("step", [2, 3])
def test_synthetic_h264_tick_images_equal_full_decode(x264_video, threads, step):
    """The JPEG bytes pass 2 writes are the same with the skipping decode as with a full decode."""
    pts = probe_video(x264_video).pts
    needed = np.repeat(np.arange(1, len(pts), step), 2)  # ticks may share a frame
    full = list(tick_images(decode_frames(x264_video), pts, needed, ImageConfig(64, "center-crop", 90)))
    frames = decode_frames(x264_video, int(pts[needed[0]]), pts[needed])
    skipping = list(tick_images(frames, pts, needed, ImageConfig(64, "center-crop", 90)))
    assert len(full) == len(needed)
    assert skipping == full


def test_synthetic_hevc_needed_frames_equal_full_decode(tmp_path, threads):
    path = tmp_path / "hevc.mp4"
    write_video(path, "libx265", {"x265-params": "bframes=3:keyint=30:log-level=error"})
    assert has_b_frames(str(path))
    check_needed_frames(str(path))


def test_hevc_with_temporal_sub_layers_is_decoded_in_full(tmp_path, threads):
    """With several temporal sub-layers a sub-layer non-reference picture can be a reference for a
    higher one: nothing is skipped."""
    path = tmp_path / "layers.mp4"
    write_video(path, "libx265", {"x265-params": "bframes=3:keyint=30:temporal-layers=3:log-level=error"})
    pts = probe_video(str(path)).pts
    reference = full_decode(str(path))
    frames = list(decode_frames(str(path), None, pts[::2]))
    assert [int(f.pts) for f in frames] == [int(p) for p in pts]
    assert {int(f.pts): digest(f) for f in frames} == reference
