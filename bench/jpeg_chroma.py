"""What each JPEG chroma subsampling costs and keeps, on the real videos: the data behind ``--jpeg-subsampling``.

    python bench/jpeg_chroma.py [--frames N] [--size S] [--quality Q] [--repeat N]
                                [--chroma-siting left|center] [--video PATH]...

For frames spread over the real G1 (AV1 640x480) and GR00T (H.264 256x256) videos in ``../shared/data``
(or the ``--video`` files), each tick image is made the way pass 2 makes it (``frame_to_jpeg``, resize
mode stretch) at 4:4:4, 4:2:2 and 4:2:0, then decoded as a loader would (libjpeg-turbo to RGB) and
compared with the exact picture: the decoded YUV converted to RGB in float (BT.601, the frame's range,
chroma bilinear at the source's siting) and area-averaged to the output size, never rounded. The siting
is MPEG-2's by default (``left``: co-sited with even luma columns, between luma rows), what H.264 and
FFmpeg assume when a stream does not say; ``--chroma-siting center`` takes JPEG's instead. Printed per
video set and subsampling: PSNR against that picture, mean bytes, and time per tick image (best of
``--repeat``, the subsamplings timed in turn), each also as a ratio to 4:4:4 measured in the same run.

Only 8-bit planar YUV frames in the BT.601 (or an untagged) matrix are compared; others are skipped
with a note. See bench/README.md and docs/decisions.md ("JPEG 4:4:4 by default").
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import simplejpeg
from av.video.reformatter import VideoReformatter
from ingest import G1, GR00T, LeRobotSpec, lerobot_file, lerobot_meta

from trajshard.pipelines.frames import YUV_JPEG_FORMATS, ImageConfig, frame_to_jpeg, yuv_route

SUBSAMPLINGS = tuple(YUV_JPEG_FORMATS)  # 4:4:4 first: the ratios are against it
FULL_RANGE = 2  # AVCOL_RANGE_JPEG: a yuv420p frame may carry full-range values and say so


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: output sample j is the mean of input [j, j+1) * n_in / n_out, partial samples
    weighted by their overlap (an exact box filter, what swscale's AREA approximates)."""
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for j in range(n_out):
        lo, hi = j * scale, (j + 1) * scale
        for i in range(int(np.floor(lo)), min(n_in, int(np.ceil(hi)))):
            w[j, i] = min(hi, i + 1) - max(lo, i)
    return w / scale


def chroma_to_luma(c: np.ndarray, height: int, width: int, siting: str = "left") -> np.ndarray:
    """A chroma plane bilinearly resampled to the luma grid. Subsampled chroma sits between luma rows,
    and on even luma columns (``left``, MPEG-2: H.264's and FFmpeg's default) or between them
    (``center``, JPEG's). An odd luma size has a last chroma sample that covers one luma sample."""
    h, w = c.shape
    fx, fy = round(width / w), round(height / h)
    cols = np.arange(width) / fx if siting == "left" else (np.arange(width) + 0.5) / fx - 0.5
    xs = np.clip(cols, 0, w - 1)
    ys = np.clip((np.arange(height) + 0.5) / fy - 0.5, 0, h - 1)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = xs - x0, (ys - y0)[:, None]
    rows = c[:, x0] * (1 - ax) + c[:, x1] * ax
    return rows[y0] * (1 - ay) + rows[y1] * ay


def exact_picture(frame: av.VideoFrame, size: int, siting: str = "left") -> np.ndarray:
    """The frame as float RGB [size, size, 3] on a 0-255 scale, stretched by exact area averaging."""
    y, u, v = (
        np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width].astype(np.float64)
        for p in frame.planes
    )
    if frame.format.name.startswith("yuvj") or frame.color_range == FULL_RANGE:
        luma, cb, cr = y, u - 128, v - 128
    else:  # limited range: Y 16-235, Cb Cr 16-240
        luma, cb, cr = (y - 16) * 255 / 219, (u - 128) * 255 / 224, (v - 128) * 255 / 224
    height, width = luma.shape
    cb, cr = chroma_to_luma(cb, height, width, siting), chroma_to_luma(cr, height, width, siting)
    rgb = (luma + 1.402 * cr, luma - 0.344136 * cb - 0.714136 * cr, luma + 1.772 * cb)
    rows, cols = area_weights(height, size), area_weights(width, size)
    return np.clip(np.stack([rows @ c @ cols.T for c in rgb], axis=-1), 0, 255)


