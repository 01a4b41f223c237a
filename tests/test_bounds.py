"""Bounds per episode (docs/robustness.md, "Limits per episode"): tiny files that declare gigabytes are
refused before anything is allocated, with the file and the reason, in a job on a real local Ray whose
two workers each have a 3 GB address-space limit; the watchdog's time limit; the table bounds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, tree_digest
from tests.limited import (
    good_copy,
    good_reference,
    hdf5_with_bomb,
    limited_jobs,
    quarantine,
    results,
    wide_csv,
    zero_rows_parquet,
)
from trajshard.config import JobConfig
from trajshard.pipelines.tasks import Alone, Lost, TaskContext, run_alone
from trajshard.schemas.attempts import EXIT_TIMEOUT, EpisodeTimeout, Watchdog
from trajshard.sources import tables
from trajshard.sources.tables import TableError, check_table_file


@pytest.fixture(scope="module")
def bombs(synthetic_raw, tmp_path_factory) -> Path:
    """The four good episodes, one with a 100M-row parquet and one with a 100k-column CSV."""
    root = good_copy(synthetic_raw, tmp_path_factory.mktemp("bombs") / "raw")
    shutil.copytree(synthetic_raw / "ep_004", root / "ep_rows")
    (root / "ep_rows" / "proprio.parquet").unlink()
    zero_rows_parquet(root / "ep_rows" / "proprio.parquet")
    shutil.copytree(synthetic_raw / "ep_005", root / "ep_wide")
    (root / "ep_wide" / "action.parquet").unlink()
    wide_csv(root / "ep_wide" / "action.csv")
    return root


def test_bombs_are_quarantined_under_a_3gb_address_space_limit(synthetic_raw, bombs, tmp_path):
    reference = good_reference(synthetic_raw, tmp_path / "reference")
    hdf5 = tmp_path / "hdf5"
    hdf5.mkdir()
    hdf5_with_bomb(hdf5 / "lift.hdf5")
    done = limited_jobs("as", bombs, tmp_path / "out", hdf5, tmp_path / "out_hdf5", no_images=True)
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
