"""Pass-2 planning, pure: which split each episode goes to, and which episodes each task writes.

Everything here depends only on the episodes and the config, never on the number of workers or on
the order tasks finish, so the output bytes do not either.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from trajshard.io import parse_size

MIN_GROUPS = 64  # pass-2 tasks a dataset is cut into at least (when it has the steps for it)
MIN_GROUP_STEPS = (
    32  # but no task smaller than this (a task costs a few ms: opening the source, the tokenizer)
)
MIN_SPAN_STEPS = 64  # span length when task_steps is automatic: a span costs a task's start
# a span task loads its whole episode (probes every video, reads the tables): with at most this many
# spans an episode, that stays a few percent of decoding it
MAX_SPANS = 16
MAX_CUTS = 64  # span starts pass 1 keeps per aligned episode part: the driver's memory stays bounded
MAX_REDECODE = 8  # frames a camera may decode twice at a span start, when no start costs nothing


VAL_SPLIT = "val"


@dataclass(frozen=True)
class OutputConfig:
    """The ``output`` section of a job config: shard size, splits, order, and how pass 2's work is cut
    (``task_steps``: it decides where parts end, so it shapes the output too)."""

    shard_size: str = "1GB"
    seed: int = 0
    split: str = "train"  # the name of the training split
    val_fraction: float = 0.0  # share of source episodes (by a seeded hash of the id) in split "val"
    shuffle_window: int = 0  # episodes whose samples are interleaved across one group's shards; 0: off
    task_steps: int | None = None  # steps per pass-2 task; None: about one shard's worth
    extra: dict[str, object] = field(default_factory=dict)  # free-form, recorded in info.json

    @property
    def shard_size_bytes(self) -> int:
        return parse_size(self.shard_size)

    @property
    def splits(self) -> tuple[str, ...]:
        return (self.split, VAL_SPLIT) if self.val_fraction > 0 else (self.split,)

    def problems(self) -> list[str]:
        out = []
        if self.task_steps is not None and self.task_steps < 1:
            out.append(f"task_steps must be at least 1, got {self.task_steps}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.split):
            out.append(f"split must match [A-Za-z0-9_]+, got {self.split!r}")
        if self.split == VAL_SPLIT:
            out.append(f"split {VAL_SPLIT!r} is the validation split's name; name the training split else")
        if not 0 <= self.val_fraction < 1:
            out.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shuffle_window < 0 or self.shuffle_window == 1:
            out.append(f"shuffle_window must be 0 (off) or at least 2 episodes, got {self.shuffle_window}")
        try:
            if self.shard_size_bytes < 1000:
                out.append(f"shard_size must be at least 1KB, got {self.shard_size!r}")
        except ValueError as exc:
            out.append(f"shard_size: {exc}")
        return out


@dataclass(frozen=True)
class Group:
    """One pass-2 task: source episodes of one split, written into parts ``<split>-g<index>-pNNNN``.

    With ``span`` the group is one stretch of one long source episode: ticks ``[start, stop)``,
    counted over its aligned parts in order. Such an episode's spans are consecutive groups."""

    index: int
    split: str
    episodes: tuple[str, ...]
    span: tuple[int, int] | None = None

    def steps(self, steps_of: Mapping[str, int]) -> int:
        if self.span is not None:
            return self.span[1] - self.span[0]
        return sum(steps_of[e] for e in self.episodes)

    def to_json(self) -> list:
        return [self.index, self.split, list(self.episodes), None if self.span is None else list(self.span)]


def span_length(cfg: OutputConfig, task_steps: int = 0) -> int:
    """The length spans are cut to: ``task_steps`` when the user set it, else the automatic
    ``task_steps`` but at least ``MIN_SPAN_STEPS``. Without ``task_steps`` (pass 1, before it is
    known): the least it can be, so an episode under twice this is never cut."""
    return cfg.task_steps or max(task_steps, MIN_SPAN_STEPS)


