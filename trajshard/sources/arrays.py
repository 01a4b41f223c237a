"""What the array readers (HDF5, npz, Zarr) share: bounds on what a declared shape may make a worker
allocate, which keys look like a robot's state and which like an object's, image arrays as frames,
and the defaults a mapping template starts from.

Invariant: every bound is checked on a declared shape, before a byte of the array is read.
"""

from __future__ import annotations

import re

import av
import numpy as np

from trajshard.schemas.episode import EpisodeError
from trajshard.sources.mapping import Part
from trajshard.sources.tables import episode_budget

MAX_ARRAY_BYTES = 512 << 20  # a state or action array read whole (docs/robustness.md)
MAX_FRAME_BYTES = 64 << 20  # one image (a 4096 x 4096 RGB frame is 48 MiB)
MAX_CHUNK_BYTES = 512 << 20  # one stored chunk, which a chunked store decompresses whole
ACTION_KEYS = ("action", "actions")
STATE_KEYS = ("state", "states", "proprio", "qpos", "robot_state", "agent_pos", "observation.state")
ROBOT_WORDS = ("joint", "qpos", "gripper", "eef", "ee_", "proprio", "state", "robot", "agent", "tcp")
OBJECT_WORDS = ("object", "obj_", "cube", "target", "goal", "block", "keypoint")
IMAGE_WORDS = ("image", "img", "rgb", "camera", "cam")


def declared_bytes(shape: tuple[int, ...], itemsize: int) -> int:
    return int(np.prod(shape, dtype=np.float64)) * int(itemsize)


def check_array(eid: str, where: str, shape: tuple[int, ...], itemsize: int = 4) -> None:
    """EpisodeError when an array of ``shape`` would take more than MAX_ARRAY_BYTES as float32 (or
    as its own ``itemsize`` when it is read as stored and that is wider), or more than this
    process's episode budget (sources/tables.py), which can only lower it (its declared size: a
    tiny file of never-written chunks can declare terabytes)."""
    nbytes = declared_bytes(shape, max(4, itemsize))
    limit = min(MAX_ARRAY_BYTES, episode_budget())
    if nbytes > limit:
        raise EpisodeError(
            eid,
            where,
            f"declares {list(shape)} values ({nbytes / 2**20:.0f} MiB as float32), "
            f"more than the {limit >> 20} MiB a state or action array may take",
        )


def check_frames(eid: str, where: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """EpisodeError unless ``shape`` is images a camera can show: [T, H, W, 3] or [T, H, W] (grayscale)
    of uint8, or of floats holding 0-255 values (diffusion_policy's Push-T ``img``), each frame at most
    MAX_FRAME_BYTES."""
    dtype = np.dtype(dtype)
    if (
        (dtype != np.uint8 and dtype.kind != "f")
        or len(shape) not in (3, 4)
        or (len(shape) == 4 and shape[3] != 3)
    ):
        raise EpisodeError(
            eid, where, f"is {dtype} {list(shape)}, not images (uint8 or float [T, H, W, 3] or [T, H, W])"
        )
    if declared_bytes(shape[1:], dtype.itemsize) > MAX_FRAME_BYTES:
        raise EpisodeError(
            eid, where, f"declares frames of {list(shape[1:])}: more than {MAX_FRAME_BYTES >> 20} MiB each"
        )


def is_image(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """uint8 [T, H, W, 3]: a camera without asking."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 4 and shape[3] == 3


def is_gray(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """uint8 [T, H, W] with H, W at least 8: grayscale images (not a small table of bytes)."""
    return np.dtype(dtype) == np.uint8 and len(shape) == 3 and min(shape[1:]) >= 8


def is_numeric(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """One number or one vector per step, of a numeric type: a state or action candidate."""
    return np.dtype(dtype).kind in "biuf" and len(shape) in (1, 2)


def leaf(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def is_object_key(key: str) -> bool:
    name = leaf(key).lower()
    return any(w in name for w in OBJECT_WORDS) and not any(w in name for w in ("robot", "joint", "gripper"))


def template_state(candidates: list[str]) -> list[str]:
    """The keys a mapping template puts in the state: the robot's (joints, gripper, end effector),
    never an object's pose; all non-object keys when none says it is the robot's."""
    robot = [k for k in candidates if not is_object_key(k) and any(w in leaf(k).lower() for w in ROBOT_WORDS)]
    return robot or [k for k in candidates if not is_object_key(k)]


def camera_name(key: str) -> str:
    """The output name of an image key: its last path part without an ``_image`` suffix."""
    return leaf(key).removesuffix("_image") or leaf(key)


def camera_names(keys: list[str]) -> dict[str, str]:
    """Output name -> key for image keys: ``camera_name(key)``, or the key's whole last part when
    two keys would share a name (``wrist`` and ``wrist_image``), so no camera is lost to a clash."""
    short = [camera_name(k) for k in keys]
    names = [n if short.count(n) == 1 else leaf(k) for n, k in zip(short, keys, strict=True)]
    return {n if names.count(n) == 1 else k.replace("/", "_"): k for n, k in zip(names, keys, strict=True)}


def first_present(names: list[str] | set[str], wanted: tuple[str, ...]) -> str | None:
    return next((w for w in wanted if w in names), None)


def array_frame(pixels: np.ndarray, pts: int) -> av.VideoFrame:
    """A stored image (uint8 [H, W, 3], or [H, W] grayscale; floats are 0-255 values, rounded) as a
    frame the render stage takes."""
    pixels = np.asarray(pixels)
    if pixels.dtype.kind == "f":
        pixels = np.clip(np.rint(np.nan_to_num(pixels)), 0, 255)
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
    frame.pts = pts
    return frame


def seconds(raw: np.ndarray) -> np.ndarray:
    """Recorded times as float64 seconds since the first: integers are nanoseconds (subtracted as
    integers, so epoch nanoseconds stay exact), floats seconds."""
    if raw.dtype.kind in "iu":
        return (raw.astype(np.int64) - np.int64(raw[0])) / 1e9
    t = raw.astype(np.float64)
    return t - t[0]


def natural_key(path: object) -> tuple[tuple[int, ...], str]:
    """Name order with each run of digits read as a number (``2.jpg`` before ``10.jpg``, ``a1_b10``
    before ``a2_b1``)."""
    name = getattr(path, "name", str(path))
    return tuple(int(run) for run in re.findall(r"\d+", name)), name


def labels_text(values: np.ndarray) -> list[str]:
    """Per-step labels (bytes or str) as text."""
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values.tolist()]


def parts_text(parts: tuple[Part, ...]) -> str:
    return ", ".join(p.key for p in parts)
