"""bench/jpeg_chroma.py: its exact picture is right (against the BT.601 formulas and against swscale),
and the bench prints a row per chroma subsampling whose figures order as they must."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_bench():
    """bench/jpeg_chroma.py as a module, bench/ on the path only while it imports (it uses ingest.py)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("jpeg_chroma", REPO / "bench" / "jpeg_chroma.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["jpeg_chroma"] = module  # its dataclass looks its module up
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(REPO / "bench"))


jpeg_chroma = _load_bench()


def yuv_frame(
    y: np.ndarray, u: np.ndarray, v: np.ndarray, fmt: str = "yuv420p", color_range: int = 0
) -> av.VideoFrame:
    frame = av.VideoFrame(y.shape[1], y.shape[0], fmt)
    frame.color_range = color_range
    for plane, values in zip(frame.planes, (y, u, v), strict=True):
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        rows = np.zeros_like(rows)
        rows[:, : plane.width] = values
        plane.update(rows.tobytes())
    return frame


def test_area_weights_average_whole_and_partial_samples():
    np.testing.assert_allclose(jpeg_chroma.area_weights(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    w = jpeg_chroma.area_weights(256, 224)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w[0, :2], [1 / (256 / 224), (256 / 224 - 1) / (256 / 224)])


@pytest.mark.parametrize(("height", "width"), [(32, 32), (25, 33)])
def test_chroma_sits_where_each_siting_puts_it(height, width):
    """A chroma ramp of 2 levels per chroma sample, read back on the luma grid: 1 level per luma
    sample, starting at luma column 0 (left, MPEG-2) or half a sample before it (center, JPEG), and
    half a luma row up (both); clamped at the edges. Odd sizes have one more chroma sample."""
    ch, cw = (height + 1) // 2, (width + 1) // 2
    across = np.tile(100.0 + 2 * np.arange(cw), (ch, 1))
    down = np.tile((100.0 + 2 * np.arange(ch))[:, None], (1, cw))
    x, y = np.arange(width), np.arange(height)
    left = jpeg_chroma.chroma_to_luma(across, height, width, "left")
    np.testing.assert_allclose(left, np.tile(np.minimum(100 + x, 100 + 2 * (cw - 1)), (height, 1)))
    center = jpeg_chroma.chroma_to_luma(across, height, width, "center")
    np.testing.assert_allclose(center[0], np.clip(99.5 + x, 100, 100 + 2 * (cw - 1)))
    for siting in ("left", "center"):
        rows = jpeg_chroma.chroma_to_luma(down, height, width, siting)[:, 0]
        np.testing.assert_allclose(rows, np.clip(99.5 + y, 100, 100 + 2 * (ch - 1)))


@pytest.mark.parametrize(
    ("fmt", "ycc", "rgb"),
    [
        # limited range: Y 16-235 and Cb Cr 16-240 stretched to 0-255 before the BT.601 matrix
        ("yuv420p", (126, 128, 128), (128.082, 128.082, 128.082)),
        ("yuv420p", (120, 160, 100), (76.407, 131.323, 185.647)),
        ("yuv420p", (81, 90, 240), (254.44, 0.0, 0.0)),  # G and B below 0: clipped
        ("yuvj420p", (100, 150, 60), (4.664, 140.990, 138.984)),  # full range: the matrix alone
    ],
)
def test_exact_picture_of_a_flat_frame_is_its_bt601_colour(fmt, ycc, rgb):
    y = np.full((32, 48), ycc[0], np.uint8)
    u, v = (np.full((16, 24), c, np.uint8) for c in ycc[1:])
    picture = jpeg_chroma.exact_picture(yuv_frame(y, u, v, fmt), 16)
    assert picture.shape == (16, 16, 3)
    np.testing.assert_allclose(picture, np.broadcast_to(rgb, picture.shape), atol=0.05)


def test_a_yuv420p_frame_tagged_full_range_is_read_as_full_range():
    y = np.full((32, 48), 100, np.uint8)
    u, v = np.full((16, 24), 150, np.uint8), np.full((16, 24), 60, np.uint8)
    tagged = jpeg_chroma.exact_picture(yuv_frame(y, u, v, "yuv420p", color_range=2), 16)
    np.testing.assert_allclose(tagged, np.broadcast_to((4.664, 140.990, 138.984), tagged.shape), atol=0.05)


def test_exact_picture_agrees_with_swscale_within_its_rounding(synthetic_raw):
    video = sorted(synthetic_raw.rglob("*.mp4"))[0]
    with av.open(str(video)) as container:
        frame = next(f for i, f in enumerate(container.decode(video=0)) if i == 10)
    exact = jpeg_chroma.exact_picture(frame, 96)
    swscale = frame.to_ndarray(width=96, height=96, format="rgb24", interpolation="AREA")
    # swscale rounds in fixed point and filters differently; a wrong matrix, range or chroma plane is
    # off by tens of levels
    assert np.abs(exact - swscale).mean() < 3.0
    swapped = yuv_frame(
        *(
            np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]
            for p in (frame.planes[0], frame.planes[2], frame.planes[1])
        )
    )
    assert np.abs(jpeg_chroma.exact_picture(swapped, 96) - swscale).mean() > 3.0


def test_bench_prints_each_subsampling_against_444(synthetic_raw):
    video = sorted(synthetic_raw.rglob("*.mp4"))[0]
    run = subprocess.run(
        # 96 px: a downscale, like the real videos' (the synthetic camera is 160x120)
        [
            sys.executable,
            "bench/jpeg_chroma.py",
            "--video",
            str(video),
            "--frames",
            "8",
            "--size",
            "96",
            "--repeat",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in run.stdout.splitlines()
        if line.startswith("| given |")
    ]
    assert [r[3] for r in rows] == ["4:4:4", "4:2:2", "4:2:0"]
    psnr = [float(r[4]) for r in rows]
    size = [float(r[6].replace(",", "")) for r in rows]
    assert psnr[0] > 35 and psnr[0] > psnr[1] > psnr[2]  # less chroma comes out further
    assert size[0] > size[1] > size[2]
    assert rows[0][5] == "+0.00" and rows[0][7] == "1.00" and rows[0][9] == "1.00"
