"""Uniform bins over [q01, q99], the RT-2 / OpenVLA action tokenizer, OpenVLA-exact.

    y     = clip(2 * (x - q01) / (q99 - q01) - 1, -1, 1)      (y = 0 where q01 == q99)
    edges = linspace(-1, 1, bins)
    token = digitize(y, edges)                                  in [1, bins]
    x'    = q01 + (centers[clip(token - 1, 0, bins - 2)] + 1) * (q99 - q01) / 2
    centers = (edges[:-1] + edges[1:]) / 2                      (bins - 1 centres)

This is OpenVLA's ``ActionTokenizer`` (prismatic/vla/action_tokenizer.py) with its
``bounds_q99`` normalisation: ``bins`` edges make ``bins - 1`` intervals, ``token == bins`` only
when y == +1 exactly (x >= q99), and it decodes into the last interval. OpenVLA's vocabulary id is
``vocab_size - token``. Values inside [q01, q99] decode within half a bin width, (q99 - q01) / (bins - 1) / 2.
"""

from __future__ import annotations

import numpy as np

from trajshard.schemas.metadata import TOKENIZER_VERSION

FORMULA = (
    "y = clip(2*(x - low)/(high - low) - 1, -1, 1), y = 0 where high == low; "
    "edges = linspace(-1, 1, bins); token = digitize(y, edges) in [1, bins]; "
    "decode: centers = (edges[:-1] + edges[1:]) / 2; "
    "x = low + (centers[clip(token - 1, 0, bins - 2)] + 1) * (high - low) / 2"
)


class UniformTokenizer:
    def __init__(self, low: np.ndarray, high: np.ndarray, bins: int = 256) -> None:
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or self.low.ndim != 1:
            raise ValueError(f"low {self.low.shape} and high {self.high.shape} must be matching vectors")
        if np.any(self.high < self.low):
            raise ValueError("high must be >= low in every dimension")
        self.bins = int(bins)
        self.edges = np.linspace(-1.0, 1.0, self.bins)
        self.centers = (self.edges[:-1] + self.edges[1:]) / 2.0

    @classmethod
    def fit(cls, action_stats: dict[str, object], bins: int = 256) -> UniformTokenizer:
        return cls(np.asarray(action_stats["q01"]), np.asarray(action_stats["q99"]), bins)

    @property
    def dims(self) -> int:
        return len(self.low)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        span = self.high - self.low
        safe = np.where(span > 0, span, 1.0)
        y = np.clip(2.0 * (x - self.low) / safe - 1.0, -1.0, 1.0)
        return np.where(span > 0, y, 0.0)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """[..., D] continuous actions -> [..., D] int32 tokens in [1, bins]."""
        actions = np.asarray(actions)
        if actions.shape[-1:] != (self.dims,):
            raise ValueError(f"actions have shape {actions.shape}, expected [..., {self.dims}]")
        return np.digitize(self.normalize(actions), self.edges).astype(np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """[..., D] tokens -> [..., D] float32 actions at the centre of each bin."""
        tokens = np.asarray(tokens)
        if tokens.shape[-1:] != (self.dims,):
            raise ValueError(f"tokens have shape {tokens.shape}, expected [..., {self.dims}]")
        y = self.centers[np.clip(tokens.astype(np.int64) - 1, 0, self.bins - 2)]
        return (self.low + (y + 1.0) * (self.high - self.low) / 2.0).astype(np.float32)

    def bin_width(self) -> np.ndarray:
        """Width of one bin in action units, per dimension."""
        return (self.high - self.low) / (self.bins - 1)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "trajshard.tokenizer",
            "version": TOKENIZER_VERSION,
            "type": "uniform",
            "mode": "openvla",
            "normalization": "bounds_q99",
            "bins": self.bins,
            "token_range": [1, self.bins],
            "low": [float(v) for v in self.low],
            "high": [float(v) for v in self.high],
            "formula": FORMULA,
            "openvla_vocab_id": "vocab_size - token",
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> UniformTokenizer:
        return cls(np.asarray(doc["low"]), np.asarray(doc["high"]), int(doc["bins"]))
