"""What the doctor's checks read: an episode's streams, cameras and instructions, the same whether they
come from a source (``doctor/source.py``) or from an output (``doctor/output.py``), and the limits.

Every check sees one :class:`EpisodeView` at a time (memory does not grow with the dataset) and, at
the end, the bounded :class:`DatasetSummary` built from all of them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from trajshard.schemas.problems import Problem

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Limits:
    """The doctor's thresholds (docs/doctor.md explains each)."""

    image_episodes: int = 16  # episodes per camera whose frames are looked at, evenly spaced
    probe_hz: float = 5.0  # frames looked at per second of an episode
    probe_frames: int = 150  # at most this many frames per camera and episode
    detail_frames: int = 4  # of which this many are measured for upscaling
    flat_std: float = 2.0  # grey levels (0-255): a frame with less spread shows nothing
    same_level: float = 0.03  # grey levels: frames closer than this on average are the same picture
    frozen_s: float = 1.0  # identical frames for this long while the robot moves: frozen
    detail_share: float = 0.02  # upscaled: less of the detail energy than this above half Nyquist
    rate_slack: float = 0.05  # a stream may be this much slower than the clock before samples repeat
    jump_sigmas: float = 10.0  # a step beyond this many robust standard deviations of the steps ...
    jump_range: float = 0.5  # ... and larger than this share of the dimension's range in the dataset
    jump_floor: float = 0.01  # dimensions whose range is under this share of the stream's widest: left out
    idle_step: float = 1e-3  # idle: every dimension moves less than this share of its range ...
    idle_min_s: float = 0.5  # ... for at least this long ...
    idle_min_steps: int = 7  # ... and this many steps (openpi's DROID filter: 7)
    duration_share: float = 0.1  # video and tables may differ by this share of the episode
    length_factor: float = 3.0  # an episode this many times shorter or longer than the median


@dataclass(frozen=True)
class Series:
    """A numeric stream of an episode: values [N, D] at times [N] (seconds)."""

    times: np.ndarray
    values: np.ndarray
    names: tuple[str, ...] = ()

    @property
    def rate_hz(self) -> float:
        d = np.diff(self.times)
        return float(1.0 / np.median(d)) if len(d) and np.median(d) > 0 else 0.0

    @property
    def duration_s(self) -> float:
        return float(self.times[-1] - self.times[0]) if len(self.times) else 0.0


@dataclass(frozen=True)
class FrameProbe:
    """One looked-at frame: its time, its grey levels at most about 128 pixels a side (to compare
    frames), their mean and spread, and, when measured, its detail per axis (horizontal, vertical):
    the share of the detail energy above half the Nyquist frequency."""

    time: float
    grey: np.ndarray  # uint8 [h, w]
    mean: float
    std: float
    detail: tuple[float, float] | None = None
    cutoff: tuple[float, float] | None = None


@dataclass(frozen=True)
class CameraView:
    """A camera of an episode and the frames looked at (none when its frames were not sampled)."""

    name: str
    width: int = 0
    height: int = 0
    frames: tuple[FrameProbe, ...] = ()


@dataclass(frozen=True)
class EpisodeView:
    """One episode as the checks see it.

    ``streams`` holds ``state`` and ``action`` (a source's own samples, or an output's ticks);
    ``rates`` and ``spans`` the source's rate (Hz) and duration (s) of each stream and camera by
    its name in the alignment report (``proprio``, ``action``, the cameras); ``instructions`` the
    distinct texts in the order they first hold."""

    episode: str
    streams: dict[str, Series]
    cameras: dict[str, CameraView]
    instructions: tuple[str, ...]
    rates: dict[str, float] = field(default_factory=dict)
    spans: dict[str, float] = field(default_factory=dict)
    sampled: bool = False  # the cameras' frames were looked at

    @property
    def duration_s(self) -> float:
        st = self.streams.get("state") or next(iter(self.streams.values()), None)
        return st.duration_s if st is not None else 0.0

    @property
    def motion(self) -> Series | None:
        """The stream whose changes say whether the robot moves: the action, else the state."""
        return self.streams.get("action") or self.streams.get("state")

    def content_hash(self) -> bytes:
        h = hashlib.sha256()
        for name in sorted(self.streams):
            v = np.ascontiguousarray(self.streams[name].values, dtype=np.float32)
            h.update(name.encode() + str(v.shape).encode() + v.tobytes())
        return h.digest()[:16]


@dataclass
class Facts:
    """What the checks know about the whole dataset besides its episodes."""

    mode: str  # "source" or "output"
    episodes_planned: int = 0
    target_hz: float | None = None  # the clock; None when it follows a camera
    clock_camera: str | None = None
    gripper: dict | None = None  # the declared binary gripper convention (dim, ...)
    gripper_binarized: bool = False  # the values seen are already binarized (an output)
    declared_tasks: list[str] | None = None  # the source's own task list, when it has one
    notes: list[str] = field(default_factory=list)
    unusable: list[Problem] = field(default_factory=list)


@dataclass
class DatasetSummary:
    """What the dataset checks need, gathered episode by episode in bounded memory: per-dimension
    minimum and maximum, episode lengths, content hashes, instruction counts, gripper values."""

    episodes: int = 0
    sampled: Counter = field(default_factory=Counter)  # camera -> episodes whose frames were looked at
    low: dict[str, np.ndarray] = field(default_factory=dict)
    high: dict[str, np.ndarray] = field(default_factory=dict)
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    durations: list[tuple[str, float]] = field(default_factory=list)
    hashes: dict[bytes, list[str]] = field(default_factory=dict)
    instructions: Counter = field(default_factory=Counter)  # text -> episodes
    details: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # camera -> measured frames
    gripper_values: set = field(default_factory=set)  # distinct gripper values, at most a few kept
    collected: dict[str, list] = field(default_factory=dict)  # check code -> its records of episodes

    def add(self, view: EpisodeView, gripper_dim: int | None) -> None:
        self.episodes += 1
        for name, st in view.streams.items():
            if not len(st.values):
                continue
            lo, hi = st.values.min(axis=0), st.values.max(axis=0)
            if name in self.low and self.low[name].shape == lo.shape:
                self.low[name] = np.minimum(self.low[name], lo)
                self.high[name] = np.maximum(self.high[name], hi)
            elif name not in self.low:
                self.low[name], self.high[name], self.names[name] = lo, hi, st.names
        self.durations.append((view.episode, view.duration_s))
        self.hashes.setdefault(view.content_hash(), []).append(view.episode)
        self.instructions.update(set(view.instructions))
        for name, cam in view.cameras.items():
            if view.sampled and cam.frames:
                self.sampled[name] += 1
                self.details.setdefault(name, []).extend(f.detail for f in cam.frames if f.detail)
        action = view.streams.get("action")
        if gripper_dim is not None and action is not None and 0 <= gripper_dim < action.values.shape[1]:
            if len(self.gripper_values) <= 2:
                self.gripper_values.update(np.unique(action.values[:, gripper_dim])[:3].tolist())


def evenly_spaced(n: int, k: int) -> list[int]:
    """``k`` positions spread evenly over ``range(n)`` (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({i * n // k for i in range(k)})
