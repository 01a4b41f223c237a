"""Normalization of actions into [-1, 1] before binning, from dataset-wide statistics.

    bounds_q99  y = 2 (x - q01) / (q99 - q01) - 1         (OpenVLA)
    min_max     y = 2 (x - min) / (max - min) - 1
    mean_std    y = (x - mean) / (3 std)                  (the bins cover mean +- 3 std)
    none        y = x                                      (actions already in [-1, 1])

then ``y = clip(y, -1, 1)``. A dimension whose scale is zero (constant) gets y = 0 and decodes to
its constant. A dimension with ``mask[d] == False`` is left alone: y = x (for example a gripper
already in [-1, 1]), like OpenVLA's normalization mask.

The mode may differ per dimension: ``{"default": "bounds_q99", "dims": {"1": "min_max"}}``, or
``auto``, which picks per dimension (tokenizers/guards.py ``auto_mode``): min/max for a dimension whose
values are mostly one value with rare commands, or that takes a few values only (a binary gripper),
where q01/q99 bounds would clip the commands away; bounds_q99 (OpenVLA's) for every other dimension.
The choice and its reason are recorded in tokenizer.json.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MODES = ("bounds_q99", "min_max", "mean_std", "none")
SPECS = (*MODES, "auto")  # what a job config may name, as the mode of all dims or of one
FORMULAS = {
    "bounds_q99": "y = 2*(x - q01)/(q99 - q01) - 1",
    "min_max": "y = 2*(x - min)/(max - min) - 1",
    "mean_std": "y = (x - mean)/(3*std)",
    "none": "y = x",
}


class Normalizer:
    """``y = (x - center) / half_width`` per dimension, clipped to [-1, 1]; ``x = center + y * half_width``.

    ``modes``: each dimension's mode when they differ (``mode`` is then ``per_dim``); ``chosen``: why
    ``auto`` picked a dimension's mode."""

    def __init__(
        self,
        mode: str,
        center: np.ndarray,
        half_width: np.ndarray,
        mask: np.ndarray | None = None,
        modes: list[str] | None = None,
        chosen: dict[str, str] | None = None,
    ):
        if mode not in MODES and not (mode == "per_dim" and modes):
            raise ValueError(f"normalization must be one of {MODES}, got {mode!r}")
        if modes is not None and any(m not in MODES for m in modes):
            raise ValueError(f"per-dimension normalization modes must be among {MODES}, got {modes}")
        self.mode, self.modes, self.chosen = mode, modes, chosen or {}
        self.center = np.asarray(center, dtype=np.float64)
        self.half_width = np.asarray(half_width, dtype=np.float64)
        dims = len(self.center)
        self.mask = np.ones(dims, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if self.half_width.shape != (dims,) or self.mask.shape != (dims,):
            raise ValueError(f"normalization vectors must all have {dims} entries")
        if np.any(self.half_width < 0) or not np.all(np.isfinite(self.half_width)):
            raise ValueError("normalization scale must be finite and >= 0")

    @classmethod
    def fit(
        cls, spec: str | dict, stats: dict, mask: list[bool] | None = None, auto: AutoChooser | None = None
    ) -> Normalizer:
        """From the ``stats.json`` entry of the action stream. ``spec``: one mode for every dimension,
        ``auto``, or ``{"default": mode, "dims": {"<dim>": mode}}``; ``auto`` needs the chooser
        (``auto(dim) -> (mode, reason)``)."""
        dims = len(next(stats[k] for k in ("mean", "q01", "min", "q99", "max") if k in stats))
        default, per_dim = (
            (spec, {}) if isinstance(spec, str) else (spec.get("default", "bounds_q99"), spec["dims"])
        )
        wanted = [per_dim.get(str(d), default) for d in range(dims)]
        chosen = {}
        for d, m in enumerate(wanted):
            if m == "auto":
                if auto is None:
                    raise ValueError("normalization auto needs the merged distribution of pass 1")
                wanted[d], chosen[str(d)] = auto(d)
        bounds = {m: _center_half(m, stats) for m in set(wanted)}
        center = np.array([bounds[m][0][d] for d, m in enumerate(wanted)], dtype=np.float64)
        half = np.array([bounds[m][1][d] for d, m in enumerate(wanted)], dtype=np.float64)
        if mask is not None and len(mask) != len(center):
            raise ValueError(f"normalization mask has {len(mask)} entries for {len(center)} action dims")
        same = len(set(wanted)) == 1 and not chosen
        return cls(
            wanted[0] if same else "per_dim",
            center,
            half,
            None if mask is None else np.asarray(mask),
            None if same else wanted,
            chosen,
        )

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
        formula = (
            FORMULAS[self.mode]
            if self.modes is None
            else "per dimension, by modes[d]: "
            + "; ".join(f"{m}: {FORMULAS[m]}" for m in sorted(set(self.modes)))
        )
        doc: dict[str, object] = {
            "mode": self.mode,
            "formula": formula + "; then y = clip(y, -1, 1); y = 0 where the scale is 0; masked dims: y = x",
            "center": [float(v) for v in self.center],
            "half_width": [float(v) for v in self.half_width],
            "mask": [bool(v) for v in self.mask],
            "low": [float(v) for v in low],
            "high": [float(v) for v in high],
        }
        if self.modes is not None:
            doc["modes"] = list(self.modes)
        if self.chosen:
            doc["auto"] = dict(self.chosen)
        return doc

    @classmethod
    def from_json(cls, doc: dict) -> Normalizer:
        return cls(
            doc["mode"],
            np.asarray(doc["center"]),
            np.asarray(doc["half_width"]),
            np.asarray(doc["mask"]),
            doc.get("modes"),
            doc.get("auto"),
        )


AutoChooser = Callable[[int], tuple[str, str]]


def _center_half(mode: str, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every dimension's center and half width under one mode."""
    if mode == "bounds_q99":
        lo, hi = np.asarray(stats["q01"]), np.asarray(stats["q99"])
        return (lo + hi) / 2, (hi - lo) / 2
    if mode == "min_max":
        lo, hi = np.asarray(stats["min"]), np.asarray(stats["max"])
        return (lo + hi) / 2, (hi - lo) / 2
    if mode == "mean_std":
        return np.asarray(stats["mean"]), 3 * np.asarray(stats["std"])
    dims = len(next(stats[k] for k in ("mean", "q01", "min", "q99", "max") if k in stats))
    return np.zeros(dims), np.ones(dims)


def spec_problems(spec: object) -> list[str]:
    """What is wrong with a job config's ``normalization``."""
    if isinstance(spec, str):
        return [] if spec in SPECS else [f"normalization must be one of {SPECS}, got {spec!r}"]
    if (
        not isinstance(spec, dict)
        or set(spec) - {"default", "dims"}
        or not isinstance(spec.get("dims"), dict)
    ):
        return [f"normalization must be a mode or {{default = mode, dims = {{<dim> = mode}}}}, got {spec!r}"]
    modes = [spec.get("default", "bounds_q99"), *spec["dims"].values()]
    bad_dims = [k for k in spec["dims"] if not str(k).isdigit()]
    return [f"normalization mode {m!r} is not one of {SPECS}" for m in modes if m not in SPECS] + [
        f"normalization.dims keys are action dimensions (0, 1, ...), got {k!r}" for k in bad_dims
    ]
