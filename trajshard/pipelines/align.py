"""Resample every stream of an Episode onto one target clock (pure: numpy in, numpy out).

See docs/alignment.md for the policies and why the defaults are what they are. In short:

- clock: ``fixed`` ticks ``start + k / fps`` over the span every required stream covers, or
  ``camera:<name>``, one tick per frame of that camera inside the span;
- video: ``nearest`` frame or ``causal`` (latest frame at or before the tick), within a tolerance
  (default: the camera's median frame interval); a tick without a frame is dropped or fails the episode;
- signals: linear interpolation; declared angles across the wrap; declared quaternions by slerp;
  declared discrete dimensions by zero-order hold;
- actions: ``hold`` (the command in force at the tick) or ``interpolate``; without an action stream,
  the next tick's aligned state (``absolute``) or its difference to this tick's (``delta``);
- gaps longer than ``max_gap`` in any required stream split the episode into parts or quarantine it.

Every stream gets a report: samples, estimated rate, max and p95 of |dt|, ticks dropped, gaps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from trajshard.pipelines import resample
from trajshard.pipelines.actions import gripper_convention
from trajshard.schemas.episode import Episode, EpisodeError, Stream

VIDEO_POLICIES = ("nearest", "causal")
ACTION_POLICIES = ("hold", "interpolate")
DERIVE_ACTIONS = ("absolute", "delta")
MISSING_FRAME = ("drop", "fail")
ON_GAP = ("split", "quarantine")
# Slack when matching the ends of stream spans: float32 timestamps (LeRobot writes them) put 9.2 s at
# 9.19999981 s, which must not cost the last tick.
SPAN_EPS = 1e-4
SPAN_RATIO = 20  # streams of one episode lasting 20x as long as another: a unit error, not a recording


@dataclass(frozen=True)
class SignalKinds:
    """Which dimensions of a numeric stream are not plain continuous signals."""

    angles: tuple[int, ...] = ()
    quaternions: tuple[tuple[int, int, int, int], ...] = ()
    discrete: tuple[int, ...] = ()


@dataclass(frozen=True)
class AlignConfig:
    """The ``align`` section of a job config: the target clock, how each stream meets it, gaps, and
    the action transforms that follow (the gripper convention, see pipelines/actions.py)."""

    fps: float = 10.0
    clock: str = "fixed"
    cameras: tuple[str, ...] = ()
    video_policy: str = "nearest"
    video_tolerance: float | None = None
    on_missing_frame: str = "drop"
    action_policy: str = "hold"
    derive_action: str = "absolute"
    max_gap: float = 1.0
    on_gap: str = "split"
    signals: dict[str, dict[str, list]] = field(default_factory=dict)  # stream -> angles, quaternions, ...
    gripper: dict[str, object] = field(default_factory=dict)

    CHOICES = {
        "video_policy": VIDEO_POLICIES,
        "on_missing_frame": MISSING_FRAME,
        "action_policy": ACTION_POLICIES,
        "derive_action": DERIVE_ACTIONS,
        "on_gap": ON_GAP,
    }

    def kinds_of(self, stream: str) -> SignalKinds:
        spec = self.signals.get(stream, {})
        return SignalKinds(
            angles=tuple(int(i) for i in spec.get("angles", ())),
            quaternions=tuple(tuple(int(i) for i in g) for g in spec.get("quaternions", ())),
            discrete=tuple(int(i) for i in spec.get("discrete", ())),
        )

    @property
    def clock_label(self) -> str:
        """The clock as info.json names it: ``fixed <fps> Hz`` or ``camera:<name>``."""
        return self.clock if self.clock != "fixed" else f"fixed {self.fps} Hz"

    def problems(self) -> list[str]:
        out = [
            f"{name} must be one of {allowed}, got {getattr(self, name)!r}"
            for name, allowed in self.CHOICES.items()
            if getattr(self, name) not in allowed
        ]
        if not self.fps > 0:
            out.append(f"fps must be positive, got {self.fps}")
        if self.clock != "fixed" and not (self.clock.startswith("camera:") and len(self.clock) > 7):
            out.append(f"clock must be 'fixed' or 'camera:<name>', got {self.clock!r}")
        if self.video_tolerance is not None and not self.video_tolerance > 0:
            out.append(f"video_tolerance must be positive seconds, got {self.video_tolerance}")
        if not self.max_gap > 0:
            out.append(f"max_gap must be positive seconds, got {self.max_gap}")
        if self.gripper:
            try:
                gripper_convention(self.gripper)
            except ValueError as exc:
                out.append(str(exc))
        return out + _signal_problems(self.signals)


def _signal_problems(signals: object) -> list[str]:
    if not isinstance(signals, dict):
        return ["signals must map stream names to {angles, quaternions, discrete}"]
    out = []
    for stream, spec in signals.items():
        unknown = sorted(set(spec) - {"angles", "quaternions", "discrete"}) if isinstance(spec, dict) else []
        if not isinstance(spec, dict) or unknown:
            out.append(f"signals.{stream} takes only angles, quaternions, discrete (got {spec!r})")
        elif any(len(g) != 4 for g in spec.get("quaternions", [])):
            out.append(f"signals.{stream}.quaternions: each group must list 4 dimensions")
    return out


@dataclass
class StreamReport:
    samples: int
    rate_hz: float
    max_dt_s: float
    p95_dt_s: float
    dropped_ticks: int
    gaps: int
    max_gap_s: float

    def to_row(self, stream: str) -> dict[str, object]:
        return {"stream": stream, **self.__dict__}


@dataclass
class AlignedEpisode:
    episode_id: str
    times: np.ndarray  # float64 [T] tick times on the episode clock
    state: np.ndarray  # float32 [T, S]
    action: np.ndarray  # float32 [T, D]
    frames: dict[str, np.ndarray]  # camera -> int64 [T] frame index (presentation order)
    instructions: list[str]
    report: dict[str, StreamReport] = field(default_factory=dict)
    source_episode: str = ""
    action_source: str = "action"

    @property
    def steps(self) -> int:
        return len(self.times)

    @property
    def errors(self) -> dict[str, float]:
        return {k: r.max_dt_s for k, r in self.report.items()}

    @property
    def dropped_ticks(self) -> int:
        return sum(r.dropped_ticks for r in self.report.values())


MAX_TICKS = 1_000_000  # ticks of one episode: 27 hours at 10 Hz; the arrays of an episode stay bounded


def target_clock(spans: dict[str, tuple[float, float]], fps: float, episode_id: str) -> np.ndarray:
    """Ticks ``start + k / fps`` over the intersection of all spans."""
    start = max(s for s, _ in spans.values())
    end = min(e for _, e in spans.values())
    if end < start - SPAN_EPS:
        desc = ", ".join(f"{k} [{s:.3f}, {e:.3f}]" for k, (s, e) in sorted(spans.items()))
        raise EpisodeError(episode_id, "streams", f"the streams do not overlap in time: {desc}")
    n = int(np.floor(max(end - start + SPAN_EPS, 0.0) * fps)) + 1
    if n > MAX_TICKS:
        raise EpisodeError(
            episode_id,
            "streams",
            f"the streams span {end - start:.0f} s: {n} ticks at {fps:g} Hz, more than the {MAX_TICKS} "
            "an episode may have (timestamps in the wrong unit, or a recording that is not one episode?)",
        )
    return start + np.arange(n, dtype=np.float64) / fps


def resample_stream(st: Stream, ticks: np.ndarray, kinds: SignalKinds, hold_all: bool = False):
    """Values of a numeric stream at the ticks, each dimension by its kind; returns (values, dt)."""
    ts, vals = st.timestamps, st.values
    if hold_all:
        return resample.hold(ts, vals, ticks)
    out, dt = resample.linear(ts, vals, ticks)
    if kinds.angles:
        cols = list(kinds.angles)
        out[:, cols] = resample.angular(ts, vals[:, cols], ticks)[0]
    for group in kinds.quaternions:
        out[:, list(group)] = resample.slerp(ts, vals[:, list(group)], ticks)[0]
    if kinds.discrete:
        cols = list(kinds.discrete)
        out[:, cols] = resample.hold(ts, vals[:, cols], ticks)[0]
    return out, dt


def _check_kinds(ep: Episode, name: str, kinds: SignalKinds) -> None:
    dims = ep.streams[name].values.shape[1]
    used = list(kinds.angles) + list(kinds.discrete) + [i for g in kinds.quaternions for i in g]
    bad = [i for i in used if not 0 <= i < dims]
    if bad or len(used) != len(set(used)):
        raise EpisodeError(
            ep.episode_id,
            ep.streams[name].source or name,
            f"declared angle/quaternion/discrete dims {used} do not fit {dims} dims once each",
        )


def _rate(ts: np.ndarray) -> float:
    d = np.diff(ts)
    return float(1.0 / np.median(d)) if len(d) and np.median(d) > 0 else 0.0


def align(ep: Episode, cfg: AlignConfig) -> list[AlignedEpisode]:
    """Resample ``ep`` onto the target clock: one AlignedEpisode, or several parts when gaps split it.

    Raises EpisodeError (naming stream and problem) when the episode cannot be aligned."""
    cams, times, files = _streams(ep, cfg)
    ticks = _ticks(ep.episode_id, cfg, cams, times)
    keep, dropped, gap_info, cuts = _gaps(ep.episode_id, cfg, ticks, times, files)
    frames, dts = _frames(ep.episode_id, cfg, cams, ticks, times, files, keep, dropped)
    if not keep.any():
        raise EpisodeError(
            ep.episode_id, "streams", "no tick is left after dropping ticks without frames or in gaps"
        )
    values = {}
    for name, st in ep.streams.items():
        hold_all = name == "action" and cfg.action_policy == "hold"
        values[name], dts[name] = resample_stream(st, ticks, cfg.kinds_of(name), hold_all)
    part_of = (
        np.searchsorted(np.sort(np.array(cuts)), ticks, side="right") if cuts else np.zeros(len(ticks), int)
    )
    part_ids = sorted(set(part_of[keep].tolist()))
    parts = []
    for n, p in enumerate(part_ids):
        sel = keep & (part_of == p)
        report = {
            name: StreamReport(
                samples=len(times[name]),
                rate_hz=_rate(times[name]),
                max_dt_s=float(dts[name][sel].max()),
                p95_dt_s=float(np.percentile(dts[name][sel], 95)),
                dropped_ticks=dropped[name] if n == 0 else 0,
                gaps=gap_info[name][0],
                max_gap_s=gap_info[name][1],
            )
            for name in times
        }
        pid = ep.episode_id if len(part_ids) == 1 else f"{ep.episode_id}_part{n:02d}"
        parts.append(_part(ep, cfg, pid, ticks, sel, values, {c: frames[c][sel] for c in cams}, report))
    return parts


def _streams(ep: Episode, cfg: AlignConfig) -> tuple[list[str], dict[str, np.ndarray], dict[str, str]]:
    """The cameras to align, every stream's and camera's times, and the file each comes from."""
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
    times = {n: s.timestamps for n, s in ep.streams.items()}
    times.update({c: ep.cameras[c].timestamps for c in cams})
    files = {n: s.source or n for n, s in ep.streams.items()}
    files.update({c: ep.cameras[c].path.rsplit("/", 1)[-1] for c in cams})
    for name in ep.streams:
        _check_kinds(ep, name, cfg.kinds_of(name))
    return cams, times, files


def _ticks(eid: str, cfg: AlignConfig, cams: list[str], times: dict[str, np.ndarray]) -> np.ndarray:
    """The target clock's ticks over the span every stream covers."""
    spans = {n: (float(t[0]), float(t[-1])) for n, t in times.items()}
    lengths = {n: e - s for n, (s, e) in spans.items() if e > s}
    if lengths and max(lengths.values()) > SPAN_RATIO * min(lengths.values()) + 1.0:
        desc = ", ".join(f"{k} {v:.3g} s" for k, v in sorted(lengths.items()))
        raise EpisodeError(
            eid,
            "streams",
            f"stream durations disagree by more than {SPAN_RATIO}x ({desc}): timestamps in the wrong unit?",
        )
    if cfg.clock == "fixed":
        return target_clock(spans, cfg.fps, eid)
    ref = cfg.clock.split(":", 1)[1]
    if ref not in cams:
        raise EpisodeError(eid, "cameras", f"clock follows camera {ref!r}, which is not among {cams}")
    target_clock(spans, cfg.fps, eid)  # only to report streams that do not overlap
    lo, hi = max(s for s, _ in spans.values()), min(e for _, e in spans.values())
    return times[ref][(times[ref] >= lo - SPAN_EPS) & (times[ref] <= hi + SPAN_EPS)]


