"""Reader for RLDS / Open X-Embodiment datasets as written by TFDS: ``features.json``,
``dataset_info.json`` and ``<name>-<split>.tfrecord-NNNNN-of-MMMMM`` shards, one ``tf.train.Example``
per episode. No TensorFlow: see ``sources/tfrecord.py``.

RLDS steps carry no timestamps: step i is at ``i / step_rate`` seconds (``source_fps`` in the job
config, by default the target ``fps``, so each step becomes one tick). ``steps/observation/state``
is proprio, ``steps/action`` the action; every encoded image feature under ``steps/observation`` is
a camera whose frames are the step's JPEG/PNG; ``steps/language_instruction`` gives each step's
instruction (time-ranged when it changes). Episode ids are ``<split>_<shard>_<record>``.
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
from trajshard.sources.contain import inside, regular_file
from trajshard.sources.describe_keys import first_loadable, is_instruction_name, short_text, skipped_note
from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.tfrecord import RecordError, parse_example, read_record, scan_records
from trajshard.sources.video import StoredJpeg

SHARD_RE = re.compile(r"^(?P<name>.+)-(?P<split>[A-Za-z0-9_]+)\.tfrecord-(?P<shard>\d{5})-of-\d{5}$")
EPISODE_RE = re.compile(r"^(?P<split>[A-Za-z0-9_]+)_(?P<shard>\d{5})_(?P<record>\d{6,})$")
PREFIX = "steps/observation/"


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

    def __init__(self, root: str | os.PathLike, step_rate: float = 10.0) -> None:
        self.root = Path(root).resolve()
        self.step_rate = float(step_rate)
        self.notes: list[str] = []
        spec_path = self.root / "features.json"
        if not spec_path.is_file():
            raise FileNotFoundError(f"{root}: no features.json, not a TFDS/RLDS dataset")
        self.spec = dict(_leaves(json.loads(spec_path.read_text(encoding="utf-8"))))
        self.cameras = sorted(
            k[len(PREFIX) :] for k, v in self.spec.items() if k.startswith(PREFIX) and "image" in v
        )
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
        actions = ex.get("steps/action")
        if actions is None:
            raise EpisodeError(episode_id, fname, "no steps/action feature")
        n = len(ex.get("steps/is_first", [])) or None
        streams = {}
        for key, name in (("steps/observation/state", "proprio"), ("steps/action", "action")):
            if key not in ex:
                raise EpisodeError(episode_id, fname, f"no {key} feature")
            flat = np.asarray(ex[key], dtype=np.float32)
            dims = self._dims(key) or (len(flat) // n if n else 0)
            if not dims or len(flat) % dims:
                raise EpisodeError(
                    episode_id, fname, f"{key} holds {len(flat)} values, not a multiple of {dims}"
                )
            values = flat.reshape(-1, dims)
            n = n or len(values)
            if len(values) != n:
                raise EpisodeError(episode_id, fname, f"{key} has {len(values)} steps, the episode {n}")
            streams[name] = Stream(name, np.arange(n) / self.step_rate, values, (), fname)
        cameras = {}
        for cam in self.cameras:
            frames = ex.get(PREFIX + cam, [])
            if len(frames) != n:
                raise EpisodeError(episode_id, fname, f"camera {cam!r}: {len(frames)} images for {n} steps")
            w, h = self._image_size(episode_id, fname, cam, frames[0])
            cameras[cam] = Camera(
                cam,
                f"{fname}#{episode_id}",
                np.arange(n) / self.step_rate,
                np.arange(n, dtype=np.int64),
                w,
                h,
                "jpeg-sequence",
            )
        ep = Episode(
            episode_id,
            self._instructions(ex, n),
            streams,
            cameras,
            source=str(self.root),
            extra={"is_terminal": bool(np.any(ex.get("steps/is_terminal", [0])))},
        )
        return ensure_valid(ep)

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator[av.VideoFrame]:
        """The camera's images decoded one at a time, as frames with pts = step index."""
        episode_id = camera.path.split("#", 1)[1]
        ex, _ = self._example(episode_id)
        for i, data in enumerate(ex[PREFIX + camera.name]):
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

    def _instructions(self, ex: dict, n: int) -> tuple[Segment, ...]:
        texts = [t.decode("utf-8", errors="replace") for t in ex.get("steps/language_instruction", [])]
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


# -- describe (trajshard describe) ----------------------------------------------------------------


def describe(root: Path, source_fps: float | None = None, **_: object) -> Listing:
    """Every leaf of ``features.json`` (dtype, shape, encoding, TFDS description) with one episode's
    steps; rates and spans at ``source_fps`` (RLDS has no clock), which the template header asks for."""
    src = RLDSSource(root, source_fps or 10.0)
    ids, rejected = src.plan()
    ep, reasons = first_loadable(ids, src.load)
    ex = src._example(ep.episode_id)[0] if ep is not None else {}
    n = len(next(iter(ep.streams.values())).timestamps) if ep is not None else None
    keys = [_leaf_key(src, k, spec, ex, n, source_fps) for k, spec in src.spec.items()]
    notes = [f"{len(ids)} episodes in {len(src.shards)} shard(s), {len(rejected)} rejected"]
    notes += skipped_note(reasons, ep.episode_id if ep else "")
    notes.append(
        "RLDS carries no clock: step i is at i / source_fps (default --fps 10); set --source-fps to the "
        "recording's rate" + ("" if source_fps else " (rates and spans above are left out without it)")
    )
    template = {
        "state": ["steps/observation/state"],
        "action": ["steps/action"],
        "cameras": {c: PREFIX + c for c in src.cameras},
        "instruction": {"column": "steps/language_instruction"},
    }
    settings = {"source_fps": float(source_fps)} if source_fps else {}
    return Listing(
        "rlds", len(ids), ep.episode_id if ep else "", tuple(keys), template, settings, tuple(notes)
    )


def _leaf_key(src: RLDSSource, key: str, spec: dict, ex: dict, n: int | None, rate: float | None) -> KeyInfo:
    """One features.json leaf: a camera (an image feature under steps/observation), text, or a tensor."""
    kind_spec = spec.get("image") or spec.get("tensor") or {}
    dims = tuple(
        int(d) for d in (kind_spec.get("shape") or {}).get("dimensions") or () if str(d).lstrip("-").isdigit()
    )
    stepped = key.startswith("steps/")
    span = (0.0, (n - 1) / rate) if stepped and n and rate else None
    n = n if stepped else None  # episode-level features have one value per episode
    about = short_text(spec.get("description", ""), 50) if spec.get("description") else ""
    if "image" in spec:
        kind = "camera" if key.startswith(PREFIX) else "other"
        dtype = str(kind_spec.get("encodingFormat", "image"))
        return KeyInfo(key, kind, dtype, dims, rate if stepped else None, span, n, (), about)
    if "text" in spec:
        texts = sorted({t.decode("utf-8", "replace") for t in ex.get(key, [])} - {""})
        sample = ", ".join(short_text(t) for t in texts[:2])
        candidate = sample and (stepped or is_instruction_name(key))
        detail = f"instruction candidate: {sample}" if candidate else f"{sample} {about}".strip()
        return KeyInfo(key, "text", "string", (), rate if stepped else None, span, n, (), detail)
    name = key.rsplit("/", 1)[-1]
    kind = "metadata" if name.startswith("is_") or not stepped else "numeric"
    return KeyInfo(
        key, kind, str(kind_spec.get("dtype", "")), dims, rate if stepped else None, span, n, (), about
    )
