"""HDF5: the real robosuite (robomimic layout) demos, and generated ALOHA / ACT episode files."""

from __future__ import annotations

import io

import h5py
import numpy as np
import webdataset as wds
from PIL import Image

from tests import groundtruth as gt
from tests.helpers import shard_urls, shared_data
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources import detect_format, open_source


def write_aloha(root, n_steps=40, compress=False, name="episode_0"):
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(n_steps) / 50.0
    with h5py.File(root / f"{name}.hdf5", "w") as h:
        h.attrs["compress"] = compress
        h.attrs["instruction"] = "transfer the cube"
        h["observations/qpos"] = np.stack([gt.position(t), np.sin(t)], 1).astype(np.float32)
        h["action"] = np.stack([gt.position(t + 0.02), np.sin(t)], 1).astype(np.float32)
        frames = [gt.draw(float(x)) for x in gt.position(t)]
        if compress:
            blobs = []
            for f in frames:
                b = io.BytesIO()
                Image.fromarray(f).save(b, format="JPEG", quality=95)
                blobs.append(np.frombuffer(b.getvalue(), np.uint8))
            width = max(len(b) for b in blobs)
            padded = np.zeros((n_steps, width), np.uint8)
            for i, b in enumerate(blobs):
                padded[i, : len(b)] = b
            h["observations/images/top"] = padded
        else:
            h["observations/images/top"] = np.stack(frames)


def test_robomimic_lift_demos():
    path = shared_data("robosuite_hdf5") / "lift.hdf5"
    assert detect_format(path) == "hdf5"
    src = open_source(path, "hdf5", 20.0)
    ids, rejected = src.plan()
    assert ids == ["demo_1", "demo_2", "demo_3"] and not rejected
    ep = src.load("demo_1")
    assert ep.streams["action"].values.shape[1] == 7 and ep.streams["proprio"].values.shape[1] == 32
    assert ep.cameras == {} and ep.instructions[0].text == "Lift"


def test_robomimic_values_reach_the_shards_bit_exact(tmp_path):
    path = shared_data("robosuite_hdf5") / "lift.hdf5"
    out = tmp_path / "lift"
    run_ingest(str(path), str(out), JobConfig.from_flags(workers=0, fps=20, no_images=True), progress=False)
    assert validate_output(out).ok
    with h5py.File(path) as h:
        actions = np.asarray(h["data/demo_2/actions"], np.float32)
        states = np.asarray(h["data/demo_2/states"], np.float32)
    got = [
        s
        for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode()
        if s["meta.json"]["episode"] == "demo_2"
    ]
    assert len(got) == len(actions)
    assert np.array_equal(np.stack([s["action.npy"] for s in got]), actions)
    assert np.array_equal(np.stack([s["state.npy"] for s in got]), states)


def test_aloha_files_raw_and_compressed_images(tmp_path):
    root = tmp_path / "aloha_transfer"
    write_aloha(root, compress=False, name="episode_0")
    write_aloha(root, compress=True, name="episode_1")
    src = open_source(root, "auto", 50.0)
    assert src.format == "hdf5" and src.plan()[0] == ["episode_0", "episode_1"]
    out = tmp_path / "out"
    run_ingest(
        str(root), str(out), JobConfig.from_flags(workers=0, fps=50, image_size=gt.SIZE), progress=False
    )
    assert validate_output(out).ok
    n = 0
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode("rgb8"):
        assert abs(gt.measure(s["top.jpg"]) - s["state.npy"][0]) <= 1.0
        assert s["meta.json"]["instruction"] == "transfer the cube"
        n += 1
    assert n == 80
