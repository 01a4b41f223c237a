"""Long episodes cut into spans, one pass-2 task each (pipelines/plan.py): where a span may start,
how an episode is cut, and that the shards hold exactly the samples whole episodes give (serially, and
on 2 Ray workers: the same bytes)."""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import DriverKilled, shared_data, tree_digest
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.pipelines.plan import (
    MAX_CUTS,
    MAX_REDECODE,
    MAX_SPANS,
    OutputConfig,
    cut_ticks,
    episode_spans,
    plan_groups,
)
from trajshard.reports.validation import validate_output
from trajshard.sources.synthetic import write_synthetic_dataset
from trajshard.sources.video import probe_video


@pytest.fixture(scope="module")
def keyed_raw(tmp_path_factory) -> Path:
    """Three 4 s synthetic episodes with a keyframe every second in both cameras."""
    root = tmp_path_factory.mktemp("keyed") / "raw"
    write_synthetic_dataset(root, n_episodes=3, seconds=4.0, seed=3, keyframe_seconds=1.0)
    return root


def members(out: Path) -> dict[str, str]:
    """sha256 of every member of every shard, by member name."""
    found = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                found[m.name] = hashlib.sha256(tf.extractfile(m).read()).hexdigest()
    return found


def manifest(out: Path) -> list[dict]:
    return json.loads((out / "meta" / "manifest.json").read_text())["shards"]


# ------------------------------------------------------------------------------------- where spans start


def test_a_span_starts_where_every_camera_has_an_entry_frame_after_the_previous_tick():
    # GR00T-like: 20 fps, a tick every second frame, keyframes at 0 and 250: one free cut, at tick 125
    frames = np.arange(0, 420, 2)
    assert cut_ticks({"c": frames}, {"c": np.isin(np.arange(420), [0, 250])}, 210) == (125,)
    # G1-like: 30 fps, a tick every third frame, a keyframe every second frame: every tick is free
    frames = np.arange(0, 90, 3)
    assert cut_ticks({"c": frames}, {"c": np.arange(90) % 2 == 0}, 30) == tuple(range(1, 30))
    # no entry information for one camera: no cut at all
    assert cut_ticks({"c": frames, "d": frames}, {"c": np.ones(90, bool), "d": None}, 30) == ()


def test_without_a_free_cut_a_few_frames_may_be_decoded_twice():
    # two cameras whose keyframes never fall between the same two ticks
    front, wrist = np.arange(0, 120, 3), np.arange(0, 120, 3) + 1
    entries = {"f": np.arange(121) % 30 == 0, "w": np.arange(121) % 30 == 5}
    cuts = cut_ticks({"f": front, "w": wrist}, entries, 40)
    assert cuts
    for t in cuts:  # each camera decodes at most MAX_REDECODE frames again
        for idx, entry in ((front, entries["f"]), (wrist, entries["w"])):
            start = np.flatnonzero(entry[: idx[t] + 1])[-1]
            assert idx[t - 1] - start + 1 <= MAX_REDECODE


def test_cut_candidates_are_bounded_per_part():
    frames = np.arange(10_000)
    cuts = cut_ticks({"c": frames}, {"c": np.ones(10_000, bool)}, 10_000)
    assert len(cuts) <= MAX_CUTS and cuts[0] == 1 and cuts[-1] == 9_999


def test_episode_spans_are_even_at_cuts_and_never_tiny():
    assert episode_spans(210, (125,), 32) == [(0, 125), (125, 210)]
    assert episode_spans(93, tuple(range(1, 93)), 32) == [(0, 46), (46, 93)]
    assert episode_spans(63, tuple(range(1, 63)), 32) == [(0, 63)]  # under twice the task size
    assert episode_spans(200, (3, 197), 32) == [(0, 200)]  # every cut would leave a stub
    assert episode_spans(200, (), 32) == [(0, 200)]
    many = episode_spans(10_000, tuple(range(1, 10_000)), 32)  # a long recording: at most MAX_SPANS
    assert len(many) == MAX_SPANS and many[0][0] == 0 and many[-1][1] == 10_000


def test_plan_groups_spans_of_one_episode_are_consecutive_groups_covering_it():
    eps = [("a", 20), ("b", 210), ("c", 20), ("d", 20)]
    groups = plan_groups(eps, OutputConfig(), 32, {"b": (125,), "c": (10,)})
    assert [g.index for g in groups] == list(range(len(groups)))
    assert [(g.episodes, g.span) for g in groups] == [
        (("a",), None),
        (("b",), (0, 125)),
        (("b",), (125, 210)),
        (("c", "d"), None),
    ]
    long_spans = plan_groups(eps, OutputConfig(), 32, {"b": (125,)}, span_steps=106)  # b stays whole
    assert [(g.episodes, g.span) for g in long_spans] == [(("a", "b"), None), (("c", "d"), None)]
    shuffled = plan_groups(eps, OutputConfig(shuffle_window=2), 32, {"b": (125,)})
    assert all(g.span is None for g in shuffled)  # a shuffle window mixes whole episodes


