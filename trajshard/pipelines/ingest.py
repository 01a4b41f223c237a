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
from dataclasses import dataclass, field, replace
from pathlib import Path

import ray

from trajshard.config import JobConfig
from trajshard.pipelines import commit
from trajshard.pipelines.passes import (
    EpisodeFacts,
    GroupResult,
    Quarantined,
    pass1_batch,
    pass2_group,
    sample_chunks,
)
from trajshard.pipelines.plan import Group, group_steps, plan_groups
from trajshard.pipelines.shards import ShardWriteError, clean_temporaries
from trajshard.pipelines.stats import StreamStats
from trajshard.sources import checked_plan, open_source
from trajshard.tokenizers import fit
from trajshard.tokenizers.vocab import VocabMap

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
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds of plan, pass1, fit, pass2, commit


@ray.remote(num_cpus=1)
def _pass1_task(
    source: str, fmt: str, ids: list[str], cfg: JobConfig
) -> list[list[EpisodeFacts] | Quarantined]:
    return pass1_batch(source, fmt, ids, cfg)


@ray.remote(num_cpus=1, max_retries=3, retry_exceptions=[ShardWriteError])
def _pass2_task(
    source: str, fmt: str, group: Group, cfg: JobConfig, tok: dict, shard_dir: str, vocab: dict | None
) -> GroupResult:
    return pass2_group(source, fmt, group, cfg, tok, shard_dir, vocab)


def run_ingest(source_path: str, out: str, cfg: JobConfig, progress: bool | None = None) -> IngestReport:
    started = time.monotonic()
    source = open_source(source_path, cfg.format, cfg.source_fps or cfg.fps, cfg.mcap)
    src, fmt = str(source.root), source.format
    out_path = Path(out).resolve()
    if (out_path / "meta" / "info.json").exists():
        raise IngestError(f"{out} already holds a dataset (meta/info.json); remove it or choose another OUT")
    if out_path.is_relative_to(Path(src)):
        raise IngestError(f"OUT {out} is inside the source {src}; choose a path outside it")
    shard_dir = out_path / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(shard_dir)

    phases: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = now - mark
        mark = now

    ids, rejected = checked_plan(source)
    lap("plan")
    quarantined = [Quarantined(name, f, reason) for name, f, reason in rejected]
    show = sys.stderr.isatty() if progress is None else progress
    owns_ray = _init_ray(cfg)
    try:
        workers = cfg.workers or max(1, int(ray.available_resources().get("CPU", 1)))
        batches = [ids[i : i + PASS1_BATCH] for i in range(0, len(ids), PASS1_BATCH)]
        pass1 = Pass1Merger()
        _run_bounded(
            [lambda b=b: _pass1_task.remote(src, fmt, b, cfg) for b in batches],
            workers,
            "pass 1: statistics",
            "episode",
            len(ids),
            lambda r: len(r),
            show,
            consume=pass1.add,
        )
        lap("pass1")
        quarantined += pass1.quarantined
        facts, odd, stats_streams = pass1.finish()
        quarantined += odd
        if not facts:
            raise IngestError(
                f"no episode of {len(ids) + len(rejected)} could be read; "
                f"first reasons: {[q.reason for q in quarantined[:3]]}"
            )
        tokenizer = fit(
            cfg.tokenizer,
            stats_streams["action"],
            cfg.bins,
            normalization=cfg.normalization,
            mask=list(cfg.normalization_mask) or None,
            mode=cfg.uniform_mode,
            sketch=pass1.sketch,
            horizon=cfg.horizon,
            scale=cfg.fast_scale,
            chunks=sample_chunks(src, fmt, facts, cfg) if cfg.tokenizer == "fast" else None,
        )
        tok_json = tokenizer.to_json()
        vocab_json = None
        if cfg.vocab:
            vocab = VocabMap.build(cfg.vocab, tokenizer.token_range)
            if cfg.vocab_file:
                vocab.check_against(cfg.vocab_file)
            vocab_json = vocab.to_json()

        lap("fit")
        total = sum(f.steps for f in facts)
        steps_of: dict[str, int] = {}
        for f in facts:
            steps_of[f.source_episode] = steps_of.get(f.source_episode, 0) + f.steps
        task_steps = cfg.task_steps or group_steps(cfg, len(facts[0].cameras), total)
        groups = plan_groups(list(steps_of.items()), cfg, task_steps)
        group_results: list[GroupResult] = _run_bounded(
            [
                lambda g=g: _pass2_task.remote(src, fmt, g, cfg, tok_json, str(shard_dir), vocab_json)
                for g in groups
            ],
            workers,
            "pass 2: shards",
            "step",
            sum(f.steps for f in facts),
            lambda r: sum(p.samples for p in r.parts),
            show,
        )
        lap("pass2")
    finally:
        if owns_ray:
            ray.shutdown()
    report = commit.commit(
        out_path,
        src,
        fmt,
        cfg,
        facts,
        quarantined,
        list(zip(groups, group_results, strict=True)),
        stats_streams,
        tok_json,
        vocab_json,
        n_input=len(ids) + len(rejected),
        seconds=time.monotonic() - started,
        report_type=IngestReport,
    )
    lap("commit")
    report.phases = phases
    return report


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
    unit: str,
    total: int,
    count: Callable[[object], int],
    show: bool,
    consume: Callable[[int, object], None] | None = None,
) -> list:
    """Run tasks with at most ``limit`` in flight; return results in submission order."""
    from tqdm import tqdm

    results: list = [None] * len(submits)
    pending: dict[ray.ObjectRef, int] = {}
    nxt, done_units, t0 = 0, 0, time.monotonic()
    bar = tqdm(total=total, desc=label, unit=unit, disable=not show)
    try:
        while nxt < len(submits) or pending:
            while nxt < len(submits) and len(pending) < limit:
                pending[submits[nxt]()] = nxt
                nxt += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                result = ray.get(ref)
                n = count(result)
                if consume is None:
                    results[i] = result
                else:
                    consume(i, result)
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


