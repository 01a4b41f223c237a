"""The ingest job as plain functions, without Ray.

    plan -> map pass 1 -> summarize -> fit -> plan pass 2 -> map pass 2 -> settle -> commit

``run_job`` is that list. The tasks run through an :class:`Executor`: ``pipelines/ingest.py`` maps
them over Ray; :class:`SerialExecutor` runs them one after another in this process (``--workers 0``),
for debugging and for tests of the driver's logic. Results are merged in unit order, so the output
does not depend on the executor, the number of workers or the order tasks finish.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Protocol

from trajshard.config import JobConfig
from trajshard.pipelines import handoff
from trajshard.pipelines.checkpoint import JobState, OutLock
from trajshard.pipelines.commit import Outcome, commit
from trajshard.pipelines.embodiment import embodiment_problems
from trajshard.pipelines.facts import GroupResult, IngestError, IngestReport, part_names
from trajshard.pipelines.filters import select_ids
from trajshard.pipelines.isolate import Mapper, isolate_pass1, rewrite_pass2
from trajshard.pipelines.merge import Pass1Merger, Pass1Summary
from trajshard.pipelines.plan import Group, group_steps, plan_groups, shard_note, span_length
from trajshard.pipelines.progress import Progress
from trajshard.pipelines.shards import clean_temporaries
from trajshard.pipelines.tasks import Lost, TaskContext, pass1_batch, pass2_group, sample_chunks
from trajshard.reports.summary import reason_kind
from trajshard.schemas.problems import Filtered, Problem
from trajshard.sources import SourceSpec, checked_plan
from trajshard.storage import Store, is_remote, local_path, redact, resolve
from trajshard.tokenizers import fit_config, fitted_document
from trajshard.tokenizers.vocab import VocabMap

log = logging.getLogger("trajshard.ingest")
PASS1_BATCH = 32  # most episodes per pass-1 task (low-dimensional reads: a few ms an episode)


class Executor(Mapper, Protocol):
    """Runs tasks ``fn(context, unit)`` (see ``isolate.Mapper``) in a Ray or in this process.
    ``where``: where the tasks run, for the job's first line."""

    workers: int
    where: str

    def running(self) -> AbstractContextManager: ...


class SerialExecutor:
    """Every task in this process, one after another, in order."""

    workers = 1
    where = "serially in this process (--workers 0, no Ray)"

    def running(self) -> AbstractContextManager:
        return nullcontext()

    def map(
        self,
        fn: Callable,
        context: TaskContext,
        units: list,
        on_result: Callable,
        ahead: bool = False,
        fresh: bool = False,
    ) -> None:
        for i, unit in enumerate(units):  # no task is lost here: a MemoryError is the episode's Problem
            on_result(i, fn(context, unit))


@dataclass
class Pass2Plan:
    groups: list[Group]
    steps_of: dict[str, int]  # steps of each source episode, over its parts
    done: dict[int, GroupResult] = field(default_factory=dict)  # finished by an interrupted run
    task_steps: int = 0  # steps a group holds (the config's, or automatic): for the shard note

    def finishes(self, g: Group) -> int:
        """Episodes a group finishes: a span, its episode's last one."""
        return len(g.episodes) if g.span is None else int(g.span[1] == self.steps_of[g.episodes[0]])


