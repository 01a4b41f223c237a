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
from trajshard.schemas.episode import EpisodeError
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


# -- the source mapping ---------------------------------------------------------------------------

SPLIT_SHARD = "split-train.tfrecord-00000-of-00001"


def _split_spec() -> dict:
    """Bridge's features.json with the state kept as joint_pos [6] and a scalar gripper, two cameras
    (image, wrist_image) and a per-step and a per-episode text besides language_instruction."""
    spec = json.loads((shared_data("bridge_rlds") / "features.json").read_text())
    top = spec["featuresDict"]["features"]
    steps = top["steps"]["sequence"]["feature"]["featuresDict"]["features"]
    obs = steps["observation"]["featuresDict"]["features"]
    state = obs.pop("state")
    obs["joint_pos"] = {**state, "tensor": {**state["tensor"], "shape": {"dimensions": ["6"]}}}
    obs["gripper"] = {**state, "tensor": {**state["tensor"], "shape": {}}}  # a Scalar: width from the values
    obs["image"], obs["wrist_image"] = obs.pop("image_0"), obs.pop("image_1")
    del obs["image_2"], obs["image_3"]
    obs["natural_language_instruction"] = steps["language_instruction"]
    top["episode_metadata"]["featuresDict"]["features"]["task"] = steps["language_instruction"]
    return spec


def split_rlds(root, drop: dict[int, str] | None = None) -> list[dict]:
    """Bridge's first three episodes written the way an Open X-Embodiment dataset keeps them (see
    ``_split_spec``), one shard; ``drop``: record -> a feature left out of it. Returns Bridge's own
    examples, the reference for every value."""
    from tests.hostile_rlds import SHARD, _record, encode_example
    from trajshard.sources.tfrecord import parse_example, read_record

    real = shared_data("bridge_rlds")
    root.mkdir()
    (root / "features.json").write_text(json.dumps(_split_spec()))
    shutil.copy(real / "dataset_info.json", root / "dataset_info.json")
    refs = [
        parse_example(read_record(str(real / SHARD), o, n)) for o, n in index_records(str(real / SHARD))[:3]
    ]
    records = []
    for i, ref in enumerate(refs):
        ex = {k: v for k, v in ref.items() if not k.startswith("steps/observation/")}
        state = np.asarray(ref["steps/observation/state"], np.float32).reshape(-1, 7)
        ex["steps/observation/joint_pos"] = np.ascontiguousarray(state[:, :6]).ravel()
        ex["steps/observation/gripper"] = np.ascontiguousarray(state[:, 6])
        ex["steps/observation/image"] = ref["steps/observation/image_0"]
        ex["steps/observation/wrist_image"] = ref["steps/observation/image_1"]
        ex["steps/observation/natural_language_instruction"] = [b"reach"] * 4 + [b"grasp"] * 6
        ex["episode_metadata/task"] = [f"task of episode {i}".encode()]
        ex.pop((drop or {}).get(i, ""), None)
        records.append(_record(encode_example(ex)))
    (root / SPLIT_SHARD).write_bytes(b"".join(records))
    return refs


SPLIT_MAPPING = {
    "state": ["steps/observation/joint_pos", {"key": "steps/observation/gripper", "names": ["gripper"]}],
    "action": [
        {"key": "steps/action", "slice": [0, 6], "names": ["x", "y", "z", "roll", "pitch", "yaw"]},
        "steps/action[6:7]",
    ],
    "cameras": {"front": "steps/observation/image", "wrist": "steps/observation/wrist_image"},
    "instruction": {"column": "episode_metadata/task"},
}


