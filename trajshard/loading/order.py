"""The sample order of a training epoch, as a pure function (no torch, no file access).

Every position in an epoch is fixed by ``(seed, epoch, rank, world_size, num_workers, shuffle_buffer)``
and the manifest, so a run can be repeated, and resumed by counting the samples it consumed:

1. the split's shards are permuted by ``(seed, epoch)`` (the same on every rank);
2. the permuted shards, concatenated, are one sequence of ``N`` samples, cut into
   ``G = world_size * num_workers`` contiguous **role** ranges, rank-major (role ``rank * nw + worker``),
   so ranks (and workers) differ by at most one sample;
3. each role's range is read in order through a seeded shuffle buffer of ``shuffle_buffer`` samples;
   :func:`buffer_order` gives the resulting permutation of range positions.

Randomness is a counter-based hash (SplitMix64) of the integers above, not a library generator, so the
order does not change with the numpy or Python version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix(x: int) -> int:
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def hash_ints(*values: int) -> int:
    """A 64-bit hash of a tuple of integers (any sign, any size below 2**64)."""
    h = 0x6A09E667F3BCC908
    for v in values:
        h = _splitmix(h ^ (int(v) & _MASK))
    return h


def hash_counter(key: int, counters: np.ndarray) -> np.ndarray:
    """A 64-bit hash of ``(key, c)`` for each counter ``c`` (vectorized, uint64)."""
    # the SplitMix64 stream of seed ``key``: state = key + (c + 1) * golden, then the output mix
    with np.errstate(over="ignore"):
        x = np.uint64(key) + (counters.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(key: int, counters: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from :func:`hash_counter` (53 bits)."""
    return (hash_counter(key, counters) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def shard_order(n_shards: int, seed: int, epoch: int) -> list[int]:
    """Permutation of shard indices for an epoch: sorted by a hash of (seed, epoch, shard)."""
    key = hash_ints(seed, epoch, 0x5A4D)
    h = hash_counter(key, np.arange(n_shards, dtype=np.uint64))
    return [int(i) for i in np.argsort(h, kind="stable")]


def split_range(n: int, parts: int, index: int) -> tuple[int, int]:
    """The ``index``-th of ``parts`` contiguous, near-equal ranges of ``range(n)``."""
    return n * index // parts, n * (index + 1) // parts


def buffer_order(n: int, buffer: int, key: int) -> np.ndarray:
    """Order in which a shuffle buffer of ``buffer`` samples emits a stream of ``n`` inputs.

    Fill the buffer; then for each further input, emit a random buffered sample and put the input in
    its place; at the end emit the rest in random order. Output ``k`` is always among the first
    ``k + buffer`` inputs, so a reader that follows this order holds at most ``buffer`` samples.
    ``buffer <= 1`` keeps the input order.
    """
    if buffer <= 1 or n <= 1:
        return np.arange(n, dtype=np.int64)
    b = min(buffer, n)
    draws = hash_counter(key, np.arange(n, dtype=np.uint64))
    slots = (draws % np.uint64(b)).astype(np.int64).tolist()
    buf = list(range(b))
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(b, n):
        j = slots[i]
        out[k] = buf[j]
        buf[j] = i
        k += 1
    # drain: a seeded permutation of what is left (sorted by hash, like shard_order)
    tail = np.asarray(buf, dtype=np.int64)
    tail_keys = hash_counter(hash_ints(key, 0x7A11), np.arange(b, dtype=np.uint64))
    out[k:] = tail[np.argsort(tail_keys, kind="stable")]
    return out


@dataclass(frozen=True)
class Piece:
    """Samples ``start .. stop-1`` of one shard (indices within the shard)."""

    shard: int
    start: int
    stop: int


def range_pieces(counts: Sequence[int], order: Sequence[int], start: int, stop: int) -> list[Piece]:
    """The shard pieces covering ``[start, stop)`` of the concatenation of shards in ``order``."""
    pieces, offset = [], 0
    for s in order:
        n = counts[s]
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            pieces.append(Piece(s, lo - offset, hi - offset))
        offset += n
        if offset >= stop:
            break
    return pieces


@dataclass(frozen=True)
class RolePlan:
    """What one (rank, worker) role reads in one epoch: shard pieces and the emission order."""

    pieces: list[Piece]
    order: np.ndarray  # order[k] = position (within the role's range) of the k-th emitted sample

    @property
    def size(self) -> int:
        return len(self.order)


def role_plan(
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    role: int,
    roles: int,
    shuffle_buffer: int,
    shuffle_shards: bool = True,
) -> RolePlan:
    """The plan of ``role`` (of ``roles``) in ``epoch`` over shards with sample ``counts``."""
    order = shard_order(len(counts), seed, epoch) if shuffle_shards else list(range(len(counts)))
    lo, hi = split_range(int(sum(counts)), roles, role)
    key = hash_ints(seed, epoch, role, roles, 0xB0FF)
    return RolePlan(range_pieces(counts, order, lo, hi), buffer_order(hi - lo, shuffle_buffer, key))


def choose(weights: Sequence[float], key: int, start: int, stop: int) -> np.ndarray:
    """Which source (index into ``weights``) each draw ``start .. stop-1`` of a mixture takes."""
    w = np.asarray(weights, dtype=np.float64)
    cdf = np.cumsum(w / w.sum())
    cdf[-1] = 1.0
    u = uniform(key, np.arange(start, stop, dtype=np.uint64))
    return np.searchsorted(cdf, u, side="right").astype(np.int64)
