"""Reader for LeRobot datasets: v2.0 and v2.1 (a parquet and an mp4 per episode, ``meta/*.jsonl``) and
v3.0 (several episodes per file, ``meta/episodes/*.parquet`` with from/to timestamps).

Streams: ``observation.state`` becomes proprio, ``action`` the action stream, both on the table's
``timestamp`` clock (float seconds, often float32); cameras are the ``video`` features, with frame
times from PTS (v3: minus the episode's ``from_timestamp``). The job config's ``mapping`` names other
columns (openpi's converters write ``state``, ``actions``, ``image``, ``wrist_image``):
``mapping = {state = ["state"], action = ["actions"], cameras = {primary = "image"}}``; several
columns are concatenated in the order given. Instructions come from each row's
``task_index`` (time-ranged when it changes), else from the episode's task list.

Real datasets are messy, and each case gets its own message: a declared camera with no video file
anywhere is left out (a source-level note); a camera missing for some episodes quarantines those;
an episode listed in the metadata whose parquet is missing is quarantined; a ``data_path`` template
that points at the wrong chunk (GR00T's uses the episode index) falls back to a search by file name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
from trajshard.sources import lerobot_listing
from trajshard.sources.contain import contained, from_template
from trajshard.sources.listing import Listing
from trajshard.sources.mapping import Mapping, MappingError, Part, as_mapping, concat_parts
from trajshard.sources.tables import TableError, check_table_file, read_table
from trajshard.sources.video import VideoError, probe_video

MAX_META_BYTES = 64 << 20
NOT_INSTRUCTIONS = {"valid", "invalid", ""}


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    if path.stat().st_size > MAX_META_BYTES:
        raise ValueError(f"{path.name} is larger than {MAX_META_BYTES} bytes")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class LeRobotSource:
    format = "lerobot"

    def __init__(self, root: str | os.PathLike, mapping: Mapping | dict | None = None) -> None:
        self.root = Path(root).resolve()
        info_path = self.root / "meta" / "info.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{root}: no meta/info.json, not a LeRobot dataset")
        try:
            self.info = json.loads(info_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{root}: meta/info.json is not UTF-8 JSON: {exc}") from exc
        if not isinstance(self.info, dict) or not isinstance(self.info.get("features", {}), dict):
            raise ValueError(f"{root}: meta/info.json must be an object with a 'features' object")
        self.version = str(self.info.get("codebase_version", "v2.1"))
        if not self.version.startswith(("v2", "v3")):
            raise ValueError(f"{root}: LeRobot {self.version} is not supported (v2.0, v2.1, v3.0 are)")
        feats = self.info.get("features", {})
        self.video_keys = sorted(
            k for k, v in feats.items() if isinstance(v, dict) and v.get("dtype") == "video"
        )
        self.notes: list[str] = []
        self.mapping = as_mapping(mapping)
        self.explicit = not self.mapping.empty
        if not self.explicit:
            self.mapping = modality_mapping(self.root, self.notes)
        self.state_parts = self.mapping.state or (Part("observation.state"),)
        self.action_parts = self.mapping.action or (Part("action"),)
        self.time_key = self.mapping.time_base or "timestamp"
        self.duplicates: set[str] = set()
        self._data: tuple[Path, object] | None = None  # the v3 data file last read (_data_file)
        try:
            self.tasks = self._tasks()
            self.episodes = self._episodes()
        except Exception as exc:  # noqa: BLE001 - unreadable metadata: the whole source, said at once
            raise ValueError(f"{root}: the episode or task metadata in meta/ cannot be read: {exc}") from exc
        self.video_dir = self._video_dir()
        pattern = "{k}/*/*" if self.version.startswith("v3") else "*/{k}/*"
        wanted = self._wanted_cameras()
        unknown = sorted(k for k in wanted.values() if k not in self.video_keys)
        if unknown:
            raise ValueError(f"{root}: mapping.cameras names {unknown}, not video features of meta/info.json")
        present = {
            n: k
            for n, k in wanted.items()
            if next((self.root / self.video_dir).glob(pattern.format(k=k)), None)
        }
        for k in sorted(set(wanted.values()) - set(present.values())):
            self.notes.append(
                f"camera {k!r} is declared in meta/info.json but no video file of it exists; it is left out"
            )
        self.camera_names = present  # output name -> video feature key
        self.cameras = sorted(present.values())
        self._codec_noted: set[str] = set()

    def _wanted_cameras(self) -> dict[str, str]:
        """Output name -> video feature: the mapping's; by default every video feature, named without
        ``observation.images.`` (or by modality.json's name for it)."""
        if self.explicit and self.mapping.cameras:
            return dict(self.mapping.cameras)
        renamed = {k: n for n, k in self.mapping.cameras.items()}
        return {renamed.get(k, k.removeprefix("observation.images.")): k for k in self.video_keys}

    # -- metadata ---------------------------------------------------------------------------------

    def _tasks(self) -> dict[int, str]:
        if self.version.startswith("v3"):
            path = self.root / "meta" / "tasks.parquet"
            if not path.is_file():
                return {}
            check_table_file(str(path))  # bounded before it is read, like every table
            t = pq.read_table(path).to_pylist()
            return {int(r["task_index"]): str(r.get("task") or r.get("__index_level_0__") or "") for r in t}
        return {int(r["task_index"]): str(r["task"]) for r in _jsonl(self.root / "meta" / "tasks.jsonl")}

    def _episodes(self) -> dict[str, dict]:
        if self.version.startswith("v3"):
            rows = []
            for f in sorted((self.root / "meta" / "episodes").glob("*/*.parquet")):
                check_table_file(str(f))
                rows += pq.read_table(f).to_pylist()
        else:
            rows = _jsonl(self.root / "meta" / "episodes.jsonl")
        out: dict[str, dict] = {}
        for r in rows:
            eid = f"episode_{int(r['episode_index']):06d}"
            if eid in out:
                self.duplicates.add(eid)
            out[eid] = r
        return out

    def plan(self) -> tuple[list[str], list[Problem]]:
        """Episodes listed once; an episode index listed twice is quarantined, not guessed between."""
        rejected = [
            Problem(e, "meta/episodes", "episode index listed more than once in the metadata")
            for e in sorted(self.duplicates)
        ]
        return sorted(set(self.episodes) - self.duplicates), rejected

    # -- v2 paths ---------------------------------------------------------------------------------

    def _v2_path(self, template_key: str, index: int, video_key: str = "") -> Path | None:
        chunk = index // int(self.info.get("chunks_size", 1000))
        template = self.info.get(template_key)
        if template:
            eid = f"episode_{index:06d}"
            p = from_template(
                self.root, template, eid, episode_chunk=chunk, episode_index=index, video_key=video_key
            )
            if p.is_file():
                return p
        name = f"episode_{index:06d}." + ("mp4" if video_key else "parquet")
        sub = f"{self.video_dir}/*/{video_key}/{name}" if video_key else f"data/*/{name}"
        found = sorted(self.root.glob(sub))
        return contained(self.root, found[0], f"episode_{index:06d}") if found else None

    # -- episodes ---------------------------------------------------------------------------------

    def load(self, episode_id: str) -> Episode:
        if episode_id not in self.episodes:
            raise EpisodeError(episode_id, "meta", "episode is not listed in the metadata")
        meta = self.episodes[episode_id]
        index = int(meta["episode_index"])
        table, data_name, base_time = self._table(episode_id, meta, index)
        if self.time_key not in table.column_names:
            raise EpisodeError(episode_id, data_name, f"no {self.time_key!r} column")
        ts = table.column(self.time_key).cast("float64").to_numpy() - base_time
        streams = {}
        for parts, name in ((self.state_parts, "proprio"), (self.action_parts, "action")):
            keys = [p.key for p in parts]
            if all(k in table.column_names for k in keys):
                values, names = self._columns(episode_id, data_name, table, parts)
                streams[name] = Stream(name, ts, values, names, data_name)
            elif name == "proprio" or self.mapping.action:
                missing = [k for k in keys if k not in table.column_names]
                raise EpisodeError(
                    episode_id,
                    data_name,
                    f"no {', '.join(repr(k) for k in missing)} column (it has {sorted(table.column_names)}); "
                    f"name the {'state' if name == 'proprio' else 'action'} columns with mapping in the job config",
                )
        cameras = {n: self._camera(episode_id, meta, index, k, len(ts)) for n, k in self.camera_names.items()}
        ep = Episode(
            episode_id,
            self._instructions(episode_id, data_name, table, ts, meta),
            streams,
            cameras,
            embodiment=str(self.info.get("robot_type") or ""),
            source=str(self.root),
            instruction_file="meta/tasks",
            embodiment_file="meta/info.json",
        )
        return ensure_valid(ep)

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def _table(self, episode_id: str, meta: dict, index: int):
        if self.version.startswith("v3"):
            path = from_template(
                self.root,
                self.info["data_path"],
                episode_id,
                chunk_index=meta["data/chunk_index"],
                file_index=meta["data/file_index"],
            )
            if not path.is_file():
                raise EpisodeError(episode_id, str(path.relative_to(self.root)), "data file is missing")
            try:
                t = self._data_file(path)
                t = t.filter(pc.equal(t.column("episode_index"), index))
            except TableError as exc:
                raise EpisodeError(episode_id, str(path.relative_to(self.root)), str(exc)) from exc
            except Exception as exc:  # noqa: BLE001 - an unreadable data file is this episode's problem
                raise EpisodeError(
                    episode_id, str(path.relative_to(self.root)), f"cannot be read: {exc}"
                ) from exc
            return t, str(path.relative_to(self.root)), 0.0
        path = self._v2_path("data_path", index)
        if path is None:
            raise EpisodeError(
                episode_id,
                f"episode_{index:06d}.parquet",
                "listed in meta/episodes.jsonl but its parquet file is missing",
            )
        try:
            return read_table(str(path)), str(path.relative_to(self.root)), 0.0
        except TableError as exc:
            raise EpisodeError(episode_id, str(path.relative_to(self.root)), str(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - any unreadable parquet is this episode's problem
            raise EpisodeError(
                episode_id, str(path.relative_to(self.root)), f"cannot be read: {exc}"
            ) from exc

    def _data_file(self, path: Path):
        """A v3 data file's table. It holds many episodes, and a task loads consecutive episodes, so the
        last file read is kept (one file: the memory a load needs anyway) instead of read for each."""
        if self._data is None or self._data[0] != path:
            self._data = None  # the old table goes before the new one is read
            self._data = (path, read_table(str(path)))
        return self._data[1]

    def _columns(
        self, episode_id: str, data_name: str, table, parts: tuple[Part, ...]
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """The parts' columns side by side, as float32 [T, D] (a list column gives its width, a number
        column one dimension), with their dimension names."""

        def read(part: Part):
            values = table.column(part.key).to_numpy(zero_copy_only=False)
            values = np.stack(values) if values.dtype == object and len(values) else values
            return values.astype(np.float32), self._names(part.key)

        try:
            values, names = concat_parts(parts, read, data_name)
        except (MappingError, ValueError) as exc:
            raise EpisodeError(episode_id, data_name, str(exc)) from exc
        if not self.explicit and all(not self._names(p.key) and values.shape[1] > 1 for p in parts):
            return values, ()  # unnamed list columns stay unnamed by default
        return values, names

    def _video_dir(self) -> str:
        """``videos`` (LeRobot's), or ``video`` where a converter put the files though ``video_path``
        says ``videos/`` (noted)."""
        if (self.root / "videos").is_dir() or not (self.root / "video").is_dir():
            return "videos"
        self.notes.append(
            "the video files are under video/ though meta/info.json's video_path says videos/; read from there"
        )
        return "video"

    def _camera(self, episode_id: str, meta: dict, index: int, key: str, rows: int = 0) -> Camera:
        start = 0.0
        if self.version.startswith("v3"):
            path = from_template(
                self.root,
                self.info["video_path"].replace("videos/", f"{self.video_dir}/", 1),
                episode_id,
                video_key=key,
                chunk_index=meta[f"videos/{key}/chunk_index"],
                file_index=meta[f"videos/{key}/file_index"],
            )
            start, end = (
                float(meta[f"videos/{key}/from_timestamp"]),
                float(meta[f"videos/{key}/to_timestamp"]),
            )
        else:
            path = self._v2_path("video_path", index, key)
        if path is None or not path.is_file():
            raise EpisodeError(episode_id, key, f"camera {key!r}: the episode's video file is missing")
        try:
            # v3: the episode's stretch of a file that holds many episodes, not the whole file each time
            probe = probe_video(str(path), (start, end) if self.version.startswith("v3") else None)
            if self.version.startswith("v3") and len(probe.pts) == rows - 1:
                probe = self._last_frame(episode_id, path, key, (start, end), rows, probe)
        except VideoError as exc:
            raise EpisodeError(episode_id, path.name, f"camera {key!r}: {exc}") from exc
        self._check_codec(key, probe.codec)
        name = next(n for n, k in self.camera_names.items() if k == key)
        return Camera(
            name,
            str(path),
            probe.seconds - start,
            probe.pts,
            probe.width,
            probe.height,
            probe.codec,
            probe.entry,
        )

    def _last_frame(self, episode_id: str, path: Path, key: str, window, rows: int, probe):
        """The episode's frames when its ``to_timestamp`` is its last frame's time instead of the time
        after it (some converters write that): one frame short of the table's rows, and the next frame
        within half a frame interval of ``to``. The window then ends half a frame later (noted)."""
        start, end = window
        half = 0.5 / float(self.info.get("fps") or 30.0)
        wider = probe_video(str(path), (start, end + half))
        if len(wider.pts) != rows:
            return probe
        if not any("to_timestamp is its last frame" in n for n in self.notes):
            self.notes.append(
                f"camera {key!r}: an episode's to_timestamp is its last frame's time, not the time after "
                f"it; that frame is kept (first seen in {episode_id})"
            )
        return wider

    def _check_codec(self, key: str, codec: str) -> None:
        """A note, once per camera, when meta/info.json declares another codec than the files have."""
        declared = ((self.info.get("features", {}).get(key) or {}).get("info") or {}).get("video.codec")
        if (
            declared
            and codec
            and declared not in codec
            and codec not in declared
            and key not in self._codec_noted
        ):
            self._codec_noted.add(key)
            self.notes.append(
                f"camera {key!r}: meta/info.json declares {declared}, the files are {codec}; read as {codec}"
            )

    def _names(self, key: str) -> tuple[str, ...]:
        names = self.info.get("features", {}).get(key, {}).get("names")
        while isinstance(names, list) and len(names) == 1 and isinstance(names[0], list):
            names = names[0]
        if isinstance(names, dict):  # {"motors": [...]}
            names = next(iter(names.values()), [])
        return tuple(str(n) for n in names) if isinstance(names, list) else ()

    def _instructions(
        self, eid: str, data_name: str, table, ts: np.ndarray, meta: dict
    ) -> tuple[Segment, ...]:
        """The mapping's instruction (a constant, a per-step label column, a file in the dataset), else
        each row's ``task_index`` (time-ranged when it changes), else the episode's task list."""
        chosen = self.mapping.instruction
        if chosen is not None and chosen.kind == "constant":
            return (Segment(float("-inf"), float("inf"), chosen.value),)
        if chosen is not None and chosen.kind == "file":
            return (Segment(float("-inf"), float("inf"), instruction_file(self.root, chosen.value, eid)),)
        if chosen is not None and chosen.kind != "column":
            raise EpisodeError(
                eid, "mapping", f"instruction from a {chosen.kind} is not in a LeRobot dataset"
            )
        column = chosen.value if chosen is not None else "task_index"
        if column in table.column_names and (self.tasks or chosen is not None):
            labels = [self._label(v) for v in table.column(column).to_pylist()]
            segs = label_segments(labels, ts)
            if any(s.text.strip().lower() not in NOT_INSTRUCTIONS for s in segs):
                return segs
        elif chosen is not None:
            raise EpisodeError(eid, data_name, f"no instruction column {column!r} (mapping.instruction)")
        tasks = [t for t in meta.get("tasks", []) if str(t).strip().lower() not in NOT_INSTRUCTIONS]
        return (Segment(float("-inf"), float("inf"), str(tasks[0]) if tasks else ""),)

    def _label(self, value: object) -> str:
        """A per-step label: text as it is, an integer through meta/tasks."""
        if isinstance(value, str):
            return value
        return self.tasks.get(int(value), "") if isinstance(value, int) else ""


def label_segments(labels: list[str], ts: np.ndarray) -> tuple[Segment, ...]:
    """Per-step labels as time-ranged segments, one per run of equal labels."""
    cuts = [0] + [i for i in range(1, len(labels)) if labels[i] != labels[i - 1]] + [len(labels)]
    segs = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        end = ts[b] if b < len(ts) else float("inf")
        segs.append(Segment(float("-inf") if a == 0 else float(ts[a]), float(end), labels[a]))
    return tuple(segs)


def instruction_file(root: Path, name: str, eid: str) -> str:
    """The text of an instruction file named by the mapping, inside the source, at most 64 KB."""
    path = contained(root, root / name, eid)
    if not path.is_file():
        raise EpisodeError(eid, name, "the instruction file named by mapping.instruction is missing")
    data = path.read_bytes()[: 64 << 10]
    return data.decode("utf-8", "replace").strip()


def modality_mapping(root: Path, notes: list[str]) -> Mapping:
    """GR00T's ``meta/modality.json`` read as a mapping: state and action as the named slices of their
    original keys (in the order of their starts), cameras from ``video``. Absent or unreadable: the
    default mapping (noted)."""
    path = root / "meta" / "modality.json"
    if not path.is_file():
        return Mapping()
    try:
        raw = json.loads(path.read_bytes()[:MAX_META_BYTES])
        parts = {
            kind: tuple(
                Part(str(v.get("original_key") or default), "", int(v["start"]), int(v["end"]))
                for _, v in sorted(raw.get(kind, {}).items(), key=lambda kv: int(kv[1]["start"]))
            )
            for kind, default in (("state", "observation.state"), ("action", "action"))
        }
        cams = {
            k: str(v.get("original_key") or f"observation.images.{k}")
            for k, v in raw.get("video", {}).items()
        }
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        notes.append(f"meta/modality.json cannot be read as a mapping ({exc}); the default names are used")
        return Mapping()
    return Mapping(state=parts["state"], action=parts["action"], cameras=cams)


# -- describe (trajshard describe): the listing is built in sources/lerobot_listing.py ------------


def describe(root: Path, mapping: dict | None = None, **_: object) -> Listing:
    """What the dataset holds and the mapping template that ingests it, read with this reader."""
    return lerobot_listing.listing(lambda m: LeRobotSource(root, m), mapping, NOT_INSTRUCTIONS)
