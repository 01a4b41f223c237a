"""Equal-mass bins per dimension from the dataset's own distribution.

    edges[d]  = Q_d(linspace(0, 1, bins + 1))             (quantiles of dimension d, from pass 1)
    token     = clip(searchsorted(edges[d][1:-1], x, "right"), 0, bins - 1)     in [0, bins - 1]
    decode    = Q_d((token + 0.5) / bins)                  (the bin's median: a value inside the bin)

Every bin holds about 1/bins of the data, so dense regions get fine bins and rare extremes coarse
ones. Values below Q(0) or above Q(1) fall into the edge bins.
"""

from __future__ import annotations

import numpy as np

from trajshard.schemas.metadata import TOKENIZER_VERSION

FORMULA = (
    "edges[d] = quantiles of dim d at linspace(0, 1, bins + 1); "
    "token = clip(searchsorted(edges[d][1:-1], x, side='right'), 0, bins - 1); "
    "decode: x = representatives[d][token] = quantile of dim d at (token + 0.5) / bins"
)


class QuantileTokenizer:
    def __init__(self, edges: np.ndarray, reps: np.ndarray) -> None:
        self.edges = np.asarray(edges, dtype=np.float64)  # [D, bins + 1]
        self.reps = np.asarray(reps, dtype=np.float64)  # [D, bins]
        if self.edges.ndim != 2 or self.reps.shape != (self.edges.shape[0], self.edges.shape[1] - 1):
            raise ValueError(f"edges {self.edges.shape} and representatives {self.reps.shape} do not match")
        self.bins = self.reps.shape[1]

    @classmethod
    def fit(cls, action_stats: dict, bins: int = 256, sketch=None, **_: object) -> QuantileTokenizer:
        if sketch is None:
            raise ValueError("the quantile tokenizer needs the merged distribution of pass 1")
        edges = sketch.quantile_at(np.linspace(0, 1, bins + 1)).T
        reps = sketch.quantile_at((np.arange(bins) + 0.5) / bins).T
        return cls(edges, reps)

    @property
    def dims(self) -> int:
        return self.edges.shape[0]

    @property
    def token_range(self) -> list[int]:
        return [0, self.bins - 1]

    def encode(self, actions: np.ndarray) -> np.ndarray:
        x = np.asarray(actions, dtype=np.float64)
        if x.shape[-1:] != (self.dims,):
            raise ValueError(f"actions have shape {list(x.shape)}, expected [..., {self.dims}]")
        out = np.empty(x.shape, dtype=np.int32)
        for d in range(self.dims):
            out[..., d] = np.searchsorted(self.edges[d, 1:-1], x[..., d], side="right")
        return out

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """[..., D] tokens -> [..., D] float64 representatives (within ``tolerance()`` of a value in the bin)."""
        t = np.asarray(tokens, dtype=np.int64)
        if t.shape[-1:] != (self.dims,):
            raise ValueError(f"tokens have shape {list(t.shape)}, expected [..., {self.dims}]")
        if t.size and (t.min() < 0 or t.max() >= self.bins):
            raise ValueError(f"tokens outside [0, {self.bins - 1}]: min {t.min()}, max {t.max()}")
        return self.reps[np.arange(self.dims), t]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.edges[:, 0], self.edges[:, -1]

    def tolerance(self) -> np.ndarray:
        """Largest distance from a bin's representative to its edges, per dimension."""
        left = self.reps - self.edges[:, :-1]
        right = self.edges[:, 1:] - self.reps
        return np.maximum(left, right).max(axis=1)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "trajshard.tokenizer",
            "version": TOKENIZER_VERSION,
            "type": "quantile",
            "bins": self.bins,
            "token_range": self.token_range,
            "formula": FORMULA,
            "edges": [[float(v) for v in row] for row in self.edges],
            "representatives": [[float(v) for v in row] for row in self.reps],
        }

    @classmethod
    def from_json(cls, doc: dict) -> QuantileTokenizer:
        return cls(np.asarray(doc["edges"]), np.asarray(doc["representatives"]))
