"""The action bins for the HTML report: occupancy counted over a sample of shards, and each bin's
action values (its interval and the value it decodes to).

Only ``tokens.npy`` is read: the shards are opened seekable and every other member is skipped over
(its header read, its bytes never), so counting costs little more than the tokens themselves.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trajshard.reports.histogram import bin_counts
from trajshard.schemas.sample import load_npy, split_key
from trajshard.tokenizers import from_json


@dataclass
class BinSample:
    counts: np.ndarray  # int64 [D, bins]
    samples: int  # samples counted
    shards: int  # shards read
    shards_total: int
    samples_total: int


def pick_shards(shards: list[dict], budget: int) -> list[dict]:
    """Every shard when the dataset holds at most ``budget`` samples, else shards spread evenly over
    the manifest (first and last included) until about ``budget`` samples are covered."""
    total = sum(s["samples"] for s in shards)
    if total <= budget or len(shards) <= 1:
        return list(shards)
    want = max(1, math.ceil(budget / (total / len(shards))))
    idx = sorted({round(i) for i in np.linspace(0, len(shards) - 1, min(want, len(shards)))})
    return [shards[i] for i in idx]


def iter_members(path: str | Path, want: Callable[[str, str], bool]) -> Iterator[tuple[str, str, bytes]]:
    """(key, field, bytes) of the members ``want(key, field)`` accepts, in file order. The tar is read
    seekable, so the bytes of every other member are skipped, never read."""
    with tarfile.open(path, mode="r:") as tar:
        while (info := tar.next()) is not None:
            tar.members.clear()  # tarfile keeps every header it read; a shard can hold 10^5 members
            if not info.isfile():
                continue
            key, dot, field = info.name.rpartition("/")[2].partition(".")
            if dot and want(key, field):
                yield key, field, tar.extractfile(info).read()


def count_bins(out: Path, tok_doc: dict, manifest: list[dict], budget: int) -> BinSample | None:
    """Bin occupancy per action dimension over the shards :func:`pick_shards` chooses; ``None`` for
    FAST (no per-dimension bins) or a dataset without samples."""
    if tok_doc.get("type") == "fast" or not manifest:
        return None
    lo, hi = tok_doc["token_range"]
    chosen = pick_shards(manifest, budget)
    counts, samples = None, 0
    for shard in chosen:
        for key, _, data in iter_members(out / shard["name"], lambda k, f: f == "tokens.npy"):
            if split_key(key) is None:
                continue
            tokens = load_npy(data)
            if tokens.ndim == 2:  # a chunk: its first row is this step's action
                tokens = tokens[0]
            if counts is None:
                counts = np.zeros((len(tokens), hi - lo + 1), dtype=np.int64)
            counts[np.arange(len(tokens)), np.clip(tokens, lo, hi) - lo] += 1
            samples += 1
    if counts is None:
        return None
    return BinSample(
        bin_counts(counts, tok_doc),
        samples,
        len(chosen),
        len(manifest),
        sum(s["samples"] for s in manifest),
    )


def bin_values(tok_doc: dict, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per dimension and bin (as counted by :func:`bin_counts`): the lowest and highest action value
    the bin takes, the value its token decodes to, and that token. Arrays [D, bins]."""
    tok = from_json(tok_doc)
    lo = tok_doc["token_range"][0]
    tokens = np.arange(lo, lo + bins)
    dims = tok.dims
    centre = tok.decode(np.repeat(tokens[:, None], dims, axis=1)).T
    if tok_doc["type"] == "uniform":
        edges = tok.norm.denormalize(np.repeat(tok.edges[:, None], dims, axis=1)).T  # [D, bins + 1]
        lower, upper = edges[:, :-1], edges[:, 1:]
    elif tok_doc["type"] == "quantile":
        lower, upper = tok.edges[:, :-1], tok.edges[:, 1:]
    else:  # a tokenizer without edges: halfway to the neighbours' values
        mid = (centre[:, 1:] + centre[:, :-1]) / 2
        low, high = tok.bounds()
        lower = np.concatenate([np.asarray(low)[:, None], mid], axis=1)
        upper = np.concatenate([mid, np.asarray(high)[:, None]], axis=1)
    return lower, upper, centre, np.repeat(tokens[None, :], dims, axis=0)
