"""bench/jpeg_chroma.py: its exact picture is right (against the BT.601 formulas and against swscale),
and the bench prints a row per chroma subsampling whose figures order as they must."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import jpeg_chroma  # noqa: E402  (bench/jpeg_chroma.py)


def yuv_frame(y: np.ndarray, u: np.ndarray, v: np.ndarray, fmt: str = "yuv420p") -> av.VideoFrame:
    frame = av.VideoFrame(y.shape[1], y.shape[0], fmt)
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
        [sys.executable, "bench/jpeg_chroma.py", "--video", str(video), "--frames", "8", "--repeat", "1"],
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
    assert psnr[0] > 30 and psnr[0] >= psnr[1] >= psnr[2]  # less chroma never comes out closer
    assert size[0] > size[1] > size[2]
    assert rows[0][5] == "+0.00" and rows[0][7] == "1.00" and rows[0][9] == "1.00"
