"""One MCAP episode read without a mapping, as before: one state and one action JointState topic, the
cameras and ``stamp`` from the job config's ``mcap`` table, videos ``<episode>.<camera>.mp4`` beside
the bag started by the ``trajshard.video`` record, the ``task`` record's instruction. Times are
seconds since the earliest stamp of the selected topics. Its outputs are today's, byte for byte."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from trajshard.schemas.episode import Camera, Episode, EpisodeError, Segment, Stream, ensure_valid
from trajshard.sources.contain import contained, regular_file
from trajshard.sources.mcap_bag import make_reader
from trajshard.sources.mcap_topics import IMAGE_TYPES, JOINT_STATE, stamp_of
from trajshard.sources.video import VideoError, probe_video

Collected = dict[str, tuple[list[int], list]]  # topic -> (stamps, positions)


def camera_name(topic: str) -> str:
    name = topic.strip("/").replace("/", "_")
    for suffix in ("_compressed", "_image_raw", "_image"):
        name = name.removesuffix(suffix)
    return name or "camera"


def legacy_topics(options: dict, summary) -> tuple[str | None, str | None, dict[str, str]]:
    """(state topic, action topic, cameras) from the ``mcap`` table, else the defaults."""
    types = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
    joints = sorted(t for t, ty in types.items() if ty == JOINT_STATE)
    state = options.get("state_topic") or next((t for t in joints if "joint_states" in t), None)
    if state is None and len(joints) == 1:
        state = joints[0]
    action = options.get("action_topic") or next(
        (t for t in joints if t != state and ("command" in t or "action" in t)), None
    )
    cams = options.get("cameras") or {
        camera_name(t): t for t, ty in sorted(types.items()) if ty in IMAGE_TYPES
    }
    return state, action, dict(cams)


def load_legacy(episode_id: str, path: Path, options: dict) -> Episode:
    """The episode of one bag read with the ``mcap`` table's ``options``; EpisodeError naming it."""
    mode = str(options.get("stamp", "header"))
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        if summary is None:
            raise EpisodeError(episode_id, path.name, "has no summary section (recording not finished?)")
        state_t, action_t, cams = legacy_topics(options, summary)
        if state_t is None:
            raise EpisodeError(
                episode_id, path.name, "no JointState topic for the state; set mcap.state_topic"
            )
        series: Collected = {t: ([], []) for t in [state_t, action_t, *cams.values()] if t}
        for _, channel, msg, ros in reader.iter_decoded_messages(topics=list(series)):
            stamps, values = series[channel.topic]
            stamps.append(stamp_of(msg.log_time, ros, mode))
            if channel.topic in (state_t, action_t):
                values.append(np.asarray(ros.position, dtype=np.float64))
        meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
    used = [s for s, _ in series.values() if s]
    if not used:
        raise EpisodeError(episode_id, path.name, "the selected topics have no messages")
    t0 = min(min(s) for s in used)
    streams = _streams(episode_id, path, series, {"proprio": state_t, "action": action_t}, t0)
    cameras = _cameras(episode_id, path, series, cams, t0)
    cameras.update(_videos(episode_id, path, meta.get("trajshard.video", {}), t0))
    ep = Episode(
        episode_id,
        (Segment(float("-inf"), float("inf"), meta.get("task", {}).get("instruction", "")),),
        streams,
        cameras,
        embodiment=meta.get("task", {}).get("embodiment", ""),
        source=str(path),
        instruction_file=path.name,
    )
    return ensure_valid(ep)


def _streams(eid: str, path: Path, series: Collected, topics: dict, t0: int) -> dict[str, Stream]:
    streams = {}
    for name, topic in topics.items():
        if not topic:
            continue
        stamps, values = series[topic]
        widths = {len(v) for v in values}
        if len(widths) != 1:
            raise EpisodeError(eid, path.name, f"topic {topic}: JointState position widths {sorted(widths)}")
        order = np.argsort(np.asarray(stamps), kind="stable")
        ts = (np.asarray(stamps, dtype=np.int64)[order] - t0) / 1e9
        streams[name] = Stream(
            name, ts, np.stack(values)[order].astype(np.float32), (), f"{path.name}:{topic}"
        )
    return streams


def _cameras(eid: str, path: Path, series: Collected, cams: dict[str, str], t0: int) -> dict[str, Camera]:
    cameras = {}
    for cam, topic in cams.items():
        stamps = np.asarray(series[topic][0], dtype=np.int64)
        if len(stamps) and np.any(np.diff(stamps) < 0):
            raise EpisodeError(eid, path.name, f"camera topic {topic}: image stamps go backwards")
        cameras[cam] = Camera(
            cam, f"{path}#{topic}", (stamps - t0) / 1e9, np.arange(len(stamps)), 0, 0, "mcap-image"
        )
    return cameras


def _videos(eid: str, path: Path, starts: dict[str, str], t0: int) -> dict[str, Camera]:
    """The ``<episode>.<camera>.mp4`` videos beside the bag, started by the ``trajshard.video`` record."""
    cameras = {}
    for video in sorted(path.parent.glob(f"{eid}.*.mp4")):
        cam = video.name[len(eid) + 1 : -4]
        start = starts.get(cam)
        if start is None:
            raise EpisodeError(
                eid, video.name, f"no 'trajshard.video' metadata entry {cam!r} for its start time"
            )
        regular_file(contained(path.parent, video, eid, video.name), eid)  # a link out, a FIFO: refused
        try:
            probe = probe_video(str(video))
        except VideoError as exc:
            raise EpisodeError(eid, video.name, f"camera {cam!r}: {exc}") from exc
        times = probe.seconds + (int(start) - t0) / 1e9
        cameras[cam] = Camera(
            cam, str(video), times, probe.pts, probe.width, probe.height, probe.codec, probe.entry
        )
    return cameras
