"""Reader for robot-learning HDF5 files: the robomimic layout and the ALOHA / ACT layout.

- robomimic: one file, ``data/demo_N/{actions, states, obs/*}``; proprio is the low-dimensional
  ``obs`` keys concatenated in name order (or ``states`` when there is no ``obs``), every
  ``obs/<name>_image`` [T, H, W, 3] is a camera; the instruction is the task (``env`` attribute).
- ALOHA / ACT: one file per episode (``episode_N.hdf5``, SOURCE may be their directory), with
  ``/observations/qpos``, ``/action`` and ``/observations/images/<camera>`` [T, H, W, 3] (or
  JPEG bytes when the file's ``compress`` attribute is set); the instruction is the file's
  ``instruction`` attribute, else the directory name.

Both are step-indexed: step i is at ``i / step_rate`` (``source_fps``, default the target fps).
Images are read one frame at a time from the file; nothing is held for the whole episode.
"""

from __future__ import annotations

import io
import json
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
from trajshard.sources.contain import contained, inside, regular_file
from trajshard.sources.video import StoredJpeg


def _attr_text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


MAX_ARRAY_BYTES = 512 << 20  # a state or action array read whole (docs/robustness.md)


class HDF5Source:
    format = "hdf5"

    def __init__(self, root: str | os.PathLike, step_rate: float = 10.0) -> None:
        self.root = Path(root).resolve()
        self.step_rate = float(step_rate)
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
                regular_file(f, f.stem)  # a FIFO would block HDF5's open forever
            except EpisodeError as exc:
                rejected.append(Problem(f.stem, f.name, exc.message))
                continue
            try:
                with h5py.File(f, "r") as h:
                    if "data" in h:
                        ids += [
                            f"{f.stem}-{k}" if len(self.files) > 1 else k
                            for k in sorted(h["data"], key=_demo_order)
                        ]
                    elif "observations" in h:
                        ids.append(f.stem)
                    else:
                        rejected.append(
                            Problem(
                                f.stem, f.name, "neither robomimic (data/demo_N) nor ALOHA (/observations)"
                            )
                        )
            except OSError as exc:
                rejected.append(Problem(f.stem, f.name, f"not a readable HDF5 file: {exc}"))
        return ids, rejected

    def _locate(self, episode_id: str) -> tuple[Path, str | None]:
        """(file, robomimic demo name or None for an ALOHA episode file)."""
        for f in self.files:
            if f.stem == episode_id:
                return f, None
            prefix = f"{f.stem}-" if len(self.files) > 1 else ""
            if episode_id.startswith(prefix) and episode_id[len(prefix) :].startswith("demo"):
                return f, episode_id[len(prefix) :]
        raise EpisodeError(episode_id, "hdf5", "no such episode")

    def load(self, episode_id: str) -> Episode:
        f, demo = self._locate(episode_id)
        if f != self.root:
            contained(self.root, f, episode_id)
        try:
            with h5py.File(f, "r") as h:
                return self._robomimic(episode_id, f, h, demo) if demo else self._aloha(episode_id, f, h)
        except OSError as exc:
            raise EpisodeError(episode_id, f.name, f"not a readable HDF5 file: {exc}") from exc
        except KeyError as exc:
            raise EpisodeError(episode_id, f.name, f"missing dataset {exc}") from exc

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def _robomimic(self, eid: str, f: Path, h: h5py.File, demo: str) -> Episode:
        g = h["data"][demo]
        _no_external_links(eid, f, g)
        actions = _array(eid, f, g["actions"])
        obs = g.get("obs")
        obs_keys = {k: _dataset(eid, f, obs[k]) for k in obs} if obs is not None else {}
        low = sorted(k for k, d in obs_keys.items() if d.ndim == 2)
        images = sorted(k for k, d in obs_keys.items() if d.ndim == 4)
        state = (
            np.concatenate([_array(eid, f, obs[k]) for k in low], 1) if low else _array(eid, f, g["states"])
        )
        env = _attr_text(h["data"].attrs.get("env", "")) or _env_name(h["data"].attrs.get("env_args"))
        cams = {k.removesuffix("_image"): (f"data/{demo}/obs/{k}", obs[k].shape) for k in images}
        return self._episode(eid, f, state, actions, cams, env, "robomimic")

    def _aloha(self, eid: str, f: Path, h: h5py.File) -> Episode:
        _no_external_links(eid, f, h)
        state = _array(eid, f, h["observations/qpos"])
        actions = _array(eid, f, h["action"])
        cams = {}
        for k, d in h["observations"].get("images", {}).items():
            cams[k] = (f"observations/images/{k}", _dataset(eid, f, d).shape)
        text = _attr_text(h.attrs.get("instruction", "")) or f.parent.name.replace("_", " ")
        return self._episode(
            eid, f, state, actions, cams, text, "aloha", bool(h.attrs.get("compress", False))
        )

    def _episode(self, eid, f, state, actions, cams, text, embodiment, compressed=False) -> Episode:
        n = len(state)
        if len(actions) != n:
            raise EpisodeError(eid, f.name, f"{len(actions)} actions for {n} states")
        t = np.arange(n) / self.step_rate
        streams = {
            "proprio": Stream("proprio", t, state, (), f.name),
            "action": Stream("action", t, actions, (), f.name),
        }
        cameras = {}
        for name, (path, shape) in cams.items():
            if shape[0] != n:
                raise EpisodeError(eid, f.name, f"camera {name!r}: {shape[0]} images for {n} steps")
            h, w = (shape[1], shape[2]) if len(shape) == 4 else self._jpeg_size(f, path)
            cameras[name] = Camera(
                name,
                f"{f}#{path}",
                t,
                np.arange(n, dtype=np.int64),
                int(w),
                int(h),
                "hdf5-jpeg" if compressed else "hdf5-array",
            )
        ep = Episode(
            eid,
            (Segment(float("-inf"), float("inf"), text),),
            streams,
            cameras,
            embodiment=embodiment,
            source=str(f),
            instruction_file=f.name,
        )
        return ensure_valid(ep)

    def _jpeg_size(self, f: Path, path: str) -> tuple[int, int]:
        with h5py.File(f, "r") as h, Image.open(io.BytesIO(bytes(h[path][0]))) as img:
            return img.size[1], img.size[0]

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator[av.VideoFrame]:
        file, path = camera.path.split("#", 1)
        with h5py.File(file, "r") as h:
            d = _dataset(camera.name, Path(file), h[path])
            for i in range(start_pts or 0, d.shape[0]):
                if camera.codec == "hdf5-jpeg":  # padded JPEG bytes: cut at the end-of-image marker
                    raw = bytes(d[i])
                    yield StoredJpeg(raw[: raw.rfind(b"\xff\xd9") + 2] if b"\xff\xd9" in raw else raw, i)
                    continue
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(d[i], dtype=np.uint8), format="rgb24")
                frame.pts = i
                yield frame