def test_probe_finds_idr_frames_not_every_keyframe(tmp_path):
    """An H.264 I-frame that is no IDR can be flagged a keyframe; a span never starts there."""
    path = tmp_path / "open.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(
            "libx264", rate=30, options={"g": "30", "x264-params": "open-gop=1:no-asm=1", "bframes": "2"}
        )
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(95):
            img = np.full((64, 64, 3), (i * 7) % 255, np.uint8)
            img[(i % 60) : (i % 60) + 4] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    probe = probe_video(str(path))
    with av.open(str(path)) as c:
        keys = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe)
    assert len(keys) > 1  # open GOP: recovery-point I-frames flagged as keyframes
    entries = set(probe.pts[probe.entry].tolist())
    assert entries == {keys[0]}  # only the IDR at the start is a clean entry


def test_real_videos_entry_frames():
    g1 = sorted((shared_data("g1_lerobot_v21") / "videos").rglob("*.mp4"))[0]
    probe = probe_video(str(g1))
    assert probe.entry[::2].all() and not probe.entry[1::2].any()  # LeRobot AV1: a keyframe every 2
    gr00t = sorted((shared_data("gr00t_pnp_lerobot_v20") / "videos").rglob("*.mp4"))[0]
    assert np.flatnonzero(probe_video(str(gr00t)).entry).tolist() == [0, 250]


# ------------------------------------------------------------------------------------- spans end to end


@pytest.fixture(scope="module")
def in_spans(keyed_raw, tmp_path_factory) -> tuple:
    """(report, OUT) of ``keyed_raw`` in 8-step tasks, so in spans, serially (read-only)."""
    out = tmp_path_factory.mktemp("in_spans") / "out"
    return run_ingest(str(keyed_raw), str(out), JobConfig.from_flags(workers=0, task_steps=8)), out


def shard_bytes(out: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((out / "shards").iterdir())]


def test_spans_write_the_samples_whole_episodes_write(keyed_raw, in_spans, tmp_path, ray_session):
    whole = run_ingest(
        str(keyed_raw), str(tmp_path / "whole"), JobConfig.from_flags(workers=0, task_steps=10**6)
    )
    spans, spans_out = in_spans
    assert whole.shards == 1 and spans.shards > 3 * 3  # at least 4 spans an episode
    assert (spans.samples, spans.frames) == (whole.samples, whole.frames)
    assert members(spans_out) == members(tmp_path / "whole")
    assert validate_output(spans_out).ok
    # an episode's spans are consecutive shards, listed in episodes.parquet and the manifest
    shards = manifest(spans_out)
    table = pq.read_table(spans_out / "meta" / "episodes.parquet").to_pylist()
    for row in table:
        mine = [s["name"] for s in shards if row["episode"] in s["episodes"]]
        assert row["shards"] == mine and len(mine) >= 4
        names = [s["name"] for s in shards]
        assert names.index(mine[-1]) - names.index(mine[0]) == len(mine) - 1
    # the spans of an episode run at once on 2 Ray workers: the same shards, byte for byte
    two = run_ingest(str(keyed_raw), str(tmp_path / "two"), JobConfig.from_flags(workers=2, task_steps=8))
    assert two.shards == spans.shards
    assert shard_bytes(tmp_path / "two") == shard_bytes(spans_out)


