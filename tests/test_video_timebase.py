"""Frame times from PTS in presentation order: B-frames (real GR00T H.264), a non-zero first PTS."""

from __future__ import annotations

import numpy as np
import pytest

from tests import groundtruth as gt
from tests.helpers import shared_data
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


@pytest.mark.parametrize("step", [3, 2, 7])
def test_sparse_decode_gives_the_frames_a_full_decode_gives(step):
    """G1 (AV1, a keyframe every 2 frames): only the packets the needed frames depend on are decoded,
    and the needed frames are pixel-identical to a full decode."""
    root = shared_data("g1_lerobot_v21")
    video = str(root / "videos" / "chunk-000" / "observation.images.cam_high" / "episode_000029.mp4")
    probe = probe_video(video)
    needed = probe.pts[::step]
    full = {f.pts: f.to_ndarray(format="rgb24") for f in decode_frames(video)}
    sparse = list(decode_frames(video, None, needed))
    assert len(sparse) < len(full)  # fewer frames decoded
    got = {f.pts: f.to_ndarray(format="rgb24") for f in sparse}
    for p in needed:
        assert np.array_equal(got[int(p)], full[int(p)])


def test_sparse_decode_with_b_frames_keeps_every_needed_frame():
    """GR00T (H.264 with B-frames): no packet is dropped, only unneeded non-reference frames are skipped
    (pixels checked in test_skip_nonref.py), so every needed frame comes out, in presentation order."""
    root = shared_data("gr00t_pnp_lerobot_v20")
    video = str(root / "videos" / "chunk-000" / "observation.images.ego_view" / "episode_000000.mp4")
    probe = probe_video(video)
    decoded = [int(f.pts) for f in decode_frames(video, None, probe.pts[::4])]
    assert decoded == sorted(decoded)
    assert {int(p) for p in probe.pts[::4]} <= set(decoded)
