"""What ``describe`` lists of an array source (HDF5, npz, Zarr), from shapes and types alone: one row
per array (kind, dtype, per-step shape, rows), the instruction candidates, and a mapping template
that ingests the source: the state from the robot's keys (never an object's pose), the action,
the image arrays as cameras.
"""

from __future__ import annotations

import numpy as np

from trajshard.sources import arrays
from trajshard.sources.listing import KeyInfo

TIME_KEYS = ("timestamp", "timestamps", "time", "t")
WHOLE_STATE = ("state", "states", "proprio", "robot_state", "observation.state", "agent_pos")  # a state alone
INSTRUCTION_WORDS = ("task", "instruction", "language", "prompt", "goal", "env")


def kind_of(shape: tuple[int, ...], dtype: np.dtype, jpeg: bool = False) -> str:
    dtype = np.dtype(dtype)
    if jpeg or arrays.is_gray(shape, dtype) or arrays.is_image(shape, dtype):
        return "camera"
    if arrays.is_numeric(shape, dtype):
        return "numeric"
    if dtype.kind in "SUO":
        return "text"
    return "other"


def array_info(
    key: str, shape: tuple[int, ...], dtype, rate: float | None, detail: str = "", jpeg: bool = False
) -> KeyInfo:
    """One array's row: per-step shape, rows, and the rate and span at ``rate`` (step-indexed)."""
    kind = kind_of(shape, dtype, jpeg)
    if kind == "numeric" and arrays.leaf(key).lower() in TIME_KEYS:
        kind = "time"
    n = int(shape[0]) if shape else None
    span = (0.0, (n - 1) / rate) if rate and n else None
    per_step = (*shape[1:3], 3) if kind == "camera" and not jpeg else tuple(int(d) for d in shape[1:])
    dtype_text = "jpeg" if jpeg else str(np.dtype(dtype))
    detail = detail or ("padded JPEG bytes, one row per frame" if jpeg else "")
    return KeyInfo(key, kind, dtype_text, per_step, rate if n else None, span, n, (), detail)


def text_info(key: str, text: str, where: str) -> KeyInfo:
    """A text attribute or field: an instruction candidate."""
    shown = " ".join(str(text).split())
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return KeyInfo(
        key, "text", "string", (), None, None, None, (), f"{where}: {shown!r}; instruction candidate"
    )


def template(keys: list[KeyInfo], pool: list[str] | None = None) -> tuple[dict, list[str]]:
    """The mapping template of an array source and the notes on what it guessed. ``pool``: the state
    candidates (default every numeric key but the action)."""
    numeric = [k.key for k in keys if k.kind == "numeric"]
    action = next((k for k in numeric if arrays.leaf(k) in arrays.ACTION_KEYS), None)
    pool = [k for k in (pool if pool is not None else numeric) if k != action]
    named = [k for k in pool if arrays.leaf(k) in WHOLE_STATE]
    state = named[:1] or arrays.template_state(pool)
    cameras: dict[str, str] = {}
    for k in (k.key for k in keys if k.kind == "camera"):
        name = arrays.camera_name(k)
        cameras[name if name not in cameras else k.replace("/", "_")] = k
    out: dict = {}
    notes = []
    if state:
        out["state"] = state
    else:
        notes.append("no key looks like the robot's state: name it with mapping.state")
    if action:
        out["action"] = [action]
    else:
        notes.append("no action or actions key: name the action with mapping.action")
    if cameras:
        out["cameras"] = cameras
    left = [k for k in pool if k not in state]
    if left and not named:  # a guess: the keys left out are written down, for the user to check
        out["exclude"] = left
        notes.append(
            f"the state was chosen by key name (robot joints, gripper, end effector); left out: {left}"
        )
    return out, notes
