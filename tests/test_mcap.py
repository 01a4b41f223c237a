"""ROS 2 MCAP recordings written with the real mcap / mcap-ros2-support libraries and message encodings."""

from __future__ import annotations

import io
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import webdataset as wds
from mcap_ros2.writer import Writer
from PIL import Image

from tests import groundtruth as gt
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources import detect_format, open_source

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


def header(t_ns: int) -> dict:
    return {"stamp": {"sec": t_ns // 1_000_000_000, "nanosec": t_ns % 1_000_000_000}, "frame_id": ""}


def write_bag(path, seconds=3.0, video=False):
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
                {"header": header(stamp), **msg},
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


def test_reader_topics_stamps_and_metadata(tmp_path):
    write_bag(tmp_path / "ep_a.mcap")
    assert detect_format(tmp_path) == "mcap"
    ep = open_source(tmp_path, "mcap").load("ep_a")
    assert (
        set(ep.cameras) == {"camera_front", "camera_wrist"} and ep.instructions[0].text == "track the marker"
    )
    assert ep.embodiment == "marker_arm"
    np.testing.assert_allclose(
        ep.streams["proprio"].timestamps[:3], [0, 0.01, 0.02], atol=1e-9
    )  # header stamps
    log = open_source(tmp_path, "mcap", mcap={"stamp": "log"}).load("ep_a")
    assert log.streams["proprio"].timestamps[0] == 0.0  # every stream shifted by the same 7 ms


@pytest.mark.parametrize("video", [False, True])
def test_ingest_aligns_images_with_joint_states(tmp_path, ray_session, video):
    raw = tmp_path / "bags"
    raw.mkdir()
    write_bag(raw / "ep_a.mcap", video=video)
    out = tmp_path / "out"
    cfg = JobConfig.from_flags(
        workers=2, fps=5, image_size=gt.SIZE, cameras=("camera_front", "side") if video else ()
    )
    run_ingest(str(raw), str(out), cfg, progress=False)
    assert validate_output(out).ok
    manifest = json.loads((out / "meta" / "manifest.json").read_text())
    samples = list(
        wds.WebDataset([str(out / m["name"]) for m in manifest["shards"]], shardshuffle=False).decode("rgb8")
    )
    assert samples and all(s["meta.json"]["instruction"] == "track the marker" for s in samples)
    for s in samples:  # ticks at 5 Hz fall on frames of the 15 Hz camera: the marker matches the joint state
        assert abs(gt.measure(s["camera_front.jpg"]) - s["state.npy"][0]) <= 1.0
        if video:
            assert abs(gt.measure(s["side.jpg"]) - s["state.npy"][0]) <= 1.5
    if video:
        assert samples[0]["meta.json"]["time"] == pytest.approx(
            0.6, abs=1e-6
        )  # the side camera starts at 0.6 s