def cut_ticks(
    needed: Mapping[str, np.ndarray], entries: Mapping[str, np.ndarray | None], steps: int
) -> tuple[int, ...]:
    """Ticks where a pass-2 task may start an aligned episode part: tick t > 0 where every camera has an
    entry frame (``entries[cam][i]``: decoding may start at frame i) at or before the frame of tick t
    (``needed[cam][t]``). The task starting there decodes each camera from that entry frame, so the
    frames from it to tick t-1's were decoded by the task before too. The ticks where that costs nothing
    (the entry frame comes after tick t-1's, for every camera) when there are any, else those where it
    costs at most ``MAX_REDECODE`` frames a camera (cameras whose keyframes fall at different times).
    At most ``MAX_CUTS``, evenly thinned; () when a camera has no entry information."""
    waste = np.zeros(steps)
    waste[0] = np.inf
    for cam, idx in needed.items():
        entry = entries.get(cam)
        if entry is None or len(idx) != steps:
            return ()
        starts = np.flatnonzero(entry)
        if not len(starts):
            return ()
        at = np.searchsorted(starts, idx, side="right") - 1  # the last entry frame at or before each tick's
        last = np.where(at >= 0, starts[np.clip(at, 0, None)], -1)
        twice = np.where(last[1:] >= 0, np.maximum(0, idx[:-1] - last[1:] + 1), np.inf)
        waste[1:] = np.maximum(waste[1:], twice)
    cuts = np.flatnonzero(waste == 0)
    if not len(cuts):
        cuts = np.flatnonzero(waste <= MAX_REDECODE)
    if len(cuts) > MAX_CUTS:
        cuts = np.unique(cuts[np.linspace(0, len(cuts) - 1, MAX_CUTS).round().astype(int)])
    return tuple(int(c) for c in cuts)


