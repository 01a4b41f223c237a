"""The work of one Ray task, without Ray: pass 1 over one episode, pass 2 over one episode group.

A bad episode never raises out of here: it comes back as a :class:`Quarantined` with the file and
the reason, so the job goes on. ``pipelines/ingest.py`` only schedules these functions.
"""

from __future__ import annotations

import os
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import av
import numpy as np

from trajshard.config import JobConfig
from trajshard.pipelines import handoff
from trajshard.pipelines.actions import binarize_gripper
from trajshard.pipelines.align import AlignConfig, AlignedEpisode, SignalKinds, StreamReport, align
from trajshard.pipelines.frames import FrameError, tick_images
from trajshard.pipelines.plan import Group, cut_ticks, permutation, span_length
from trajshard.pipelines.samples import action_chunks, episode_samples
from trajshard.pipelines.shards import PartInfo, PartWriter, SampleSpill, ShardWriteError
from trajshard.pipelines.stats import StreamStats
from trajshard.schemas.episode import Episode, EpisodeError
from trajshard.sources import camera_frames, entry_frames, open_source
from trajshard.sources.video import VideoError
from trajshard.storage import Store
from trajshard.tokenizers import from_json
from trajshard.tokenizers.report import RoundTrip
from trajshard.tokenizers.vocab import VocabMap


@dataclass
class Quarantined:
    episode: str
    file: str
    reason: str
    retryable: bool = False  # an unexpected exception (may be transient), not a finding about the data

    def to_json(self) -> dict[str, str]:
        return {"episode": self.episode, "file": self.file, "reason": self.reason}


@dataclass
class EpisodeFacts:
    """What pass 1 learns about a good episode (no video decoded)."""

    episode: str  # the part's id: the source episode id, or <id>_partNN when gaps split it
    source_episode: str
    steps: int
    start_time: float
    end_time: float
    report: dict[str, StreamReport]
    shape: tuple  # (action dims, state dims, cameras): one dataset has one shape
    stats: dict[str, StreamStats] | None  # "action", "state"; dropped once merged on the driver
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[str, ...]
    embodiment: str
    action_source: str
    cuts: tuple[int, ...] = ()  # ticks where a pass-2 task may start this part (plan.cut_ticks)


@dataclass
class GroupResult:
    parts: list[PartInfo] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)
    frames_written: int = 0
    roundtrip: RoundTrip | None = None

    def to_state(self) -> dict[str, object]:
        """Everything commit needs, exactly, for a resumable job's group record."""
        return {
            "parts": [
                {
                    "name": p.name,
                    "samples": p.samples,
                    "bytes": p.bytes,
                    "sha256": p.sha256,
                    "episodes": p.episodes,
                }
                for p in self.parts
            ],
            "quarantined": [q.to_json() for q in self.quarantined],
            "frames_written": self.frames_written,
            "roundtrip": None if self.roundtrip is None else self.roundtrip.to_state(),
        }

    @classmethod
    def from_state(cls, d: dict) -> GroupResult:
        return cls(
            [
                PartInfo(p["name"], p["samples"], p["bytes"], p["sha256"], list(p["episodes"]))
                for p in d["parts"]
            ],
            [Quarantined(q["episode"], q["file"], q["reason"]) for q in d["quarantined"]],
            int(d["frames_written"]),
            None if d["roundtrip"] is None else RoundTrip.from_state(d["roundtrip"]),
        )


def part_names(results) -> set[str]:
    """The part file names the group results hold."""
    return {p.name for r in results for p in r.parts}


def align_config(cfg: JobConfig) -> AlignConfig:
    return AlignConfig(
        fps=cfg.fps,
        clock=cfg.clock,
        cameras=tuple(cfg.cameras),
        video_policy=cfg.video_policy,
        video_tolerance=cfg.video_tolerance,
        on_missing_frame=cfg.on_missing_frame,
        action_policy=cfg.action_policy,
        derive_action=cfg.derive_action,
        max_gap=cfg.max_gap,
        on_gap=cfg.on_gap,
        kinds=signal_kinds(cfg.signals),
    )


