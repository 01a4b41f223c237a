"""Helpers shared by several test files (plain functions; the fixtures are in conftest.py).

Import them as ``from tests.helpers import ...``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests import groundtruth as gt
from trajshard.schemas.episode import Camera, Episode, Segment, Stream

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TRAJSHARD_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data(name: str) -> Path:
    """A real dataset under ../shared/data; the test skips when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} is absent (see ../shared/data/SOURCES.md)")
    return path


class DriverKilled(BaseException):
    """Stands for the driver dying: a BaseException, so no ``except Exception`` on the way catches it
    or cleans up after it."""


# ------------------------------------------------------------------------------------------ outputs


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def shard_urls(out: Path) -> list[str]:
    """Every shard of an output, in manifest order."""
    manifest = json.loads((Path(out) / "meta" / "manifest.json").read_text())
    return [str(Path(out) / s["name"]) for s in manifest["shards"]]


def split_keys(out: Path, split: str) -> list[str]:
    """Every key of a split, read straight from its tars (file order)."""
    from trajshard.io import iter_tar_samples, read_json

    shards = [s["name"] for s in read_json(out / "meta" / "manifest.json")["shards"] if s["split"] == split]
    return [k for name in sorted(shards) for k, _ in iter_tar_samples(out / name)]


def npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a, allow_pickle=False)
    return b.getvalue()


def edit_members(path: Path, edit: Callable[[list[tuple[str, bytes]]], list[tuple[str, bytes]]]) -> None:
    """Rewrite a tar, letting ``edit(members)`` change the [(name, bytes)] list (same tar format)."""
    with tarfile.open(path) as src:
        members = [(m.name, src.extractfile(m).read()) for m in src.getmembers()]
    members = edit(members)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())


def replace_member(suffix: str, make: Callable[[bytes], bytes]):
    """An ``edit`` for :func:`edit_members`: the first member named ``*suffix`` becomes ``make(data)``."""

    def edit(members):
        out, done = [], False
        for name, data in members:
            if not done and name.endswith(suffix):
                data, done = make(data), True
            out.append((name, data))
        return out

    return edit


# ----------------------------------------------------------------------------------------- episodes


def make_episode(cam_times, proprio_t=None, action=True, segments=None) -> Episode:
    """An in-memory episode: proprio (t, 2t) at 100 Hz, action (t, -t, 0) at 20 Hz over 3 s, and one
    camera "front" with frames at ``cam_times``."""
    pt = np.arange(0, 3.0, 0.01) if proprio_t is None else proprio_t
    streams = {"proprio": Stream("proprio", pt, np.stack([pt, 2 * pt], 1).astype(np.float32))}
    if action:
        at = np.arange(0, 3.0, 0.05)
        streams["action"] = Stream("action", at, np.stack([at, -at, at * 0], 1).astype(np.float32))
    cams = {
        "front": Camera(
            "front", "front.mp4", np.asarray(cam_times, float), np.arange(len(cam_times)), 64, 48, "h264"
        )
    }
    segs = segments or (Segment(float("-inf"), float("inf"), "pick up the cup"),)
    return Episode("ep", segs, streams, cams)


def g1_actions() -> list[np.ndarray]:
    """The action column of every episode of the real Unitree G1 dataset."""
    root = shared_data("g1_lerobot_v21") / "data"
    files = sorted(root.glob("chunk-*/episode_*.parquet"))
    return [
        np.stack(pq.read_table(f, columns=["action"]).column("action").to_numpy(zero_copy_only=False))
        for f in files
    ]


# ------------------------------------------------------------------------------------- ROS 2 MCAP bags

TIME = "int32 sec\nuint32 nanosec"
HEADER = "builtin_interfaces/Time stamp\nstring frame_id"
SEP = "=" * 80
DEPS = f"\n{SEP}\nMSG: std_msgs/Header\n{HEADER}\n{SEP}\nMSG: builtin_interfaces/Time\n{TIME}\n"
JOINT_STATE = (
    "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\nfloat64[] effort" + DEPS
)
COMPRESSED = "std_msgs/Header header\nstring format\nuint8[] data" + DEPS
IMAGE = (
    "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
    "uint32 step\nuint8[] data" + DEPS
)
T0 = 1_700_000_000_000_000_000  # a wall-clock epoch in ns, as real recordings have
LOG_DELAY = 7_000_000  # the recorder logs each message 7 ms after its header stamp


