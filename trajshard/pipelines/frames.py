"""Frames for ticks: pick each tick's frame from a decoded stream, resize, JPEG-encode (streaming).

``tick_images(frames, pts, needed, image)`` consumes decoded frames one at a time and yields one
encoded image per tick, made as the ``image`` section of the job config says (:class:`ImageConfig`). The frames ticks select are encoded in runs of up to 32, a run ending once
it holds 8 MiB, so each camera holds at most one run of decoded frames; decoding stops after the
last frame a tick needs. Colour conversion and resizing happen in swscale (``VideoFrame.reformat``),
and only for frames a tick selects.

A BT.601 (or untagged) 8-bit YUV frame is encoded without becoming RGB where it can be: swscale
scales it straight to full-range YUV at the output's chroma subsampling (4:4:4, 4:2:2 or 4:2:0),
JPEG's own YCbCr, and libjpeg-turbo encodes those planes (``frame_to_yuv``). That skips two colour
conversions and, for 4:2:0 and 4:2:2, the chroma upsampling and downsampling in between. Subsampled output
takes this route only where the scaled frame's size and its pad or crop offset fall on the chroma
grid (even where the chroma is halved), so no chroma sample straddles an edge: a stretch to an even
size, any mode of a square source, a 640x480 camera padded to 224 (224x168 at row 28); not that
camera center-cropped (299x224). Anything else (RGB sources, BT.709 and other matrices, an off-grid
pad or crop at 4:2:0/4:2:2) goes through RGB (``frame_to_rgb``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import av
import numpy as np
import simplejpeg
from av.video.reformatter import VideoReformatter

# PyAV >= 17 scales with automatic slice threads unless told otherwise; at these sizes they cost more than
# they save while a decoder runs beside them. One thread gives the same pixels.
SWS_ONE_THREAD: dict[str, int] = {"threads": 1} if int(av.__version__.split(".")[0]) >= 17 else {}


class FrameError(ValueError):
    """The decoded video disagrees with what its container promised."""


RESIZE_MODES = ("stretch", "pad", "center-crop")
SUBSAMPLINGS = ("4:4:4", "4:2:2", "4:2:0")


@dataclass(frozen=True)
class ImageConfig:
    """The ``image`` section of a job config: every camera's frames become ``size`` x ``size`` JPEGs."""

    size: int = 224
    resize_mode: str = "stretch"
    quality: int = 95
    subsampling: str = "4:4:4"  # JPEG chroma; 4:2:0 is smaller and keeps less colour detail

    CHOICES = {"resize_mode": RESIZE_MODES, "subsampling": SUBSAMPLINGS}

    @property
    def jpeg_estimate(self) -> float:
        """Rough bytes of one image, from the raw RGB size and the quality (pass-2 planning only)."""
        return self.size**2 * 3 * (0.06 + 0.0015 * self.quality)

    def problems(self) -> list[str]:
        out = []
        if not 8 <= self.size <= 4096:
            out.append(f"image_size must be in [8, 4096], got {self.size}")
        if self.resize_mode not in RESIZE_MODES:
            out.append(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not 1 <= self.quality <= 100:
            out.append(f"jpeg_quality must be in [1, 100], got {self.quality}")
        if self.subsampling not in SUBSAMPLINGS:
            out.append(f"jpeg_subsampling must be 4:4:4, 4:2:2 or 4:2:0, got {self.subsampling!r}")
        return out


def _scaled(frame: av.VideoFrame, reformatter: VideoReformatter | None, **kwargs) -> av.VideoFrame:
    """``frame.reformat(**kwargs)``, through ``reformatter`` when given: a VideoFrame's own reformat
    sets up a new swscale context (its filters) every call, a kept one only when the input changes
    (same pixels)."""
    return frame.reformat(**kwargs) if reformatter is None else reformatter.reformat(frame, **kwargs)


def placement(width: int, height: int, size: int, mode: str) -> tuple[int, int, int, int]:
    """(w, h, top, left): the size a ``width`` x ``height`` frame is scaled to, and where it sits in the
    ``size`` x ``size`` output (pad: its offset inside; center-crop: the output's offset inside it;
    stretch: the output itself)."""
    if mode == "stretch":
        return size, size, 0, 0
    scale = (min if mode == "pad" else max)(size / width, size / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    if (w, h) == (size, size):
        return w, h, 0, 0
    if mode == "pad":
        return w, h, (size - h) // 2, (size - w) // 2
    return w, h, (h - size) // 2, (w - size) // 2


def frame_to_rgb(frame, size: int, mode: str, reformatter: VideoReformatter | None = None) -> np.ndarray:
    """An ``av.VideoFrame`` to a uint8 [size, size, 3] RGB array (stretch, pad or center-crop)."""
    w, h, top, left = placement(frame.width, frame.height, size, mode)
    if isinstance(frame, av.VideoFrame):
        scaled = _scaled(
            frame, reformatter, width=w, height=h, format="rgb24", interpolation="AREA", **SWS_ONE_THREAD
        )
        rgb = scaled.to_ndarray()
    else:  # a stored image (sources/video.py StoredJpeg)
        rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA", **SWS_ONE_THREAD)
    if (w, h) == (size, size):
        return rgb
    if mode == "pad":
        out = np.zeros((size, size, 3), dtype=np.uint8)
        out[top : top + h, left : left + w] = rgb
        return out
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


# Matrices of JPEG's YCbCr: BT.470BG and SMPTE 170M are BT.601; untagged video is BT.601 to swscale too.
BT601_COLORSPACES = {2, 5, 6}  # AVCOL_SPC_UNSPECIFIED, AVCOL_SPC_BT470BG, AVCOL_SPC_SMPTE170M
YUV_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "yuv440p", "yuvj440p"}
# full-range planar YUV at each JPEG chroma subsampling: libjpeg-turbo reads the subsampling off the plane shapes
YUV_JPEG_FORMATS = {"4:4:4": "yuvj444p", "4:2:2": "yuvj422p", "4:2:0": "yuvj420p"}
CHROMA_STEP = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:2:0": (2, 2)}  # luma pixels per chroma sample (x, y)


def on_chroma_grid(place: tuple[int, int, int, int], size: int, subsampling: str) -> bool:
    """Whether a ``placement`` (w, h, top, left) in a ``size`` output keeps every width and left offset
    a multiple of the chroma's horizontal step and every height and top offset of its vertical one."""
    w, h, top, left = place
    sx, sy = CHROMA_STEP[subsampling]
    return w % sx == left % sx == size % sx == 0 and h % sy == top % sy == size % sy == 0


def frame_to_yuv(
    frame, size: int, mode: str, reformatter: VideoReformatter | None = None, subsampling: str = "4:4:4"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An ``av.VideoFrame`` to JPEG's YCbCr (BT.601, full range): uint8 planes, Y [size, size] and Cb, Cr
    at ``subsampling`` (stretch, pad or center-crop; pad is black, Y 0 and Cb Cr 128, like RGB 0).
    Subsampled planes only where every size and offset falls on the chroma grid (see ``yuv_route``)."""
    place = placement(frame.width, frame.height, size, mode)
    if not on_chroma_grid(place, size, subsampling):
        w, h, top, left = place
        raise ValueError(
            f"{subsampling} planes need sizes and offsets on the chroma grid: {w}x{h} at ({left}, {top}) "
            f"in {size}x{size}"
        )
    return _yuv_planes(frame, place, size, mode, reformatter, subsampling)


def _yuv_planes(
    frame,
    place: tuple[int, int, int, int],
    size: int,
    mode: str,
    reformatter: VideoReformatter | None,
    subsampling: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``frame_to_yuv`` for a ``placement`` already checked to be on the chroma grid."""
    w, h, top, left = place
    sx, sy = CHROMA_STEP[subsampling]
    yuv = _scaled(
        frame,
        reformatter,
        width=w,
        height=h,
        format=YUV_JPEG_FORMATS[subsampling],
        interpolation="AREA",
        **SWS_ONE_THREAD,
    )
    planes = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width] for p in yuv.planes]
    if (w, h) == (size, size):
        return planes[0], planes[1], planes[2]
    steps = [(1, 1), (sx, sy), (sx, sy)]  # Y, Cb, Cr
    if mode == "pad":
        out = []
        for p, (fx, fy), fill in zip(planes, steps, (0, 128, 128), strict=True):
            o = np.full((size // fy, size // fx), fill, dtype=np.uint8)
            o[top // fy : top // fy + p.shape[0], left // fx : left // fx + p.shape[1]] = p
            out.append(o)
        return out[0], out[1], out[2]
    y, u, v = (
        p[top // fy : (top + size) // fy, left // fx : (left + size) // fx]
        for p, (fx, fy) in zip(planes, steps, strict=True)
    )
    return y, u, v


def yuv_route(frame, subsampling: str, size: int, mode: str) -> bool:
    """True when ``frame_to_jpeg`` encodes the frame's YUV directly (see the module docstring): at 4:4:4
    always; at 4:2:2 and 4:2:0 when the scaled frame's size and its pad or crop offset fall on the
    chroma grid (even where the chroma is halved), so no chroma sample straddles an edge."""
    return _yuv_colours(frame, subsampling) and on_chroma_grid(
        placement(frame.width, frame.height, size, mode), size, subsampling
    )


def _yuv_colours(frame, subsampling: str) -> bool:
    """Whether the frame is 8-bit planar YUV in JPEG's BT.601 matrix, for a subsampling JPEG has."""
    fmt = getattr(frame, "format", None)
    return (
        subsampling in YUV_JPEG_FORMATS
        and getattr(fmt, "name", None) in YUV_8BIT
        and getattr(frame, "colorspace", None) in BT601_COLORSPACES
    )


def frame_to_jpeg(frame, image: ImageConfig, reformatter: VideoReformatter | None = None) -> bytes:
    """The JPEG of a decoded frame as ``image`` says; pass a ``reformatter`` kept over a stream's
    frames to scale them faster."""
    size, mode, quality, subsampling = image.size, image.resize_mode, image.quality, image.subsampling
    if _yuv_colours(frame, subsampling):  # yuv_route, with the placement made once
        place = placement(frame.width, frame.height, size, mode)
        if on_chroma_grid(place, size, subsampling):
            y, u, v = _yuv_planes(frame, place, size, mode, reformatter, subsampling)
            return simplejpeg.encode_jpeg_yuv_planes(y, u, v, quality=quality, fastdct=False)
    return encode_jpeg(frame_to_rgb(frame, size, mode, reformatter), quality, subsampling)


SUBSAMPLING = {"4:4:4": "444", "4:2:2": "422", "4:2:0": "420"}


def encode_jpeg(rgb: np.ndarray, quality: int, subsampling: str = "4:4:4") -> bytes:
    """Baseline JPEG of a uint8 [H, W, 3] RGB array through libjpeg-turbo (simplejpeg: less overhead
    than Pillow, same library underneath): accurate integer DCT, standard Huffman tables,
    so the same pixels always give the same bytes."""
    return simplejpeg.encode_jpeg(
        np.ascontiguousarray(rgb),
        quality=quality,
        colorspace="RGB",
        colorsubsampling=SUBSAMPLING[subsampling],
        fastdct=False,
    )


# The selected frames are decoded in runs, then scaled and encoded one after another: each stage's
# code and tables stay in the CPU's caches over a run, where switching stages at every frame evicts
# more of them. A run ends at this many frames, or once it holds this many bytes, which bounds the
# decoded frames a camera holds.
ENCODE_BATCH_FRAMES = 32
ENCODE_BATCH_BYTES = 8 << 20


def frame_bytes(frame: object) -> int:
    """Bytes a decoded frame holds (its planes), or its stored JPEG's."""
    planes = getattr(frame, "planes", None)
    if planes is not None:
        return sum(p.buffer_size for p in planes)
    return len(getattr(frame, "data", b""))


def tick_images(
    frames: Iterable,
    pts: np.ndarray,
    needed: np.ndarray,
    image: ImageConfig,
    first_tick: int = 0,
) -> Iterator[bytes]:
    """Yield the JPEG of frame ``needed[t]`` for each tick t (``needed`` is non-decreasing; its first
    is tick ``first_tick`` of the episode, which messages name).

    ``pts[i]`` is the presentation timestamp of frame i; decoded frames are recognised by their PTS
    (or counted when the decoder gives none). The frames ticks select are encoded in runs of up to
    ``ENCODE_BATCH_FRAMES`` (and ``ENCODE_BATCH_BYTES``); the images come out in tick order, the same
    bytes as one by one.
    """
    if len(needed) == 0:
        return
    if np.any(np.diff(needed) < 0):
        raise ValueError("frame indices of the ticks must be non-decreasing")
    index_of = {int(p): i for i, p in enumerate(pts)}
    reformatter = VideoReformatter()  # one swscale context for the stream's frames
    t, n_ticks, last_needed = 0, len(needed), int(needed[-1])
    counted = -1
    batch: list[tuple[object, int]] = []  # selected frames not encoded yet, and how many ticks each
    held = 0
    for frame in frames:
        counted += 1
        i = index_of.get(int(frame.pts), -1) if frame.pts is not None else counted
        if i < int(needed[t]):
            continue
        if i > int(needed[t]):
            raise FrameError(
                f"frame {int(needed[t])} (pts {int(pts[needed[t]])}) was never decoded; "
                f"the decoder went from before it to frame {i}"
            )
        ticks = t
        while t < n_ticks and int(needed[t]) == i:
            t += 1
        batch.append((frame, t - ticks))
        held += frame_bytes(frame)
        done = t == n_ticks or i >= last_needed
        if done or len(batch) >= ENCODE_BATCH_FRAMES or held >= ENCODE_BATCH_BYTES:
            for selected, repeat in batch:  # each frame's image, as many times as ticks select it
                stored = getattr(selected, "jpeg", None)
                if stored is not None and (selected.width, selected.height) == (image.size, image.size):
                    jpeg = stored  # already a JPEG of the output size: the source's bytes, untouched
                else:
                    jpeg = frame_to_jpeg(selected, image, reformatter)
                yield from [jpeg] * repeat
            batch, held = [], 0
        if done:
            break
    if t < n_ticks:
        raise FrameError(
            f"the video ended after {counted + 1} decoded frames, before frame "
            f"{int(needed[t])} that tick {first_tick + t} needs ({len(pts)} frames in the container)"
        )
