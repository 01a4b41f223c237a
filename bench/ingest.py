"""Ingest throughput and memory against the PyAV decode-only limit, on real and synthetic data.

    python bench/ingest.py [--quick] [--out-dir DIR] [--keep] [--repeat N] [--no-warmup]
                           [--no-ray-data] [--decode-threads N] [--only ROW[,ROW]]
                           [--jpeg-subsampling 4:4:4|4:2:2|4:2:0]

Prints one markdown table (one row per dataset and worker count): whole ingest, pass 2 alone and the
same samples through Ray Data's ``write_webdataset`` (the peer), each against PyAV decode-only on the
same files; then scaling and memory lines and a header with the machine's facts. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from raydata_peer import write_with_ray_data

from trajshard import __version__ as trajshard_version
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import IngestReport, run_ingest
from trajshard.schemas.raw_layout import VIDEO_EXTS
from trajshard.sources.synthetic import write_synthetic_dataset
from trajshard.sources.video import DECODE_THREADS_ENV, probe_video

SHARED_DATA = Path(
    os.environ.get("TRAJSHARD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
SAMPLE_PERIOD_S = 1.0  # psutil walks every process: see RssSampler
MIB = 1 << 20
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")  # Ray's own helpers, not task workers


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class LeRobotSpec:
    """Which LeRobot dataset to convert, and which of its columns become which raw-layout stream."""

    folder: str
    video_key: str
    camera: str
    episodes: tuple[int, ...]
    state_column: str = "observation.state"
    action_column: str = "action"


@dataclass(frozen=True)
class RowGroup:
    """One dataset and the worker counts it is ingested with."""

    name: str
    workers: tuple[int, ...]
    prepare: Callable[[Path], Path | None]  # writes the raw-layout source under a dir; None: skip


G1 = LeRobotSpec("g1_lerobot_v21", "observation.images.cam_high", "cam_high", (28, 29, 30, 31, 59, 82))
GR00T = LeRobotSpec("gr00t_pnp_lerobot_v20", "observation.images.ego_view", "ego_view", (0, 1, 2, 3, 4))


def lerobot_file(root: Path, template: str, index: int, chunks_size: int, video_key: str = "") -> Path:
    """A file named by an info.json path template; found by its name when the template is wrong
    (the GR00T info.json formats the chunk with the episode index)."""
    path = root / template.format(
        episode_chunk=index // chunks_size, episode_index=index, video_key=video_key
    )
    if path.exists():
        return path
    top = template.split("/", 1)[0]
    matches = sorted((root / top).rglob(path.name))
    if video_key:
        matches = [m for m in matches if video_key in m.parts]
    if not matches:
        raise FileNotFoundError(f"{path} (from {template!r}) does not exist")
    return matches[0]


def list_float32(column: pa.ChunkedArray) -> pa.ListArray:
    """A (fixed-size) list column of any float type as list<float32>."""
    values = np.asarray(column.to_pylist(), dtype=np.float32)
    n, d = values.shape
    offsets = pa.array(np.arange(0, n * d + 1, d, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def convert_lerobot_episode(
    root: Path, spec: LeRobotSpec, info: dict, tasks: dict[int, str], index: int, dest: Path
) -> None:
    """One LeRobot episode as a raw-layout-v1 episode directory (files copied, never linked)."""
    chunks = int(info.get("chunks_size", 1000))
    table = pq.read_table(lerobot_file(root, info["data_path"], index, chunks))
    dest.mkdir(parents=True)
    shutil.copyfile(
        lerobot_file(root, info["video_path"], index, chunks, spec.video_key), dest / f"{spec.camera}.mp4"
    )
    ts = pa.array(table.column("timestamp").to_numpy().astype(np.float64))
    pq.write_table(
        pa.table({"timestamp": ts, "proprio": list_float32(table.column(spec.state_column))}),
        dest / "proprio.parquet",
    )
    pq.write_table(
        pa.table({"timestamp": ts, "action": list_float32(table.column(spec.action_column))}),
        dest / "action.parquet",
    )
    task = tasks[int(table.column("task_index")[0].as_py())]
    meta = {"instruction": task, "embodiment": str(info.get("robot_type", ""))}
    (dest / "episode.json").write_text(json.dumps(meta, indent=2) + "\n")


def lerobot_meta(spec: LeRobotSpec) -> tuple[Path, dict] | None:
    """The dataset's root and its meta/info.json; None, with a note, when ../shared/data lacks it."""
    root = SHARED_DATA / spec.folder
    if not root.is_dir():
        print(f"note: {root} is absent; skipping {spec.folder}")
        return None
    return root, json.loads((root / "meta" / "info.json").read_text())


