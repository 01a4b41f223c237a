"""Reader for per-episode npz folders, the way many imitation-learning repos save demonstrations:

    SOURCE/<episode>/trajectory.npz    arrays, one row per step: state, action, images [T, H, W, 3]
    SOURCE/<episode>/meta.json         optional: instruction, fps, embodiment
    SOURCE/<episode>/<camera>/*.jpg    optional: one image file (JPEG or PNG) per step, in name order

A folder without ``trajectory.npz`` may hold exactly one other ``*.npz``. The mapping (sources/mapping.py)
names arrays: ``state``/``action`` parts, ``cameras`` (output name -> npz array or image folder), the
instruction (a constant, ``{attribute = <meta.json field>}``, ``{file = <text file>}``, ``{column =
<per-step string array>}``), ``time_base`` (an array of times: float seconds, integer nanoseconds).
Without one: state = ``state`` (or ``states``, ``proprio``, ``qpos``, ...), action = ``action(s)``,
every uint8 [T, H, W, 3] array and image folder a camera, the instruction meta.json's ``instruction``
(or ``language_instruction``, ``task``). Step-indexed: step i is at ``i / fps`` (meta.json ``fps``,
else ``source_fps``, else the target fps).

Invariants: no pickle (``allow_pickle=False``, object arrays refused); every array's npy header is
read and its declared size checked (against the bounds in sources/arrays.py and against the bytes the
member holds) before the array is read; images are read one frame at a time from the member.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
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
from trajshard.sources.contain import contained, inside, regular_file
from trajshard.sources.lerobot import instruction_file, label_segments
from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.mapping import Mapping, MappingError, Part, as_mapping, concat_parts
from trajshard.sources.video import StoredJpeg

NPZ = "trajectory.npz"
META = "meta.json"
MAX_META_BYTES = 1 << 20
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
TEXT_FIELDS = ("instruction", "language_instruction", "task", "language")
TIME_KEYS = ("timestamp", "timestamps", "time")


@dataclass(frozen=True)
class Header:
    """An npz member's npy header: what it declares, and where its data starts in the member."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int