def ros_header(t_ns: int) -> dict:
    return {"stamp": {"sec": t_ns // 1_000_000_000, "nanosec": t_ns % 1_000_000_000}, "frame_id": ""}


def write_bag(path, seconds=3.0, video=False):
    """A ROS 2 MCAP recording written with the real mcap / mcap-ros2-support libraries: joint states
    at 100 Hz, commands at 20 Hz, a JPEG camera at 15 Hz and a raw bgr8 camera at 10 Hz, all drawing
    the ground-truth marker (tests/groundtruth.py); with ``video``, an external H.264 camera beside the
    bag starting 0.6 s into the recording."""
    from fractions import Fraction

    import av
    from mcap_ros2.writer import Writer
    from PIL import Image

    with open(path, "wb") as f:
        w = Writer(f)
        js = w.register_msgdef("sensor_msgs/msg/JointState", JOINT_STATE)
        ci = w.register_msgdef("sensor_msgs/msg/CompressedImage", COMPRESSED)
        im = w.register_msgdef("sensor_msgs/msg/Image", IMAGE)
        events = []
        for t in np.arange(0, seconds, 0.01):  # joint states at 100 Hz
            events.append(
                (
                    t,
                    "/robot/joint_states",
                    js,
                    {
                        "name": ["x", "y"],
                        "position": [float(gt.position(t)), t],
                        "velocity": [],
                        "effort": [],
                    },
                )
            )
        for t in np.arange(0, seconds, 0.05):  # commands at 20 Hz
            events.append(
                (
                    t,
                    "/robot/joint_commands",
                    js,
                    {
                        "name": ["x", "y"],
                        "position": [float(gt.position(t + 0.05)), t],
                        "velocity": [],
                        "effort": [],
                    },
                )
            )
        for t in np.arange(0, seconds, 1 / 15):  # a JPEG camera at 15 Hz
            b = io.BytesIO()
            Image.fromarray(gt.draw(float(gt.position(t)))).save(b, format="JPEG", quality=95)
            events.append(
                (t, "/camera/front/image_raw/compressed", ci, {"format": "jpeg", "data": b.getvalue()})
            )
        for t in np.arange(0, seconds, 0.1):  # a raw bgr8 camera at 10 Hz, 64x48
            rgb = np.asarray(Image.fromarray(gt.draw(float(gt.position(t)))).resize((64, 48)))
            events.append(
                (
                    t,
                    "/camera/wrist/image_raw",
                    im,
                    {
                        "height": 48,
                        "width": 64,
                        "encoding": "bgr8",
                        "is_bigendian": 0,
                        "step": 64 * 3,
                        "data": rgb[..., ::-1].tobytes(),
                    },
                )
            )
        for t, topic, schema, msg in sorted(events, key=lambda e: e[0]):
            stamp = T0 + round(t * 1e9)
            w.write_message(
                topic,
                schema,
                {"header": ros_header(stamp), **msg},
                log_time=stamp + LOG_DELAY,
                publish_time=stamp + LOG_DELAY,
            )
        w._writer.add_metadata("task", {"instruction": "track the marker", "embodiment": "marker_arm"})
        if video:
            w._writer.add_metadata("trajshard.video", {"side": str(T0 + 600_000_000)})
        w.finish()
    if video:  # an external camera beside the bag, starting 0.6 s into the recording
        with av.open(str(path.with_suffix("")) + ".side.mp4", "w") as out:
            s = out.add_stream("libx264", rate=30)
            s.width = s.height = gt.SIZE
            s.pix_fmt = "yuv420p"
            s.options = {"crf": "10", "bf": "0"}
            for i in range(int((seconds - 0.6) * 30)):
                frame = av.VideoFrame.from_ndarray(gt.draw(float(gt.position(0.6 + i / 30))), format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, 30)
                out.mux(s.encode(frame))
            out.mux(s.encode(None))
