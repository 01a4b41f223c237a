"""Episode v1: the in-memory form every source yields and every stage consumes.

Numeric streams carry their samples (float64 seconds on the episode clock plus values); cameras
are lazy handles (path plus frame timestamps), never decoded frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trajshard.schemas.problems import Problem

EPISODE_SCHEMA_VERSION = 1
MAX_STEP_S = 600.0  # two samples of one stream further apart than this: a clock jump, not a dropout
# a robot's name, copied into every sample's meta.json: a name, never a document
MAX_EMBODIMENT_BYTES = 256


class EpisodeError(ValueError):
    """An episode cannot be used. The message names episode, file or stream, and the problem."""

    def __init__(self, episode_id: str, where: str, message: str) -> None:
        self.episode_id = episode_id
        self.where = where
        self.message = message
        super().__init__(f"episode {episode_id!r}: {where}: {message}")

    @property
    def problem(self) -> Problem:
        return Problem(self.episode_id, self.where, self.message)


@dataclass(frozen=True)
class Stream:
    """A numeric stream: ``values[i]`` was measured at ``timestamps[i]`` (seconds, episode clock)."""

    name: str
    timestamps: np.ndarray  # float64 [N], strictly increasing
    values: np.ndarray  # float32 [N, D]
    names: tuple[str, ...] = ()  # per-dimension names when known
    source: str = ""  # file it came from, for messages


@dataclass(frozen=True)
class Camera:
    """A lazy video handle: frame ``i`` in presentation order is shown at ``timestamps[i]``.

    ``pts`` holds the container presentation timestamps (stream time base units) in the same order,
    so a decoder can recognise the frames a tick selects without counting.
    """

    name: str
    path: str
    timestamps: np.ndarray  # float64 [F], episode clock, non-decreasing
    pts: np.ndarray  # int64 [F], presentation order
    width: int
    height: int
    codec: str
    # bool [F]: frame i is a clean entry point (decoding may start there and every later frame comes
    # out as from a decode of the whole file); None when unknown. See sources/video.py entry_test.
    entry: np.ndarray | None = None


@dataclass(frozen=True)
class Segment:
    """An instruction that holds from ``start`` (inclusive) to ``end`` (exclusive), in seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Episode:
    episode_id: str
    instructions: tuple[Segment, ...]
    streams: dict[str, Stream]
    cameras: dict[str, Camera]
    embodiment: str = ""
    success: bool | None = None
    source: str = ""
    extra: dict[str, object] = field(default_factory=dict)
    instruction_file: str = "episode.json"  # where the instruction comes from, for messages
    embodiment_file: str | None = None  # where the embodiment comes from; None: instruction_file

    def instruction_at(self, t: np.ndarray) -> list[str]:
        """The instruction text of each time in ``t``.

        A time inside segments takes the text of the latest-starting segment that holds it
        (start <= t < end); a time in no segment takes the text of the last segment that started
        before it, or of the first segment when it precedes them all.
        """
        segs = sorted(self.instructions, key=lambda s: s.start)
        if not segs:
            return [""] * len(t)
        out = []
        for x in np.asarray(t, dtype=np.float64):
            inside = [s for s in segs if s.start <= x < s.end]
            started = [s for s in segs if s.start <= x]
            out.append((inside or started or segs[:1])[-1].text)
        return out


