"""Action tokenizers behind one small interface: ``fit``, ``encode``, ``decode``, ``to_json``, ``from_json``.

``meta/tokenizer.json`` holds everything needed to decode; :func:`decode` needs nothing else.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from trajshard.tokenizers.config import MAX_BINS, TokenizerConfig
from trajshard.tokenizers.fast import FastTokenizer
from trajshard.tokenizers.guards import guard_dims, shapes
from trajshard.tokenizers.quantile import QuantileTokenizer
from trajshard.tokenizers.uniform import UniformTokenizer

__all__ = ["ActionTokenizer", "TokenizerConfig", "decode", "fit", "fit_config", "from_json"]


class ActionTokenizer(Protocol):
    bins: int

    @property
    def dims(self) -> int: ...

    @property
    def token_range(self) -> list[int]: ...
    def encode(self, actions: np.ndarray) -> np.ndarray: ...
    def decode(self, tokens: np.ndarray) -> np.ndarray: ...
    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...
    def tolerance(self) -> np.ndarray: ...
    def to_json(self) -> dict[str, object]: ...


TOKENIZERS = {"uniform": UniformTokenizer, "quantile": QuantileTokenizer, "fast": FastTokenizer}


def from_json(doc: dict[str, object]) -> ActionTokenizer:
    kind = doc.get("type")
    if kind not in TOKENIZERS:
        raise ValueError(f"tokenizer.json: unknown tokenizer type {kind!r}; known: {sorted(TOKENIZERS)}")
    bins = doc.get("bins")  # the uniform tokenizer sizes arrays by it as it is built
    if bins is not None and not (
        isinstance(bins, int) and not isinstance(bins, bool) and 1 <= bins <= MAX_BINS
    ):
        raise ValueError(f"tokenizer.json: bins {bins!r}, not a count from 1 to {MAX_BINS}")
    tokenizer = TOKENIZERS[kind].from_json(doc)
    if not 1 <= tokenizer.bins <= MAX_BINS:  # readers size arrays by it (histogram: dims x token values)
        raise ValueError(f"tokenizer.json: {tokenizer.bins} bins, not a count from 1 to {MAX_BINS}")
    if "token_range" in doc and doc["token_range"] != tokenizer.token_range:
        raise ValueError(
            f"tokenizer.json: token_range {doc['token_range']!r}, the tokenizer's is {tokenizer.token_range}"
        )
    return tokenizer


def fit(kind: str, action_stats: dict[str, object], bins: int, **options: object) -> ActionTokenizer:
    """Fit a tokenizer of ``kind`` from the action statistics of stats.json (and, for ``quantile``,
    ``sketch=`` the merged distribution; for ``fast``, ``chunks=`` a sample of action chunks, ``horizon=``
    and ``scale=``). Options: normalization, mask, mode."""
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {kind!r}; known: {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].fit(action_stats, bins, **options)


def fit_config(
    cfg: TokenizerConfig, action_stats: dict[str, object], sketch=None, chunks: np.ndarray | None = None
) -> ActionTokenizer:
    """The tokenizer the ``tokenizer`` section asks for, fitted on the dataset's action statistics
    (``sketch``: the merged distribution; ``chunks``: a sample of action chunks, for FAST)."""
    return fit(
        cfg.kind,
        action_stats,
        cfg.bins,
        normalization=cfg.normalization,
        mask=list(cfg.normalization_mask) or None,
        mode=cfg.uniform_mode,
        sketch=sketch,
        horizon=cfg.horizon,
        scale=cfg.fast_scale,
        chunks=chunks,
    )


def fitted_document(tokenizer: ActionTokenizer, sketch, action_stats: dict) -> dict[str, object]:
    """tokenizer.json: the tokenizer, and its guards (tokenizers/guards.py) over the merged distribution."""
    names = list(action_stats.get("names", []))
    low, high = tokenizer.bounds()
    guards = (
        guard_dims(shapes(sketch, action_stats), np.asarray(low), np.asarray(high), names) if sketch else []
    )
    return {**tokenizer.to_json(), "guards": guards}


def decode(tokens: np.ndarray, tokenizer_json: dict[str, object]) -> np.ndarray:
    """Decode tokens back to continuous actions using only the contents of tokenizer.json."""
    return from_json(tokenizer_json).decode(tokens)
