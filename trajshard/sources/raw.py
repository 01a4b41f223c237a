"""Reader for raw layout v1 (see trajshard/schemas/raw_layout.py and docs/raw-layout.md).

``RawSource(root).plan()`` lists episodes cheaply (names only); ``load(episode_id)`` reads one
episode's low-dimensional streams and probes its videos (demux only, no decoding) into an
:class:`Episode`, or raises :class:`EpisodeError` naming the file and the problem.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from trajshard.schemas.episode import Camera, Episode, EpisodeError, Segment, Stream, ensure_valid
from trajshard.schemas.problems import Problem
from trajshard.schemas.raw_layout import EPISODE_ID_RE, classify_files, validate_episode_json
from trajshard.sources.contain import inside, regular_file
from trajshard.sources.describe_keys import (
    camera_key,
    first_loadable,
    rate_and_span,
    short_text,
    skipped_note,
)
from trajshard.sources.listing import KeyInfo, Listing
from trajshard.sources.mp4box import display_rotation
from trajshard.sources.tables import TableError, read_table, table_to_stream
from trajshard.sources.video import VideoError, probe_video

MAX_EPISODE_JSON_BYTES = 1 << 20
MAX_TIMESTAMP_FILE_BYTES = 1 << 28
MAX_NOTES = 20  # notes a reader keeps (one per rotated video): enough to see the pattern
log = logging.getLogger(__name__)


class RawSource:
    format = "raw"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).resolve()
        self.notes: list[str] = []
        if not self.root.is_dir():
            raise FileNotFoundError(f"raw source {root!s} is not a directory")

    def plan(self) -> tuple[list[str], list[Problem]]:
        """(episode ids to read, sorted; [(name, file, reason)] of entries quarantined by name)."""
        ids, rejected = [], []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            try:
                if not entry.is_dir(follow_symlinks=True):
                    continue
            except OSError as exc:  # a link loop: one bad entry, never the whole job
                reason = f"cannot be followed: {exc.strerror or exc}"
                rejected.append(Problem(entry.name, entry.name, reason))
                continue
            name = entry.name
            if not EPISODE_ID_RE.match(name):
                rejected.append(Problem(name, name, "episode directory name must match [A-Za-z0-9_-]+"))
            elif not self._inside(Path(entry.path)):
                rejected.append(
                    Problem(name, name, "episode directory is a link to a place outside the source")
                )
            else:
                ids.append(name)
        return ids, rejected

    def load(self, episode_id: str) -> Episode:
        if not EPISODE_ID_RE.match(episode_id):
            raise EpisodeError(episode_id, episode_id, "episode id must match [A-Za-z0-9_-]+")
        ep_dir = self.root / episode_id
        if not ep_dir.is_dir():
            raise EpisodeError(episode_id, episode_id, "episode directory is missing")
        files, problems = classify_files(episode_id, _names(episode_id, ep_dir))
        if problems:
            raise EpisodeError(episode_id, problems[0].field, "; ".join(p.message for p in problems))
        meta = self._episode_json(episode_id, ep_dir / "episode.json")
        offsets = {k: float(v) for k, v in meta.get("offsets", {}).items()}
        unknown = sorted(set(offsets) - set(files.tables) - set(files.cameras))
        if unknown:
            raise EpisodeError(
                episode_id, "episode.json", f"offsets name streams that do not exist: {unknown}"
            )
        streams = {}
        for stream, fname in files.tables.items():
            path = self._file(episode_id, ep_dir / fname)
            try:
                ts, values, dim_names = table_to_stream(read_table(str(path)), stream)
            except TableError as exc:
                raise EpisodeError(episode_id, fname, str(exc)) from exc
            except (ValueError, OverflowError, TypeError, OSError) as exc:  # e.g. uint64 beyond int64
                raise EpisodeError(episode_id, fname, f"cannot be read: {_why(exc)}") from exc
            streams[stream] = Stream(stream, ts + offsets.get(stream, 0.0), values, dim_names, fname)
        cameras = {
            cam: self._camera(
                episode_id, ep_dir, cam, fname, files.timestamps.get(cam), offsets.get(cam, 0.0)
            )
            for cam, fname in files.cameras.items()
        }
        ep = Episode(
            episode_id=episode_id,
            instructions=_segments(meta),
            streams=streams,
            cameras=cameras,
            embodiment=str(meta.get("embodiment", "")),
            success=meta.get("success"),
            source=str(ep_dir),
        )
        return ensure_valid(ep)

    def check(self, episode_id: str) -> list[Problem]:
        """Every layout problem of one episode (file roles, episode.json), then the first problem
        reading it raises, if any. Cheap: videos are probed, not decoded."""
        ep_dir = self.root / episode_id
        if not ep_dir.is_dir():
            return [Problem(episode_id, episode_id, "episode directory is missing")]
        try:
            problems = classify_files(episode_id, _names(episode_id, ep_dir))[1]
        except EpisodeError as exc:
            return [exc.problem]
        if (ep_dir / "episode.json").is_file():
            try:
                self._episode_json(episode_id, ep_dir / "episode.json", problems)
            except EpisodeError as exc:
                problems.append(Problem(episode_id, exc.where, exc.message))
        if not problems:
            try:
                self.load(episode_id)
            except EpisodeError as exc:
                problems.append(Problem(episode_id, exc.where, exc.message))
        return problems

    def _inside(self, path: Path) -> bool:
        return inside(self.root, path)

    def _file(self, episode_id: str, path: Path) -> Path:
        try:  # a link to itself, or a loop: named as such, not as a link out of the source
            path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise EpisodeError(episode_id, path.name, f"cannot be followed: {_why(exc)}") from exc
        if not self._inside(path):
            raise EpisodeError(episode_id, path.name, "is a link to a place outside the source")
        return regular_file(path, episode_id)

    def _episode_json(self, episode_id: str, path: Path, collect: list[Problem] | None = None) -> dict:
        """Parsed episode.json; schema problems raise (or, with ``collect``, are all appended)."""
        path = self._file(episode_id, path)
        size = path.stat().st_size
        if size > MAX_EPISODE_JSON_BYTES:
            raise EpisodeError(
                episode_id, "episode.json", f"{size} bytes, more than {MAX_EPISODE_JSON_BYTES}"
            )
        try:
            data = path.read_bytes()
        except OSError as exc:  # mode 000, a read error: this episode's problem, not one to retry
            raise EpisodeError(episode_id, "episode.json", f"cannot be read: {_why(exc)}") from exc
        try:
            meta = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EpisodeError(episode_id, "episode.json", f"not UTF-8 JSON: {exc}") from exc
        except RecursionError as exc:  # [[[[... 200,000 deep: the parser's stack, not ours
            raise EpisodeError(episode_id, "episode.json", "JSON nested too deep to read") from exc
        problems = validate_episode_json(episode_id, meta)
        if collect is not None:
            collect += problems
        elif problems:
            raise EpisodeError(episode_id, "episode.json", "; ".join(p.message for p in problems))
        return meta

    def _camera(
        self, episode_id: str, ep_dir: Path, cam: str, fname: str, ts_name: str | None, offset: float
    ) -> Camera:
        path = self._file(episode_id, ep_dir / fname)
        try:
            probe = probe_video(str(path))
        except VideoError as exc:
            raise EpisodeError(episode_id, fname, f"camera {cam!r}: {exc}") from exc
        self._rotation_note(episode_id, fname, display_rotation(str(path)))
        times = probe.seconds
        if ts_name is not None:
            times = self._frame_times(episode_id, ep_dir / ts_name, len(probe.pts))
        return Camera(
            cam, str(path), times + offset, probe.pts, probe.width, probe.height, probe.codec, probe.entry
        )

    def _rotation_note(self, episode_id: str, fname: str, degrees: int) -> None:
        """A video that players show rotated is used as stored: said once per file, in the source's
        notes (validate prints them) and as a warning (a job's log)."""
        if not degrees:
            return
        note = (
            f"{episode_id}/{fname}: declares a {degrees} degree display rotation; its frames are "
            "used as stored, not rotated"
        )
        if note not in self.notes and len(self.notes) < MAX_NOTES:
            self.notes.append(note)
            log.warning("%s", note)

    def _frame_times(self, episode_id: str, path: Path, n_frames: int) -> np.ndarray:
        path = self._file(episode_id, path)
        if path.stat().st_size > MAX_TIMESTAMP_FILE_BYTES:
            raise EpisodeError(episode_id, path.name, "timestamp file is too large")
        try:
            times = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise EpisodeError(episode_id, path.name, f"not a pickle-free .npy file: {exc}") from exc
        if times.ndim != 1 or times.dtype.kind not in "fiu":
            raise EpisodeError(
                episode_id, path.name, f"expected a 1-D float64 array, got {times.dtype} {list(times.shape)}"
            )
        if len(times) != n_frames:
            raise EpisodeError(episode_id, path.name, f"{len(times)} timestamps for {n_frames} video frames")
        return times.astype(np.float64)


def _why(exc: BaseException) -> str:
    """An OS error's words without the path (the record names the file): 'Permission denied'."""
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _names(episode_id: str, ep_dir: Path) -> list[str]:
    """The file names of an episode directory (links and FIFOs too: their readers refuse them)."""
    try:
        return [p.name for p in ep_dir.iterdir() if p.is_symlink() or not p.is_dir()]
    except OSError as exc:  # mode 000: the directory cannot be listed
        raise EpisodeError(episode_id, episode_id, f"episode directory cannot be read: {_why(exc)}") from exc


def _segments(meta: dict) -> tuple[Segment, ...]:
    if "instruction" in meta:
        return (Segment(float("-inf"), float("inf"), meta["instruction"]),)
    return tuple(Segment(float(s["start"]), float(s["end"]), s["text"]) for s in meta["instructions"])


# -- describe (trajshard describe) ----------------------------------------------------------------


def describe(root: Path, **_: object) -> Listing:
    """The streams of one episode directory (file, width, names, rows, rate, span; the offsets applied),
    its cameras probed (codec, size, frames), its instruction, and the cameras of every episode counted
    by file name (nothing opened) so a camera some episodes lack shows before a job."""
    src = RawSource(root)
    ids, rejected = src.plan()
    ep, reasons = first_loadable(ids, src.load)
    if ep is None:
        notes = [f"{len(ids)} episodes, {len(rejected)} rejected by name", *skipped_note(reasons, "")]
        return Listing("raw", len(ids), "", (), {}, {}, tuple(notes))
    keys = [_stream_key(s) for s in ep.streams.values()]
    keys += [camera_key(n, c) for n, c in ep.cameras.items()]
    keys.append(KeyInfo("episode.json", "text", "json", detail=_instruction_detail(ep)))
    if ep.embodiment:
        keys.append(KeyInfo("embodiment", "metadata", "str", detail=repr(ep.embodiment)))
    counts = _camera_counts(src.root, ids)
    notes = [f"{len(ids)} episodes ({len(rejected)} rejected by name); raw layout v1 (docs/raw-layout.md)"]
    notes += skipped_note(reasons, ep.episode_id)
    notes += [
        f"camera {cam!r} is in {n} of {len(ids)} episodes: without --camera the most common camera set is "
        "kept and the other episodes are quarantined"
        for cam, n in sorted(counts.items())
        if n < len(ids)
    ]
    if "action" not in ep.streams:
        notes.append("no action table: actions are derived from proprio (--derive-action)")
    template: dict[str, object] = {"state": ["proprio"]}
    if "action" in ep.streams:
        template["action"] = ["action"]
    template["cameras"] = {c: c for c in sorted(counts)}
    return Listing("raw", len(ids), ep.episode_id, tuple(keys), template, {}, tuple(notes))


def _stream_key(stream: Stream) -> KeyInfo:
    rate, span = rate_and_span(stream.timestamps)
    width = stream.values.shape[1] if stream.values.ndim == 2 else 1
    return KeyInfo(
        stream.name,
        "numeric",
        "float32",
        (width,),
        rate,
        span,
        len(stream.timestamps),
        stream.names,
        stream.source,
    )


def _instruction_detail(ep: Episode) -> str:
    texts = [s.text for s in ep.instructions]
    if len(texts) == 1:
        return f"instruction: {short_text(texts[0])}"
    return f"{len(texts)} time-ranged instructions: " + ", ".join(short_text(t, 30) for t in texts[:3])


def _camera_counts(root: Path, ids: list[str]) -> dict[str, int]:
    """Episodes per camera, from the file names of every episode directory (listing only)."""
    counts: dict[str, int] = {}
    for eid in ids:
        try:
            names = [e.name for e in os.scandir(root / eid)]
        except OSError:
            continue
        for cam in classify_files(eid, names)[0].cameras:
            counts[cam] = counts.get(cam, 0) + 1
    return counts