def _dataset(eid: str, f: Path, obj) -> h5py.Dataset:
    """An HDF5 dataset whose bytes lie in ``f`` itself: not reached through an external link, not
    virtual (mapped from other files), not in external raw storage."""
    where = f"{f.name}:{getattr(obj, 'name', '?')}"
    if not isinstance(obj, h5py.Dataset):
        raise EpisodeError(eid, where, "is a group where a dataset is expected")
    if Path(obj.file.filename).resolve() != f.resolve():
        raise EpisodeError(
            eid, where, f"is an external link into {obj.file.filename}: outside the source file"
        )
    if obj.is_virtual or obj.external:
        raise EpisodeError(eid, where, "is stored outside the file (virtual or external storage): refused")
    return obj


def _no_external_links(eid: str, f: Path, group: h5py.Group) -> None:
    """Refuse an episode whose group holds an external link anywhere below it, before any is
    followed: HDF5 opens the link's target file as soon as the link is accessed."""
    found: list[tuple[str, str]] = []

    def seen(name: str) -> bool | None:  # the link itself (getlink), never what it leads to
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            found.append((name, link.filename))
            return True  # stop at the first
        return None

    group.visit_links(seen)
    if found:
        name, target = found[0]
        raise EpisodeError(
            eid,
            f"{f.name}:{group.name}/{name}",
            f"is an external link into {target}: outside the source file",
        )


def _array(eid: str, f: Path, obj) -> np.ndarray:
    """A low-dimensional dataset read whole, as float32, after its declared size is checked."""
    d = _dataset(eid, f, obj)
    nbytes = int(np.prod(d.shape, dtype=np.float64)) * 4
    if nbytes > MAX_ARRAY_BYTES:
        raise EpisodeError(
            eid,
            f"{f.name}:{d.name}",
            f"declares {list(d.shape)} values ({nbytes / 2**20:.0f} MiB as float32), "
            f"more than the {MAX_ARRAY_BYTES >> 20} MiB a state or action array may take",
        )
    return np.asarray(d, dtype=np.float32)


def _demo_order(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else -1, name)


def _env_name(env_args: object) -> str:
    try:
        return str(json.loads(_attr_text(env_args)).get("env_name", ""))
    except (ValueError, TypeError):
        return ""
