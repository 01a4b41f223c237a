"""Ground truth end to end: the marker measured in every written JPEG matches state.npy within 1 pixel."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from tests import groundtruth as gt
from tests.helpers import shard_urls
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest

OFFSET = 0.137
SECONDS = 4.0


def samples_by_episode(out):
    by_ep = {}
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode("rgb8"):
        by_ep.setdefault(s["meta.json"]["episode"], []).append(s)
    return by_ep


def alignment(out, episode, stream):
    table = pq.read_table(out / "meta" / "episodes.parquet").to_pylist()
    row = next(r for r in table if r["episode"] == episode)
    return next(a for a in row["alignment"] if a["stream"] == stream)


def test_fixed_clock_with_offset_and_dropped_frames(tmp_path):
    raw = tmp_path / "raw"
    cfr = np.arange(0, SECONDS - OFFSET, 1 / 30)
    gt.write_episode(raw, "cfr", cfr, OFFSET, SECONDS, seed=1)
    rng = np.random.default_rng(5)
    dropped = np.sort(rng.choice(np.arange(1, len(cfr) - 1), size=round(0.05 * len(cfr)), replace=False))
    gt.write_episode(raw, "drops", np.delete(cfr, dropped), OFFSET, SECONDS, seed=2)

    out = tmp_path / "out"
    cfg = JobConfig.from_flags(workers=0, fps=10, video_tolerance=0.01, on_missing_frame="drop")
    run_ingest(str(raw), str(out), cfg, progress=False)
    by_ep = samples_by_episode(out)

    # every tick of the 30 fps camera falls on a frame: ticks start at the camera's true start (0.137 s)
    ticks = OFFSET + np.arange(int(np.floor((cfr[-1]) * 10 + 1e-9)) + 1) / 10
    assert len(by_ep["cfr"]) == len(ticks)
    assert by_ep["cfr"][0]["meta.json"]["time"] == pytest.approx(OFFSET, abs=1e-3)
    # the ticks whose frame was dropped have no frame within 10 ms: dropped and counted
    lost = {int(round(cfr[i] * 10)) for i in dropped if abs(cfr[i] * 10 - round(cfr[i] * 10)) < 1e-6}
    assert len(by_ep["drops"]) == len(ticks) - len(lost)
    assert alignment(out, "drops", "cam")["dropped_ticks"] == len(lost) and len(lost) >= 1
    assert alignment(out, "cfr", "cam")["max_dt_s"] <= 0.0006  # ms rounding of the mkv timestamps

    for ep in ("cfr", "drops"):
        for s in by_ep[ep]:
            seen = gt.measure(s["cam.jpg"])
            assert abs(seen - s["state.npy"][0]) <= 1.0, (ep, s["meta.json"]["step"], seen, s["state.npy"][0])


def test_variable_frame_rate_follows_the_camera(tmp_path):
    raw = tmp_path / "raw"
    rng = np.random.default_rng(3)
    vfr = np.cumsum(rng.uniform(0.02, 0.05, 120))
    vfr = vfr[vfr < SECONDS - OFFSET - 0.01] - vfr[0]
    gt.write_episode(raw, "vfr", vfr, OFFSET, SECONDS, seed=4)
    out = tmp_path / "out"
    run_ingest(str(raw), str(out), JobConfig.from_flags(workers=0, clock="camera:cam"), progress=False)
    samples = samples_by_episode(out)["vfr"]
    assert len(samples) == len(vfr)  # one tick per frame
    times = np.array([s["meta.json"]["time"] for s in samples])
    np.testing.assert_allclose(times, np.round(vfr * 1000) / 1000 + OFFSET, atol=1e-9)
    for s in samples:
        assert abs(gt.measure(s["cam.jpg"]) - s["state.npy"][0]) <= 1.0
    assert alignment(out, "vfr", "cam")["max_dt_s"] == 0.0
