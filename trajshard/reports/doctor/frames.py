"""Measures of one frame for the camera checks: its grey levels at a reduced size (to compare frames:
a repeated frame that went through a lossy codec again is close to, not equal to, the first), their
spread (a frame that shows nothing), and how much of its detail lies above half the Nyquist frequency
along each axis (an image upscaled by 2 or more has almost none there).

Upscaling by interpolation (bilinear, bicubic, area, Lanczos: what FFmpeg, OpenCV, Pillow and
trajshard's own resize do) low-passes the image at ``1/factor`` of the new Nyquist frequency; what is
left above is the codec's noise. The share is taken of the energy above 1/8 of Nyquist, so a scene's
large smooth areas (most of any picture's energy) do not dilute it: a camera image keeps several
percent up there, an image upscaled 2x or more well under 2 %. Nearest-neighbour upscaling copies
pixels instead and is not recognised.
"""

from __future__ import annotations

import numpy as np

from trajshard.reports.doctor.views import FrameProbe

GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
FLAT_SIDE = 128  # grey levels are kept at most about this many pixels a side
DETAIL_SIDE = 256  # detail is measured on a centre crop of at most this size
BAND = 0.125  # detail is energy above this share of the Nyquist frequency


def grey(rgb: np.ndarray, stride: int = 1) -> np.ndarray:
    return rgb[::stride, ::stride, :3].astype(np.float32) @ GREY


def probe_frame(rgb: np.ndarray, time: float, measure: bool, flat_std: float) -> FrameProbe:
    """The measures of an RGB frame [H, W, 3] uint8; its detail only when ``measure``."""
    stride = max(1, max(rgb.shape[:2]) // FLAT_SIDE)
    g = grey(rgb, stride)
    mean, std = float(g.mean()), float(g.std())
    detail = detail_shares(grey(_centre(rgb, DETAIL_SIDE))) if measure and std >= flat_std else None
    return FrameProbe(time, np.clip(np.rint(g), 0, 255).astype(np.uint8), mean, std, detail)


def same_picture(a: FrameProbe, b: FrameProbe, level: float) -> bool:
    """Whether two frames show the same picture: grey levels closer than ``level`` on average."""
    if a.grey.shape != b.grey.shape:
        return False
    return float(np.abs(a.grey.astype(np.int16) - b.grey).mean()) < level


def _centre(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return rgb[top : top + side, left : left + side]


def detail_shares(g: np.ndarray) -> tuple[float, float]:
    """Per axis (horizontal, vertical): the share of the energy above 1/8 of Nyquist that lies above
    half of it (Hann-windowed spectrum of the grey levels)."""
    g = g - g.mean()
    h, w = g.shape
    power = np.abs(np.fft.rfft2(g * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    fy = np.abs(np.fft.fftfreq(h)) * 2
    fx = np.fft.rfftfreq(w) * 2
    power *= np.where((fx == 0) | (fx >= 1.0), 1.0, 2.0)[None, :]  # rfft keeps one of each +-f pair
    shares = []
    for spectrum, freq in ((power.sum(axis=0), fx), (power.sum(axis=1), fy)):
        band = spectrum[freq > BAND].sum()
        shares.append(float(spectrum[freq > 0.5].sum() / band) if band > 0 else 0.0)
    return shares[0], shares[1]
