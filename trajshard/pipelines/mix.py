"""``trajshard mix MIXTURE OUT``: a weighted mixture of datasets written as one ordinary trajshard dataset.

The mixture file is the loader's (loading/mixture.py, with an optional ``[target]`` layout; without
one, the defaults: every role, the widest widths). The output holds ``samples_per_epoch`` samples: the
draws of one worker role in epoch 0 of the loader's order (the file's ``seed``), each put into the
target layout (loading/standard.py) and written in draw order. Two passes over those draws, both
deterministic: the first gathers the statistics and fits the tokenizer, the second writes. The bytes
depend only on the mixture file, the datasets and the options.

What the output holds (docs/loader.md#trajshard-mix):

- every sample's ``<role>.jpg`` (a black JPEG where its dataset lacks the role), ``image_mask.npy``,
  the padded ``state.npy``/``action.npy`` with ``state_mask.npy``/``action_mask.npy``, ``tokens.npy``
  (and ``token_ids.npy``, ``action_chunk.npy``/``action_chunk_mask.npy`` when the datasets have them),
  ``meta.json`` with the sample's provenance (``dataset_name``, ``source``: dataset, key, episode, step);
- one tokenizer for every sample: uniform, with the datasets' bins, mode and normalization mode, fitted
  on the actions written (each dimension over the samples that have it, padding excluded), so its
  statistics are the mixture's exact ones (quantiles as exact as an ingest's);
- ``stats.json`` of the arrays as stored (padding zeros included: what ``validate`` checks);
  ``meta/mixture.json``: the layout, each dataset's provenance, weight and share, its own
  ``tokenizer.json`` and its embodiment, and the statistics the tokenizer was fitted on.

An "episode" of the output is a block of ``block`` consecutive samples (``m000000``, ``m000001``,
...), not a recording: ``meta.json`` ``source`` names each sample's recording.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trajshard.io import json_document, parse_size
from trajshard.loading.draws import ReadOptions, mixture_draws
from trajshard.loading.mixture import Mixture, read_mixture
from trajshard.loading.source import LoaderError
from trajshard.loading.standard import Standardizer, Target
from trajshard.pipelines.commit import ALIGNMENT_TYPE, info_header
from trajshard.pipelines.shards import PartInfo, PartWriter, promote_parts
from trajshard.pipelines.stats import StreamStats, merge_all, stats_document
from trajshard.reports.mixture_card import mixture_card
from trajshard.schemas.metadata import MANIFEST_VERSION
from trajshard.schemas.sample import json_bytes, npy_bytes
from trajshard.storage import Store
from trajshard.tokenizers.normalize import Normalizer
from trajshard.tokenizers.pooled import common_uniform
from trajshard.tokenizers.uniform import UniformTokenizer

SPLIT = "train"
BLOCK = 1000
STAT_CHUNK = 4096


@dataclass
class MixReport:
    out: str
    samples: int
    shards: int
    drawn: dict[str, int] = field(default_factory=dict)  # samples per dataset
    seconds: float = 0.0


@dataclass
class _Gathered:
    """What pass 1 learns from the draws: the stored arrays' statistics, each dimension's real values'."""

    drawn: Counter
    stored: dict[str, StreamStats]  # "action", "state": padded, as written
    real: list[StreamStats]  # per action dimension, 1-D, over the samples that have it


