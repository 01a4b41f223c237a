"""Episode views of an output: the ticks' states, actions and instructions read from the shards, the
source's rates and durations from ``episodes.parquet``'s alignment report, and the JPEGs of an evenly
spaced sample of episodes, a few per second.

Shards are read once, in manifest order. On a local disk only the members needed are read (the rest
is skipped by seeking, header by header); on an object store each shard is streamed. An episode is
held until its last sample is read (a shuffle window interleaves a few), then handed to the checks
and dropped.
"""

from __future__ import annotations

import functools
import io
import json
import math
import tarfile
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from trajshard.io import MAX_MEMBER_BYTES, shard_path
from trajshard.reports.doctor.frames import probe_frame
from trajshard.reports.doctor.source import declared
from trajshard.reports.doctor.views import CameraView, EpisodeView, Facts, Limits, Series, evenly_spaced
from trajshard.reports.page.bins import iter_members
from trajshard.schemas.problems import Problem
from trajshard.schemas.sample import load_npy
from trajshard.sources import SourceSpec
from trajshard.storage import Store

LOW_DIM = ("meta.json", "state.npy", "action.npy")


def output_facts(store: Store, info: dict, source: SourceSpec | None) -> Facts:
    clock = str(info.get("clock") or "fixed")
    quarantine = (
        store.read_bytes("meta/quarantine.jsonl").decode() if store.exists("meta/quarantine.jsonl") else ""
    )
    facts = Facts(
        "output",
        episodes_planned=int(info["counts"]["episodes_input"]),
        target_hz=float(info["fps"]) if clock.startswith("fixed") else None,
        clock_camera=clock.split(":", 1)[1] if clock.startswith("camera:") else None,
        gripper=info.get("gripper") or None,
        gripper_binarized=True,
        unusable=[Problem.from_record(json.loads(line)) for line in quarantine.splitlines() if line.strip()],
    )
    if source is not None:
        try:
            facts.declared_tasks, facts.notes = declared(source.open())
        except Exception:  # noqa: BLE001 - the source moved or went: the output's own findings only
            pass
    return facts


def output_views(
    store: Store, info: dict | None, limits: Limits, source: SourceSpec | None = None
) -> tuple[Facts, Iterator[EpisodeView]]:
    info = info if info is not None else json.loads(store.read_bytes("meta/info.json"))
    facts = output_facts(store, info, source)
    rows = pq.read_table(
        io.BytesIO(store.read_bytes("meta/episodes.parquet")), columns=["episode", "steps", "alignment"]
    ).to_pylist()
    shards = [s["name"] for s in json.loads(store.read_bytes("meta/manifest.json"))["shards"]]
    sampled = {rows[i]["episode"]: rows[i] for i in evenly_spaced(len(rows), limits.image_episodes)}
    tick_hz = facts.target_hz or float(info["fps"])
    probes = {e: _probe_steps(r["steps"], tick_hz, limits) for e, r in sampled.items()}
    by_id = {r["episode"]: r for r in rows}

    def views() -> Iterator[EpisodeView]:
        open_: dict[str, dict] = {}

        def wanted(key: str, fld: str) -> bool:
            episode, _, step_text = key.rpartition("_")
            step = int(step_text) if step_text.isdigit() else -1
            return fld in LOW_DIM or (fld.endswith(".jpg") and step in probes.get(episode, {}))

        for name in shards:
            for key, fld, data in _members(store, name, wanted):
                episode, _, step_text = key.rpartition("_")
                acc = open_.setdefault(episode, {})
                acc.setdefault(fld, {})[int(step_text) if step_text.isdigit() else -1] = data
            for episode in [e for e, acc in open_.items() if _complete(acc, by_id.get(e))]:
                yield _view(
                    episode, open_.pop(episode), by_id.get(episode), info, probes.get(episode), limits
                )
        for episode, acc in open_.items():  # samples missing: validate says which; look at the rest
            if "meta.json" in acc:
                yield _view(episode, acc, by_id.get(episode), info, probes.get(episode), limits)

    return facts, views()