class NpzSource:
    format = "npz"

    def __init__(
        self, root: str | os.PathLike, step_rate: float = 10.0, mapping: Mapping | dict | None = None
    ):
        self.root = Path(root).resolve()
        self.step_rate = float(step_rate)
        self.mapping = as_mapping(mapping)
        self.notes: list[str] = []
        if self.mapping.episodes:
            raise ValueError("mapping.episodes is for HDF5 files; an npz source's episodes are its folders")
        if not self.root.is_dir():
            raise FileNotFoundError(f"{root}: not a directory of episode folders")

    def plan(self) -> tuple[list[str], list[Problem]]:
        ids, rejected = [], []
        for child in sorted(self.root.iterdir()):
            if child.name.startswith(".") or not (child.is_dir() or child.is_symlink()):
                continue
            if not inside(self.root, child):
                rejected.append(Problem(child.name, child.name, "is a link to a place outside the source"))
            elif not child.is_dir():
                rejected.append(Problem(child.name, child.name, "is a link to no directory"))
            elif not any(child.glob("*.npz")):
                rejected.append(Problem(child.name, child.name, f"holds no {NPZ} (no .npz file)"))
            else:
                ids.append(child.name)
        return ids, rejected

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def load(self, episode_id: str) -> Episode:
        folder = contained(self.root, self.root / episode_id, episode_id)
        path = _npz_file(folder, episode_id)
        meta = _meta(folder, episode_id)
        try:
            with zipfile.ZipFile(path) as z:
                return self._episode(episode_id, folder, path, z, meta)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
            raise EpisodeError(episode_id, path.name, f"not a readable npz file: {exc}") from exc
        except EpisodeError:
            raise
        except (MappingError, ValueError) as exc:
            raise EpisodeError(episode_id, path.name, str(exc)) from exc

    def _episode(self, eid: str, folder: Path, path: Path, z: zipfile.ZipFile, meta: dict) -> Episode:
        heads = {n.removesuffix(".npy"): _header(eid, path, z, n) for n in z.namelist() if n.endswith(".npy")}
        m = self.mapping
        read = lambda part: (_read(eid, path, z, heads, part.key), ())  # noqa: E731
        state, snames = concat_parts(
            m.state or (Part(_default(eid, path, heads, arrays.STATE_KEYS, "state")),), read, path.name
        )
        action, anames = concat_parts(
            m.action or (Part(_default(eid, path, heads, arrays.ACTION_KEYS, "action")),), read, path.name
        )
        if len(action) != len(state):
            raise EpisodeError(eid, path.name, f"{len(action)} actions for {len(state)} states")
        t = self._times(eid, path, z, heads, meta, len(state))
        named = bool(m.state), bool(m.action)
        streams = {
            "proprio": Stream("proprio", t, state, snames if named[0] else (), path.name),
            "action": Stream("action", t, action, anames if named[1] else (), path.name),
        }
        cameras = {
            n: self._camera(eid, folder, path, heads, n, k, t)
            for n, k in self._camera_keys(folder, heads).items()
        }
        segments = self._instruction(eid, folder, path, z, heads, meta, t)
        embodiment = str(meta.get("embodiment") or meta.get("robot_type") or meta.get("robot") or "npz")
        ep = Episode(
            eid, segments, streams, cameras, embodiment=embodiment, source=str(folder), instruction_file=META
        )
        return ensure_valid(ep)

    def _times(self, eid, path, z, heads, meta: dict, n: int) -> np.ndarray:
        """The episode's step times: the ``time_base`` array's (seconds; integers are nanoseconds),
        else step i at i / rate (meta.json ``fps``, else the source's step rate)."""
        if self.mapping.time_base:
            raw = _read(eid, path, z, heads, self.mapping.time_base).reshape(-1)
            if len(raw) != n:
                raise EpisodeError(
                    eid, path.name, f"{self.mapping.time_base}: {len(raw)} times for {n} steps"
                )
            return arrays.seconds(raw)
        fps = meta.get("fps", self.step_rate)
        if not isinstance(fps, int | float) or isinstance(fps, bool) or not fps > 0:
            raise EpisodeError(eid, META, f"fps must be a positive number, got {fps!r}")
        return np.arange(n) / float(fps)

    def _camera_keys(self, folder: Path, heads: dict[str, Header]) -> dict[str, str]:
        """Output name -> npz array or image folder: the mapping's, else every image array and folder."""
        if self.mapping.cameras:
            return dict(self.mapping.cameras)
        skip = set(self.mapping.exclude)
        out = arrays.camera_names(
            [k for k, h in sorted(heads.items()) if arrays.is_image(h.shape, h.dtype) and k not in skip]
        )
        for d in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in skip):
            contained(self.root, d, folder.name, d.name)  # listed only once known to be inside
            if any(f.suffix.lower() in IMAGE_SUFFIXES for f in d.iterdir()):
                out.setdefault(d.name, d.name)
        return out

    def _camera(
        self, eid, folder: Path, path: Path, heads: dict[str, Header], name: str, key: str, t
    ) -> Camera:
        n = len(t)
        if key in heads:
            h = heads[key]
            arrays.check_frames(eid, f"{path.name}:{key}", h.shape, h.dtype)
            if h.shape[0] != n:
                raise EpisodeError(
                    eid, path.name, f"camera {name!r} ({key}): {h.shape[0]} images for {n} steps"
                )
            return Camera(
                name, f"{path}#{key}", t, np.arange(n, dtype=np.int64), h.shape[2], h.shape[1], "npz-array"
            )
        files = _image_files(eid, folder, key)
        if len(files) != n:
            raise EpisodeError(eid, key, f"camera {name!r}: {len(files)} image files for {n} steps")
        try:
            with Image.open(files[0]) as img:
                w, h = img.size
        except OSError as exc:  # PIL's "cannot identify image file" is an OSError
            raise EpisodeError(eid, f"{key}/{files[0].name}", f"not an image: {exc}") from exc
        return Camera(name, str(folder / key), t, np.arange(n, dtype=np.int64), w, h, "npz-files")

    def _instruction(self, eid, folder, path, z, heads, meta: dict, t) -> tuple[Segment, ...]:
        chosen = self.mapping.instruction
        if chosen is None:
            text = next((str(meta[k]) for k in TEXT_FIELDS if meta.get(k)), "")
        elif chosen.kind == "constant":
            text = chosen.value
        elif chosen.kind == "attribute":
            if not isinstance(meta.get(chosen.value), str):
                raise EpisodeError(eid, META, f"no text field {chosen.value!r} (mapping.instruction)")
            text = meta[chosen.value]
        elif chosen.kind == "file":
            base = folder if (folder / chosen.value).exists() else self.root
            text = instruction_file(base, chosen.value, eid)
        elif chosen.kind == "column":
            labels = arrays.labels_text(_read(eid, path, z, heads, chosen.value, numeric=False).reshape(-1))
            if len(labels) != len(t):
                raise EpisodeError(eid, path.name, f"{chosen.value}: {len(labels)} labels for {len(t)} steps")
            return label_segments(labels, t)
        else:
            raise EpisodeError(eid, "mapping", f"instruction from a {chosen.kind} is not in an npz folder")
        return (Segment(float("-inf"), float("inf"), text),)

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator[av.VideoFrame | StoredJpeg]:
        start = start_pts or 0
        if camera.codec == "npz-files":
            folder = Path(camera.path)
            eid = folder.parent.name
            for i, f in enumerate(_image_files(eid, folder.parent, folder.name)[start:], start):
                yield StoredJpeg(f.read_bytes(), i)
            return
        file, key = camera.path.rsplit("#", 1)
        path = Path(file)
        try:
            yield from _array_frames(camera, path, key, start)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:  # a damaged member
            raise EpisodeError(path.parent.name, f"{path.name}:{key}", f"cannot be read: {exc}") from exc