def run_job(
    source_path: str,
    out: str,
    cfg: JobConfig,
    executor: Executor,
    progress: bool | None = None,
    resume: bool = False,
) -> IngestReport:
    """Ingest a source into OUT (a path or an object-store URI). With ``resume``, an interrupted job in
    OUT goes on from its finished groups (see pipelines/checkpoint.py); the output is byte-identical
    to an uninterrupted run."""
    laps = Laps()
    spec, source = SourceSpec.of(source_path, cfg.source, cfg.align.fps)
    store, state = Store(out), JobState(Store(out))
    store.probe()  # an object store that does not answer fails here, in one line (StorageError)
    with OutLock(store):
        ids, rejected = checked_plan(source)
        if not ids and not rejected:
            raise IngestError(
                f"{redact(spec.path)} holds no episode of a {spec.format} source; nothing was written"
            )
        identity = job_identity(spec, ids, rejected, cfg)
        if check_out(store, state, identity, resume):
            state.clear()
            return finished_report(store, laps.total())
        n_input = len(ids) + len(rejected)
        ids, left_out = select_ids(ids, cfg.filter)
        log.info("%s", start_line(spec, store, n_input, len(rejected), len(left_out), executor.where))
        show = sys.stderr.isatty() if progress is None else progress
        laps.lap("plan")
        with executor.running():
            ctx = TaskContext(spec, cfg, store.location if store.remote else str(store.local()))
            ctx = replace(ctx, handoff=handoff.prepare(store, spec.path))
            try:
                pass1 = summarize(run_pass1(executor, ctx, ids, show), rejected, left_out, n_input)
                check_quarantine(cfg, pass1.quarantined, n_input, "after pass 1")
                laps.lap("pass1")
                ctx = fit(ctx, pass1)
                check_images(cfg, pass1, source_notes(source) + pass1.notes)
                plan = plan_pass2(ctx, pass1, state, resume)
                state.record_identity(identity)  # beside the plan: a resume compares it before pass 1
                laps.lap("fit")
                results = run_pass2(executor, ctx, plan, state, show)
                groups = settle_spans(plan.groups, results)
                outcome = Outcome(
                    n_input, pass1, groups, identity["source_fingerprint"], source_notes(source) + pass1.notes
                )
                check_quarantine(cfg, outcome.quarantined, outcome.n_input, "after pass 2")
                laps.lap("pass2")
            finally:
                handoff.remove(store)
        clean_temporaries(store, keep=part_names(r for _, r in outcome.groups))
        report = commit(store, ctx, outcome, state.before_promotion)
        state.clear()
    laps.lap("commit")
    note = job_shard_note(cfg, plan, outcome, report.shards)
    return replace(report, seconds=laps.total(), phases=laps.phases, shard_note=note)


def job_shard_note(cfg: JobConfig, plan: Pass2Plan, outcome: Outcome, shards: int) -> str:
    """plan.shard_note for this job: its tasks, the bytes it wrote and the steps of its episodes."""
    nbytes = sum(p.bytes for _, r in outcome.groups for p in r.parts)
    total = sum(plan.steps_of.values())
    return shard_note(cfg.output, plan.task_steps, plan.groups, shards, nbytes, total)


def start_line(spec: SourceSpec, store: Store, n_input: int, rejected: int, left_out: int, where: str) -> str:
    """The job's first line, printed before Ray starts: what it read, what it found, where it runs."""
    found = f"{n_input} episodes found"
    if rejected or left_out:
        found += f" ({rejected} rejected by their id, {left_out} left out by the filters)"
    return f"ingest {redact(spec.path)} ({spec.format}) -> {redact(store.location)}: {found}; running {where}"


def source_notes(source) -> list[str]:
    """What the source's reader noticed and left out (a declared camera without video files, ...)."""
    return [str(n) for n in getattr(source, "notes", [])]


def job_identity(spec: SourceSpec, ids: list[str], rejected: list[Problem], cfg: JobConfig) -> dict:
    """What a job is: its source (path, and a fingerprint of the listing: every episode id, sorted)
    and the config as info.json records it."""
    listing = "\n".join(sorted(ids + [p.where for p in rejected])).encode()
    return {
        "source": redact(spec.path),
        "source_fingerprint": "sha256:" + hashlib.sha256(listing).hexdigest(),
        "config": cfg.output_dict(),
    }


