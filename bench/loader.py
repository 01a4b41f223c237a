"""Training-time read speed: trajshard's loader against decoding the source video at training time.

    python bench/loader.py [--epochs N] [--batch-size B] [--repeat N] [--out-dir DIR] [--keep]

The G1 episodes that have a video (28, 29, 30, 31, 59, 82; AV1 640x480 30 fps, ../shared/data) are
converted to raw layout (as bench/ingest.py does) and ingested at the defaults (10 Hz, 224 px). Then,
in the same run, one table:

- **trajshard loader**: ``make_loader(open_dataset(OUT, batch_size=B, shuffle_buffer=1000), W)``
  for W = 0, 1, 2 DataLoader workers: JPEG decode, tensors, shuffled, batched; the fastest epoch,
  and with workers also the first epoch, in which the (persistent) workers start;
- **reference (video at training time)**: what a LeRobot user has today: a map-style dataset whose
  ``__getitem__`` opens the episode's source mp4 with PyAV, seeks to the keyframe before the sample's
  time, decodes forward to the nearest frame and returns it as uint8 RGB at the source resolution
  (LeRobot then resizes in the policy's transforms; this reference does not, which flatters it), in a
  ``DataLoader(shuffle=True)`` with the same batch size and W workers.

The ratio is loader samples/s over reference samples/s at the same W. Also in the same run
(``bench/loader_limit.py``): the **decode limit**, simplejpeg decoding the same JPEG members and nothing
else, each loader row against it, and a breakdown of where the 2-worker loader's time goes; and
(``bench/loader_mixture.py``) the **mixture row**: the four robots of ../shared/data as one mixture
against the single-dataset loader over each. Without ../shared/data the synthetic dataset is used
and there is no mixture row. Progress goes to stderr, the tables to stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import ray
import torch
from torch.utils.data import DataLoader, Dataset

from trajshard import __version__ as trajshard_version
from trajshard.config import JobConfig
from trajshard.io import iter_tar_samples, read_json
from trajshard.loader import make_loader, open_dataset
from trajshard.pipelines.ingest import run_ingest
from trajshard.sources.synthetic import write_synthetic_dataset

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import loader_limit  # noqa: E402  (bench/ is not a package)
import loader_mixture  # noqa: E402

WORKERS = (0, 1, 2)
MIX_WORKERS = (0, 2)  # 0: the mixing cost alone; 2: with the loader's workers
FIRST_EPOCH = "trajshard loader, first epoch (workers' start included)"


def _bench_ingest():
    """bench/ingest.py as a module (its LeRobot -> raw layout conversion is reused, not copied)."""
    spec = importlib.util.spec_from_file_location("bench_ingest", BENCH / "ingest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_ingest"] = module
    spec.loader.exec_module(module)
    return module


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the reference: decode the source video at training time -------------------------------------------


class VideoFrameDataset(Dataset):
    """LeRobot-style: each item opens the episode's mp4, seeks, decodes to the frame nearest ``time``."""

    def __init__(self, items: list[tuple[Path, float]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> torch.Tensor:
        path, ts = self.items[i]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            container.seek(max(0, int(ts / stream.time_base)), stream=stream, backward=True, any_frame=False)
            best = None
            for frame in container.decode(stream):
                if best is None or abs(frame.time - ts) < abs(best.time - ts):
                    best = frame
                if frame.time >= ts:
                    break
        return torch.from_numpy(best.to_ndarray(format="rgb24")).permute(2, 0, 1)


def reference_items(out: Path, raw: Path, camera: str) -> list[tuple[Path, float]]:
    """(source mp4, tick time) of every sample of the output: the same frames the shards hold."""
    items = []
    for shard in read_json(out / "meta" / "manifest.json")["shards"]:
        for _, members in iter_tar_samples(out / shard["name"]):
            meta = json.loads(members["meta.json"])
            episode = meta["episode"].split("_part")[0]
            items.append((raw / episode / f"{camera}.mp4", float(meta["time"])))
    return items


# ---- timing ------------------------------------------------------------------------------------------------


@dataclass
class Row:
    reader: str
    workers: int
    samples: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


def time_loader(out: Path, workers: int, epochs: int, batch_size: int) -> list[Row]:
    """The fastest of ``epochs`` epochs, each timed whole: on a shared machine the load comes and goes
    within a pass, and each epoch is a complete measurement. The workers start in the first epoch and
    persist through the others, so with workers the first epoch is also a row of its own."""
    loader = make_loader(open_dataset(out, batch_size=batch_size, shuffle_buffer=1000, seed=0), workers)
    best, first = None, None
    for _ in range(epochs):
        n, start = 0, time.perf_counter()
        for batch in loader:
            n += len(batch["key"])
        row = Row("trajshard loader", workers, n, time.perf_counter() - start)
        first = first or Row(FIRST_EPOCH, workers, n, row.seconds)
        best = row if best is None or row.rate > best.rate else best
    loader.close()
    return [best, first] if workers else [best]


def time_reference(items: list[tuple[Path, float]], workers: int, samples: int, batch_size: int) -> Row:
    ds = VideoFrameDataset(items)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )
    n, start = 0, time.perf_counter()
    while n < samples:
        for batch in loader:
            n += len(batch)
            if n >= samples:
                break
    return Row("reference: PyAV decode of the source mp4 per sample", workers, n, time.perf_counter() - start)


def prepare(work: Path) -> tuple[Path, str, str]:
    """(raw source dir, camera, description)."""
    bi = _bench_ingest()
    raw = bi.prepare_lerobot(bi.G1, work)
    if raw is not None:
        return raw, bi.G1.camera, "G1 (LeRobot v2.1), 6 episodes, AV1 640x480 30 fps, camera cam_high"
    raw = work / "src" / "synthetic"
    write_synthetic_dataset(raw, n_episodes=8, seconds=8.0, seed=0)
    return raw, "front", "synthetic (G1 data absent), 8 episodes x 8 s, camera front (H.264 160x120 30 fps)"


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs, load average at start {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, PyAV {av.__version__}, "
        f"numpy {np.__version__}, trajshard {trajshard_version}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4, help="loader epochs per pass, each timed (default 4)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeat", type=int, default=2, help="timed passes per row, best reported (default 2)")
    p.add_argument("--reference-samples", type=int, default=512, help="samples per reference row (512)")
    p.add_argument("--no-mixture", action="store_true", help="leave out the mixture row")
    p.add_argument("--out-dir", help="where the source and output go (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def ingest(work: Path, raw: Path, mixture: bool) -> tuple[Path, object, dict[str, Path] | None]:
    """The bench's output (and the mixture's datasets), all ingested on one local Ray."""
    out = work / "out"
    log(f"ingesting {raw} -> {out}")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        report = run_ingest(str(raw), str(out), JobConfig.from_flags(workers=2), progress=False)
        outs = loader_mixture.prepare(work, out, log) if mixture else None
    finally:
        ray.shutdown()
    return out, report, outs


def keep_best(best: dict[tuple[str, int], Row], row: Row) -> None:
    key = (row.reader, row.workers)
    if key not in best or row.rate > best[key].rate:
        best[key] = row


def timed_rows(out: Path, items: list, args: argparse.Namespace) -> tuple[list[Row], float]:
    """Loader, reference and decode limit, alternating so all see the same load; best of the passes."""
    best: dict[tuple[str, int], Row] = {}
    jpegs = loader_limit.jpeg_members(loader_limit.raw_samples(out))
    samples = open_dataset(out).num_samples()
    limit = 0.0
    for attempt in range(args.repeat):
        limit = max(limit, loader_limit.decode_limit(jpegs, samples, 2))
        for w in WORKERS:
            log(f"[{attempt + 1}/{args.repeat}] loader and reference, {w} workers")
            for row in time_loader(out, w, args.epochs, args.batch_size):
                keep_best(best, row)
            keep_best(best, time_reference(items, w, args.reference_samples, args.batch_size))
        limit = max(limit, loader_limit.decode_limit(jpegs, samples, 2))
    rows = sorted(best.values(), key=lambda r: (r.reader.startswith("reference"), r.reader, r.workers))
    return rows, limit


def table_lines(rows: list[Row], limit: float) -> list[str]:
    ref = {r.workers: r.rate for r in rows if r.reader.startswith("reference")}
    lines = [
        "| reader | DataLoader workers | samples | seconds | samples/s | vs reference, same workers | vs decode limit |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| decode limit: simplejpeg on the same JPEG members, nothing else | - | - | - | {limit:,.0f} | | 1.00x |",
    ]
    for r in rows:
        lines.append(
            f"| {r.reader} | {r.workers} | {r.samples} | {r.seconds:.2f} | {r.rate:,.0f} | "
            f"{r.rate / ref[r.workers]:.1f}x | {r.rate / limit:.2f}x |"
        )
    return lines


def mixture_section(outs: dict[str, Path], args: argparse.Namespace) -> list[str]:
    best: dict[tuple[str, int], loader_mixture.MixRow] = {}
    for attempt in range(args.repeat):
        for w in MIX_WORKERS:
            log(f"[{attempt + 1}/{args.repeat}] mixture and its four datasets, {w} workers")
            for row in loader_mixture.mixture_rows(outs, w, args.epochs, args.batch_size):
                if (row.reader, row.workers) not in best or row.rate > best[(row.reader, row.workers)].rate:
                    best[(row.reader, row.workers)] = row
    head = [
        "\n### Mixture of four robots\n",
        "Bridge (5 Hz, 4 cameras), GR00T (10 Hz), G1 (the output above) and robosuite Lift (no camera), "
        "each ingested at 224 px, weights 0.3/0.3/0.2/0.2, `[target]` cameras primary and secondary, "
        f"padded actions; batch size {args.batch_size}, the fastest of {args.epochs} epochs per pass, best of "
        f"{args.repeat}.\n",
    ]
    return head + loader_mixture.mixture_lines(list(best.values()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = Path(args.out_dir) if args.out_dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="trajshard-loader-bench-", dir=base))
    try:
        raw, camera, what = prepare(work)
        mixture = not args.no_mixture and camera == "cam_high" and loader_mixture.available()
        out, report, outs = ingest(work, raw, mixture)
        items = reference_items(out, raw, camera)
        args.reference_samples = min(len(items), args.reference_samples)
        rows, limit = timed_rows(out, items, args)
        log("breakdown")
        stages = loader_limit.breakdown(out, args.batch_size, max(2, args.repeat))
        start_stop = loader_limit.worker_start_stop(max(2, args.repeat))
        loader_rates = {r.workers: r.rate for r in rows if r.reader == "trajshard loader"}
        mix = mixture_section(outs, args) if outs else []
        print("## trajshard loader benchmark\n")
        print(
            f"- data: {what}; ingested at 10 Hz, 224x224 JPEG: {report.samples} samples in {report.shards} shards"
        )
        print(f"- machine: {machine()}")
        print(
            f"- batch size {args.batch_size}; loader: shuffle buffer 1000, the fastest of {args.epochs} epochs "
            f"per pass, each timed whole; reference: {args.reference_samples} samples per pass; best of "
            f"{args.repeat} passes, loader, reference and decode limit alternating\n"
        )
        print("\n".join(table_lines(rows, limit)))
        print(
            "\nThe loader's images are 224x224 (two cameras would be two per sample); the reference's are "
            "the source's full resolution, not resized."
        )
        print("\n### Where the 2-worker loader's time goes\n")
        print("\n".join(loader_limit.breakdown_lines(stages, limit, loader_rates, start_stop)))
        print("\n".join(mix))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