def prepare_lerobot(spec: LeRobotSpec, work: Path) -> Path | None:
    meta = lerobot_meta(spec)
    if meta is None:
        return None
    root, info = meta
    tasks = {int(t["task_index"]): t["task"] for t in read_jsonl(root / "meta" / "tasks.jsonl")}
    out = work / "src" / spec.folder
    for index in spec.episodes:
        convert_lerobot_episode(root, spec, info, tasks, index, out / f"episode_{index:06d}")
    return out


def prepare_synthetic(seconds: float, work: Path) -> Path:
    out = work / "src" / f"synthetic_{seconds:g}s"
    write_synthetic_dataset(out, n_episodes=8, seconds=seconds, seed=0)
    return out


def row_groups(quick: bool) -> list[RowGroup]:
    groups = [
        RowGroup("g1-real", (1, 2), lambda w: prepare_lerobot(G1, w)),
        RowGroup("gr00t-real", (2,), lambda w: prepare_lerobot(GR00T, w)),
        RowGroup("synthetic", (1, 2), lambda w: prepare_synthetic(4.0, w)),
    ]
    if not quick:
        groups.append(RowGroup("synthetic-10x", (2,), lambda w: prepare_synthetic(40.0, w)))
    return groups


# ----------------------------------------------------------------------------------------------- memory


def is_ray_worker(cmdline: str) -> bool:
    """A Ray task worker's command line (not one of Ray's agents)."""
    return ("ray::" in cmdline or "default_worker.py" in cmdline) and not cmdline.startswith(RAY_AGENTS)


def ray_workers() -> list[psutil.Process]:
    """The Ray task worker processes (descendants of this process), without Ray's agents."""
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if is_ray_worker(cmd):
            found.append(proc)
    return found


def reset_peak_rss(procs: list[psutil.Process]) -> bool:
    """Reset each process's RSS high-water mark (``VmHWM``) to its current RSS (Linux: ``clear_refs``).
    False when the kernel does not allow it; a process that exited meanwhile is skipped."""
    for proc in procs:
        try:
            Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        except (FileNotFoundError, ProcessLookupError):
            continue  # gone: nothing to measure
        except OSError:
            return False
    return True


def peak_rss(proc: psutil.Process) -> int:
    """The RSS high-water mark of a live process (``VmHWM`` in ``/proc/<pid>/status``), or 0."""
    try:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class RssSampler:
    """The largest RSS of the driver and of any one Ray worker (descendants of this process) over a
    ``with`` block, without taking the CPU the block is timed on.

    Exact on Linux: each process's RSS high-water mark is reset as the block starts and read as it
    ends (``reset_peak_rss``, ``peak_rss``). A psutil sampler every ``period`` seconds covers processes
    that start and exit inside the block; where the marks cannot be reset it is the only measure (with
    the driver's ``ru_maxrss`` when it rose). It samples rarely on purpose: psutil walks every process
    on the machine, and at 50 ms that cost about a tenth of a core on 2 cores, taken from the workers."""

    period: float = SAMPLE_PERIOD_S
    driver_peak: int = 0
    worker_peak: int = 0
    driver_start: int = 0  # the first sample, taken as the block starts
    worker_start: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    exact: bool = False  # the high-water marks could be reset: the peaks are exact

    def __enter__(self) -> RssSampler:
        self._ru_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self._sample()
        self.driver_start, self.worker_start = self.driver_peak, self.worker_peak
        self.exact = reset_peak_rss([psutil.Process(), *ray_workers()])
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample()
        if self.exact:
            self.driver_peak = max(self.driver_peak, peak_rss(psutil.Process()))
            self.worker_peak = max([self.worker_peak, *(peak_rss(p) for p in ray_workers())])
            return
        ru_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if ru_after > self._ru_before:  # the lifetime peak rose during the block: it is the block's peak
            self.driver_peak = max(self.driver_peak, ru_after * 1024)  # ru_maxrss is in KiB on Linux

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def _sample(self) -> None:
        try:
            self.driver_peak = max(self.driver_peak, psutil.Process().memory_info().rss)
        except psutil.Error:
            return
        for proc in ray_workers():
            try:
                self.worker_peak = max(self.worker_peak, proc.memory_info().rss)
            except psutil.Error:
                continue


