"""``trajshard inspect OUT --episode ID``: one episode read back from the shards, as text and a picture.

Every shard is opened through ``shard_path`` (confined to OUT/shards) and read with the checked
``iter_shard_samples``; names from info.json are used only when they are a list of strings of the
right length, so an untrusted output cannot make a view draw or log something malformed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trajshard.io import read_json, shard_path
from trajshard.schemas.sample import iter_shard_samples, load_npy


def load_episode(out: str | Path, episode: str) -> dict:
    """Every sample of ``episode`` (a part id or a source episode id), in step order."""
    out = Path(out)
    row = _episode_row(out, episode)
    samples = []
    for shard in row["shards"]:  # each confined to OUT/shards before it is opened
        for key, members in iter_shard_samples(shard_path(out, shard)):
            if key.rsplit("_", 1)[0] == row["episode"]:
                samples.append(members)
    if not samples:
        raise KeyError(f"episode {row['episode']!r}: no sample of it in its shards {row['shards']}")
    metas = [json.loads(m["meta.json"]) for m in samples]
    order = np.argsort([m["step"] for m in metas], kind="stable")
    samples, metas = [samples[i] for i in order], [metas[i] for i in order]
    cams = sorted(k[:-4] for k in samples[0] if k.endswith(".jpg") or k.endswith(".png"))
    seqs = [load_npy(m["tokens.npy"]) for m in samples]
    state = np.stack([load_npy(m["state.npy"]) for m in samples])
    action = np.stack([load_npy(m["action.npy"]) for m in samples])
    info = _info(out)
    return {
        "episode": row["episode"],
        "row": row,
        "steps": np.array([m["step"] for m in metas]),
        "times": np.array([m["time"] for m in metas], dtype=np.float64),
        "instructions": [m["instruction"] for m in metas],
        "instruction": metas[0]["instruction"],
        "cameras": cams,
        "images": {c: [m.get(f"{c}.jpg") or m.get(f"{c}.png") for m in samples] for c in cams},
        "state": state,
        "action": action,
        "state_names": dim_names(info.get("state_names"), state.shape[1], "state"),
        "action_names": dim_names(info.get("action_names"), action.shape[1], "action"),
        "layout": _layout(info, action.shape[1]),
        "tokens": _per_dim_tokens(seqs),
        "token_seqs": seqs,  # tokens.npy of each sample as stored (FAST: one id sequence per chunk)
        "tokenizer": _tokenizer_type(out),
    }


def _episode_row(out: Path, episode: str) -> dict:
    rows = pq.read_table(out / "meta" / "episodes.parquet").to_pylist()
    mine = [r for r in rows if episode in (r["episode"], r["source_episode"])]
    if not mine:
        near = sorted(r["episode"] for r in rows)[:10]
        raise KeyError(f"episode {episode!r} is not in {out} (some episodes: {near})")
    if len(mine) > 1:
        raise KeyError(
            f"{episode!r} was split into parts {[r['episode'] for r in mine]}; inspect one of them"
        )
    return mine[0]


def _info(out: Path) -> dict:
    try:
        info = read_json(out / "meta" / "info.json")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _tokenizer_type(out: Path) -> str:
    try:
        doc = read_json(out / "meta" / "tokenizer.json")
    except (OSError, ValueError):
        return ""
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else ""


def dim_names(names: object, width: int, stream: str) -> list[str]:
    """info.json's names of a stream's dimensions when they are ``width`` distinct non-empty strings,
    else ``<stream>_<d>``: the result always has ``width`` distinct entries."""
    ok = (
        isinstance(names, list)
        and len(names) == width
        and all(isinstance(n, str) and n for n in names)
        and len(set(names)) == width
    )
    return list(names) if ok else [f"{stream}_{d}" for d in range(width)]


def _layout(info: dict, width: int) -> dict[str, tuple[int, int]]:
    """info.json ``embodiment.action_layout`` (named slices of action.npy), only the slices that fit."""
    emb = info.get("embodiment")
    layout = emb.get("action_layout") if isinstance(emb, dict) else None
    if not isinstance(layout, dict):
        return {}
    out = {}
    for name, sl in layout.items():
        if isinstance(sl, list) and len(sl) == 2 and all(isinstance(v, int) for v in sl):
            if 0 <= sl[0] < sl[1] <= width:
                out[str(name)] = (sl[0], sl[1])
    return out


def _per_dim_tokens(seqs: list[np.ndarray]) -> np.ndarray | None:
    """[T, D] bins of the current step when every sample's tokens are [D] (or a [H, D] chunk)."""
    if len({t.shape for t in seqs}) != 1 or seqs[0].ndim not in (1, 2):
        return None
    tok = np.stack([t[0] if t.ndim == 2 else t for t in seqs])
    return tok if tok.ndim == 2 else None


def segments(ep: dict) -> list[tuple[int, int, str]]:
    """The instruction segments as (first index, last index + 1, text), in step order."""
    texts = ep["instructions"]
    starts = [0] + [i for i in range(1, len(texts)) if texts[i] != texts[i - 1]]
    return [(a, b, texts[a]) for a, b in zip(starts, starts[1:] + [len(texts)], strict=True)]


def summary(ep: dict) -> str:
    row, t = ep["row"], ep["times"]
    lines = [
        f"episode {ep['episode']} (source {row['source_episode']}, {row['embodiment'] or 'embodiment unset'})",
        f"steps {len(t)} from t={t[0]:.3f}s to t={t[-1]:.3f}s; shards: {', '.join(row['shards'])}",
        "instructions:",
    ]
    for a, b, text in segments(ep):
        lines.append(f"  steps {a}-{b - 1} (t={t[a]:.2f}s): {text}")
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
