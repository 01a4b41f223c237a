"""Reader for robot-learning HDF5 files: the robomimic layout, demo groups at the root, and ALOHA / ACT.

- robomimic: one file, ``data/demo_N/{actions, states, obs/*}``; proprio is the low-dimensional
  ``obs`` keys concatenated in name order (or ``states`` when there is no ``obs``), every
  ``obs/<name>_image`` [T, H, W, 3] is a camera; the instruction is the task (``env`` attribute).
- demo groups at the root (``demo_N/{action, observation/*}``, no ``data`` group): the same, with
  the observations under ``obs``, ``observation`` or ``observations`` and ``action`` or ``actions``.
- ALOHA / ACT: one file per episode (``episode_N.hdf5``, SOURCE may be their directory), with
  ``/observations/qpos``, ``/action`` and ``/observations/images/<camera>`` [T, H, W, 3] (or
  JPEG bytes when the file's ``compress`` attribute is set); the instruction is the file's
  ``instruction`` attribute, else the directory name.

A mapping (sources/mapping.py) names the group holding the demos (``episodes``), the datasets of
the state, action and cameras (paths relative to the demo group), the ``obs`` keys left out of the
default state (``exclude``) and the instruction. An empty mapping is the defaults above.
Every layout is step-indexed: step i is at ``i / step_rate`` (``source_fps``, default the target
fps). Images are read one frame at a time from the file; nothing is held for the whole episode.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import av
import h5py
import numpy as np
from PIL import Image

from trajshard.schemas.episode import (
    Camera,
    Episode,
    EpisodeError,
    Segment,
    Stream,
    check_by_loading,
    ensure_valid,
)
from trajshard.schemas.problems import Problem
from trajshard.sources import arrays
from trajshard.sources.array_listing import array_info, template, text_info
from trajshard.sources.arrays import MAX_ARRAY_BYTES, array_frame, check_array, check_frames
from trajshard.sources.contain import contained, inside, regular_file
from trajshard.sources.hdf5_layout import (
    NO_LAYOUT,
    OBS_GROUPS,
    TEXT_ATTRS,
    array,
    attr_text,
    attribute,
    dataset,
    default_action,
    default_state,
    default_text,
    demo_groups,
    no_external_links,
    obs_keys,
)
from trajshard.sources.lerobot import instruction_file, label_segments
from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.mapping import Mapping, MappingError, Part, as_mapping, concat_parts
from trajshard.sources.video import StoredJpeg

__all__ = ["MAX_ARRAY_BYTES", "HDF5Source", "describe"]


class HDF5Source:
    format = "hdf5"

    def __init__(
        self, root: str | os.PathLike, step_rate: float = 10.0, mapping: Mapping | dict | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.step_rate = float(step_rate)
        self.mapping = as_mapping(mapping)
        self.notes: list[str] = []
        if self.root.is_file():
            self.files = [self.root]
        else:
            self.files = sorted(p for p in self.root.iterdir() if p.suffix in (".hdf5", ".h5"))
        if not self.files:
            raise FileNotFoundError(f"{root}: no .hdf5 file")

    def plan(self) -> tuple[list[str], list[Problem]]:
        ids, rejected = [], []
        for f in self.files:
            if f != self.root and not inside(self.root, f):
                rejected.append(Problem(f.stem, f.name, "is a link to a place outside the source"))
                continue
            try:
                with h5py.File(regular_file(f, f.stem), "r") as h:
                    found = demo_groups(h, self.mapping)
            except EpisodeError as exc:  # a FIFO or a device named .hdf5: never opened
                rejected.append(exc.problem)
                continue
            except OSError as exc:
                rejected.append(Problem(f.stem, f.name, f"not a readable HDF5 file: {exc}"))
                continue
            except KeyError as exc:
                rejected.append(Problem(f.stem, f.name, f"mapping.episodes: {exc}"))
                continue
            if found is None:
                ids.append(f.stem)
            elif found[1]:
                ids += [self._id(f, name) for name in found[1]]
            else:
                rejected.append(Problem(f.stem, f.name, NO_LAYOUT))
        return ids, rejected

    def _id(self, f: Path, demo: str) -> str:
        return f"{f.stem}-{demo}" if len(self.files) > 1 else demo

    def _locate(self, episode_id: str) -> tuple[Path, str | None]:
        """(file, demo group name, or None for an ALOHA episode file); the longest stem wins."""
        for f in sorted(self.files, key=lambda p: -len(p.stem)):
            if f.stem == episode_id:
                return f, None
            if len(self.files) == 1:
                return f, episode_id
            if episode_id.startswith(f"{f.stem}-"):
                return f, episode_id[len(f.stem) + 1 :]
        raise EpisodeError(episode_id, "hdf5", "no such episode")

    def load(self, episode_id: str) -> Episode:
        f, demo = self._locate(episode_id)
        if f != self.root:
            contained(self.root, f, episode_id)
        regular_file(f, episode_id)
        try:
            with h5py.File(f, "r") as h:
                return self._load(episode_id, f, h, demo)
        except OSError as exc:
            raise EpisodeError(episode_id, f.name, f"not a readable HDF5 file: {exc}") from exc
        except KeyError as exc:
            raise EpisodeError(episode_id, f.name, f"missing dataset {exc}") from exc
        except MappingError as exc:
            raise EpisodeError(episode_id, f.name, str(exc)) from exc

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def _load(self, eid: str, f: Path, h: h5py.File, demo: str | None) -> Episode:
        found = demo_groups(h, self.mapping)
        if found is None:
            return self._read(eid, f, h, "", "aloha")
        if demo is None:
            raise EpisodeError(eid, f.name, "holds demo groups, not one ALOHA episode")
        where = f"{found[0]}/{demo}" if found[0] else demo
        if not isinstance(h.get(where), h5py.Group):
            raise EpisodeError(eid, f"{f.name}:/{where}", "is not a demo group")
        return self._read(eid, f, h, where, "robomimic" if found[0] == "data" else "hdf5")

    def _read(self, eid: str, f: Path, h: h5py.File, where: str, kind: str) -> Episode:
        """The episode of the group ``where`` ("" for the file's root) of one file."""
        g = h[where] if where else h
        no_external_links(eid, f, g)  # before any member is opened: HDF5 opens a link's target at once
        mapped = bool(self.mapping.state and self.mapping.cameras)  # then no obs key is opened unnamed
        obs = obs_keys(eid, f, g, self.mapping.exclude) if kind != "aloha" and not mapped else {}
        state, snames = self._parts(eid, f, g, self.mapping.state, lambda: default_state(g, kind, obs))
        action, anames = self._parts(eid, f, g, self.mapping.action, lambda: default_action(eid, f, g))
        cams = self._cameras(eid, f, g, kind, obs)
        t = self._times(eid, f, g, len(state))
        segments = self._instruction(eid, f, h, g, kind, t)
        compressed = kind == "aloha" and bool(h.attrs.get("compress", False))
        return self._episode(eid, f, (state, snames), (action, anames), cams, segments, kind, compressed, t)

    def _times(self, eid: str, f: Path, g: h5py.Group, n: int) -> np.ndarray:
        """Step i at i / step_rate; with ``mapping.time_base``, that dataset's recorded times (float
        seconds, integer nanoseconds) from the first."""
        if not self.mapping.time_base:
            return np.arange(n) / self.step_rate
        d = dataset(eid, f, _named(eid, f, g, self.mapping.time_base))
        check_array(eid, f"{f.name}:{d.name}", d.shape)
        if d.dtype.kind not in "iuf" or len(d) != n:
            raise EpisodeError(eid, f"{f.name}:{d.name}", f"is not {n} times ({d.dtype} {list(d.shape)})")
        return arrays.seconds(np.asarray(d).reshape(n, -1)[:, 0])

    def _parts(self, eid, f, g, parts: tuple[Part, ...], default) -> tuple[np.ndarray, tuple[str, ...]]:
        """The mapping's parts side by side (with their names), else the layout's default (no names:
        today's outputs keep their bytes)."""
        if not parts:
            blocks = [array(eid, f, d) for d in default()]
            return np.concatenate([b[:, None] if b.ndim == 1 else b for b in blocks], 1), ()

        def read(part: Part):
            return array(eid, f, _named(eid, f, g, part.key)), ()

        return concat_parts(parts, read, f"{f.name}:{g.name}")

    def _cameras(self, eid, f, g, kind: str, obs: dict) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Output name -> (dataset path in the file, shape): the mapping's, else the layout's."""
        base = g.name.strip("/")
        path = (lambda k: f"{base}/{k}") if base else (lambda k: k)
        if self.mapping.cameras:
            out = {}
            for name, key in self.mapping.cameras.items():
                d = dataset(eid, f, _named(eid, f, g, key))
                if not (d.ndim == 2 and d.dtype == np.uint8):  # else padded JPEG bytes
                    check_frames(eid, f"{f.name}:{d.name}", d.shape, d.dtype)
                out[name] = (path(key), d.shape)
            return out
        if kind == "aloha":
            images = g["observations"].get("images", {})
            return {k: (f"observations/images/{k}", dataset(eid, f, d).shape) for k, d in images.items()}
        return {arrays.camera_name(k): (path(k), d.shape) for k, d in sorted(obs.items()) if d.ndim == 4}

    def _instruction(self, eid, f, h, g, kind: str, t: np.ndarray) -> tuple[Segment, ...]:
        chosen = self.mapping.instruction
        if chosen is None or chosen.kind == "constant":
            text = chosen.value if chosen else default_text(f, h, g, kind)
        elif chosen.kind == "attribute":
            text = attribute(eid, f, g, chosen.value)
        elif chosen.kind == "file":
            text = instruction_file(self.root if self.root.is_dir() else self.root.parent, chosen.value, eid)
        elif chosen.kind == "column":
            d = dataset(eid, f, _named(eid, f, g, chosen.value))
            arrays.check_array(eid, f"{f.name}:{d.name}", d.shape, d.dtype.itemsize)
            labels = arrays.labels_text(np.asarray(d))
            if len(labels) != len(t):
                raise EpisodeError(eid, f.name, f"{chosen.value}: {len(labels)} labels for {len(t)} steps")
            return label_segments(labels, t)
        else:
            raise EpisodeError(eid, "mapping", f"instruction from a {chosen.kind} is not in an HDF5 file")
        return (Segment(float("-inf"), float("inf"), text),)

    def _episode(self, eid, f, state, actions, cams, segments, embodiment, compressed, t) -> Episode:
        (state, snames), (actions, anames) = state, actions
        n = len(state)
        if len(actions) != n:
            raise EpisodeError(eid, f.name, f"{len(actions)} actions for {n} states")
        streams = {
            "proprio": Stream("proprio", t, state, snames, f.name),
            "action": Stream("action", t, actions, anames, f.name),
        }
        cameras = {}
        for name, (path, shape) in cams.items():
            if shape[0] != n:
                raise EpisodeError(eid, f.name, f"camera {name!r}: {shape[0]} images for {n} steps")
            if arrays.declared_bytes(shape[1:], 1) > arrays.MAX_FRAME_BYTES:  # read one frame at a time
                raise EpisodeError(
                    eid, f"{f.name}:{path}", f"declares frames of {list(shape[1:])}: too large"
                )
            jpeg = compressed or len(shape) == 2
            h, w = self._jpeg_size(f, path) if jpeg else (shape[1], shape[2])
            codec = "hdf5-jpeg" if jpeg else "hdf5-array"
            cameras[name] = Camera(
                name, f"{f}#{path}", t, np.arange(n, dtype=np.int64), int(w), int(h), codec
            )
        ep = Episode(
            eid, segments, streams, cameras, embodiment=embodiment, source=str(f), instruction_file=f.name
        )
        return ensure_valid(ep)

    def _jpeg_size(self, f: Path, path: str) -> tuple[int, int]:
        with h5py.File(f, "r") as h, Image.open(io.BytesIO(bytes(h[path][0]))) as img:
            return img.size[1], img.size[0]

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator[av.VideoFrame]:
        file, path = camera.path.split("#", 1)
        with h5py.File(file, "r") as h:
            d = dataset(camera.name, Path(file), h[path])
            for i in range(start_pts or 0, d.shape[0]):
                if camera.codec == "hdf5-jpeg":  # padded JPEG bytes: cut at the end-of-image marker
                    raw = bytes(d[i])
                    yield StoredJpeg(raw[: raw.rfind(b"\xff\xd9") + 2] if b"\xff\xd9" in raw else raw, i)
                    continue
                yield array_frame(d[i], i)


def _named(eid: str, f: Path, g: h5py.Group, key: str):
    """The object at ``key`` (relative to the demo group) that the mapping names; EpisodeError when
    the group does not hold it."""
    if g.get(key, getlink=True) is None:
        raise EpisodeError(
            eid, f"{f.name}:{g.name}", f"the mapping names {key!r}, which the group does not hold"
        )
    return g[key]


def describe(root: Path, source_fps: float | None = None, **_: object) -> Listing:
    """Every dataset of the first demo (or ALOHA file), its string attributes and those of the groups
    above it, and a mapping template: the robot's ``obs`` keys as the state (an object's pose left
    out), ``action(s)``, the image datasets as cameras, the task attribute as the instruction."""
    src = HDF5Source(root, source_fps or 10.0)
    ids, rejected = src.plan()
    notes = [f"{len(ids)} episodes in {len(src.files)} file(s), {len(rejected)} rejected"]
    notes += [f"{p.where}: {p.field}: {p.message}" for p in rejected[:3]]
    settings = {"source_fps": float(source_fps)} if source_fps else {}
    if not ids:
        return Listing("hdf5", 0, "", (), {}, settings, tuple(notes))
    f, demo = src._locate(ids[0])
    with h5py.File(f, "r") as h:
        found = demo_groups(h, src.mapping)
        where = "" if found is None else (f"{found[0]}/{demo}" if found[0] else str(demo))
        g = h[where] if where else h
        keys = _dataset_keys(g, source_fps) + _attribute_keys(g)
    obs = [k.key for k in keys if k.kind == "numeric" and k.key.split("/")[0] in OBS_GROUPS]
    mapping, more = template(keys, obs if found is not None and obs else None)
    if found is not None and found[0] != "data":
        mapping = {"episodes": found[0] or "/", **mapping}
    texts = {k.key: k for k in keys if k.kind == "text"}
    chosen = next((a for a in ("env", *TEXT_ATTRS) if a in texts and "attribute" in texts[a].detail), None)
    if chosen:
        mapping["instruction"] = {"attribute": chosen}
    else:
        more.append("no instruction attribute: set mapping.instruction (the default is the file's name)")
    return Listing("hdf5", len(ids), ids[0], tuple(keys), mapping, settings, tuple(notes + more))


def _dataset_keys(g: h5py.Group, rate: float | None, limit: int = 1000) -> list[KeyInfo]:
    """Each dataset under ``g`` (hard links only: nothing outside the file is opened), by path."""
    found: list[h5py.Dataset] = []
    g.visititems(lambda _, obj: found.append(obj) if isinstance(obj, h5py.Dataset) else None)
    out = []
    for d in found[:limit]:
        key = d.name[len(g.name) :].lstrip("/")
        small = d.chunks is None or arrays.declared_bytes(d.chunks, 1) <= arrays.MAX_CHUNK_BYTES
        rows = (
            d.ndim == 2
            and d.dtype == np.uint8
            and d.shape[0] > 0
            and small
            and not (d.is_virtual or d.external)
        )
        jpeg = rows and bytes(d[0, :2]) == b"\xff\xd8"  # reads one chunk: sniffed only when it is small
        out.append(array_info(key, d.shape, d.dtype, rate, jpeg=jpeg))
    return out


def _attribute_keys(g: h5py.Group) -> list[KeyInfo]:
    """The string attributes of the demo group and of every group above it (nearest first)."""
    out, seen, obj = [], set(), g
    while True:
        for name, value in obj.attrs.items():
            if isinstance(value, str | bytes) and name not in seen:
                seen.add(name)
                out.append(text_info(name, attr_text(value), f"attribute of {obj.name}"))
        if obj.name == "/":
            return out
        obj = obj.parent