def episode_spans(steps: int, cuts: Sequence[int], task_steps: int) -> list[tuple[int, int]]:
    """How one source episode is cut into pass-2 tasks: ``steps // task_steps`` stretches (at most
    ``MAX_SPANS``) of about equal length (an episode under twice ``task_steps`` stays whole), each
    starting at the cut nearest its ideal start, none shorter than half of ``task_steps``."""
    n = min(MAX_SPANS, steps // max(1, task_steps))
    if n < 2 or not cuts:
        return [(0, steps)]
    bounds = [0]
    for k in range(1, n):
        ideal = k * steps / n
        i = bisect.bisect_left(cuts, ideal)
        near = min(cuts[max(0, i - 1) : i + 1], key=lambda c: (abs(c - ideal), c))
        if near - bounds[-1] >= task_steps / 2 and steps - near >= task_steps / 2:
            bounds.append(near)
    bounds.append(steps)
    return list(zip(bounds, bounds[1:], strict=False))


def _unit(seed: int, purpose: str, episode_id: str) -> float:
    """A number in [0, 1) from a hash of (seed, purpose, id): stable as a dataset grows."""
    digest = hashlib.sha256(f"{seed}\0{purpose}\0{episode_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(episode_id: str, cfg: OutputConfig) -> str:
    """The split of a source episode: ``val`` for a ``val_fraction`` share of ids (by a seeded hash, so
    an episode keeps its split when episodes are added or removed), else ``cfg.split``. All parts of a
    gap-split episode go with their source episode."""
    if cfg.val_fraction > 0 and _unit(cfg.seed, "split", episode_id) < cfg.val_fraction:
        return VAL_SPLIT
    return cfg.split


def plan_groups(
    episodes: list[tuple[str, int]],
    cfg: OutputConfig,
    task_steps: int,
    cuts: Mapping[str, Sequence[int]] | None = None,
    span_steps: int | None = None,
) -> list[Group]:
    """Groups of source episodes, split by split (in ``cfg.splits`` order).

    ``episodes``: (source episode id, steps of all its parts) in id order. Without a shuffle window,
    consecutive episodes are grouped until a group holds ``task_steps`` steps, and an episode of at least
    twice ``span_steps`` (default ``task_steps``) with ``cuts`` (tick offsets where a task may start it,
    see ``cut_ticks``) is cut into spans, a group each, so a few long episodes still spread over the
    workers. With a shuffle window, episodes are put in a seeded hash order (so one group mixes
    episodes from all over the dataset, not one recording session) and cut into groups of
    ``shuffle_window`` whole episodes, whose samples pass 2 interleaves."""
    groups: list[Group] = []
    cuts = cuts or {}
    for split in cfg.splits:
        mine = [(e, n) for e, n in episodes if split_of(e, cfg) == split]
        if cfg.shuffle_window:
            mine.sort(key=lambda en: (_unit(cfg.seed, "shuffle", en[0]), en[0]))
            for i in range(0, len(mine), cfg.shuffle_window):
                groups.append(
                    Group(len(groups), split, tuple(e for e, _ in mine[i : i + cfg.shuffle_window]))
                )
            continue
        current: list[str] = []
        steps = 0
        for e, n in mine:
            spans = episode_spans(n, cuts.get(e, ()), span_steps or task_steps)
            if current and (steps >= task_steps or len(spans) > 1):
                groups.append(Group(len(groups), split, tuple(current)))
                current, steps = [], 0
            if len(spans) > 1:
                for span in spans:
                    groups.append(Group(len(groups), split, (e,), span))
                continue
            current.append(e)
            steps += n
        if current:
            groups.append(Group(len(groups), split, tuple(current)))
    return groups


def group_steps(cfg: OutputConfig, sample_bytes: float, total_steps: int) -> int:
    """Steps per pass-2 task when the config sets none: about one shard's worth (from an estimate of a
    sample's bytes), but small enough that the dataset makes at least ``MIN_GROUPS`` tasks, so workers
    have work to share and a loader has shards to spread. Depends on the data and the config only,
    never on the workers."""
    shard_steps = max(1, int(cfg.shard_size_bytes / sample_bytes))
    return max(1, min(shard_steps, max(MIN_GROUP_STEPS, -(-total_steps // MIN_GROUPS))))


def shard_note(
    cfg: OutputConfig, task_steps: int, groups: Sequence[Group], shards: int, nbytes: int, total_steps: int
) -> str:
    """Why a dataset has more shards than its size cap needs, in one line ('' when it has not): every
    pass-2 task (group) writes its own shards, so that workers share the work; then the rule that sizes
    the tasks, and the setting that changes it."""
    needed = max(len({g.split for g in groups}), -(-nbytes // cfg.shard_size_bytes))
    if shards <= needed:
        return ""
    head = (
        f"{shards} shards where the {cfg.shard_size} cap needs {needed}: pass 2 cuts the work into "
        f"{len(groups)} tasks so that workers share it, and each task writes its own shards. "
    )
    if cfg.shuffle_window:
        return head + f"With --shuffle-window {cfg.shuffle_window}, a task is that many episodes"
    how = (
        "set by --task-steps"
        if cfg.task_steps
        else (
            f"automatic: about one shard's worth, but at least {MIN_GROUPS} tasks when the data allows, "
            f"none under {MIN_GROUP_STEPS} steps"
        )
    )
    rule = f"A task takes whole episodes until it holds {task_steps} steps ({how})"
    spans = sum(g.span is not None for g in groups)
    if spans:
        span = span_length(cfg, task_steps)
        rule += f"; an episode of {2 * span} steps or more is cut into spans of about {span} ({spans} here)"
    return head + rule + f". Fewer, fuller shards: a larger --task-steps, e.g. {-(-total_steps // needed)}"


def permutation(cfg: OutputConfig, group: Group, n: int) -> list[int]:
    """The order in which a shuffled group writes its ``n`` samples: a seeded permutation that depends
    on the group's split, index and episodes only."""
    key = hashlib.sha256(f"{cfg.seed}\0{group.split}\0{group.index}\0{','.join(group.episodes)}".encode())
    rng = np.random.default_rng(int.from_bytes(key.digest()[:8], "big"))
    return rng.permutation(n).tolist()