def run_mix(
    mixture: str | Path,
    out: str | Path,
    *,
    seed: int | None = None,
    samples: int | None = None,
    shuffle_buffer: int = 1000,
    shard_size: str | int = "1GB",
    block: int = BLOCK,
) -> MixReport:
    """Write the mixture into OUT (which must not exist or be empty) as one trajshard dataset."""
    t0 = time.monotonic()
    mix = read_mixture(mixture)
    target = mix.target or Target()
    if target.actions != "pad":
        raise LoaderError('trajshard mix writes one width per member: use actions = "pad" in [target]')
    standard = Standardizer.build(
        mix.sources, mix.names, mix.camera_roles, mix.weights, target, decode_images=False
    )
    seed = seed if seed is not None else (mix.seed or 0)
    n = samples if samples is not None else mix.samples_per_epoch
    if n < 1 or block < 1 or shuffle_buffer < 0:
        raise ValueError("samples and block must be positive, shuffle_buffer 0 or more")
    out_path = Path(out)
    if out_path.exists() and any(out_path.iterdir()):
        raise ValueError(f"{out}: exists and is not empty")

    def draws():
        return mixture_draws(
            mix.sources,
            mix.weights,
            n,
            ReadOptions(shuffle_buffer, shuffle_shards=True, decode_images=False),
            seed=seed,
            epoch=0,
            role=0,
            roles=1,
            skip=0,
        )

    gathered = _gather(standard, draws())
    tokenizer, real_stats = _fit(standard, gathered)
    store = Store(out_path)
    store.makedirs("meta")
    writer = PartWriter(store, SPLIT, 0, parse_size(shard_size))
    try:
        for i, sample in enumerate(draws()):
            d = sample["dataset"]
            episode = f"m{i // block:06d}"
            steps = min(block, n - i // block * block)
            writer.write(
                _out_sample(standard, tokenizer, standard.apply(sample, d), i % block, episode, steps),
                episode,
            )
        parts = writer.close()
    except BaseException:
        writer.abort()
        raise
    parts = promote_parts(store, SPLIT, parts)
    options = {
        "mixture": str(mixture),
        "seed": seed,
        "samples": n,
        "shuffle_buffer": shuffle_buffer,
        "shard_size": shard_size,
        "block": block,
    }
    _commit(store, mix, standard, tokenizer, gathered, real_stats, parts, options, n, block)
    return MixReport(
        str(out_path),
        n,
        len(parts),
        {mix.names[d]: c for d, c in sorted(gathered.drawn.items())},
        time.monotonic() - t0,
    )


def _gather(standard: Standardizer, draws) -> _Gathered:
    drawn: Counter = Counter()
    stored: dict[str, list[StreamStats]] = {"action": [], "state": []}
    real: list[list[StreamStats]] = [[] for _ in range(standard.action_width)]
    rows: dict[str, list] = {"action": [], "state": [], "mask": []}

    def flush() -> None:
        if not rows["action"]:
            return
        action, mask = np.stack(rows["action"]), np.stack(rows["mask"])
        stored["action"].append(StreamStats.from_values(action))
        stored["state"].append(StreamStats.from_values(np.stack(rows["state"])))
        for j in range(standard.action_width):
            values = action[mask[:, j], j]
            if len(values):
                real[j].append(StreamStats.from_values(values[:, None]))
        for v in rows.values():
            v.clear()

    for sample in draws:
        d = sample["dataset"]
        drawn[d] += 1
        s = standard.apply(sample, d)
        rows["action"].append(s["action"])
        rows["state"].append(s["state"])
        rows["mask"].append(s["action_mask"])
        if len(rows["action"]) == STAT_CHUNK:
            flush()
    flush()
    return _Gathered(
        drawn,
        {k: merge_all(v) for k, v in stored.items()},
        [merge_all(v) if v else None for v in real],
    )


def _fit(standard: Standardizer, g: _Gathered) -> tuple[UniformTokenizer, dict]:
    """The output's tokenizer: the datasets' kind of uniform tokenizer, fitted on the actions written
    (each dimension over the samples that have it)."""
    width = standard.action_width
    try:
        bins, mode, norm, mask = common_uniform([v.tokenizer for v in standard.views], width)
    except ValueError as exc:
        raise LoaderError(f"trajshard mix: {exc}") from exc
    per_dim = [st.to_json() if st is not None else None for st in g.real]
    keys = ("min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99")
    real = {k: [p[k][0] if p else 0.0 for p in per_dim] for k in keys}
    real["counts"] = [p["count"] if p else 0 for p in per_dim]
    real["quantile_method"] = sorted({p["quantile_method"] for p in per_dim if p})
    return UniformTokenizer(Normalizer.fit(norm, real, mask), bins, mode), real


def _out_sample(
    standard: Standardizer, tok: UniformTokenizer, s: dict, step: int, episode: str, steps: int
) -> dict:
    values = s["action_chunk"] if "action_chunk" in s else s["action"]
    tokens = tok.encode(values)
    sample: dict = {"__key__": f"{episode}_{step:06d}"}
    for role in standard.roles:
        sample[f"{role}.jpg"] = s["images"][role]
    arrays = {
        "image_mask": s["image_mask"],
        "state": s["state"],
        "state_mask": s["state_mask"],
        "action": s["action"],
        "action_mask": s["action_mask"],
        "tokens": tokens,
    }
    if "token_ids" in s:
        ids = np.asarray(standard.vocab["ids"], dtype=np.int64)
        arrays["token_ids"] = ids[tokens.astype(np.int64) - int(standard.vocab["token_lo"])]
    for name in ("action_chunk", "action_chunk_mask"):
        if name in s:
            arrays[name] = s[name]
    for name, a in arrays.items():
        sample[f"{name}.npy"] = npy_bytes(a)
    meta = s["meta"]
    sample["meta.json"] = json_bytes(
        {
            "episode": episode,
            "step": step,
            "num_steps": steps,
            "time": meta["time"],
            "instruction": meta["instruction"],
            "embodiment": meta["embodiment"],
            "is_first": meta["is_first"],
            "is_last": meta["is_last"],
            "dataset_name": meta["dataset_name"],
            "action_dim": meta["action_dim"],
            "state_dim": meta["state_dim"],
            "fps": meta["fps"],
            "source": {
                "dataset": meta["dataset_name"],
                "key": s["key"],
                "episode": meta["episode"],
                "step": meta["step"],
            },
        }
    )
    return sample


def _features(standard: Standardizer, tok: UniformTokenizer, vocab: dict | None, chunk: list | None) -> dict:
    a, st, size, r = standard.action_width, standard.state_width, standard.image_size, len(standard.roles)
    tok_shape = [*(chunk or []), a]
    feats: dict[str, dict] = {
        f"{role}.jpg": {"dtype": "uint8", "shape": [size, size, 3], "format": "JPEG", "mode": "RGB"}
        for role in standard.roles
    }
    feats.update(
        {
            "image_mask.npy": {"dtype": "bool", "shape": [r]},
            "state.npy": {"dtype": "float32", "shape": [st]},
            "state_mask.npy": {"dtype": "bool", "shape": [st]},
            "action.npy": {"dtype": "float32", "shape": [a]},
            "action_mask.npy": {"dtype": "bool", "shape": [a]},
            "tokens.npy": {"dtype": "int32", "shape": tok_shape, "range": tok.token_range},
            "meta.json": {"dtype": "json", "shape": []},
        }
    )
    if vocab is not None:
        feats["token_ids.npy"] = {
            "dtype": "int64",
            "shape": tok_shape,
            "range": [min(vocab["ids"]), max(vocab["ids"])],
        }
    if chunk:
        feats["action_chunk.npy"] = {"dtype": "float32", "shape": [*chunk, a]}
        feats["action_chunk_mask.npy"] = {"dtype": "bool", "shape": chunk}
    return feats


def _commit(
    store: Store,
    mix: Mixture,
    standard: Standardizer,
    tok: UniformTokenizer,
    g: _Gathered,
    real: dict,
    parts: list[PartInfo],
    options: dict,
    n: int,
    block: int,
) -> None:
    names = [f"shards/{p.name}" for p in parts]
    manifest = {
        "schema": "trajshard.manifest",
        "version": MANIFEST_VERSION,
        "shards": [
            {
                "name": name,
                "split": SPLIT,
                "samples": p.samples,
                "bytes": p.bytes,
                "sha256": p.sha256,
                "episodes": p.episodes,
            }
            for name, p in zip(names, parts, strict=True)
        ],
    }
    episodes = [f"m{b:06d}" for b in range(-(-n // block))]
    shards_of: dict[str, list[str]] = {}
    for name, p in zip(names, parts, strict=True):
        for e in p.episodes:
            shards_of.setdefault(e, []).append(name)
    streams = {k: v.to_json() for k, v in g.stored.items()}
    tok_doc = {**tok.to_json(), "guards": []}
    first = mix.sources[0]
    chunk = first.features.get("action_chunk.npy", {}).get("shape", [None])[:-1] or None
    vocab = standard.vocab if "token_ids.npy" in first.features else None
    mixture_doc = _mixture_document(mix, standard, g, real, options, n)
    written = (
        episodes,
        names,
        parts,
        n,
        {d["name"]: d["drawn"] for d in mixture_doc["datasets"] if d["drawn"]},
    )
    info = _info(mix, standard, tok_doc, (tok, vocab, chunk), options, written, streams)
    write = store.write_bytes
    write("meta/manifest.json", json_document(manifest))
    write("meta/episodes.parquet", _episodes_parquet(episodes, n, block, shards_of))
    write("meta/quarantine.jsonl", b"")
    write("meta/filtered.jsonl", b"")
    write("meta/stats.json", json_document(stats_document(streams)))
    write("meta/tokenizer.json", json_document(tok_doc))
    write("meta/mixture.json", json_document(mixture_doc))
    write("README.md", mixture_card(info, mixture_doc).encode())
    write("meta/info.json", json_document(info))


def _mixture_document(
    mix: Mixture, standard: Standardizer, g: _Gathered, real: dict, options: dict, n: int
) -> dict:
    """meta/mixture.json: the layout, the options, and per dataset its weight, draws and tokenizer."""
    drawn = {mix.names[d]: int(c) for d, c in sorted(g.drawn.items())}
    return {
        "schema": "trajshard.mixture",
        "version": 1,
        "layout": standard.to_json(),
        "options": options,
        "datasets": [
            {
                "name": name,
                "path": str(src.root),
                "split": src.split,
                "fingerprint": src.fingerprint(),
                "samples": src.samples,
                "weight": w,
                "drawn": drawn.get(name, 0),
                "share": drawn.get(name, 0) / n,
                "embodiment": src.info.get("embodiment"),
                "gripper": src.info.get("gripper"),
                "tokenizer": view.tokenizer,
            }
            for name, src, w, view in zip(mix.names, mix.sources, mix.weights, standard.views, strict=True)
        ],
        "fitted_on": real,
    }


def _info(
    mix: Mixture,
    standard: Standardizer,
    tok_doc: dict,
    tokens: tuple,
    options: dict,
    written: tuple,
    streams: dict,
) -> dict:
    """meta/info.json of a mixture; ``tokens``: (tokenizer, vocabulary, chunk shape); ``written``:
    (episodes, shard names, parts, samples, per-dataset draws)."""
    tok, vocab, chunk = tokens
    episodes, names, parts, n, drawn = written
    fps = {v.fps for v in standard.views}
    return {
        **info_header(),
        "source": {
            "format": "mixture",
            "raw_layout_version": None,
            "fingerprint": hashlib.sha256(
                json.dumps([s.fingerprint() for s in mix.sources]).encode()
            ).hexdigest()[:16],
        },
        "config": options,
        "fps": fps.pop() if len(fps) == 1 else 0.0,
        "clock": "mixture",
        "cameras": list(standard.roles),
        "embodiments": sorted({v.embodiment for v in standard.views}),
        "action_source": "mixture",
        "state_names": [],
        "action_names": [],
        "features": _features(standard, tok, vocab, chunk),
        "tokenizer": {
            "type": tok_doc["type"],
            "bins": tok_doc["bins"],
            "token_range": tok_doc["token_range"],
        },
        "vocab": vocab,
        "gripper": None,
        "mixture": {
            "file": "meta/mixture.json",
            "datasets": list(mix.names),
            "drawn": drawn,
            "action_width": standard.action_width,
            "state_width": standard.state_width,
        },
        "counts": {
            "episodes_input": len(episodes),
            "episodes_written": len(episodes),
            "episodes_quarantined": 0,
            "episodes_filtered": 0,
            "parts": len(episodes),
            "samples": n,
            "shards": len(parts),
        },
        "splits": {SPLIT: {"shards": names, "samples": n, "episodes": len(episodes)}},
        "stats_hash": stats_document(streams)["hash"],
    }


def _episodes_parquet(episodes: list[str], n: int, block: int, shards_of: dict[str, list[str]]) -> bytes:
    report_type = ALIGNMENT_TYPE
    steps = [min(block, n - b * block) for b in range(len(episodes))]
    zeros = [0.0] * len(episodes)
    table = pa.table(
        {
            "episode": pa.array(episodes, pa.string()),
            "split": pa.array([SPLIT] * len(episodes), pa.string()),
            "steps": pa.array(steps, pa.int64()),
            "shards": pa.array([shards_of.get(e, []) for e in episodes], pa.list_(pa.string())),
            "start_time": pa.array(zeros, pa.float64()),
            "end_time": pa.array(zeros, pa.float64()),
            "source_episode": pa.array(episodes, pa.string()),
            "align_error_max_s": pa.array(zeros, pa.float64()),
            "dropped_ticks": pa.array([0] * len(episodes), pa.int64()),
            "alignment": pa.array([[] for _ in episodes], report_type),
            "embodiment": pa.array(["mixture"] * len(episodes), pa.string()),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()
