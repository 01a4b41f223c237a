"""Helpers of the tests of per-episode bounds (test_bounds.py, test_killed_worker.py): the bombs,
and jobs on a real local Ray whose workers each get a memory limit, run in a child process."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests.helpers import REPO
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest

GOOD = ["ep_000", "ep_001", "ep_002", "ep_003"]
LIMIT = "3GB"  # per worker process: its address space or its memory cgroup, and --task-memory
CGROUPS = Path("/sys/fs/cgroup/memory")


def good_copy(synthetic_raw: Path, dst: Path) -> Path:
    """The four good episodes of the synthetic dataset, copied into ``dst``."""
    for eid in GOOD:
        shutil.copytree(synthetic_raw / eid, dst / eid)
    return dst


def good_reference(synthetic_raw: Path, work: Path) -> Path:
    """The good episodes alone, ingested serially: the shards every bomb run must write."""
    out = work / "out"
    run_ingest(
        str(good_copy(synthetic_raw, work / "good")),
        str(out),
        JobConfig.from_flags(workers=0),
        progress=False,
    )
    return out


# ---------------------------------------------------------------------------------------- the bombs


def zero_rows_parquet(path: Path, rows: int = 100_000_000) -> None:
    """A zstd parquet of ``rows`` zero rows (timestamp and one value): under a megabyte on disk,
    gigabytes once read."""
    block = pa.table({"timestamp": np.zeros(10_000_000), "x": np.zeros(10_000_000, np.float32)})
    with pq.ParquetWriter(path, block.schema, compression="zstd") as w:
        for _ in range(rows // 10_000_000):
            w.write_table(block, row_group_size=10_000_000)


def wide_csv(path: Path, columns: int = 100_000, rows: int = 3) -> None:
    header = "timestamp," + ",".join(f"c{i}" for i in range(columns - 1))
    line = ",".join(["0"] * columns)
    path.write_text("\n".join([header] + [line] * rows) + "\n")


def long_and_wide(ep: Path) -> None:
    """No camera, 256-D proprio and action every 5 minutes over 28 hours: every check on the files
    and the clock's bound (MAX_TICKS) pass, and aligning it at 10 Hz makes 996,001 ticks of 256
    dimensions (gigabytes)."""
    for f in ep.iterdir():
        if f.suffix in (".mp4", ".webm", ".npy", ".mkv"):
            f.unlink()
    ep.joinpath("episode.json").write_text('{"instruction": "wait a day"}')
    ts = np.arange(333) * 300.0
    for stream in ("proprio", "action"):
        values = pa.array(list(np.zeros((len(ts), 256), np.float32)), pa.list_(pa.float32()))
        pq.write_table(pa.table({"timestamp": ts, stream: values}), ep / f"{stream}.parquet")


# ------------------------------------------------------------------------ jobs on a limited Ray

JOB = textwrap.dedent(
    """
    import json, os, resource, sys
    import ray
    from trajshard.config import JobConfig
    from trajshard.pipelines.ingest import run_ingest

    from trajshard.io import parse_size

    MEMORY, MODE, FLAGS = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    LIMIT = parse_size(MEMORY)

    def limit_worker():  # runs in every Ray worker before its first task
        if MODE == "as":
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
        if MODE != "cgroup":
            return
        group = f"/sys/fs/cgroup/memory/trajshard_bounds_{os.getpid()}"
        os.makedirs(group, exist_ok=True)
        open(f"{group}/memory.limit_in_bytes", "w").write(str(LIMIT))
        open(f"{group}/cgroup.procs", "w").write(str(os.getpid()))

    # two malloc arenas: a worker's address space is then about 2 GB before any episode, not 3
    env = {"worker_process_setup_hook": limit_worker, "env_vars": {"MALLOC_ARENA_MAX": "2"}}
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
             logging_level="ERROR", runtime_env=env)
    for src, out in zip(sys.argv[4::2], sys.argv[5::2]):
        cfg = JobConfig.from_flags(workers=2, task_memory=MEMORY, episode_retries=1, **FLAGS)
        report = run_ingest(src, out, cfg, progress=False)
        print("RESULT", report.episodes_written, report.episodes_quarantined, flush=True)
    ray.shutdown()
    """
)


def limited_jobs(
    mode: str, *src_out: Path, limit: str = LIMIT, **flags: object
) -> subprocess.CompletedProcess:
    """Ingest each (SOURCE, OUT) on one local Ray of two workers, each limited to 3 GB (``as``: its
    address space; ``cgroup``: a memory cgroup of its own, which the kernel enforces by killing it;
    ``none``: no limit), with config ``flags``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    args = [sys.executable, "-c", JOB, limit, mode, json.dumps(flags), *map(str, src_out)]
    try:
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=240)
    finally:
        for group in CGROUPS.glob("trajshard_bounds_*"):
            _remove_cgroup(group)


def _remove_cgroup(group: Path) -> None:
    for _ in range(50):  # its worker may still be exiting
        try:
            group.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def results(done: subprocess.CompletedProcess) -> list[str]:
    """(written, quarantined) of each job, as printed."""
    return [w for line in done.stdout.splitlines() if line.startswith("RESULT ") for w in line.split()[1:]]


def quarantine(out: Path) -> dict[str, dict]:
    lines = (out / "meta" / "quarantine.jsonl").read_text().splitlines()
    return {r["episode"]: r for r in map(json.loads, lines)}


def cgroups_writable() -> bool:
    probe = CGROUPS / f"trajshard_bounds_probe_{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


def hdf5_with_bomb(path: Path) -> None:
    """Three good robomimic demos and one whose never-written chunked datasets declare 150M x 2."""
    with h5py.File(path, "w") as h:
        h.create_group("data").attrs["env"] = "Lift"
        rng = np.random.default_rng(0)
        for i in range(3):
            g = h.create_group(f"data/demo_{i}")
            g["actions"] = rng.normal(size=(40, 3)).astype(np.float32)
            g["states"] = rng.normal(size=(40, 5)).astype(np.float32)
        g = h.create_group("data/demo_3")
        g.create_dataset("actions", (150_000_000, 2), "f8", chunks=(1024, 2))
        g.create_dataset("states", (150_000_000, 2), "f8", chunks=(1024, 2))


def huge_frames(path: Path, frames: int = 30, side: int = 16000) -> None:
    """A Matroska MJPEG camera of ``frames`` grey 16000 x 16000 frames over 3 s: a few MB each on
    disk, probed in milliseconds, about half a second each to decode."""
    from fractions import Fraction

    import av
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", quality=50)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = side, side, "yuvj420p"
        stream.time_base = Fraction(1, 10)
        for i in range(frames):
            packet = av.Packet(buf.getvalue())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 10)
            out.mux(packet)
