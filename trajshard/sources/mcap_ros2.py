"""Reader for ROS 2 recordings in MCAP: one ``<episode>.mcap`` per episode in SOURCE.

Topics (``mcap`` table in the job config; defaults in brackets):

- ``state_topic``   a ``sensor_msgs/JointState`` topic, its ``position`` is proprio [the JointState
                    topic whose name has "joint_states", or the only JointState topic];
- ``action_topic``  a ``sensor_msgs/JointState`` topic of commands [one whose name has "command" or
                    "action"; none: actions are derived from proprio];
- ``cameras``       ``{name: topic}`` of ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) or
                    ``sensor_msgs/CompressedImage`` (jpeg, png) topics [every image topic];
- ``stamp``         ``"header"`` (the message's ``header.stamp``) or ``"log"`` (the recorder's log time)
                    ["header"].

A camera may also live beside the bag as ``<episode>.<camera>.mp4``: its frame times are its PTS
plus the MCAP metadata ``trajshard.video`` entry ``<camera>`` (start time, nanoseconds, on the
stamp clock). The instruction is the metadata ``task`` entry ``instruction``. Times become seconds
since the earliest stamp of the episode's selected streams.
"""

from __future__ import annotations

import io
import os
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
from trajshard.sources.video import StoredJpeg, VideoError, probe_video

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def _reader(f):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    return make_reader(f, decoder_factories=[DecoderFactory()])


def _camera_name(topic: str) -> str:
    name = topic.strip("/").replace("/", "_")
    for suffix in ("_compressed", "_image_raw", "_image"):
        name = name.removesuffix(suffix)
    return name or "camera"