def _probe_steps(steps: int, tick_hz: float, limits: Limits) -> dict[int, bool]:
    """Looked-at steps of a sampled episode, each True when its detail is measured."""
    stride = max(1, round(tick_hz / limits.probe_hz), math.ceil(steps / limits.probe_frames))
    chosen = list(range(0, steps, stride))[: limits.probe_frames]
    measured = {chosen[i] for i in evenly_spaced(len(chosen), limits.detail_frames)}
    return {s: s in measured for s in chosen}


def _complete(acc: dict, row: dict | None) -> bool:
    return row is not None and all(len(acc.get(f, {})) >= row["steps"] for f in LOW_DIM)


def _members(store: Store, name: str, wanted: Callable[[str, str], bool]) -> Iterator[tuple[str, str, bytes]]:
    """(sample key, field, bytes) of each member of a shard ``wanted(key, field)`` accepts, in order. A
    local shard goes through the report's header reader (names confined to OUT/shards, members capped,
    unwanted data skipped); a shard on an object store is streamed through ``tarfile``."""
    if store.remote:
        with store.fs.open_input_stream(store.path(name)) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.size <= MAX_MEMBER_BYTES and wanted(*_key_field(member.name)):
                    yield (*_key_field(member.name), tar.extractfile(member).read())
        return
    yield from iter_members(shard_path(store.local(), name), wanted)


def _key_field(path: str) -> tuple[str, str]:
    key, _, fld = path.rsplit("/", 1)[-1].partition(".")
    return key, fld


@functools.lru_cache(maxsize=64)
def _npy_layout(header: bytes) -> tuple[np.dtype, tuple[int, ...]] | None:
    """dtype and shape of an .npy header (cached: every sample of a dataset has the same few)."""
    f = io.BytesIO(header)
    np.lib.format.read_magic(f)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    return None if fortran or dtype.hasobject else (dtype, shape)


def _npy(data: bytes) -> np.ndarray:
    """An .npy member's array, its header parsed once per layout; object arrays refused (load_npy)."""
    if data[:6] == b"\x93NUMPY" and data[6] == 1:
        end = 10 + int.from_bytes(data[8:10], "little")
        layout = _npy_layout(bytes(data[:end]))
        if layout is not None:
            dtype, shape = layout
            return np.frombuffer(data, dtype, int(np.prod(shape)), end).reshape(shape)
    return load_npy(data)


def _view(episode: str, acc: dict, row: dict | None, info: dict, probes: dict | None, limits: Limits):
    metas = {s: json.loads(b) for s, b in acc.get("meta.json", {}).items()}
    steps = sorted(s for s in metas if s in acc.get("state.npy", {}) and s in acc.get("action.npy", {}))
    times = np.array([float(metas[s]["time"]) for s in steps], dtype=np.float64)
    streams = {
        name: Series(
            times,
            np.stack([_npy(acc[f"{name}.npy"][s]) for s in steps]) if steps else np.zeros((0, 0)),
            tuple(info.get(f"{name}_names") or ()),
        )
        for name in ("state", "action")
    }
    report = {r["stream"]: r for r in (row or {}).get("alignment") or []}
    cameras = {}
    for cam in info.get("cameras", []):
        side = (info.get("features", {}).get(f"{cam}.jpg", {}).get("shape") or [0, 0])[:2]
        frames = []
        for s, measure in sorted((probes or {}).items()):
            data = acc.get(f"{cam}.jpg", {}).get(s)
            if data is not None and s in metas:
                rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                frames.append(probe_frame(rgb, float(metas[s]["time"]), measure, limits.flat_std))
        cameras[cam] = CameraView(cam, int(side[1]), int(side[0]), tuple(frames))
    return EpisodeView(
        episode,
        streams,
        cameras,
        tuple(dict.fromkeys(metas[s]["instruction"] for s in sorted(metas))),
        rates={k: float(r["rate_hz"]) for k, r in report.items()},
        spans={k: (r["samples"] - 1) / r["rate_hz"] for k, r in report.items() if r["rate_hz"] > 0},
        sampled=probes is not None and bool(cameras),
    )
