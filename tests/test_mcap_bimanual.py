"""ROS 2 bags as a bimanual leader/follower rig records them (tests/mcap_rig.py), ingested through a
mapping: both follower arms make the state and both leader arms the action, bit-exact at the source
rate; the instruction comes from the ``task_info`` record; the camera mp4s beside the bag, started by
their PTS, a creation_time, or a timestamps file, give the source frames."""

from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from tests import mcap_rig as rig
from tests.helpers import T0, shard_urls
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import open_source

SECONDS = 1.2
GAP_NS = 200_000_000  # ep_004's right camera misses 200 ms of frames after its 10th


def right_stamps(episode: str) -> np.ndarray:
    stamps = rig.frame_stamps(rig.n_frames(SECONDS))
    if episode == "ep_004":
        stamps = stamps.copy()
        stamps[10:] += GAP_NS
    return stamps


@pytest.fixture(scope="module")
def rig_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("rig")
    rig.write_rig(root, "ep_000", seconds=SECONDS, starts=("pts", "stamps"))
    rig.write_rig(root, "ep_001", seconds=SECONDS, seed=1, starts=("creation", "creation"))
    rig.write_rig(root, "ep_002", seconds=SECONDS, seed=2, layout="rosbag2", starts=("txt", "txt"))
    rig.write_rig(root, "ep_003", seconds=SECONDS, seed=3, task=False)
    folder = rig.write_rig(root, "ep_004", seconds=SECONDS, seed=4, starts=("pts", "stamps"))
    np.save(folder / f"{rig.CAMERAS[1]}.timestamps.npy", right_stamps("ep_004"))
    return root


