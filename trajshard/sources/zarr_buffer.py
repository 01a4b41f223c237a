"""Reader for the Zarr replay buffer that diffusion_policy (and many imitation-learning repos) write:

    <name>.zarr/data/<key>            arrays [N, ...], every episode's rows one after another
    <name>.zarr/meta/episode_ends     int [E]: episode i is rows [episode_ends[i-1], episode_ends[i])

Zarr format 2 (``.zgroup``/``.zarray``, what diffusion_policy's zarr 2 writes) and format 3
(``zarr.json``) both read, with ``zarr`` from PyPI. Episode ids are ``episode_NNNNNN``. The mapping
(sources/mapping.py) names ``data/`` arrays: ``state``/``action`` parts, ``cameras`` (output name ->
array), ``time_base`` (an array of times: float seconds, integer nanoseconds), the instruction (a
constant or ``{attribute = ...}`` of the root group). Without one: action = ``action(s)``, state =
``state`` (or the only other vector array; several candidates need ``mapping.state``, and the source is
refused saying so), every uint8 [N, H, W, 3] or [N, H, W] array a camera, the instruction the root's
``instruction`` (or ``task``) attribute, else the store's name. Step-indexed: step i is at
``i / source_fps`` (default the target fps).

Invariants: only one episode's rows are read (Zarr reads the chunks holding them); every declared
shape and chunk is checked against the bounds in sources/arrays.py before it is read; every file
the store opens is a regular file inside SOURCE (``ContainedStore``); images are read one chunk of
rows at a time.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import zarr
from zarr.storage import LocalStore

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
from trajshard.sources.contain import inside
from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.mapping import Mapping, MappingError, Part, as_mapping, concat_parts

MAX_EPISODES = 10_000_000
TEXT_ATTRS = ("instruction", "language_instruction", "task")


class LayoutError(ValueError):
    """A store that is not a replay buffer, or whose defaults need a mapping; the message says which."""


class StoreRefused(Exception):
    """A key of the store that is a link out of SOURCE, or not a regular file."""


class ContainedStore(LocalStore):
    """A read-only local store that opens only regular files inside its root (links resolved)."""

    def _guard(self, key: str) -> None:
        path = Path(self.root) / key
        if not os.path.lexists(path):
            return
        if not inside(Path(self.root).resolve(), path):
            raise StoreRefused(f"{key}: {path} is outside the source (a link)")
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a directory reads as absent, as in Zarr
            raise StoreRefused(f"{key}: is not a regular file (a FIFO, a socket or a device)")

    async def get(self, key, prototype=None, byte_range=None):
        self._guard(key)
        return await super().get(key, prototype, byte_range)

    def get_sync(self, key, *, prototype=None, byte_range=None):
        self._guard(key)
        return super().get_sync(key, prototype=prototype, byte_range=byte_range)

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        for key, _ in key_ranges:
            self._guard(key)
        return await super().get_partial_values(prototype, key_ranges)


def open_store(root: Path) -> zarr.Group:
    """The store's root group, read-only, through ContainedStore; ValueError when it is not one."""
    try:
        return zarr.open_group(store=ContainedStore(root, read_only=True), mode="r")
    except (StoreRefused, FileNotFoundError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{root}: not a readable Zarr store: {exc}") from exc


class ZarrSource:
    format = "zarr"

    def __init__(
        self, root: str | os.PathLike, step_rate: float = 10.0, mapping: Mapping | dict | None = None
    ):
        self.root = Path(root).resolve()
        self.step_rate = float(step_rate)
        self.mapping = as_mapping(mapping)
        self.notes: list[str] = []
        if self.mapping.episodes:
            raise ValueError(
                "mapping.episodes is for HDF5 files; a replay buffer's episodes are meta/episode_ends"
            )
        self.attrs, self.arrays, self.ends = read_layout(self.root)
        self.state_parts, self.action_parts = self.mapping.state, self.mapping.action
        self.state_parts = self.state_parts or (Part(default_state(self.root, self.arrays, self.mapping)),)
        self.action_parts = self.action_parts or (Part(default_action(self.root, self.arrays)),)
        self.cameras = dict(self.mapping.cameras) or default_cameras(self.arrays, self.mapping.exclude)
        named = [p.key for p in (*self.state_parts, *self.action_parts)] + list(self.cameras.values())
        unknown = sorted({k for k in named + [self.mapping.time_base] if k and k not in self.arrays})
        if unknown:
            raise ValueError(
                f"{self.root}: the mapping names {unknown}, not arrays of data/ ({sorted(self.arrays)})"
            )

    def plan(self) -> tuple[list[str], list[Problem]]:
        return plan_ends(self.ends)

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def _rows(self, eid: str) -> tuple[int, int]:
        i = int(eid.removeprefix("episode_")) if eid.removeprefix("episode_").isdigit() else -1
        if not 0 <= i < len(self.ends):
            raise EpisodeError(eid, "meta/episode_ends", "no such episode")
        start = max(0, int(self.ends[:i].max())) if i else 0  # as plan_ends: rows are never shared
        if int(self.ends[i]) <= start:
            raise EpisodeError(
                eid, "meta/episode_ends", f"ends at row {int(self.ends[i])}, not after its start {start}"
            )
        return start, int(self.ends[i])

    def load(self, episode_id: str) -> Episode:
        a, b = self._rows(episode_id)
        try:
            return self._episode(episode_id, a, b)
        except StoreRefused as exc:
            raise EpisodeError(episode_id, str(exc).split(":")[0], str(exc)) from exc
        except MappingError as exc:
            raise EpisodeError(episode_id, "data", str(exc)) from exc

    def _episode(self, eid: str, a: int, b: int) -> Episode:
        read = lambda part: (self._read(eid, part.key, a, b), ())  # noqa: E731
        state, snames = concat_parts(self.state_parts, read, "data")
        action, anames = concat_parts(self.action_parts, read, "data")
        t = self._times(eid, a, b)
        named = bool(self.mapping.state), bool(self.mapping.action)
        streams = {
            "proprio": Stream("proprio", t, state, snames if named[0] else (), "data"),
            "action": Stream("action", t, action, anames if named[1] else (), "data"),
        }
        cameras = {name: self._camera(eid, name, key, a, b, t) for name, key in self.cameras.items()}
        ep = Episode(
            eid,
            self._instruction(eid),
            streams,
            cameras,
            embodiment=str(self.attrs.get("embodiment") or "zarr"),
            source=str(self.root),
            instruction_file=".zattrs",
        )
        return ensure_valid(ep)

    def _checked(self, eid: str, key: str, b: int) -> zarr.Array:
        """The array ``data/<key>``, checked to hold the episode's rows and to have chunks within bounds."""
        arr = self.arrays[key]
        where = f"data/{key}"
        if arr.shape[0] < b:
            raise EpisodeError(
                eid, where, f"has {arr.shape[0]} rows; the episode ends at row {b} (meta/episode_ends)"
            )
        chunk = arrays.declared_bytes(arr.chunks, arr.dtype.itemsize)
        if chunk > arrays.MAX_CHUNK_BYTES:
            raise EpisodeError(
                eid,
                where,
                f"declares chunks {list(arr.chunks)} of {chunk >> 20} MiB, more than {arrays.MAX_CHUNK_BYTES >> 20} MiB",
            )
        return arr

    def _read(self, eid: str, key: str, a: int, b: int) -> np.ndarray:
        """Rows a:b of a numeric array (only the chunks holding them are read)."""
        arr = self._checked(eid, key, b)
        arrays.check_array(eid, f"data/{key}", (b - a, *arr.shape[1:]), arr.dtype.itemsize)
        if arr.dtype.kind not in "biuf":
            raise EpisodeError(eid, f"data/{key}", f"is {arr.dtype}, not numbers")
        try:
            return np.asarray(arr[a:b])
        except (StoreRefused, OSError):  # OSError: a read that may succeed again (Attempts retries it)
            raise
        except Exception as exc:  # a codec's error on a damaged chunk: the episode's fault, named
            raise EpisodeError(eid, f"data/{key}", f"rows {a}:{b} cannot be read: {exc}") from exc

    def _times(self, eid: str, a: int, b: int) -> np.ndarray:
        if not self.mapping.time_base:
            return np.arange(b - a) / self.step_rate
        raw = self._read(eid, self.mapping.time_base, a, b).reshape(b - a, -1)[:, 0]
        return arrays.seconds(raw)

    def _camera(self, eid: str, name: str, key: str, a: int, b: int, t: np.ndarray) -> Camera:
        arr = self._checked(eid, key, b)
        arrays.check_frames(eid, f"data/{key}", arr.shape, arr.dtype)
        h, w = arr.shape[1], arr.shape[2]
        return Camera(
            name, f"{self.root}#{key}#{a}", t, np.arange(b - a, dtype=np.int64), int(w), int(h), "zarr-array"
        )

    def _instruction(self, eid: str) -> tuple[Segment, ...]:
        chosen = self.mapping.instruction
        if chosen is None:
            text = next((str(self.attrs[k]) for k in TEXT_ATTRS if self.attrs.get(k)), "") or store_name(
                self.root
            )
        elif chosen.kind == "constant":
            text = chosen.value
        elif chosen.kind == "attribute" and isinstance(self.attrs.get(chosen.value), str):
            text = self.attrs[chosen.value]
        elif chosen.kind == "attribute":
            raise EpisodeError(
                eid, ".zattrs", f"the root group has no text attribute {chosen.value!r} (mapping.instruction)"
            )
        else:
            raise EpisodeError(
                eid, "mapping", f"instruction from a {chosen.kind} is not in a Zarr replay buffer"
            )
        return (Segment(float("-inf"), float("inf"), text),)

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator[av.VideoFrame]:
        """The camera's frames from ``start_pts`` on, read one chunk of rows at a time."""
        root, key, first = camera.path.rsplit("#", 2)
        arr = open_store(Path(root))["data"][key]
        a, n = int(first), len(camera.pts)
        step = max(1, int(arr.chunks[0]))
        i = start_pts or 0
        while i < n:
            stop = min(n, ((a + i) // step + 1) * step - a)  # the end of the chunk holding row a + i
            try:
                block = np.asarray(arr[a + i : a + stop])
            except (StoreRefused, OSError):
                raise
            except Exception as exc:  # a codec's error on a damaged chunk, named (pass 2 quarantines)
                raise EpisodeError(Path(root).name, f"data/{key}", f"rows {a + i}:{a + stop}: {exc}") from exc
            for j, pixels in enumerate(block, i):
                yield arrays.array_frame(pixels, j)
            i = stop


def read_layout(root: Path) -> tuple[dict, dict[str, zarr.Array], np.ndarray]:
    """The root's attributes, the arrays of data/ and meta/episode_ends; ValueError naming the store
    when its metadata cannot be read (a damaged .zarray or zarr.json is every episode's)."""
    group = open_store(root)
    try:
        return dict(group.attrs), data_arrays(root, group), episode_ends(root, group)
    except LayoutError:
        raise
    except (StoreRefused, ValueError, KeyError, TypeError, RuntimeError) as exc:  # RuntimeError: blosc's
        raise ValueError(f"{root}: not a readable Zarr store: {exc}") from exc


def plan_ends(ends: np.ndarray) -> tuple[list[str], list[Problem]]:
    """Episode ids of meta/episode_ends; an episode of no rows, or ending before it starts (the
    furthest end so far: rows are never shared between episodes), rejected."""
    ids, rejected = [], []
    starts = np.maximum.accumulate(np.concatenate([[0], ends[:-1]]).clip(0)).tolist() if len(ends) else []
    for i, (a, b) in enumerate(zip(starts, ends.tolist(), strict=True)):
        eid = f"episode_{i:06d}"
        if b < a:
            rejected.append(Problem(eid, "meta/episode_ends", f"ends at row {b}, before its start {a}"))
        elif b == a:
            rejected.append(Problem(eid, "meta/episode_ends", "has no rows"))
        else:
            ids.append(eid)
    return ids, rejected


def data_arrays(root: Path, group: zarr.Group) -> dict[str, zarr.Array]:
    """The arrays of ``data/`` (metadata only: nothing of their chunks is read)."""
    data = group.get("data")
    if not isinstance(data, zarr.Group):
        raise LayoutError(
            f"{root}: no data/ group (a replay buffer holds data/<key> arrays and meta/episode_ends)"
        )
    return {name: arr for name, arr in sorted(data.arrays()) if arr.ndim >= 1}


def episode_ends(root: Path, group: zarr.Group) -> np.ndarray:
    meta = group.get("meta")
    ends = meta.get("episode_ends") if isinstance(meta, zarr.Group) else None
    if not isinstance(ends, zarr.Array) or ends.ndim != 1 or ends.dtype.kind not in "iu":
        raise LayoutError(f"{root}: no meta/episode_ends (one integer per episode: the row after its last)")
    if ends.shape[0] > MAX_EPISODES:
        raise LayoutError(
            f"{root}: meta/episode_ends declares {ends.shape[0]} episodes, more than {MAX_EPISODES}"
        )
    if arrays.declared_bytes(tuple(ends.chunks), ends.dtype.itemsize) > arrays.MAX_CHUNK_BYTES:
        raise LayoutError(f"{root}: meta/episode_ends declares chunks {list(ends.chunks)}: too large to read")
    return np.asarray(ends[:], dtype=np.int64)


def store_name(root: Path) -> str:
    return root.name.removesuffix(".zarr").removesuffix("_replay").replace("_", " ")


def vector_keys(found: dict[str, zarr.Array]) -> list[str]:
    """Arrays with one number or one vector per row: state and action candidates."""
    return [k for k, a in found.items() if arrays.is_numeric(a.shape, a.dtype)]


def default_action(root: Path, found: dict[str, zarr.Array]) -> str:
    key = arrays.first_present(set(found), arrays.ACTION_KEYS)
    if key is None:
        raise LayoutError(
            f"{root}: no data/action array; name the action with mapping.action ({sorted(found)})"
        )
    return key


def default_state(root: Path, found: dict[str, zarr.Array], mapping: Mapping) -> str:
    """``state`` (or another usual name), else the only vector array that is not the action, a time
    or excluded; ValueError naming the candidates when there are several."""
    key = arrays.first_present(set(found), arrays.STATE_KEYS)
    if key is not None:
        return key
    skip = {*arrays.ACTION_KEYS, "timestamp", "timestamps", mapping.time_base, *mapping.exclude}
    cands = [k for k in vector_keys(found) if k not in skip]
    if len(cands) != 1:
        raise LayoutError(
            f"{root}: no data/state array, and {'no' if not cands else len(cands)} other candidates {cands}: "
            'name the state with mapping.state (e.g. state = ["robot_eef_pose", "robot_joint"])'
        )
    return cands[0]


def default_cameras(found: dict[str, zarr.Array], exclude: tuple[str, ...]) -> dict[str, str]:
    """Every uint8 [N, H, W, 3] or [N, H, W] array, named without ``_image``."""
    return arrays.camera_names(
        [
            k
            for k, a in found.items()
            if k not in exclude and (arrays.is_image(a.shape, a.dtype) or arrays.is_gray(a.shape, a.dtype))
        ]
    )


def describe(root: Path, source_fps: float | None = None, **_: object) -> Listing:
    """Every array of ``data/`` (its rows in the first episode, its chunks), the root's text attributes,
    and a mapping template: ``state`` (or the robot's vector arrays, never an object's), ``action``,
    the image arrays as cameras."""
    root = Path(root).resolve()
    attrs, found, ends = read_layout(root)
    ids, rejected = plan_ends(ends)
    first = int(ids[0].removeprefix("episode_")) if ids else 0
    a, b = (int(ends[first - 1]) if first else 0), (int(ends[first]) if ids else 0)
    keys = [
        array_info(
            k,
            (b - a, *arr.shape[1:]),
            arr.dtype,
            source_fps,
            f"{arr.shape[0]} rows in all, chunks {list(arr.chunks)}",
        )
        for k, arr in found.items()
    ]
    keys += [text_info(k, v, "attribute of the root group") for k, v in attrs.items() if isinstance(v, str)]
    keys.append(KeyInfo("meta/episode_ends", "metadata", str(ends.dtype), (), None, None, len(ends)))
    mapping, notes = template(keys)
    chosen = next((k.key for k in keys if k.kind == "text"), None)
    mapping["instruction"] = {"attribute": chosen} if chosen else store_name(root)
    notes = [f"{len(ids)} episodes, {len(rejected)} rejected (meta/episode_ends)", *notes]
    rows = min((arr.shape[0] for arr in found.values()), default=0)
    if int((ends > rows).sum()):
        notes.append(
            f"{int((ends > rows).sum())} episode(s) end past the {rows} rows of data/ (they are quarantined)"
        )
    if any(k.kind == "time" for k in keys):
        notes.append(
            'a time array is there: time_base = "<it>" reads the recorded times instead of i / source_fps'
        )
    settings = {"source_fps": float(source_fps)} if source_fps else {}
    return Listing("zarr", len(ids), ids[0] if ids else "", tuple(keys), mapping, settings, tuple(notes))
