"""A ground-truth recording: a camera that films a marker whose position is a known function of time.

The marker is a bright vertical bar drawn with sub-pixel (area-coverage) edges at ``x = position(t)``
pixels. Proprio samples the same function at ~100 Hz with jitter; the camera's PTS start at 0 and
``episode.json`` declares its true start with an offset. Measuring the bar in a written JPEG and
comparing it with ``state.npy`` of the same sample tests alignment end to end.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SIZE = 224
BAR_HALF_WIDTH = 4.0


def position(t: np.ndarray | float) -> np.ndarray:
    return 112.0 + 70.0 * np.sin(2 * np.pi * np.asarray(t) / 2.5)


def draw(x: float) -> np.ndarray:
    cols = np.arange(SIZE, dtype=np.float64)
    cover = np.clip(np.minimum(cols + 1, x + BAR_HALF_WIDTH) - np.maximum(cols, x - BAR_HALF_WIDTH), 0, 1)
    row = (16 + 219 * cover).astype(np.uint8)
    return np.repeat(np.repeat(row[None, :, None], SIZE, axis=0), 3, axis=2)


def measure(rgb: np.ndarray) -> float:
    """The bar's centre in pixels: intensity-weighted mean column, background removed."""
    profile = rgb.astype(np.float64).mean(axis=(0, 2)) - 16.0
    profile = np.clip(profile, 0, None)
    return float((profile * (np.arange(SIZE) + 0.5)).sum() / profile.sum())


def write_episode(
    root: Path, eid: str, pts_s: np.ndarray, offset: float, seconds: float, seed: int = 0
) -> None:
    """One episode: ``cam.mkv`` with frames at ``pts_s`` (seconds, any spacing: VFR and drops allowed)."""
    ep = root / eid
    ep.mkdir(parents=True)
    with av.open(str(ep / "cam.mkv"), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"crf": "8", "preset": "veryfast", "bf": "0"}
        for p in pts_s:
            frame = av.VideoFrame.from_ndarray(draw(float(position(p + offset))), format="rgb24")
            frame.pts = round(p * 1000)
            frame.time_base = Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    rng = np.random.default_rng(seed)
    t = (
        np.arange(0, seconds, 0.01)
        + rng.uniform(-0.002, 0.002, int(np.ceil(seconds / 0.01)))[: len(np.arange(0, seconds, 0.01))]
    )
    t = np.sort(np.clip(t, 0, None))
    vals = np.stack([position(t), np.cos(t)], axis=1).astype(np.float32)
    table = pa.table({"timestamp": t, "proprio": pa.array(list(vals), pa.list_(pa.float32()))})
    pq.write_table(table, ep / "proprio.parquet")
    meta = {"instruction": "track the marker", "offsets": {"cam": offset}, "embodiment": "marker_rig"}
    (ep / "episode.json").write_text(json.dumps(meta))
