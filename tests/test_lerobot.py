"""LeRobot v2.0 (GR00T), v2.1 (G1) and v3.0 (generated) read directly; messy cases get their message."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import webdataset as wds

from tests import groundtruth as gt
from tests.helpers import shard_urls, shared_data
from tests.lerobot_v3 import write_v3
from trajshard.config import JobConfig
from trajshard.pipelines.frames import ImageConfig, frame_to_jpeg
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.reports.validation_source import validate_source
from trajshard.sources import detect_format, open_source
from trajshard.sources.video import decode_frames


def test_g1_v21_episodes_with_and_without_video():
    src = open_source(shared_data("g1_lerobot_v21"))
    assert src.version == "v2.1" and detect_format(src.root) == "lerobot"
    ids, _ = src.plan()
    assert len(ids) == 100
    ep = src.load("episode_000029")
    assert ep.instructions[0].text == "Pick up the yellow bottle on the table."
    assert ep.embodiment == "Unitree_G1_Inspire" and set(ep.cameras) == {"cam_high"}
    assert (
        ep.streams["proprio"].values.shape == (221, 26)
        and ep.streams["proprio"].names[0] == "kLeftShoulderPitch"
    )
    problems = src.check("episode_000000")
    assert problems and "video file is missing" in problems[0].message


def test_gr00t_v20_messy_metadata():
    src = open_source(shared_data("gr00t_pnp_lerobot_v20"))
    assert src.cameras == ["observation.images.ego_view"]
    assert "egoview" in src.notes[0] and "no video file" in src.notes[0]
    for eid in src.plan()[0]:  # data_path's template points at chunk-<episode>: found by name instead
        ep = src.load(eid)
        assert all(s.text != "valid" for s in ep.instructions)
        assert ep.streams["proprio"].values.shape[1] == 44


def test_g1_ingest_quarantines_the_94_episodes_without_video(tmp_path):
    root = shared_data("g1_lerobot_v21")
    out = tmp_path / "g1"
    cfg = JobConfig.from_flags(workers=0, fps=30, image_size=128)  # one tick per source frame
    report = run_ingest(str(root), str(out), cfg, progress=False)
    assert (report.episodes_written, report.episodes_quarantined) == (6, 94)
    assert validate_output(out).ok
    lines = [json.loads(x) for x in (out / "meta" / "quarantine.jsonl").read_text().splitlines()]
    assert all("video file is missing" in q["reason"] for q in lines)

    # frame-exact and bit-exact on episode 29: the sample's image is the source frame at its time
    table = pq.read_table(root / "data" / "chunk-000" / "episode_000029.parquet")
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float32)
    action = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
    video = root / "videos" / "chunk-000" / "observation.images.cam_high" / "episode_000029.mp4"
    frames = [frame_to_jpeg(f, ImageConfig(128, "stretch", 95)) for f in decode_frames(str(video))]
    samples = [
        s
        for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode()  # images stay JPEG bytes
        if s["meta.json"]["episode"] == "episode_000029"
    ]
    assert len(samples) == len(frames) == len(state)
    for i, s in enumerate(samples):
        assert np.array_equal(s["state.npy"], state[i]) and np.array_equal(s["action.npy"], action[i])
        assert s["cam_high.jpg"] == frames[i]  # byte for byte the JPEG of source frame i


def test_v3_several_episodes_per_file(tmp_path):
    root = tmp_path / "v3"
    write_v3(root)
    src = open_source(root)
    assert src.version == "v3.0"
    ids = src.plan()[0]
    assert ids == ["episode_000000", "episode_000001", "episode_000002"]
    ep1 = src.load("episode_000001")
    assert len(ep1.cameras["top"].timestamps) == 45 and ep1.cameras["top"].timestamps[0] == 0.0
    assert ep1.instructions[0].text == "place the marker"
    assert validate_source(str(root)).ok
    out = tmp_path / "out"
    run_ingest(
        str(root), str(out), JobConfig.from_flags(workers=0, fps=15, clock="camera:top"), progress=False
    )
    assert validate_output(out).ok
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode("rgb8"):
        # each episode's frames come from its own stretch of the shared video
        assert abs(gt.measure(s["top.jpg"]) * 224 / gt.SIZE - s["state.npy"][0] * 224 / gt.SIZE) <= 1.5
    steps = pq.read_table(out / "meta" / "episodes.parquet").column("steps").to_pylist()
    assert steps == [30, 45, 24]
    # the same values: every state and action of the data file, bit-exact, in episode order
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    want_state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float32)
    want_action = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
    got = list(wds.WebDataset(shard_urls(out), shardshuffle=False).decode())
    assert np.array_equal(np.stack([s["state.npy"] for s in got]), want_state)
    assert np.array_equal(np.stack([s["action.npy"] for s in got]), want_action)