def _gaps(eid: str, cfg: AlignConfig, ticks: np.ndarray, times: dict[str, np.ndarray], files: dict[str, str]):
    """(ticks kept, ticks each stream dropped, (gaps, longest gap) per stream, split times): a gap
    drops the ticks inside it and splits the episode after it, or quarantines it."""
    keep = np.ones(len(ticks), dtype=bool)
    dropped = dict.fromkeys(times, 0)
    gap_info, cuts = {}, []
    for name, t in times.items():
        g = resample.gaps(t, cfg.max_gap)
        gap_info[name] = (len(g), float(np.diff(t)[g].max()) if len(g) else 0.0)
        if len(g) and cfg.on_gap == "quarantine":
            i = g[0]
            raise EpisodeError(
                eid,
                files[name],
                f"stream {name!r} has a gap of {t[i + 1] - t[i]:.3f} s at "
                f"t={t[i]:.3f} s, more than max_gap {cfg.max_gap} s ({len(g)} such gaps)",
            )
        for i in g:
            inside = (ticks > t[i] + 1e-9) & (ticks < t[i + 1] - 1e-9)
            dropped[name] += int((inside & keep).sum())
            keep &= ~inside
            cuts.append(float(t[i + 1]))
    return keep, dropped, gap_info, cuts


