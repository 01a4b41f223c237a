"""Episode filters and trims: which episodes a job keeps, and the idle spans it cuts off their ends.

Configured in the ``filter`` section of the job config. An episode left out is recorded with its
reason in ``meta/filtered.jsonl`` and counted in ``info.json`` (written + quarantined + filtered =
input); a trim is recorded per episode in ``meta/trims.jsonl``. The id filters act on the plan (no
episode is read for them); the others are a stage of the episode path (pipelines/episode.py), after
alignment, so lengths are counted in ticks of the target clock.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace

import numpy as np

from trajshard.pipelines.align import AlignedEpisode
from trajshard.schemas.problems import EpisodeFiltered, Filtered


@dataclass(frozen=True)
class FilterConfig:
    """The ``filter`` section: which episodes to keep, and idle spans to trim from their ends."""

    episodes: tuple[str, ...] = ()  # ids or glob patterns to keep (empty: all)
    exclude: tuple[str, ...] = ()  # ids or glob patterns to leave out
    success_only: bool = False  # keep only episodes marked successful (episode.json "success": true)
    min_steps: int | None = None  # fewer aligned ticks (after trims): left out
    max_steps: int | None = None  # more aligned ticks (after trims): left out
    trim_idle: float | None = None  # cut leading/trailing ticks where no state dim moves more than this

    @property
    def stage_needed(self) -> bool:
        return self.success_only or self.min_steps is not None or self.max_steps is not None or self.trims

    @property
    def trims(self) -> bool:
        return self.trim_idle is not None

    def problems(self) -> list[str]:
        out = []
        for name in ("min_steps", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                out.append(f"{name} must be at least 1, got {value}")
        if self.min_steps and self.max_steps and self.min_steps > self.max_steps:
            out.append(f"min_steps {self.min_steps} is more than max_steps {self.max_steps}")
        if self.trim_idle is not None and not self.trim_idle >= 0:
            out.append(f"trim_idle must be 0 or more (state units per tick), got {self.trim_idle}")
        return out


def select_ids(ids: list[str], cfg: FilterConfig) -> tuple[list[str], list[Filtered]]:
    """The ids the id filters keep, and a record for each one they leave out."""
    kept, left = [], []
    for eid in ids:
        if cfg.episodes and not _matches(eid, cfg.episodes):
            left.append(Filtered(eid, "filter", "not among the episodes to keep (filter.episodes)"))
        elif _matches(eid, cfg.exclude):
            left.append(Filtered(eid, "filter", "excluded (filter.exclude)"))
        else:
            kept.append(eid)
    return kept, left


def _matches(eid: str, patterns: tuple[str, ...]) -> bool:
    return any(eid == p or fnmatch.fnmatchcase(eid, p) for p in patterns)


def check_success(episode_id: str, success: bool | None) -> None:
    if success is not True:
        said = "unknown" if success is None else "false"
        raise EpisodeFiltered(episode_id, f"not marked successful (success is {said}; filter.success_only)")


def check_length(episode_id: str, steps: int, cfg: FilterConfig) -> None:
    if cfg.min_steps is not None and steps < cfg.min_steps:
        raise EpisodeFiltered(episode_id, f"{steps} steps, fewer than filter.min_steps {cfg.min_steps}")
    if cfg.max_steps is not None and steps > cfg.max_steps:
        raise EpisodeFiltered(episode_id, f"{steps} steps, more than filter.max_steps {cfg.max_steps}")


def idle_ends(parts: list[AlignedEpisode], threshold: float) -> tuple[int, int]:
    """(ticks, ticks) at the start of the first part and the end of the last one where no state
    dimension moves more than ``threshold`` from one tick to the next."""
    first, last = parts[0].state, parts[-1].state
    moving = np.flatnonzero(np.abs(np.diff(first, axis=0)).max(axis=1, initial=0) > threshold)
    head = int(moving[0]) if len(moving) else len(first)
    moving = np.flatnonzero(np.abs(np.diff(last, axis=0)).max(axis=1, initial=0) > threshold)
    tail = len(last) - 1 - int(moving[-1]) - 1 if len(moving) else len(last)
    return head, tail


def trimmed(parts: list[AlignedEpisode], head: int, tail: int) -> list[AlignedEpisode]:
    """The parts without ``head`` ticks at the start and ``tail`` at the end (a part left empty is
    dropped)."""
    out = list(parts)
    if head:
        out[0] = _cut(out[0], head, out[0].steps)
    if tail:
        out[-1] = _cut(out[-1], 0, out[-1].steps - tail)
    return [p for p in out if p.steps > 0]


def _cut(p: AlignedEpisode, lo: int, hi: int) -> AlignedEpisode:
    hi = max(lo, hi)
    return replace(
        p,
        times=p.times[lo:hi],
        state=p.state[lo:hi],
        action=p.action[lo:hi],
        frames={c: f[lo:hi] for c, f in p.frames.items()},
        instructions=p.instructions[lo:hi],
    )
