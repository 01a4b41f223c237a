"""RLDS / Open X-Embodiment TFRecords read without TensorFlow (real BridgeData V2 debug split)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import webdataset as wds

from tests.helpers import shard_urls, shared_data
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources import detect_format, open_source
from trajshard.sources.tfrecord import RecordError, index_records


def test_bridge_episodes_streams_cameras_instructions():
    root = shared_data("bridge_rlds")
    assert detect_format(root) == "rlds"
    src = open_source(root, "rlds", step_rate=5.0)
    ids, rejected = src.plan()
    assert len(ids) == 25 and not rejected
    assert src.cameras == ["image_0", "image_1", "image_2", "image_3"]
    ep = src.load(ids[0])
    assert ep.streams["proprio"].values.shape == (10, 7) and ep.streams["action"].values.shape == (10, 7)
    np.testing.assert_allclose(ep.streams["action"].timestamps, np.arange(10) / 5.0)
    assert ep.instructions[0].text == "put cup from counter or drying rack into sink"
    cam = ep.cameras["image_0"]
    assert (cam.width, cam.height) == (64, 64)
    frames = list(src.frames(cam))
    assert len(frames) == 10 and frames[0].to_ndarray(format="rgb24").shape == (64, 64, 3)


def test_bridge_ingest_one_tick_per_step(tmp_path):
    out = tmp_path / "bridge"
    report = run_ingest(
        str(shared_data("bridge_rlds")),
        str(out),
        JobConfig.from_flags(workers=0, fps=5, image_size=64),
        progress=False,
    )
    assert (report.episodes_written, report.samples) == (25, 250)
    assert validate_output(out).ok
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["source"]["format"] == "rlds" and len(info["cameras"]) == 4
    # values bit-exact, images untouched when the size is kept (64x64): the source's JPEG bytes
    src = open_source(shared_data("bridge_rlds"), "rlds", 5.0)
    by_ep = {}
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False):
        by_ep.setdefault(s["__key__"].rsplit("_", 1)[0], []).append(s)
    assert len(by_ep) == 25
    for eid, samples in list(by_ep.items())[:5]:
        ex, _ = src._example(eid)
        state = np.asarray(ex["steps/observation/state"], np.float32).reshape(-1, 7)
        action = np.asarray(ex["steps/action"], np.float32).reshape(-1, 7)
        for i, s in enumerate(samples):
            assert np.array_equal(np.load(io.BytesIO(s["state.npy"])), state[i])
            assert np.array_equal(np.load(io.BytesIO(s["action.npy"])), action[i])
            assert s["image_0.jpg"] == ex["steps/observation/image_0"][i]


def test_corrupt_record_is_caught_by_its_crc(tmp_path):
    root = tmp_path / "bridge"
    shutil.copytree(shared_data("bridge_rlds"), root)
    shard = next(root.glob("*.tfrecord-*"))
    shard.chmod(0o644)
    data = bytearray(shard.read_bytes())
    offset, length = index_records(str(shard))[3]
    data[offset + length // 2] ^= 0x01  # one flipped bit inside episode 3
    shard.write_bytes(bytes(data))
    src = open_source(root, "rlds", 5.0)
    ids = src.plan()[0]
    problems = src.check(ids[3])
    assert problems and "CRC" in problems[0].message and problems[0].field == shard.name
    assert src.check(ids[2]) == []
    data[:8] = b"\xff" * 8  # a broken header: the shard itself cannot be indexed
    shard.write_bytes(bytes(data))
    with pytest.raises(RecordError, match="CRC"):
        index_records(str(shard))


def test_a_task_indexes_only_the_shards_its_episodes_are_in(tmp_path, monkeypatch):
    """A pass-1 or pass-2 task opens a new source and loads a few episodes: it must not read the record
    headers of every shard of the dataset (thousands in Open X-Embodiment) to find them."""
    import trajshard.sources.rlds as rlds

    real = shared_data("bridge_rlds")
    for name in ("features.json", "dataset_info.json"):
        shutil.copy(real / name, tmp_path / name)
    shard = real / "bridge_dataset-train.tfrecord-00000-of-00001"
    for i in range(3):
        shutil.copy(shard, tmp_path / f"bridge_dataset-train.tfrecord-{i:05d}-of-00003")
    ids, rejected = open_source(tmp_path, "rlds", step_rate=5.0).plan()
    assert len(ids) == 75 and not rejected and "train_00002_000007" in ids
    planned = open_source(tmp_path, "rlds", step_rate=5.0)
    planned.plan()
    reference = planned.load("train_00002_000007")

    indexed: list[str] = []
    real_scan = rlds.scan_records
    monkeypatch.setattr(rlds, "scan_records", lambda path: indexed.append(path) or real_scan(path))
    task = open_source(tmp_path, "rlds", step_rate=5.0)
    ep = task.load("train_00002_000007")
    task.load("train_00002_000003")
    assert [p.rsplit("tfrecord-", 1)[1] for p in indexed] == ["00002-of-00003"]  # one shard, indexed once
    np.testing.assert_array_equal(ep.streams["action"].values, reference.streams["action"].values)
    with pytest.raises(Exception, match="no such episode"):
        task.load("train_00002_000099")