def signal_kinds(signals: dict) -> tuple[tuple[str, SignalKinds], ...]:
    """``{"proprio": {"angles": [..], "quaternions": [[..]], "discrete": [..]}}`` as SignalKinds."""
    return tuple(
        (
            stream,
            SignalKinds(
                angles=tuple(int(i) for i in spec.get("angles", ())),
                quaternions=tuple(tuple(int(i) for i in g) for g in spec.get("quaternions", ())),
                discrete=tuple(int(i) for i in spec.get("discrete", ())),
            ),
        )
        for stream, spec in sorted(signals.items())
    )


def load_aligned(
    source, episode_id: str, cfg: JobConfig, handed: str | None = None
) -> tuple[Episode, list[AlignedEpisode]]:
    """The episode and its aligned parts: from pass 1's handoff directory ``handed`` when it holds
    them (pipelines/handoff.py), else loaded from the source and aligned."""
    if handed is not None:
        found = handoff.read(handed, episode_id)
        if found is not None:
            return found
    ep = source.load(episode_id)
    parts = align(ep, align_config(cfg))
    if cfg.gripper:
        for al in parts:
            al.action = binarize_gripper(al.action, cfg.gripper, ep.episode_id)
    return ep, parts


def source_for(source_path: str, fmt: str, cfg: JobConfig):
    return open_source(source_path, fmt, cfg.source_fps or cfg.fps, cfg.mcap)


def pass1_batch(
    source_path: str, fmt: str, episode_ids: list[str], cfg: JobConfig, handing: str | None = None
) -> list:
    """Pass 1 over a batch of episodes, the source opened once; each good episode is also handed to
    pass 2 in the directory ``handing`` when given."""
    source = source_for(source_path, fmt, cfg)
    return [pass1_episode(source, eid, cfg, handing) for eid in episode_ids]


def pass1_episode(
    source, episode_id: str, cfg: JobConfig, handing: str | None = None
) -> list[EpisodeFacts] | Quarantined:
    """The facts of each aligned part of one episode, or why it is quarantined. A finding about the
    data (EpisodeError) quarantines at once; an unexpected exception is retried ``episode_retries``
    times first (it may be transient: a network read, a full temp disk)."""
    tries = 0
    while True:
        try:
            ep, parts = load_aligned(source, episode_id, cfg)
            facts = _facts(episode_id, ep, parts, 2 * span_length(cfg))
            if handing is not None:
                handoff.write(handing, episode_id, ep, parts)
            return facts
        except EpisodeError as exc:
            return Quarantined(episode_id, exc.where, exc.message)
        except Exception as exc:  # noqa: BLE001 - an unexpected failure still quarantines, with its cause
            tries += 1
            if tries > cfg.episode_retries:
                return Quarantined(episode_id, "", _unexpected(exc, tries))


def _facts(episode_id: str, ep: Episode, parts: list[AlignedEpisode], span_from: int) -> list[EpisodeFacts]:
    """The facts of each part; where spans may start only when the source episode is long enough to be
    cut (``span_from`` steps), so the driver holds them only for long episodes."""
    long = sum(al.steps for al in parts) >= span_from
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
            state_names=ep.streams["proprio"].names,
            action_names=ep.streams["action"].names
            if "action" in ep.streams
            else ep.streams["proprio"].names,
            cameras=tuple(sorted(al.frames)),
            embodiment=ep.embodiment,
            action_source=al.action_source,
            cuts=cut_ticks(al.frames, {c: entry_frames(ep.cameras[c]) for c in al.frames}, al.steps)
            if long
            else (),
        )
        for al in parts
    ]


