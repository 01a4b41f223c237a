"""Helpers for the array-layout tests (HDF5, npz, Zarr): smooth frames, known state and action, and
the checks every layout's ingest must pass (bit-exact values, JPEGs near their frames, nothing lost)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import webdataset as wds

from tests.helpers import shard_urls
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output

SIDE = 48  # frame height and width; the output's image size, so frames are not rescaled
FPS = 10.0


def frames(n: int, seed: int) -> np.ndarray:
    """uint8 [n, SIDE, SIDE, 3]: smooth moving gradients, different per step and per seed."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64) / SIDE
    out = np.empty((n, SIDE, SIDE, 3), np.uint8)
    for i in range(n):
        phase = 0.3 * i + seed
        for c in range(3):
            out[i, :, :, c] = 127.5 + 120 * np.sin(2 * np.pi * (x + (c + 1) * y / 2) + phase + c)
    return out


def values(n: int, width: int, seed: int, dtype=np.float64) -> np.ndarray:
    """[n, width] values no float32 rounding makes equal to a neighbour's."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, width)).astype(dtype)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ingest(src: Path, out: Path, fmt: str, mapping: dict | None = None, **flags):
    cfg = JobConfig.from_flags(
        workers=0, fps=FPS, source_fps=FPS, image_size=SIDE, format=fmt, mapping=mapping or {}, **flags
    )
    report = run_ingest(str(src), str(out), cfg, progress=False)
    assert validate_output(out).ok
    return report


def samples_by_episode(out: Path) -> dict[str, list[dict]]:
    """Every sample of an output, decoded (JPEGs as uint8 RGB), by episode, in step order."""
    eps: dict[str, list[dict]] = {}
    for s in wds.WebDataset(shard_urls(out), shardshuffle=False).decode("rgb8"):
        eps.setdefault(s["meta.json"]["episode"], []).append(s)
    return {k: sorted(v, key=lambda s: s["meta.json"]["step"]) for k, v in eps.items()}


def quarantined(out: Path) -> dict[str, dict]:
    lines = (out / "meta" / "quarantine.jsonl").read_text().splitlines()
    return {r["episode"]: r for r in map(json.loads, lines)}


def check_output(out: Path, expected: dict[str, dict], cameras: dict[str, str], n_input: int) -> None:
    """Each expected episode (id -> {"state", "action", camera key -> frames}) is in the shards with
    its state and action bit-exact as float32 at the source rate and each camera's JPEG within
    40 dB PSNR of its source frame; written + quarantined = input."""
    got = samples_by_episode(out)
    assert sorted(got) == sorted(expected)
    for eid, src in expected.items():
        steps = got[eid]
        assert len(steps) == len(src["state"]), eid
        assert np.array_equal(np.stack([s["state.npy"] for s in steps]), src["state"].astype(np.float32))
        assert np.array_equal(np.stack([s["action.npy"] for s in steps]), src["action"].astype(np.float32))
        for out_name, key in cameras.items():
            worst = min(psnr(s[f"{out_name}.jpg"], f) for s, f in zip(steps, src[key], strict=True))
            assert worst >= 40.0, (eid, out_name, worst)
    info = json.loads((out / "meta" / "info.json").read_text())
    counts = info["counts"]
    assert counts["episodes_written"] + counts["episodes_quarantined"] == n_input
    assert len(quarantined(out)) == counts["episodes_quarantined"]