def check_out(store: Store, state: JobState, identity: dict, resume: bool) -> bool:
    """Check OUT before any work: True when it holds the finished dataset of this very job and
    ``resume`` asks to finish it; IngestError when it cannot take this job (another job's dataset or
    unfinished job, or the source); else make ``shards/``."""
    out = redact(store.location)
    if store.exists("meta/info.json"):
        if not resume:
            raise IngestError(
                f"{out} already holds a dataset (meta/info.json); remove it or choose another OUT"
            )
        info = json.loads(store.read_bytes("meta/info.json"))
        recorded = {"source_fingerprint": info["source"].get("fingerprint"), "config": info["config"]}
        _refuse_other_job(out, recorded, identity, "finished dataset")
        return True
    if _inside(store, identity["source"]):
        raise IngestError(f"OUT {out} is inside the source {identity['source']}; choose a place outside it")
    if state.exists():
        if not resume:
            raise IngestError(
                f"{out} holds an unfinished job (.trajshard/plan.json): add --resume to finish it, "
                "or remove OUT to start over"
            )
        recorded = state.job_identity()
        if recorded is not None:
            _refuse_other_job(out, recorded, identity, "unfinished job")
    store.makedirs("shards")
    return False


def _refuse_other_job(out: str, recorded: dict, identity: dict, what: str) -> None:
    """IngestError naming what differs between the job in OUT and this one (the source, the config's keys)."""
    differ = []
    if "source" in recorded and recorded["source"] != identity["source"]:
        differ.append(f"source ({recorded['source']} there, {identity['source']} now)")
    if recorded.get("source_fingerprint") not in (None, identity["source_fingerprint"]):
        differ.append("the source's episodes (another listing)")
    old, new = recorded.get("config", {}), identity["config"]
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    differ += [f"{k} ({old.get(k)!r} there, {new.get(k)!r} now)" for k in keys]
    if differ:
        raise IngestError(
            f"cannot resume: the {what} in {out} was made from another job; differs: {'; '.join(differ)}. "
            "Run with the same source and config, or remove OUT to start over"
        )


