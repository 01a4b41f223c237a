"""Action chunks: the next ``horizon`` actions of every step (pure)."""

from __future__ import annotations

import numpy as np


def action_chunks(action: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """[T, H, D] chunks ``action[t : t + H]`` padded with the last action, and the [T, H] validity mask."""
    t_len = len(action)
    idx = np.arange(t_len)[:, None] + np.arange(horizon)[None, :]
    mask = idx < t_len
    return action[np.minimum(idx, t_len - 1)], mask