# ----------------------------------------------------------------------------------------------- measuring


@dataclass
class Row:
    dataset: str
    workers: int
    report: IngestReport
    src_frames: int
    wall: float
    decode_frames: int
    decode_seconds: float
    driver_peak: int
    worker_peak: int
    driver_start: int  # RSS as the first ingest started (Ray up, workers warmed)
    worker_start: int
    pass2: float = 0.0  # best report.phases["pass2"] over the repeats
    ray_data: float | None = None  # best wall seconds of the Ray Data peer, None: not run
    exact_memory: bool = True  # peaks are the kernel's high-water marks (else sampled every second)
    pass2_all: tuple[float, ...] = ()  # report.phases["pass2"] of every repeat, in run order
    decode_all: tuple[float, ...] = ()  # decode-only seconds of every repeat, in run order

    @property
    def ingest_fps(self) -> float:
        return self.src_frames / self.wall

    @property
    def pass2_fps(self) -> float:
        return self.src_frames / self.pass2

    @property
    def ray_data_fps(self) -> float | None:
        return None if self.ray_data is None else self.src_frames / self.ray_data

    @property
    def decode_fps(self) -> float:
        return self.decode_frames / self.decode_seconds

    def cells(self) -> list[str]:
        r = self.report
        episodes = f"{r.episodes_written}" + (
            f" (+{r.episodes_quarantined} quarantined)" if r.episodes_quarantined else ""
        )
        rd = self.ray_data_fps
        return [
            self.dataset,
            str(self.workers),
            episodes,
            f"{self.src_frames:,}",
            f"{r.samples:,}",
            f"{self.decode_fps:,.0f}",
            f"{self.wall:.2f}",
            f"{self.ingest_fps:,.0f}",
            f"**{self.ingest_fps / self.decode_fps:.2f}**",
            f"{self.pass2:.2f}",
            f"{self.pass2_fps:,.0f}",
            f"**{self.pass2_fps / self.decode_fps:.2f}**",
            "-" if rd is None else f"{rd:,.0f}",
            "-" if rd is None else f"**{rd / self.decode_fps:.2f}**",
            f"{self.driver_peak / MIB:,.0f}",
            f"{self.worker_peak / MIB:,.0f}",
        ]


def written_videos(source: Path, out: Path) -> list[Path]:
    """The video files of the episodes the ingest wrote (from its meta/episodes.parquet)."""
    table = pq.read_table(out / "meta" / "episodes.parquet", columns=["source_episode"])
    return [
        p
        for e in dict.fromkeys(table.column("source_episode").to_pylist())
        for p in sorted((source / e).iterdir())
        if p.suffix.lower() in VIDEO_EXTS
    ]


def decode_only(paths: Iterable[Path]) -> tuple[int, float]:
    """(frames, seconds) decoding the files one after another in this process, as PyAV does by default."""
    frames, started = 0, time.perf_counter()
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for _ in container.decode(stream):
                frames += 1
    return frames, time.perf_counter() - started


