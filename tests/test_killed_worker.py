"""A worker the kernel kills (out of memory under its cgroup) or the watchdog ends (an episode past
its time limit) takes only its episode with it: the driver runs the lost task's episodes alone,
quarantines the one whose run dies or overruns again, and writes the others byte for byte as a run
where it failed inside the task (docs/robustness.md, "Limits per episode")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import tree_digest
from tests.limited import (
    cgroups_writable,
    good_copy,
    good_reference,
    huge_frames,
    limited_jobs,
    long_and_wide,
    quarantine,
    results,
)
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest


@pytest.fixture(scope="module")
def killer(synthetic_raw, tmp_path_factory) -> Path:
    """The four good episodes and a day-long 256-D one, whose alignment needs gigabytes."""
    root = good_copy(synthetic_raw, tmp_path_factory.mktemp("killer") / "raw")
    shutil.copytree(synthetic_raw / "ep_006", root / "ep_long")
    long_and_wide(root / "ep_long")
    return root


@pytest.mark.skipif(not cgroups_writable(), reason="no memory cgroup can be made here")
def test_a_worker_the_kernel_kills_takes_only_its_episode(synthetic_raw, killer, tmp_path):
    reference = good_reference(synthetic_raw, tmp_path / "reference")
    done = limited_jobs("cgroup", killer, tmp_path / "out", limit="1.5GB")  # kills sooner than 3GB
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(done) == ["4", "1"]
    record = quarantine(tmp_path / "out")["ep_long"]
    assert record["reason"].startswith("the worker running this episode was killed (out of memory? ")
    assert "the limit is 1.5GB per task" in record["reason"]
    assert tree_digest(tmp_path / "out" / "shards") == tree_digest(reference / "shards")


@pytest.fixture(scope="module")
def slow(synthetic_raw, tmp_path_factory) -> Path:
    """The four good episodes and one whose front camera takes seconds to decode (pass 2 only)."""
    root = good_copy(synthetic_raw, tmp_path_factory.mktemp("slow") / "raw")
    shutil.copytree(synthetic_raw / "ep_007", root / "ep_slow")
    (root / "ep_slow" / "front.mp4").unlink()
    huge_frames(root / "ep_slow" / "front.mkv")
    return root


def test_an_episode_past_its_time_limit_in_pass_2_costs_only_itself(slow, tmp_path):
    """On Ray the watchdog ends the worker decoding it, the driver probes the group's episodes alone
    and writes the group without it; serially the watchdog interrupts it in the task. Same shards."""
    done = limited_jobs("none", slow, tmp_path / "ray", episode_timeout=2.0)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(done) == ["4", "1"]
    on_ray = quarantine(tmp_path / "ray")["ep_slow"]["reason"]
    assert on_ray.startswith(
        "took more than 2 s (the episode time limit, --episode-timeout) (still running at"
    )
    cfg = JobConfig.from_flags(workers=0, episode_timeout=2.0, episode_retries=1)
    run_ingest(str(slow), str(tmp_path / "serial"), cfg, progress=False)
    serial = quarantine(tmp_path / "serial")["ep_slow"]["reason"]
    assert serial == "took more than 2 s (the episode time limit, --episode-timeout)"
    assert tree_digest(tmp_path / "ray" / "shards") == tree_digest(tmp_path / "serial" / "shards")
