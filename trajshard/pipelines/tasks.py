"""The work of one task, without Ray: pass 1 over a batch of episodes, pass 2 over one group.

Every task takes the job's :class:`TaskContext` and one unit of work. A bad episode never raises out
of here: it comes back as a Problem naming the file and the reason, so the job goes on. Every episode
runs under the time limit (``Watchdog``) with the per-episode memory budget set for the readers.

A task whose worker process dies (out of memory, the watchdog, a crash) is isolated by the driver:
its episodes run again one by one (``Alone``), each alone in a fresh worker, and only those whose run
dies or overruns again are quarantined; pass 2 then writes the group ``Without`` them.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from trajshard.config import JobConfig
from trajshard.pipelines.episode import (
    EpisodeReader,
    EpisodeWork,
    SampleTools,
    prepare_stages,
    run_stages,
    sample_stages,
    source_frames,
)
from trajshard.pipelines.facts import EpisodeFacts, GroupResult
from trajshard.pipelines.handoff import HandoffReader
from trajshard.pipelines.plan import Group, cut_ticks, permutation, span_length
from trajshard.pipelines.shards import PartWriter, SampleSpill, ShardWriteError
from trajshard.pipelines.stats import StreamStats
from trajshard.schemas.attempts import Attempts, Watchdog, guarded, retried, timeout_message
from trajshard.schemas.problems import Problem
from trajshard.sources import SourceSpec, entry_frames
from trajshard.sources.tables import set_episode_budget
from trajshard.storage import Store
from trajshard.tokenizers import from_json
from trajshard.tokenizers.chunks import action_chunks
from trajshard.tokenizers.report import RoundTrip
from trajshard.tokenizers.vocab import VocabMap


@dataclass(frozen=True)
class TaskContext:
    """Everything a task shares with the others: the source described once, the config, OUT, this
    run's handoff directory (None: off), and in pass 2 the fitted tokenizer and vocabulary."""

    source: SourceSpec
    cfg: JobConfig
    out: str
    handoff: str | None = None
    tokenizer: dict | None = None
    vocab: dict | None = None

    def reader(self, writes: bool = False) -> EpisodeReader | HandoffReader:
        """The episode reader of a task; with a handoff, pass 1 (``writes``) fills it, pass 2 reads it.
        Sets this process's per-episode memory budget, which the readers check declared sizes against."""
        set_episode_budget(self.cfg.run.episode_memory())
        reader = EpisodeReader(self.source.open(), prepare_stages(self.cfg))
        return reader if self.handoff is None else HandoffReader(reader, self.handoff, writes)


def pass1_batch(ctx: TaskContext, episode_ids: list[str]) -> list[list[EpisodeFacts] | Problem]:
    """Pass 1 over a batch of episodes, the source opened once: each good episode's facts, or why it
    is quarantined. An unexpected exception is retried ``episode_retries`` times first."""
    reader = ctx.reader(writes=True)
    span_from = 2 * span_length(ctx.cfg.output)
    dog = Watchdog(ctx.cfg.run.episode_timeout)
    tick = 1.0 / ctx.cfg.align.fps

    def facts(eid: str) -> list[EpisodeFacts]:
        with dog.episode(eid):
            return episode_facts(eid, reader.read(eid), span_from, tick)

    out = []
    for eid in episode_ids:
        seen = len(getattr(reader.source, "notes", []))
        result = retried(eid, lambda eid=eid: facts(eid), ctx.cfg.run.episode_retries)
        new = tuple(str(n) for n in getattr(reader.source, "notes", [])[seen:])
        # the reader notes a quirk once per task: the driver hears it through the episode that showed it
        out.append(
            [replace(f, reader_notes=new) for f in result] if new and isinstance(result, list) else result
        )
    return out


def episode_facts(
    episode_id: str, work: EpisodeWork, span_from: int, tick: float = 0.0
) -> list[EpisodeFacts]:
    """The facts of each part; where spans may start only when the source episode is long enough to be
    cut (``span_from`` steps), so the driver holds them only for long episodes."""
    ep, parts = work.episode, work.parts
    early = ended_early(ep, parts[0].frames if parts else {}, tick)
    long = sum(al.steps for al in parts) >= span_from
    names = ep.streams["proprio"].names
    return [
        EpisodeFacts(
            episode=al.episode_id,
            source_episode=episode_id,
            steps=al.steps,
            start_time=float(al.times[0]),
            end_time=float(al.times[-1]),
            report=al.report,
            shape=(al.action.shape[1], al.state.shape[1], tuple(sorted(al.frames)), al.action_source),
            stats={"action": StreamStats.from_values(al.action), "state": StreamStats.from_values(al.state)},
            state_names=names,
            action_names=ep.streams["action"].names if "action" in ep.streams else names,
            cameras=tuple(sorted(al.frames)),
            embodiment=ep.embodiment,
            action_source=al.action_source,
            cuts=cut_ticks(al.frames, {c: entry_frames(ep.cameras[c]) for c in al.frames}, al.steps)
            if long
            else (),
            trimmed=work.trimmed,
            cameras_left_out=tuple(sorted(set(ep.cameras) - set(al.frames))),
            ended_early=early,
        )
        for al in parts
    ]