def start_ray(workers: int, warm_source: Path | None, scratch: Path) -> None:
    """A fresh local Ray with ``workers`` CPUs, its workers warmed up when ``warm_source`` is given: a tiny
    ingest with one pass-2 task per episode (so each worker imports and runs the whole path once)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level="ERROR")
    if warm_source is not None:
        run_ingest(
            str(warm_source),
            str(scratch),
            JobConfig.from_flags(workers=workers, task_steps=1),
            progress=False,
        )


# JobConfig fields every timed ingest of this run sets (``--jpeg-subsampling``); defaults otherwise
JOB_OPTIONS: dict[str, object] = {}


def timed_ingest(source: Path, out: Path, workers: int) -> tuple[IngestReport, float, RssSampler]:
    with RssSampler() as mem:
        started = time.perf_counter()
        report = run_ingest(
            str(source), str(out), JobConfig.from_flags(workers=workers, **JOB_OPTIONS), progress=False
        )
        wall = time.perf_counter() - started
    return report, wall, mem


def measure(
    dataset: str,
    source: Path,
    workers: int,
    work: Path,
    warm_source: Path | None,
    repeat: int,
    ray_data: bool = True,
) -> Row:
    """Ingest ``repeat`` times on one fresh Ray (best wall time, largest peaks), then the Ray Data peer
    ``repeat`` times on the same Ray (best time), then decode-only ``repeat`` times with Ray shut down
    (best time)."""
    name = f"{dataset}-w{workers}"
    start_ray(workers, warm_source, work / "scratch" / name)
    try:
        runs = [timed_ingest(source, work / "out" / f"{name}-r{i}", workers) for i in range(repeat)]
        report = runs[0][0]
        peer = None
        if ray_data:
            peer = time_ray_data(
                source, Path(report.out), report.samples, work, name, workers, repeat, warm_source is not None
            )
    finally:
        ray.shutdown()
    wall = min(r[1] for r in runs)
    videos = written_videos(source, Path(report.out))
    src_frames = sum(len(probe_video(str(p)).pts) for p in videos)
    decodes = [decode_only(videos) for _ in range(repeat)]
    decode_frames, decode_seconds = min(decodes, key=lambda d: d[1])
    if decode_frames != src_frames:
        print(f"note: {dataset}: PyAV decoded {decode_frames} frames, the containers hold {src_frames}")
    first = runs[0][2]
    return Row(
        dataset,
        workers,
        report,
        src_frames,
        wall,
        decode_frames,
        decode_seconds,
        max(r[2].driver_peak for r in runs),
        max(r[2].worker_peak for r in runs),
        first.driver_start,
        first.worker_start,
        pass2=min(r[0].phases["pass2"] for r in runs),
        pass2_all=tuple(r[0].phases["pass2"] for r in runs),
        decode_all=tuple(d[1] for d in decodes),
        ray_data=peer,
        exact_memory=all(r[2].exact for r in runs),
    )


def time_ray_data(
    source: Path,
    out: Path,
    expected: int,
    work: Path,
    name: str,
    workers: int,
    repeat: int,
    warm: bool,
) -> float:
    """Best wall seconds of writing the ingest's episodes through Ray Data (``bench/raydata_peer.py``),
    after one untimed run over the first episode when ``warm`` (Ray Data's own imports in the workers)."""
    table = pq.read_table(out / "meta" / "episodes.parquet", columns=["source_episode"])
    episodes = list(dict.fromkeys(table.column("source_episode").to_pylist()))
    tok = json.loads((out / "meta" / "tokenizer.json").read_text())
    if warm:
        write_with_ray_data(
            source, episodes[:1], tok, work / "scratch" / f"{name}-raydata-warm", workers, JOB_OPTIONS
        )
    best = None
    for i in range(repeat):
        seconds, samples = write_with_ray_data(
            source, episodes, tok, work / "out" / f"{name}-raydata{i}", workers, JOB_OPTIONS
        )
        if samples != expected:
            raise RuntimeError(f"Ray Data wrote {samples} samples, the ingest {expected}")
        best = seconds if best is None else min(best, seconds)
    return best


# ----------------------------------------------------------------------------------------------- output


COLUMNS = [
    "dataset",
    "workers",
    "episodes",
    "src frames",
    "samples",
    "(a) PyAV decode-only frames/s",
    "ingest wall s",
    "ingest frames/s",
    "ingest / (a)",
    "pass-2 s",
    "(b) pass-2 frames/s",
    "(c) = (b) / (a)",
    "(d) Ray Data frames/s",
    "(d) / (a)",
    "(e) driver peak MiB",
    "(e) worker peak MiB",
]


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * (len(COLUMNS) - 3)) + "|",
    ]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    return "\n".join(lines)


