"""Action transforms applied after alignment, before statistics and tokens (pure).

Gripper binarization: ``gripper = {dim, threshold, closed_when = "above"|"below", closed = 1.0,
open = 0.0}`` in the job config turns the gripper dimension into two values; the convention is
recorded in ``meta/info.json`` so a trainer knows which value means closed (LIBERO issue 72).
"""

from __future__ import annotations

import numpy as np

from trajshard.schemas.episode import EpisodeError

GRIPPER_KEYS = {"dim", "threshold", "closed_when", "closed", "open"}


def gripper_convention(spec: dict) -> dict[str, object]:
    """The full convention with defaults, as recorded in info.json."""
    unknown = sorted(set(spec) - GRIPPER_KEYS)
    if unknown or "dim" not in spec or "threshold" not in spec:
        raise ValueError(
            f"gripper needs dim and threshold (and optionally closed_when, closed, open); got {spec}"
        )
    conv = {
        "dim": int(spec["dim"]),
        "threshold": float(spec["threshold"]),
        "closed_when": spec.get("closed_when", "above"),
        "closed": float(spec.get("closed", 1.0)),
        "open": float(spec.get("open", 0.0)),
        "binarized": True,
    }
    if conv["closed_when"] not in ("above", "below"):
        raise ValueError(f"gripper.closed_when must be 'above' or 'below', got {conv['closed_when']!r}")
    return conv


def binarize_gripper(action: np.ndarray, spec: dict, episode_id: str = "") -> np.ndarray:
    conv = gripper_convention(spec)
    d = conv["dim"]
    if not 0 <= d < action.shape[1]:
        raise EpisodeError(
            episode_id, "action", f"gripper dim {d} does not exist in {action.shape[1]}-D actions"
        )
    raw = action[:, d]
    closed = raw > conv["threshold"] if conv["closed_when"] == "above" else raw < conv["threshold"]
    out = action.copy()
    out[:, d] = np.where(closed, conv["closed"], conv["open"]).astype(action.dtype)
    return out
