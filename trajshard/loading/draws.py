"""The samples of one split, or of a mixture, in the loader's order (no torch).

:func:`read_split` is one worker role's share of a split in one epoch (``loading/order.py``);
:func:`mixture_draws` one role's draws of a weighted mixture in one epoch: draw ``k`` picks a dataset
by a hash of ``(seed, role, k)``, and each dataset is read as an endless run of its own epochs. The
torch loader (``trajshard.loader``) and ``trajshard mix`` both read through them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from trajshard.loading.order import choose, hash_ints, role_plan, split_range
from trajshard.loading.source import LoaderError, SplitSource, decode_sample, emit


@dataclass(frozen=True)
class ReadOptions:
    """How a split is read, whatever the role and epoch: the shuffle and whether images are decoded."""

    shuffle_buffer: int
    shuffle_shards: bool
    decode_images: bool


def read_split(
    src: SplitSource,
    opts: ReadOptions,
    *,
    seed: int,
    epoch: int,
    role: int,
    roles: int,
    skip: int,
    cameras: frozenset[str] | None = None,
) -> Iterator[dict]:
    """One role's samples of one split in one epoch, the first ``skip`` left out unread; with
    ``cameras``, only those cameras' images are kept (and decoded)."""
    plan = role_plan(
        src.counts,
        seed=seed,
        epoch=epoch,
        role=role,
        roles=roles,
        shuffle_buffer=opts.shuffle_buffer,
        shuffle_shards=opts.shuffle_shards,
    )
    for key, members in emit(src, plan, skip):
        yield decode_sample(key, members, opts.decode_images, cameras)


def mixture_draws(
    sources: Sequence[SplitSource],
    weights: Sequence[float],
    samples_per_epoch: int,
    opts: ReadOptions,
    *,
    seed: int,
    epoch: int,
    role: int,
    roles: int,
    skip: int,
    cameras: Sequence[frozenset[str] | None] | None = None,
) -> Iterator[dict]:
    """One role's draws of a mixture in one epoch, from draw ``skip`` on; each sample gets ``dataset``
    (its index in ``sources``). ``cameras[d]``: the cameras of dataset ``d`` to keep (None: all)."""
    # One endless stream per role; epoch e is draws [e*L, (e+1)*L). Draw k picks a dataset by weight;
    # each dataset is read as its own endless sequence of epochs (its role range, re-shuffled).
    lo, hi = split_range(samples_per_epoch, roles, role)
    length = hi - lo
    start, stop = epoch * length + skip, (epoch + 1) * length
    key = hash_ints(seed, role, roles, 0x313)
    used = np.zeros(len(sources), dtype=np.int64)
    chunk = 1 << 20
    for a in range(0, start, chunk):
        used += np.bincount(choose(weights, key, a, min(start, a + chunk)), minlength=len(sources))
    keep = list(cameras) if cameras is not None else [None] * len(sources)
    streams = [
        _endless(sources[d], d, seed, role, roles, int(used[d]), opts, keep[d]) for d in range(len(sources))
    ]
    for d in choose(weights, key, start, stop).tolist():
        sample = next(streams[d])
        sample["dataset"] = d
        yield sample


def _endless(
    src: SplitSource,
    d: int,
    seed: int,
    role: int,
    roles: int,
    position: int,
    opts: ReadOptions,
    cameras: frozenset[str] | None,
):
    lo, hi = split_range(src.samples, roles, role)
    if hi <= lo:
        raise LoaderError(f"{src.root} ({src.split}): {src.samples} samples, fewer than {roles} roles")
    sub_epoch, offset = divmod(position, hi - lo)
    sub_seed = hash_ints(seed, d, 0xD5)
    while True:
        yield from read_split(
            src, opts, seed=sub_seed, epoch=sub_epoch, role=role, roles=roles, skip=offset, cameras=cameras
        )
        sub_epoch, offset = sub_epoch + 1, 0