def test_a_failed_span_quarantines_its_whole_episode(keyed_raw, tmp_path):
    """Frames of the third second of ep_001 fail to decode (real corruption): its other spans were
    written by other tasks, and are dropped; the other episodes are untouched."""
    raw = tmp_path / "raw"
    shutil.copytree(keyed_raw, raw)
    video = raw / "ep_001" / "front.mp4"
    with av.open(str(video)) as c:
        packets = [(p.pts, p.pos, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]
    frame_of = {pts: i for i, pts in enumerate(sorted(p[0] for p in packets))}
    data = bytearray(video.read_bytes())
    for pts, pos, key in packets:
        if 63 <= frame_of[pts] <= 80 and not key:  # 30 fps: 2.1 to 2.7 s
            data[pos : pos + 4] = b"\x7f\xff\xff\xff"  # a NAL length past the packet's end
    video.write_bytes(bytes(data))

    spans = run_ingest(str(raw), str(tmp_path / "spans"), JobConfig.from_flags(workers=0, task_steps=8))
    whole = run_ingest(str(raw), str(tmp_path / "whole"), JobConfig.from_flags(workers=0, task_steps=10**6))
    for report in (spans, whole):
        assert (report.episodes_written, report.episodes_quarantined) == (2, 1)
    quarantine = (tmp_path / "spans" / "meta" / "quarantine.jsonl").read_text().splitlines()
    assert len(quarantine) == 1 and json.loads(quarantine[0])["episode"] == "ep_001"
    assert "front.mp4" in quarantine[0] and "decode failed" in quarantine[0]
    assert members(tmp_path / "spans") == members(tmp_path / "whole")
    assert not any(k.startswith("ep_001") for k in members(tmp_path / "spans"))
    assert all("ep_001" not in s["episodes"] for s in manifest(tmp_path / "spans"))
    assert sorted(p.name for p in (tmp_path / "spans" / "shards").iterdir()) == sorted(
        Path(s["name"]).name for s in manifest(tmp_path / "spans")
    )  # the dropped spans' parts are gone
    assert validate_output(tmp_path / "spans").ok
    assert spans.samples == whole.samples and spans.frames == whole.frames


def test_resume_with_spans_keeps_the_finished_spans_and_writes_the_same_bytes(
    keyed_raw, in_spans, tmp_path, monkeypatch
):
    from trajshard.pipelines.checkpoint import JobState
    from trajshard.pipelines.ingest import IngestError

    cfg = JobConfig.from_flags(workers=0, task_steps=8)  # the config of in_spans, the clean run
    out = tmp_path / "cut"
    real, recorded = JobState.record, []

    def dies_after_three(self, group, result):
        if len(recorded) == 3:
            raise DriverKilled
        recorded.append(group)
        return real(self, group, result)

    monkeypatch.setattr(JobState, "record", dies_after_three)
    with pytest.raises(DriverKilled):
        run_ingest(str(keyed_raw), str(out), cfg)
    monkeypatch.setattr(JobState, "record", real)
    assert any(g.span is not None for g in recorded)
    plan = json.loads((out / ".trajshard" / "plan.json").read_text())
    assert any(g[3] is not None for g in plan["groups"])  # the spans are part of the plan
    with pytest.raises(IngestError, match="unfinished job"):
        run_ingest(str(keyed_raw), str(out), cfg)
    run_ingest(str(keyed_raw), str(out), cfg, resume=True)
    assert tree_digest(out) == tree_digest(in_spans[1])


def test_workers_caps_the_pass2_tasks_that_run_when_ray_has_more_cpus(
    keyed_raw, in_spans, tmp_path, ray_session
):
    """The session's Ray has 2 CPUs: with --workers 1 no two pass-2 tasks run at the same time (the
    extra queued task is only for a Ray that cannot run more than the workers anyway); the shards are
    the ones a serial run writes."""
    import time

    import ray

    started = time.time() * 1e6
    run_ingest(str(keyed_raw), str(tmp_path / "out"), JobConfig.from_flags(workers=1, task_steps=8))
    spans = sorted(
        (float(e["ts"]), float(e["ts"]) + float(e["dur"]))
        for e in ray.timeline()
        # every task runs as ingest._in_worker: pass 1's, then pass 2's, all capped by --workers
        if e.get("name", "").endswith("_in_worker") and e.get("ph") == "X" and float(e["ts"]) >= started
    )
    assert len(spans) >= 8
    assert all(b[0] >= a[1] - 1e3 for a, b in zip(spans, spans[1:], strict=False))  # 1 ms clock slack
    assert shard_bytes(tmp_path / "out") == shard_bytes(in_spans[1])


@pytest.mark.parametrize(("dataset", "task_steps"), [("gr00t_pnp_lerobot_v20", None), ("g1_lerobot_v21", 32)])
def test_real_videos_give_the_same_members_in_spans(dataset, task_steps, tmp_path):
    """GR00T (H.264 with B-frames, cut at its IDR frame 250) and G1 (AV1, cut anywhere): every member
    of every sample the same whether an episode is written in spans or whole."""
    source = str(shared_data(dataset))
    spans = run_ingest(
        source, str(tmp_path / "spans"), JobConfig.from_flags(workers=0, task_steps=task_steps)
    )
    whole = run_ingest(source, str(tmp_path / "whole"), JobConfig.from_flags(workers=0, task_steps=10**6))
    assert spans.shards >= 2 * whole.episodes_written > whole.shards
    assert members(tmp_path / "spans") == members(tmp_path / "whole")
