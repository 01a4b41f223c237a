"""Raw layout v1: the directory layout ``--format raw`` reads (see docs/raw-layout.md).

```
<root>/<episode_id>/            episode_id matches [A-Za-z0-9_-]+
  episode.json                  {"instruction": "..."} or {"instructions": [{"start", "end", "text"}, ...]}
                                optional: "embodiment", "success", "offsets": {"<stream>": seconds}
  <camera>.mp4|.mkv|.mov|.webm  one file per camera; frame time = PTS (s) + offsets[<camera>]
  <camera>.timestamps.npy       optional float64 seconds, one per frame, replaces PTS
  proprio.parquet|.csv|.jsonl   column "timestamp" (float s or int64 ns) + one list column or one per dim
  action.parquet|.csv|.jsonl    same; may be absent when the job derives actions from proprio
```
This module is pure: it classifies file names and checks a parsed ``episode.json``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from trajshard.schemas.episode import MAX_EMBODIMENT_BYTES, text_problem
from trajshard.schemas.problems import Problem

RAW_LAYOUT_VERSION = 1
EPISODE_ID_RE = re.compile(r"\A[A-Za-z0-9_-]+\Z")  # \Z: a trailing newline does not pass
VIDEO_EXTS = (".mp4", ".mkv", ".mov", ".webm")
TABLE_EXTS = (".parquet", ".csv", ".jsonl")
TABLE_STREAMS = ("proprio", "action")
TIMESTAMPS_SUFFIX = ".timestamps.npy"
MAX_INSTRUCTION_BYTES = 64 * 1024
EPISODE_JSON_KEYS = {"instruction", "instructions", "embodiment", "success", "offsets"}


@dataclass
class EpisodeFiles:
    """What an episode directory holds, by role."""

    tables: dict[str, str] = field(default_factory=dict)  # stream -> file name
    cameras: dict[str, str] = field(default_factory=dict)  # camera -> video file name
    timestamps: dict[str, str] = field(default_factory=dict)  # camera -> timestamps file name
    has_episode_json: bool = False


def classify_files(episode_id: str, names: list[str]) -> tuple[EpisodeFiles, list[Problem]]:
    """Sort an episode directory's file names into roles; report duplicates and missing files."""
    files = EpisodeFiles()
    problems: list[Problem] = []
    for name in sorted(names):
        if name == "episode.json":
            files.has_episode_json = True
        elif name.endswith(TIMESTAMPS_SUFFIX):
            files.timestamps[name[: -len(TIMESTAMPS_SUFFIX)]] = name
        else:
            stem, dot, ext = name.rpartition(".")
            ext = dot + ext.lower()
            if ext in TABLE_EXTS and stem in TABLE_STREAMS:
                if stem in files.tables:
                    problems.append(
                        Problem(episode_id, name, f"second {stem} table beside {files.tables[stem]}")
                    )
                files.tables.setdefault(stem, name)
            elif ext in VIDEO_EXTS and EPISODE_ID_RE.match(stem):
                if stem in files.cameras:
                    problems.append(Problem(episode_id, name, f"second video for camera {stem!r}"))
                files.cameras.setdefault(stem, name)
    if not files.has_episode_json:
        problems.append(Problem(episode_id, "episode.json", "missing"))
    if "proprio" not in files.tables:
        problems.append(Problem(episode_id, "proprio", "missing: expected proprio.parquet, .csv or .jsonl"))
    for cam, ts_name in files.timestamps.items():
        if cam not in files.cameras:
            problems.append(Problem(episode_id, ts_name, f"timestamps for camera {cam!r} that has no video"))
    return files, problems


def validate_episode_json(episode_id: str, obj: object) -> list[Problem]:
    """Every problem with a parsed ``episode.json``."""
    where = "episode.json"
    if not isinstance(obj, dict):
        return [Problem(episode_id, where, "top level must be a JSON object")]
    problems: list[Problem] = []

    def bad(message: str) -> None:
        problems.append(Problem(episode_id, where, message))

    unknown = sorted(set(obj) - EPISODE_JSON_KEYS)
    if unknown:
        bad(f"unknown keys {unknown}; allowed: {sorted(EPISODE_JSON_KEYS)}")
    has_one, has_many = "instruction" in obj, "instructions" in obj
    if has_one == has_many:
        bad('needs exactly one of "instruction" (text) or "instructions" (time-ranged segments)')
    if has_one:
        _check_text(obj["instruction"], '"instruction"', bad)
    if has_many:
        segs = obj["instructions"]
        if not isinstance(segs, list) or not segs:
            bad('"instructions" must be a non-empty list of {"start", "end", "text"}')
        else:
            for i, seg in enumerate(segs):
                _check_segment(seg, f'"instructions"[{i}]', bad)
    if "embodiment" in obj:
        _check_embodiment(obj["embodiment"], bad)
    if "success" in obj and not isinstance(obj["success"], bool):
        bad('"success" must be true or false')
    offsets = obj.get("offsets", {})
    if not isinstance(offsets, dict):
        bad('"offsets" must map stream names to seconds')
    else:
        for k, v in offsets.items():
            if not _finite(v):
                bad(f'"offsets"[{k!r}] must be a finite number of seconds, got {v!r}')
    return problems


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _finite(v: object) -> bool:
    """A JSON number that is a finite float64 (a 400-digit integer is not: float() overflows)."""
    try:
        return _is_number(v) and math.isfinite(float(v))
    except OverflowError:
        return False


def _check_text(text: object, what: str, bad) -> None:
    if not isinstance(text, str) or not text.strip():
        bad(f"{what} must be non-empty text")
    elif (problem := text_problem(text, what, MAX_INSTRUCTION_BYTES)) is not None:
        bad(problem)


def _check_embodiment(name: object, bad) -> None:
    if not isinstance(name, str):
        bad('"embodiment" must be a string')
    elif (problem := text_problem(name, '"embodiment"', MAX_EMBODIMENT_BYTES)) is not None:
        bad(f"{problem} (a robot's name, copied into every sample)")


def _check_segment(seg: object, what: str, bad) -> None:
    if not isinstance(seg, dict) or not {"start", "end", "text"} <= set(seg):
        bad(f'{what} must be an object with "start", "end" and "text"')
        return
    start, end = seg["start"], seg["end"]
    if not (_finite(start) and _finite(end)):
        bad(f"{what}: start and end must be finite numbers of seconds")
    elif end <= start:
        bad(f"{what}: end {end} is not after start {start}")
    _check_text(seg["text"], f"{what}.text", bad)
