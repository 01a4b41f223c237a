"""Uniform bins over the normalized range [-1, 1]: the RT-2 / OpenVLA action tokenizer.

Mode ``openvla`` (the default) is OpenVLA's ``ActionTokenizer`` exactly, with ``bins`` edges:

    y      = normalize(x)                       (bounds_q99 by default: 2 (x - q01) / (q99 - q01) - 1)
    edges  = linspace(-1, 1, bins)
    token  = digitize(y, edges)                 in [1, bins]
    centers = (edges[:-1] + edges[1:]) / 2      (bins - 1 intervals)
    x'     = denormalize(centers[clip(token - 1, 0, bins - 2)])

``token == bins`` only when y == +1 exactly and decodes into the last interval; OpenVLA's vocabulary
id is ``vocab_size - token``. Mode ``bins`` has ``bins`` equal intervals and tokens in [0, bins - 1]:

    token = clip(floor((y + 1) / 2 * bins), 0, bins - 1);   x' = denormalize(-1 + (token + 0.5) * 2 / bins)

Values inside the normalization bounds decode within half a bin width at any magnitude, up to float64
rounding (about one float64 step at the bounds' magnitude): ``decode`` computes and returns float64.
Rounding its result to float32 would add up to half a float32 step (7.6e-6 near 152.3, 6% of half a
bin when the bounds are 152.3 +- 0.03).
"""

from __future__ import annotations

import numpy as np

from trajshard.schemas.metadata import TOKENIZER_VERSION
from trajshard.tokenizers.guards import auto_chooser
from trajshard.tokenizers.normalize import Normalizer

MODES = ("openvla", "bins")
FORMULAS = {
    "openvla": "edges = linspace(-1, 1, bins); token = digitize(y, edges) in [1, bins]; "
    "decode: centers = (edges[:-1] + edges[1:]) / 2; y = centers[clip(token - 1, 0, bins - 2)]; x = denormalize(y)",
    "bins": "token = clip(floor((y + 1) / 2 * bins), 0, bins - 1); decode: y = -1 + (token + 0.5) * 2 / bins; "
    "x = denormalize(y)",
}


class UniformTokenizer:
    def __init__(self, norm: Normalizer, bins: int = 256, mode: str = "openvla") -> None:
        if mode not in MODES:
            raise ValueError(f"uniform tokenizer mode must be one of {MODES}, got {mode!r}")
        self.norm = norm
        self.bins = int(bins)
        self.mode = mode
        if mode == "openvla":
            self.edges = np.linspace(-1.0, 1.0, self.bins)
            self.centers = (self.edges[:-1] + self.edges[1:]) / 2.0
        else:
            self.edges = np.linspace(-1.0, 1.0, self.bins + 1)
            self.centers = (self.edges[:-1] + self.edges[1:]) / 2.0

    @classmethod
    def fit(
        cls,
        action_stats: dict,
        bins: int = 256,
        normalization: str | dict = "bounds_q99",
        mask: list[bool] | None = None,
        mode: str = "openvla",
        sketch=None,
        **_: object,
    ) -> UniformTokenizer:
        auto = None if sketch is None else auto_chooser(sketch, action_stats)
        return cls(Normalizer.fit(normalization, action_stats, mask, auto), bins, mode)

    @property
    def dims(self) -> int:
        return self.norm.dims

    @property
    def token_range(self) -> list[int]:
        return [1, self.bins] if self.mode == "openvla" else [0, self.bins - 1]

    def _check(self, a: np.ndarray, what: str) -> np.ndarray:
        a = np.asarray(a)
        if a.shape[-1:] != (self.dims,):
            raise ValueError(f"{what} have shape {list(a.shape)}, expected [..., {self.dims}]")
        return a

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """[..., D] continuous actions -> [..., D] int32 tokens."""
        y = self.norm.normalize(self._check(actions, "actions"))
        if self.mode == "openvla":
            return np.digitize(y, self.edges).astype(np.int32)
        return np.clip(np.floor((y + 1.0) / 2.0 * self.bins), 0, self.bins - 1).astype(np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """[..., D] tokens -> [..., D] float64 actions at the centre of each bin."""
        t = self._check(tokens, "tokens").astype(np.int64)
        lo, hi = self.token_range
        if t.size and (t.min() < lo or t.max() > hi):
            raise ValueError(f"tokens outside [{lo}, {hi}]: min {t.min()}, max {t.max()}")
        idx = np.clip(t - 1, 0, self.bins - 2) if self.mode == "openvla" else t
        return self.norm.denormalize(self.centers[idx])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Action values outside [low, high] are clipped before binning."""
        return self.norm.low_high()

    def tolerance(self) -> np.ndarray:
        """Largest |decode(encode(x)) - x| for x inside the bounds, per dimension (half a bin)."""
        width = 2.0 / (self.bins - 1 if self.mode == "openvla" else self.bins)
        _, half = self.norm._scale()
        return width / 2 * half

    def bin_width(self) -> np.ndarray:
        return 2 * self.tolerance()

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "trajshard.tokenizer",
            "version": TOKENIZER_VERSION,
            "type": "uniform",
            "mode": self.mode,
            "bins": self.bins,
            "token_range": self.token_range,
            "normalization": self.norm.to_json(),
            "formula": FORMULAS[self.mode],
            "openvla_vocab_id": "vocab_size - token" if self.mode == "openvla" else None,
        }

    @classmethod
    def from_json(cls, doc: dict) -> UniformTokenizer:
        return cls(Normalizer.from_json(doc["normalization"]), int(doc["bins"]), doc.get("mode", "openvla"))
