"""The note that says why a small dataset gets more shards than its size cap needs."""

from __future__ import annotations

from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.pipelines.plan import Group, OutputConfig, shard_note


def test_more_shards_than_the_cap_needs_are_explained_with_the_setting_that_changes_it():
    groups = [Group(i, "train", (f"ep_{i}",)) for i in range(8)]
    note = shard_note(OutputConfig(), 32, groups, shards=8, nbytes=3_000_000, total_steps=304)
    assert note.startswith("8 shards where the 1GB cap needs 1: pass 2 cuts the work into 8 tasks")
    assert "until it holds 32 steps (automatic" in note and note.endswith("a larger --task-steps, e.g. 304")
    assert "\n" not in note


def test_spans_and_a_set_task_steps_are_named():
    groups = [Group(i, "train", ("demo_1",), (64 * i, 64 * (i + 1))) for i in range(4)]
    note = shard_note(OutputConfig(task_steps=64), 64, groups, shards=4, nbytes=10**6, total_steps=256)
    assert "(set by --task-steps)" in note and "cut into spans of about 64 (4 here)" in note


def test_no_note_when_the_cap_needs_every_shard():
    groups = [Group(0, "train", ("a",)), Group(1, "val", ("b",))]
    assert shard_note(OutputConfig(val_fraction=0.5), 32, groups, shards=2, nbytes=100, total_steps=64) == ""
    big = [Group(i, "train", (str(i),)) for i in range(3)]
    assert (
        shard_note(OutputConfig(shard_size="1MB"), 32, big, shards=3, nbytes=2_500_000, total_steps=96) == ""
    )


def test_the_job_reports_the_note_and_following_it_removes_it(synthetic_raw, tmp_path):
    first = run_ingest(
        str(synthetic_raw), str(tmp_path / "a"), JobConfig.from_flags(workers=0), progress=False
    )
    assert first.shards > 1 and first.shard_note.startswith(
        f"{first.shards} shards where the 1GB cap needs 1"
    )
    steps = int(first.shard_note.rsplit("e.g. ", 1)[1])
    cfg = JobConfig.from_flags(workers=0, task_steps=steps)
    second = run_ingest(str(synthetic_raw), str(tmp_path / "b"), cfg, progress=False)
    assert second.shards == 1 and second.shard_note == ""
