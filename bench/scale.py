"""Scale run: many small synthetic episodes, ingested with 1 and 2 workers, with bounded memory.

    python bench/scale.py [--episodes N | --quick] [--seconds S] [--size PX] [--image-size PX]
                          [--out-dir DIR] [--keep] [--repeat N]

Prints one markdown table (a row per worker count: episodes/s, wall seconds per 1,000 episodes of
every phase, CPU seconds of the driver / the task workers / Ray's own processes, peak RSS of the
driver and of the largest worker, object store use), then the 2-worker / 1-worker ratios. See
bench/README.md for how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import ray
from ingest import (
    MIB,
    RssSampler,
    is_ray_worker,
    machine_facts,
    start_ray,
    write_warm_source,
)  # bench/ingest.py

from trajshard.config import JobConfig
from trajshard.pipelines.ingest import IngestReport, run_ingest
from trajshard.sources.synthetic import write_synthetic_dataset

PHASES = ("plan", "pass1", "fit", "pass2", "commit")
WORKERS = (1, 2)
OTHER_USERS_NOISE = 0.2  # cores other processes may take before the ratio is flagged as the machine's load
STORE_PERIOD_S = 1.0  # a gRPC call to the raylet each time: cheap, but not free on 2 cores


# ----------------------------------------------------------------------------------------------- dataset


def dataset_key(args: argparse.Namespace) -> str:
    return f"synthetic-{args.episodes}ep-{args.seconds:g}s-{args.size}px-seed0"


def cached_source(work: Path, args: argparse.Namespace) -> Path:
    """The synthetic source under ``work/src``, written once: a ``.complete`` marker (holding the
    arguments) says a previous run finished writing it, so ``--keep`` + the same ``--out-dir`` reuse it."""
    root = work / "src" / dataset_key(args)
    marker = root / ".complete"
    spec = {"episodes": args.episodes, "seconds": args.seconds, "size": args.size, "seed": 0}
    if marker.exists() and json.loads(marker.read_text()) == spec:
        print(f"[dataset] reusing {root}", file=sys.stderr, flush=True)
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    print(f"[dataset] writing {args.episodes} episodes to {root} ...", file=sys.stderr, flush=True)
    write_synthetic_dataset(
        root, n_episodes=args.episodes, seconds=args.seconds, seed=0, width=args.size, height=args.size
    )
    marker.write_text(json.dumps(spec))  # hidden: the raw reader skips dot files
    print(f"[dataset] written in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return root


# ----------------------------------------------------------------------------------------------- sampling


@dataclass
class StoreSampler:
    """Object store use of the local Ray node, from the raylet's own statistics (``GetNodeStats``): the
    peak of bytes in use, sampled every second, and the objects and bytes created during the run.
    Needs grpcio (``ray[default]``); without it ``available`` is False and nothing is sampled."""

    period: float = STORE_PERIOD_S
    available: bool = False
    peak_used: int = 0
    created_objects: int = 0
    created_bytes: int = 0
    _start: tuple[int, int] = (0, 0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StoreSampler:
        try:
            from ray._private.internal_api import node_stats

            node = next(n for n in ray.nodes() if n["Alive"])
            self._query = lambda: (
                node_stats(
                    node["NodeManagerAddress"], node["NodeManagerPort"], include_memory_info=False
                ).store_stats
            )
            first = self._query()
        except Exception:  # noqa: BLE001 - minimal Ray (no grpcio) or a changed private API
            return self
        self.available = True
        self._start = (first.cumulative_created_objects, first.cumulative_created_bytes)
        self.peak_used = first.object_store_bytes_used
        self._thread = threading.Thread(target=self._run, name="store-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.available:
            return
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        last = self._sample()
        if last is not None:
            self.created_objects = last.cumulative_created_objects - self._start[0]
            self.created_bytes = last.cumulative_created_bytes - self._start[1]

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self._sample()

    def _sample(self):  # -> ObjectStoreStats | None
        try:
            stats = self._query()
        except Exception:  # noqa: BLE001 - a sample lost while Ray is busy is not a result
            return None
        self.peak_used = max(self.peak_used, stats.object_store_bytes_used)
        return stats


def cpu_seconds_by_role() -> dict[str, float]:
    """User + system CPU seconds so far of this process ("driver") and of its descendants: Ray task
    workers ("workers") and Ray's own processes ("ray"). Ray starts its workers before the timing
    and keeps them, so the difference of two snapshots is the CPU a run used."""
    me = psutil.Process()
    t = me.cpu_times()
    totals = {"driver": t.user + t.system, "workers": 0.0, "ray": 0.0}
    for proc in me.children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
            t = proc.cpu_times()
        except psutil.Error:
            continue
        totals["workers" if is_ray_worker(cmd) else "ray"] += t.user + t.system
    return totals


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all processes (``/proc/stat`` via psutil)."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    return sum(t) - idle, sum(t)


# ----------------------------------------------------------------------------------------------- measuring


@dataclass
class TaskStats:
    """One pass's tasks from Ray's task timeline."""

    tasks: int
    span: float  # seconds from the first task's start to the last task's end
    task_seconds: float  # sum of task durations
    workers: int  # worker processes that ran them
    p50_ms: float
    p90_ms: float
    gap_p50_ms: float  # a worker's idle time between the end of one task and the start of its next
    gap_total: float

    @property
    def utilisation(self) -> float:
        return self.task_seconds / max(self.span * self.workers, 1e-9)


def task_stats(since_s: float) -> dict[str, TaskStats]:
    """Per remote function of the ingest (``pass1_batch``, ``pass2_group``), from ``ray.timeline()``:
    the tasks that started after ``since_s`` (epoch seconds). Empty when the timeline is unavailable."""
    try:
        events = [e for e in ray.timeline() if e.get("ph") == "X" and e["ts"] / 1e6 >= since_s]
    except Exception:  # noqa: BLE001 - task events off, or a changed API: no timeline, no stats
        return {}
    stats = {}
    for name in ("pass1_batch", "pass2_group"):
        tasks = sorted((e for e in events if e["name"].endswith(name)), key=lambda e: e["ts"])
        if not tasks:
            continue
        by_worker: dict[str, list[dict]] = {}
        for e in tasks:
            by_worker.setdefault(e["tid"], []).append(e)
        gaps = sorted(
            (b["ts"] - a["ts"] - a["dur"]) / 1e3
            for run in by_worker.values()
            for a, b in zip(run, run[1:], strict=False)
        )
        durations = sorted(e["dur"] / 1e3 for e in tasks)
        stats[name] = TaskStats(
            tasks=len(tasks),
            span=(max(e["ts"] + e["dur"] for e in tasks) - tasks[0]["ts"]) / 1e6,
            task_seconds=sum(durations) / 1e3,
            workers=len(by_worker),
            p50_ms=durations[len(durations) // 2],
            p90_ms=durations[int(len(durations) * 0.9)],
            gap_p50_ms=gaps[len(gaps) // 2] if gaps else 0.0,
            gap_total=sum(gaps) / 1e3,
        )
    return stats


@dataclass
class Run:
    workers: int
    report: IngestReport
    wall: float
    cpu: dict[str, float]  # CPU seconds during the ingest: driver, workers, ray, machine (all processes)
    driver_peak: int
    driver_start: int
    worker_peak: int
    worker_start: int
    store: StoreSampler
    tasks: dict[str, TaskStats]

    @property
    def episodes(self) -> int:
        return self.report.episodes_input

    @property
    def eps(self) -> float:
        return self.episodes / self.wall

    def per_1k(self, phase: str) -> float:
        return self.report.phases.get(phase, 0.0) * 1000 / max(self.episodes, 1)


def measure(source: Path, workers: int, out: Path, scratch: Path, warm: Path, image_size: int) -> Run:
    """One timed ingest on a fresh, warmed local Ray with ``workers`` CPUs.

    Memory: ``RssSampler`` (each process's RSS high-water mark, reset as the ingest starts and read as
    it ends; a 1 s sampler for processes that come and go)."""
    start_ray(workers, warm, scratch)
    try:
        before, machine_before = cpu_seconds_by_role(), machine_busy_seconds()
        with RssSampler() as mem, StoreSampler() as store:
            started, since = time.perf_counter(), time.time()
            report = run_ingest(
                str(source),
                str(out),
                JobConfig.from_flags(workers=workers, image_size=image_size),
                progress=False,
            )
            wall = time.perf_counter() - started
        after, machine_after = cpu_seconds_by_role(), machine_busy_seconds()
        cpu = {k: after[k] - before[k] for k in before}
        cpu["machine"] = machine_after[0] - machine_before[0]  # every process on the machine, ours included
        time.sleep(2.0)  # Ray flushes task events to the GCS every second
        tasks = task_stats(since)
    finally:
        ray.shutdown()
    print(f"[ingest] workers={workers}: {wall:.1f} s", file=sys.stderr, flush=True)
    return Run(
        workers,
        report,
        wall,
        cpu,
        mem.driver_peak,
        mem.driver_start,
        mem.worker_peak,
        mem.worker_start,
        store,
        tasks,
    )


@dataclass
class Row:
    """The runs of one worker count: times from the fastest, memory and store peaks from all."""

    runs: list[Run]

    @property
    def best(self) -> Run:
        return min(self.runs, key=lambda r: r.wall)

    def cells(self) -> list[str]:
        b, r = self.best, self.best.report
        stores = [x.store for x in self.runs if x.store.available]
        store = (
            f"{max(s.peak_used for s in stores) / MIB:,.1f} MiB peak; "
            f"{max(s.created_objects for s in stores)} obj / {max(s.created_bytes for s in stores) / MIB:,.1f} MiB created"
            if stores
            else "n/a (needs ray[default])"
        )
        return [
            str(b.workers),
            f"{r.episodes_written:,}" + (f" (+{r.episodes_quarantined} q)" if r.episodes_quarantined else ""),
            f"{r.samples:,}",
            str(r.shards),
            f"{b.wall:.1f}",
            f"{b.eps:.1f}",
            *(f"{b.per_1k(p):.2f}" for p in PHASES),
            f"{b.cpu['driver']:.1f} / {b.cpu['workers']:.1f} / {b.cpu['ray']:.1f}",
            f"{max(x.driver_peak for x in self.runs) / MIB:,.0f} ({b.driver_start / MIB:,.0f})",
            f"{max(x.worker_peak for x in self.runs) / MIB:,.0f} ({b.worker_start / MIB:,.0f})",
            store,
        ]


COLUMNS = [
    "workers",
    "episodes",
    "samples",
    "shards",
    "wall s",
    "episodes/s",
    *(f"{p} s/1k ep" for p in PHASES),
    "CPU s driver / workers / ray",
    "driver peak MiB (start)",
    "worker peak MiB (start)",
    "object store",
]


# ----------------------------------------------------------------------------------------------- output


def markdown_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join(["---:"] * len(COLUMNS)) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r.cells()) + " |" for r in rows])


def ratio_lines(rows: list[Row]) -> list[str]:
    by = {r.best.workers: r.best for r in rows}
    lines = []
    if 1 in by and 2 in by:
        one, two = by[1], by[2]
        lines.append(
            f"- episodes/s, 2 workers / 1 worker: **{two.eps / one.eps:.2f}** (the aim is 1.8 or more on 2 cores)"
        )
        for phase in PHASES:
            a, b = one.report.phases.get(phase, 0.0), two.report.phases.get(phase, 0.0)
            if a > 0 and b > 0:
                lines.append(f"- {phase}: {a:.2f} s with 1 worker, {b:.2f} s with 2: speed-up {a / b:.2f}")
    busy_elsewhere = {
        r.best.workers: max(
            r.best.cpu["machine"] - sum(r.best.cpu[k] for k in ("driver", "workers", "ray")), 0.0
        )
        / r.best.wall
        for r in rows
    }
    if any(v > OTHER_USERS_NOISE for v in busy_elsewhere.values()):
        lines.append(
            "- **the ratio measures the machine's load, not trajshard**: other users' processes took "
            + ", ".join(f"{v:.2f} cores during workers={w}" for w, v in busy_elsewhere.items())
            + f" (more than {OTHER_USERS_NOISE}); rerun on a quiet machine or with a larger --repeat"
        )
    for row in rows:
        run = row.best
        ours = run.cpu["driver"] + run.cpu["workers"] + run.cpu["ray"]
        lines.append(
            f"- workers={run.workers}: this benchmark kept {ours / run.wall:.2f} cores busy (driver "
            f"{run.cpu['driver'] / run.wall:.2f}, task workers {run.cpu['workers'] / run.wall:.2f}, Ray's own "
            f"processes {run.cpu['ray'] / run.wall:.2f}); the whole machine {run.cpu['machine'] / run.wall:.2f} "
            f"of {psutil.cpu_count()} (other users: {max(run.cpu['machine'] - ours, 0.0) / run.wall:.2f})"
        )
        for name, t in run.tasks.items():
            lines.append(
                f"  - {name}: {t.tasks} tasks over {t.span:.1f} s on {t.workers} worker(s), busy "
                f"{t.utilisation:.0%}; task p50 {t.p50_ms:.0f} ms, p90 {t.p90_ms:.0f} ms; idle between two "
                f"tasks of a worker p50 {t.gap_p50_ms:.1f} ms, {t.gap_total:.2f} s in all"
            )
    return lines


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=1000, help="synthetic episodes (default 1000)")
    p.add_argument("--quick", action="store_true", help="100 episodes (under a minute)")
    p.add_argument("--seconds", type=float, default=1.5, help="episode length in seconds (default 1.5)")
    p.add_argument("--size", type=int, default=64, help="source video width = height in pixels (default 64)")
    p.add_argument("--image-size", type=int, default=224, help="output image side (default 224, the job's)")
    p.add_argument("--out-dir", help="make the work directory DIR/trajshard-scale (default: a new temp dir)")
    p.add_argument(
        "--keep", action="store_true", help="keep the work directory (reuse its dataset next time)"
    )
    p.add_argument("--repeat", type=int, default=1, help="timed ingests per worker count, fastest reported")
    args = p.parse_args(argv)
    if args.quick:
        args.episodes = 100
    if args.episodes < 8 or args.repeat < 1:
        p.error("--episodes must be at least 8 and --repeat at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Inside --out-dir, a fixed name: a later run with --keep finds its dataset; nothing else there is removed.
    work = (
        Path(args.out_dir) / "trajshard-scale"
        if args.out_dir
        else Path(tempfile.mkdtemp(prefix="trajshard-scale-"))
    )
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        print("## trajshard scale benchmark\n")
        print("\n".join(machine_facts()) + "\n", flush=True)
        for stale in ("scratch", "out"):  # outputs of a kept earlier run; the sources are reused
            shutil.rmtree(work / stale, ignore_errors=True)
        source = cached_source(work, args)
        warm = write_warm_source(work) if not (work / "src" / "warmup").exists() else work / "src" / "warmup"
        print(
            f"{args.episodes:,} synthetic episodes of {args.seconds:g} s (2 cameras, {args.size}x{args.size}: "
            f"H.264 30 fps + VP9 15 fps), output {args.image_size} px, the job's other defaults. Each row: "
            f"a fresh local Ray with num_cpus = workers, started and warmed up outside the timing; "
            f"fastest of {args.repeat} ingest(s), the worker counts taking turns.\n",
            flush=True,
        )
        ru_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        runs: dict[int, list[Run]] = {w: [] for w in WORKERS}
        for i in range(args.repeat):  # 1, 2, 1, 2, ...: a change in the machine's load hits both alike
            for w in WORKERS:
                out = work / "out" / f"w{w}-r{i}"
                runs[w].append(
                    measure(source, w, out, work / "scratch" / f"w{w}-r{i}", warm, args.image_size)
                )
        rows = [Row(runs[w]) for w in WORKERS]
        print(markdown_table(rows) + "\n")
        print("Scaling and where the time goes:")
        print("\n".join(ratio_lines(rows)))
        print(
            f"\nwhole benchmark: {time.perf_counter() - started:.0f} s (driver lifetime peak RSS "
            f"{max(ru_before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024:,.0f} MiB); "
            f"work dir {work}" + (" (kept)" if args.keep else " (removed)")
        )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
