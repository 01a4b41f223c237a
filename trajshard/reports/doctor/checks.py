"""The doctor's checks: each a small function that yields findings, registered with its code, severity,
what trips it, its threshold and the fix (docs/doctor.md is this table).

A check's ``scope`` says what it is given: ``episode`` checks see every episode, ``frames`` checks
every episode whose camera frames were looked at (a bounded, evenly spaced sample), ``dataset``
checks the summary of all episodes once at the end (with, when they ``collect`` one, a small record
of each episode, made from the episode and the summary so far).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from trajshard.reports.doctor.frames import same_picture
from trajshard.reports.doctor.views import (
    CameraView,
    DatasetSummary,
    EpisodeView,
    Facts,
    Limits,
    Series,
)

PLACEHOLDERS = {
    "valid", "invalid", "none", "null", "nan", "n/a", "na", "todo", "tbd", "test", "task", "default",
    "instruction", "placeholder", "unknown", "unlabeled", "unlabelled", "empty", "-", "?", "...",
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    """One occurrence. ``what`` names the kind, the same text wherever it occurs (findings are grouped
    on it); ``where`` the episode ("" for the dataset); ``detail`` this occurrence's particulars;
    ``subject`` the camera a ``frames`` finding is about (its sampled episodes are the count's base)."""

    code: str
    what: str
    where: str = ""
    detail: str = ""
    subject: str = ""


@dataclass(frozen=True)
class Check:
    code: str
    severity: str
    scope: str  # "episode", "frames" or "dataset"
    trips: str
    threshold: str
    fix: str
    run: Callable[..., Iterator[Finding]]
    collect: Callable | None = None  # a dataset check's record of each episode (bounded), if it needs one


CHECKS: dict[str, Check] = {}


def check(
    code: str,
    severity: str,
    scope: str,
    trips: str,
    threshold: str,
    fix: str,
    collect: Callable | None = None,
) -> Callable:
    def register(fn: Callable) -> Callable:
        assert code not in CHECKS, code
        CHECKS[code] = Check(code, severity, scope, trips, threshold, fix, fn, collect)
        return fn

    return register


def is_placeholder(text: str) -> bool:
    return text.strip().strip(".!").lower() in PLACEHOLDERS


def masked(text: str) -> str:
    """A message with its numbers masked, so the same problem in many episodes is one kind."""
    return re.sub(r"\d+(\.\d+)?", "#", text)[:200]


def dim_list(dims: list[int], names: tuple[str, ...] = ()) -> str:
    """``0-3, 7`` (and the names of the first few when known)."""
    runs, start = [], None
    for i, d in enumerate(dims):
        if start is None:
            start = d
        if i + 1 == len(dims) or dims[i + 1] != d + 1:
            runs.append(f"{start}" if start == d else f"{start}-{d}")
            start = None
    text = "dims " + ", ".join(runs)
    if names and len(names) > max(dims):
        shown = ", ".join(names[d] for d in dims[:6])
        text += f": {shown}{', ...' if len(dims) > 6 else ''}"
    return text


def idle_steps(series: Series, limits: Limits) -> np.ndarray:
    """bool [N-1]: step i (from sample i to i+1) moves no dimension more than ``idle_step`` of its
    1-99 % range in the episode. Dimensions that never move are left out; when none moves, every step
    is idle."""
    v = series.values.astype(np.float64)
    if len(v) < 2:
        return np.zeros(0, dtype=bool)
    span = np.percentile(v, 99, axis=0) - np.percentile(v, 1, axis=0)
    moving = span > 0
    if not moving.any():
        return np.ones(len(v) - 1, dtype=bool)
    return np.all(np.abs(np.diff(v[:, moving], axis=0)) <= limits.idle_step * span[moving], axis=1)


# -- the source and its episodes ------------------------------------------------------------------


@check(
    "episode.unusable",
    "error",
    "dataset",
    trips="an episode cannot be read or aligned (ingest quarantines it); grouped by reason",
    threshold="any episode",
    fix="the reason names the file: restore it (a missing video, a truncated table), or accept the loss",
)
def unusable(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for p in facts.unusable:
        kind = masked(p.message)
        detail = p.message if kind != p.message else "" if p.field in p.message else p.field
        yield Finding("episode.unusable", kind, p.where, detail)


@check(
    "source.note",
    "info",
    "dataset",
    trips="the reader left something out (a camera declared with no video anywhere) or the source's "
    "task list holds a placeholder word",
    threshold="any note",
    fix="nothing to do when intended; else add the missing files or fix the metadata",
)
def notes(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for note in facts.notes:
        yield Finding("source.note", note)


# -- cameras --------------------------------------------------------------------------------------


def _looked_at(view: EpisodeView) -> Iterator[CameraView]:
    yield from (cam for _, cam in sorted(view.cameras.items()) if len(cam.frames))


def _dead(cam: CameraView, limits: Limits) -> bool:
    return all(f.std < limits.flat_std for f in cam.frames)


def _constant(cam: CameraView, limits: Limits) -> bool:
    first = cam.frames[0]
    return len(cam.frames) > 1 and all(same_picture(first, f, limits.same_level) for f in cam.frames[1:])


@check(
    "camera.dead",
    "error",
    "frames",
    trips="every frame looked at in an episode is one flat colour (black, grey, a test colour)",
    threshold="grey-level spread under 2 (of 255) in every frame",
    fix="leave the camera out (--camera ...) or fix the recording; a dead camera only costs bytes",
)
def camera_dead(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for cam in _looked_at(view):
        if _dead(cam, limits):
            level = float(np.mean([f.mean for f in cam.frames]))
            colour = "black" if level < 8 else "white" if level > 247 else f"grey level {level:.0f}"
            yield Finding(
                "camera.dead",
                f"camera {cam.name!r} shows nothing: every frame looked at is flat {colour}",
                view.episode,
                f"{len(cam.frames)} frames",
                cam.name,
            )


@check(
    "camera.constant",
    "error",
    "frames",
    trips="every frame looked at in an episode shows the same picture (a stuck feed, a still image)",
    threshold="every frame within 0.03 grey levels (mean absolute difference) of the first",
    fix="re-record or leave the camera out; check the driver delivered live frames",
)
def camera_constant(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for cam in _looked_at(view):
        if _constant(cam, limits) and not _dead(cam, limits):
            yield Finding(
                "camera.constant",
                f"camera {cam.name!r} shows one picture for the whole episode",
                view.episode,
                f"{len(cam.frames)} frames alike",
                cam.name,
            )


@check(
    "camera.frozen",
    "warning",
    "frames",
    trips="frames show the same picture for a while the robot moves (a dropped feed repeating its last "
    "frame)",
    threshold="consecutive frames within 0.03 grey levels for 1 s or more, with motion above the idle "
    "threshold during it",
    fix="cut the frozen spans or drop the episodes; check the camera's bandwidth and USB link",
)
def camera_frozen(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    motion = view.motion
    for cam in _looked_at(view):
        if _dead(cam, limits) or _constant(cam, limits):
            continue
        runs = []
        frames = cam.frames
        start = 0
        for i in range(1, len(frames) + 1):
            if i < len(frames) and same_picture(frames[i - 1], frames[i], limits.same_level):
                continue
            t0, t1 = frames[start].time, frames[i - 1].time
            if i - 1 > start and t1 - t0 >= limits.frozen_s - 1e-9 and _moves(motion, t0, t1, limits):
                runs.append((t0, t1))
            start = i
        if runs:
            spans = ", ".join(f"t={a:.1f}-{b:.1f} s" for a, b in runs[:3])
            yield Finding(
                "camera.frozen",
                f"camera {cam.name!r} freezes: the same picture for {limits.frozen_s:g} s or more while the "
                "robot moves",
                view.episode,
                spans + (f" and {len(runs) - 3} more" if len(runs) > 3 else ""),
                cam.name,
            )


def _moves(series: Series | None, t0: float, t1: float, limits: Limits) -> bool:
    """Whether the robot moves between ``t0`` and ``t1`` (any step there is not idle)."""
    if series is None:
        return True
    steps = idle_steps(series, limits)
    inside = (series.times[:-1] >= t0 - 1e-9) & (series.times[1:] <= t1 + 1e-9)
    return bool((~steps[inside]).any())


@check(
    "camera.upscaled",
    "warning",
    "dataset",
    trips="a camera's images hold no detail above half their Nyquist frequency: upscaled 2x or more "
    "(in the source, or by an --image-size above the source's frame size)",
    threshold="under 2 % of the detail energy above half Nyquist, both axes, median of the measured frames",
    fix="store images at their native size; in an output, choose --image-size at most the source's size",
)
def camera_upscaled(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for name, measured in sorted(ds.details.items()):
        if len(measured) < 3:
            continue
        sx, sy = np.median(np.array(measured), axis=0)
        if sx < limits.detail_share and sy < limits.detail_share:
            yield Finding(
                "camera.upscaled",
                f"camera {name!r} looks upscaled 2x or more: almost no detail above half the Nyquist "
                "frequency",
                "",
                f"{sx:.1%} horizontally, {sy:.1%} vertically, median of {len(measured)} frames",
            )


@check(
    "video.duration",
    "warning",
    "episode",
    trips="a camera's video lasts a different time than the episode's tables",
    threshold="more than 10 % of the tables' duration and more than 2 frame intervals",
    fix="a truncated or mis-cut video: re-export it; ticks outside the video are dropped at ingest",
)
def video_duration(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    table = view.spans.get("proprio")
    if not table:
        return
    for name in sorted(view.cameras):
        span, rate = view.spans.get(name), view.rates.get(name, 0.0)
        if span is None or rate <= 0:
            continue
        if abs(span - table) > max(limits.duration_share * table, 2.0 / rate):
            yield Finding(
                "video.duration",
                f"camera {name!r}: the video's duration disagrees with the tables'",
                view.episode,
                f"video {span:.2f} s, tables {table:.2f} s",
            )


# -- rates and signals ----------------------------------------------------------------------------


@check(
    "rate.duplicated",
    "warning",
    "episode",
    trips="a stream or camera is slower than the target clock, so its samples repeat in the output",
    threshold="below the clock's rate by more than 5 %",
    fix="lower --fps to the source's rate (or --action-policy interpolate for actions)",
)
def rate_duplicated(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    target = facts.target_hz or (view.rates.get(facts.clock_camera or "") or 0.0)
    slow = [(n, r) for n, r in sorted(view.rates.items()) if 0 < r < target * (1 - limits.rate_slack)]
    if slow:
        yield Finding(
            "rate.duplicated",
            f"{', '.join(repr(n) for n, _ in slow)} slower than the {target:g} Hz clock: samples repeat",
            view.episode,
            ", ".join(f"{n} {r:.3g} Hz" for n, r in slow),
        )


@check(
    "dims.constant",
    "warning",
    "dataset",
    trips="a state or action dimension holds one value over the whole dataset",
    threshold="minimum equals maximum",
    fix="drop the dimension (a tokenizer spends tokens on it; normalization divides by its zero range)",
)
def dims_constant(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for stream in sorted(ds.low):
        same = np.flatnonzero(ds.low[stream] == ds.high[stream]).tolist()
        if same:
            n = len(ds.low[stream])
            yield Finding(
                "dims.constant",
                f"{stream}: {len(same)} of {n} dimensions are constant over the whole dataset",
                "",
                dim_list(same, ds.names.get(stream, ())),
            )


def jump_candidates(view: EpisodeView, summary: DatasetSummary, limits: Limits) -> list[tuple] | None:
    """Per stream and dimension of an episode, its largest step beyond ``jump_sigmas`` robust standard
    deviations (1.4826 MAD) of the episode's steps: (episode, stream, dim, step, time). Whether it is
    a jump is settled at the end, against the dimension's range over the dataset; a step already within
    ``jump_range`` of the range so far (this episode included) never will be, and is not kept."""
    found = []
    for stream in ("state", "action"):
        st = view.streams.get(stream)
        if (
            st is None
            or len(st.values) < 4
            or summary.low.get(stream, np.zeros(0)).shape != st.values.shape[1:]
        ):
            continue  # too short, or not the dataset's shape (ingest quarantines those)
        v = st.values.astype(np.float64)
        d = np.diff(v, axis=0)
        med = np.median(d, axis=0)
        big = np.abs(d - med) > limits.jump_sigmas * 1.4826 * np.median(np.abs(d - med), axis=0)
        big &= np.abs(d) > limits.jump_range * (summary.high[stream] - summary.low[stream])
        for dim in np.flatnonzero(big.any(axis=0)):
            if len(np.unique(v[:, dim])) > 3:  # two or three values: a gripper, a switch
                i = int(np.argmax(np.where(big[:, dim], np.abs(d[:, dim]), -1.0)))
                found.append((view.episode, stream, int(dim), float(d[i, dim]), float(st.times[i + 1])))
    return found or None


@check(
    "motion.jump",
    "warning",
    "dataset",
    trips="a step in state or action far beyond the episode's usual steps and large for the dimension "
    "(a teleport, a wrapped angle, a glitch); dimensions with 3 or fewer values (grippers) are left out",
    threshold="beyond 10 robust standard deviations (1.4826 MAD) of the episode's steps and over half "
    "the dimension's range in the dataset (dimensions whose range is under 1 % of the stream's widest "
    "are left out)",
    fix="declare angles (signals.<stream>.angles) so they unwrap, or cut or drop the episode",
    collect=jump_candidates,
)
def motion_jump(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    ranges = {stream: ds.high[stream] - ds.low[stream] for stream in ds.low}
    for found in ds.collected.get("motion.jump", []):
        jumps: dict[str, list] = {}
        for episode, stream, dim, step, time in found:
            span = ranges.get(stream)
            if span is None or span[dim] < limits.jump_floor * span.max():
                continue  # a dimension that barely moves: a step there moves nothing
            if abs(step) > limits.jump_range * span[dim]:
                jumps.setdefault(stream, []).append((abs(step), dim, step, time, episode))
        for stream, those in sorted(jumps.items()):
            _, dim, step, time, episode = max(those)
            names = ds.names.get(stream, ())
            name = f" ({names[dim]})" if len(names) > dim else ""
            yield Finding(
                "motion.jump",
                f"{stream} jumps: a step far beyond its usual steps and over half the dimension's range",
                episode,
                f"dim {dim}{name} by {step:+.3g} at t={time:.2f} s"
                + (f" (and {len(those) - 1} more dims)" if len(those) > 1 else ""),
            )


def _idle_edge(view: EpisodeView, limits: Limits, at_end: bool) -> Iterator[Finding]:
    series = view.motion
    if series is None or len(series.times) < 2:
        return
    steps = idle_steps(series, limits)
    if steps.all() and at_end:
        return  # reported once, at the start
    run = int(np.argmin(steps[::-1] if at_end else steps)) if not steps.all() else len(steps)
    t = series.times
    seconds = float(t[-1] - t[-1 - run]) if at_end else float(t[run] - t[0])
    if run >= limits.idle_min_steps and seconds >= limits.idle_min_s - 1e-9:
        stream = "action" if "action" in view.streams else "state"
        edge = "end" if at_end else "start"
        whole = steps.all()
        yield Finding(
            f"idle.{edge}",
            f"idle at the {edge}: the {stream} does not move" + (" in the whole episode" if whole else ""),
            view.episode,
            f"{'last' if at_end else 'first'} {seconds:.1f} s ({run} steps of {len(t) - 1})",
        )


@check(
    "idle.start",
    "warning",
    "episode",
    trips="the episode starts with a span where no dimension moves (the DROID idle filter openpi applies)",
    threshold="every dimension's step under 0.1 % of its 1-99 % range, for 0.5 s and 7 steps or more",
    fix="trim idle spans before training, or a policy learns to stand still",
)
def idle_start(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    yield from _idle_edge(view, limits, at_end=False)


@check(
    "idle.end",
    "warning",
    "episode",
    trips="the episode ends with a span where no dimension moves",
    threshold="as idle.start",
    fix="trim idle spans before training, or a policy learns to stand still",
)
def idle_end(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    yield from _idle_edge(view, limits, at_end=True)


@check(
    "gripper.not_binary",
    "warning",
    "episode",
    trips="the gripper declared binary (config gripper.dim) takes more than two values in the source",
    threshold="more than 2 distinct values in an episode (a source only: an output's is binarized)",
    fix="check gripper.threshold splits the values where open turns closed, or do not binarize",
)
def gripper_not_binary(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    action = view.streams.get("action")
    if not facts.gripper or facts.gripper_binarized or action is None:
        return
    dim = int(facts.gripper["dim"])
    if 0 <= dim < action.values.shape[1]:
        values = np.unique(action.values[:, dim])
        if len(values) > 2:
            yield Finding(
                "gripper.not_binary",
                f"gripper dim {dim} is declared binary but takes more than two values",
                view.episode,
                f"{len(values)} values from {values[0]:.3g} to {values[-1]:.3g}",
            )


@check(
    "gripper.one_sided",
    "warning",
    "dataset",
    trips="the gripper declared binary takes one value over the whole dataset (the threshold puts every "
    "tick on one side)",
    threshold="one distinct value",
    fix="set gripper.threshold between the open and closed readings",
)
def gripper_one_sided(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    if facts.gripper and ds.episodes and len(ds.gripper_values) == 1:
        value = next(iter(ds.gripper_values))
        yield Finding(
            "gripper.one_sided",
            f"gripper dim {facts.gripper['dim']} is declared binary but holds one value in every episode",
            "",
            f"always {value:g}",
        )


# -- episodes and instructions --------------------------------------------------------------------


@check(
    "episode.length",
    "warning",
    "dataset",
    trips="an episode far shorter or longer than the rest (a recording cut short, two takes in one)",
    threshold="under 1/3 or over 3x the median duration (4 episodes or more)",
    fix="look at the episode (trajshard inspect); drop or split it",
)
def episode_length(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    lengths = [(e, d) for e, d in ds.durations if d > 0]
    if len(lengths) < 4:
        return
    median = float(np.median([d for _, d in lengths]))
    for episode, d in lengths:
        if d < median / limits.length_factor or d > median * limits.length_factor:
            kind = "shorter" if d < median else "longer"
            yield Finding(
                "episode.length",
                f"episode far {kind} than the rest",
                episode,
                f"{d:.1f} s, median {median:.1f} s",
            )


@check(
    "episode.duplicate",
    "warning",
    "dataset",
    trips="an episode has the same states and actions as another (copied or converted twice)",
    threshold="equal content hash (sha256 of the float32 values)",
    fix="drop the copies; they weigh their episode twice and can leak between splits",
)
def episode_duplicate(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for same in ds.hashes.values():
        for episode in same[1:]:
            yield Finding("episode.duplicate", "same states and actions as another episode", episode, same[0])


@check(
    "instruction.empty",
    "warning",
    "episode",
    trips="an episode (or a span of it) has an empty instruction",
    threshold="any empty text",
    fix="fill the instruction in (episode.json, the task list)",
)
def instruction_empty(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    if any(not t.strip() for t in view.instructions):
        yield Finding("instruction.empty", "an instruction is empty", view.episode)


@check(
    "instruction.placeholder",
    "warning",
    "episode",
    trips='an instruction is a placeholder word ("valid", "none", "test", "todo", ...), not a task',
    threshold="the whole text is one of the placeholder words",
    fix="replace it with the task's instruction",
)
def instruction_placeholder(view: EpisodeView, facts: Facts, limits: Limits) -> Iterator[Finding]:
    for text in view.instructions:
        if text.strip() and is_placeholder(text):
            yield Finding(
                "instruction.placeholder", f"instruction {text.strip()!r} is a placeholder", view.episode
            )


@check(
    "instruction.single",
    "warning",
    "dataset",
    trips="every episode has the same instruction though the source declares several tasks",
    threshold="1 distinct instruction, 2 or more declared tasks",
    fix="map each episode to its task (the task index per row or episode)",
)
def instruction_single(ds: DatasetSummary, facts: Facts, limits: Limits) -> Iterator[Finding]:
    declared = {t.strip() for t in facts.declared_tasks or [] if t.strip() and not is_placeholder(t)}
    used = [t for t in ds.instructions if t.strip()]
    if len(declared) > 1 and len(used) == 1 and ds.episodes > 1:
        yield Finding(
            "instruction.single",
            f"all {ds.episodes} episodes have one instruction, but the source declares {len(declared)} tasks",
            "",
            repr(used[0]),
        )
