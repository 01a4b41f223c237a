"""Pass 1: mergeable per-dimension statistics of aligned streams (pure; no video, no Ray).

``StreamStats.from_values(x)`` summarises one episode's [T, D] array; ``merge`` combines two
summaries exactly for count, min, max, mean and std (the parallel variance merge of Chan et al.),
and for quantiles either exactly (while at most ``SKETCH_K`` values per dimension are held) or
through a deterministic compacting sketch (KLL-style levels, weight 2**level). Merging in a fixed
order (sorted episode ids) gives the same bytes whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from trajshard.schemas.metadata import STATS_VERSION

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
SKETCH_K = 1 << 16


@dataclass
class StreamStats:
    count: int
    mean: np.ndarray  # float64 [D]
    m2: np.ndarray  # float64 [D], sum of squared deviations
    min: np.ndarray
    max: np.ndarray
    levels: list[np.ndarray] = field(default_factory=list)  # level i: float32 [n_i, D], weight 2**i

    @classmethod
    def from_values(cls, x: np.ndarray) -> StreamStats:
        x64 = np.asarray(x, dtype=np.float64)
        mean = x64.mean(axis=0)
        return cls(
            len(x64),
            mean,
            ((x64 - mean) ** 2).sum(axis=0),
            x64.min(axis=0),
            x64.max(axis=0),
            [np.asarray(x, dtype=np.float32).copy()],
        )

    @property
    def dims(self) -> int:
        return len(self.mean)

    @property
    def exact(self) -> bool:
        return len(self.levels) <= 1

    def merge(self, other: StreamStats) -> StreamStats:
        if other.dims != self.dims:
            raise ValueError(f"cannot merge statistics of {self.dims} and {other.dims} dimensions")
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / n)
        depth = max(len(self.levels), len(other.levels))
        levels = []
        for i in range(depth):
            parts = [lv[i] for lv in (self.levels, other.levels) if i < len(lv)]
            levels.append(np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0])
        return StreamStats(
            n, mean, m2, np.minimum(self.min, other.min), np.maximum(self.max, other.max), _compact(levels)
        )

    def quantiles(self) -> dict[str, np.ndarray]:
        qs = self.quantile_at(np.array(list(QUANTILES.values())))
        return {k: qs[i] for i, k in enumerate(QUANTILES)}

    def quantile_at(self, levels: np.ndarray) -> np.ndarray:
        """[L, D] quantiles at ``levels`` in [0, 1]: numpy's linear method when exact, else the
        sketch's weighted inverse CDF."""
        levels = np.asarray(levels, dtype=np.float64)
        if self.exact:
            return np.quantile(self.levels[0].astype(np.float64), levels, axis=0).reshape(
                len(levels), self.dims
            )
        values = np.concatenate(self.levels, axis=0).astype(np.float64)
        weights = np.concatenate([np.full(len(lv), 2.0**i) for i, lv in enumerate(self.levels)])
        out = np.empty((len(levels), self.dims))
        for d in range(self.dims):
            order = np.argsort(values[:, d], kind="stable")
            cum = np.cumsum(weights[order])
            pos = np.searchsorted(cum, levels * cum[-1], side="left")
            out[:, d] = values[order[np.minimum(pos, len(cum) - 1)], d]
        return out

    def to_json(self, names: tuple[str, ...] = ()) -> dict[str, object]:
        std = np.sqrt(self.m2 / self.count) if self.count else np.zeros(self.dims)
        d: dict[str, object] = {
            "count": int(self.count),
            "quantile_method": "exact" if self.exact else f"sketch(k={SKETCH_K})",
            "min": _floats(self.min),
            "max": _floats(self.max),
            "mean": _floats(self.mean),
            "std": _floats(std),
        }
        d.update({k: _floats(v) for k, v in self.quantiles().items()})
        if names:
            d["names"] = list(names)
        return d


def _compact(levels: list[np.ndarray]) -> list[np.ndarray]:
    """Halve every over-full level into the next one (each column sorted, every other item kept)."""
    out = list(levels)
    i = 0
    while i < len(out):
        if len(out[i]) > SKETCH_K:
            lv = np.sort(out[i], axis=0)
            keep_n = len(lv) // 2 * 2
            promoted = lv[(len(lv) // 2) % 2 : keep_n : 2]  # offset alternates with size: deterministic
            out[i] = lv[keep_n:]
            if i + 1 == len(out):
                out.append(promoted)
            else:
                out[i + 1] = np.concatenate([out[i + 1], promoted], axis=0)
        i += 1
    return out


def merge_all(parts: list[StreamStats]) -> StreamStats:
    if not parts:
        raise ValueError("no statistics to merge: every episode was quarantined")
    total = parts[0]
    for p in parts[1:]:
        total = total.merge(p)
    return total


def stats_document(streams: dict[str, dict[str, object]]) -> dict[str, object]:
    """The stats.json document, with a content hash over the statistics themselves."""
    body = json.dumps(streams, sort_keys=True, separators=(",", ":")).encode()
    return {
        "schema": "trajshard.stats",
        "version": STATS_VERSION,
        "hash": "sha256:" + hashlib.sha256(body).hexdigest(),
        "streams": streams,
    }


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float64)]