class McapSource:
    format = "mcap"

    def __init__(self, root: str | os.PathLike, options: dict | None = None) -> None:
        self.root = Path(root).resolve()
        self.options = dict(options or {})
        self.notes: list[str] = []
        self.files = [self.root] if self.root.is_file() else sorted(self.root.glob("*.mcap"))
        if not self.files:
            raise FileNotFoundError(f"{root}: no .mcap file")

    def plan(self) -> tuple[list[str], list[Problem]]:
        """Every ``.mcap`` file's episode; one linked out of the source, or not a regular file (a
        FIFO would block the reader forever), is rejected by name and never opened."""
        ids, rejected = [], []
        for f in self.files:
            try:
                self._contained(f.stem, f)
            except EpisodeError as exc:
                rejected.append(exc.problem)
                continue
            ids.append(f.stem)
        return ids, rejected

    def _contained(self, episode_id: str, path: Path) -> Path:
        if path != self.root and not inside(self.root, path):
            raise EpisodeError(episode_id, path.name, "is a link to a place outside the source")
        return regular_file(path, episode_id)

    def _file(self, episode_id: str) -> Path:
        for f in self.files:
            if f.stem == episode_id:
                return f
        raise EpisodeError(episode_id, "mcap", "no such episode file")

    def _topics(self, summary) -> tuple[str | None, str | None, dict[str, str]]:
        types = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        joints = sorted(t for t, ty in types.items() if ty == JOINT_STATE)
        state = self.options.get("state_topic") or next((t for t in joints if "joint_states" in t), None)
        if state is None and len(joints) == 1:
            state = joints[0]
        action = self.options.get("action_topic") or next(
            (t for t in joints if t != state and ("command" in t or "action" in t)), None
        )
        cams = self.options.get("cameras") or {
            _camera_name(t): t for t, ty in sorted(types.items()) if ty in IMAGE_TYPES
        }
        return state, action, dict(cams)

    def _stamp(self, msg, ros) -> int:
        if self.options.get("stamp", "header") == "log" or not hasattr(ros, "header"):
            return int(msg.log_time)
        return int(ros.header.stamp.sec) * 1_000_000_000 + int(ros.header.stamp.nanosec)

    def load(self, episode_id: str) -> Episode:
        path = self._contained(episode_id, self._file(episode_id))
        try:
            return self._load(episode_id, path)
        except EpisodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a corrupt bag is this episode's problem
            raise EpisodeError(episode_id, path.name, f"cannot be read as ROS 2 MCAP: {exc}") from exc

    def _load(self, episode_id: str, path: Path) -> Episode:
        with open(path, "rb") as f:
            reader = _reader(f)
            summary = reader.get_summary()
            if summary is None:
                raise EpisodeError(episode_id, path.name, "has no summary section (recording not finished?)")
            state_t, action_t, cams = self._topics(summary)
            if state_t is None:
                raise EpisodeError(
                    episode_id, path.name, "no JointState topic for the state; set mcap.state_topic"
                )
            series: dict[str, tuple[list[int], list]] = {
                t: ([], []) for t in [state_t, action_t, *cams.values()] if t
            }
            for _, channel, msg, ros in reader.iter_decoded_messages(topics=list(series)):
                stamps, values = series[channel.topic]
                stamps.append(self._stamp(msg, ros))
                if channel.topic in (state_t, action_t):
                    values.append(np.asarray(ros.position, dtype=np.float64))
            meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        used = [s for t, (s, _) in series.items() if s]
        if not used:
            raise EpisodeError(episode_id, path.name, "the selected topics have no messages")
        t0 = min(min(s) for s in used)
        streams = {}
        for name, topic in (("proprio", state_t), ("action", action_t)):
            if not topic:
                continue
            stamps, values = series[topic]
            widths = {len(v) for v in values}
            if len(widths) != 1:
                raise EpisodeError(
                    episode_id, path.name, f"topic {topic}: JointState position widths {sorted(widths)}"
                )
            order = np.argsort(np.asarray(stamps), kind="stable")
            ts = (np.asarray(stamps, dtype=np.int64)[order] - t0) / 1e9
            streams[name] = Stream(
                name, ts, np.stack(values)[order].astype(np.float32), (), f"{path.name}:{topic}"
            )
        cameras = {}
        for cam, topic in cams.items():
            stamps = np.asarray(series[topic][0], dtype=np.int64)
            if len(stamps) and np.any(np.diff(stamps) < 0):
                raise EpisodeError(episode_id, path.name, f"camera topic {topic}: image stamps go backwards")
            cameras[cam] = Camera(
                cam, f"{path}#{topic}", (stamps - t0) / 1e9, np.arange(len(stamps)), 0, 0, "mcap-image"
            )
        for video in sorted(path.parent.glob(f"{episode_id}.*.mp4")):
            cam = video.name[len(episode_id) + 1 : -4]
            start = meta.get("trajshard.video", {}).get(cam)
            if start is None:
                raise EpisodeError(
                    episode_id, video.name, f"no 'trajshard.video' metadata entry {cam!r} for its start time"
                )
            self._contained(episode_id, video)
            try:
                probe = probe_video(str(video))
            except VideoError as exc:
                raise EpisodeError(episode_id, video.name, f"camera {cam!r}: {exc}") from exc
            times = probe.seconds + (int(start) - t0) / 1e9
            cameras[cam] = Camera(
                cam, str(video), times, probe.pts, probe.width, probe.height, probe.codec, probe.entry
            )
        text = meta.get("task", {}).get("instruction", "")
        ep = Episode(
            episode_id,
            (Segment(float("-inf"), float("inf"), text),),
            streams,
            cameras,
            embodiment=meta.get("task", {}).get("embodiment", ""),
            source=str(path),
            instruction_file=path.name,
        )
        return ensure_valid(ep)

    def check(self, episode_id: str) -> list[Problem]:
        return check_by_loading(self, episode_id)

    def frames(self, camera: Camera, start_pts: int | None = None) -> Iterator:
        path, topic = camera.path.split("#", 1)
        with open(path, "rb") as f:
            for i, (_, _, _, ros) in enumerate(_reader(f).iter_decoded_messages(topics=[topic])):
                if start_pts and i < start_pts:
                    continue
                yield _image_frame(ros, i)


def _image_frame(ros, i: int):
    if hasattr(ros, "format"):  # CompressedImage
        data = bytes(ros.data)
        if "png" in ros.format.lower():
            frame = av.VideoFrame.from_ndarray(
                np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), format="rgb24"
            )
            frame.pts = i
            return frame
        return StoredJpeg(data, i)
    channels = CHANNELS.get(ros.encoding)
    if channels is None:
        raise ValueError(f"image encoding {ros.encoding!r} is not supported ({sorted(CHANNELS)})")
    rows = np.frombuffer(bytes(ros.data), np.uint8).reshape(ros.height, ros.step)
    img = rows[:, : ros.width * channels].reshape(ros.height, ros.width, channels)
    if ros.encoding.startswith("bgr"):
        img = img[..., [2, 1, 0]]
    elif channels == 1:
        img = np.repeat(img, 3, axis=2)
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[..., :3]), format="rgb24")
    frame.pts = i
    return frame
