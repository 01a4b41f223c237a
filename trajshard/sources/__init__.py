"""Readers that yield Episode objects. Only sources/ and pipelines/shards.py touch the file system.

Every source has ``root``, ``format``, ``plan() -> (episode ids, [Problem] rejected)``,
``load(episode_id) -> Episode`` (or EpisodeError) and ``check(episode_id) -> [Problem]``. A job
describes its source once, as a :class:`SourceSpec`, and each task opens it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from trajshard.io import printable_name
from trajshard.schemas.problems import Problem
from trajshard.schemas.raw_layout import EPISODE_ID_RE
from trajshard.sources.hdf5 import HDF5Source
from trajshard.sources.lerobot import LeRobotSource
from trajshard.sources.mapping import as_mapping, mapping_problems
from trajshard.sources.mcap_ros2 import McapSource
from trajshard.sources.npz import NpzSource
from trajshard.sources.raw import RawSource
from trajshard.sources.remote import StagedRawSource
from trajshard.sources.rlds import RLDSSource
from trajshard.sources.video import decode_frames
from trajshard.sources.zarr_buffer import ZarrSource
from trajshard.storage import is_remote, local_path, redact

SOURCES = {
    "raw": RawSource,
    "lerobot": LeRobotSource,
    "rlds": RLDSSource,
    "hdf5": HDF5Source,
    "mcap": McapSource,
    "npz": NpzSource,
    "zarr": ZarrSource,
}
FORMATS = ("auto", *SOURCES)
STEP_INDEXED = {"rlds", "hdf5", "npz", "zarr"}
MAPPED = {"lerobot", "mcap", "hdf5", "npz", "zarr", "rlds"}  # the formats whose reader takes a source mapping
STORED_IMAGES = {
    "jpeg-sequence",
    "hdf5-array",
    "hdf5-jpeg",
    "mcap-image",
    "npz-array",
    "npz-files",
    "zarr-array",
}


@dataclass(frozen=True)
class SourceConfig:
    """The ``source`` section of a job config: how to read SOURCE."""

    format: str = "auto"
    source_fps: float | None = None  # step rate of step-indexed sources (RLDS, HDF5); None: the clock's
    mcap: dict[str, object] = field(default_factory=dict)  # state_topic, action_topic, cameras, stamp
    mapping: dict[str, object] = field(default_factory=dict)  # the source mapping (sources/mapping.py)

    CHOICES = {"format": FORMATS}

    def problems(self) -> list[str]:
        out = []
        if self.format not in FORMATS:
            out.append(f"format must be one of {FORMATS}, got {self.format!r}")
        if self.source_fps is not None and not self.source_fps > 0:
            out.append(f"source_fps must be positive, got {self.source_fps}")
        return out + (mapping_problems(self.mapping) if self.mapping else [])


@dataclass(frozen=True)
class SourceSpec:
    """A source described once, on the driver, for every task to open: where it is, its format (never
    ``auto``), the step rate of step-indexed formats and the topics of ROS 2 recordings."""

    path: str
    format: str
    step_rate: float
    mcap: dict[str, object] = field(default_factory=dict)
    mapping: dict[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, path: str | os.PathLike, cfg: SourceConfig, fps: float) -> tuple[SourceSpec, object]:
        """The spec of SOURCE and the source opened; step-indexed data steps at ``source_fps``, else
        at the target clock's ``fps``."""
        step_rate = cfg.source_fps or fps
        source = open_source(path, cfg.format, step_rate, cfg.mcap, cfg.mapping)
        return cls(str(source.root), source.format, step_rate, cfg.mcap, cfg.mapping), source

    def open(self):
        return open_source(self.path, self.format, self.step_rate, self.mcap, self.mapping)


def is_trajshard_output(path: str | os.PathLike) -> bool:
    info = Path(path) / "meta" / "info.json"
    if not info.is_file():
        return False
    try:
        return json.loads(info.read_text(encoding="utf-8")).get("schema") == "trajshard.info"
    except (ValueError, UnicodeDecodeError):
        return False