def sample_chunks(
    source_path: str, fmt: str, facts: list[EpisodeFacts], cfg: JobConfig, handed: str | None = None
) -> np.ndarray:
    """Action chunks [N, H, D] of up to ``fast_fit_episodes`` source episodes, evenly spaced in id
    order (deterministic), to train the FAST tokenizer's BPE on. Reads low-dimensional streams only."""
    sources = list(dict.fromkeys(f.source_episode for f in facts))
    step = max(1, len(sources) // cfg.fast_fit_episodes)
    source = source_for(source_path, fmt, cfg)
    chunks = []
    for eid in sources[::step][: cfg.fast_fit_episodes]:
        for al in load_aligned(source, eid, cfg, handed)[1]:
            chunks.append(action_chunks(al.action, cfg.horizon)[0])
    return np.concatenate(chunks)


def pass2_group(
    source_path: str,
    fmt: str,
    group: Group,
    cfg: JobConfig,
    tokenizer_json: dict,
    out: str,
    vocab_json: dict | None = None,
    handed: str | None = None,
) -> GroupResult:
    """Write one group's episodes into tar parts ``<split>-g<index>-pNNNN``.

    In order (no shuffle window): an episode that fails while its frames are decoded is quarantined
    and the group is written again without it, so no part holds half an episode. Shuffled: every
    episode's samples go to a local spill file first (a failed episode's are dropped), then all are
    written in the group's seeded permutation, so each part mixes the group's episodes. ``handed``:
    the directory where pass 1 handed its aligned episodes over (pipelines/handoff.py), if any."""
    source = source_for(source_path, fmt, cfg)
    tokens = (from_json(tokenizer_json), _vocab(vocab_json))
    if cfg.shuffle_window:
        return _shuffled_group(source, group, cfg, tokens, Store(out), handed)
    todo, quarantined, tries = list(group.episodes), [], Counter()
    while True:
        writer = PartWriter(Store(out), group.split, group.index, cfg.shard_size_bytes)
        try:
            failed, frames, roundtrip = _write_episodes(
                source,
                todo,
                cfg,
                tokens,
                lambda sample, part, _, w=writer: w.write(sample, part),
                group.span,
                handed,
            )
            if failed is None:
                return GroupResult(writer.close(), quarantined, frames, roundtrip)
        except BaseException:
            writer.abort()  # nothing of a failed attempt stays in shards/
            raise
        writer.abort()
        tries[failed.episode] += 1
        if failed.retryable and tries[failed.episode] <= cfg.episode_retries:
            continue  # the whole group again, the episode included
        quarantined.append(_final(failed, tries[failed.episode]))
        todo.remove(failed.episode)


def _shuffled_group(
    source, group: Group, cfg: JobConfig, tokens, store: Store, handed: str | None
) -> GroupResult:
    spill = SampleSpill()
    writer = PartWriter(store, group.split, group.index, cfg.shard_size_bytes)
    try:
        todo, quarantined, frames, roundtrip, tries = list(group.episodes), [], 0, None, Counter()
        while todo:
            failed, n, rt = _write_episodes(source, todo, cfg, tokens, spill.add, handed=handed)
            frames, roundtrip = frames + n, rt if roundtrip is None else roundtrip.merge(rt)
            if failed is None:
                break
            spill.drop_source_episode(failed.episode)
            tries[failed.episode] += 1
            at = todo.index(failed.episode)
            if failed.retryable and tries[failed.episode] <= cfg.episode_retries:
                todo = todo[at:]  # this episode again
                continue
            quarantined.append(_final(failed, tries[failed.episode]))
            todo = todo[at + 1 :]
        for i in permutation(cfg, group, len(spill.index)):
            writer.write(*spill.read(i))
        return GroupResult(writer.close(), quarantined, frames, roundtrip)
    except BaseException:
        writer.abort()
        raise
    finally:
        spill.close()


def settle_spans(groups: list[Group], results: list[GroupResult]) -> list[GroupResult]:
    """An episode cut into spans is written whole or not at all: when a span of it was quarantined,
    its other spans' parts are dropped (and left out of the counts) and one quarantine record stays,
    the first span's. Results in group order; the others are returned as they are."""
    bad = {
        q.episode for g, r in zip(groups, results, strict=True) if g.span is not None for q in r.quarantined
    }
    if not bad:
        return results
    seen: set[str] = set()
    settled = []
    for g, r in zip(groups, results, strict=True):
        if g.span is None or g.episodes[0] not in bad:
            settled.append(r)
            continue
        first = [q for q in r.quarantined if q.episode not in seen]
        seen.update(q.episode for q in first)
        settled.append(GroupResult([], first, 0, None))
    return settled


def _vocab(vocab_json: dict | None) -> VocabMap | None:
    return VocabMap(vocab_json["spec"], vocab_json["ids"], vocab_json["token_lo"]) if vocab_json else None


def _write_episodes(
    source,
    todo: list[str],
    cfg: JobConfig,
    tokens,
    put: Callable[[dict, str, str], None],
    span: tuple[int, int] | None = None,
    handed: str | None = None,
):
    """Samples of ``todo``'s episodes to ``put(sample, part id, source episode id)`` until one fails;
    return (the failure or None, frames, round trip). A failed episode's frames and round trip are
    not counted. With ``span`` (one episode), only its ticks ``[start, stop)`` over its parts."""
    tokenizer, vocab = tokens
    roundtrip = RoundTrip.empty(tokenizer.dims)
    frames = 0
    for eid in todo:
        try:
            ep, parts = load_aligned(source, eid, cfg, handed)
            ep_frames, ep_rt = 0, RoundTrip.empty(tokenizer.dims)
            offset = 0
            for al in parts:
                lo, hi = (
                    (0, al.steps)
                    if span is None
                    else (max(0, span[0] - offset), min(al.steps, span[1] - offset))
                )
                offset += al.steps
                if lo >= hi:
                    continue
                images = {c: _camera_images(source, ep, al, c, cfg, lo, hi) for c in al.frames}
                for sample in episode_samples(
                    al, images, tokenizer, cfg.horizon, ep.embodiment, vocab, lo, hi
                ):
                    put(sample, al.episode_id, eid)
                ep_rt = ep_rt.merge(RoundTrip.measure(al.action, tokenizer, cfg.horizon, lo, hi))
                ep_frames += (hi - lo) * len(al.frames)
        except ShardWriteError:
            raise  # the output cannot be written: not this episode's fault, the task fails (and is retried)
        except EpisodeError as exc:
            return Quarantined(eid, exc.where, exc.message), frames, roundtrip
        except Exception as exc:  # noqa: BLE001
            return Quarantined(eid, "", _unexpected(exc), retryable=True), frames, roundtrip
        frames, roundtrip = frames + ep_frames, roundtrip.merge(ep_rt)
    return None, frames, roundtrip


def _camera_images(
    source, ep: Episode, al: AlignedEpisode, cam: str, cfg: JobConfig, lo: int = 0, hi: int | None = None
):
    """The camera's images of ticks ``[lo, hi)``; any decode failure becomes an EpisodeError naming the
    file. Past the first tick, decoding starts at the last entry frame at or before the first one needed
    (``cut_ticks`` put ``lo`` where that frame comes after the previous tick's)."""
    c = ep.cameras[cam]
    needed = al.frames[cam][lo:hi]
    start = int(needed[0])
    entry = entry_frames(c)
    if lo > 0 and entry is not None:
        starts = np.flatnonzero(entry[: start + 1])
        start = int(starts[-1]) if len(starts) else start
    try:
        yield from tick_images(
            camera_frames(source, c, int(c.pts[start]), c.pts[needed]),
            c.pts,
            needed,
            cfg.image_size,
            cfg.resize_mode,
            cfg.jpeg_quality,
            cfg.jpeg_subsampling,
            lo,
        )
    except (FrameError, VideoError, av.FFmpegError, OSError, ValueError) as exc:
        raise EpisodeError(
            ep.episode_id, os.path.basename(c.path), f"camera {cam!r}: decode failed: {exc}"
        ) from exc


def _final(failed: Quarantined, tries: int) -> Quarantined:
    if not failed.retryable or tries < 2:
        return failed
    return Quarantined(failed.episode, failed.file, f"{failed.reason}; failed {tries} times")


def _unexpected(exc: BaseException, tries: int = 1) -> str:
    """The traceback's last line, and where it was raised."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    times = f"; failed {tries} times" if tries > 1 else ""
    return f"unexpected error: {last}{where}{times}"
