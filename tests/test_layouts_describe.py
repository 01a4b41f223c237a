"""describe() of the HDF5, npz and Zarr readers: every array listed with its kind, and a mapping
template that ingests each layout's fixture unedited (the robot's keys as the state, no object pose)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.helpers import shared_data
from tests.layouts import check_output, ingest, samples_by_episode
from tests.test_hdf5 import write_aloha
from tests.test_hdf5_layouts import write_robomimic_with_object, write_root_level
from tests.test_npz_layouts import write_npz_folders
from tests.test_zarr_layouts import write_replay_buffer
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.sources import hdf5, npz, zarr_buffer
from trajshard.sources.mapping import mapping_problems


def kinds(listing) -> dict[str, str]:
    return {k.key: k.kind for k in listing.keys}


def test_robomimic_template_leaves_the_object_out_and_ingests(tmp_path):
    src = tmp_path / "lift.hdf5"
    expected = write_robomimic_with_object(src)
    listing = hdf5.describe(src, source_fps=10.0)
    assert listing.format == "hdf5" and listing.episodes == 4 and listing.example == "demo_0"
    assert kinds(listing) == {
        "actions": "numeric",
        "obs/agentview_image": "camera",
        "obs/object": "numeric",
        "obs/robot0_gripper_qpos": "numeric",
        "obs/robot0_joint_pos": "numeric",
        "env": "text",
    }
    assert listing.mapping == {
        "state": ["obs/robot0_gripper_qpos", "obs/robot0_joint_pos"],
        "action": ["actions"],
        "cameras": {"agentview": "obs/agentview_image"},
        "exclude": ["obs/object"],
        "instruction": {"attribute": "env"},
    }
    assert not mapping_problems(listing.mapping) and listing.settings == {"source_fps": 10.0}
    ingest(src, tmp_path / "out", "hdf5", listing.mapping)
    check_output(tmp_path / "out", expected, {"agentview": "av"}, 4)


def test_root_level_template_names_the_root_and_ingests(tmp_path):
    src = tmp_path / "pick.hdf5"
    expected = write_root_level(src)
    listing = hdf5.describe(src)
    assert listing.mapping["episodes"] == "/" and listing.mapping["instruction"] == {"attribute": "task"}
    assert listing.mapping["cameras"] == {"front": "observation/front_image"}
    ingest(src, tmp_path / "out", "hdf5", listing.mapping)
    got = samples_by_episode(tmp_path / "out")
    for eid, src_arrays in expected.items():  # name order: gripper (2) before joint_pos (7)
        state = np.stack([s["state.npy"] for s in got[eid]])
        assert np.array_equal(state, np.roll(src_arrays["state"], 2, axis=1))


def test_npz_template_ingests(tmp_path):
    src = tmp_path / "src"
    expected = write_npz_folders(src)
    listing = npz.describe(src)
    assert listing.episodes == 4 and listing.example == "ep_000"  # ep_002's npz is broken: found at load
    assert kinds(listing)["wrist_rgb"] == "camera" and kinds(listing)["front"] == "camera"
    assert kinds(listing)["task"] == "text" and listing.mapping["instruction"] == {"attribute": "task"}
    assert listing.mapping["state"] == ["gripper", "qpos"] and listing.mapping["action"] == ["actions"]
    ingest(src, tmp_path / "out", "npz", listing.mapping)
    for e in expected.values():  # the template's order: gripper (1), then qpos (7)
        e["state"] = np.roll(e["state"], 1, axis=1)
    assert listing.mapping["cameras"] == {"wrist_rgb": "wrist_rgb", "front": "front"}
    check_output(tmp_path / "out", expected, {"wrist_rgb": "wrist", "front": "front"}, 4)


def test_zarr_template_ingests(tmp_path):
    src = tmp_path / "pusht_replay.zarr"
    expected = write_replay_buffer(src)
    listing = zarr_buffer.describe(src, source_fps=10.0)
    assert listing.episodes == 5 and listing.example == "episode_000000"
    assert "1 episode(s) end past the 80 rows of data/" in " ".join(listing.notes)
    assert kinds(listing) == {
        "action": "numeric",
        "img": "camera",
        "keypoint": "other",
        "state": "numeric",
        "meta/episode_ends": "metadata",
    }
    assert listing.mapping == {
        "state": ["state"],
        "action": ["action"],
        "cameras": {"img": "img"},
        "instruction": "pusht",
    }
    ingest(src, tmp_path / "out", "zarr", listing.mapping)
    check_output(tmp_path / "out", expected, {"img": "img"}, 6)


def shard_hashes(out) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").iterdir())}


@pytest.mark.parametrize("which", ["aloha", "lift"])
def test_hdf5_template_gives_the_default_shards(tmp_path, which):
    """ALOHA files (raw and JPEG images) and the real robosuite lift: the template, unedited, writes
    the shards the reader's defaults write, byte for byte."""
    if which == "aloha":
        src, fps = tmp_path / "aloha", 50
        write_aloha(src, compress=False, name="episode_0")
        write_aloha(src, compress=True, name="episode_1")
    else:
        src, fps = shared_data("robosuite_hdf5") / "lift.hdf5", 20
    mapping = hdf5.describe(src, source_fps=fps).mapping
    assert mapping["state"] == (["observations/qpos"] if which == "aloha" else ["states"])
    outs = []
    for m in ({}, mapping):
        outs.append(tmp_path / f"out{len(outs)}")
        cfg = JobConfig.from_flags(workers=0, fps=fps, image_size=224, mapping=m, no_images=which == "lift")
        run_ingest(str(src), str(outs[-1]), cfg, progress=False)
    assert shard_hashes(outs[0]) == shard_hashes(outs[1])
