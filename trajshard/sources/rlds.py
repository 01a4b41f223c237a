"""Reader for RLDS / Open X-Embodiment datasets as written by TFDS: ``features.json``,
``dataset_info.json`` and ``<name>-<split>.tfrecord-NNNNN-of-MMMMM`` shards, one ``tf.train.Example``
per episode. No TensorFlow: see ``sources/tfrecord.py``.

RLDS steps carry no timestamps: step i is at ``i / step_rate`` seconds (``source_fps`` in the job
config, by default the target ``fps``, so each step becomes one tick). ``steps/observation/state``
is proprio, ``steps/action`` the action; every encoded image feature under ``steps/observation`` is
a camera whose frames are the step's JPEG/PNG; ``steps/language_instruction`` gives each step's
instruction (time-ranged when it changes). Episode ids are ``<split>_<shard>_<record>``.

The source mapping (sources/mapping.py) names flattened feature keys instead: ``state``/``action``
parts are numeric ``steps/...`` features (sliced, named), ``cameras`` maps output names to encoded
image features, the instruction is a constant or ``{column = <text feature>}``: a ``steps/...`` key
gives one label per step, an ``episode_metadata/...`` key one text for the episode. ``exclude``
leaves image features out of the default cameras. A key the mapping names and a record lacks
quarantines that episode, naming the shard and the keys the record has. An empty mapping is the
defaults above, byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
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
from trajshard.sources import rlds_listing
from trajshard.sources.contain import inside, regular_file
from trajshard.sources.listing import Listing
from trajshard.sources.mapping import Mapping, MappingError, Part, as_mapping, concat_parts
from trajshard.sources.tfrecord import RecordError, parse_example, read_record, scan_records
from trajshard.sources.video import StoredJpeg

SHARD_RE = re.compile(r"^(?P<name>.+)-(?P<split>[A-Za-z0-9_]+)\.tfrecord-(?P<shard>\d{5})-of-\d{5}$")
EPISODE_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)_(?P<shard>\d{5})_(?P<record>\d{6,})$")
PREFIX = "steps/observation/"
STATE, ACTION, LANGUAGE = "steps/observation/state", "steps/action", "steps/language_instruction"
MAX_KEYS_SHOWN = 40


def _leaves(node: dict, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """(flattened key, TFDS feature spec) of every leaf of a features.json tree."""
    feats = node.get("featuresDict", {}).get("features")
    if feats is None and "sequence" in node:
        yield from _leaves(node["sequence"]["feature"], prefix)
        return
    if feats is None:
        yield prefix.rstrip("/"), node
        return
    for name, child in feats.items():
        yield from _leaves(child, f"{prefix}{name}/")


class RLDSSource:
    format = "rlds"

    def __init__(
        self, root: str | os.PathLike, step_rate: float = 10.0, mapping: Mapping | dict | None = None
    ) -> None:
        self.root = Path(root).resolve()
        self.step_rate = float(step_rate)
        self.mapping = as_mapping(mapping)
        refuse_unreadable(self.mapping)
        self.notes: list[str] = []
        spec_path = self.root / "features.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"{root}: no features.json, not a TFDS/RLDS dataset")
        self.spec = dict(_leaves(json.loads(spec_path.read_text(encoding="utf-8"))))
        # output camera name -> image feature key; without a mapping, every image feature under
        # steps/observation/ (less exclude), in name order
        skip = set(self.mapping.exclude)
        self.camera_keys = dict(self.mapping.cameras) or {
            k[len(PREFIX) :]: k
            for k, v in sorted(self.spec.items())
            if k.startswith(PREFIX) and "image" in v and not {k, k[len(PREFIX) :]} & skip
        }
        self.cameras = list(self.camera_keys)
        self.shards = sorted(p for p in self.root.iterdir() if SHARD_RE.match(p.name))
        self._index: dict[str, tuple[Path, int, int]] | None = None
        self._shard_records: dict[Path, list[tuple[int, int]] | None] = {}
        self._broken: dict[Path, str] = {}  # shard -> why its records end early
        self.rejected: list[Problem] = []

    def _shard(self, path: Path) -> list[tuple[int, int]] | None:
        """(offset, length) of each intact record of one shard, read once per source; None when the
        file cannot be opened (the plan rejects it). Records after a broken header are lost; the plan
        rejects the broken one as the episode it would have been (``_broken``)."""
        if path not in self._shard_records:
            try:
                records, error = scan_records(str(self._contained(path)))
            except EpisodeError as exc:  # a link out of the source, a FIFO: never opened
                self.rejected.append(Problem(path.name, path.name, exc.message))
                records, error = None, None
            except OSError as exc:
                self.rejected.append(Problem(path.name, path.name, f"shard cannot be read: {exc}"))
                records, error = None, None
            self._shard_records[path] = records
            if error is not None:
                self._broken[path] = f"{error}; the rest of the file cannot be read"
        return self._shard_records[path]

    def _contained(self, path: Path) -> Path:
        """``path`` when it is a regular file inside the source, else EpisodeError naming it."""
        if not inside(self.root, path):
            raise EpisodeError(path.name, path.name, "is a link to a place outside the source")
        return regular_file(path, path.name)

    def _records(self) -> dict[str, tuple[Path, int, int]]:
        """Every episode's record, over all shards (the plan)."""
        if self._index is None:
            self._index = {}
            for path in self.shards:
                m = SHARD_RE.match(path.name)
                records = self._shard(path) or ()
                for k, (off, n) in enumerate(records):
                    eid = f"{m['split']}_{m['shard']}_{k:06d}"
                    if eid in self._index:  # two shard families in one directory: never overwrite
                        self.rejected.append(
                            Problem(
                                f"{m['name']}_{eid}",
                                path.name,
                                f"episode id {eid} also comes from {self._index[eid][0].name}",
                            )
                        )
                        continue
                    self._index[eid] = (path, off, n)
                if path in self._broken:  # the broken record is one input episode, quarantined
                    eid = f"{m['split']}_{m['shard']}_{len(records):06d}"
                    self.rejected.append(Problem(eid, path.name, self._broken[path]))
        return self._index

    def _record(self, episode_id: str) -> tuple[Path, int, int] | None:
        """One episode's record. A task loads a few episodes: it indexes only the shards their ids name
        (``<split>_<shard>_<record>``), not every shard of the dataset, and finds the record the plan
        found (the first shard, in name order, that holds it)."""
        if self._index is not None:
            return self._index.get(episode_id)
        m = EPISODE_RE.match(episode_id)
        if m is None:
            return None
        k = int(m["record"])
        for path in self.shards:
            sm = SHARD_RE.match(path.name)
            if (sm["split"], sm["shard"]) != (m["split"], m["shard"]):
                continue
            records = self._shard(path)
            if records is not None and k < len(records):
                return (path, *records[k])
        return None

    def plan(self) -> tuple[list[str], list[Problem]]:
        ids = sorted(self._records())
        return ids, list(self.rejected)

    def _example(self, episode_id: str) -> tuple[dict, str]:
        rec = self._record(episode_id)
        if rec is None:
            raise EpisodeError(episode_id, "tfrecord", "no such episode in the shards")
        path, off, n = rec
        try:
            return parse_example(read_record(str(path), off, n)), path.name
        except (RecordError, UnicodeDecodeError) as exc:
            raise EpisodeError(episode_id, path.name, str(exc)) from exc
        except OSError as exc:
            raise EpisodeError(episode_id, path.name, f"cannot be read: {exc.strerror or exc}") from exc

    def load(self, episode_id: str) -> Episode:
        ex, fname = self._example(episode_id)
        m = self.mapping
        if not m.action and ACTION not in ex:
            raise EpisodeError(episode_id, fname, f"no {ACTION} feature")
        n = len(ex.get("steps/is_first", [])) or None
        state, snames = self._stream(episode_id, fname, ex, m.state, STATE, n)
        n = n or len(state)
        action, anames = self._stream(episode_id, fname, ex, m.action, ACTION, n)
        if len(action) != n:  # mapped parts: each part matched the others, not yet the state
            raise EpisodeError(episode_id, fname, f"{len(action)} actions for {n} steps")
        t = np.arange(n) / self.step_rate
        streams = {
            "proprio": Stream("proprio", t, state, snames, fname),
            "action": Stream("action", t, action, anames, fname),
        }
        cameras = {
            name: self._camera(episode_id, fname, ex, name, key, n) for name, key in self.camera_keys.items()
        }
        ep = Episode(
            episode_id,
            self._instructions(episode_id, fname, ex, n),
            streams,
            cameras,
            source=str(self.root),
            extra={"is_terminal": bool(np.any(ex.get("steps/is_terminal", [0])))},
        )
        return ensure_valid(ep)

    def _stream(
        self, eid: str, fname: str, ex: dict, parts: tuple[Part, ...], default: str, n: int | None
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """The mapping's parts side by side with their names, else the default key's [n, D] values
        (no names: today's outputs keep their bytes)."""
        if not parts:
            if default not in ex:
                raise EpisodeError(eid, fname, f"no {default} feature")
            return self._steps(eid, fname, ex[default], default, n), ()

        def read(part: Part) -> tuple[np.ndarray, tuple[str, ...]]:
            return self._steps(eid, fname, self._named(eid, fname, ex, part.key), part.key, n), ()

        try:
            return concat_parts(parts, read, fname)
        except MappingError as exc:
            raise EpisodeError(eid, fname, str(exc)) from exc

    def _steps(self, eid: str, fname: str, value: object, key: str, n: int | None) -> np.ndarray:
        """A numeric feature as float32 [n, D]: D from features.json's shape, else its values / n."""
        if isinstance(value, list):
            raise EpisodeError(eid, fname, f"{key} is a bytes or text feature, not numbers")
        flat = np.asarray(value, dtype=np.float32)
        dims = self._dims(key) or (len(flat) // n if n else 0)
        if not dims or len(flat) % dims:
            raise EpisodeError(eid, fname, f"{key} holds {len(flat)} values, not a multiple of {dims}")
        values = flat.reshape(-1, dims)
        if n is not None and len(values) != n:
            raise EpisodeError(eid, fname, f"{key} has {len(values)} steps, the episode {n}")
        return values

    def _named(self, eid: str, fname: str, ex: dict, key: str) -> object:
        """The feature the mapping names; EpisodeError naming the shard and the keys the record has."""
        if key not in ex:
            keys = sorted(ex)
            shown = ", ".join(keys[:MAX_KEYS_SHOWN]) + (
                f", ... ({len(keys) - MAX_KEYS_SHOWN} more)" if len(keys) > MAX_KEYS_SHOWN else ""
            )
            raise EpisodeError(
                eid, fname, f"the mapping names {key!r}, which the record does not hold; it has: {shown}"
            )
        return ex[key]

    def _camera(self, eid: str, fname: str, ex: dict, cam: str, key: str, n: int) -> Camera:
        """A camera whose frames are the encoded images of ``key``, one per step."""
        frames = self._named(eid, fname, ex, key) if self.mapping.cameras else ex.get(key, [])
        if not isinstance(frames, list):
            raise EpisodeError(eid, fname, f"camera {cam!r}: {key} is a numeric feature, not encoded images")
        if len(frames) != n:
            raise EpisodeError(eid, fname, f"camera {cam!r}: {len(frames)} images for {n} steps")
        w, h = self._image_size(eid, fname, cam, frames[0])
        steps = np.arange(n)
        return Camera(
            cam, f"{fname}#{eid}", steps / self.step_rate, steps.astype(np.int64), w, h, "jpeg-sequence"
        )

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator[av.VideoFrame]:
        """The camera's images decoded one at a time, as frames with pts = step index."""
        episode_id = camera.path.split("#", 1)[1]
        ex, _ = self._example(episode_id)
        for i, data in enumerate(ex[self.camera_keys[camera.name]]):
            if start_pts and i < start_pts:
                continue
            yield StoredJpeg(data, i)

    def _dims(self, key: str) -> int:
        dims = self.spec.get(key, {}).get("tensor", {}).get("shape", {}).get("dimensions", [])
        return int(np.prod([int(d) for d in dims])) if dims else 0

    def _image_size(self, episode_id: str, fname: str, cam: str, data: bytes) -> tuple[int, int]:
        try:
            with Image.open(io.BytesIO(data)) as img:
                return img.size
        except Exception as exc:  # noqa: BLE001
            raise EpisodeError(
                episode_id, fname, f"camera {cam!r}: first image does not decode: {exc}"
            ) from exc

    def _instructions(self, eid: str, fname: str, ex: dict, n: int) -> tuple[Segment, ...]:
        """Each step's instruction: the mapping's constant or text feature (a ``steps/...`` key: one
        label per step; any other, e.g. ``episode_metadata/...``: one text for the episode), else
        ``steps/language_instruction`` when it has a label per step (no instruction otherwise)."""
        chosen = self.mapping.instruction
        if chosen is None:
            texts = _texts(ex.get(LANGUAGE, []))
            return self._segments(texts if len(texts) == n else [], n)
        if chosen.kind == "constant":
            return (Segment(float("-inf"), float("inf"), chosen.value),)
        value = self._named(eid, fname, ex, chosen.value)
        if not isinstance(value, list):
            raise EpisodeError(eid, fname, f"{chosen.value} (mapping.instruction) is numeric, not text")
        texts, per_step = _texts(value), chosen.value.startswith("steps/")
        if len(texts) != (n if per_step else 1):
            want = f"one per step ({n})" if per_step else "one for the episode"
            raise EpisodeError(
                eid, fname, f"{chosen.value} (mapping.instruction) holds {len(texts)} texts, not {want}"
            )
        return self._segments(texts if per_step else texts * n, n)

    def _segments(self, texts: list[str], n: int) -> tuple[Segment, ...]:
        """Per-step texts as time-ranged segments, one per run of equal texts; one empty segment when
        there are none or all are blank."""
        if len(texts) != n or not any(t.strip() for t in texts):
            return (Segment(float("-inf"), float("inf"), ""),)
        segs, start = [], 0
        for i in range(1, n + 1):
            if i == n or texts[i] != texts[start]:
                end = float("inf") if i == n else i / self.step_rate
                segs.append(
                    Segment(float("-inf") if start == 0 else start / self.step_rate, end, texts[start])
                )
                start = i
        return tuple(segs)


def _texts(values: list[bytes]) -> list[str]:
    return [t.decode("utf-8", errors="replace") for t in values]


def refuse_unreadable(m: Mapping) -> None:
    """ValueError naming each key of the mapping an RLDS source cannot use, before any work."""
    problems = [
        f"mapping.{which}[{i}]: {p.label()!r}: an RLDS feature has no message fields; name its flattened key"
        for which, parts in (("state", m.state), ("action", m.action))
        for i, p in enumerate(parts)
        if p.field
    ]
    if m.time_base:
        problems.append("mapping.time_base: RLDS steps carry no times; set source_fps (--source-fps)")
    if m.episodes:
        problems.append("mapping.episodes is for HDF5 files; an RLDS episode is one record of a shard")
    if m.instruction is not None and m.instruction.kind not in ("constant", "column"):
        problems.append(
            f"mapping.instruction: an RLDS instruction is a string or {{column = <text feature>}} "
            f"(steps/... per step, episode_metadata/... per episode), not {{{m.instruction.kind} = ...}}"
        )
    if problems:
        raise ValueError("; ".join(problems))


# -- describe (trajshard describe): the listing is built in sources/rlds_listing.py ---------------


def describe(root: Path, source_fps: float | None = None, **_: object) -> Listing:
    """Every leaf of ``features.json`` with one episode's steps, and the mapping template that ingests
    the dataset as this reader does by default; rates and spans at ``source_fps`` (RLDS has no clock)."""
    return rlds_listing.listing(lambda m: RLDSSource(root, source_fps or 10.0, m), source_fps)
