"""The fast paths of pass 2 give what the plain ones give: tick images from a sparse decode are the
bytes a full decode gives, the YUV route to JPEG keeps each resize mode's geometry and stays close to
the RGB route, per-row npy bytes equal ``np.save``'s, and the decoder thread count is read right."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import simplejpeg
from PIL import Image

from tests.helpers import shared_data
from trajshard.pipelines import frames as frames_module
from trajshard.pipelines.frames import (
    ImageConfig,
    encode_jpeg,
    frame_to_jpeg,
    frame_to_rgb,
    frame_to_yuv,
    tick_images,
    yuv_route,
)
from trajshard.pipelines.samples import npy_rows
from trajshard.schemas.sample import npy_bytes
from trajshard.sources.video import DECODE_THREADS_ENV, decode_frames, decoder_threads, probe_video


def g1_video() -> str:
    root = shared_data("g1_lerobot_v21")
    return str(root / "videos" / "chunk-000" / "observation.images.cam_high" / "episode_000029.mp4")


def decoded(image: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image)).convert("RGB")).astype(np.int16)


@pytest.mark.parametrize(
    ("mode", "subsampling"),
    [("stretch", "4:4:4"), ("pad", "4:4:4"), ("center-crop", "4:4:4"), ("stretch", "4:2:0")],
)
def test_tick_images_from_sparse_decode_equal_full_decode(mode, subsampling):
    """The JPEG bytes pass 2 writes for G1 at 10 Hz (frames 0, 3, 6, ...) are the same whether the
    decoder saw every packet or only those the ticks' frames depend on."""
    video = g1_video()
    probe = probe_video(video)
    needed = np.repeat(np.arange(0, len(probe.pts), 3), 2)[:50]  # ticks may share a frame
    full = list(tick_images(decode_frames(video), probe.pts, needed, ImageConfig(96, mode, 90, subsampling)))
    sparse = list(
        tick_images(
            decode_frames(video, None, probe.pts[needed]),
            probe.pts,
            needed,
            ImageConfig(96, mode, 90, subsampling),
        )
    )
    assert len(full) == len(needed)
    assert sparse == full


def test_tick_images_encode_in_bounded_runs(monkeypatch):
    """Tick images are encoded after a run of at most ENCODE_BATCH_FRAMES selected frames (or
    ENCODE_BATCH_BYTES of them) is decoded, and are the bytes a frame-by-frame encoding gives."""
    video = g1_video()
    probe = probe_video(video)
    needed = np.repeat(np.arange(0, len(probe.pts), 3), 2)[:90]  # 45 frames, each for two ticks
    pulled: list[int] = []

    def counted(frames):
        for frame in frames:
            pulled.append(frame.pts)
            yield frame

    def images():
        return tick_images(counted(decode_frames(video)), probe.pts, needed, ImageConfig(96, "stretch", 90))

    run = frames_module.ENCODE_BATCH_FRAMES
    assert run < 45
    monkeypatch.setattr(frames_module, "ENCODE_BATCH_BYTES", 1 << 30)  # the frame bound alone
    batched = images()
    first = next(batched)
    assert len(pulled) == 3 * (run - 1) + 1  # frames 0, 3, ..., 3 * (run - 1) selected, none after
    batched = [first, *batched]

    monkeypatch.setattr(frames_module, "ENCODE_BATCH_FRAMES", 1)
    pulled.clear()
    one_by_one = images()
    first_alone = next(one_by_one)
    assert len(pulled) == 1
    assert batched == [first_alone, *one_by_one]
    assert len(batched) == 90
    wanted = {int(p) for p in probe.pts[needed[::2]]}  # the 45 frames, each once
    by_frame = [
        frame_to_jpeg(f, ImageConfig(96, "stretch", 90)) for f in decode_frames(video) if f.pts in wanted
    ]
    assert batched[::2] == batched[1::2] == by_frame  # tick pairs share a frame

    monkeypatch.setattr(frames_module, "ENCODE_BATCH_FRAMES", run)
    monkeypatch.setattr(frames_module, "ENCODE_BATCH_BYTES", 2 * (640 * 480 * 3 // 2))  # two 4:2:0 frames
    pulled.clear()
    next(images())
    assert len(pulled) == 4  # frames 0 and 3


def gradient(width: int, height: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height)], -1)
    return rgb.astype(np.uint8)


