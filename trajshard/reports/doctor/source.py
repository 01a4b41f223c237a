"""Episode views of a source: its own samples at their own times (not resampled), each episode loaded
and aligned as ingest would (one that fails is unusable), and the frames of an evenly spaced sample of
episodes decoded, a few per second, one at a time."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from trajshard.config import JobConfig
from trajshard.pipelines.align import align
from trajshard.reports.doctor.checks import is_placeholder
from trajshard.reports.doctor.frames import probe_frame
from trajshard.reports.doctor.views import (
    CameraView,
    EpisodeView,
    Facts,
    FrameProbe,
    Limits,
    Series,
    evenly_spaced,
)
from trajshard.schemas.episode import Camera, Episode, EpisodeError
from trajshard.sources import SourceSpec, camera_frames, checked_plan


def declared(source) -> tuple[list[str] | None, list[str]]:
    """What the source says of itself: its task list (when it has one) and its notes, with a note for
    each placeholder word in the task list."""
    tasks = getattr(source, "tasks", None)
    texts = [str(t) for t in tasks.values()] if isinstance(tasks, dict) else None
    notes = list(getattr(source, "notes", []))
    for text in texts or []:
        if is_placeholder(text):
            notes.append(
                f"the source's task list holds {text.strip()!r}, a placeholder word, not an instruction"
            )
    return texts, notes


def source_facts(source, cfg: JobConfig) -> Facts:
    tasks, notes = declared(source)
    clock = cfg.align.clock
    return Facts(
        "source",
        target_hz=cfg.align.fps if clock == "fixed" else None,
        clock_camera=None if clock == "fixed" else clock.split(":", 1)[1],
        gripper=dict(cfg.align.gripper) or None,
        declared_tasks=tasks,
        notes=notes,
    )


def source_views(path: str, cfg: JobConfig, limits: Limits) -> tuple[Facts, Iterator[EpisodeView]]:
    """The facts of the source and its episode views (a generator: ``facts.unusable`` fills as it runs).
    Frames are looked at in ``image_episodes`` episodes: at evenly spaced places of the plan, each the
    first usable episode from there."""
    _, source = SourceSpec.of(path, cfg.source, cfg.align.fps)
    ids, rejected = checked_plan(source)
    facts = source_facts(source, cfg)
    facts.episodes_planned = len(ids) + len(rejected)
    facts.unusable = list(rejected)
    slots = set(evenly_spaced(len(ids), limits.image_episodes))

    def views() -> Iterator[EpisodeView]:
        pending = False
        for i, eid in enumerate(ids):
            pending |= i in slots
            try:
                ep = source.load(eid)
                align(ep, cfg.align)  # what ingest would quarantine is unusable here too
                view = episode_view(ep, source, cfg, limits, sample=pending)
            except EpisodeError as exc:
                facts.unusable.append(exc.problem)
                continue
            pending = pending and not view.sampled
            yield view

    return facts, views()


def _rate(times: np.ndarray) -> float:
    d = np.diff(times)
    return float(1.0 / np.median(d)) if len(d) and np.median(d) > 0 else 0.0


def episode_view(ep: Episode, source, cfg: JobConfig, limits: Limits, sample: bool) -> EpisodeView:
    streams = {
        name: Series(st.timestamps, st.values, st.names)
        for key, name in (("proprio", "state"), ("action", "action"))
        if (st := ep.streams.get(key)) is not None
    }
    times = {k: s.timestamps for k, s in ep.streams.items() if k in ("proprio", "action")}
    cams = list(cfg.align.cameras) or sorted(ep.cameras)
    times.update({c: ep.cameras[c].timestamps for c in cams})
    cameras = {
        c: CameraView(
            c,
            ep.cameras[c].width,
            ep.cameras[c].height,
            probe_camera(ep.episode_id, source, ep.cameras[c], limits) if sample else (),
        )
        for c in cams
    }
    segments = sorted(ep.instructions, key=lambda s: s.start)
    return EpisodeView(
        ep.episode_id,
        streams,
        cameras,
        tuple(dict.fromkeys(s.text for s in segments)),
        rates={k: _rate(t) for k, t in times.items()},
        spans={k: float(t[-1] - t[0]) for k, t in times.items() if len(t)},
        sampled=sample and bool(cams),
    )


def probe_positions(timestamps: np.ndarray, limits: Limits) -> np.ndarray:
    """The frames looked at: about ``probe_hz`` a second, at most ``probe_frames``, from the first."""
    n = len(timestamps)
    step = max(1, round(_rate(timestamps) / limits.probe_hz), math.ceil(n / limits.probe_frames))
    return np.arange(0, n, step)[: limits.probe_frames]


def probe_camera(episode_id: str, source, camera: Camera, limits: Limits) -> tuple[FrameProbe, ...]:
    """The measures of the camera's looked-at frames, decoded one at a time (a frame that does not
    decode makes the episode unusable, as in ingest)."""
    positions = probe_positions(camera.timestamps, limits)
    wanted = {int(camera.pts[i]): i for i in positions}
    measured = {int(camera.pts[positions[j]]) for j in evenly_spaced(len(positions), limits.detail_frames)}
    start = int(camera.pts[0]) if camera.pts[0] > 0 else None
    probes = []
    try:
        for frame in camera_frames(source, camera, start, np.array(sorted(wanted))):
            i = wanted.pop(int(frame.pts), None) if frame.pts is not None else None
            if i is not None:
                rgb = frame.to_ndarray(format="rgb24")
                probes.append(
                    probe_frame(rgb, float(camera.timestamps[i]), int(frame.pts) in measured, limits.flat_std)
                )
            if not wanted:
                break
    except Exception as exc:  # noqa: BLE001 - a decoder's error is this episode's problem
        raise EpisodeError(
            episode_id, camera.path.rsplit("/", 1)[-1], f"camera {camera.name!r}: {exc}"
        ) from exc
    return tuple(sorted(probes, key=lambda p: p.time))