def _frames(eid, cfg: AlignConfig, cams, ticks, times, files, keep: np.ndarray, dropped: dict[str, int]):
    """Each camera's frame of each tick and its distance in time; ticks without a frame within the
    tolerance are dropped from ``keep`` (counted in ``dropped``) or fail the episode."""
    frames, dts = {}, {}
    for c in cams:
        ft = times[c]
        pick = resample.causal_frames if cfg.video_policy == "causal" else resample.nearest_frames
        idx, dt = pick(ft, ticks)
        tol = cfg.video_tolerance
        if tol is None:
            tol = float(np.median(np.diff(ft))) if len(ft) > 1 else 1.0 / cfg.fps
        bad = keep & (dt > tol + 1e-9)
        if bad.any() and cfg.on_missing_frame == "fail":
            k = int(np.argmax(bad))
            raise EpisodeError(
                eid,
                files[c],
                f"camera {c!r}: no frame within {tol:.4f} s of tick "
                f"t={ticks[k]:.3f} s ({int(bad.sum())} such ticks; policy {cfg.video_policy})",
            )
        dropped[c] += int(bad.sum())
        keep &= ~bad
        frames[c], dts[c] = idx, dt
    return frames, dts


def _part(ep: Episode, cfg: AlignConfig, pid: str, ticks, sel, values, frames, report) -> AlignedEpisode:
    """One part: the selected ticks' states, actions (or actions derived from the states), frames."""
    state = values["proprio"][sel]
    if "action" in values:
        action, source = values["action"][sel], f"action ({cfg.action_policy})"
    else:
        # the next tick's state on the full clock, so a dropped tick never makes a later state
        # pose as the next one
        full = values["proprio"]
        nxt = np.concatenate([full[1:], full[-1:]], axis=0)[sel]
        action = nxt if cfg.derive_action == "absolute" else nxt - state
        source = f"derived from proprio: next aligned state ({cfg.derive_action})"
    return AlignedEpisode(
        episode_id=pid,
        times=ticks[sel],
        state=state.astype(np.float32),
        action=action.astype(np.float32),
        frames=frames,
        instructions=ep.instruction_at(ticks[sel]),
        report=report,
        source_episode=ep.episode_id,
        action_source=source,
    )
