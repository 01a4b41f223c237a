"""Train/val split by episode hash and the write-time shuffle: planning (pure), end to end (serially),
and the same bytes with one or two Ray workers as serially."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from tests.helpers import tree_digest
from trajshard.config import JobConfig
from trajshard.io import iter_tar_samples
from trajshard.pipelines.ingest import run_ingest
from trajshard.pipelines.plan import OutputConfig, plan_groups, split_of
from trajshard.reports.summary import splits_summary
from trajshard.reports.validation import validate_output


def test_split_is_stable_as_the_dataset_grows_and_near_the_fraction():
    cfg = JobConfig.from_flags(val_fraction=0.2, seed=3)
    ids = [f"ep_{i:05d}" for i in range(5000)]
    splits = {e: split_of(e, cfg.output) for e in ids}
    assert 0.18 < sum(s == "val" for s in splits.values()) / len(ids) < 0.22
    more = ids + [f"new_{i}" for i in range(500)]
    assert all(split_of(e, cfg.output) == splits[e] for e in more[:5000])  # no episode moves
    assert {split_of(e, OutputConfig(val_fraction=0.2, seed=4)) for e in ids[:50]} == {"train", "val"}
    assert any(
        split_of(e, OutputConfig(val_fraction=0.2, seed=4)) != splits[e] for e in ids
    )  # the seed matters


def test_plan_groups_keep_splits_apart_and_windows_mix_the_id_space():
    cfg = JobConfig.from_flags(val_fraction=0.25, shuffle_window=10)
    episodes = [(f"ep_{i:04d}", 30) for i in range(100)]
    groups = plan_groups(episodes, cfg.output, task_steps=10**6)
    assert [g.index for g in groups] == list(range(len(groups)))
    seen = [e for g in groups for e in g.episodes]
    assert sorted(seen) == [e for e, _ in episodes]  # every episode once
    for g in groups:
        assert {split_of(e, cfg.output) for e in g.episodes} == {g.split}
        assert len(g.episodes) <= 10
    first = sorted(groups[0].episodes)
    assert int(first[-1][3:]) - int(first[0][3:]) > 20  # not ten neighbours
    in_order = plan_groups(episodes, OutputConfig(), task_steps=90)
    assert [g.episodes for g in in_order][:2] == [
        ("ep_0000", "ep_0001", "ep_0002"),
        ("ep_0003", "ep_0004", "ep_0005"),
    ]


def _ingest(src, out, workers, **kw):
    cfg = JobConfig.from_flags(
        workers=workers, val_fraction=0.25, shuffle_window=6, shard_size="300KB", seed=1, **kw
    )
    return run_ingest(str(src), str(out), cfg, progress=False)


@pytest.fixture(scope="module")
def shuffled(many_raw, tmp_path_factory):
    """(report, OUT) of the 24 episodes in two splits, shuffled, serially (read-only)."""
    out = tmp_path_factory.mktemp("shuffled") / "out"
    return _ingest(many_raw, out, 0), out


def test_two_splits_shuffled_validate_and_mix_episodes(shuffled):
    report, out = shuffled
    assert report.episodes_written == 24
    v = validate_output(out)
    assert v.ok, v.problems
    info = json.loads((out / "meta" / "info.json").read_text())
    assert set(info["splits"]) == {"train", "val"}
    manifest = json.loads((out / "meta" / "manifest.json").read_text())
    table = pq.read_table(out / "meta" / "episodes.parquet").to_pylist()
    split_of_ep = {r["episode"]: r["split"] for r in table}
    assert set(split_of_ep.values()) == {"train", "val"}
    for shard in manifest["shards"]:
        assert shard["name"].startswith(f"shards/{shard['split']}-")
        keys = [k for k, _ in iter_tar_samples(out / shard["name"])]
        eps = [k.rsplit("_", 1)[0] for k in keys]
        assert {split_of_ep[e] for e in eps} == {shard["split"]}
        assert shard["episodes"] == list(dict.fromkeys(eps))
    summary = splits_summary(out)
    assert summary["train"]["episodes"] + summary["val"]["episodes"] == 24
    assert summary["train"]["episodes_per_shard_mean"] > 3  # shards of a shuffled group mix its episodes
    assert sum(s["samples"] for s in summary.values()) == report.samples


def test_shuffled_output_is_byte_identical_with_one_or_two_workers(many_raw, shuffled, ray_session, tmp_path):
    """On 2 Ray workers, on 1, and serially: the same bytes."""
    _ingest(many_raw, tmp_path / "a", 2)
    _ingest(many_raw, tmp_path / "b", 1)
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b") == tree_digest(shuffled[1])


def test_validate_catches_a_val_sample_in_a_train_shard(shuffled, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(shuffled[1], out)
    episodes = out / "meta" / "episodes.parquet"
    table = pq.read_table(episodes)
    flipped = ["val" if s == "train" else "train" for s in table.column("split").to_pylist()]
    pq.write_table(table.set_column(table.column_names.index("split"), "split", [flipped]), episodes)
    problems = validate_output(out).problems
    assert any("but the episode's split is" in p.message for p in problems)


def test_spill_drops_every_part_of_a_source_episode_and_reads_back_exactly(tmp_path):
    from trajshard.pipelines.shards import SampleSpill

    spill = SampleSpill(tmp_path)
    samples = [
        ({"__key__": f"{part}_{t:06d}", "a.npy": bytes([t]) * (t + 1), "meta.json": b"{}"}, part, src)
        for part, src in (("x_part00", "x"), ("x_part01", "x"), ("y", "y"))
        for t in range(3)
    ]
    for sample, part, src in samples:
        spill.add(sample, part, src)
    spill.drop_source_episode("x")
    assert [spill.read(i) for i in range(len(spill.index))] == [(s, p) for s, p, src in samples if src == "y"]
    spill.close()