class Pass1Merger:
    """Merges pass-1 results in episode order as they arrive, so the driver holds one merged summary
    per (action dims, state dims, cameras) shape, never every episode's values. At the end the most
    common shape wins (ties: the one seen first); episodes of other shapes are quarantined."""

    def __init__(self) -> None:
        self.next = 0
        self.waiting: dict[int, list] = {}
        self.facts: list[EpisodeFacts] = []
        self.quarantined: list[Quarantined] = []
        self.merged: dict[tuple, dict[str, StreamStats]] = {}
        self.sketch: StreamStats | None = None

    def add(self, index: int, batch: list[list[EpisodeFacts] | Quarantined]) -> None:
        self.waiting[index] = batch
        while self.next in self.waiting:
            for episode in self.waiting.pop(self.next):
                if isinstance(episode, Quarantined):
                    self.quarantined.append(episode)
                    continue
                for r in episode:  # the parts of one source episode
                    have = self.merged.get(r.shape)
                    self.merged[r.shape] = (
                        r.stats if have is None else {k: have[k].merge(v) for k, v in r.stats.items()}
                    )
                    self.facts.append(replace(r, stats=None))
            self.next += 1

    def finish(self) -> tuple[list[EpisodeFacts], list[Quarantined], dict[str, dict]]:
        if not self.facts:
            return [], [], {}
        sources = {f.source_episode for f in self.facts} | {q.episode for q in self.quarantined}
        clash = {
            f.source_episode for f in self.facts if f.episode != f.source_episode and f.episode in sources
        }
        self.quarantined += [
            Quarantined(e, "streams", "a gap split it into parts whose ids are taken by other episodes")
            for e in sorted(clash)
        ]
        self.facts = [f for f in self.facts if f.source_episode not in clash]
        if not self.facts:
            return [], [], {}
        counts = Counter(f.shape for f in self.facts)
        best = max(counts, key=lambda k: counts[k])  # Counter keeps first-seen order on ties
        kept = [f for f in self.facts if f.shape == best]
        odd_facts = {f.source_episode: f for f in self.facts if f.shape != best}
        odd = [
            Quarantined(
                f.source_episode,
                "streams",
                f"action {f.shape[0]}-D ({f.shape[3]}), state {f.shape[1]}-D, cameras {list(f.shape[2])} "
                f"differ from the dataset's {best[0]}-D ({best[3]}), {best[1]}-D, {list(best[2])}",
            )
            for f in odd_facts.values()
        ]
        stats = self.merged[best]
        self.sketch = stats["action"]
        streams = {
            "action": stats["action"].to_json(kept[0].action_names),
            "state": stats["state"].to_json(kept[0].state_names),
        }
        return kept, odd, streams