def run_pass1(executor: Executor, ctx: TaskContext, ids: list[str], show: bool) -> Pass1Merger:
    """Pass 1 in batches: about four tasks per worker, so the pass balances, of up to ``PASS1_BATCH``
    episodes, so task overhead stays small; results merge in episode order."""
    size = max(1, min(PASS1_BATCH, -(-len(ids) // (4 * executor.workers))))
    batches = [ids[i : i + size] for i in range(0, len(ids), size)]
    merger = Pass1Merger(ids)
    bar = Progress("pass 1: statistics", len(ids), show)

    lost: list[int] = []

    def arrived(i: int, result: list | Lost) -> None:
        if isinstance(result, Lost):
            lost.append(i)  # its episodes run alone below
            return
        merger.add(i, result)
        bad = sum(isinstance(r, Problem) for r in result)
        bar.update(
            len(result), 0, bad, f"task {i + 1}/{len(batches)}: {_span_text(batches[i])}, {bad} quarantined"
        )

    executor.map(pass1_batch, ctx, batches, arrived)
    for i, result in isolate_pass1(executor, ctx, {i: batches[i] for i in sorted(lost)}).items():
        arrived(i, result)
    bar.close()
    return merger


def summarize(
    merger: Pass1Merger, rejected: list[Problem], left_out: list[Filtered], n_input: int
) -> Pass1Summary:
    """Pass 1's summary, with the episodes the plan rejected first among its quarantined and those the
    id filters left out first among its filtered; IngestError when no episode is left."""
    summary = merger.finish()
    summary = replace(
        summary, quarantined=rejected + summary.quarantined, filtered=left_out + summary.filtered
    )
    if not summary.facts:
        if summary.filtered and not summary.quarantined:
            reasons = [q.message for q in summary.filtered[:3]]
            raise IngestError(f"the filters leave none of the {n_input} episodes; first reasons: {reasons}")
        reasons = [q.message for q in summary.quarantined[:3]]
        raise IngestError(f"no episode of {n_input} could be read; first reasons: {reasons}")
    return summary


def check_images(cfg: JobConfig, pass1: Pass1Summary, notes: list[str]) -> None:
    """IngestError, before pass 2 writes anything, when the output would have no camera at all and
    the user did not say ``--no-images`` (state/action-only data is legitimate, but never silent)."""
    if cfg.run.no_images or not pass1.facts or pass1.facts[0].cameras:
        return
    why = "; ".join(n for n in notes if "camera" in n)
    raise IngestError(
        "the output would have no images: no camera is left in the kept episodes"
        + (f" ({why})" if why else "")
        + ". Pass --no-images (no_images = true) if this state/action-only dataset is what you want"
    )


def fit(ctx: TaskContext, pass1: Pass1Summary) -> TaskContext:
    """The context of pass 2: the tokenizer fitted on pass 1's statistics, and the vocabulary map. An
    embodiment layout that does not fit the data fails here, before pass 2 (commit checks it again)."""
    first = pass1.facts[0] if pass1.facts else None
    problems = (
        embodiment_problems(ctx.cfg.embodiment, first.shape[0], first.shape[1], first.cameras)
        if first
        else []
    )
    if problems:
        raise IngestError("; ".join(problems))
    tok = ctx.cfg.tokenizer
    chunks = None
    if tok.chunked:
        chunks = sample_chunks(ctx, list(dict.fromkeys(f.source_episode for f in pass1.facts)))
    tokenizer = fit_config(tok, pass1.streams["action"], pass1.sketch, chunks)
    vocab_json = None
    if tok.vocab:
        vocab = VocabMap.build(tok.vocab, tokenizer.token_range)
        if tok.vocab_file:
            vocab.check_against(tok.vocab_file)
        vocab_json = vocab.to_json()
    return replace(
        ctx, tokenizer=fitted_document(tokenizer, pass1.sketch, pass1.streams["action"]), vocab=vocab_json
    )


def plan_pass2(ctx: TaskContext, pass1: Pass1Summary, state: JobState, resume: bool) -> Pass2Plan:
    """Groups of episodes (or spans of long ones) for pass 2, recorded as the job's plan; with
    ``resume``, the groups an interrupted run of the same plan finished."""
    cfg = ctx.cfg
    steps_of: dict[str, int] = {}
    cuts_of: dict[str, list[int]] = {}  # over a source episode's parts in order: each part's start too
    for f in pass1.facts:
        at = steps_of.get(f.source_episode, 0)
        cuts_of.setdefault(f.source_episode, []).extend(([at] if at else []) + [at + c for c in f.cuts])
        steps_of[f.source_episode] = at + f.steps
    sample_bytes = len(pass1.facts[0].cameras) * cfg.image.jpeg_estimate + 4096 + 2048 * cfg.tokenizer.horizon
    task_steps = cfg.output.task_steps or group_steps(cfg.output, sample_bytes, sum(steps_of.values()))
    if is_remote(ctx.source.path):
        cuts_of = {}  # a span task stages its whole episode: spans would download it again each
    span = span_length(cfg.output, task_steps)
    groups = plan_groups(list(steps_of.items()), cfg.output, task_steps, cuts_of, span)
    for split in sorted(set(cfg.output.splits) - {g.split for g in groups}):
        log.warning(
            "split %r gets no episodes (val_fraction %s, %d episodes)",
            split,
            cfg.output.val_fraction,
            len(steps_of),
        )
    try:
        done = state.start(state.plan_document(cfg.output_dict(), ctx.tokenizer, ctx.vocab, groups), resume)
    except ValueError as exc:
        raise IngestError(str(exc)) from exc
    clean_temporaries(state.store, keep=part_names(done.values()))
    return Pass2Plan(groups, steps_of, done, task_steps)


def run_pass2(
    executor: Executor, ctx: TaskContext, plan: Pass2Plan, state: JobState, show: bool
) -> list[GroupResult]:
    """Every group not finished yet, longest first, so the last tasks to start are short and the
    workers finish together (parts are named by group index, so the order never shows); each result
    recorded as it arrives, so a resumed job keeps it. The results in group order."""
    todo = sorted(
        (g for g in plan.groups if g.index not in plan.done), key=lambda g: (-g.steps(plan.steps_of), g.index)
    )
    results = dict(plan.done)
    done = sum(plan.finishes(plan.groups[i]) for i in plan.done)
    bar = Progress("pass 2: shards", len(plan.steps_of), show, done=done)

    lost: list[Group] = []  # groups whose task died: isolated, then written again

    def arrived(i: int, result: GroupResult | Lost) -> None:
        if isinstance(result, Lost):
            lost.append(todo[i])  # isolated below
            return
        state.record(todo[i], result)
        results[todo[i].index] = result
        bar.update(
            plan.finishes(todo[i]),
            result.frames_written,
            len(result.quarantined),
            _group_text(todo[i], result),
        )

    executor.map(pass2_group, ctx, todo, arrived, ahead=True)
    rewrite_pass2(executor, ctx, lost, lambda g, result: arrived(todo.index(g), result))
    bar.close()
    return [results[g.index] for g in plan.groups]


def _span_text(episodes: list[str] | tuple[str, ...]) -> str:
    return (
        f"episode {episodes[0]}"
        if len(episodes) == 1
        else f"{len(episodes)} episodes {episodes[0]}..{episodes[-1]}"
    )


def _group_text(g: Group, r: GroupResult) -> str:
    """A finished pass-2 group, for its -v line."""
    what = _span_text(g.episodes) + (f" ticks {g.span[0]}-{g.span[1]}" if g.span else "")
    samples, parts = sum(p.samples for p in r.parts), len(r.parts)
    return (
        f"group {g.index} ({g.split}): {what}: {samples} samples in {parts} part{'' if parts == 1 else 's'}, "
        f"{r.frames_written} frames, {len(r.quarantined)} quarantined"
    )


def settle_spans(groups: list[Group], results: list[GroupResult]) -> list[tuple[Group, GroupResult]]:
    """Groups with their results. An episode cut into spans is written whole or not at all: when a
    span of it was quarantined, its other spans' parts are dropped (and left out of the counts) and
    one quarantine record stays, the first span's."""
    bad = {q.where for g, r in zip(groups, results, strict=True) if g.span is not None for q in r.quarantined}
    seen: set[str] = set()
    settled = []
    for g, r in zip(groups, results, strict=True):
        if g.span is not None and g.episodes[0] in bad:
            first = [q for q in r.quarantined if q.where not in seen]
            seen.update(q.where for q in first)
            r = GroupResult([], first, 0, None)
        settled.append((g, r))
    return settled


def check_quarantine(cfg: JobConfig, quarantined: list[Problem], n_input: int, when: str) -> None:
    """Abort (IngestError with the most common reasons) when more than ``max_quarantine_fraction`` of
    the input episodes are quarantined."""
    limit = cfg.run.max_quarantine_fraction
    bad = len({q.where for q in quarantined})
    if not n_input or bad / n_input <= limit:
        return
    common = Counter(reason_kind(q.field, q.message) for q in quarantined).most_common(5)
    lines = "".join(f"\n  {n:>6} x {reason}" for reason, n in common)
    raise IngestError(
        f"{when}: {bad} of {n_input} episodes ({100 * bad / n_input:.1f}%) are quarantined, more than "
        f"max_quarantine_fraction {limit}; nothing was committed. Most common reasons:{lines}"
    )


def finished_report(store: Store, seconds: float) -> IngestReport:
    """The report of the dataset OUT already holds."""
    counts = json.loads(store.read_bytes("meta/info.json"))["counts"]
    report = IngestReport.of_counts(redact(store.location), counts, 0, seconds)
    report.already_complete = True
    return report


class Laps:
    """Wall seconds of the job's phases."""

    def __init__(self) -> None:
        self.started = self.mark = time.monotonic()
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name], self.mark = now - self.mark, now

    def total(self) -> float:
        return time.monotonic() - self.started


def _inside(store: Store, src: str) -> bool:
    """Whether OUT lies in the source (its shards would be read as episodes)."""
    if store.remote != is_remote(src):
        return False
    if store.remote:
        return (store.root + "/").startswith(resolve(src)[1] + "/")
    return store.local().is_relative_to(local_path(src))
