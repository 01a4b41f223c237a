"""The episodes the HTML report embeds: which ones, and what of each.

A sample, never the whole dataset: ``n`` episodes spread evenly over the id order (plus up to a
quarter of them named by doctor findings), each with every step's state, action and tokens (thinned
to ``curve_points`` points when longer) and its instruction segments, and frames of every camera at
evenly spaced steps, so that all embedded episodes together hold at most ``max_frames`` frames,
re-encoded as small JPEGs of ``frame_size`` pixels. With many dimensions the curves get fewer points
(``curve_values`` numbers in all, never under 50 points a curve).
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trajshard.reports.page.bins import NpyReader, iter_members
from trajshard.schemas.sample import split_key

COLUMNS = ["episode", "split", "steps", "shards", "source_episode", "start_time", "end_time", "embodiment"]


@dataclass(frozen=True)
class EpisodeBudget:
    episodes: int = 12  # episodes embedded
    max_frames: int = 1200  # frames embedded over all episodes and cameras
    frame_size: int = 128  # longest side of an embedded frame, pixels
    frame_quality: int = 70  # JPEG quality of an embedded frame
    curve_points: int = 500  # points per curve; longer episodes are thinned evenly
    curve_values: int = 400_000  # numbers in all curves of all episodes (fewer points when many dims)


def episode_rows(out: Path) -> list[dict]:
    """episodes.parquet without its alignment column, in id order."""
    table = pq.read_table(out / "meta" / "episodes.parquet", columns=COLUMNS)
    return sorted(table.to_pylist(), key=lambda r: r["episode"])


def pick_episodes(rows: list[dict], n: int, named: list[str] = ()) -> list[dict]:
    """Up to ``n`` rows: first those ``named`` (at most a quarter of ``n``, in the order given), then
    rows spread evenly over the id order, first and last included. Deterministic."""
    by_id = {r["episode"]: r for r in rows}
    chosen = list(dict.fromkeys(e for e in named if e in by_id))[: n // 4]
    slots = min(n, len(rows)) - len(chosen)
    spread = [rows[round(i)]["episode"] for i in np.linspace(0, len(rows) - 1, slots)] if slots > 0 else []
    chosen += [e for e in dict.fromkeys(spread) if e not in chosen]
    if len(chosen) < n:  # the named ones displaced some of the spread: fill from the rest in order
        chosen += [r["episode"] for r in rows if r["episode"] not in chosen][: n - len(chosen)]
    return sorted((by_id[e] for e in chosen), key=lambda r: r["episode"])


def frame_steps(steps: int, per_camera: int) -> np.ndarray:
    """``per_camera`` steps spread evenly over ``0 .. steps - 1`` (all of them when fewer)."""
    if steps <= per_camera:
        return np.arange(steps)
    return np.unique(np.round(np.linspace(0, steps - 1, per_camera)).astype(int))


def thumbnail(data: bytes, size: int, quality: int) -> str:
    """A stored frame as a small baseline JPEG, base64."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def read_episodes(
    out: Path, rows: list[dict], cameras: list[str], budget: EpisodeBudget, fps: float
) -> list[dict]:
    """Each episode of ``rows`` read back from its shards, as the report embeds it."""
    per_camera = max(4, budget.max_frames // max(1, len(rows) * max(1, len(cameras))))
    wanted = {r["episode"]: set(frame_steps(r["steps"], per_camera).tolist()) for r in rows}
    steps: dict[str, dict[int, dict[str, bytes]]] = {e: {} for e in wanted}
    images = {f"{c}.jpg" for c in cameras} | {f"{c}.png" for c in cameras}
    low = {"meta.json", "state.npy", "action.npy", "tokens.npy"}

    def want(key: str, field: str) -> bool:
        parsed = split_key(key)
        if parsed is None or parsed[0] not in wanted:
            return False
        return field in low or (field in images and parsed[1] in wanted[parsed[0]])

    for shard in dict.fromkeys(s for r in rows for s in r["shards"]):
        for key, field, data in iter_members(out / shard, want):
            episode, step = split_key(key)
            steps[episode].setdefault(step, {})[field] = data
    return [_episode(r, steps[r["episode"]], cameras, budget, fps, len(rows)) for r in rows]


def _episode(
    row: dict, by_step: dict[int, dict[str, bytes]], cameras: list[str], budget, fps, episodes: int
) -> dict:
    order = sorted(by_step)
    load_npy = NpyReader()
    metas = [json.loads(by_step[s]["meta.json"]) for s in order]
    state = np.stack([load_npy(by_step[s]["state.npy"]) for s in order]).astype(np.float64)
    action = np.stack([load_npy(by_step[s]["action.npy"]) for s in order]).astype(np.float64)
    tokens = [load_npy(by_step[s]["tokens.npy"]) for s in order]
    fixed = len({t.shape for t in tokens}) == 1
    tok = np.stack([t[0] if t.ndim == 2 else t for t in tokens]) if fixed else None
    dims = state.shape[1] + 2 * action.shape[1]
    points = min(budget.curve_points, max(50, budget.curve_values // max(1, episodes * dims)))
    keep = frame_steps(len(order), points)  # curve points, by position
    frames = {}
    for cam in cameras:
        shown = [(s, by_step[s].get(f"{cam}.jpg") or by_step[s].get(f"{cam}.png")) for s in order]
        shown = [(s, data) for s, data in shown if data]
        frames[cam] = {
            "steps": [s for s, _ in shown],
            "jpg": [thumbnail(data, budget.frame_size, budget.frame_quality) for _, data in shown],
        }
    instructions = [m["instruction"] for m in metas]
    segments, start = [], 0
    for i in range(1, len(order) + 1):
        if i == len(order) or instructions[i] != instructions[start]:
            segments.append({"start": order[start], "end": order[i - 1], "text": instructions[start]})
            start = i
    return {
        "id": row["episode"],
        "source": row["source_episode"],
        "split": row["split"],
        "embodiment": row["embodiment"],
        "steps": row["steps"],
        "read_steps": len(order),
        "shards": list(row["shards"]),
        "fps": fps,
        "x": [order[i] for i in keep],
        "t": rounded(np.array([metas[i]["time"] for i in keep])),
        "state": rounded(state[keep].T),
        "action": rounded(action[keep].T),
        "tokens": None if tok is None else tok[keep].T.astype(int).tolist(),
        "token_note": "" if tok is not None else "tokens of variable length (FAST): not drawn",
        "segments": segments,
        "frames": frames,
    }


def rounded(a: np.ndarray, digits: int = 5) -> list:
    """``a`` as nested lists of floats with ``digits`` significant digits (short in JSON), NaN and
    infinities as None."""
    a = np.asarray(a, dtype=np.float64)
    finite = np.isfinite(a) & (a != 0)
    mag = np.floor(np.log10(np.abs(np.where(finite, a, 1.0)))).astype(int) - (digits - 1)
    up = np.power(10.0, np.clip(-mag, 0, 300))
    down = np.power(10.0, np.clip(mag, 0, 300))
    r = np.where(mag < 0, np.round(a * up) / up, np.round(a / down) * down)
    r = np.where(finite, r, a).astype(object)
    r[~np.isfinite(a)] = None  # JSON null: a gap in the curve
    return r.tolist()
