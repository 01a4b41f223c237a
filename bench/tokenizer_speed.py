"""Tokenizer throughput: encode and decode values/s per tokenizer, against the plain numpy OpenVLA formula.

    python bench/tokenizer_speed.py [--repeat 5]

(Not bench/tokenizers.py: run as a script, that name would shadow the Hugging Face `tokenizers`
package that the FAST tokenizer imports.)

Uses the real G1 actions (../shared/data/g1_lerobot_v21, 35,965 steps x 26 dims) when present, else
a synthetic random walk of the same shape. The reference is OpenVLA's formula written inline with
numpy (normalize, clip, digitize / centre lookup), measured in the same run on the same values;
the ratio column is tokenizer values/s divided by the reference's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trajshard.pipelines.stats import StreamStats
from trajshard.tokenizers import fit
from trajshard.tokenizers.chunks import action_chunks

G1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "g1_lerobot_v21" / "data"


def load_actions() -> tuple[str, list[np.ndarray]]:
    files = sorted(G1.glob("chunk-*/episode_*.parquet"))
    if files:
        return "g1-real", [
            np.stack(pq.read_table(f, columns=["action"]).column(0).to_numpy(zero_copy_only=False)).astype(
                np.float32
            )
            for f in files
        ]
    rng = np.random.default_rng(0)
    return "synthetic", [
        np.cumsum(rng.normal(0, 0.05, (360, 26)), axis=0).astype(np.float32) for _ in range(100)
    ]


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    name, episodes = load_actions()
    acts = np.concatenate(episodes)
    merged = StreamStats.from_values(episodes[0])
    for e in episodes[1:]:
        merged = merged.merge(StreamStats.from_values(e))
    stats = merged.to_json()
    n_values = acts.size

    low, high = np.asarray(stats["q01"]), np.asarray(stats["q99"])
    edges = np.linspace(-1, 1, 256)
    centers = (edges[:-1] + edges[1:]) / 2

    def ref_encode():
        span = np.where(high > low, high - low, 1)
        y = np.where(high > low, np.clip(2 * (acts - low) / span - 1, -1, 1), 0)
        return np.digitize(y, edges)

    ref_tokens = ref_encode()

    def ref_decode():
        y = centers[np.clip(ref_tokens - 1, 0, 254)]
        return 0.5 * (y + 1) * (high - low) + low

    ref_enc = n_values / best_of(ref_encode, args.repeat)
    ref_dec = n_values / best_of(ref_decode, args.repeat)

    rows = [("numpy OpenVLA formula (reference)", ref_enc, ref_dec, "")]
    for label, kind, kw in (
        ("uniform (openvla mode)", "uniform", {}),
        ("uniform (bins mode)", "uniform", {"mode": "bins"}),
        ("quantile 256", "quantile", {"sketch": merged}),
    ):
        tok = fit(kind, stats, 256, **kw)
        tokens = tok.encode(acts)
        enc = n_values / best_of(lambda tok=tok: tok.encode(acts), args.repeat)
        dec = n_values / best_of(lambda tok=tok, tokens=tokens: tok.decode(tokens), args.repeat)
        rows.append((label, enc, dec, ""))

    h = 30
    chunks = np.concatenate([action_chunks(e, h)[0][::h] for e in episodes])
    fast = fit("fast", stats, 1024, horizon=h, scale=10.0, chunks=chunks[::2])
    encoded = [fast.encode(c) for c in chunks]
    n_chunk_values = chunks.size
    enc = n_chunk_values / best_of(lambda: [fast.encode(c) for c in chunks], max(1, args.repeat // 2))
    dec = n_chunk_values / best_of(lambda: [fast.decode(t) for t in encoded], max(1, args.repeat // 2))
    mean_tokens = np.mean([len(t) for t in encoded])
    rows.append(
        (
            f"fast (H={h}, scale 10, 1024 BPE)",
            enc,
            dec,
            f"{mean_tokens:.1f} tokens/chunk vs {h * 26} naive ({h * 26 / mean_tokens:.1f}x)",
        )
    )

    print(
        f"# tokenizer throughput on {name}: {acts.shape[0]} steps x {acts.shape[1]} dims, best of {args.repeat}\n"
    )
    print("| tokenizer | encode values/s | decode values/s | encode / ref | decode / ref | note |")
    print("|---|---:|---:|---:|---:|---|")
    for label, e, d, note in rows:
        print(f"| {label} | {e:,.0f} | {d:,.0f} | {e / ref_enc:.2f} | {d / ref_dec:.2f} | {note} |")


if __name__ == "__main__":
    main()
