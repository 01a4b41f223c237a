"""Bounds per episode (docs/robustness.md, "Limits per episode"): tiny files that declare gigabytes are
refused before anything is allocated; a worker the OS kills, or the watchdog ends, takes only its
culprit episode with it. The jobs run on a real local Ray whose workers each get a 3 GB limit (an
address-space limit, or a memory cgroup where this machine lets us make one), in a child process."""

from __future__ import annotations

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
import pytest

from tests.helpers import REPO, tree_digest
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.pipelines.tasks import Alone, Lost, TaskContext, run_alone
from trajshard.schemas.attempts import EXIT_TIMEOUT, EpisodeTimeout, Watchdog
from trajshard.sources import tables
from trajshard.sources.tables import TableError, check_table_file

GOOD = ["ep_000", "ep_001", "ep_002", "ep_003"]
LIMIT = "3GB"  # per worker process: its address space or its memory cgroup, and --task-memory
CGROUPS = Path("/sys/fs/cgroup/memory")


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


def year_long(ep: Path) -> None:
    """No camera, proprio and action every 5 minutes over a year: every check on the file passes,
    aligning it at 10 Hz makes 315 million ticks (gigabytes)."""
    for f in ep.iterdir():
        if f.suffix in (".mp4", ".webm", ".npy", ".mkv"):
            f.unlink()
    ep.joinpath("episode.json").write_text('{"instruction": "wait a year"}')
    ts = np.arange(105_000) * 300.0
    for stream in ("proprio", "action"):
        values = pa.array(list(np.zeros((len(ts), 7), np.float32)), pa.list_(pa.float32()))
        pq.write_table(pa.table({"timestamp": ts, stream: values}), ep / f"{stream}.parquet")


@pytest.fixture(scope="module")
def sources(synthetic_raw, tmp_path_factory) -> dict[str, Path]:
    """good: four good episodes; bombs: the same with a 100M-row parquet and a 100k-column CSV;
    killer: the four good ones and a year-long episode."""
    root = tmp_path_factory.mktemp("bounds")
    good, bombs, killer = root / "good", root / "bombs", root / "killer"
    for eid in GOOD:
        for dst in (good, bombs, killer):
            shutil.copytree(synthetic_raw / eid, dst / eid)
    shutil.copytree(synthetic_raw / "ep_004", bombs / "ep_rows")
    (bombs / "ep_rows" / "proprio.parquet").unlink()
    zero_rows_parquet(bombs / "ep_rows" / "proprio.parquet")
    shutil.copytree(synthetic_raw / "ep_005", bombs / "ep_wide")
    (bombs / "ep_wide" / "action.parquet").unlink()
    wide_csv(bombs / "ep_wide" / "action.csv")
    shutil.copytree(synthetic_raw / "ep_006", killer / "ep_year")
    year_long(killer / "ep_year")
    return {"good": good, "bombs": bombs, "killer": killer}


