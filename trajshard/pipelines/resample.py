"""Resamplers: one stream's samples onto tick times (pure numpy; the policies of docs/alignment.md).

Each returns the values at the ticks and ``dt``, the per-tick distance in seconds between the tick
and the real sample(s) the value came from, which feeds the alignment report.
"""

from __future__ import annotations

import numpy as np

# Timestamp quantization slack for "at or before the tick": float32 clocks (LeRobot) put 0.3 s at
# 0.30000001 s, which must still count as the sample at 0.3 s.
EPS = 1e-4


def _nearest_gap(ts: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(ts, ticks), 1, max(len(ts) - 1, 1))
    if len(ts) == 1:
        return np.abs(ticks - ts[0])
    return np.minimum(np.abs(ts[idx] - ticks), np.abs(ticks - ts[idx - 1]))


def snap(ts: np.ndarray, values: np.ndarray, ticks: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Where a tick is within EPS of a sample, take that sample's value exactly (so values reach the
    shards bit-exact when the clock runs at the source's own rate, float32 timestamps included)."""
    right = np.clip(np.searchsorted(ts, ticks), 0, len(ts) - 1)
    left = np.clip(right - 1, 0, len(ts) - 1)
    near = np.where(np.abs(ts[left] - ticks) <= np.abs(ts[right] - ticks), left, right)
    on = np.abs(ts[near] - ticks) <= EPS
    out[on] = values[near[on]]
    return out


def linear(ts: np.ndarray, values: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation per column; exact on linear signals; a tick on a sample takes it exactly."""
    out = np.empty((len(ticks), values.shape[1]), dtype=np.float64)
    for d in range(values.shape[1]):
        out[:, d] = np.interp(ticks, ts, values[:, d].astype(np.float64))
    return snap(ts, values, ticks, out), _nearest_gap(ts, ticks)


def angular(ts: np.ndarray, values: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles in radians: interpolate along the short way across the +-pi wrap, result in [-pi, pi)."""
    unwrapped = np.unwrap(values.astype(np.float64), axis=0)
    out, dt = linear(ts, unwrapped, ticks)
    return snap(ts, values, ticks, (out + np.pi) % (2 * np.pi) - np.pi), dt


def hold(ts: np.ndarray, values: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-order hold: the latest sample at or before each tick (the command in force)."""
    idx = np.clip(np.searchsorted(ts, ticks + EPS, side="right") - 1, 0, len(ts) - 1)
    return values[idx].astype(np.float64), np.abs(ticks - ts[idx])


def slerp(ts: np.ndarray, quats: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spherical linear interpolation of unit quaternions [N, 4] (any fixed component order)."""
    q = quats.astype(np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    i = np.clip(np.searchsorted(ts, ticks, side="right") - 1, 0, len(ts) - 2)
    if len(ts) == 1:
        return np.repeat(q, len(ticks), axis=0), np.abs(ticks - ts[0])
    u = np.clip((ticks - ts[i]) / (ts[i + 1] - ts[i]), 0.0, 1.0)[:, None]
    a, b = q[i], q[i + 1]
    dot = np.sum(a * b, axis=1, keepdims=True)
    b = np.where(dot < 0, -b, b)  # the short way round
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    small = sin < 1e-6
    wa = np.where(small, 1 - u, np.sin((1 - u) * theta) / np.where(small, 1, sin))
    wb = np.where(small, u, np.sin(u * theta) / np.where(small, 1, sin))
    out = wa * a + wb * b
    return snap(ts, q, ticks, out / np.linalg.norm(out, axis=1, keepdims=True)), _nearest_gap(ts, ticks)


def nearest_frames(frame_times: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest frame to each tick (ties go to the earlier frame) and |frame time - tick|."""
    right = np.clip(np.searchsorted(frame_times, ticks, side="left"), 0, len(frame_times) - 1)
    left = np.clip(right - 1, 0, len(frame_times) - 1)
    take_left = np.abs(ticks - frame_times[left]) <= np.abs(frame_times[right] - ticks)
    idx = np.where(take_left, left, right).astype(np.int64)
    return idx, np.abs(frame_times[idx] - ticks)


def causal_frames(frame_times: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the latest frame at or before each tick (never a frame from the future).

    A tick before the first frame gets index -1 and an infinite distance (no frame can serve it)."""
    idx = np.searchsorted(frame_times, ticks + EPS, side="right") - 1
    dt = np.where(idx >= 0, np.abs(ticks - frame_times[np.maximum(idx, 0)]), np.inf)
    return idx.astype(np.int64), dt


def gaps(ts: np.ndarray, max_gap: float) -> np.ndarray:
    """Indices i where ``ts[i + 1] - ts[i] > max_gap``."""
    return np.nonzero(np.diff(ts) > max_gap)[0]
