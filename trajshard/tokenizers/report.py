"""The round-trip report: how far decode(encode(action)) lands from the action, per dimension.

Accumulated per pass-2 task and merged on the driver into ``meta/roundtrip.json``: count, RMSE and
max error in action units and normalized (error divided by half the tokenizer's bounds range), and
the clipping rate (share of values outside the bounds, which land in the edge bins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RoundTrip:
    count: int
    sq: np.ndarray
    max_abs: np.ndarray
    sq_norm: np.ndarray
    max_norm: np.ndarray
    clipped: np.ndarray

    @classmethod
    def empty(cls, dims: int) -> RoundTrip:
        z = np.zeros(dims)
        return cls(0, z.copy(), z.copy(), z.copy(), z.copy(), np.zeros(dims, dtype=np.int64))

    @classmethod
    def measure(cls, actions: np.ndarray, tokenizer) -> RoundTrip:
        x = np.asarray(actions, dtype=np.float64).reshape(-1, actions.shape[-1])
        err = np.abs(tokenizer.decode(tokenizer.encode(x)).astype(np.float64) - x)
        lo, hi = tokenizer.bounds()
        half = np.where(hi > lo, (hi - lo) / 2, 1.0)
        norm = err / half
        return cls(
            len(x),
            (err**2).sum(0),
            err.max(0, initial=0),
            (norm**2).sum(0),
            norm.max(0, initial=0),
            ((x < lo) | (x > hi)).sum(0),
        )

    def merge(self, o: RoundTrip) -> RoundTrip:
        return RoundTrip(
            self.count + o.count,
            self.sq + o.sq,
            np.maximum(self.max_abs, o.max_abs),
            self.sq_norm + o.sq_norm,
            np.maximum(self.max_norm, o.max_norm),
            self.clipped + o.clipped,
        )

    def to_json(self, names: list[str] | None = None) -> dict[str, object]:
        n = max(self.count, 1)
        dims = []
        for d in range(len(self.sq)):
            dims.append(
                {
                    "dim": d,
                    "name": names[d] if names and d < len(names) else "",
                    "rmse": float(np.sqrt(self.sq[d] / n)),
                    "max_error": float(self.max_abs[d]),
                    "rmse_normalized": float(np.sqrt(self.sq_norm[d] / n)),
                    "max_error_normalized": float(self.max_norm[d]),
                    "clip_rate": float(self.clipped[d] / n),
                }
            )
        return {"schema": "trajshard.roundtrip", "version": 1, "count": int(self.count), "dims": dims}
