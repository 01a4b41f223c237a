"""The peer of trajshard's pass 2: the same aligned samples written through Ray Data's own
``Dataset.write_webdataset``, for bench/ingest.py.

A dataset of episode ids (one block each) goes through ``flat_map`` with a function that does what a
pass-2 task does per episode, with trajshard's own functions (load and align, decode the ticks' frames,
resize and JPEG-encode, tokenize, build the sample dicts), then ``write_webdataset`` writes one tar per
block. Only the writing and the scheduling differ from trajshard: Ray Data's streaming executor instead
of trajshard's bounded task loop, and its tar sink instead of ``PartWriter`` (no size cap, no sha256,
no manifest, nondeterministic file names and mtimes).
"""

from __future__ import annotations

import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import ray

from trajshard.config import JobConfig
from trajshard.pipelines.episode import SampleTools, run_stages, sample_stages, source_frames
from trajshard.pipelines.tasks import TaskContext
from trajshard.sources import SourceSpec
from trajshard.tokenizers import from_json


def episode_rows(row: dict, source_path: str, cfg: JobConfig, tokenizer_json: dict) -> Iterator[dict]:
    """The samples of one episode, as rows of bytes (what a pass-2 task writes for it): the same
    episode stages, run by Ray Data instead of trajshard's tasks."""
    ctx = TaskContext(SourceSpec(source_path, "raw", cfg.align.fps), cfg, "")
    reader = ctx.reader()
    tools = SampleTools(from_json(tokenizer_json), None, source_frames(reader.source))
    work = run_stages(sample_stages(cfg, tools), reader.read(row["episode"]))
    for piece in work.pieces:
        yield from piece.samples


def write_with_ray_data(
    source: Path,
    episodes: list[str],
    tokenizer_json: dict,
    out: Path,
    workers: int,
    options: dict | None = None,
) -> tuple[float, int]:
    """(wall seconds, samples written) for the episodes through Ray Data into ``out`` (Ray is up), with
    the JobConfig fields ``options`` sets (the ingests' own, so both encode the same images)."""
    cfg = JobConfig.from_flags(workers=workers, **(options or {}))
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import bench/
    ctx = ray.data.DataContext.get_current()
    ctx.op_resource_reservation_enabled = False  # one fused operator: let it have every CPU
    ctx.enable_progress_bars = False
    started = time.perf_counter()
    ds = ray.data.from_items([{"episode": e} for e in episodes], override_num_blocks=len(episodes))
    ds = ds.flat_map(
        episode_rows,
        fn_kwargs={"source_path": str(source), "cfg": cfg, "tokenizer_json": tokenizer_json},
        num_cpus=1,
        concurrency=workers,
    )
    ds.write_webdataset(str(out), encoder=None, concurrency=workers)  # bytes as they are
    seconds = time.perf_counter() - started
    return seconds, count_samples(out)


def count_samples(out: Path) -> int:
    """Samples (distinct keys) in the tars Ray Data wrote."""
    keys = set()
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            keys.update(m.name.split(".", 1)[0] for m in tar.getmembers())
    return len(keys)
