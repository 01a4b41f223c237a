"""HDF5 layouts read through a mapping: demo groups at the root (no ``data`` group), and a robomimic
file whose object-pose ``obs`` key is left out of the state."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from tests.layouts import check_output, frames, ingest, quarantined, values
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import detect_format, open_source

LENGTHS = (20, 27, 15, 22)
ROOT_MAPPING = {
    "episodes": "/",
    "state": ["observation/joint_pos", "observation/gripper"],
    "action": ["action"],
    "cameras": {"front": "observation/front_image"},
    "instruction": {"attribute": "task"},
}


def write_root_level(path, broken: int = 2) -> dict[str, dict]:
    """``demo_N/{action, observation/{joint_pos, gripper, front_image}}`` at the root; demo ``broken``
    has one action fewer than its observations. Returns each good demo's source arrays."""
    expected = {}
    with h5py.File(path, "w") as h:
        h.attrs["task"] = "stack the blocks"
        for i, n in enumerate(LENGTHS):
            joint, grip = values(n, 7, 10 * i), values(n, 2, 10 * i + 1, np.float32)
            action = values(n - (i == broken), 7, 10 * i + 2)
            h[f"demo_{i}/action"] = action
            h[f"demo_{i}/observation/joint_pos"] = joint
            h[f"demo_{i}/observation/gripper"] = grip
            h[f"demo_{i}/observation/front_image"] = frames(n, i)
            if i != broken:
                expected[f"demo_{i}"] = {
                    "state": np.concatenate([joint.astype(np.float32), grip], 1),
                    "action": action,
                    "front": frames(n, i),
                }
    return expected


def write_robomimic_with_object(path, broken: int = 3) -> dict[str, dict]:
    """``data/demo_N/{actions, obs/{robot0_joint_pos, robot0_gripper_qpos, object, agentview_image}}``;
    demo ``broken`` has no actions. Returns each good demo's arrays (state without ``object``)."""
    expected = {}
    with h5py.File(path, "w") as h:
        data = h.create_group("data")
        data.attrs["env"] = "Lift"
        for i, n in enumerate(LENGTHS):
            g = data.create_group(f"demo_{i}")
            joint, grip, obj = values(n, 7, i), values(n, 2, 50 + i), values(n, 10, 90 + i)
            if i != broken:
                g["actions"] = values(n, 7, 70 + i)
            g["obs/robot0_joint_pos"], g["obs/robot0_gripper_qpos"], g["obs/object"] = joint, grip, obj
            g["obs/agentview_image"] = frames(n, 5 + i)
            if i != broken:
                state = np.concatenate([grip, joint], 1)  # name order: robot0_gripper_qpos, robot0_joint_pos
                expected[f"demo_{i}"] = {
                    "state": state,
                    "action": values(n, 7, 70 + i),
                    "av": frames(n, 5 + i),
                }
    return expected


def test_root_level_demos_ingest_through_a_mapping(tmp_path):
    src = tmp_path / "pick.hdf5"
    expected = write_root_level(src)
    out = tmp_path / "out"
    ingest(src, out, "hdf5", ROOT_MAPPING)
    check_output(out, expected, {"front": "front"}, len(LENGTHS))
    bad = quarantined(out)["demo_2"]
    assert bad["file"] == "pick.hdf5" and "14 actions for 15 states" in bad["reason"]


def test_root_level_demos_are_found_without_a_mapping(tmp_path):
    src = tmp_path / "pick.hdf5"
    write_root_level(src)
    assert detect_format(src) == "hdf5"
    source = open_source(src, "auto", 10.0)
    assert source.plan() == (["demo_0", "demo_1", "demo_2", "demo_3"], [])
    ep = source.load("demo_1")
    assert ep.streams["proprio"].values.shape == (27, 9) and ep.streams["action"].values.shape == (27, 7)
    assert list(ep.cameras) == ["front"] and ep.instructions[0].text == "stack the blocks"
    assert ep.embodiment == "hdf5"


def test_robomimic_object_pose_left_out_of_the_state(tmp_path):
    src = tmp_path / "lift.hdf5"
    expected = write_robomimic_with_object(src)
    everything = open_source(src, "hdf5", 10.0).load("demo_0").streams["proprio"].values
    assert everything.shape[1] == 19  # by default every 2-D obs key, the object's pose too
    out = tmp_path / "out"
    ingest(src, out, "hdf5", {"exclude": ["object"]})
    check_output(out, expected, {"agentview": "av"}, len(LENGTHS))
    bad = quarantined(out)["demo_3"]
    assert bad["file"] == "lift.hdf5:/data/demo_3" and "no action dataset" in bad["reason"]


def test_mapping_errors_name_the_episode_file_and_key(tmp_path):
    src = tmp_path / "pick.hdf5"
    write_root_level(src)
    source = open_source(src, "hdf5", 10.0, mapping={**ROOT_MAPPING, "state": ["observation/nope"]})
    with pytest.raises(EpisodeError, match="observation/nope") as err:
        source.load("demo_0")
    assert err.value.problem.field == "pick.hdf5:/demo_0"
    sliced = open_source(src, "hdf5", 10.0, mapping={**ROOT_MAPPING, "state": ["observation/joint_pos[0:3]"]})
    state = sliced.load("demo_0").streams["proprio"]
    assert state.values.shape == (20, 3) and state.names[0] == "observation/joint_pos[0]"
    with pytest.raises(EpisodeError, match="no attribute 'nope'"):
        open_source(src, "hdf5", 10.0, mapping={"instruction": {"attribute": "nope"}}).load("demo_0")
    wrong = open_source(src, "hdf5", 10.0, mapping={"episodes": "missing"})
    assert wrong.plan()[1][0].message.startswith("mapping.episodes")


def test_per_step_instructions_from_a_string_dataset(tmp_path):
    src = tmp_path / "pick.hdf5"
    write_root_level(src)
    with h5py.File(src, "a") as h:
        h["demo_0/language"] = np.array([b"reach"] * 8 + [b"grasp"] * 12)
    ep = open_source(src, "hdf5", 10.0, mapping={"instruction": {"column": "language"}}).load("demo_0")
    assert [(s.text, s.start) for s in ep.instructions] == [("reach", float("-inf")), ("grasp", 0.8)]


def test_a_fifo_named_hdf5_is_rejected_not_opened(tmp_path):
    write_root_level(tmp_path / "pick.hdf5")
    os.mkfifo(tmp_path / "stuck.hdf5")
    ids, rejected = open_source(tmp_path, "hdf5", 10.0).plan()
    assert len(ids) == 4 and [(p.where, p.field) for p in rejected] == [("stuck", "stuck.hdf5")]
    assert "not a regular file" in rejected[0].message


def test_recorded_times_through_time_base(tmp_path):
    src = tmp_path / "pick.hdf5"
    write_root_level(src)
    with h5py.File(src, "a") as h:
        h["demo_1/observation/stamp"] = 1.7e9 + np.cumsum(np.full(27, 0.04))  # 25 Hz, epoch seconds
    ep = open_source(src, "hdf5", 10.0, mapping={"time_base": "observation/stamp"}).load("demo_1")
    assert np.allclose(ep.streams["action"].timestamps, np.arange(27) * 0.04, atol=1e-6)
    with pytest.raises(EpisodeError, match="observation/stamp"):
        open_source(src, "hdf5", 10.0, mapping={"time_base": "observation/stamp"}).load("demo_0")
