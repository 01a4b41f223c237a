"""``trajshard inspect OUT --episode ID``: one episode read back from the shards, as text and a picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trajshard.io import shard_path
from trajshard.schemas.sample import iter_shard_samples, load_npy


def load_episode(out: str | Path, episode: str) -> dict:
    """Every sample of ``episode`` (a part id or a source episode id), in step order."""
    out = Path(out)
    rows = pq.read_table(out / "meta" / "episodes.parquet").to_pylist()
    mine = [r for r in rows if episode in (r["episode"], r["source_episode"])]
    if not mine:
        near = sorted(r["episode"] for r in rows)[:10]
        raise KeyError(f"episode {episode!r} is not in {out} (some episodes: {near})")
    if len(mine) > 1:
        raise KeyError(
            f"{episode!r} was split into parts {[r['episode'] for r in mine]}; inspect one of them"
        )
    row = mine[0]
    import json

    samples = []
    for shard in row["shards"]:  # each confined to OUT/shards before it is opened
        for key, members in iter_shard_samples(shard_path(out, shard)):
            if key.rsplit("_", 1)[0] == row["episode"]:
                samples.append(members)
    if not samples:
        raise KeyError(f"episode {row['episode']!r}: no sample of it in its shards {row['shards']}")
    samples.sort(key=lambda m: json.loads(m["meta.json"])["step"])
    metas = [json.loads(m["meta.json"]) for m in samples]
    cams = sorted(k[:-4] for k in samples[0] if k.endswith(".jpg") or k.endswith(".png"))
    tokens = [load_npy(m["tokens.npy"]) for m in samples]
    same = len({t.shape for t in tokens}) == 1
    tok = np.stack([t[0] if t.ndim == 2 else t for t in tokens]) if same else None
    return {
        "episode": row["episode"],
        "row": row,
        "times": np.array([m["time"] for m in metas]),
        "instructions": [m["instruction"] for m in metas],
        "instruction": metas[0]["instruction"],
        "cameras": cams,
        "images": {c: [m.get(f"{c}.jpg") or m.get(f"{c}.png") for m in samples] for c in cams},
        "state": np.stack([load_npy(m["state.npy"]) for m in samples]),
        "action": np.stack([load_npy(m["action.npy"]) for m in samples]),
        "tokens": tok if tok is not None and tok.ndim == 2 else None,
    }


def summary(ep: dict) -> str:
    row, t = ep["row"], ep["times"]
    lines = [
        f"episode {ep['episode']} (source {row['source_episode']}, {row['embodiment'] or 'embodiment unset'})",
        f"steps {len(t)} from t={t[0]:.3f}s to t={t[-1]:.3f}s; shards: {', '.join(row['shards'])}",
        "instructions:",
    ]
    changes = [0] + [i for i in range(1, len(t)) if ep["instructions"][i] != ep["instructions"][i - 1]]
    for a, b in zip(changes, changes[1:] + [len(t)], strict=True):
        lines.append(f"  steps {a}-{b - 1} (t={t[a]:.2f}s): {ep['instructions'][a]}")
    lines.append(f"cameras: {', '.join(ep['cameras'])}")
    lines.append("alignment:")
    for a in row["alignment"]:
        lines.append(
            f"  {a['stream']:<12} {a['samples']:>6} samples at {a['rate_hz']:.1f} Hz, max|dt| "
            f"{a['max_dt_s'] * 1000:.1f} ms, p95 {a['p95_dt_s'] * 1000:.1f} ms, "
            f"{a['dropped_ticks']} ticks dropped, {a['gaps']} gaps"
        )
    act = ep["action"]
    fmt = lambda v: "[" + ", ".join(f"{x:.3g}" for x in v) + "]"  # noqa: E731
    lines.append(f"action [{act.shape[1]} dims]: min {fmt(act.min(0))}")
    lines.append(f"{'':>19}max {fmt(act.max(0))}")
    return "\n".join(lines)
