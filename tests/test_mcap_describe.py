"""``describe`` of an MCAP source lists its topics, records and videos, and writes a mapping that
ingests the bimanual rig unedited (tests/mcap_rig.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import webdataset as wds

from tests import mcap_rig as rig
from tests.helpers import shard_urls, write_bag
from trajshard.config import JobConfig
from trajshard.pipelines.align import AlignConfig, align
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources import open_source
from trajshard.sources.mapping import parse_mapping
from trajshard.sources.mcap_ros2 import describe


def test_the_listing_names_topics_records_and_videos(tmp_path):
    rig.write_rig(tmp_path, "ep_000", seconds=0.6, layout="rosbag2", starts=("pts", "creation"))
    listing = describe(tmp_path)
    assert (listing.format, listing.episodes, listing.example) == ("mcap", 1, "ep_000")
    keys = {k.key: k for k in listing.keys}
    arm = keys[rig.ARMS[1]]
    assert arm.kind == "numeric" and arm.shape == (7,) and arm.names == tuple(rig.JOINTS)
    assert arm.count == int(0.6 * rig.RATE) and abs(arm.rate_hz - rig.RATE) < 1.5
    assert keys["task_info:task_description"].kind == "text"
    assert keys["task_info:subtasks"].kind == "metadata" and keys["robot_info:arms"].kind == "metadata"
    video = keys[f"{rig.CAMERAS[1]}.mp4"]
    assert video.kind == "camera" and video.dtype == "h264" and video.shape == (rig.SIDE, rig.SIDE, 3)
    assert video.count == rig.n_frames(0.6) and "creation_time" in video.detail
    assert abs(video.span_s[0] + 0.1) < 1e-3  # 100 ms before the bag's first stamp
    assert any("subtasks" in n for n in listing.notes)
    json.dumps(listing.to_json())


def test_the_template_ingests_the_rig_unedited(tmp_path):
    src = tmp_path / "src"
    rig.write_rig(src, "ep_000", seconds=0.8, starts=("pts", "stamps"))
    rig.write_rig(src, "ep_001", seconds=0.8, seed=1, starts=("creation", "txt"))
    listing = describe(src)
    m = listing.mapping
    assert m["state"] == list(rig.ARMS) and m["action"] == list(rig.LEADS) and m["time_base"] == rig.ARMS[0]
    assert m["instruction"] == {"record": "task_info", "field": "task_description"}
    assert set(m["cameras"]) == {"robot_left_camera_color", "robot_right_camera_color"}
    parse_mapping(m)
    cfg = JobConfig.from_flags(workers=0, fps=rig.RATE, image_size=rig.SIDE, mapping=m, **listing.settings)
    run_ingest(str(src), str(tmp_path / "out"), cfg, progress=False)
    assert validate_output(tmp_path / "out").ok
    samples = list(wds.WebDataset(shard_urls(tmp_path / "out"), shardshuffle=False))
    assert {json.loads(s["meta.json"])["episode"] for s in samples} == {"ep_000", "ep_001"}
    s = samples[5]
    k = round(json.loads(s["meta.json"])["time"] * rig.RATE)
    lead = np.concatenate([rig.joint_values(2, k), rig.joint_values(3, k)]).astype(np.float32)
    assert np.load(io.BytesIO(s["action.npy"]), allow_pickle=False).tolist() == lead.tolist()


def test_todays_bag_gets_a_template_that_reads_it_as_today(tmp_path):
    write_bag(tmp_path / "ep_a.mcap", seconds=0.5)
    listing = describe(tmp_path)
    m = listing.mapping
    assert m["state"] == ["/robot/joint_states"] and m["action"] == ["/robot/joint_commands"]
    assert m["cameras"] == {
        "camera_front": "/camera/front/image_raw/compressed",
        "camera_wrist": "/camera/wrist/image_raw",
    }
    assert m["instruction"] == {"record": "task", "field": "instruction"}
    template = open_source(tmp_path, "mcap", mapping=m).load("ep_a")
    today = open_source(tmp_path, "mcap").load("ep_a")
    assert template.streams["proprio"].names == ("x", "y")
    a, b = align(template, AlignConfig(fps=5))[0], align(today, AlignConfig(fps=5))[0]
    np.testing.assert_array_equal(a.state, b.state)  # the 20 Hz commands held, never taken early
    np.testing.assert_array_equal(a.action, b.action)
