"""The episode path: one ordered list of stages, built from the config, each a pure function.

    read -> align -> derive gripper -> filters and trims -> [annotators, teacher models] -> tokenize
         -> render -> samples

An :class:`EpisodeWork` flows through the list. The stages before ``tokenize`` (``prepare_stages``)
run in pass 1, which fits the tokenizer on their result and hands that result to pass 2
(pipelines/handoff.py caches it); pass 2 runs the rest (``sample_stages``) on each stretch of ticks
it writes. A new per-episode stage is one function here and one line in the list: it reaches every
task through the job's context, never through a task's signature. Only ``read`` and the frames the
``render`` stage is given touch files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

import av
import numpy as np

from trajshard.config import JobConfig
from trajshard.pipelines.actions import binarize_gripper
from trajshard.pipelines.align import AlignConfig, AlignedEpisode, align
from trajshard.pipelines.filters import FilterConfig, check_length, check_success, idle_ends, trimmed
from trajshard.pipelines.frames import FrameError, ImageConfig, tick_images
from trajshard.pipelines.samples import piece_samples
from trajshard.schemas.episode import Episode, EpisodeError
from trajshard.schemas.problems import EpisodeFiltered
from trajshard.sources import camera_frames, entry_frames
from trajshard.sources.video import VideoError
from trajshard.tokenizers import ActionTokenizer
from trajshard.tokenizers.chunks import action_chunks
from trajshard.tokenizers.report import RoundTrip
from trajshard.tokenizers.vocab import VocabMap


@dataclass
class Piece:
    """Ticks ``[lo, hi)`` of one aligned part, as pass 2 writes them: tokens, then images, then samples."""

    part: AlignedEpisode
    lo: int
    hi: int
    tokens: object = None  # int32 [n, D] or [n, H, D], or a list of FAST token arrays
    chunks: tuple[np.ndarray, np.ndarray] | None = None  # action chunks and masks when horizon > 1
    token_ids: object = None  # the tokens' ids in the VLM vocabulary, when one is set
    roundtrip: RoundTrip | None = None
    images: dict[str, Iterator[bytes]] = field(default_factory=dict)  # camera -> JPEGs, lazily decoded
    samples: Iterator[dict] = field(default_factory=lambda: iter(()))


@dataclass
class EpisodeWork:
    """One source episode on its way through the stages."""

    episode: Episode
    parts: list[AlignedEpisode] = field(default_factory=list)
    span: tuple[int, int] | None = None  # pass 2: ticks [start, stop) over the parts; None: all
    trimmed: tuple[int, int] = (0, 0)  # idle ticks the trim stage cut off the start and the end
    pieces: list[Piece] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum((p.hi - p.lo) * len(p.part.frames) for p in self.pieces)


Stage = Callable[[EpisodeWork], EpisodeWork]


@dataclass(frozen=True)
class SampleTools:
    """What pass 2's stages need beyond the config: the fitted tokenizer, the vocabulary map, and the
    source's frame reader (``frames(camera, start_pts, needed_pts)``)."""

    tokenizer: ActionTokenizer
    vocab: VocabMap | None
    frames: Callable


def prepare_stages(cfg: JobConfig) -> list[Stage]:
    """The stages pass 1 runs on a read episode; their result is what the tokenizer is fitted on."""
    stages: list[Stage] = [aligned(cfg.align)]
    if cfg.align.gripper:
        stages.append(gripper(cfg.align.gripper))
    if cfg.filter.stage_needed:
        stages.append(selected(cfg.filter))
    return stages


def sample_stages(cfg: JobConfig, tools: SampleTools) -> list[Stage]:
    """The stages pass 2 runs on a prepared episode, for the stretch of ticks it writes."""
    return [
        tokenized(tools.tokenizer, cfg.tokenizer.horizon, tools.vocab),
        rendered(tools.frames, cfg.image),
        sampled,
    ]


def episode_stages(cfg: JobConfig, tools: SampleTools) -> list[Stage]:
    """The whole episode path after ``read``, in order."""
    return prepare_stages(cfg) + sample_stages(cfg, tools)


def run_stages(stages: list[Stage], work: EpisodeWork) -> EpisodeWork:
    for stage in stages:
        work = stage(work)
    return work


class EpisodeReader:
    """The ``read`` stage and the prepare stages after it: an episode of the source, prepared."""

    def __init__(self, source, stages: list[Stage]) -> None:
        self.source, self.stages = source, stages

    def read(self, episode_id: str) -> EpisodeWork:
        return run_stages(self.stages, EpisodeWork(self.source.load(episode_id)))


# ---------------------------------------------------------------------------------------------- stages


def aligned(cfg: AlignConfig) -> Stage:
    """Every stream resampled onto the target clock; gaps may split the episode into parts."""
    return lambda work: replace(work, parts=align(work.episode, cfg))


def gripper(spec: Mapping[str, object]) -> Stage:
    """The gripper dimension of every action made binary, by the configured convention."""

    def run(work: EpisodeWork) -> EpisodeWork:
        eid = work.episode.episode_id
        return replace(
            work, parts=[replace(p, action=binarize_gripper(p.action, dict(spec), eid)) for p in work.parts]
        )

    return run


