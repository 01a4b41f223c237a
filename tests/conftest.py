"""Shared fixtures: one session-scoped local Ray, a synthetic raw dataset, the real data paths."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRAJSHARD_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ray_session():
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
def ingested(synthetic_raw, ray_session, tmp_path_factory) -> Path:
    """The synthetic dataset ingested once with 2 workers (read-only)."""
    from trajshard.config import JobConfig
    from trajshard.pipelines.ingest import run_ingest

    out = tmp_path_factory.mktemp("ingested") / "out"
    run_ingest(str(synthetic_raw), str(out), JobConfig.from_flags(workers=2), progress=False)
    return out


def shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (see ../shared/data/SOURCES.md)")
    return path


@pytest.fixture(scope="session")
def two_split(synthetic_raw, ray_session, tmp_path_factory) -> Path:
    """The synthetic dataset ingested into train and val splits of many small shards, with token ids
    (read-only)."""
    from trajshard.config import JobConfig
    from trajshard.pipelines.ingest import run_ingest

    out = tmp_path_factory.mktemp("two_split") / "out"
    cfg = JobConfig.from_flags(workers=2, val_fraction=0.3, shard_size="250KB", vocab="openvla:32000", seed=0)
    run_ingest(str(synthetic_raw), str(out), cfg, progress=False)
    return out
