"""Real G1 video: frame times from PTS; 10 Hz and 30 Hz tick counts; max |dt| within half a frame."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.helpers import shared_data
from trajshard.pipelines.align import AlignConfig, align
from trajshard.schemas.episode import Camera, Episode, Segment, Stream
from trajshard.sources.video import probe_video

EPISODES = (28, 29, 30, 31, 59, 82)


def g1_episode(root, n: int) -> Episode:
    table = pq.read_table(root / "data" / "chunk-000" / f"episode_{n:06d}.parquet")
    ts = table.column("timestamp").to_numpy().astype(np.float64)
    state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float32)
    action = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
    video = root / "videos" / "chunk-000" / "observation.images.cam_high" / f"episode_{n:06d}.mp4"
    probe = probe_video(str(video))
    cam = Camera("cam_high", str(video), probe.seconds, probe.pts, probe.width, probe.height, probe.codec)
    return Episode(
        f"g1_{n}",
        (Segment(float("-inf"), float("inf"), "Pick up the yellow bottle on the table."),),
        {"proprio": Stream("proprio", ts, state), "action": Stream("action", ts, action)},
        {"cam_high": cam},
    )


@pytest.mark.parametrize("n", EPISODES)
def test_g1_alignment_at_10_and_30_hz(n):
    root = shared_data("g1_lerobot_v21")
    ep = g1_episode(root, n)
    cam = ep.cameras["cam_high"]
    assert cam.codec in ("libdav1d", "av1") and cam.width == 640
    frames = len(cam.timestamps)
    np.testing.assert_allclose(np.diff(cam.timestamps), 1 / 30, atol=1e-4)  # PTS-derived, 30 fps
    span = min(cam.timestamps[-1], ep.streams["proprio"].timestamps[-1])
    for fps in (10, 30):
        (al,) = align(ep, AlignConfig(fps=fps))
        # the table's timestamps are float32 (9.2 s is 9.19999981 s): the last tick must not be lost
        assert al.steps == int(np.floor(span * fps + 1e-3)) + 1
        assert al.report["cam_high"].max_dt_s <= 0.5 / 30
        assert al.report["cam_high"].dropped_ticks == 0 and al.report["cam_high"].gaps == 0
        assert al.report["cam_high"].rate_hz == pytest.approx(30, rel=1e-3)
    (al30,) = align(ep, AlignConfig(fps=30))
    # one tick per frame where both streams exist (episode 30 has one video frame more than table rows)
    assert al30.steps == min(frames, len(ep.streams["proprio"].timestamps))
    assert al30.report["cam_high"].max_dt_s < 1e-6
