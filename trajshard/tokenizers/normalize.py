"""Normalization of actions into [-1, 1] before binning, from dataset-wide statistics.

    bounds_q99  y = 2 (x - q01) / (q99 - q01) - 1         (OpenVLA)
    min_max     y = 2 (x - min) / (max - min) - 1
    mean_std    y = (x - mean) / (3 std)                  (the bins cover mean +- 3 std)
    none        y = x                                      (actions already in [-1, 1])

then ``y = clip(y, -1, 1)``. A dimension whose scale is zero (constant) gets y = 0 and decodes to
its constant. A dimension with ``mask[d] == False`` is left alone: y = x (for example a gripper
already in [-1, 1]), like OpenVLA's normalization mask.
"""

from __future__ import annotations

import numpy as np

MODES = ("bounds_q99", "min_max", "mean_std", "none")
FORMULAS = {
    "bounds_q99": "y = 2*(x - q01)/(q99 - q01) - 1",
    "min_max": "y = 2*(x - min)/(max - min) - 1",
    "mean_std": "y = (x - mean)/(3*std)",
    "none": "y = x",
}


class Normalizer:
    """``y = (x - center) / half_width`` per dimension, clipped to [-1, 1]; ``x = center + y * half_width``."""

    def __init__(self, mode: str, center: np.ndarray, half_width: np.ndarray, mask: np.ndarray | None = None):
        if mode not in MODES:
            raise ValueError(f"normalization must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.center = np.asarray(center, dtype=np.float64)
        self.half_width = np.asarray(half_width, dtype=np.float64)
        dims = len(self.center)
        self.mask = np.ones(dims, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if self.half_width.shape != (dims,) or self.mask.shape != (dims,):
            raise ValueError(f"normalization vectors must all have {dims} entries")
        if np.any(self.half_width < 0) or not np.all(np.isfinite(self.half_width)):
            raise ValueError("normalization scale must be finite and >= 0")

    @classmethod
    def fit(cls, mode: str, stats: dict, mask: list[bool] | None = None) -> Normalizer:
        """From the ``stats.json`` entry of the action stream."""
        if mode == "bounds_q99":
            lo, hi = np.asarray(stats["q01"]), np.asarray(stats["q99"])
            center, half = (lo + hi) / 2, (hi - lo) / 2
        elif mode == "min_max":
            lo, hi = np.asarray(stats["min"]), np.asarray(stats["max"])
            center, half = (lo + hi) / 2, (hi - lo) / 2
        elif mode == "mean_std":
            center, half = np.asarray(stats["mean"]), 3 * np.asarray(stats["std"])
        else:
            dims = len(stats["mean"])
            center, half = np.zeros(dims), np.ones(dims)
        if mask is not None and len(mask) != len(center):
            raise ValueError(f"normalization mask has {len(mask)} entries for {len(center)} action dims")
        return cls(mode, center, half, None if mask is None else np.asarray(mask))

    @property
    def dims(self) -> int:
        return len(self.center)

    def _scale(self) -> tuple[np.ndarray, np.ndarray]:
        center = np.where(self.mask, self.center, 0.0)
        half = np.where(self.mask, self.half_width, 1.0)
        return center, half

    def normalize(self, x: np.ndarray) -> np.ndarray:
        center, half = self._scale()
        safe = np.where(half > 0, half, 1.0)
        y = np.clip((np.asarray(x, dtype=np.float64) - center) / safe, -1.0, 1.0)
        return np.where(half > 0, y, 0.0)

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        center, half = self._scale()
        return center + np.asarray(y, dtype=np.float64) * half

    def low_high(self) -> tuple[np.ndarray, np.ndarray]:
        """The action values that map to -1 and +1."""
        center, half = self._scale()
        return center - half, center + half

    def to_json(self) -> dict[str, object]:
        low, high = self.low_high()
        return {
            "mode": self.mode,
            "formula": FORMULAS[self.mode] + "; then y = clip(y, -1, 1); y = 0 where the scale is 0; "
            "masked dims: y = x",
            "center": [float(v) for v in self.center],
            "half_width": [float(v) for v in self.half_width],
            "mask": [bool(v) for v in self.mask],
            "low": [float(v) for v in low],
            "high": [float(v) for v in high],
        }

    @classmethod
    def from_json(cls, doc: dict) -> Normalizer:
        return cls(
            doc["mode"], np.asarray(doc["center"]), np.asarray(doc["half_width"]), np.asarray(doc["mask"])
        )
