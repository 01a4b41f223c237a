"""Deterministic synthetic dataset in raw layout v1, for tests, benchmarks and demos.

Each episode is a simulated 2-link planar arm with a wrist joint and a gripper. The 7-dim state is
``joint0, joint1, joint2, ee_x, ee_y, ee_z, gripper`` (gripper 0.0 = open, 1.0 = closed; it closes
halfway through the episode while the end effector dips to grasp). Joints are sums of sinusoids with
per-episode random amplitudes, frequencies and phases, so every stream samples one continuous-time
function at its own timestamps:

- proprio: ~100 Hz, ``t_k = k * 0.01 + N(0, 0.0015)`` (clipped so it stays strictly increasing),
  ``t_0 = 0.0``, covering ``[0, seconds]``.
- action: 20 Hz from 0.0, commanded target = state at ``t + 0.1 s``.
- front camera: H.264 (libx264, yuv420p), 30 fps, ``front.mp4``, first frame at t = 0.
- wrist camera: VP9 (libvpx-vp9, yuv420p), 15 fps, ``wrist.webm``, first PTS 0 with
  ``"offsets": {"wrist": 0.25}``, so frame i is at ``0.25 + i / 15``; a zoomed view centred on the end
  effector with a scrolling grid and a different colour scheme.

Formats per episode (every reader path is exercised by the first 7 episodes):

=======  ==========================================  ===========================================
episode  proprio                                     action / other
=======  ==========================================  ===========================================
default  parquet, list<float32> "proprio", float s   parquet, one float32 column per dim, float s
ep_001   CSV, one column per dim, int64 ns           (default)
ep_002   JSONL, list "proprio", float s              (default)
ep_003   (default)                                   CSV, one column per dim, float s
ep_004   (default)                                   JSONL, list "action", int64 ns
ep_005   (default)                                   two time-ranged "instructions" segments
ep_006   (default)                                   ``front.timestamps.npy`` (jittered, replaces PTS)
=======  ==========================================  ===========================================

Output is byte-for-byte reproducible for the same arguments: single-threaded encoders, bitexact muxing,
zstd parquet, and no wall-clock or random metadata. Every file is written to a hidden temporary name
in its directory and moved into place with ``os.replace``; rewriting an episode also removes
proprio/action files in the other formats and a stale ``front.timestamps.npy``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFont

DIMS = ("joint0", "joint1", "joint2", "ee_x", "ee_y", "ee_z", "gripper")
EMBODIMENT = "synthetic_2dof_arm"
WRIST_OFFSET = 0.25
LINKS = (1.0, 0.8)
TASKS = (
    "pick up the red block",
    "push the blue cube to the left",
    "put the green cup on the plate",
    "stack the yellow block on the red block",
    "open the top drawer",
)
SEGMENTS = ("pick up the red block", "place the red block in the bowl")
# x264's AVX-512 kernels made output differ run to run on this machine even with threads=1; the pure-C
# path ("no-asm") is reproducible, does not depend on the CPU's SIMD level, and is fast enough here.
_X264 = {"threads": "1", "preset": "veryfast", "crf": "23", "x264-params": "no-asm=1"}
_VP9 = {"threads": "1", "row-mt": "0", "deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}

StateFn = Callable[[np.ndarray], np.ndarray]


def write_synthetic_dataset(
    root: str | os.PathLike,
    n_episodes: int = 8,
    seconds: float = 4.0,
    seed: int = 0,
    width: int = 160,
    height: int = 120,
    keyframe_seconds: float | None = None,
) -> list[str]:
    """Write a synthetic raw-layout-v1 dataset to root; return the episode ids (sorted). With
    ``keyframe_seconds`` both videos get a keyframe at least that often (else the encoders' default:
    every 250 frames for H.264, 128 for VP9)."""
    if width % 2 or height % 2 or width < 32 or height < 32:
        raise ValueError(f"width and height must be even and >= 32, got {width}x{height}")
    if seconds <= WRIST_OFFSET:
        raise ValueError(f"seconds must be > {WRIST_OFFSET}, got {seconds}")
    ids = []
    for index in range(n_episodes):
        episode_id = f"ep_{index:03d}"
        _write_episode(Path(root) / episode_id, index, seconds, seed, width, height, keyframe_seconds)
        ids.append(episode_id)
    return sorted(ids)


def _write_episode(
    out: Path, index: int, seconds: float, seed: int, width: int, height: int, keyframe_seconds: float | None
) -> None:
    def gop(fps: int) -> dict[str, str]:
        return {} if keyframe_seconds is None else {"g": str(max(1, round(keyframe_seconds * fps)))}

    rng = np.random.default_rng(seed + index)
    state = _make_state_fn(rng, seconds)
    out.mkdir(parents=True, exist_ok=True)

    meta: dict = {"embodiment": EMBODIMENT, "success": True, "offsets": {"wrist": WRIST_OFFSET}}
    if index == 5:
        half = round(seconds / 2, 6)
        meta["instructions"] = [
            {"start": 0.0, "end": half, "text": SEGMENTS[0]},
            {"start": half, "end": float(seconds), "text": SEGMENTS[1]},
        ]
    else:
        meta["instruction"] = TASKS[int(rng.integers(len(TASKS)))]
    _atomic_write(out / "episode.json", lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))

    # Proprio: ~100 Hz with clipped jitter so samples stay strictly increasing inside [0, seconds].
    n = int(round(seconds / 0.01))
    t_prop = np.arange(n + 1) * 0.01 + np.clip(rng.normal(0.0, 0.0015, n + 1), -0.004, 0.004)
    t_prop[0] = 0.0
    t_prop = np.clip(t_prop, 0.0, seconds)
    prop_fmt = {1: "csv_ns", 2: "jsonl_list"}.get(index, "parquet_list")
    _write_table(out, "proprio", prop_fmt, t_prop, state(t_prop))

    t_act = np.arange(int(np.floor(seconds * 20 + 1e-9)) + 1) / 20.0
    act_fmt = {3: "csv_s", 4: "jsonl_list_ns"}.get(index, "parquet_cols")
    _write_table(out, "action", act_fmt, t_act, state(t_act + 0.1))

    t_front = np.arange(int(np.floor(seconds * 30 + 1e-9)) + 1) / 30.0
    if index == 6:
        jitter = np.clip(rng.normal(0.0, 0.002, t_front.size), -0.008, 0.008)
        t_front = np.clip(t_front + jitter, 0.0, seconds)
        _atomic_write(out / "front.timestamps.npy", lambda p: _save_npy(p, t_front))
    else:
        _remove(out / "front.timestamps.npy")
    frames = (_draw_front(state(np.array([t]))[0], t, seconds, width, height) for t in t_front)
    _atomic_write(
        out / "front.mp4", lambda p: _encode(p, "mp4", "libx264", 30, _X264 | gop(30), frames, width, height)
    )

    n_wrist = int(np.floor((seconds - WRIST_OFFSET) * 15 + 1e-9)) + 1
    t_wrist = WRIST_OFFSET + np.arange(n_wrist) / 15.0
    frames = (_draw_wrist(state(np.array([t]))[0], t, seconds, width, height) for t in t_wrist)
    _atomic_write(
        out / "wrist.webm",
        lambda p: _encode(p, "webm", "libvpx-vp9", 15, _VP9 | gop(15), frames, width, height),
    )


def _make_state_fn(rng: np.random.Generator, seconds: float) -> StateFn:
    """Return state(t) -> (len(t), 7) float64 for a smooth random trajectory."""
    base = np.array([np.pi / 2 + rng.uniform(-0.3, 0.3), rng.uniform(-0.6, 0.6), 0.0])
    amp = rng.uniform(0.05, 0.3, (3, 3))
    freq = rng.uniform(0.1, 0.8, (3, 3))
    phase = rng.uniform(0.0, 2 * np.pi, (3, 3))
    grasp = seconds / 2

    def state(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)[:, None, None]
        joints = base + (amp * np.sin(2 * np.pi * freq * t + phase)).sum(axis=-1)
        q0, q1 = joints[:, 0], joints[:, 1]
        ee_x = LINKS[0] * np.cos(q0) + LINKS[1] * np.cos(q0 + q1)
        ee_y = LINKS[0] * np.sin(q0) + LINKS[1] * np.sin(q0 + q1)
        tt = t[:, 0, 0]
        ee_z = 0.2 - 0.15 * np.exp(-(((tt - grasp) / (0.15 * seconds)) ** 2))
        gripper = 1.0 / (1.0 + np.exp(np.clip(-(tt - grasp) / 0.08, -60.0, 60.0)))
        return np.column_stack([joints, ee_x, ee_y, ee_z, gripper])

    return state


def _write_table(out: Path, name: str, fmt: str, t: np.ndarray, values: np.ndarray) -> None:
    values = values.astype(np.float32)
    ns = np.round(t * 1e9).astype(np.int64)
    ext = fmt.split("_")[0]
    for stale in ("csv", "jsonl", "parquet"):
        if stale != ext:
            _remove(out / f"{name}.{stale}")
    path = out / f"{name}.{ext}"
    if ext == "jsonl":
        ts = ns.tolist() if fmt.endswith("_ns") else t.tolist()
        rows = (json.dumps({"timestamp": s, name: v}) for s, v in zip(ts, values.tolist(), strict=True))
        _atomic_write(path, lambda p: p.write_text("".join(r + "\n" for r in rows)))
        return
    ts_arr = pa.array(ns if fmt.endswith("_ns") else t, pa.int64() if fmt.endswith("_ns") else pa.float64())
    if fmt == "parquet_list":
        cols = {name: pa.array(values.tolist(), pa.list_(pa.float32()))}
    else:
        cols = {dim: pa.array(values[:, j]) for j, dim in enumerate(DIMS)}
    table = pa.table({"timestamp": ts_arr, **cols})
    if ext == "csv":
        _atomic_write(path, lambda p: pacsv.write_csv(table, str(p)))
    else:
        _atomic_write(path, lambda p: pq.write_table(table, str(p), compression="zstd"))


def _encode(
    path: Path, fmt: str, codec: str, fps: int, opts: dict, frames: Iterator, width: int, height: int
) -> None:
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=fps, options=dict(opts))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        reformatter = VideoReformatter()  # reused so swscale's context is built once per stream
        for i, rgb in enumerate(frames):
            frame = reformatter.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _draw_front(s: np.ndarray, t: float, seconds: float, width: int, height: int) -> np.ndarray:
    img = Image.new("RGB", (width, height), (18, 20, 28))
    draw = ImageDraw.Draw(img)
    scale = min(0.78 * height, 0.46 * width) / sum(LINKS)
    base = (width / 2, height * 0.86)
    to_px = _mapper(base, scale, (0.0, 0.0))
    _draw_arm(draw, s, to_px, max(2, width // 40), (200, 200, 210), (120, 140, 170), 5 + 10 * s[5])
    draw.rectangle([base[0] - 8, base[1], base[0] + 8, base[1] + 4], fill=(90, 90, 100))
    _draw_clock(draw, t, seconds, width, height, (80, 170, 255))
    return np.asarray(img)


def _draw_wrist(s: np.ndarray, t: float, seconds: float, width: int, height: int) -> np.ndarray:
    img = Image.new("RGB", (width, height), (60, 52, 40))
    draw = ImageDraw.Draw(img)
    scale = 3 * min(0.78 * height, 0.46 * width) / sum(LINKS)
    cx, cy = width / 2, height / 2
    to_px = _mapper((cx, cy), scale, (s[3], s[4]))
    step = 0.1  # world-fixed grid, so the background scrolls as the end effector moves
    for g in np.arange(np.floor((s[3] - 2) / step), np.ceil((s[3] + 2) / step)) * step:
        draw.line([to_px(g, s[4] - 2), to_px(g, s[4] + 2)], fill=(95, 85, 65))
    for g in np.arange(np.floor((s[4] - 2) / step), np.ceil((s[4] + 2) / step)) * step:
        draw.line([to_px(s[3] - 2, g), to_px(s[3] + 2, g)], fill=(95, 85, 65))
    _draw_arm(draw, s, to_px, max(4, width // 16), (240, 220, 150), (250, 160, 60), 6 + 20 * s[5])
    _draw_clock(draw, t, seconds, width, height, (250, 200, 60))
    return np.asarray(img)


def _mapper(origin: tuple, scale: float, centre: tuple) -> Callable[[float, float], tuple]:
    """World (x right, y up) -> pixel coordinates, with world point ``centre`` drawn at ``origin``."""

    def to_px(x: float, y: float) -> tuple[float, float]:
        return origin[0] + scale * (x - centre[0]), origin[1] - scale * (y - centre[1])

    return to_px


def _draw_arm(draw: ImageDraw.ImageDraw, s, to_px, lw: int, link, jaw, r: float) -> None:
    """Links base -> elbow -> end effector, gripper jaws rotated by joint2, EE disc green->red."""
    q0, q1, q2, ee_x, ee_y, _, grip = s
    elbow = (LINKS[0] * np.cos(q0), LINKS[0] * np.sin(q0))
    pts = [to_px(0.0, 0.0), to_px(*elbow), to_px(ee_x, ee_y)]
    draw.line(pts, fill=link, width=lw, joint="curve")
    ex, ey = pts[2]
    heading = q0 + q1 + q2
    d = np.array([np.cos(heading), -np.sin(heading)])
    n = np.array([-d[1], d[0]]) * r * (1.6 - 0.9 * grip)
    for side in (1, -1):
        a = (ex + side * n[0], ey + side * n[1])
        draw.line([a, (a[0] + d[0] * 1.5 * r, a[1] + d[1] * 1.5 * r)], fill=jaw, width=max(1, lw // 2))
    colour = (int(40 + 200 * grip), int(220 - 180 * grip), 60)
    draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=colour)


def _draw_clock(draw: ImageDraw.ImageDraw, t: float, seconds: float, width: int, height: int, fill) -> None:
    bar = max(3, height // 30)
    draw.rectangle([0, height - bar, width - 1, height - 1], fill=(50, 50, 50))
    draw.rectangle([0, height - bar, int((width - 1) * min(t / seconds, 1.0)), height - 1], fill=fill)
    draw.text((3, 2), f"t={t:.2f}s", fill=(235, 235, 235), font=_font())


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(array, dtype=np.float64), allow_pickle=False)


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
