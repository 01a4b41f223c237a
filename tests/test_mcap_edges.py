"""MCAP through a mapping, where recordings go wrong: a dropout in one arm, a video that links
outside the source, a whole-second creation_time, a mapped camera an episode lacks, slower topics
held, a field of another message type."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests import mcap_rig as rig
from tests.helpers import DEPS, T0, ros_header, write_bag
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import open_source
from trajshard.sources.mcap_describe import describe
from trajshard.sources.mcap_mapped import McapSettings
from trajshard.sources.mcap_topics import Series, TopicError, pair_onto, short_names


def load(root, episode="ep_a", mapping=rig.MAPPING, **mcap):
    return open_source(root, "mcap", mcap=mcap, mapping=mapping).load(episode)


def test_a_dropout_in_one_arm_quarantines_naming_bag_and_topic(tmp_path):
    rig.write_rig(tmp_path, "ep_a", seconds=0.8, lost=range(10, 14))  # 4 messages of the right arm
    with pytest.raises(EpisodeError) as err:
        load(tmp_path)
    assert err.value.where == "ep_a.mcap"
    assert "/robot/arm_right_follow/joint_states" in err.value.message and "dropout" in err.value.message
    rig.write_rig(tmp_path, "ep_b", seconds=0.8, lost=range(10, 11))  # one lost message: held over
    assert load(tmp_path, "ep_b").streams["proprio"].values.shape == (int(0.8 * rig.RATE), 14)


def test_split_bags_are_read_in_order(tmp_path):
    rig.write_rig(tmp_path, "ep_a", seconds=0.8, layout="rosbag2", starts=("txt", "pts"))
    ep = load(tmp_path)
    k = np.arange(int(0.8 * rig.RATE))
    np.testing.assert_array_equal(
        ep.streams["proprio"].values[:, :7], rig.joint_values(0, k).astype(np.float32)
    )


def test_a_video_linked_from_outside_is_refused(tmp_path):
    outside = tmp_path / "elsewhere"
    rig.write_rig(outside, "ep_a", seconds=0.5)
    src = tmp_path / "src"
    rig.write_rig(src, "ep_a", seconds=0.5)
    video = src / "ep_a" / f"{rig.CAMERAS[0]}.mp4"
    video.unlink()
    os.symlink(outside / "ep_a" / f"{rig.CAMERAS[0]}.mp4", video)
    with pytest.raises(EpisodeError) as err:
        load(src)
    assert err.value.where == f"ep_a/{rig.CAMERAS[0]}.mp4" and "outside the source" in err.value.message
    (src / "ep_a.mcap").unlink()
    os.symlink(outside / "ep_a.mcap", src / "ep_a.mcap")  # the bag itself
    with pytest.raises(EpisodeError, match="outside the source"):
        open_source(src, "mcap").load("ep_a")


def test_a_whole_second_creation_time_is_not_a_start(tmp_path):
    folder = rig.write_rig(tmp_path, "ep_a", seconds=0.5, starts=("pts", "pts"))
    import av

    path = folder / f"{rig.CAMERAS[0]}.mp4"
    with av.open(str(path)) as c:  # rewrite with PTS from 0 and the mp4 header's whole seconds
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path), "w") as out:
        out.metadata["creation_time"] = "2023-11-14T22:13:20.000000Z"  # T0, in whole seconds
        s = out.add_stream("libx264", rate=rig.FPS)
        s.width = s.height = rig.SIDE
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts = i
            out.mux(s.encode(f))
        out.mux(s.encode(None))
    with pytest.raises(EpisodeError) as err:
        load(tmp_path)
    assert "whole seconds only" in err.value.message and err.value.where.endswith(path.name)


def test_a_timestamps_file_off_the_bags_clock_is_refused(tmp_path):
    folder = rig.write_rig(tmp_path, "ep_a", seconds=0.5, starts=("pts", "stamps"))
    stamps = folder / f"{rig.CAMERAS[1]}.timestamps.npy"
    np.save(stamps, np.arange(rig.n_frames(0.5), dtype=np.int64) * 33_000_000)  # from 0, not stamps
    with pytest.raises(EpisodeError, match="not on the bag's clock") as err:
        load(tmp_path)
    assert err.value.where == f"ep_a/{rig.CAMERAS[1]}.mp4"


def test_a_mapped_camera_an_episode_lacks_quarantines_it(tmp_path):
    folder = rig.write_rig(tmp_path, "ep_a", seconds=0.5)
    (folder / f"{rig.CAMERAS[1]}.mp4").unlink()
    with pytest.raises(EpisodeError) as err:
        load(tmp_path)
    assert err.value.where == "ep_a.mcap" and "camera 'right'" in err.value.message


def test_slower_topics_are_held_and_other_fields_read(tmp_path):
    write_bag(tmp_path / "ep_a.mcap", seconds=1.0)  # joint states 100 Hz, commands 20 Hz
    mapping = {"state": ["/robot/joint_states:position[0:1]"], "action": ["/robot/joint_commands"]}
    ep = load(tmp_path, mapping=mapping)
    stamps = ep.streams["action"].timestamps
    held = np.floor(stamps * 20 + 1e-6) / 20  # the latest 20 Hz command at or before each stamp
    np.testing.assert_allclose(ep.streams["action"].values[:, 1], held, atol=1e-6)
    assert ep.streams["proprio"].names == ("x",)
    with pytest.raises(EpisodeError, match="no field 'nope'"):
        load(tmp_path, mapping={"state": ["/robot/joint_states:nope"]})
    with pytest.raises(EpisodeError, match="not in the bag"):
        load(tmp_path, mapping={"state": ["/robot/missing"]})


def test_pairing_rules():
    base = np.arange(0, 100_000_000, 10_000_000)
    late = Series("/late", base + 4_000_000, np.arange(10.0)[:, None])  # every message 4 ms late
    _, idx, lag = pair_onto(base, [late], "auto")  # same rate: nearest, message k with stamp k
    assert idx["/late"].tolist() == list(range(10)) and lag["/late"] == pytest.approx(0.004)
    _, idx, lag = pair_onto(base, [late], "hold")  # held: the message before (the first, at the start)
    assert idx["/late"].tolist() == [0, *range(9)] and lag["/late"] == pytest.approx(0.006)
    early = Series("/early", np.arange(-50_000_000, 40_000_000, 10_000_000), np.zeros((9, 1)))
    kept, _, _ = pair_onto(base, [early], "auto")  # stamps past a topic's end are trimmed
    assert kept.tolist() == base[base <= 35_000_000].tolist()
    with pytest.raises(TopicError, match="dropout"):
        pair_onto(
            base,
            [Series("/gap", np.array([0, 10, 20, 60, 70, 80, 90]) * 1_000_000, np.zeros((7, 1)))],
            "auto",
        )
    with pytest.raises(ValueError, match="sync"):
        McapSettings.of({"sync": "sometimes"})
    assert short_names(["/robot/a/js", "/robot/b/js"]) == {"/robot/a/js": "a", "/robot/b/js": "b"}


GRIPPER = "std_msgs/Header header\nfloat64 width\nfloat64[] forces\nstring mode" + DEPS


def test_numeric_fields_of_other_message_types(tmp_path):
    from mcap_ros2.writer import Writer

    with open(tmp_path / "ep_a.mcap", "wb") as f:
        w = Writer(f)
        g = w.register_msgdef("my_msgs/msg/Gripper", GRIPPER)
        for k in range(20):
            stamp = T0 + k * 20_000_000
            msg = {"header": ros_header(stamp), "width": 0.5 * k, "forces": [k, -k], "mode": "open"}
            w.write_message("/gripper", g, msg, log_time=stamp)
        w.finish()
    mapping = {"state": ["/gripper:width", "/gripper:forces"], "instruction": "grip"}
    ep = load(tmp_path, mapping=mapping)
    k = np.arange(20)
    np.testing.assert_array_equal(ep.streams["proprio"].values, np.stack([0.5 * k, k, -k], axis=1))
    assert ep.streams["proprio"].names == ("/gripper:width", "/gripper:forces[0]", "/gripper:forces[1]")
    default = load(tmp_path, mapping={"state": ["/gripper"], "instruction": "grip"})  # the one array
    np.testing.assert_array_equal(default.streams["proprio"].values, np.stack([k, -k], axis=1))
    with pytest.raises(EpisodeError, match="not numeric"):
        load(tmp_path, mapping={"state": ["/gripper:mode"], "instruction": "grip"})
    header = load(tmp_path, mapping={"state": ["/gripper:header.stamp"], "instruction": "grip"})
    assert header.streams["proprio"].values.shape == (20, 2)  # sec, nanosec: a sub-message's numbers
    keys = {k.key: k for k in describe(tmp_path).keys}
    assert keys["/gripper:width"].shape == (1,) and keys["/gripper:forces"].shape == (2,)
    assert keys["/gripper:mode"].kind == "text" and "/gripper:header" not in keys
