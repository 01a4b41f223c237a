"""A worker the kernel kills (out of memory under its cgroup) takes only its episode with it: the
driver runs the lost task's episodes alone, quarantines the one whose run dies again, and writes the
others byte for byte as a run without it (docs/robustness.md, "Limits per episode")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import tree_digest
from tests.limited import (
    cgroups_writable,
    good_copy,
    good_reference,
    limited_jobs,
    quarantine,
    results,
    year_long,
)


@pytest.fixture(scope="module")
def killer(synthetic_raw, tmp_path_factory) -> Path:
    """The four good episodes and a year-long one, whose alignment needs gigabytes."""
    root = good_copy(synthetic_raw, tmp_path_factory.mktemp("killer") / "raw")
    shutil.copytree(synthetic_raw / "ep_006", root / "ep_year")
    year_long(root / "ep_year")
    return root


@pytest.mark.skipif(not cgroups_writable(), reason="no memory cgroup can be made here")
def test_a_worker_the_kernel_kills_takes_only_its_episode(synthetic_raw, killer, tmp_path):
    reference = good_reference(synthetic_raw, tmp_path / "reference")
    done = limited_jobs("cgroup", killer, tmp_path / "out", limit="1.5GB")  # kills sooner than 3GB
    assert done.returncode == 0, done.stderr[-3000:]
    assert results(done) == ["4", "1"]
    record = quarantine(tmp_path / "out")["ep_year"]
    assert record["reason"].startswith("the worker running this episode was killed (out of memory? ")
    assert "the limit is 1.5GB per task" in record["reason"]
    assert tree_digest(tmp_path / "out" / "shards") == tree_digest(reference / "shards")
