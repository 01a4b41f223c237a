"""Alignment policies: causal video, hold, angles, slerp, gaps, reference clock; property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import make_episode
from trajshard.pipelines import resample
from trajshard.pipelines.align import AlignConfig, align
from trajshard.schemas.episode import Camera, Episode, EpisodeError, Segment, Stream


def one(parts):
    assert len(parts) == 1
    return parts[0]


def test_causal_never_picks_a_future_frame_and_nearest_may():
    cam = np.arange(0.0, 3.0, 1 / 30) + 0.013
    ep = make_episode(cam)
    causal = one(align(ep, AlignConfig(fps=7, video_policy="causal")))
    ft = ep.cameras["front"].timestamps
    assert np.all(ft[causal.frames["front"]] <= causal.times + resample.EPS)
    nearest = one(align(ep, AlignConfig(fps=7)))
    assert np.any(ft[nearest.frames["front"]] > nearest.times)


def test_missing_frame_fail_policy_names_camera_and_time():
    cam = np.concatenate([np.arange(0, 1.0, 0.1), np.arange(1.5, 3.0, 0.1)])
    with pytest.raises(EpisodeError, match=r"front.mp4.*no frame within 0.1000 s of tick t=1.100"):
        align(make_episode(cam), AlignConfig(fps=10, on_missing_frame="fail"))


def test_gap_splits_into_parts_or_quarantines():
    cam = np.concatenate([np.arange(0, 1.0, 0.1), np.arange(2.5, 3.0, 0.1)])  # a 1.6 s dropout
    parts = align(make_episode(cam), AlignConfig(fps=10, max_gap=1.0))
    assert [p.episode_id for p in parts] == ["ep_part00", "ep_part01"]
    assert all(p.source_episode == "ep" for p in parts)
    assert parts[0].times[-1] <= 0.9 + 1e-9 and parts[1].times[0] >= 2.5 - 1e-9
    assert parts[0].report["front"].gaps == 1 and parts[0].report["front"].max_gap_s == pytest.approx(1.6)
    with pytest.raises(EpisodeError, match=r"gap of 1.600 s at t=0.900"):
        align(make_episode(cam), AlignConfig(fps=10, on_gap="quarantine"))


def test_reference_camera_clock_has_one_tick_per_frame():
    cam = np.arange(0.0, 2.0, 1 / 15) + 0.02
    al = one(align(make_episode(cam), AlignConfig(clock="camera:front")))
    np.testing.assert_array_equal(al.times, cam)
    np.testing.assert_array_equal(al.frames["front"], np.arange(len(cam)))
    assert al.report["front"].max_dt_s == 0.0


def episode_with(values: np.ndarray, ts: np.ndarray, kinds_stream="proprio") -> Episode:
    cam = np.arange(ts[0], ts[-1] + 1e-9, 0.05)
    streams = {"proprio": Stream("proprio", ts, values.astype(np.float32))}
    cams = {"c": Camera("c", "c.mp4", cam, np.arange(len(cam)), 8, 8, "h264")}
    return Episode("e", (Segment(float("-inf"), float("inf"), "x"),), streams, cams)


def test_angles_interpolate_across_the_wrap():
    ts = np.array([0.0, 1.0])
    vals = np.array([[np.pi - 0.1], [-np.pi + 0.1]])  # 0.2 rad apart across +-pi
    al = one(align(episode_with(vals, ts), AlignConfig(fps=2, signals={"proprio": {"angles": [0]}})))
    assert abs(abs(al.state[1, 0]) - np.pi) < 1e-3  # the midpoint is at +-pi, not at 0


def test_quaternions_slerp_and_discrete_hold():
    ts = np.array([0.0, 1.0])
    half = np.sqrt(0.5)
    vals = np.array([[0, 0, 0, 1, 0.0], [0, 0, half, half, 1.0]])  # 0 -> 90 degrees about z; a flag
    signals = {"proprio": {"quaternions": [[0, 1, 2, 3]], "discrete": [4]}}
    al = one(align(episode_with(vals, ts), AlignConfig(fps=4, signals=signals)))
    mid = al.state[2, :4].astype(np.float64)  # t = 0.5: 45 degrees about z
    np.testing.assert_allclose(mid, [0, 0, np.sin(np.pi / 8), np.cos(np.pi / 8)], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(al.state[:, :4], axis=1), 1.0, atol=1e-6)
    assert al.state[:, 4].tolist() == [0, 0, 0, 0, 1]


def test_declared_dims_out_of_range_are_an_error():
    ts = np.array([0.0, 1.0])
    signals = {"proprio": {"angles": [7]}}
    with pytest.raises(EpisodeError, match="do not fit"):
        align(episode_with(np.zeros((2, 2)), ts), AlignConfig(fps=4, signals=signals))


def test_hold_action_is_the_command_in_force():
    ep = make_episode(np.arange(0, 3.0, 0.1))
    al = one(align(ep, AlignConfig(fps=10, action_policy="hold")))
    at = ep.streams["action"].timestamps
    held = ep.streams["action"].values[np.searchsorted(at, al.times + 1e-9, side="right") - 1]
    np.testing.assert_array_equal(al.action, held)


def test_delta_derived_actions():
    al = one(align(make_episode(np.arange(0, 3.0, 0.1), action=False), AlignConfig(derive_action="delta")))
    np.testing.assert_allclose(al.action[:-1], al.state[1:] - al.state[:-1], atol=1e-6)
    assert np.all(al.action[-1] == 0)


# --- property tests -----------------------------------------------------------------------------


@st.composite
def recordings(draw):
    rate = draw(st.floats(5.0, 60.0))
    offset = draw(st.floats(-0.5, 0.5))
    jitter = draw(st.floats(0.0, 0.3))
    n = draw(st.integers(8, 200))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    t = offset + np.arange(n) / rate + rng.uniform(-jitter, jitter, n) / rate / 2
    drop = rng.random(n) < draw(st.floats(0.0, 0.3))
    drop[0] = drop[-1] = False
    return np.sort(t[~drop])


@settings(max_examples=60, deadline=None)
@given(frames=recordings(), fps=st.floats(1.0, 40.0), causal=st.booleans(), tol=st.floats(0.005, 0.2))
def test_video_selection_invariants(frames, fps, causal, tol):
    ticks = frames[0] + np.arange(int((frames[-1] - frames[0]) * fps) + 1) / fps
    pick = resample.causal_frames if causal else resample.nearest_frames
    idx, dt = pick(frames, ticks)
    assert np.all(np.diff(ticks) > 0)
    ok = dt <= tol
    if causal:
        # never a frame from the future (beyond the 0.1 ms slack for float32 timestamps)
        assert np.all(frames[idx[ok]] <= ticks[ok] + resample.EPS)
    np.testing.assert_allclose(np.abs(frames[idx[ok]] - ticks[ok]), dt[ok], atol=1e-12)
    if not causal:  # nothing closer exists
        best = np.min(np.abs(frames[None, :] - ticks[:, None]), axis=1)
        np.testing.assert_allclose(dt, best, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(ts=recordings(), a=st.floats(-5, 5), b=st.floats(-5, 5))
def test_linear_is_exact_on_linear_signals_and_hold_on_steps(ts, a, b):
    ts = np.unique(ts)
    vals = (a * ts + b)[:, None]
    ticks = np.linspace(ts[0], ts[-1], 37)
    out, _ = resample.linear(ts, vals, ticks)
    # exact, but for a tick within EPS of a sample, which takes that sample's value
    np.testing.assert_allclose(
        out[:, 0], a * ticks + b, atol=1e-9 * (1 + abs(a) * 10 + abs(b)) + abs(a) * resample.EPS
    )
    steps = np.floor(ts * 3)[:, None]
    held, dt = resample.hold(ts, steps, ticks)
    expected = steps[np.searchsorted(ts, ticks + resample.EPS, side="right") - 1]
    np.testing.assert_array_equal(held, expected)
    assert np.all(dt >= 0)


@settings(max_examples=40, deadline=None)
@given(frames=recordings(), fps=st.floats(2.0, 30.0), causal=st.booleans())
def test_align_output_invariants(frames, fps, causal):
    ep = make_episode(frames, proprio_t=np.linspace(frames[0] - 0.1, frames[-1] + 0.1, 400))
    ep.streams.pop("action")
    tol = 1.5 / 30
    try:
        parts = align(
            ep,
            AlignConfig(
                fps=fps, video_policy="causal" if causal else "nearest", video_tolerance=tol, max_gap=10.0
            ),
        )
    except EpisodeError:
        return  # no tick left: allowed, and reported
    for p in parts:
        assert np.all(np.diff(p.times) > 0)
        ft = ep.cameras["front"].timestamps[p.frames["front"]]
        assert np.all(np.abs(ft - p.times) <= tol + 1e-9)
        if causal:
            assert np.all(ft <= p.times + resample.EPS)


def test_derived_action_is_the_next_tick_even_across_dropped_ticks():
    cam = np.concatenate([np.arange(0, 0.45, 0.1), np.arange(0.8, 3.0, 0.1)])  # no frames 0.5-0.7
    ep = make_episode(cam, action=False)
    al = one(align(ep, AlignConfig(fps=10, max_gap=5.0, video_tolerance=0.05)))
    i = int(np.argmin(np.abs(al.times - 0.4)))
    assert al.times[i + 1] == pytest.approx(0.8)  # ticks 0.5-0.7 were dropped
    np.testing.assert_allclose(al.action[i, 0], 0.5, atol=1e-6)  # the state at 0.5, not at 0.8
