"""The action bins for the HTML report: occupancy counted over a sample of shards, and each bin's
action values (its interval and the value it decodes to).

Only ``tokens.npy`` is read: every other member is skipped over (its header read, its bytes never),
so counting costs little more than the tokens themselves.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trajshard.io import MAX_MEMBER_BYTES, shard_path
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


_BLOCK = 512


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256, for members of 8 GiB and more
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def iter_members(path: str | Path, want: Callable[[str, str], bool]) -> Iterator[tuple[str, str, bytes]]:
    """(key, field, bytes) of the regular members ``want(key, field)`` accepts, in file order.

    A plain reader of tar headers (ustar, with pax ``path`` records and GNU long names honoured) that
    seeks over the members it does not want: the images are never read, and a header costs a few
    microseconds where ``tarfile`` spends about fifty (it decodes every field of it)."""
    with open(path, "rb", buffering=1 << 16) as f:
        long_name: bytes | None = None
        while True:
            header = f.read(_BLOCK)
            if len(header) < _BLOCK or not header.strip(b"\0"):
                return  # the end-of-archive blocks (or a truncated file)
            size = _octal(header[124:136])
            if size > MAX_MEMBER_BYTES:  # the readers' member limit (io.check_member): never read in one go
                raise ValueError(
                    f"{Path(path).name}: a member declares {size} bytes, more than {MAX_MEMBER_BYTES}"
                )
            padded = -(-size // _BLOCK) * _BLOCK
            kind = header[156:157]
            if kind in (b"x", b"L"):  # the next member's name: a pax path record, or a GNU long name
                data = f.read(padded)[:size]
                long_name = _pax_path(data) if kind == b"x" else data.split(b"\0", 1)[0]
                continue
            name = long_name or header[:100].split(b"\0", 1)[0]
            if long_name is None and header[257:262] == b"ustar" and header[345:346] != b"\0":
                name = header[345:500].split(b"\0", 1)[0] + b"/" + name
            long_name = None
            if kind in (b"0", b"\0"):
                key, dot, field = name.rpartition(b"/")[2].decode("utf-8", "replace").partition(".")
                if dot and want(key, field):
                    yield key, field, f.read(padded)[:size]
                    continue
            f.seek(padded, 1)


def _pax_path(records: bytes) -> bytes | None:
    """The ``path`` of a pax extended header ("<len> path=<name>\\n" records)."""
    for line in records.split(b"\n"):
        _, _, kv = line.partition(b" ")
        if kv.startswith(b"path="):
            return kv[5:]
    return None


class NpyReader:
    """``.npy`` bytes to arrays, parsing each distinct header once (a dataset's members share a few)."""

    def __init__(self) -> None:
        self._headers: dict[bytes, tuple[np.dtype, tuple[int, ...], int]] = {}

    def __call__(self, data: bytes) -> np.ndarray:
        if data[:6] == b"\x93NUMPY" and data[6:7] == b"\x01":
            end = 10 + int.from_bytes(data[8:10], "little")
            known = self._headers.get(data[:end])
            if known is None:
                a = load_npy(data)
                if a.dtype.hasobject or a.dtype.isnative is False or not a.flags.c_contiguous:
                    return a
                known = self._headers[data[:end]] = (a.dtype, a.shape, end)
                return a
            dtype, shape, offset = known
            return np.frombuffer(data, dtype, offset=offset).reshape(shape)
        return load_npy(data)


def count_bins(out: Path, tok_doc: dict, manifest: list[dict], budget: int) -> BinSample | None:
    """Bin occupancy per action dimension over the shards :func:`pick_shards` chooses; ``None`` for
    FAST (no per-dimension bins) or a dataset without samples."""
    if tok_doc.get("type") == "fast" or not manifest:
        return None
    lo, hi = from_json(tok_doc).token_range  # checked: bins and token_range bounded before sizing counts
    chosen = pick_shards(manifest, budget)
    counts, samples, npy = None, 0, NpyReader()
    for shard in chosen:
        rows = []
        for key, _, data in iter_members(shard_path(out, shard["name"]), lambda k, f: f == "tokens.npy"):
            if split_key(key) is not None:
                tokens = npy(data)
                rows.append(tokens[0] if tokens.ndim == 2 else tokens)  # a chunk: row 0 is this step
        if not rows:
            continue
        tokens = np.clip(np.stack(rows), lo, hi) - lo
        if counts is None:
            counts = np.zeros((tokens.shape[1], hi - lo + 1), dtype=np.int64)
        for d in range(tokens.shape[1]):
            counts[d] += np.bincount(tokens[:, d], minlength=hi - lo + 1)
        samples += len(rows)
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
