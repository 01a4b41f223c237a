"""Small test videos written with PyAV's encoders."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def encode(path: Path, codec: str, fmt: str | None, options: dict, pix_fmt: str, n: int = 45) -> None:
    """``n`` frames of 160x120 at 30 fps (moving bars over noise) with ``codec`` and its ``options``, in
    the container ``fmt`` (None: from the file name)."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, pix_fmt
        stream.options = options
        for i in range(n):
            img = rng.integers(0, 30, (120, 160, 3), dtype=np.uint8)
            img[:, (i * 3) % 160 :] += 120
            img[(i * 2) % 120 :, :, 1] += 90
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
