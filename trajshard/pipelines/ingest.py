"""The ingest job on Ray: plan, pass 1 (statistics), fit the tokenizer, pass 2 (shards), commit.

The only module that knows Ray. Without an address it starts an embedded local Ray; with
``--address auto``, ``ray://...`` or ``RAY_ADDRESS`` it joins a cluster. Tasks run the functions of
``pipelines/passes.py``; at most ``workers`` are in flight, and results are merged in episode
order, so the output does not depend on how many workers ran or in what order they finished.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import ray

from trajshard.config import JobConfig, parse_size
from trajshard.pipelines import commit, handoff
from trajshard.pipelines.checkpoint import JobState
from trajshard.pipelines.merge import Pass1Merger
from trajshard.pipelines.passes import (
    EpisodeFacts,
    GroupResult,
    Quarantined,
    part_names,
    pass1_batch,
    pass2_group,
    sample_chunks,
    settle_spans,
)
from trajshard.pipelines.plan import Group, group_steps, plan_groups, span_length
from trajshard.pipelines.progress import Progress
from trajshard.pipelines.shards import ShardWriteError, clean_temporaries
from trajshard.sources import checked_plan, open_source
from trajshard.storage import Store, is_remote, local_path, redact, resolve
from trajshard.tokenizers import fit
from trajshard.tokenizers.vocab import VocabMap

log = logging.getLogger("trajshard.ingest")
PASS1_BATCH = 32  # most episodes per pass-1 task (low-dimensional reads: ~5 ms an episode)
TASK_RETRIES = 3  # Ray re-runs a task lost with its worker or node (and pass 2 on a ShardWriteError)


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


@ray.remote(num_cpus=1, max_retries=TASK_RETRIES)
def _pass1_task(
    source: str, fmt: str, ids: list[str], cfg: JobConfig, handing: str | None
) -> list[list[EpisodeFacts] | Quarantined]:
    return pass1_batch(source, fmt, ids, cfg, handing)


@ray.remote(num_cpus=1, max_retries=TASK_RETRIES, retry_exceptions=[ShardWriteError])
def _pass2_task(
    source: str,
    fmt: str,
    group: Group,
    cfg: JobConfig,
    tok: dict,
    shard_dir: str,
    vocab: dict | None,
    handed: str | None,
) -> GroupResult:
    return pass2_group(source, fmt, group, cfg, tok, shard_dir, vocab, handed)


def run_ingest(
    source_path: str, out: str, cfg: JobConfig, progress: bool | None = None, resume: bool = False
) -> IngestReport:
    """Ingest a source into OUT (a path or an object-store URI). With ``resume``, an interrupted job in
    OUT goes on from its finished groups (see pipelines/checkpoint.py); the output is byte-identical
    to an uninterrupted run."""
    started = time.monotonic()
    phases: dict[str, float] = {}
    mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = now - mark
        mark = now

    source = open_source(source_path, cfg.format, cfg.source_fps or cfg.fps, cfg.mcap)
    src, fmt = str(source.root), source.format
    store = Store(out)
    state = JobState(store)
    if store.exists("meta/info.json"):
        if resume:
            state.clear()
            return _finished_report(store, time.monotonic() - started)
        raise IngestError(
            f"{redact(out)} already holds a dataset (meta/info.json); remove it or choose another OUT"
        )
    if _inside(store, src):
        raise IngestError(f"OUT {redact(out)} is inside the source {redact(src)}; choose a place outside it")
    out = store.location if store.remote else str(store.local())  # tasks may run in another directory
    if state.exists() and not resume:
        raise IngestError(
            f"{redact(out)} holds an unfinished job (.trajshard/plan.json): add --resume to finish it, "
            "or remove OUT to start over"
        )
    store.makedirs("shards")

    ids, rejected = checked_plan(source)
    n_input = len(ids) + len(rejected)
    quarantined = [Quarantined(name, f, reason) for name, f, reason in rejected]
    show = sys.stderr.isatty() if progress is None else progress
    lap("plan")
    owns_ray = _init_ray(cfg)
    try:
        handed = handoff.prepare(store, src)  # pass 1's aligned episodes, for pass 2 (None: not used)
        workers = cfg.workers or max(1, int(ray.available_resources().get("CPU", 1) / cfg.task_cpus))
        opts = _task_options(cfg)
        # about four tasks per worker, so the pass balances, of up to PASS1_BATCH episodes, so task
        # overhead stays small; results merge in episode order, so the batching never shows in the output
        size = max(1, min(PASS1_BATCH, -(-len(ids) // (4 * workers))))
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        pass1 = Pass1Merger()
        bar = Progress("pass 1: statistics", len(ids), show)

        def pass1_result(i: int, result: list) -> None:
            pass1.add(i, result)
            bar.update(len(result), 0, sum(isinstance(r, Quarantined) for r in result))

        _run_bounded(
            [lambda b=b: _pass1_task.options(**opts).remote(src, fmt, b, cfg, handed) for b in batches],
            workers,
            pass1_result,
            "pass 1",
        )
        bar.close()
        quarantined += pass1.quarantined
        facts, odd, stats_streams = pass1.finish()
        quarantined += odd
        lap("pass1")
        if not facts:
            raise IngestError(
                f"no episode of {n_input} could be read; first reasons: {[q.reason for q in quarantined[:3]]}"
            )
        check_quarantine(cfg, quarantined, n_input, "after pass 1")
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
            chunks=sample_chunks(src, fmt, facts, cfg, handed) if cfg.tokenizer == "fast" else None,
        )
        tok_json = tokenizer.to_json()
        vocab_json = None
        if cfg.vocab:
            vocab = VocabMap.build(cfg.vocab, tokenizer.token_range)
            if cfg.vocab_file:
                vocab.check_against(cfg.vocab_file)
            vocab_json = vocab.to_json()
        steps_of: dict[str, int] = {}
        cuts_of: dict[str, list[int]] = {}  # over a source episode's parts in order: each part's start too
        for f in facts:
            at = steps_of.get(f.source_episode, 0)
            cuts_of.setdefault(f.source_episode, []).extend(([at] if at else []) + [at + c for c in f.cuts])
            steps_of[f.source_episode] = at + f.steps
            f.cuts = ()  # only the plan needs them
        total = sum(steps_of.values())
        task_steps = cfg.task_steps or group_steps(cfg, len(facts[0].cameras), total)
        if is_remote(src):
            cuts_of = {}  # a span task stages its whole episode: spans would download it again each
        groups = plan_groups(list(steps_of.items()), cfg, task_steps, cuts_of, span_length(cfg, task_steps))
        del cuts_of
        for split in sorted(set(cfg.splits) - {g.split for g in groups}):
            log.warning(
                "split %r gets no episodes (val_fraction %s, %d episodes)",
                split,
                cfg.val_fraction,
                len(steps_of),
            )
        try:
            done = state.start(state.plan_document(cfg.output_dict(), tok_json, vocab_json, groups), resume)
        except ValueError as exc:
            raise IngestError(str(exc)) from exc
        clean_temporaries(store, keep=part_names(done.values()))
        lap("fit")

        # longest groups first, so the last tasks to start are short and the workers finish together
        # (the output does not depend on the order: parts are named by group index)
        todo = sorted((g for g in groups if g.index not in done), key=lambda g: (-g.steps(steps_of), g.index))
        results: dict[int, GroupResult] = dict(done)

        def finished(g: Group) -> int:  # episodes a group finishes: a span, its episode's last one
            return len(g.episodes) if g.span is None else int(g.span[1] == steps_of[g.episodes[0]])

        bar = Progress("pass 2: shards", len(steps_of), show, done=sum(finished(groups[i]) for i in done))

        def pass2_result(i: int, result: GroupResult) -> None:
            group = todo[i]
            state.record(group, result)  # now a resumed job keeps this group
            results[group.index] = result
            bar.update(finished(group), result.frames_written, len(result.quarantined))

        _run_bounded(
            [
                lambda g=g: _pass2_task.options(**opts).remote(
                    src, fmt, g, cfg, tok_json, out, vocab_json, handed
                )
                for g in todo
            ],
            _queue_depth(workers, cfg),
            pass2_result,
            "pass 2",
        )
        bar.close()
        group_results = settle_spans(groups, [results[g.index] for g in groups])
        check_quarantine(
            cfg, quarantined + [q for r in group_results for q in r.quarantined], n_input, "after pass 2"
        )
        lap("pass2")
    finally:
        handoff.remove(store)
        if owns_ray:
            ray.shutdown()
    clean_temporaries(store, keep=part_names(group_results))
    report = commit.commit(
        store,
        src,
        fmt,
        cfg,
        facts,
        quarantined,
        list(zip(groups, group_results, strict=True)),
        stats_streams,
        tok_json,
        vocab_json,
        n_input=n_input,
        seconds=time.monotonic() - started,
        report_type=IngestReport,
        before_promotion=state.before_promotion,
    )
    state.clear()
    lap("commit")
    report.phases = phases
    return report


def check_quarantine(cfg: JobConfig, quarantined: list[Quarantined], n_input: int, when: str) -> None:
    """Abort (IngestError with the most common reasons) when more than ``max_quarantine_fraction`` of
    the input episodes are quarantined."""
    bad = len({q.episode for q in quarantined})
    if not n_input or bad / n_input <= cfg.max_quarantine_fraction:
        return
    from trajshard.reports.summary import reason_kind

    common = Counter(reason_kind(q.file, q.reason) for q in quarantined).most_common(5)
    lines = "".join(f"\n  {n:>6} x {reason}" for reason, n in common)
    raise IngestError(
        f"{when}: {bad} of {n_input} episodes ({100 * bad / n_input:.1f}%) are quarantined, more than "
        f"max_quarantine_fraction {cfg.max_quarantine_fraction}; nothing was committed. Most common reasons:"
        f"{lines}"
    )


def _inside(store: Store, src: str) -> bool:
    """Whether OUT lies in the source (its shards would be read as episodes)."""
    if store.remote != is_remote(src):
        return False
    if store.remote:
        return (store.root + "/").startswith(resolve(src)[1] + "/")
    return store.local().is_relative_to(local_path(src))


def _finished_report(store: Store, seconds: float) -> IngestReport:
    info = json.loads(store.read_bytes("meta/info.json"))
    c = info["counts"]
    return IngestReport(
        redact(store.location),
        c["episodes_input"],
        c["episodes_written"],
        c["episodes_quarantined"],
        c["samples"],
        c["shards"],
        0,
        seconds,
    )


def _queue_depth(workers: int, cfg: JobConfig) -> int:
    """Pass-2 tasks to keep submitted: one more per worker, queued in Ray behind the running one so no
    worker waits for the driver's round trip between tasks, but only when Ray itself cannot run more
    than ``workers`` at once (its CPUs hold no more tasks of ``task_cpus``); else ``workers``, so
    ``--workers`` still caps the tasks that run (a cluster, a Ray already running)."""
    capacity = int(ray.cluster_resources().get("CPU", 0) / cfg.task_cpus + 1e-9)
    return 2 * workers if capacity <= workers else workers


def _task_options(cfg: JobConfig) -> dict:
    opts: dict = {"num_cpus": cfg.task_cpus}
    if cfg.task_memory:
        opts["memory"] = parse_size(cfg.task_memory)
    return opts


def _init_ray(cfg: JobConfig) -> bool:
    """Join or start Ray; True when this call started it (and so must stop it)."""
    if ray.is_initialized():
        return False
    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, "log_to_driver": True}
    if address is None:
        # "local": a new embedded Ray, never a cluster that happens to run on this machine
        ray.init(address="local", num_cpus=cfg.workers or os.cpu_count(), **kwargs)
    else:
        ray.init(address=address, **kwargs)
    return True


def _run_bounded(
    submits: list[Callable[[], ray.ObjectRef]],
    limit: int,
    consume: Callable[[int, object], None],
    label: str,
) -> None:
    """Run tasks with at most ``limit`` in flight; hand each result to ``consume(index, result)`` as
    it arrives. Tasks return small summaries (no decoded frames), so what waits in the object store
    stays bounded by ``limit``. A task that still fails after Ray's retries ends the job."""
    pending: dict[ray.ObjectRef, int] = {}
    nxt = 0
    try:
        while nxt < len(submits) or pending:
            while nxt < len(submits) and len(pending) < limit:
                pending[submits[nxt]()] = nxt
                nxt += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                consume(pending.pop(ref), ray.get(ref))
    except ray.exceptions.RayError as exc:
        for ref in pending:
            ray.cancel(ref)
        raise IngestError(
            f"{label}: a task failed after {TASK_RETRIES} retries: {str(exc).strip().splitlines()[-1]}. "
            "Finished groups are recorded: run again with --resume to go on"
        ) from exc