def psnr(decoded: np.ndarray, exact: np.ndarray) -> float:
    mse = float(np.mean((decoded.astype(np.float64) - exact) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def sample_frames(paths: list[Path], n: int) -> list[av.VideoFrame]:
    """About ``n`` frames spread evenly over ``paths`` (every k-th decoded frame of each file)."""
    per_file = max(1, -(-n // len(paths)))
    out: list[av.VideoFrame] = []
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            step = max(1, (stream.frames or 300) // per_file)
            frames = [f for i, f in enumerate(container.decode(stream)) if i % step == 0][:per_file]
        out += frames
    return out[:n]


@dataclass(frozen=True)
class Result:
    subsampling: str
    psnr_db: float
    mean_bytes: float
    us_per_image: float


def measure(frames: list[av.VideoFrame], size: int, quality: int, repeat: int, siting: str) -> list[Result]:
    reformatter = VideoReformatter()
    exact = [exact_picture(f, size, siting) for f in frames]
    # the images compared, made first: also the untimed warm-up of the timed passes
    jpegs = {
        s: [frame_to_jpeg(f, ImageConfig(size, "stretch", quality, s), reformatter) for f in frames]
        for s in SUBSAMPLINGS
    }
    best = dict.fromkeys(SUBSAMPLINGS, float("inf"))
    for _ in range(repeat):  # the subsamplings in turn, so a slow moment of the machine hits all
        for s in SUBSAMPLINGS:
            started = time.perf_counter()
            for f in frames:
                frame_to_jpeg(f, ImageConfig(size, "stretch", quality, s), reformatter)
            best[s] = min(best[s], time.perf_counter() - started)
    results = []
    for s in SUBSAMPLINGS:
        scores = [psnr(simplejpeg.decode_jpeg(j), e) for j, e in zip(jpegs[s], exact, strict=True)]
        results.append(
            Result(
                s,
                float(np.mean(scores)),
                float(np.mean([len(j) for j in jpegs[s]])),
                best[s] / len(frames) * 1e6,
            )
        )
    return results


def lerobot_videos(spec: LeRobotSpec) -> list[Path]:
    meta = lerobot_meta(spec)
    if meta is None:
        return []
    root, info = meta
    chunks = int(info.get("chunks_size", 1000))
    try:
        return [lerobot_file(root, info["video_path"], i, chunks, spec.video_key) for i in spec.episodes]
    except FileNotFoundError as exc:
        print(f"note: {spec.folder}: {exc}; skipping it")
        return []


def table(rows: list[tuple[str, str, int, list[Result]]]) -> str:
    lines = [
        "| videos | source | frames | chroma | PSNR dB vs exact | dB - 4:4:4 | mean bytes | bytes / 4:4:4 "
        "| us per tick image | time / 4:4:4 |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, source, n, results in rows:
        ref = results[0]
        for r in results:
            lines.append(
                f"| {name} | {source} | {n} | {r.subsampling} | {r.psnr_db:.2f} | {r.psnr_db - ref.psnr_db:+.2f} "
                f"| {r.mean_bytes:,.0f} | {r.mean_bytes / ref.mean_bytes:.2f} | {r.us_per_image:.0f} "
                f"| {r.us_per_image / ref.us_per_image:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per video set (default 60)")
    parser.add_argument("--size", type=int, default=224, help="output size (default 224, the job default)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95, the job default)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per subsampling, best kept")
    parser.add_argument(
        "--chroma-siting",
        choices=("left", "center"),
        default="left",
        help="where the source's chroma samples sit, for the exact picture (default left: MPEG-2, H.264)",
    )
    parser.add_argument(
        "--video", type=Path, action="append", help="measure these files instead of the real sets"
    )
    args = parser.parse_args(argv)
    sets = (
        {"given": args.video}
        if args.video
        else {"g1-real": lerobot_videos(G1), "gr00t-real": lerobot_videos(GR00T)}
    )
    rows = []
    for name, paths in sets.items():
        if not paths:
            continue
        frames = sample_frames(paths, args.frames)
        # the frames pass 2 encodes from their own YUV (8-bit, BT.601 or untagged), whose exact picture is known
        kept = [f for f in frames if yuv_route(f, "4:4:4", args.size, "stretch")]
        if len(kept) < len(frames):
            print(f"note: {name}: {len(frames) - len(kept)} frames are not 8-bit BT.601 YUV; left out")
        if not kept:
            continue
        f = kept[0]
        source = f"{f.width}x{f.height} {f.format.name}"
        results = measure(kept, args.size, args.quality, args.repeat, args.chroma_siting)
        rows.append((name, source, len(kept), results))
    if not rows:
        print("no videos to measure (the real data is absent; --video PATH measures other files)")
        return 0
    print(
        f"JPEG quality {args.quality}, {args.size}x{args.size} stretch, libjpeg-turbo via simplejpeg "
        f"{simplejpeg.__version__}; exact picture with {args.chroma_siting}-sited source chroma\n"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
