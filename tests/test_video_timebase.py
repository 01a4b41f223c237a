"""Frame times from PTS in presentation order: B-frames (real GR00T H.264), a non-zero first PTS."""

from __future__ import annotations

import numpy as np

from tests import groundtruth as gt
from tests.conftest import shared_data
from trajshard.sources.raw import RawSource
from trajshard.sources.video import decode_frames, probe_video


def test_b_frames_give_presentation_order_times():
    root = shared_data("gr00t_pnp_lerobot_v20")
    video = root / "videos" / "chunk-000" / "observation.images.ego_view" / "episode_000000.mp4"
    probe = probe_video(str(video))
    decoded = np.array([f.pts for f in decode_frames(str(video))])
    np.testing.assert_array_equal(decoded, probe.pts)  # what the decoder shows, in its order
    assert np.all(np.diff(probe.seconds) > 0)
    np.testing.assert_allclose(np.diff(probe.seconds), 1 / 20, atol=1e-3)


def test_non_zero_first_pts_and_offset(tmp_path):
    pts = 0.5 + np.arange(30) / 30
    gt.write_episode(tmp_path, "late", pts, offset=-0.25, seconds=2.0)
    cam = RawSource(tmp_path).load("late").cameras["cam"]
    np.testing.assert_allclose(cam.timestamps, np.round(pts * 1000) / 1000 - 0.25, atol=1e-9)
