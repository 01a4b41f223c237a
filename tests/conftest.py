"""Shared fixtures: a synthetic raw dataset, outputs of it ingested serially (no Ray), and one
session-scoped local Ray for the tests whose point is Ray. Shared plain helpers are in helpers.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import shared_data  # noqa: F401 - once defined here; import it from tests.helpers


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs, for the tests of Ray's part: parallel runs, worker counts, retries."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> Path:
    """Eight synthetic episodes of 3 s (read-only: copy before changing)."""
    from trajshard.sources.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic") / "raw"
    write_synthetic_dataset(root, n_episodes=8, seconds=3.0, seed=0)
    return root


@pytest.fixture
def raw_copy(synthetic_raw, tmp_path) -> Path:
    """A private, writable copy of the synthetic dataset."""
    dst = tmp_path / "raw"
    shutil.copytree(synthetic_raw, dst)
    return dst


@pytest.fixture(scope="session")
def many_raw(synthetic_raw, tmp_path_factory) -> Path:
    """24 short episodes: the synthetic 8, each copied under three ids (read-only)."""
    root = tmp_path_factory.mktemp("many") / "raw"
    for ep in sorted(synthetic_raw.iterdir()):
        for k in range(3):
            shutil.copytree(ep, root / f"{ep.name}_{k}")
    return root


@pytest.fixture(scope="session")
def ingested(synthetic_raw, tmp_path_factory) -> Path:
    """The synthetic dataset ingested once, serially (read-only; the bytes a Ray run writes, see
    test_ingest.py::test_byte_identical_across_runs_and_worker_counts)."""
    from trajshard.config import JobConfig
    from trajshard.pipelines.ingest import run_ingest

    out = tmp_path_factory.mktemp("ingested") / "out"
    run_ingest(str(synthetic_raw), str(out), JobConfig.from_flags(workers=0), progress=False)
    return out


@pytest.fixture(scope="session")
def two_split(synthetic_raw, tmp_path_factory) -> Path:
    """The synthetic dataset ingested serially into train and val splits of many small shards, with
    token ids (read-only)."""
    from trajshard.config import JobConfig
    from trajshard.pipelines.ingest import run_ingest

    out = tmp_path_factory.mktemp("two_split") / "out"
    cfg = JobConfig.from_flags(workers=0, val_fraction=0.3, shard_size="250KB", vocab="openvla:32000", seed=0)
    run_ingest(str(synthetic_raw), str(out), cfg, progress=False)
    return out
