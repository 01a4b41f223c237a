"""Cameras recorded as video files beside a ROS 2 bag, put on the bag's clock.

A video is named after its topic (``/robot/left_camera/color/image_raw`` ->
``robot.left_camera.color.image_raw.mp4``). Its first frame's time on the bag's stamp clock comes
from, in this order:

1. a per-file timestamps file ``<video>.timestamps.npy`` or ``.txt`` (``<stem>.`` or ``<name>.``):
   one stamp per frame, integers = ns, floats = seconds, on the stamp clock (absolute);
2. ``video_offsets`` in the ``[mcap]`` table: ``{<camera or file stem> = seconds}`` after the time
   base's first message;
3. the bag's metadata record ``trajshard.video`` (``<camera> = ns``);
4. the container itself: PTS that are already stamps on the bag's clock (the first frame within a
   minute of the bag's span: recorders that copy ROS stamps into the PTS), else a ``creation_time``
   with sub-second digits taken as the first frame's time. A whole-second ``creation_time`` (what the
   mp4 header holds) is never used: it is off by up to a second.

Otherwise the episode is refused naming the video and these ways.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np

from trajshard.schemas.episode import Camera, EpisodeError
from trajshard.sources.contain import contained, regular_file
from trajshard.sources.video import VideoError, VideoProbe, open_video, probe_video

NS = 1_000_000_000
NEAR_NS = 60 * NS  # a start within a minute of the bag's span is on its clock
MAX_STAMPS_BYTES = 64 << 20


def topic_stem(topic: str) -> str:
    """The file stem a video of ``topic`` is named: ``robot.left_camera.color.image_raw``."""
    return topic.strip("/").replace("/", ".")


def camera_name(topic: str) -> str:
    """An output camera name for a topic or a video stem (no dots: it becomes ``<camera>.jpg``)."""
    name = topic.strip("/").replace("/", "_").replace(".", "_")
    for suffix in ("_compressed", "_image_raw", "_image", "_mp4"):
        name = name.removesuffix(suffix)
    return name or "camera"


def _where(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def stamps_file(video: Path) -> Path | None:
    """The video's per-frame timestamps file, if there is one."""
    for base in (video.with_suffix(""), video):
        for suffix in (".timestamps.npy", ".timestamps.txt"):
            candidate = base.parent / (base.name + suffix)
            if candidate.is_file():
                return candidate
    return None


def read_stamps(path: Path) -> np.ndarray:
    """int64 ns from a timestamps file (integers are ns, floats seconds); ValueError when unreadable."""
    if path.stat().st_size > MAX_STAMPS_BYTES:
        raise ValueError(f"larger than {MAX_STAMPS_BYTES} bytes")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        words = path.read_text(encoding="utf-8").split()
        floats = any(("." in w or "e" in w.lower()) for w in words)
        arr = np.asarray([float(w) for w in words]) if floats else np.asarray([int(w) for w in words])
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"must hold one number per frame, got {arr.dtype} {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        return np.round(arr.astype(np.float64) * NS).astype(np.int64)
    return arr.astype(np.int64)


def creation_ns(path: Path) -> tuple[int | None, str]:
    """The container's ``creation_time`` in ns when it has sub-second digits; else (None, why)."""
    with open_video(str(path)) as container:
        text = str(container.metadata.get("creation_time") or "")
    if not text:
        return None, "no creation_time"
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None, f"creation_time {text!r} is not ISO 8601"
    if when.microsecond == 0:
        return None, f"creation_time {text!r} has whole seconds only"
    seconds = int(when.timestamp())
    return seconds * NS + when.microsecond * 1000, f"creation_time {text}"


def _abs_ns(probe: VideoProbe) -> np.ndarray:
    """Each frame's PTS as ns, exactly for the usual rational time bases."""
    tb = Fraction(probe.time_base).limit_denominator(1 << 31)
    return (probe.pts.astype(object) * tb.numerator * NS // tb.denominator).astype(np.int64)


def frame_stamps(
    probe: VideoProbe, video: Path, start: int | None, span: tuple[int, int]
) -> tuple[np.ndarray, str]:
    """Each frame's stamp (ns, bag clock) and how it was found. ``start`` is the first frame's stamp
    given by the config or the bag, if any; ``span`` the bag's first and last stamps."""
    stamps_path = stamps_file(video)
    rel = _abs_ns(probe) - _abs_ns(probe)[0]
    if stamps_path is not None:
        stamps = read_stamps(stamps_path)
        if len(stamps) != len(probe.pts):
            raise ValueError(f"{stamps_path.name} has {len(stamps)} stamps for {len(probe.pts)} frames")
        if len(stamps) and not (span[0] - NEAR_NS <= stamps[0] <= span[1] + NEAR_NS):
            raise ValueError(
                f"{stamps_path.name} starts {(stamps[0] - span[0]) / NS:.1f} s from the bag's first stamp: "
                "not on the bag's clock (absolute stamps expected, ns or s)"
            )
        return stamps, stamps_path.name
    if start is not None:
        return start + rel, "the given start"
    absolute = _abs_ns(probe)
    if span[0] - NEAR_NS <= absolute[0] <= span[1] + NEAR_NS:
        return absolute, "container PTS"
    created, why = creation_ns(video)
    if created is not None and span[0] - NEAR_NS <= created <= span[1] + NEAR_NS:
        return created + rel, why
    raise ValueError(
        f"no start time on the bag's clock ({why}"
        + (", outside the bag's span" if created is not None else "")
        + "): give a <video>.timestamps.npy, mcap.video_offsets or a 'trajshard.video' metadata record"
    )


def video_camera(
    ctx: tuple[str, Path], video: Path, cam: str, start: int | None, span: tuple[int, int], t0: int
) -> tuple[Camera, str]:
    """The camera of a video file, its frames on the episode clock (seconds since ``t0`` ns), and how
    its start was found; EpisodeError naming the file."""
    eid, root = ctx
    where = _where(root, video)
    regular_file(contained(root, video, eid, where), eid)
    extra = stamps_file(video)
    if extra is not None:
        regular_file(contained(root, extra, eid, _where(root, extra)), eid)
    try:
        probe = probe_video(str(video))
        stamps, how = frame_stamps(probe, video, start, span)
    except (VideoError, ValueError, OSError) as exc:
        raise EpisodeError(eid, where, f"camera {cam!r}: {exc}") from exc
    if np.any(np.diff(stamps) < 0):
        raise EpisodeError(eid, where, f"camera {cam!r}: frame stamps go backwards ({how})")
    times = (stamps - t0) / 1e9
    return Camera(cam, str(video), times, probe.pts, probe.width, probe.height, probe.codec, probe.entry), how