def _array_frames(camera: Camera, path: Path, key: str, start: int) -> Iterator[av.VideoFrame]:
    """An image array's frames from ``start`` on, streamed from its npz member one at a time."""
    eid, where = path.parent.name, f"{path.name}:{key}"
    with zipfile.ZipFile(path) as z:
        h = _header(eid, path, z, f"{key}.npy")
        arrays.check_frames(eid, where, h.shape, h.dtype)
        size = arrays.declared_bytes(h.shape[1:], h.dtype.itemsize)
        with z.open(f"{key}.npy") as f:
            f.seek(h.offset + start * size)
            for i in range(start, h.shape[0]):
                data = f.read(size)
                if len(data) != size:
                    raise EpisodeError(eid, where, f"frame {i} is cut short")
                yield arrays.array_frame(np.frombuffer(data, h.dtype).reshape(h.shape[1:]), i)


def _npz_file(folder: Path, eid: str) -> Path:
    """The episode's ``trajectory.npz``, else its one ``*.npz``; a regular file inside the source."""
    path = folder / NPZ
    if not path.exists():
        found = sorted(folder.glob("*.npz"))
        if len(found) != 1:
            what = "no .npz file" if not found else f"{len(found)} .npz files and none named {NPZ}"
            raise EpisodeError(eid, folder.name, f"holds {what}")
        path = found[0]
    return regular_file(contained(folder.parent, path, eid), eid)


