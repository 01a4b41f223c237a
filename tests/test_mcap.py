"""ROS 2 MCAP recordings written with the real mcap / mcap-ros2-support libraries and message encodings."""

from __future__ import annotations

import numpy as np
import pytest
import webdataset as wds

from tests import groundtruth as gt
from tests.helpers import shard_urls, write_bag
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources import detect_format, open_source


def test_reader_topics_stamps_and_metadata(tmp_path):
    write_bag(tmp_path / "ep_a.mcap")
    assert detect_format(tmp_path) == "mcap"
    ep = open_source(tmp_path, "mcap").load("ep_a")
    assert (
        set(ep.cameras) == {"camera_front", "camera_wrist"} and ep.instructions[0].text == "track the marker"
    )
    assert ep.embodiment == "marker_arm"
    np.testing.assert_allclose(
        ep.streams["proprio"].timestamps[:3], [0, 0.01, 0.02], atol=1e-9
    )  # header stamps
    log = open_source(tmp_path, "mcap", mcap={"stamp": "log"}).load("ep_a")
    assert log.streams["proprio"].timestamps[0] == 0.0  # every stream shifted by the same 7 ms


@pytest.mark.parametrize("video", [False, True])
def test_ingest_aligns_images_with_joint_states(tmp_path, video):
    raw = tmp_path / "bags"
    raw.mkdir()
    write_bag(raw / "ep_a.mcap", video=video)
    out = tmp_path / "out"
    cfg = JobConfig.from_flags(
        workers=0, fps=5, image_size=gt.SIZE, cameras=("camera_front", "side") if video else ()
    )
    run_ingest(str(raw), str(out), cfg, progress=False)
    assert validate_output(out).ok
    samples = list(wds.WebDataset(shard_urls(out), shardshuffle=False).decode("rgb8"))
    assert samples and all(s["meta.json"]["instruction"] == "track the marker" for s in samples)
    for s in samples:  # ticks at 5 Hz fall on frames of the 15 Hz camera: the marker matches the joint state
        assert abs(gt.measure(s["camera_front.jpg"]) - s["state.npy"][0]) <= 1.0
        if video:
            assert abs(gt.measure(s["side.jpg"]) - s["state.npy"][0]) <= 1.5
    if video:
        assert samples[0]["meta.json"]["time"] == pytest.approx(
            0.6, abs=1e-6
        )  # the side camera starts at 0.6 s