def test_a_mapping_reads_split_state_features_and_renamed_cameras(tmp_path):
    """Open X-Embodiment keeps joint positions and the gripper apart: the mapping joins them, and the
    shards hold Bridge's own state and action bit for bit, its JPEGs under the mapped camera names and
    the per-episode task text as the instruction."""
    refs = split_rlds(tmp_path / "src")
    plain = open_source(tmp_path / "src", "rlds", 5.0)
    problem = plain.check("train_00000_000000")[0]  # the defaults look for steps/observation/state
    assert problem.field == SPLIT_SHARD and "no steps/observation/state feature" in problem.message
    out = tmp_path / "out"
    cfg = JobConfig.from_flags(workers=0, fps=5, image_size=64, mapping=SPLIT_MAPPING)
    report = run_ingest(str(tmp_path / "src"), str(out), cfg, progress=False)
    assert (report.episodes_written, report.samples, report.episodes_quarantined) == (3, 30, 0)
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["cameras"] == ["front", "wrist"]
    assert info["state_names"] == [*(f"steps/observation/joint_pos[{i}]" for i in range(6)), "gripper"]
    assert info["action_names"] == [
        "x",
        "y",
        "z",
        "roll",
        "pitch",
        "yaw",
        "steps/action",
    ]  # one column: its key
    seen = 0
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False):
        meta = json.loads(s["meta.json"])
        ref, i = refs[int(meta["episode"][-1])], meta["step"]
        state = np.asarray(ref["steps/observation/state"], np.float32).reshape(-1, 7)
        action = np.asarray(ref["steps/action"], np.float32).reshape(-1, 7)
        assert np.array_equal(np.load(io.BytesIO(s["state.npy"])), state[i])
        assert np.array_equal(np.load(io.BytesIO(s["action.npy"])), action[i])
        assert s["front.jpg"] == ref["steps/observation/image_0"][i]
        assert s["wrist.jpg"] == ref["steps/observation/image_1"][i]
        assert meta["instruction"] == f"task of episode {meta['episode'][-1]}"
        seen += 1
    assert seen == 30


def test_a_per_step_text_feature_or_a_constant_is_the_instruction(tmp_path):
    split_rlds(tmp_path / "src")
    per_step = {**SPLIT_MAPPING, "instruction": {"column": "steps/observation/natural_language_instruction"}}
    ep = open_source(tmp_path / "src", "rlds", 5.0, mapping=per_step).load("train_00000_000001")
    assert [(s.start, s.end, s.text) for s in ep.instructions] == [
        (float("-inf"), 0.8, "reach"),
        (0.8, float("inf"), "grasp"),
    ]
    constant = {**SPLIT_MAPPING, "instruction": "wipe the table"}
    ep = open_source(tmp_path / "src", "rlds", 5.0, mapping=constant).load("train_00000_000001")
    assert [s.text for s in ep.instructions] == ["wipe the table"]
    no_text = {**SPLIT_MAPPING, "instruction": {"column": "steps/observation/gripper"}}
    with pytest.raises(EpisodeError, match="is numeric, not text"):
        open_source(tmp_path / "src", "rlds", 5.0, mapping=no_text).load("train_00000_000001")


def test_a_key_the_record_lacks_quarantines_its_episode_naming_the_shard_and_the_keys(tmp_path):
    split_rlds(tmp_path / "src", drop={1: "steps/observation/gripper"})
    out = tmp_path / "out"
    cfg = JobConfig.from_flags(workers=0, fps=5, image_size=64, mapping=SPLIT_MAPPING)
    report = run_ingest(str(tmp_path / "src"), str(out), cfg, progress=False)
    assert (report.episodes_written, report.episodes_quarantined) == (2, 1)
    line = (out / "meta" / "quarantine.jsonl").read_text()
    record = json.loads(line)
    assert record["episode"] == "train_00000_000001" and SPLIT_SHARD in line
    assert "the mapping names 'steps/observation/gripper', which the record does not hold" in line
    assert "it has: episode_metadata/episode_id" in line and "steps/observation/joint_pos" in line
    camera = {**SPLIT_MAPPING, "cameras": {"front": "steps/observation/image_0"}}
    with pytest.raises(EpisodeError, match="'steps/observation/image_0', which the record does not hold"):
        open_source(tmp_path / "src", "rlds", 5.0, mapping=camera).load("train_00000_000000")


def test_exclude_leaves_cameras_out_and_unusable_keys_are_refused():
    root = shared_data("bridge_rlds")
    src = open_source(root, "rlds", 5.0, mapping={"exclude": ["image_2", "steps/observation/image_3"]})
    assert src.cameras == ["image_0", "image_1"]
    assert sorted(src.load(src.plan()[0][0]).cameras) == ["image_0", "image_1"]
    for bad, words in (
        ({"time_base": "steps/observation/state"}, "RLDS steps carry no times"),
        ({"instruction": {"record": "episode_metadata", "field": "task"}}, "not {record = ...}"),
        ({"state": ["steps/observation/state:position"]}, "no message fields"),
    ):
        with pytest.raises(ValueError, match=words):
            open_source(root, "rlds", 5.0, mapping=bad)
