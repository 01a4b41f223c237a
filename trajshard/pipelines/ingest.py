"""The ingest job on Ray: plan, pass 1 (statistics), fit the tokenizer, pass 2 (shards), commit.

The only module that knows Ray. Without an address it starts an embedded local Ray; with
``--address auto``, ``ray://...`` or ``RAY_ADDRESS`` it joins a cluster. Tasks run the functions of
``pipelines/passes.py``; at most ``workers`` are in flight, and results are merged in episode
order, so the output does not depend on how many workers ran or in what order they finished.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray

from trajshard.config import JobConfig
from trajshard.pipelines import commit
from trajshard.pipelines.passes import EpisodeFacts, GroupResult, Quarantined, pass1_episode, pass2_group
from trajshard.pipelines.shards import clean_temporaries
from trajshard.pipelines.stats import merge_all
from trajshard.sources import open_source
from trajshard.tokenizers import fit

log = logging.getLogger("trajshard.ingest")
PASS1_BATCH = 8


class IngestError(RuntimeError):
    """The job cannot run or cannot finish (not a bad episode: those are quarantined)."""


@dataclass
class IngestReport:
    out: str
    episodes_input: int
    episodes_written: int
    episodes_quarantined: int
    samples: int
    shards: int
    frames: int
    seconds: float


@ray.remote(num_cpus=1)
def _pass1_task(source: str, fmt: str, ids: list[str], cfg: JobConfig) -> list[EpisodeFacts | Quarantined]:
    return [pass1_episode(source, fmt, eid, cfg) for eid in ids]


@ray.remote(num_cpus=1, max_retries=3)
def _pass2_task(
    source: str, fmt: str, ids: list[str], cfg: JobConfig, tok: dict, shard_dir: str, group: int
) -> GroupResult:
    return pass2_group(source, fmt, ids, cfg, tok, shard_dir, group)


def run_ingest(source_path: str, out: str, cfg: JobConfig, progress: bool | None = None) -> IngestReport:
    started = time.monotonic()
    source = open_source(source_path, cfg.format)
    src, fmt = str(source.root), source.format
    out_path = Path(out).resolve()
    if (out_path / "meta" / "info.json").exists():
        raise IngestError(f"{out} already holds a dataset (meta/info.json); remove it or choose another OUT")
    if out_path.is_relative_to(Path(src)):
        raise IngestError(f"OUT {out} is inside the source {src}; choose a path outside it")
    shard_dir = out_path / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(shard_dir)

    ids, rejected = source.plan()
    quarantined = [Quarantined(name, f, reason) for name, f, reason in rejected]
    show = sys.stderr.isatty() if progress is None else progress
    owns_ray = _init_ray(cfg)
    try:
        workers = cfg.workers or max(1, int(ray.available_resources().get("CPU", 1)))
        batches = [ids[i : i + PASS1_BATCH] for i in range(0, len(ids), PASS1_BATCH)]
        results = _run_bounded(
            [lambda b=b: _pass1_task.remote(src, fmt, b, cfg) for b in batches],
            workers,
            "pass 1: statistics",
            len(ids),
            lambda r: len(r),
            show,
        )
        facts = []
        for r in (x for batch in results for x in batch):
            (facts if isinstance(r, EpisodeFacts) else quarantined).append(r)
        facts, odd = split_by_shape(facts)
        quarantined += odd
        if not facts:
            raise IngestError(
                f"no episode of {len(ids) + len(rejected)} could be read; "
                f"first reasons: {[q.reason for q in quarantined[:3]]}"
            )
        action_stats = merge_all([f.action for f in facts])
        state_stats = merge_all([f.state for f in facts])
        stats_streams = {
            "action": action_stats.to_json(facts[0].action_names),
            "state": state_stats.to_json(facts[0].state_names),
        }
        tokenizer = fit(cfg.tokenizer, stats_streams["action"], cfg.bins)
        tok_json = tokenizer.to_json()

        groups = plan_groups(facts, cfg.task_steps or group_steps(cfg, len(facts[0].cameras)))
        group_results: list[GroupResult] = _run_bounded(
            [
                lambda g=g, i=i: _pass2_task.remote(src, fmt, g, cfg, tok_json, str(shard_dir), i)
                for i, g in enumerate(groups)
            ],
            workers,
            "pass 2: shards",
            sum(f.steps for f in facts),
            lambda r: sum(p.samples for p in r.parts),
            show,
        )
    finally:
        if owns_ray:
            ray.shutdown()
    return commit.commit(
        out_path,
        src,
        fmt,
        cfg,
        facts,
        quarantined,
        group_results,
        stats_streams,
        tok_json,
        n_input=len(ids) + len(rejected),
        seconds=time.monotonic() - started,
        report_type=IngestReport,
    )


def plan_groups(facts: list[EpisodeFacts], task_steps: int) -> list[list[str]]:
    """Consecutive episodes (in id order) grouped until each group holds ``task_steps`` steps.

    Depends only on the episodes and the config, never on the number of workers."""
    groups, current, steps = [], [], 0
    for f in facts:
        current.append(f.episode)
        steps += f.steps
        if steps >= task_steps:
            groups.append(current)
            current, steps = [], 0
    if current:
        groups.append(current)
    return groups


def group_steps(cfg: JobConfig, n_cameras: int) -> int:
    """Steps per pass-2 task when the config sets none: about one shard's worth, from an estimate of
    the bytes a sample takes (a JPEG at this size and quality is roughly 12% of the raw RGB)."""
    jpeg = cfg.image_size**2 * 3 * (0.06 + 0.0015 * cfg.jpeg_quality)
    per_sample = n_cameras * jpeg + 4096 + 2048 * cfg.horizon
    return max(1, int(cfg.shard_size_bytes / per_sample))


def _init_ray(cfg: JobConfig) -> bool:
    """Join or start Ray; True when this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        ray.init(num_cpus=cfg.workers or os.cpu_count(), **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def _run_bounded(
    submits: list[Callable[[], ray.ObjectRef]],
    limit: int,
    label: str,
    total: int,
    count: Callable[[object], int],
    show: bool,
) -> list:
    """Run tasks with at most ``limit`` in flight; return results in submission order."""
    from tqdm import tqdm

    results: list = [None] * len(submits)
    pending: dict[ray.ObjectRef, int] = {}
    nxt, done_units, t0 = 0, 0, time.monotonic()
    bar = tqdm(total=total, desc=label, unit="step" if "2" in label else "ep", disable=not show)
    try:
        while nxt < len(submits) or pending:
            while nxt < len(submits) and len(pending) < limit:
                pending[submits[nxt]()] = nxt
                nxt += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                results[i] = ray.get(ref)
                n = count(results[i])
                done_units += n
                bar.update(n)
            if not show:
                log.info(
                    "%s: %d/%d (%.1f/s)",
                    label,
                    done_units,
                    total,
                    done_units / max(time.monotonic() - t0, 1e-9),
                )
    finally:
        bar.close()
    return results


def split_by_shape(facts: list[EpisodeFacts]) -> tuple[list[EpisodeFacts], list[Quarantined]]:
    """Keep the episodes of the most common (action dims, state dims, cameras); quarantine the rest."""

    def shape(f: EpisodeFacts) -> tuple:
        return f.action.dims, f.state.dims, f.cameras

    counts = Counter(shape(f) for f in facts)
    if not counts:
        return [], []
    best = max(counts, key=lambda k: (counts[k], -[shape(f) for f in facts].index(k)))
    kept = [f for f in facts if shape(f) == best]
    odd = [
        Quarantined(
            f.episode,
            "streams",
            f"action {f.action.dims}-D, state {f.state.dims}-D, cameras "
            f"{list(f.cameras)} differ from the dataset's {best[0]}-D, {best[1]}-D, {list(best[2])}",
        )
        for f in facts
        if shape(f) != best
    ]
    return kept, odd