def scaling_lines(rows: list[Row]) -> list[str]:
    lines = []
    for dataset in dict.fromkeys(r.dataset for r in rows):
        by_workers = {r.workers: r for r in rows if r.dataset == dataset}
        if 1 in by_workers and 2 in by_workers:
            one, two = by_workers[1], by_workers[2]
            lines.append(
                f"- {dataset}: 2 workers / 1 worker = {two.pass2_fps / one.pass2_fps:.2f}x pass-2 frames/s, "
                f"{two.ingest_fps / one.ingest_fps:.2f}x ingest frames/s"
            )
        else:
            lines.append(f"- {dataset}: only workers={sorted(by_workers)}, no scaling factor")
    return lines


def spread_lines(rows: list[Row]) -> list[str]:
    """Every repeat's pass-2 and decode-only seconds, and the (c) their extremes give: how far the
    machine moved while the best-of figures in the table were taken."""
    lines = []
    for r in rows:
        if len(r.pass2_all) < 2:
            continue
        frames = r.src_frames
        lo = (frames / max(r.pass2_all)) / (r.decode_frames / min(r.decode_all))
        hi = (frames / min(r.pass2_all)) / (r.decode_frames / max(r.decode_all))
        lines.append(
            f"- {r.dataset} workers={r.workers}: pass 2 {' / '.join(f'{t:.2f}' for t in r.pass2_all)} s, "
            f"decode-only {' / '.join(f'{t:.2f}' for t in r.decode_all)} s: (c) from {lo:.2f} "
            f"(slowest pass 2, fastest decode) to {hi:.2f}"
        )
    return lines or ["- one repeat per row: no spread"]


def memory_lines(rows: list[Row]) -> list[str]:
    """Worker peak at 10x episode length against 1x, same worker count."""
    lines = []
    for long in (r for r in rows if r.dataset.endswith("-10x")):
        short = [r for r in rows if r.dataset == long.dataset[: -len("-10x")] and r.workers == long.workers]
        if short:
            s = short[0]
            lines.append(
                f"- worker peak {long.dataset} / {s.dataset} (workers={long.workers}): "
                f"{long.worker_peak / MIB:,.0f} / {s.worker_peak / MIB:,.0f} MiB = "
                f"{long.worker_peak / s.worker_peak:.2f}x; driver {long.driver_peak / s.driver_peak:.2f}x"
            )
    sampled = [f"{r.dataset} workers={r.workers}" for r in rows if not r.exact_memory]
    lines.append(
        "- peaks: the kernel's RSS high-water marks, exact"
        if not sampled
        else f"- peaks sampled once a second (the high-water marks could not be reset) for: {', '.join(sampled)}"
    )
    return lines if len(lines) > 1 else ["- no 10x row (--quick)", *lines]


def baseline_lines(rows: list[Row]) -> list[str]:
    return [
        f"- {r.dataset} workers={r.workers}: driver {r.driver_start / MIB:,.0f} MiB, largest worker "
        f"{r.worker_start / MIB:,.0f} MiB"
        for r in rows
    ]


