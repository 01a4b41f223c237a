"""Pass 1 hands its aligned episodes to pass 2 (pipelines/handoff.py): the files hold exactly what
pass 2 reads, pass 2 uses them instead of the source, and a missing or damaged one only costs a load."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save

from tests.helpers import make_episode, shared_data, tree_digest, write_bag
from trajshard.config import JobConfig
from trajshard.pipelines import handoff
from trajshard.pipelines.align import AlignConfig
from trajshard.pipelines.align import align as align_parts
from trajshard.pipelines.episode import EpisodeReader, prepare_stages
from trajshard.pipelines.job import SerialExecutor, run_job
from trajshard.pipelines.plan import Group
from trajshard.pipelines.tasks import TaskContext, pass1_batch, pass2_group
from trajshard.schemas.episode import Camera, Episode, Segment
from trajshard.schemas.problems import Problem
from trajshard.sources import SourceSpec, open_source
from trajshard.storage import Store
from trajshard.tokenizers import fit


def load_aligned(source, eid: str, cfg: JobConfig):
    work = EpisodeReader(source, prepare_stages(cfg)).read(eid)
    return work.episode, work.parts


def raw_context(root, cfg: JobConfig, out: str = "", handed: str | None = None, tok: dict | None = None):
    return TaskContext(SourceSpec(str(root), "raw", cfg.align.fps), cfg, out, handed, tok)


def assert_same_arrays(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def assert_handed_over(ep: Episode, parts, got) -> None:
    """``got`` (read back) holds every field of ``ep`` and ``parts`` that pass 2 reads."""
    ep2, parts2 = got
    assert (ep2.episode_id, ep2.embodiment) == (ep.episode_id, ep.embodiment)
    assert list(ep2.cameras) == list(ep.cameras)
    for name, c in ep.cameras.items():
        c2 = ep2.cameras[name]
        assert (c2.name, c2.path, c2.width, c2.height, c2.codec) == (
            c.name,
            c.path,
            c.width,
            c.height,
            c.codec,
        )
        assert_same_arrays(c2.timestamps, c.timestamps)
        assert_same_arrays(c2.pts, c.pts)
        assert (c2.entry is None) == (c.entry is None)
        if c.entry is not None:
            assert_same_arrays(c2.entry, c.entry)
    assert len(parts2) == len(parts)
    for al, al2 in zip(parts, parts2, strict=True):
        assert (al2.episode_id, al2.source_episode, al2.action_source) == (
            al.episode_id,
            al.source_episode,
            al.action_source,
        )
        assert al2.instructions == al.instructions
        for field in ("times", "state", "action"):
            assert_same_arrays(getattr(al2, field), getattr(al, field))
        assert list(al2.frames) == list(al.frames)
        for cam in al.frames:
            assert_same_arrays(al2.frames[cam], al.frames[cam])


def test_an_episode_in_parts_with_subtasks_and_cameras_with_and_without_entries(tmp_path):
    cam = np.concatenate([np.arange(0, 1.0, 0.1), np.arange(2.5, 3.0, 0.1)])  # a dropout: two parts
    segs = (Segment(0.0, 0.6, "reach"), Segment(0.6, 3.0, "grasp the cup ü"))
    ep = make_episode(cam, segments=segs)
    keyframes = np.arange(len(cam)) % 2 == 0
    wrist = Camera(
        "wrist", "/data/ep/wrist.mp4", cam + 0.01, np.arange(len(cam)) * 512, 64, 48, "av1", keyframes
    )
    ep = Episode("ep", ep.instructions, ep.streams, {**ep.cameras, "wrist": wrist}, embodiment="g1")
    parts = align_parts(ep, AlignConfig(fps=10, max_gap=1.0))
    assert len(parts) == 2 and len(set(parts[0].instructions)) == 2

    assert handoff.write(str(tmp_path), "ep", ep, parts)
    assert_handed_over(ep, parts, handoff.read(str(tmp_path), "ep"))
    assert handoff.read(str(tmp_path), "other") is None  # no file
    os.rename(tmp_path / "ep.safetensors", tmp_path / "other.safetensors")
    assert handoff.read(str(tmp_path), "other") is None  # another episode's


def test_damaged_or_unwritable_handoffs_are_none_not_errors(tmp_path):
    ep = make_episode(np.arange(0, 3.0, 0.1))
    parts = align_parts(ep, AlignConfig(fps=10))
    (tmp_path / "a-file").write_bytes(b"")
    assert not handoff.write(str(tmp_path / "a-file"), "ep", ep, parts)  # not a directory
    assert handoff.write(str(tmp_path), "ep", ep, parts)
    data = (tmp_path / "ep.safetensors").read_bytes()
    (tmp_path / "ep.safetensors").write_bytes(data[: len(data) // 2])
    assert handoff.read(str(tmp_path), "ep") is None
    (tmp_path / "ep.safetensors").write_bytes(b"not a safetensors file")
    assert handoff.read(str(tmp_path), "ep") is None
    tensors, meta = handoff._encode("ep", ep, parts)
    doc = json.loads(meta["handoff"])
    (tmp_path / "ep.safetensors").write_bytes(save(tensors, {"handoff": json.dumps({**doc, "version": 0})}))
    assert handoff.read(str(tmp_path), "ep") is None  # another version's
    (tmp_path / "ep.safetensors").write_bytes(save(tensors, meta))
    assert handoff.read(str(tmp_path), "ep") is not None
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary behind


@pytest.mark.parametrize(
    "dataset, fmt",
    [("gr00t_pnp_lerobot_v20", "lerobot"), ("bridge_rlds", "rlds"), ("robosuite_hdf5", "hdf5")],
)
def test_real_sources_round_trip(dataset, fmt, tmp_path):
    source = open_source(str(shared_data(dataset)), fmt, 10.0)
    cfg = JobConfig()
    for eid in source.plan()[0][:2]:
        ep, parts = load_aligned(source, eid, cfg)
        assert handoff.write(str(tmp_path), eid, ep, parts)
        assert_handed_over(ep, parts, handoff.read(str(tmp_path), eid))


def test_mcap_round_trip_with_stored_images_and_a_video(tmp_path):
    (tmp_path / "bags").mkdir()
    write_bag(tmp_path / "bags" / "ep_a.mcap", video=True)
    source = open_source(str(tmp_path / "bags"), "mcap", 5.0)
    cfg = JobConfig.from_flags(fps=5, cameras=("camera_front", "side"))
    ep, parts = load_aligned(source, "ep_a", cfg)
    codecs = {c.codec for c in ep.cameras.values()}
    assert "mcap-image" in codecs and len(codecs) == 2  # stored images, and a video file
    assert handoff.write(str(tmp_path), "ep_a", ep, parts)
    assert_handed_over(ep, parts, handoff.read(str(tmp_path), "ep_a"))


@pytest.fixture
def tokenizer_json(synthetic_raw):
    cfg = JobConfig()
    facts = [f[0] for f in pass1_batch(raw_context(synthetic_raw, cfg), ["ep_000", "ep_001"])]
    stats = facts[0].stats["action"].merge(facts[1].stats["action"])
    return fit("uniform", stats.to_json(facts[0].action_names), 256, sketch=stats).to_json()


def test_pass2_reads_the_handoff_not_the_source(raw_copy, tmp_path, tokenizer_json):
    """A damaged handoff file makes pass 2 load the episode again, the same bytes; with an episode's
    tables gone after pass 1, pass 2 still writes it, from the handoff, the same bytes as before."""
    cfg = JobConfig.from_flags(image_size=64)
    handed = tmp_path / "handoff"
    handed.mkdir()
    pass1_batch(raw_context(raw_copy, cfg, handed=str(handed)), ["ep_000", "ep_001"])
    assert sorted(p.name for p in handed.iterdir()) == ["ep_000.safetensors", "ep_001.safetensors"]

    def run(episodes: tuple[str, ...], out: str, with_handoff: bool):
        group = Group(0, "train", episodes)
        where = str(handed) if with_handoff else None
        return pass2_group(raw_context(raw_copy, cfg, str(tmp_path / out), where, tokenizer_json), group)

    def parts(result) -> list[tuple[str, str]]:
        assert not result.quarantined
        return [(p.name, p.sha256) for p in result.parts]

    both, first = run(("ep_000", "ep_001"), "both", False), run(("ep_000",), "first", False)
    (handed / "ep_001.safetensors").write_bytes(b"damaged")
    assert parts(run(("ep_000", "ep_001"), "damaged", True)) == parts(both)

    for name in ("episode.json", "proprio.parquet", "action.parquet"):
        (raw_copy / "ep_000" / name).unlink()  # its videos stay: pass 2 decodes them
    assert parts(run(("ep_000",), "handed", True)) == parts(first)
    gone = run(("ep_000",), "gone", False)
    assert [q.where for q in gone.quarantined] == ["ep_000"]  # the source alone no longer can


def test_pass1_goes_on_when_it_cannot_hand_over(synthetic_raw, tmp_path):
    (tmp_path / "a-file").write_bytes(b"")
    cfg = JobConfig()
    results = pass1_batch(
        raw_context(synthetic_raw, cfg, handed=str(tmp_path / "a-file")), ["ep_000", "ep_001"]
    )
    assert not any(isinstance(r, Problem) for r in results)
    plain = pass1_batch(raw_context(synthetic_raw, cfg), ["ep_000", "ep_001"])
    assert [[(f.episode, f.steps) for f in r] for r in results] == [
        [(f.episode, f.steps) for f in r] for r in plain
    ]


class Spy(SerialExecutor):
    """The serial executor, recording each pass-2 task's unit and what its handoff directory holds
    when the task starts."""

    def __init__(self) -> None:
        self.calls: list[tuple[Group, str | None, list[str] | None]] = []

    def map(self, fn, context, units, on_result, ahead=False) -> None:
        def look(ctx, unit):
            if fn is pass2_group:
                listing = None if ctx.handoff is None else sorted(os.listdir(ctx.handoff))
                self.calls.append((unit, ctx.handoff, listing))
            return fn(ctx, unit)

        super().map(look, context, units, on_result, ahead)


def test_ingest_hands_over_to_pass2_tasks_and_writes_the_same_bytes_as_without(tmp_path, monkeypatch):
    """Episodes cut into spans (keyframes every second, 8-step tasks), so each is read by several
    pass-2 tasks; every one of them gets the directory where pass 1 left one file per episode."""
    from trajshard.sources.synthetic import write_synthetic_dataset

    src = tmp_path / "raw"
    ids = write_synthetic_dataset(src, n_episodes=3, seconds=4.0, seed=3, keyframe_seconds=1.0)
    cfg = JobConfig.from_flags(task_steps=8, image_size=64)
    spy = Spy()
    run_job(str(src), str(tmp_path / "with"), cfg, spy, progress=False)
    assert len(spy.calls) >= 2 * len(ids)  # spans
    assert {group.span is not None for group, _, _ in spy.calls} == {True}
    assert {str(Path(handed).parent) for _, handed, _ in spy.calls} == {
        str(tmp_path / "with" / handoff.HANDOFF)
    }
    assert {tuple(seen) for _, _, seen in spy.calls} == {tuple(f"{e}.safetensors" for e in ids)}
    assert not (tmp_path / "with" / handoff.HANDOFF).exists()

    monkeypatch.setenv(handoff.HANDOFF_ENV, "0")
    spy.calls.clear()
    run_job(str(src), str(tmp_path / "without"), cfg, spy, progress=False)
    assert {handed for _, handed, _ in spy.calls} == {None}
    assert tree_digest(tmp_path / "with") == tree_digest(tmp_path / "without")


def test_each_run_gets_a_new_directory_and_leftovers_go_even_when_off(tmp_path, monkeypatch):
    store = Store(str(tmp_path / "out"))
    root = tmp_path / "out" / handoff.HANDOFF
    (root / "crashed-run").mkdir(parents=True)
    (root / "crashed-run" / "ep_000.safetensors").write_bytes(b"x")
    first = handoff.prepare(store, str(tmp_path / "src"))
    assert Path(first).parent == root and os.listdir(first) == [] and os.listdir(root) == [Path(first).name]
    second = handoff.prepare(store, str(tmp_path / "src"))
    assert second != first and not Path(first).exists()

    ep = make_episode(np.arange(0, 3.0, 0.1))
    parts = align_parts(ep, AlignConfig(fps=10))
    handoff.remove(store)
    assert not root.exists()
    assert not handoff.write(second, "ep", ep, parts) and not root.exists()  # a late write makes nothing

    handoff.prepare(store, str(tmp_path / "src"))
    assert handoff.prepare(store, "s3://bucket/raw") is None and not root.exists()
    handoff.prepare(store, str(tmp_path / "src"))
    monkeypatch.setenv(handoff.HANDOFF_ENV, "0")
    assert handoff.prepare(store, str(tmp_path / "src")) is None and not root.exists()
