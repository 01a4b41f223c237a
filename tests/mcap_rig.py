"""A bimanual leader/follower rig recorded as ROS 2 bags are: four ``sensor_msgs/JointState`` topics at
49 Hz (7 named joints each, the same names on every arm, stamps jittered by up to 3 ms except the left
follower's), the task in a ``task_info`` metadata record, and two camera mp4s per episode in a folder
beside the bag, named after their topics. Written with the real mcap / mcap-ros2-support writers and
PyAV; every value and frame is a known function of its index."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.helpers import JOINT_STATE, T0, ros_header

RATE = 49.0
ARMS = ("/robot/arm_left_follow/joint_states", "/robot/arm_right_follow/joint_states")
LEADS = ("/robot/arm_left_lead/joint_states", "/robot/arm_right_lead/joint_states")
TOPICS = ARMS + LEADS
JOINTS = [f"joint{i + 1}" for i in range(7)]
CAMERAS = ("robot.left_camera.color.image_raw", "robot.right_camera.color.image_raw")
SIDE, FPS = 64, 30
VIDEO_DELAY_MS = -100  # the cameras start 100 ms before the bag, so the clock starts on its first stamp
TASK = "fold the towel in half"


def joint_values(topic: int, k: np.ndarray | int) -> np.ndarray:
    """Message k of topic ``topic``: 7 float64 positions, distinct per topic, joint and message."""
    k = np.asarray(k, dtype=np.float64)[..., None]
    j = np.arange(7)
    return np.sin(0.05 * k * (j + 1) + topic) + 0.001 * topic + 1e-7 * k


def stamps(topic: int, n: int, seed: int) -> np.ndarray:
    """ns stamps of topic ``topic``: the left follower (the time base) exactly every 1/49 s, the others
    jittered by up to 3 ms either way."""
    base = T0 + np.round(np.arange(n) * 1e9 / RATE).astype(np.int64)
    if topic == 0:
        return base
    rng = np.random.default_rng(seed * 10 + topic)
    return base + rng.integers(-3_000_000, 3_000_001, n)


def frame(i: int) -> np.ndarray:
    """Camera frame i: a gradient with a block that moves 7 px per frame (neighbours differ a lot)."""
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    img = np.stack([x * 3, y * 3, (x + y) * 2], axis=-1).astype(np.uint8)
    c = (i * 7) % (SIDE - 16)
    img[20:36, c : c + 16] = (250, 240, 30)
    return img


def frame_stamps(n: int) -> np.ndarray:
    """ns stamps of the camera frames: whole milliseconds from 100 ms before T0, at 30 fps."""
    ms = T0 // 1_000_000 + VIDEO_DELAY_MS + np.round(np.arange(n) * 1000 / FPS).astype(np.int64)
    return ms * 1_000_000


def n_frames(seconds: float) -> int:
    """Frames of each camera of an episode of ``seconds``: they outlast the bag."""
    return int((seconds + 0.05) * FPS)


def write_video(path: Path, n: int, start: str) -> None:
    """An H.264 mp4 of frames 0..n-1. ``start``: "pts" (PTS are the stamps), "creation" (PTS from 0,
    creation_time with microseconds), "stamps" (PTS from 0, a timestamps.npy beside it), "txt" (the same,
    as text), "none" (PTS from 0, nothing else)."""
    ms = frame_stamps(n) // 1_000_000
    first = ms[0] if start == "pts" else 0
    options = {"movflags": "use_metadata_tags"} if start == "creation" else {}
    with av.open(str(path), "w", options=options) as out:
        if start == "creation":
            when = datetime.fromtimestamp(int(ms[0]) / 1000, UTC)
            out.metadata["creation_time"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        s = out.add_stream("libx264", rate=FPS)
        s.width = s.height = SIDE
        s.pix_fmt = "yuv444p"
        s.options = {"crf": "4", "bf": "0"}
        s.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame(i), format="rgb24")
            f.pts, f.time_base = int(ms[i] - ms[0] + first), Fraction(1, 1000)
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    if start == "stamps":
        np.save(path.with_suffix(".timestamps.npy"), frame_stamps(n))
    if start == "txt":
        path.with_suffix(".timestamps.txt").write_text("\n".join(str(v) for v in frame_stamps(n)) + "\n")


def rig_events(n: int, seed: int, lost: range = range(0)) -> list[tuple[int, str, np.ndarray]]:
    """Every message (stamp, topic, positions) in stamp order; the right follower loses ``lost``."""
    events = []
    for topic, name in enumerate(TOPICS):
        values = joint_values(topic, np.arange(n))
        for k, stamp in enumerate(stamps(topic, n, seed)):
            if not (topic == 1 and k in lost):
                events.append((int(stamp), name, values[k]))
    return sorted(events, key=lambda e: (e[0], e[1]))


def write_rig_bag(path: Path, events: list, task: bool = True, records: bool = True) -> None:
    """A bag of the JointState ``events``; with ``records``, the robot_info record and, with ``task``,
    the task_info record."""
    from mcap_ros2.writer import Writer

    with open(path, "wb") as f:
        w = Writer(f)
        js = w.register_msgdef("sensor_msgs/msg/JointState", JOINT_STATE)
        for stamp, name, position in events:
            msg = {"header": ros_header(stamp), "name": JOINTS, "position": position.tolist()}
            w.write_message(name, js, {**msg, "velocity": [], "effort": []}, log_time=stamp + 1_000_000)
        if task and records:
            subtasks = json.dumps(["grasp the corner", "fold it over"])
            w.add_metadata("task_info", {"task_description": TASK, "subtasks": subtasks})
        if records:
            w.add_metadata("robot_info", {"robot_type": "bimanual leader/follower", "arms": "2"})
        w.finish()


def write_rig(
    root: Path,
    episode: str,
    *,
    seconds: float = 1.2,
    seed: int = 0,
    layout: str = "flat",
    starts: tuple[str, str] = ("pts", "stamps"),
    task: bool = True,
    lost: range = range(0),
) -> Path:
    """One episode in ``layout`` "flat" (``<root>/<episode>.mcap`` + ``<root>/<episode>/``) or
    "rosbag2" (``<root>/<episode>/<episode>_0.mcap``, ``_1.mcap`` + ``metadata.yaml``), its two cameras started as
    ``starts`` says (write_video). Returns the folder of the videos."""
    folder = root / episode
    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * RATE)
    events = rig_events(n, seed, lost)
    if layout == "flat":
        write_rig_bag(root / f"{episode}.mcap", events, task)
    else:  # split in two files, as rosbag2 does by size or duration; the records in the first
        write_rig_bag(folder / f"{episode}_0.mcap", events[: len(events) // 2], task)
        write_rig_bag(folder / f"{episode}_1.mcap", events[len(events) // 2 :], task, records=False)
        (folder / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  storage_identifier: mcap\n")
    frames = n_frames(seconds)
    for cam, start in zip(CAMERAS, starts, strict=True):
        write_video(folder / f"{cam}.mp4", frames, start)
    return folder


MAPPING = {
    "state": list(ARMS),
    "action": list(LEADS),
    "cameras": {"left": CAMERAS[0] + ".mp4", "right": "/robot/right_camera/color/image_raw"},
    "instruction": {"record": "task_info", "field": "task_description"},
}