@pytest.fixture(scope="module")
def ingested(rig_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "out"
    cfg = JobConfig.from_flags(
        workers=0, fps=rig.RATE, image_size=rig.SIDE, format="mcap", mapping=rig.MAPPING
    )
    run_ingest(str(rig_source), str(out), cfg, progress=False)
    return out


def test_the_reader_takes_every_arm_with_names_and_the_task(rig_source):
    ep = open_source(rig_source, "mcap", mapping=rig.MAPPING).load("ep_002")  # the rosbag2 layout
    state, action = ep.streams["proprio"], ep.streams["action"]
    assert state.names[:2] == ("arm_left_follow/joint1", "arm_left_follow/joint2")
    assert state.names[7] == "arm_right_follow/joint1" and action.names[7] == "arm_right_lead/joint1"
    assert ep.instructions[0].text == rig.TASK and ep.instruction_file == "ep_002/ep_002_0.mcap"
    k = np.arange(len(state.timestamps))
    np.testing.assert_array_equal(state.timestamps, (rig.stamps(0, len(k), 2) - T0) / 1e9)
    expected = np.concatenate([rig.joint_values(0, k), rig.joint_values(1, k)], axis=1)
    np.testing.assert_array_equal(state.values, expected.astype(np.float32))
    lead = np.concatenate([rig.joint_values(2, k), rig.joint_values(3, k)], axis=1)
    np.testing.assert_array_equal(action.values, lead.astype(np.float32))
    assert 0 < max(ep.extra["sync_lag_s"].values()) <= 0.003
    for cam in ("left", "right"):
        np.testing.assert_allclose(
            ep.cameras[cam].timestamps, (rig.frame_stamps(len(ep.cameras[cam].pts)) - T0) / 1e9, atol=1e-6
        )


def test_without_a_mapping_the_old_defaults_stay_and_the_error_names_the_bag(rig_source):
    with pytest.raises(EpisodeError) as err:  # today's defaults: the task record's instruction only
        open_source(rig_source, "mcap").load("ep_000")
    assert (err.value.where, err.value.message) == ("ep_000.mcap", "no instruction text")
    ep = open_source(rig_source, "mcap", mapping={"instruction": "fold"}).load("ep_000")
    assert ep.streams["proprio"].values.shape[1] == 14  # a mapping without parts: the JointState guess


def test_nothing_is_lost_without_a_record(ingested):
    assert validate_output(ingested).ok
    info = json.loads((ingested / "meta" / "info.json").read_text())
    counts = info["counts"]
    assert counts["episodes_written"] + counts["episodes_quarantined"] == 5
    records = [json.loads(line) for line in (ingested / "meta" / "quarantine.jsonl").read_text().splitlines()]
    assert [(r["episode"], r["file"]) for r in records] == [("ep_003", "ep_003.mcap")]
    assert "no instruction text" in records[0]["reason"]
    rows = pq.read_table(ingested / "meta" / "episodes.parquet").to_pylist()
    dropped = {r["episode"]: r["dropped_ticks"] for r in rows}
    assert dropped["ep_004"] == expected_drops() and dropped["ep_000"] == 0
    assert info["state_names"][7] == "arm_right_follow/joint1"


def expected_drops() -> int:
    """Ticks at 49 Hz over ep_004's common span whose nearest right-camera frame is further than the
    camera's median frame interval."""
    frames = (right_stamps("ep_004") - T0) / 1e9
    end = min(frames[-1], (rig.stamps(0, int(SECONDS * rig.RATE), 4)[-1] - T0) / 1e9)
    ticks = np.arange(int(np.floor(end * rig.RATE + 1e-4 * rig.RATE)) + 1) / rig.RATE
    dist = np.min(np.abs(frames[None, :] - ticks[:, None]), axis=1)
    return int((dist > np.median(np.diff(frames)) + 1e-9).sum())


def decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_state_action_and_frames_are_the_source(rig_source, ingested):
    samples = list(wds.WebDataset(shard_urls(ingested), shardshuffle=False).decode("rgb8"))
    episodes = {s["meta.json"]["episode"] for s in samples}
    assert episodes == {"ep_000", "ep_001", "ep_002", "ep_004"}
    videos = {}
    for s in samples:
        meta = s["meta.json"]
        eid, k = meta["episode"], round(meta["time"] * rig.RATE)
        assert abs(meta["time"] * rig.RATE - k) < 1e-6 and meta["instruction"] == rig.TASK
        follow = np.concatenate([rig.joint_values(0, k), rig.joint_values(1, k)])
        lead = np.concatenate([rig.joint_values(2, k), rig.joint_values(3, k)])
        np.testing.assert_array_equal(s["state.npy"], follow.astype(np.float32))
        np.testing.assert_array_equal(s["action.npy"], lead.astype(np.float32))
        folder = rig_source / eid
        for cam, name, stamps in (
            ("left", rig.CAMERAS[0], rig.frame_stamps(rig.n_frames(SECONDS))),
            ("right", rig.CAMERAS[1], right_stamps(eid)),
        ):
            frames = videos.setdefault((eid, cam), decoded(folder / f"{name}.mp4"))
            i = int(np.argmin(np.abs((stamps - T0) / 1e9 - meta["time"])))
            assert psnr(s[f"{cam}.jpg"], frames[i]) >= 40.0, (eid, cam, k, i)


def test_a_video_without_a_start_is_refused_by_name_then_placed_by_the_config(tmp_path):
    rig.write_rig(tmp_path, "ep_a", seconds=0.5, starts=("none", "none"))
    with pytest.raises(EpisodeError) as err:
        open_source(tmp_path, "mcap", mapping=rig.MAPPING).load("ep_a")
    assert err.value.where == f"ep_a/{rig.CAMERAS[0]}.mp4" and "no start time" in err.value.message
    offsets = {"left": -0.1, rig.CAMERAS[1]: -0.1}
    ep = open_source(tmp_path, "mcap", mcap={"video_offsets": offsets}, mapping=rig.MAPPING).load("ep_a")
    for cam in ("left", "right"):
        np.testing.assert_allclose(ep.cameras[cam].timestamps[:2], [-0.1, -0.067], atol=1e-6)  # PTS in ms


def test_a_folder_of_rosbag2_recordings_is_detected_as_mcap(tmp_path):
    from trajshard.sources import detect_format

    rig.write_rig(tmp_path / "src", "ep_000", seconds=0.3, layout="rosbag2")
    assert detect_format(tmp_path / "src") == "mcap"
