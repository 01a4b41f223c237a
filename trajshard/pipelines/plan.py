"""Pass-2 planning, pure: which split each episode goes to, and which episodes each task writes.

Everything here depends only on the episodes and the config, never on the number of workers or on
the order tasks finish, so the output bytes do not either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from trajshard.config import VAL_SPLIT, JobConfig

MIN_GROUPS = 64  # pass-2 tasks a dataset is cut into at least (when it has the steps for it)
MIN_GROUP_STEPS = (
    32  # but no task smaller than this (a task costs a few ms: opening the source, the tokenizer)
)


@dataclass(frozen=True)
class Group:
    """One pass-2 task: source episodes of one split, written into parts ``<split>-g<index>-pNNNN``."""

    index: int
    split: str
    episodes: tuple[str, ...]


def _unit(seed: int, purpose: str, episode_id: str) -> float:
    """A number in [0, 1) from a hash of (seed, purpose, id): stable as a dataset grows."""
    digest = hashlib.sha256(f"{seed}\0{purpose}\0{episode_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(episode_id: str, cfg: JobConfig) -> str:
    """The split of a source episode: ``val`` for a ``val_fraction`` share of ids (by a seeded hash, so
    an episode keeps its split when episodes are added or removed), else ``cfg.split``. All parts of a
    gap-split episode go with their source episode."""
    if cfg.val_fraction > 0 and _unit(cfg.seed, "split", episode_id) < cfg.val_fraction:
        return VAL_SPLIT
    return cfg.split


def plan_groups(episodes: list[tuple[str, int]], cfg: JobConfig, task_steps: int) -> list[Group]:
    """Groups of source episodes, split by split (in ``cfg.splits`` order).

    ``episodes``: (source episode id, steps of all its parts) in id order. Without a shuffle window,
    consecutive episodes are grouped until a group holds ``task_steps`` steps. With one, episodes are
    put in a seeded hash order (so one group mixes episodes from all over the dataset, not one recording
    session) and cut into groups of ``shuffle_window`` episodes, whose samples pass 2 interleaves."""
    groups: list[Group] = []
    for split in cfg.splits:
        mine = [(e, n) for e, n in episodes if split_of(e, cfg) == split]
        if cfg.shuffle_window:
            mine.sort(key=lambda en: (_unit(cfg.seed, "shuffle", en[0]), en[0]))
            cuts = [mine[i : i + cfg.shuffle_window] for i in range(0, len(mine), cfg.shuffle_window)]
        else:
            cuts, current, steps = [], [], 0
            for e, n in mine:
                if current and steps >= task_steps:
                    cuts.append(current)
                    current, steps = [], 0
                current.append((e, n))
                steps += n
            if current:
                cuts.append(current)
        groups += [Group(len(groups) + i, split, tuple(e for e, _ in c)) for i, c in enumerate(cuts)]
    return groups


def group_steps(cfg: JobConfig, n_cameras: int, total_steps: int) -> int:
    """Steps per pass-2 task when the config sets none: about one shard's worth (from an estimate of
    a sample's bytes: a JPEG at this size and quality is roughly 12% of the raw RGB), but small
    enough that the dataset makes at least ``MIN_GROUPS`` tasks, so workers have work to share and a
    loader has shards to spread. Depends on the data and the config only, never on the workers."""
    jpeg = cfg.image_size**2 * 3 * (0.06 + 0.0015 * cfg.jpeg_quality)
    per_sample = n_cameras * jpeg + 4096 + 2048 * cfg.horizon
    shard_steps = max(1, int(cfg.shard_size_bytes / per_sample))
    return max(1, min(shard_steps, max(MIN_GROUP_STEPS, -(-total_steps // MIN_GROUPS))))


def permutation(cfg: JobConfig, group: Group, n: int) -> list[int]:
    """The order in which a shuffled group writes its ``n`` samples: a seeded permutation that depends
    on the group's split, index and episodes only."""
    import numpy as np

    key = hashlib.sha256(f"{cfg.seed}\0{group.split}\0{group.index}\0{','.join(group.episodes)}".encode())
    rng = np.random.default_rng(int.from_bytes(key.digest()[:8], "big"))
    return rng.permutation(n).tolist()