def synthetic_frame(width: int, height: int, colorspace: int | None = None) -> av.VideoFrame:
    frame = av.VideoFrame.from_ndarray(gradient(width, height), format="rgb24").reformat(format="yuv420p")
    if colorspace is not None:
        frame.colorspace = colorspace
    return frame


SAMPLING = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}  # JPEG's luma sampling factors (h, v)


def luma_sampling(image: bytes) -> tuple[int, int]:
    layer = Image.open(io.BytesIO(image)).layer  # [(component id, h, v, quantization table), ...]
    return layer[0][1], layer[0][2]


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
@pytest.mark.parametrize("shape", [(160, 120), (64, 64)])
def test_yuv_route_is_as_close_to_the_picture_as_the_rgb_route(shape, subsampling):
    """Against the source picture box-filtered to 48x48, the YUV route is no worse than RGB and back
    (it is better: swscale's YUV to RGB step is biased by about -2 levels on this gradient), and its
    JPEG has the chroma subsampling asked for."""
    frame = synthetic_frame(*shape)
    assert yuv_route(frame, subsampling, 48, "stretch")
    truth = np.asarray(Image.fromarray(gradient(*shape)).resize((48, 48), Image.BOX)).astype(np.int16)
    image = frame_to_jpeg(frame, ImageConfig(48, "stretch", 95, subsampling))
    assert luma_sampling(image) == SAMPLING[subsampling]
    yuv = decoded(image)
    rgb = decoded(encode_jpeg(frame_to_rgb(frame, 48, "stretch"), 95, subsampling))
    assert np.abs(yuv - truth).mean() <= np.abs(rgb - truth).mean() + 0.25


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
@pytest.mark.parametrize("mode", ["stretch", "pad", "center-crop"])
@pytest.mark.parametrize("shape", [(160, 120), (120, 160), (64, 64)])
def test_yuv_route_keeps_the_resize_mode(mode, shape, subsampling):
    frame = synthetic_frame(*shape)
    image = frame_to_jpeg(frame, ImageConfig(48, mode, 95, subsampling))
    assert luma_sampling(image) == SAMPLING[subsampling]
    yuv = decoded(image)
    rgb = decoded(encode_jpeg(frame_to_rgb(frame, 48, mode), 95, subsampling))
    assert yuv.shape == rgb.shape == (48, 48, 3)
    assert np.abs(yuv - rgb).mean() < 3.5  # same geometry (a shifted crop or bar would be far off)
    if mode == "pad" and shape != (64, 64):
        border = yuv[:2] if shape[0] > shape[1] else yuv[:, :2]
        assert border.mean() < 1.5  # black bars (up to JPEG ringing), as in the RGB route


CHROMA_SHAPE = {"4:2:2": (48, 24), "4:2:0": (24, 24)}  # Cb and Cr planes of a 48x48 image


@pytest.mark.parametrize("subsampling", ["4:2:2", "4:2:0"])
@pytest.mark.parametrize(
    ("shape", "mode"),
    [
        ((160, 120), "stretch"),
        ((64, 64), "pad"),
        ((64, 64), "center-crop"),
        ((160, 120), "pad"),  # 48x36 in rows 6 to 41
        ((120, 160), "pad"),  # 36x48 in columns 6 to 41
        ((128, 96), "center-crop"),  # 64x48 cropped at column 8
    ],
)
def test_subsampled_output_encodes_the_scaled_yuv_planes(shape, mode, subsampling):
    """Where the route applies, the JPEG is libjpeg-turbo's of swscale's subsampled planes (not the RGB
    route's bytes, which would also have the right sampling factors)."""
    frame = synthetic_frame(*shape)
    y, u, v = frame_to_yuv(frame, 48, mode, subsampling=subsampling)
    assert y.shape == (48, 48) and u.shape == v.shape == CHROMA_SHAPE[subsampling]
    image = frame_to_jpeg(frame, ImageConfig(48, mode, 95, subsampling))
    assert image == simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=95, fastdct=False)
    assert image != encode_jpeg(frame_to_rgb(frame, 48, mode), 95, subsampling)