def ended_early(ep, cameras, tick: float) -> tuple[str, float] | None:
    """(the stream that ends first, seconds before the last one ends) when that is more than a tick: the
    clock covers only the span every stream covers, so the others' last samples are not written (a
    video with fewer frames than the table has rows). None otherwise, or with no tick given."""
    ends = {n: float(s.timestamps[-1]) for n, s in ep.streams.items() if len(s.timestamps)}
    ends |= {c: float(ep.cameras[c].timestamps[-1]) for c in cameras if len(ep.cameras[c].timestamps)}
    if not tick or len(ends) < 2:
        return None
    first = min(ends, key=lambda n: (ends[n], n))
    lost = max(ends.values()) - ends[first]
    return (first, round(lost, 6)) if lost > tick + 1e-9 else None


def sample_chunks(ctx: TaskContext, source_episodes: list[str]) -> np.ndarray:
    """Action chunks [N, H, D] of up to ``fast_fit_episodes`` source episodes, evenly spaced in id
    order (deterministic), to train the FAST tokenizer's BPE on. Reads low-dimensional streams only."""
    tok = ctx.cfg.tokenizer
    step = max(1, len(source_episodes) // tok.fast_fit_episodes)
    reader = ctx.reader()
    chunks = [
        action_chunks(al.action, tok.horizon)[0]
        for eid in source_episodes[::step][: tok.fast_fit_episodes]
        for al in reader.read(eid).parts
    ]
    return np.concatenate(chunks)


def pass2_group(ctx: TaskContext, group: Group | Without) -> GroupResult:
    """Write one group's episodes into tar parts ``<split>-g<index>-pNNNN``.

    In order (no shuffle window): an episode that fails while its frames are decoded is quarantined
    and the group is written again without it, so no part holds half an episode. Shuffled: every
    episode's samples go to a local spill file first (a failed episode's are dropped), then all are
    written in the group's seeded permutation, so each part mixes the group's episodes."""
    writer = Pass2Writer(ctx)
    group, killed = (group.group, group.killed) if isinstance(group, Without) else (group, ())
    if ctx.cfg.output.shuffle_window:
        return writer.shuffled(group, killed)
    return writer.in_order(group, killed)


def in_group_order(group: Group, quarantined: list[Problem]) -> list[Problem]:
    """Quarantine records in the order of the group's episodes (killed ones come first otherwise)."""
    return sorted(quarantined, key=lambda q: group.episodes.index(q.where))


class Pass2Writer:
    """One pass-2 task's reader, sample stages and output, opened once."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx, self.store = ctx, Store(ctx.out)
        self.reader = ctx.reader()
        vocab = ctx.vocab
        self.tools = SampleTools(
            from_json(ctx.tokenizer),
            VocabMap(vocab["spec"], vocab["ids"], vocab["token_lo"]) if vocab else None,
            source_frames(self.reader.source),
        )
        self.stages = sample_stages(ctx.cfg, self.tools)
        self.attempts = Attempts(ctx.cfg.run.episode_retries)
        self.dog = Watchdog(ctx.cfg.run.episode_timeout)

    def writer(self, group: Group) -> PartWriter:
        return PartWriter(self.store, group.split, group.index, self.ctx.cfg.output.shard_size_bytes)

    def in_order(self, group: Group, killed: tuple[Problem, ...] = ()) -> GroupResult:
        quarantined = list(killed)
        todo = [e for e in group.episodes if e not in {q.where for q in killed}]
        while True:
            writer = self.writer(group)
            try:
                failed, frames, roundtrip = self.write(
                    todo, lambda s, part, _, w=writer: w.write(s, part), group.span
                )
                if failed is None:
                    return GroupResult(writer.close(), in_group_order(group, quarantined), frames, roundtrip)
            except BaseException:
                writer.abort()  # nothing of a failed attempt stays in shards/
                raise
            writer.abort()
            if self.attempts.again(failed):
                continue  # the whole group again, the episode included
            quarantined.append(self.attempts.final(failed))
            todo.remove(failed.where)

    def shuffled(self, group: Group, killed: tuple[Problem, ...] = ()) -> GroupResult:
        spill = SampleSpill()
        writer = self.writer(group)
        try:
            quarantined, frames, roundtrip = list(killed), 0, None
            todo = [e for e in group.episodes if e not in {q.where for q in killed}]
            while todo:
                failed, n, rt = self.write(todo, spill.add)
                frames, roundtrip = frames + n, rt if roundtrip is None else roundtrip.merge(rt)
                if failed is None:
                    break
                spill.drop_source_episode(failed.where)
                at = todo.index(failed.where)
                if self.attempts.again(failed):
                    todo = todo[at:]  # this episode again
                    continue
                quarantined.append(self.attempts.final(failed))
                todo = todo[at + 1 :]
            for i in permutation(self.ctx.cfg.output, group, len(spill.index)):
                writer.write(*spill.read(i))
            return GroupResult(writer.close(), in_group_order(group, quarantined), frames, roundtrip)
        except BaseException:
            writer.abort()
            raise
        finally:
            spill.close()

    def write(self, todo: list[str], put, span: tuple[int, int] | None = None):
        """Samples of ``todo``'s episodes to ``put(sample, part id, source episode id)`` until one fails;
        return (the failure or None, frames, round trip). A failed episode's frames and round trip are
        not counted. With ``span`` (one episode), only its ticks ``[start, stop)`` over its parts."""
        roundtrip = RoundTrip.empty(self.tools.tokenizer.dims)
        frames = 0
        for eid in todo:
            done = guarded(eid, lambda eid=eid: self.episode(eid, put, span), passthrough=(ShardWriteError,))
            if isinstance(done, Problem):
                return done, frames, roundtrip
            frames, roundtrip = frames + done[0], roundtrip.merge(done[1])
        return None, frames, roundtrip

    def episode(self, eid: str, put, span: tuple[int, int] | None) -> tuple[int, RoundTrip]:
        """Run the sample stages on one episode and hand every sample to ``put``, within its time limit."""
        with self.dog.episode(eid):
            return self._episode(eid, put, span)

    def _episode(self, eid: str, put, span: tuple[int, int] | None) -> tuple[int, RoundTrip]:
        work = self.reader.read(eid)
        work = run_stages(self.stages, EpisodeWork(work.episode, work.parts, span))
        roundtrip = RoundTrip.empty(self.tools.tokenizer.dims)
        for piece in work.pieces:
            for sample in piece.samples:
                put(sample, piece.part.episode_id, eid)
            roundtrip = roundtrip.merge(piece.roundtrip)
        return work.frames, roundtrip


# ------------------------------------------------------------------------------ killed tasks


@dataclass(frozen=True)
class Lost:
    """A unit whose task died (its worker killed: out of memory, the watchdog, a crash) or, run
    alone, overran the time limit; ``cause`` in words."""

    cause: str


@dataclass(frozen=True)
class Without:
    """A pass-2 group written again without the episodes whose own runs were killed (``killed``:
    their quarantine records); the others keep their order and their bytes."""

    group: Group
    killed: tuple[Problem, ...] = field(default=())


@dataclass(frozen=True)
class Alone:
    """One episode's work ``fn(ctx, unit)`` run by :func:`run_alone` in a fresh worker."""

    fn: Callable
    unit: object
    episode: str


def run_alone(ctx: TaskContext, alone: Alone) -> object:
    """``alone.fn(ctx, alone.unit)`` on a thread of this (fresh) worker, waited for up to the episode
    time limit: its result, or ``Lost`` when it overran (the executor ends the worker after this task,
    the stuck thread with it). A worker killed meanwhile is the executor's ``Lost``."""
    box: list = []
    inner = replace(ctx, cfg=ctx.cfg.replace(episode_timeout=None))  # the limit is waited for here
    thread = threading.Thread(target=lambda: box.append(alone.fn(inner, alone.unit)), daemon=True)
    thread.start()
    thread.join(ctx.cfg.run.episode_timeout)
    if box:
        return box[0]
    if thread.is_alive():
        return Lost(f"{timeout_message(ctx.cfg.run.episode_timeout)}{_stuck_at(thread)}")
    return Lost("its run ended without a result (see the worker's log)")


def _stuck_at(thread: threading.Thread) -> str:
    """Where a thread is, in words: the innermost frame, and the file it reads when a frame holds one."""
    frame = sys._current_frames().get(thread.ident)
    if frame is None:
        return ""
    at = f" (still running at {frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}"
    while frame is not None:
        path = frame.f_locals.get("path")
        if isinstance(path, str | bytes) or hasattr(path, "__fspath__"):
            return f"{at}, reading {str(path).rsplit('/', 1)[-1]})"
        frame = frame.f_back
    return at + ")"


def pass2_probe(ctx: TaskContext, unit: tuple[Group, str]) -> Problem | None:
    """One episode of a group through pass 2's stages, its samples counted and dropped, nothing
    written: None when it runs through, else its Problem."""
    group, eid = unit
    writer = Pass2Writer(ctx)
    done = guarded(eid, lambda: writer.episode(eid, lambda *_: None, group.span))
    return done if isinstance(done, Problem) else None