def _meta(folder: Path, eid: str) -> dict:
    path = folder / META
    if not os.path.lexists(path):
        return {}
    regular_file(contained(folder.parent, path, eid), eid)
    if path.stat().st_size > MAX_META_BYTES:
        raise EpisodeError(eid, META, f"larger than {MAX_META_BYTES} bytes")
    try:
        meta = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EpisodeError(eid, META, f"not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise EpisodeError(eid, META, "is not a JSON object")
    return meta


def _header(eid: str, path: Path, z: zipfile.ZipFile, member: str) -> Header:
    """The npy header of a member, checked: a pickle-free, C-ordered array whose declared bytes the
    member holds."""
    where = f"{path.name}:{member.removesuffix('.npy')}"
    with z.open(member) as f:
        try:
            version = np.lib.format.read_magic(f)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read(f)
        except ValueError as exc:
            raise EpisodeError(eid, where, f"not an npy array: {exc}") from exc
        offset = f.tell()
    if dtype.hasobject:
        raise EpisodeError(eid, where, "holds Python objects (pickle): refused")
    if fortran and len(shape) > 1:
        raise EpisodeError(eid, where, "is stored in Fortran order; save it C-ordered")
    size = arrays.declared_bytes(shape, dtype.itemsize)
    if z.getinfo(member).file_size < offset + size:
        raise EpisodeError(
            eid, where, f"declares {list(shape)} of {dtype} ({size} bytes), the member holds fewer"
        )
    return Header(tuple(shape), dtype, offset)


def _read(
    eid: str, path: Path, z: zipfile.ZipFile, heads: dict[str, Header], key: str, numeric: bool = True
) -> np.ndarray:
    """One array as stored, read after its declared size (and, ``numeric``, its type) is checked."""
    if key not in heads:
        raise EpisodeError(
            eid, path.name, f"the mapping names {key!r}, not an array of it (it holds {sorted(heads)})"
        )
    h = heads[key]
    arrays.check_array(eid, f"{path.name}:{key}", h.shape, h.dtype.itemsize)
    if numeric and h.dtype.kind not in "biuf":
        raise EpisodeError(eid, f"{path.name}:{key}", f"is {h.dtype}, not numbers")
    with z.open(f"{key}.npy") as f:
        values = np.lib.format.read_array(f, allow_pickle=False)
    return values


def _default(eid: str, path: Path, heads: dict[str, Header], wanted: tuple[str, ...], what: str) -> str:
    key = arrays.first_present(set(heads), wanted)
    if key is None:
        raise EpisodeError(
            eid,
            path.name,
            f"no {what} array ({', '.join(wanted)}); it holds {sorted(heads)}: name it with mapping.{what}",
        )
    return key


def _image_files(eid: str, folder: Path, key: str) -> list[Path]:
    """A camera folder's image files in name order, each a regular file inside the episode folder."""
    d = contained(folder, folder / key, eid)
    if not d.is_dir():
        raise EpisodeError(
            eid, key, "the camera named by the mapping is neither an npz array nor an image folder"
        )
    files = sorted((p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=arrays.natural_key)
    for f in files:
        regular_file(contained(folder, f, eid, f"{key}/{f.name}"), eid)
        if f.stat().st_size > arrays.MAX_FRAME_BYTES:
            raise EpisodeError(eid, f"{key}/{f.name}", f"larger than {arrays.MAX_FRAME_BYTES >> 20} MiB")
    return files


def describe(root: Path, source_fps: float | None = None, **_: object) -> Listing:
    """Every array of the first episode's npz (from its npy headers), its image folders and meta.json
    fields, and a mapping template: ``state`` (or the robot's arrays, never an object's), ``action``,
    the image arrays and folders as cameras, meta.json's instruction field."""
    src = NpzSource(root, source_fps or 10.0)
    ids, rejected = src.plan()
    notes = [f"{len(ids)} episode folders, {len(rejected)} rejected"]
    notes += [f"{p.where}: {p.message}" for p in rejected[:3]]
    if not ids:
        return Listing("npz", 0, "", (), {}, {}, tuple(notes))
    folder = contained(src.root, src.root / ids[0], ids[0])
    path, meta = _npz_file(folder, ids[0]), _meta(folder, ids[0])
    fps = meta.get("fps") if isinstance(meta.get("fps"), int | float) else source_fps
    with zipfile.ZipFile(path) as z:
        heads = {
            n.removesuffix(".npy"): _header(ids[0], path, z, n) for n in z.namelist() if n.endswith(".npy")
        }
    keys = [array_info(k, h.shape, h.dtype, fps, path.name) for k, h in sorted(heads.items())]
    keys += _folder_keys(ids[0], folder, fps)
    keys += [text_info(k, v, META) for k, v in meta.items() if isinstance(v, str)]
    mapping, more = template(keys)
    chosen = next((k.key for k in keys if k.kind == "text"), None)
    if chosen:
        mapping["instruction"] = {"attribute": chosen}
    else:
        more.append(f"no instruction field in {META}: set mapping.instruction")
    settings = {"source_fps": float(source_fps)} if source_fps and "fps" not in meta else {}
    return Listing("npz", len(ids), ids[0], tuple(keys), mapping, settings, tuple(notes + more))


def _folder_keys(eid: str, folder: Path, fps: float | None) -> list[KeyInfo]:
    """A camera row per image folder of the episode (its first file's size, its file count)."""
    out = []
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = _image_files(eid, folder, d.name)
        if files:
            with Image.open(files[0]) as img:
                w, h, fmt = img.size[0], img.size[1], str(img.format or "image").lower()
            span = (0.0, (len(files) - 1) / fps) if fps else None
            out.append(KeyInfo(d.name, "camera", fmt, (h, w, 3), fps, span, len(files), (), "image files"))
    return out
