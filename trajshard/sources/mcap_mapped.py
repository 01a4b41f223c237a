"""One MCAP episode read through a source mapping (sources/mapping.py).

- ``state`` / ``action``: parts naming topics (``key``) and numeric fields (``field``, default
  JointState ``position``), concatenated in order; dimension names from JointState ``name``, each
  prefixed by its topic's short name (``arm_left_follow/joint1``) when a name occurs in two parts
  of the state (or of the action). Without parts: the JointState topics, the ones named
  lead/command/action/target as the action, less those in ``exclude``.
- ``time_base``: the topic whose stamps the state and action are on [the first state topic]; every
  other part's topic is paired onto them (sources/mcap_topics.py ``pair_onto``). The episode clock
  is seconds since the time base's first message.
- ``instruction``: a constant, ``{record, field}`` (a metadata record), ``{file}`` (a text file in
  the episode's folder or beside the bag) [the ``task`` record's ``instruction``].
- ``cameras``: ``{name: topic or video}``: an image topic of the bag, or a video beside it named by
  file name, stem or topic [every image topic and every video].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trajshard.schemas.episode import Camera, Episode, EpisodeError, Segment, Stream, ensure_valid
from trajshard.sources.contain import contained, regular_file
from trajshard.sources.mapping import Mapping, MappingError, Part, concat_parts
from trajshard.sources.mcap_bag import BagIndex, index_bags, read_series
from trajshard.sources.mcap_layout import EpisodeFiles
from trajshard.sources.mcap_topics import (
    IMAGE_TYPES,
    NS,
    SYNC_RULES,
    Series,
    TopicError,
    guess_topics,
    pair_onto,
    short_names,
)
from trajshard.sources.mcap_videos import camera_name, topic_stem, video_camera

MAX_TEXT_BYTES = 64 << 10


@dataclass(frozen=True)
class McapSettings:
    """The ``[mcap]`` table's settings that apply with a mapping."""

    stamp: str = "header"  # "header" stamps or the recorder's "log" time
    sync: str = "auto"  # how other topics meet the time base (SYNC_RULES)
    video_offsets: dict[str, float] = field(default_factory=dict)  # camera or stem -> s after the base

    @classmethod
    def of(cls, options: dict) -> McapSettings:
        sync = str(options.get("sync", "auto"))
        if sync not in SYNC_RULES:
            raise ValueError(f"mcap.sync must be one of {SYNC_RULES}, got {sync!r}")
        offsets = {str(k): float(v) for k, v in dict(options.get("video_offsets") or {}).items()}
        return cls(str(options.get("stamp", "header")), sync, offsets)


def parts_of(mapping: Mapping, types: dict[str, str]) -> tuple[tuple[Part, ...], tuple[Part, ...]]:
    """The state and action parts: the mapping's, else the JointState topics (guess_topics) not
    excluded."""
    state, action = ([t for t in g if t not in mapping.exclude] for g in guess_topics(types))
    return mapping.state or tuple(Part(t) for t in state), mapping.action or tuple(Part(t) for t in action)


def load_mapped(files: EpisodeFiles, root: Path, mapping: Mapping, settings: McapSettings) -> Episode:
    eid, label = files.episode_id, files.label
    try:
        index = index_bags(files.bags)
        state_parts, action_parts = parts_of(mapping, index.types)
        if not state_parts:
            raise TopicError("no JointState topic for the state; name the state topics in mapping.state")
        base = mapping.time_base or state_parts[0].key
        cams = _camera_topics(mapping, index, files)
        wanted = _wanted(state_parts + action_parts, base, cams, index.types)
        series, stamps = read_series(files.bags, wanted, settings.stamp)
        t0 = int(stamps[base].min())  # the episode clock's zero: the time base's first message
        kept, idx, lag = pair_onto(
            np.sort(stamps[base]),
            [series[k] for k in _series_keys(state_parts + action_parts)],
            settings.sync,
        )
        streams = _streams(label, state_parts, action_parts, series, idx, (kept - t0) / 1e9)
    except (TopicError, MappingError, ValueError) as exc:
        raise EpisodeError(eid, label, str(exc)) from exc
    starts = {k: int(v) for k, v in index.metadata.get("trajshard.video", {}).items()}
    starts.update({k: t0 + round(v * NS) for k, v in settings.video_offsets.items()})
    cameras = _cameras(files, root, cams, stamps, t0, starts)
    ep = Episode(
        eid,
        _instruction(files, root, mapping, index),
        streams,
        cameras,
        embodiment=index.metadata.get("task", {}).get("embodiment", ""),
        source=str(files.bags[0]),
        extra={"sync_lag_s": lag, "subtasks": index.metadata.get("task_info", {}).get("subtasks", "")},
        instruction_file=label,
    )
    return ensure_valid(ep)


def _series_keys(parts: tuple[Part, ...]) -> list[tuple[str, str]]:
    return list(dict.fromkeys((p.key, p.field) for p in parts))


def _wanted(parts, base: str, cams: dict[str, str], types: dict[str, str]) -> dict[str, list[str]]:
    """Topic -> the fields to read; every topic must be in the bag."""
    wanted: dict[str, list[str]] = {}
    for key, fld in _series_keys(parts):
        wanted.setdefault(key, []).append(fld)
    wanted.setdefault(base, [])
    for topic in cams.values():
        if topic in types:
            wanted.setdefault(topic, [])
    unknown = [t for t in wanted if t not in types]
    if unknown:
        raise TopicError(f"topics {unknown} are not in the bag (it has {sorted(types)})")
    return wanted


