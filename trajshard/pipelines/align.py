"""Resample every stream of an Episode onto one target clock (pure: numpy in, numpy out).

The target clock ticks at ``fps`` over the span all required streams cover (the latest start to
the earliest end). Per stream policy (the alignment issue adds more; the interface is ready):

- video: the nearest frame to each tick, within a tolerance (default: the camera's median frame
  interval); a tick where some camera has no frame within tolerance is dropped and counted;
- continuous signals (state, action): linear interpolation per dimension.

When the episode has no action stream, the action at a tick is the next tick's aligned state (an
absolute target), and the last tick holds its own state.

The alignment error of each stream is recorded: for video the time between tick and chosen frame,
for signals the time from the tick to the nearest real sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trajshard.schemas.episode import Episode, EpisodeError


@dataclass(frozen=True)
class AlignConfig:
    fps: float = 10.0
    cameras: tuple[str, ...] = ()  # empty: every camera of the episode
    video_tolerance: float | None = None  # seconds; None: the camera's median frame interval


@dataclass
class AlignedEpisode:
    episode_id: str
    times: np.ndarray  # float64 [T] tick times on the episode clock
    state: np.ndarray  # float32 [T, S]
    action: np.ndarray  # float32 [T, D]
    frames: dict[str, np.ndarray]  # camera -> int64 [T] frame index (presentation order)
    instructions: list[str]
    errors: dict[str, float] = field(default_factory=dict)  # stream -> max alignment error (s)
    dropped_ticks: int = 0
    action_source: str = "action"

    @property
    def steps(self) -> int:
        return len(self.times)


def target_clock(spans: dict[str, tuple[float, float]], fps: float, episode_id: str) -> np.ndarray:
    """Ticks ``start + k / fps`` over the intersection of all spans."""
    start = max(s for s, _ in spans.values())
    end = min(e for _, e in spans.values())
    if end < start:
        desc = ", ".join(f"{k} [{s:.3f}, {e:.3f}]" for k, (s, e) in sorted(spans.items()))
        raise EpisodeError(episode_id, "streams", f"the streams do not overlap in time: {desc}")
    n = int(np.floor((end - start) * fps + 1e-9)) + 1
    return start + np.arange(n, dtype=np.float64) / fps


def interpolate(ts: np.ndarray, values: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, float]:
    """Linear interpolation of each column at ``ticks``; returns (values, max time to nearest sample)."""
    out = np.empty((len(ticks), values.shape[1]), dtype=np.float32)
    for d in range(values.shape[1]):
        out[:, d] = np.interp(ticks, ts, values[:, d].astype(np.float64))
    idx = np.clip(np.searchsorted(ts, ticks), 1, len(ts) - 1)
    gap = np.minimum(np.abs(ts[idx] - ticks), np.abs(ticks - ts[idx - 1]))
    return out, float(gap.max(initial=0.0))


def nearest_frames(frame_times: np.ndarray, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest frame to each tick (ties go to the earlier frame) and its distance."""
    right = np.clip(np.searchsorted(frame_times, ticks, side="left"), 0, len(frame_times) - 1)
    left = np.clip(right - 1, 0, len(frame_times) - 1)
    take_left = np.abs(ticks - frame_times[left]) <= np.abs(frame_times[right] - ticks)
    idx = np.where(take_left, left, right)
    return idx.astype(np.int64), np.abs(frame_times[idx] - ticks)


def align(ep: Episode, cfg: AlignConfig) -> AlignedEpisode:
    """Resample ``ep`` onto the target clock; raise EpisodeError when it cannot be done."""
    eid = ep.episode_id
    if "proprio" not in ep.streams:
        raise EpisodeError(eid, "proprio", "no proprio stream")
    cams = list(cfg.cameras) or sorted(ep.cameras)
    missing = [c for c in cams if c not in ep.cameras]
    if missing:
        raise EpisodeError(
            eid,
            "cameras",
            f"configured cameras {missing} are not in the episode (it has {sorted(ep.cameras)})",
        )
    if not cams:
        raise EpisodeError(eid, "cameras", "the episode has no camera")
    spans = {name: (float(s.timestamps[0]), float(s.timestamps[-1])) for name, s in ep.streams.items()}
    spans.update({c: (float(ep.cameras[c].timestamps[0]), float(ep.cameras[c].timestamps[-1])) for c in cams})
    ticks = target_clock(spans, cfg.fps, eid)

    frames, keep, errors = {}, np.ones(len(ticks), dtype=bool), {}
    for c in cams:
        ft = ep.cameras[c].timestamps
        idx, err = nearest_frames(ft, ticks)
        tol = cfg.video_tolerance
        if tol is None:
            tol = float(np.median(np.diff(ft))) if len(ft) > 1 else 1.0 / cfg.fps
        keep &= err <= tol + 1e-9
        frames[c] = idx
        errors[c] = err
    if not keep.any():
        raise EpisodeError(eid, "cameras", "no tick has a video frame within tolerance from every camera")
    ticks = ticks[keep]
    frames = {c: idx[keep] for c, idx in frames.items()}
    errors = {c: float(err[keep].max()) for c, err in errors.items()}

    proprio = ep.streams["proprio"]
    state, errors["proprio"] = interpolate(proprio.timestamps, proprio.values, ticks)
    if "action" in ep.streams:
        act = ep.streams["action"]
        action, errors["action"] = interpolate(act.timestamps, act.values, ticks)
        source = "action"
    else:
        action = np.concatenate([state[1:], state[-1:]], axis=0)
        source = "derived: next aligned proprio (absolute)"
    return AlignedEpisode(
        episode_id=eid,
        times=ticks,
        state=state,
        action=action,
        frames=frames,
        instructions=ep.instruction_at(ticks),
        errors=errors,
        dropped_ticks=int((~keep).sum()),
        action_source=source,
    )
