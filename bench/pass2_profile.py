"""Pass 2 of one dataset in this process, without Ray: where the time goes, stage by stage.

    python bench/pass2_profile.py [g1|gr00t|synthetic|synthetic-10x] [--profile] [--threads N] [--repeat N]

An ingest (local Ray, one worker) fits the tokenizer once; then ``pass2_group`` runs over all the
episodes as one group in this process (reading pass 1's handoff, as in an ingest), best of
``--repeat``, next to the cost of its stages on the same
videos: decode every frame (PyAV, the bench's decode-only), decode only what pass 2 decodes (sparse),
plus conversion to 224x224 RGB of the frames the ticks select, plus JPEG. ``--profile`` prints a
pyinstrument profile of one ``pass2_group`` call. ``--threads`` sets the decoder threads
(``TRAJSHARD_DECODE_THREADS``; 0 = FFmpeg's automatic choice).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ingest as bench  # noqa: E402  (bench/ingest.py: the same sources as the bench table)
import ray  # noqa: E402

from trajshard.config import JobConfig  # noqa: E402
from trajshard.io import read_json  # noqa: E402
from trajshard.pipelines.frames import frame_to_rgb, tick_images  # noqa: E402
from trajshard.pipelines.ingest import run_ingest  # noqa: E402
from trajshard.pipelines.plan import Group  # noqa: E402
from trajshard.pipelines.tasks import TaskContext, pass1_batch, pass2_group  # noqa: E402
from trajshard.sources import (
    SourceSpec,  # noqa: E402
    camera_frames,  # noqa: E402
)

SOURCES = {
    "g1": lambda w: bench.prepare_lerobot(bench.G1, w),
    "gr00t": lambda w: bench.prepare_lerobot(bench.GR00T, w),
    "synthetic": lambda w: bench.prepare_synthetic(4.0, w),
    "synthetic-10x": lambda w: bench.prepare_synthetic(40.0, w),
}


def best(fn, repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the fastest of ``repeat`` calls (CPU of this process, all its threads)."""
    times = []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(times)


def stages(reader, ids: list[str]):
    """The (episode, camera) work items of pass 2: (camera, tick frame indices)."""
    items = []
    source = reader.source
    for eid in ids:
        work = reader.read(eid)
        ep = work.episode
        for al in work.parts:
            for cam in al.frames:
                items.append((source, ep.cameras[cam], al.frames[cam]))
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", choices=sorted(SOURCES), nargs="?", default="g1")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    if args.threads is not None:
        os.environ["TRAJSHARD_DECODE_THREADS"] = str(args.threads)
    work = Path(tempfile.mkdtemp(prefix="trajshard-p2-"))
    src = SOURCES[args.dataset](work)
    if src is None:
        return 1
    cfg = JobConfig.from_flags(workers=1)
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    report = run_ingest(str(src), str(work / "out0"), cfg, progress=False)
    ray.shutdown()
    tok = read_json(work / "out0" / "meta" / "tokenizer.json")
    spec = SourceSpec(str(src), "raw", cfg.align.fps)
    ids = sorted(p.name for p in Path(src).iterdir() if p.is_dir())
    reader = TaskContext(spec, cfg, "").reader()
    source = reader.source
    items = stages(reader, ids)
    handed = work / "handoff"  # pass 1's aligned episodes, as an ingest hands them to pass 2
    handed.mkdir()
    pass1_batch(TaskContext(spec, cfg, "", str(handed)), ids)
    frames = sum(len(c.pts) for _, c, _ in items)

    def full():
        for _, c, _ in items:
            for _ in camera_frames(source, c):
                pass

    def sparse():
        for s, c, need in items:
            for _ in camera_frames(s, c, int(c.pts[need[0]]), c.pts[need]):
                pass

    def convert():
        for s, c, need in items:
            want = set(int(x) for x in c.pts[need])
            for f in camera_frames(s, c, int(c.pts[need[0]]), c.pts[need]):
                if f.pts in want:
                    frame_to_rgb(f, cfg.image.size, cfg.image.resize_mode)

    def images():
        for s, c, need in items:
            frames_ = camera_frames(s, c, int(c.pts[need[0]]), c.pts[need])
            for _ in tick_images(frames_, c.pts, need, cfg.image):
                pass

    n = [0]

    def pass2():
        n[0] += 1
        group = Group(0, cfg.output.split, tuple(ids))
        pass2_group(TaskContext(spec, cfg, str(work / f"p2-{n[0]}"), str(handed), tok), group)

    rows = [
        ("decode all frames", best(full, args.repeat)),
        ("sparse decode", best(sparse, args.repeat)),
        ("+ RGB 224 of tick frames", best(convert, args.repeat)),
        ("+ JPEG (tick_images)", best(images, args.repeat)),
        ("pass2_group (whole)", best(pass2, args.repeat)),
    ]
    ticks = sum(len(need) for _, _, need in items)
    print(
        f"{args.dataset}: {len(ids)} episodes, {frames} source frames, {ticks} tick images, "
        f"{report.samples} samples; decoder threads {os.environ.get('TRAJSHARD_DECODE_THREADS', 'default')}"
    )
    print("| stage | wall s | CPU s | source frames/s (wall) | x decode-all (wall) | x decode-all (CPU) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (sec, cpu) in rows:
        print(
            f"| {name} | {sec:.3f} | {cpu:.3f} | {frames / sec:,.0f} | {rows[0][1][0] / sec:.2f} "
            f"| {rows[0][1][1] / cpu:.2f} |"
        )
    for name, a, b in (("RGB 224", 1, 2), ("JPEG", 2, 3)):
        print(f"{name} per tick image ~{(rows[b][1][1] - rows[a][1][1]) / max(ticks, 1) * 1e3:.3f} ms CPU")
    print(
        f"rest of pass 2 per sample ~{(rows[4][1][1] - rows[3][1][1]) / max(report.samples, 1) * 1e3:.3f} ms CPU"
    )
    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005)
        prof.start()
        pass2()
        prof.stop()
        print(prof.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
