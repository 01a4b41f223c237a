"""Raw layout v1 reader: every table format, per-frame timestamps, offsets, instructions; validators."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trajshard.schemas.episode import EpisodeError
from trajshard.schemas.raw_layout import classify_files, validate_episode_json
from trajshard.sources import detect_format, open_source
from trajshard.sources.raw import RawSource


def test_reads_every_synthetic_episode(synthetic_raw):
    src = open_source(synthetic_raw)
    ids, rejected = src.plan()
    assert ids == [f"ep_{i:03d}" for i in range(8)] and rejected == []
    for eid in ids:
        ep = src.load(eid)
        assert ep.streams["proprio"].values.shape[1] == 7
        assert ep.streams["action"].values.shape[1] == 7
        assert set(ep.cameras) == {"front", "wrist"}
        assert ep.cameras["front"].codec == "h264" and ep.cameras["wrist"].codec == "vp9"
        # every format variant gives the same time base: proprio from ~0 s to ~3 s
        assert abs(ep.streams["proprio"].timestamps[0]) < 0.01
        assert 2.9 < ep.streams["proprio"].timestamps[-1] < 3.1


def test_int_nanoseconds_and_per_dim_columns(synthetic_raw):
    ep = RawSource(synthetic_raw).load("ep_001")  # proprio CSV, int64 ns, one column per dim
    assert ep.streams["proprio"].source == "proprio.csv"
    assert ep.streams["proprio"].names[0] == "joint0"
    assert np.all(np.diff(ep.streams["proprio"].timestamps) > 0)
    ep4 = RawSource(synthetic_raw).load("ep_004")  # action JSONL, list column, int64 ns
    np.testing.assert_allclose(ep4.streams["action"].timestamps[:3], [0.0, 0.05, 0.1], atol=1e-9)


def test_offsets_and_timestamp_files(synthetic_raw):
    src = RawSource(synthetic_raw)
    ep = src.load("ep_000")
    assert ep.cameras["wrist"].timestamps[0] == pytest.approx(0.25, abs=1e-3)  # PTS 0 + offset 0.25
    ep6 = src.load("ep_006")  # front.timestamps.npy replaces PTS
    expected = np.load(synthetic_raw / "ep_006" / "front.timestamps.npy", allow_pickle=False)
    np.testing.assert_array_equal(ep6.cameras["front"].timestamps, expected)


def test_time_ranged_instructions(synthetic_raw):
    ep = RawSource(synthetic_raw).load("ep_005")
    assert len(ep.instructions) == 2
    texts = ep.instruction_at(np.array([0.1, 2.9]))
    assert texts[0] == ep.instructions[0].text and texts[1] == ep.instructions[1].text


def test_hostile_names_are_rejected_at_plan(raw_copy):
    (raw_copy / "bad name").mkdir()
    (raw_copy / "dot.ted").mkdir()
    outside = raw_copy.parent / "outside_ep"
    outside.mkdir()
    (raw_copy / "linked").symlink_to(outside, target_is_directory=True)
    ids, rejected = RawSource(raw_copy).plan()
    assert "linked" not in ids and len(ids) == 8
    reasons = {p.where: p.message for p in rejected}
    assert set(reasons) == {"bad name", "dot.ted", "linked"}
    assert "outside the source" in reasons["linked"]


def test_missing_proprio_names_the_file(raw_copy):
    (raw_copy / "ep_000" / "proprio.parquet").unlink()
    with pytest.raises(EpisodeError, match="proprio.*missing"):
        RawSource(raw_copy).load("ep_000")


def test_episode_json_validator_reports_every_problem():
    problems = validate_episode_json(
        "e", {"instruction": "", "instructions": [], "success": "yes", "offsets": {"front": "x"}, "colour": 1}
    )
    messages = " | ".join(p.message for p in problems)
    for fragment in ("unknown keys", "exactly one", '"success"', '"offsets"'):
        assert fragment in messages
    assert len(problems) >= 5


def test_classify_files_reports_duplicates_and_missing():
    files, problems = classify_files(
        "e", ["proprio.csv", "proprio.parquet", "front.mp4", "front.mkv", "back.timestamps.npy"]
    )
    msgs = [str(p) for p in problems]
    assert any("second proprio" in m for m in msgs) and any("second video" in m for m in msgs)
    assert any("episode.json" in m for m in msgs) and any("no video" in m for m in msgs)


def test_detect_format(synthetic_raw, tmp_path):
    assert detect_format(synthetic_raw) == "raw"
    with pytest.raises(ValueError, match="cannot tell"):
        detect_format(tmp_path)


def test_bad_episode_json_is_reported(raw_copy):
    (raw_copy / "ep_000" / "episode.json").write_text(
        json.dumps({"instruction": "x", "offsets": {"nope": 1}})
    )
    with pytest.raises(EpisodeError, match="offsets name streams"):
        RawSource(raw_copy).load("ep_000")


def test_ids_that_cannot_be_shard_keys_are_rejected(tmp_path):
    from trajshard.schemas.raw_layout import EPISODE_ID_RE
    from trajshard.sources import checked_plan

    assert not EPISODE_ID_RE.match("ep\n") and EPISODE_ID_RE.match("ep_1-a")

    class Plan:
        def plan(self):
            return ["ok_1", "run.v2-demo_0", "bad\n"], []

    ids, rejected = checked_plan(Plan())
    # a rejected id is recorded with its control characters escaped (never raw in a terminal or a record)
    assert ids == ["ok_1"] and {r.where for r in rejected} == {"run.v2-demo_0", "bad\\x0a"}