def selected(cfg: FilterConfig) -> Stage:
    """The episode filters of the job config (success, length) and the idle trim, or EpisodeFiltered."""

    def run(work: EpisodeWork) -> EpisodeWork:
        eid, parts, cut = work.episode.episode_id, work.parts, (0, 0)
        if cfg.success_only:
            check_success(eid, work.episode.success)
        if cfg.trims:
            cut = idle_ends(parts, cfg.trim_idle)
            parts = trimmed(parts, *cut)
            if not parts:
                raise EpisodeFiltered(
                    eid, f"idle throughout: no state dim moves more than {cfg.trim_idle} a tick"
                )
        check_length(eid, sum(p.steps for p in parts), cfg)
        return replace(work, parts=parts, trimmed=cut)

    return run


def tokenized(tokenizer: ActionTokenizer, horizon: int, vocab: VocabMap | None) -> Stage:
    """The pieces of the span, each with its tokens (of chunks when ``horizon`` > 1), their vocabulary
    ids and the round trip of its actions."""

    def run(work: EpisodeWork) -> EpisodeWork:
        pieces = []
        for part, lo, hi in _span_pieces(work.parts, work.span):
            rows = slice(lo, hi)
            chunks = None
            if horizon > 1:
                chunks = tuple(a[rows] for a in action_chunks(part.action, horizon))
                c = chunks[0]
                tokens = (
                    [tokenizer.encode(x) for x in c] if tokenizer_chunked(tokenizer) else tokenizer.encode(c)
                )
            else:
                tokens = tokenizer.encode(part.action[rows])
            ids = None
            if vocab is not None:
                ids = (
                    vocab(tokens).astype(np.int64)
                    if isinstance(tokens, np.ndarray)
                    else [vocab(t).astype(np.int64) for t in tokens]
                )
            rt = RoundTrip.measure(part.action, tokenizer, horizon, lo, hi)
            pieces.append(Piece(part, lo, hi, tokens, chunks, ids, rt))
        return replace(work, pieces=pieces)

    return run


def rendered(frames: Callable, image: ImageConfig) -> Stage:
    """Each piece's camera images, decoded and encoded lazily as the samples are drawn."""

    def camera(ep: Episode, piece: Piece, cam: str) -> Iterator[bytes]:
        c, needed = ep.cameras[cam], piece.part.frames[cam][piece.lo : piece.hi]

        def decode() -> Iterator[bytes]:
            start = int(c.pts[first_frame(c, needed, piece.lo)])
            return tick_images(frames(c, start, c.pts[needed]), c.pts, needed, image, piece.lo)

        return named_errors(ep.episode_id, c, decode)

    def run(work: EpisodeWork) -> EpisodeWork:
        pieces = [
            replace(p, images={cam: camera(work.episode, p, cam) for cam in p.part.frames})
            for p in work.pieces
        ]
        return replace(work, pieces=pieces)

    return run


def sampled(work: EpisodeWork) -> EpisodeWork:
    """Each piece's shard samples (shard sample v1), made as they are drawn."""
    embodiment = work.episode.embodiment
    return replace(work, pieces=[replace(p, samples=piece_samples(p, embodiment)) for p in work.pieces])


def tokenizer_chunked(tokenizer: ActionTokenizer) -> bool:
    return getattr(tokenizer, "chunked", False)


def _span_pieces(
    parts: list[AlignedEpisode], span: tuple[int, int] | None
) -> Iterator[tuple[AlignedEpisode, int, int]]:
    """(part, lo, hi) of every part the span touches; the span counts ticks over the parts in order."""
    offset = 0
    for part in parts:
        lo, hi = (
            (0, part.steps) if span is None else (max(0, span[0] - offset), min(part.steps, span[1] - offset))
        )
        offset += part.steps
        if lo < hi:
            yield part, lo, hi


def first_frame(camera, needed: np.ndarray, lo: int) -> int:
    """The frame decoding starts at for ticks that need frames ``needed``: past a part's first tick,
    the last entry frame at or before the first one needed (``plan.cut_ticks`` put span starts where
    that frame follows the previous tick's)."""
    start = int(needed[0])
    entry = entry_frames(camera)
    if lo > 0 and entry is not None:
        starts = np.flatnonzero(entry[: start + 1])
        start = int(starts[-1]) if len(starts) else start
    return start


def named_errors(episode_id: str, camera, images: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
    """``images()``, with any decode failure turned into an EpisodeError naming the camera's file."""
    try:
        yield from images()
    except (FrameError, VideoError, av.FFmpegError, OSError, ValueError) as exc:
        raise EpisodeError(
            episode_id, os.path.basename(camera.path), f"camera {camera.name!r}: decode failed: {exc}"
        ) from exc


def source_frames(source) -> Callable:
    """The frame reader of an opened source: its own stored images, else PyAV's decoder."""
    return lambda camera, start_pts, needed_pts: camera_frames(source, camera, start_pts, needed_pts)
