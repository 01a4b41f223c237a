"""Alignment onto a target clock: span, interpolation, nearest frames, tolerance, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import make_episode
from trajshard.pipelines.align import AlignConfig, target_clock
from trajshard.pipelines.align import align as align_parts
from trajshard.pipelines.resample import linear, nearest_frames
from trajshard.schemas.episode import EpisodeError, Segment


def align(ep, cfg):
    parts = align_parts(ep, cfg)
    assert len(parts) == 1
    return parts[0]


def test_target_clock_covers_intersection():
    ticks = target_clock({"a": (0.0, 2.0), "b": (0.25, 3.0)}, 10.0, "ep")
    assert ticks[0] == 0.25 and ticks[-1] <= 2.0 + 1e-12 and len(ticks) == 18
    with pytest.raises(EpisodeError, match="do not overlap"):
        target_clock({"a": (0.0, 1.0), "b": (2.0, 3.0)}, 10.0, "ep")


def test_interpolate_is_linear_and_reports_gap():
    ts = np.array([0.0, 1.0, 2.0])
    vals, dt = linear(ts, np.array([[0.0], [10.0], [0.0]]), np.array([0.5, 1.0, 1.75]))
    np.testing.assert_allclose(vals[:, 0], [5.0, 10.0, 2.5])
    np.testing.assert_allclose(dt, [0.5, 0.0, 0.25])


def test_nearest_frames_prefers_earlier_on_ties():
    idx, err = nearest_frames(np.array([0.0, 0.1, 0.2]), np.array([0.05, 0.16, 0.5]))
    assert idx.tolist() == [0, 2, 2]
    np.testing.assert_allclose(err, [0.05, 0.04, 0.3])


def test_align_values_frames_and_errors():
    cam = np.arange(0, 3.0, 1 / 30)
    al = align(make_episode(cam), AlignConfig(fps=10, action_policy="interpolate"))
    assert al.times[0] == 0.0 and al.steps == 30
    np.testing.assert_allclose(al.state[:, 0], al.times, atol=1e-6)
    np.testing.assert_allclose(al.action[:, 1], -al.times, atol=1e-6)
    np.testing.assert_array_equal(al.frames["front"], np.arange(0, 90, 3))
    assert al.errors["front"] < 1e-9 and al.dropped_ticks == 0
    assert set(al.errors) == {"front", "proprio", "action"}


def test_ticks_without_frame_within_tolerance_are_dropped():
    cam = np.concatenate([np.arange(0, 1.0, 0.1), np.arange(2.0, 3.0, 0.1)])  # a one-second gap
    al = align(make_episode(cam), AlignConfig(fps=10, max_gap=5.0))
    assert al.dropped_ticks == 8 and al.steps == 22  # ticks 1.1 .. 1.8 have no frame within 0.1 s
    assert al.report["front"].dropped_ticks == 8 and al.report["front"].gaps == 0
    assert al.errors["front"] <= 0.1 + 1e-9


def test_missing_action_is_derived_from_next_state():
    al = align(make_episode(np.arange(0, 3.0, 0.1), action=False), AlignConfig(fps=10))
    np.testing.assert_array_equal(al.action[:-1], al.state[1:])
    np.testing.assert_array_equal(al.action[-1], al.state[-1])
    assert al.action_source.startswith("derived")


def test_time_ranged_instructions_per_tick():
    segs = (Segment(0.0, 1.5, "reach"), Segment(1.5, 3.0, "grasp"))
    al = align(make_episode(np.arange(0, 3.0, 0.1), segments=segs), AlignConfig(fps=10))
    assert al.instructions[0] == "reach" and al.instructions[14] == "reach" and al.instructions[15] == "grasp"


def test_unknown_camera_is_an_error():
    with pytest.raises(EpisodeError, match="configured cameras"):
        align(make_episode(np.arange(0, 3.0, 0.1)), AlignConfig(cameras=("wrist",)))


def test_a_clock_of_more_ticks_than_an_episode_may_have_is_refused_before_allocating():
    year = 365 * 24 * 3600.0
    with pytest.raises(EpisodeError, match=r"more than the 1000000 an episode may have"):
        target_clock({"a": (0.0, year), "b": (0.0, year)}, 10.0, "ep")
    assert len(target_clock({"a": (0.0, 99_999.9)}, 10.0, "ep")) == 1_000_000