def test_yuv_route_only_where_jpeg_ycbcr_is_the_frames_own():
    square, wide, odd = synthetic_frame(32, 32), synthetic_frame(32, 24), synthetic_frame(32, 26)
    assert yuv_route(square, "4:2:0", 16, "pad")  # square: scaled straight to 16x16 in any mode
    assert yuv_route(wide, "4:2:0", 16, "stretch")
    assert yuv_route(wide, "4:2:0", 16, "pad")  # 16x12 at row 2: on the 2x2 chroma grid
    assert not yuv_route(odd, "4:2:0", 16, "pad")  # 16x13: a chroma sample would straddle the bar: RGB
    assert yuv_route(odd, "4:2:2", 16, "pad")  # 4:2:2 halves only the width: rows may be odd
    assert not yuv_route(wide, "4:2:2", 16, "center-crop")  # scaled to 21x16: odd width
    assert not yuv_route(square, "4:2:0", 15, "stretch")  # odd size: chroma planes round up
    assert yuv_route(odd, "4:4:4", 16, "pad")  # no chroma subsampling: every geometry
    assert not yuv_route(synthetic_frame(32, 32, colorspace=1), "4:4:4", 16, "stretch")  # BT.709
    rgb = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
    assert not yuv_route(rgb, "4:4:4", 8, "stretch")
    assert yuv_route(synthetic_frame(32, 32, colorspace=6), "4:4:4", 16, "stretch")  # SMPTE 170M is BT.601
    with pytest.raises(ValueError, match="chroma grid"):
        frame_to_yuv(odd, 16, "pad", subsampling="4:2:0")


def test_jpeg_bytes_are_deterministic():
    frame = synthetic_frame(160, 120)
    assert frame_to_jpeg(frame, ImageConfig(64, "stretch", 95)) == frame_to_jpeg(
        frame, ImageConfig(64, "stretch", 95)
    )
    bt709 = synthetic_frame(160, 120, colorspace=1)
    assert frame_to_jpeg(bt709, ImageConfig(64, "pad", 80, "4:2:0")) == frame_to_jpeg(
        bt709, ImageConfig(64, "pad", 80, "4:2:0")
    )


@pytest.mark.parametrize(
    "values",
    [
        np.arange(12, dtype=np.float32).reshape(4, 3),
        np.arange(24, dtype=np.int32).reshape(4, 2, 3),
        np.asfortranarray(np.arange(12, dtype=np.float64).reshape(4, 3)),
        np.array([[True, False], [False, True]]),
        np.arange(10, dtype=np.int64).reshape(10, 1)[::2],
    ],
)
def test_npy_rows_equal_np_save(values):
    assert list(npy_rows(values)) == [npy_bytes(v) for v in values]


def test_npy_rows_of_ragged_lists():
    values = [np.arange(3, dtype=np.int32), np.arange(5, dtype=np.int32)]
    assert list(npy_rows(values)) == [npy_bytes(v) for v in values]


def test_decoder_threads(monkeypatch):
    monkeypatch.delenv(DECODE_THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert decoder_threads() == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray sets in a worker of a num_cpus=1 task
    assert decoder_threads() == 1
    monkeypatch.setenv(DECODE_THREADS_ENV, "0")
    assert decoder_threads() == 0
    monkeypatch.setenv(DECODE_THREADS_ENV, "many")
    assert decoder_threads() == 1