def machine_facts() -> list[str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = ", ".join(
        f"{k} {'.'.join(map(str, v))}"
        for k, v in sorted(av.library_versions.items())
        if k in ("libavcodec", "libavformat", "libswscale")
    )
    return [
        f"- CPU: {cpu_model()}, os.cpu_count() = {os.cpu_count()}, usable by this process = {affinity}",
        f"- RAM: {psutil.virtual_memory().total / (1 << 30):.1f} GiB; load average at start "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Python {platform.python_version()} on {platform.platform()}",
        f"- PyAV {av.__version__}, FFmpeg {getattr(av, 'ffmpeg_version_info', '?')} ({libs})",
        f"- Ray {ray.__version__}, trajshard {trajshard_version}; decoder threads in the workers: "
        + (
            f"{DECODE_THREADS_ENV}={os.environ[DECODE_THREADS_ENV]}"
            if os.environ.get(DECODE_THREADS_ENV)
            else "Ray's OMP_NUM_THREADS (the task's CPUs, 1)"
        ),
    ]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="skip the synthetic-10x row")
    p.add_argument("--out-dir", help="where sources and outputs go (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the sources and outputs")
    p.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="timed ingests (and decode-only passes) per row; the best time is reported (default 2)",
    )
    p.add_argument("--no-ray-data", action="store_true", help="skip the Ray Data peer column")
    p.add_argument(
        "--jpeg-subsampling",
        choices=["4:4:4", "4:2:2", "4:2:0"],
        help="chroma subsampling of the ingests' JPEGs (default: the job default, 4:4:4)",
    )
    p.add_argument(
        "--only",
        help="comma-separated dataset rows to run (g1-real, gr00t-real, synthetic, synthetic-10x); default all",
    )
    p.add_argument(
        "--decode-threads",
        type=int,
        help=f"decoder threads in the workers ({DECODE_THREADS_ENV}; 0: FFmpeg's automatic choice); "
        "default: one per task (Ray's OMP_NUM_THREADS)",
    )
    p.add_argument(
        "--no-warmup",
        action="store_true",
        help="do not warm the Ray workers up before each timed ingest (then their first-task "
        "imports are in the timing)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.decode_threads is not None:
        os.environ[DECODE_THREADS_ENV] = str(args.decode_threads)  # inherited by the Ray workers
    if args.jpeg_subsampling:
        JOB_OPTIONS["jpeg_subsampling"] = args.jpeg_subsampling
    base = Path(args.out_dir) if args.out_dir else None
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="trajshard-bench-", dir=base))
    started, failures = time.perf_counter(), ["not run"]
    try:
        print("## trajshard ingest benchmark\n")
        print("\n".join(machine_facts()) + "\n", flush=True)
        print(
            f"Each row: fresh Ray (num_cpus = workers), workers {'cold' if args.no_warmup else 'warmed up'}, "
            f"best of {args.repeat} ingest(s) and of {args.repeat} decode-only pass(es); JPEG chroma "
            f"{args.jpeg_subsampling or JobConfig().image.subsampling}.\n",
            flush=True,
        )
        warm = None if args.no_warmup else write_warm_source(work)
        groups = row_groups(args.quick and not args.only)
        if args.only:
            wanted = set(args.only.split(","))
            unknown = wanted - {g.name for g in groups}
            if unknown:
                raise SystemExit(f"--only: unknown rows {sorted(unknown)}")
            groups = [g for g in groups if g.name in wanted]
        rows, failures = run_rows(groups, work, warm, args.repeat, not args.no_ray_data)
        print(markdown_table(rows) + "\n")
        print("(f) Scaling:")
        print("\n".join(scaling_lines(rows)))
        print("\n(c) over the repeats (run order):")
        print("\n".join(spread_lines(rows)))
        print("\n(e) Memory at 10x episode length:")
        print("\n".join(memory_lines(rows)))
        print("\nRSS as the ingest started (Ray up, workers warmed): the floor under the peak columns")
        print("\n".join(baseline_lines(rows)))
        if failures:
            print("\nFailed rows:\n" + "\n".join(failures))
        print(
            f"\nwhole benchmark: {time.perf_counter() - started:.0f} s; work dir {work}"
            + (" (kept)" if args.keep else " (removed)")
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


def write_warm_source(work: Path) -> Path:
    warm = work / "src" / "warmup"
    write_synthetic_dataset(warm, n_episodes=2, seconds=1.0, seed=1)
    return warm


def run_rows(
    groups: list[RowGroup], work: Path, warm: Path | None, repeat: int, ray_data: bool = True
) -> tuple[list[Row], list[str]]:
    """The measured rows, and a line for each row that failed (the others still run)."""
    rows, failures = [], []
    for group in groups:
        t0 = time.perf_counter()
        source = group.prepare(work)
        if source is None:
            continue
        print(f"[{group.name}] source ready in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        for workers in group.workers:
            try:
                row = measure(group.name, source, workers, work, warm, repeat, ray_data)
            except Exception as exc:  # noqa: BLE001 - one broken row must not hide the others
                failures.append(
                    f"- {group.name} workers={workers}: FAILED: {type(exc).__name__}: "
                    f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                )
                print(failures[-1], file=sys.stderr, flush=True)
                continue
            print(f"[{group.name}] workers={workers}: {row.wall:.2f} s", file=sys.stderr, flush=True)
            rows.append(row)
    return rows, failures


if __name__ == "__main__":
    sys.exit(main())