def text_problem(text: str, what: str, limit: int) -> str | None:
    """Why ``text`` cannot be written as UTF-8 within ``limit`` bytes, or None. JSON's ``\\ud800``
    escape decodes to a lone surrogate, which no UTF-8 writer accepts."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        char = f"\\u{ord(text[exc.start]):04x}"
        return f"{what} holds a lone surrogate ({char} at character {exc.start}): not UTF-8 text"
    if size > limit:
        return f"{what} is {size} bytes, more than the {limit} allowed"
    return None


def _text_problems(ep: Episode) -> list[str]:
    """Instructions and the embodiment must be UTF-8 text; the embodiment a short name."""
    found = [text_problem(s.text, "instruction", 1 << 62) for s in ep.instructions]
    name = text_problem(str(ep.embodiment or ""), "embodiment", MAX_EMBODIMENT_BYTES)
    found.append(name and f"{name} (a robot's name, copied into every sample)")
    return [p for p in found if p]


def validate_episode(ep: Episode) -> list[Problem]:
    """Every problem with an Episode's shapes, dtypes and times."""
    problems: list[Problem] = []

    def bad(where: str, message: str) -> None:
        problems.append(Problem(ep.episode_id, where, message))

    if not ep.instructions or not any(s.text.strip() for s in ep.instructions):
        bad(ep.instruction_file, "no instruction text")
    for message in _text_problems(ep):
        embodiment = message.startswith("embodiment")
        bad((ep.embodiment_file or ep.instruction_file) if embodiment else ep.instruction_file, message)
    for s in ep.instructions:
        if np.isnan(s.start) or np.isnan(s.end) or s.end <= s.start:
            bad(ep.instruction_file, f"instruction segment [{s.start}, {s.end}) is empty")
    for name, st in ep.streams.items():
        where = st.source or name
        ts, vals = st.timestamps, st.values
        if ts.ndim != 1 or vals.ndim != 2 or len(ts) != len(vals):
            bad(where, f"stream {name!r}: timestamps {ts.shape} and values {vals.shape} do not match")
            continue
        if len(ts) < 2:
            bad(where, f"stream {name!r}: {len(ts)} samples, need at least 2")
            continue
        if not np.all(np.isfinite(ts)):
            bad(where, f"stream {name!r}: {int((~np.isfinite(ts)).sum())} timestamps are NaN or infinite")
        elif np.any(np.diff(ts) > MAX_STEP_S):
            i = int(np.argmax(np.diff(ts) > MAX_STEP_S))
            bad(
                where,
                f"stream {name!r}: timestamps jump by {ts[i + 1] - ts[i]:.0f} s at row {i + 1} "
                "(a clock jump, or timestamps in the wrong unit)",
            )
        elif np.any(np.diff(ts) <= 0):
            i = int(np.argmax(np.diff(ts) <= 0))
            bad(
                where,
                f"stream {name!r}: timestamps not strictly increasing at row {i + 1} "
                f"({ts[i]!r} then {ts[i + 1]!r})",
            )
        nonfinite = ~np.isfinite(vals)
        if nonfinite.any():
            rows, cols = np.nonzero(nonfinite)
            bad(
                where,
                f"stream {name!r}: {int(nonfinite.sum())} NaN/Inf values "
                f"(first at row {rows[0]}, dim {cols[0]})",
            )
    for name, cam in ep.cameras.items():
        ts = cam.timestamps
        if len(ts) < 1:
            bad(cam.path, f"camera {name!r}: no frames")
        elif not np.all(np.isfinite(ts)):
            bad(cam.path, f"camera {name!r}: frame timestamps are NaN or infinite")
        elif np.any(np.diff(ts) < 0):
            bad(cam.path, f"camera {name!r}: frame timestamps go backwards")
        if len(cam.pts) != len(ts):
            bad(cam.path, f"camera {name!r}: {len(ts)} timestamps for {len(cam.pts)} frames")
    return problems


def ensure_valid(ep: Episode) -> Episode:
    """``ep`` itself, or an EpisodeError carrying every problem validate_episode finds."""
    problems = validate_episode(ep)
    if problems:
        raise EpisodeError(ep.episode_id, problems[0].field, "; ".join(p.message for p in problems))
    return ep


def check_by_loading(source, episode_id: str) -> list[Problem]:
    """A source's ``check``: the problem loading the episode raises, if any."""
    try:
        source.load(episode_id)
    except EpisodeError as exc:
        return [Problem(episode_id, exc.where, exc.message)]
    return []
