"""Pieces every reader's ``describe`` uses: a key's rate and span from its times, a camera's row from
its lazy handle, the first episode that loads. Readers import this; ``sources/describe.py`` (which
imports the readers) picks and renders."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from trajshard.schemas.episode import Camera, Episode, EpisodeError
from trajshard.sources.listing import KeyInfo

TRIES = 200  # episodes tried for one that loads (G1: the first with its video is the 29th)
INSTRUCTION_WORDS = ("task", "instruction", "language", "annotation", "prompt", "goal")


def rate_and_span(times: np.ndarray) -> tuple[float | None, tuple[float, float] | None]:
    """(median rate in Hz, (first, last) time) of increasing times; None where it is undefined."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) == 0:
        return None, None
    span = (float(times[0]), float(times[-1]))
    steps = np.diff(times)
    steps = steps[steps > 0]
    return (float(1.0 / np.median(steps)) if len(steps) else None), span


def camera_key(key: str, cam: Camera, extra: str = "") -> KeyInfo:
    """A camera's row: codec, frame size, frames, rate and span, its file and the file's size."""
    rate, span = rate_and_span(cam.timestamps)
    path = cam.path.split("#", 1)[0]
    size = f", {_size(os.path.getsize(path))}" if os.path.isfile(path) else ""
    detail = f"{os.path.basename(path)}{size}" + (f"; {extra}" if extra else "")
    return KeyInfo(key, "camera", cam.codec, (cam.height, cam.width, 3), rate, span, len(cam.pts), (), detail)


def first_loadable(ids: list[str], load: Callable[[str], Episode]) -> tuple[Episode | None, list[str]]:
    """The first of ``ids`` (at most TRIES) that loads, and the reasons of those that did not."""
    reasons = []
    for eid in ids[:TRIES]:
        try:
            return load(eid), reasons
        except EpisodeError as exc:
            reasons.append(f"{eid}: {exc.where}: {exc.message}")
    return None, reasons


def skipped_note(reasons: list[str], example: str) -> list[str]:
    """A note on the episodes passed over to find the example (the first reason shown)."""
    if not reasons:
        return []
    return [
        f"{len(reasons)} episode(s) before {example or 'any readable one'} cannot be read "
        f"(they would be quarantined); the first: {reasons[0]}"
    ]


def is_instruction_name(key: str) -> bool:
    low = key.lower()
    return any(w in low for w in INSTRUCTION_WORDS)


def short_text(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= n else text[: n - 3] + "...")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
