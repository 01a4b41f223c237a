"""``probe_video(path, window)``: the frames of one stretch of a file that holds many episodes (LeRobot
v3), the same as probing the whole file and selecting them, while reading only that stretch; and a v3
source reads each data file once for consecutive episodes."""

from __future__ import annotations

import av
import numpy as np
import pytest

import trajshard.sources.lerobot as lerobot
from tests.lerobot_v3 import write_v3
from tests.videos import encode
from trajshard.sources.video import _window, open_video, probe_video

FILES = [  # (name, encoder, options): B-frames with short and long groups, and AV1, VP9 without
    ("x264-b3-g15.mp4", "libx264", {"bf": "3", "g": "15"}),
    ("x264-b2-g40-open.mkv", "libx264", {"bf": "2", "g": "40", "x264-params": "open-gop=1"}),
    ("svtav1-g12.mp4", "libsvtav1", {"g": "12"}),
    ("vp9-g10.webm", "libvpx-vp9", {"g": "10"}),
]


def windows(seconds: np.ndarray) -> list[tuple[float, float]]:
    """Stretches starting on and between keyframes, at the first and last frames, and the whole file."""
    t = seconds
    n = len(t)
    picks = [(0, n), (0, 10), (n - 7, n), (15, 30), (16, 29), (31, 44), (40, 41), (3, 60)]
    out = [(float(t[a]), float(t[b]) if b < n else float(t[-1]) + 1.0) for a, b in picks]
    return out + [(float(t[20]) + 0.001, float(t[33]) - 0.001)]  # between frames


@pytest.mark.parametrize("name,codec,options", FILES, ids=[f[0] for f in FILES])
def test_window_probe_equals_the_whole_file_probe_selected(tmp_path, name, codec, options):
    if codec not in av.codecs_available:
        pytest.skip(f"{codec} is not in this PyAV build")
    path = tmp_path / name
    encode(path, codec, None, options, "yuv420p", n=75)
    whole = probe_video(str(path))
    for start, end in windows(whole.seconds):
        sel = (whole.seconds >= start - 1e-6) & (whole.seconds < end - 1e-6)
        part = probe_video(str(path), (start, end))
        assert part.pts.tolist() == whole.pts[sel].tolist(), (start, end)
        assert part.entry.tolist() == whole.entry[sel].tolist(), (start, end)
        assert (part.time_base, part.width, part.height, part.codec) == (
            whole.time_base,
            whole.width,
            whole.height,
            whole.codec,
        )


def test_window_probe_reads_only_its_stretch(tmp_path):
    path = tmp_path / "long.mp4"
    encode(path, "libx264", None, {"bf": "3", "g": "15"}, "yuv420p", n=150)
    whole = probe_video(str(path))
    start, end = float(whole.seconds[90]), float(whole.seconds[105])
    with open_video(str(path)) as container:
        read = sum(1 for p in _window(container, container.streams.video[0], (start, end)) if p.size)
    assert 15 <= read <= 15 + 15 + 4  # from the keyframe at frame 90 to a few B-frames past 105, not 150


def test_window_probe_without_frames_says_which_stretch(tmp_path):
    path = tmp_path / "short.mp4"
    encode(path, "libx264", None, {"g": "15"}, "yuv420p", n=30)
    with pytest.raises(Exception, match="no frames from 9.000 to 10.000 s"):
        probe_video(str(path), (9.0, 10.0))


def test_v3_reads_each_data_file_once_for_consecutive_episodes(tmp_path, monkeypatch):
    write_v3(tmp_path, lengths=(30, 45, 24))
    reads: list[str] = []
    real = lerobot.read_table

    def counting(path: str):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(lerobot, "read_table", counting)
    source = lerobot.LeRobotSource(tmp_path)
    steps = [len(source.load(eid).streams["proprio"].timestamps) for eid in source.plan()[0]]
    assert steps == [30, 45, 24]
    assert len(reads) == 1  # the three episodes share one data file