@pytest.fixture(scope="module")
def reference(sources, tmp_path_factory) -> Path:
    """The good episodes alone, ingested serially: the shards every bomb run must write."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run_ingest(str(sources["good"]), str(out), JobConfig.from_flags(workers=0), progress=False)
    return out


# ------------------------------------------------------------------------ jobs on a limited Ray

JOB = textwrap.dedent(
    """
    import os, resource, sys
    import ray
    from trajshard.config import JobConfig
    from trajshard.pipelines.ingest import run_ingest

    from trajshard.io import parse_size

    MEMORY, MODE = sys.argv[1], sys.argv[2]
    LIMIT = parse_size(MEMORY)

    def limit_worker():  # runs in every Ray worker before its first task
        if MODE == "as":
            resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
            return
        group = f"/sys/fs/cgroup/memory/trajshard_bounds_{os.getpid()}"
        os.makedirs(group, exist_ok=True)
        open(f"{group}/memory.limit_in_bytes", "w").write(str(LIMIT))
        open(f"{group}/cgroup.procs", "w").write(str(os.getpid()))

    # two malloc arenas: a worker's address space is then about 2 GB before any episode, not 3
    env = {"worker_process_setup_hook": limit_worker, "env_vars": {"MALLOC_ARENA_MAX": "2"}}
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=256 << 20,
             logging_level="ERROR", runtime_env=env)
    for src, out in zip(sys.argv[3::2], sys.argv[4::2]):
        cfg = JobConfig.from_flags(workers=2, task_memory=MEMORY, episode_retries=1)
        report = run_ingest(src, out, cfg, progress=False)
        print("RESULT", report.episodes_written, report.episodes_quarantined, flush=True)
        print("PHASES", report.phases, flush=True)
    ray.shutdown()
    """
)


def limited_jobs(mode: str, *src_out: Path, limit: str = LIMIT) -> subprocess.CompletedProcess:
    """Ingest each (SOURCE, OUT) on one local Ray of two workers, each limited to 3 GB (``as``: its
    address space; ``cgroup``: a memory cgroup of its own, which the kernel enforces by killing it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    args = [sys.executable, "-c", JOB, limit, mode, *map(str, src_out)]
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


def test_bombs_are_quarantined_under_a_3gb_address_space_limit(sources, reference, tmp_path):
    hdf5 = tmp_path / "hdf5"
    hdf5.mkdir()
    hdf5_with_bomb(hdf5 / "lift.hdf5")
    done = limited_jobs("as", sources["bombs"], tmp_path / "out", hdf5, tmp_path / "out_hdf5")
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(done) == ["4", "2", "3", "1"]
    q = quarantine(tmp_path / "out")
    assert q["ep_rows"]["file"] == "proprio.parquet"
    assert "declares 100000000 rows x 2 columns" in q["ep_rows"]["reason"]
    assert "MiB an episode may take (--task-memory)" in q["ep_rows"]["reason"]
    assert q["ep_wide"]["file"] == "action.csv"
    assert q["ep_wide"]["reason"] == "has 100000 columns, more than 4096"
    assert tree_digest(tmp_path / "out" / "shards") == tree_digest(reference / "shards")
    assert "declares [150000000, 2] values" in quarantine(tmp_path / "out_hdf5")["demo_3"]["reason"]


@pytest.mark.skipif(not cgroups_writable(), reason="no memory cgroup can be made here")
def test_a_worker_the_kernel_kills_takes_only_its_episode(sources, reference, tmp_path):
    done = limited_jobs("cgroup", sources["killer"], tmp_path / "out", limit="1.5GB")  # kills sooner
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(done) == ["4", "1"]
    record = quarantine(tmp_path / "out")["ep_year"]
    assert record["reason"].startswith("the worker running this episode was killed (out of memory? ")
    assert "the limit is 1.5GB per task" in record["reason"]
    assert tree_digest(tmp_path / "out" / "shards") == tree_digest(reference / "shards")


# ----------------------------------------------------------------------------- the time limit


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "stuck.fifo"
    os.mkfifo(path)  # nobody writes: opening it for reading blocks
    return path


def read_fifo(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def test_the_watchdog_interrupts_a_blocked_read_in_the_main_thread(fifo):
    started = time.monotonic()
    with pytest.raises(EpisodeTimeout, match=r"took more than 0.5 s"):
        with Watchdog(0.5).episode("ep_000"):
            read_fifo(fifo)
    assert time.monotonic() - started < 5


def test_in_a_worker_the_watchdog_ends_the_process(fifo):
    code = (
        "import sys; from trajshard.schemas.attempts import Watchdog, end_worker_on_timeout\n"
        "end_worker_on_timeout()\n"
        "with Watchdog(0.5).episode('ep_000'):\n"
        "    open(sys.argv[1], 'rb').read()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code, str(fifo)], env=env, capture_output=True, timeout=60)
    assert done.returncode == EXIT_TIMEOUT
    assert b"episode ep_000 took more than 0.5 s" in done.stderr


def test_an_episode_run_alone_past_its_limit_is_lost_naming_where(fifo):
    ctx = TaskContext(None, JobConfig.from_flags(episode_timeout=0.5), "")
    lost = run_alone(ctx, Alone(lambda ctx, path: read_fifo(path), fifo, "ep_000"))
    assert isinstance(lost, Lost)
    assert lost.cause.startswith("took more than 0.5 s")
    assert "test_bounds.py" in lost.cause and "reading stuck.fifo" in lost.cause


# --------------------------------------------------------------------------- the table bounds


def test_table_bounds_name_the_problem_before_reading(tmp_path):
    small = tmp_path / "small.parquet"
    zero_rows_parquet(small, rows=10_000_000)
    tables.set_episode_budget(64 << 20)
    try:
        with pytest.raises(TableError, match=r"declares 10000000 rows x 2 columns, about \d+ MiB"):
            check_table_file(str(small))
        big = tmp_path / "big.csv"
        big.write_bytes(b"timestamp,x\n" + b"0,0\n" * (5 << 20))
        with pytest.raises(TableError, match=r"20971532 bytes of csv, more than the 16777216"):
            check_table_file(str(big))
    finally:
        tables.set_episode_budget(None)
    wide = tmp_path / "wide.jsonl"
    wide.write_text(json.dumps({f"c{i}": 0 for i in range(5000)}) + "\n")
    with pytest.raises(TableError, match="has 5000 columns, more than 4096"):
        check_table_file(str(wide))
    check_table_file(str(small))  # the default budget holds it


def test_the_budget_is_half_the_task_memory():
    assert JobConfig.from_flags(task_memory="3GB").run.episode_memory() == 1_500_000_000
    assert JobConfig.from_flags().run.episode_memory() == tables.DEFAULT_EPISODE_MEMORY
    with pytest.raises(ValueError, match="episode_timeout must be positive"):
        JobConfig.from_flags(episode_timeout=0)