def detect_format(path: str | os.PathLike) -> str:
    """Guess a source's format from what it holds; raise ValueError when nothing fits."""
    root = Path(path)
    if root.is_file() and root.suffix in (".hdf5", ".h5"):
        return "hdf5"
    if root.is_file() and root.suffix == ".mcap":
        return "mcap"
    if not os.path.lexists(root):
        raise FileNotFoundError(f"{path}: does not exist")
    if not root.is_dir():
        raise ValueError(f"{path}: not a directory, an .hdf5 or an .mcap file")
    if is_trajshard_output(root):
        raise ValueError(f"{path}: this is a trajshard output, not a source")
    if root.suffix == ".zarr" or (
        any((root / m).is_file() for m in (".zgroup", "zarr.json"))
        and (root / "meta" / "episode_ends").exists()
    ):
        return "zarr"
    if (root / "meta" / "info.json").is_file():
        return "lerobot"
    if (root / "features.json").is_file() and any(".tfrecord-" in p.name for p in root.iterdir()):
        return "rlds"
    if any(p.suffix in (".hdf5", ".h5") for p in root.iterdir()):
        return "hdf5"
    if any(p.suffix == ".mcap" for p in root.iterdir()):
        return "mcap"
    for child in sorted(root.iterdir())[:1000]:
        try:
            if child.is_dir() and (child / "episode.json").is_file():
                return "raw"
        except OSError:  # an unreadable entry says nothing about the format; the reader reports it
            continue
    if _has_folder_with(root, ".npz"):
        return "npz"
    if _has_folder_with(root, ".mcap"):  # rosbag2's layout: <episode>/<episode>_0.mcap + metadata.yaml
        return "mcap"
    raise ValueError(
        f"{path}: cannot tell its format (no <episode>/episode.json, no meta/info.json, no <episode>/*.npz, "
        "no <episode>/*.mcap, no Zarr store); pass --format"
    )


def _has_folder_with(root: Path, suffix: str) -> bool:
    """Whether one of the first 1000 entries is a folder holding a file ending in ``suffix`` (an npz
    episode folder, a rosbag2 recording)."""
    for child in sorted(root.iterdir())[:1000]:
        try:
            if child.is_dir() and any(p.suffix == suffix for p in child.iterdir()):
                return True
        except OSError:
            continue
    return False


def open_source(
    path: str | os.PathLike,
    fmt: str = "auto",
    step_rate: float = 10.0,
    mcap: dict | None = None,
    mapping: dict | None = None,
):
    """Open a source; ``step_rate`` (Hz) times step-indexed formats (RLDS, HDF5) that carry no clock;
    ``mcap`` chooses the topics of ROS 2 recordings. ``path`` may be a ``file://`` URI, or an
    object-store URI (``s3://``, ``gs://``) of a raw-layout source, staged per episode."""
    if is_remote(path):
        if fmt not in ("auto", "raw"):
            raise ValueError(
                f"{redact(path)}: only raw-layout sources are read from object storage; copy a {fmt} "
                "source to a local or shared file system first"
            )
        return StagedRawSource(str(path))
    path = local_path(path)
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in SOURCES:
        raise ValueError(f"unknown source format {fmt!r}; known: {sorted(SOURCES)}")
    parsed = as_mapping(mapping)
    if not parsed.empty and fmt not in MAPPED:
        raise ValueError(
            f"a {fmt} source does not take a mapping (the formats that do: {sorted(MAPPED)}); see docs/formats.md"
        )
    if fmt in STEP_INDEXED:
        return SOURCES[fmt](path, step_rate, parsed) if fmt in MAPPED else SOURCES[fmt](path, step_rate)
    if fmt == "lerobot":
        return LeRobotSource(path, parsed)
    return McapSource(path, mcap, parsed) if fmt == "mcap" else SOURCES[fmt](path)


def entry_frames(camera) -> np.ndarray | None:
    """bool [F]: the frames where decoding this camera may start (every frame of stored images); None
    when only its first is known to be one."""
    if camera.codec in STORED_IMAGES:
        return np.ones(len(camera.pts), dtype=bool)
    return camera.entry


def camera_frames(source, camera, start_pts: int | None = None, needed_pts=None):
    """Decoded frames of a camera: the source's own when it stores images itself, else PyAV's
    (decoding only what ``needed_pts``, the frames the ticks select, depend on)."""
    if camera.codec in STORED_IMAGES:
        return source.frames(camera, start_pts)
    return decode_frames(camera.path, start_pts, needed_pts)


def checked_plan(source) -> tuple[list[str], list[Problem]]:
    """The source's plan, with every id that cannot be a shard key ([A-Za-z0-9_-]+) rejected."""
    ids, rejected = source.plan()
    bad = [i for i in ids if not EPISODE_ID_RE.match(i)]
    rejected = rejected + [
        Problem(i, i, "episode id must match [A-Za-z0-9_-]+ (it becomes the shard key)") for i in bad
    ]
    # a rejected entry's name may be any bytes (not UTF-8, escape sequences): its record shows them escaped
    rejected = [replace(p, where=printable_name(p.where), field=printable_name(p.field)) for p in rejected]
    return [i for i in ids if i not in set(bad)], rejected