def _streams(
    label, state_parts, action_parts, series: dict, idx: dict, times: np.ndarray
) -> dict[str, Stream]:
    short = short_names(list(dict.fromkeys(p.key for p in state_parts + action_parts)))
    out = {}
    for name, parts in (("proprio", state_parts), ("action", action_parts)):
        if not parts:
            continue
        prefix = _clashing(parts, series)

        def read(part: Part, prefix: bool = prefix) -> tuple[np.ndarray, tuple[str, ...]]:
            s: Series = series[(part.key, part.field)]
            own = tuple(f"{short[part.key]}/{n}" for n in s.names) if prefix else s.names
            return s.values[idx[part.key]], own

        values, names = concat_parts(parts, read, label)
        where = f"{label}:{','.join(dict.fromkeys(p.key for p in parts))}"
        out[name] = Stream(name, times, values, names, where)
    return out


def _clashing(parts: tuple[Part, ...], series: dict) -> bool:
    """Whether two parts carry a dimension of the same name."""
    seen: list[str] = []
    for key in _series_keys(parts):
        seen += list(series[key].names)
    return len(seen) != len(set(seen))


def _camera_topics(mapping: Mapping, index: BagIndex, files: EpisodeFiles) -> dict[str, str]:
    """Output camera -> image topic or video file name: the mapping's, else every image topic and
    every video beside the bag (a video named after an image topic replaces nothing: both are kept
    under their own names)."""
    if mapping.cameras:
        return dict(mapping.cameras)
    out = {camera_name(t): t for t, ty in sorted(index.types.items()) if ty in IMAGE_TYPES}
    for video in files.videos():
        out.setdefault(camera_name(video_key(files, video)), video.name)
    return out


def video_key(files: EpisodeFiles, video: Path) -> str:
    """A video's name without its suffix: the topic stem, or the camera of a flat-layout
    ``<episode>.<camera>.mp4``."""
    if files.legacy_prefix is not None and video.parent == files.legacy_prefix.parent:
        return video.name[len(files.episode_id) + 1 :].rsplit(".", 1)[0]
    return video.stem


def _find_video(files: EpisodeFiles, value: str) -> Path | None:
    """The video a mapping's camera names: by file name, stem, or topic."""
    for video in files.videos():
        if value in (video.name, video_key(files, video)) or video_key(files, video) == topic_stem(value):
            return video
    return None


def _cameras(files, root, cams, stamps, t0: int, starts: dict[str, int]) -> dict[str, Camera]:
    """The cameras: image topics on their stamps, videos on theirs (``starts``: the first frames'
    stamps given by the config or the bag, by camera or video name)."""
    eid, label = files.episode_id, files.label
    out = {}
    span = (min(int(s.min()) for s in stamps.values()), max(int(s.max()) for s in stamps.values()))
    for cam, value in cams.items():
        if value in stamps:  # an image topic of the bag
            st = stamps[value]
            if len(st) and np.any(np.diff(st) < 0):
                raise EpisodeError(eid, label, f"camera topic {value}: image stamps go backwards")
            out[cam] = Camera(
                cam, f"{files.bags[0]}#{value}", (st - t0) / 1e9, np.arange(len(st)), 0, 0, "mcap-image"
            )
            continue
        video = _find_video(files, value)
        if video is None:
            raise EpisodeError(
                eid, label, f"camera {cam!r}: no image topic or video {value!r} beside the bag"
            )
        key = video_key(files, video)
        start = next((starts[k] for k in (cam, key, video.name) if k in starts), None)
        out[cam], _ = video_camera((eid, root), video, cam, start, span, t0)
    return out


def _instruction(files: EpisodeFiles, root: Path, mapping: Mapping, index: BagIndex) -> tuple[Segment, ...]:
    chosen = mapping.instruction
    eid, label = files.episode_id, files.label
    if chosen is None:
        text = index.metadata.get("task", {}).get("instruction", "")
    elif chosen.kind == "constant":
        text = chosen.value
    elif chosen.kind == "record":
        text = index.metadata.get(chosen.value, {}).get(chosen.field, "")
    elif chosen.kind == "file":
        text = _text_file(files, root, chosen.value)
    else:
        raise EpisodeError(eid, label, f"instruction from a {chosen.kind} is not in an MCAP episode")
    return (Segment(float("-inf"), float("inf"), _plain(text)),)


def _plain(text: str) -> str:
    """A record's text; a JSON string literal is unquoted."""
    text = text.strip()
    if text.startswith('"'):
        try:
            return str(json.loads(text)).strip()
        except ValueError:
            return text
    return text


def _text_file(files: EpisodeFiles, root: Path, name: str) -> str:
    places = [files.folder / name] if files.folder is not None else []
    places.append(files.bags[0].parent / name)
    for path in places:
        if path.is_file():
            regular_file(contained(root, path, files.episode_id, name), files.episode_id)
            return path.read_bytes()[:MAX_TEXT_BYTES].decode("utf-8", "replace").strip()
    raise EpisodeError(files.episode_id, name, "the instruction file named by mapping.instruction is missing")
