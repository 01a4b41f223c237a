"""Commit: promote the parts to final shard names and write ``meta/`` and the dataset card.

Every file is written to a temporary name and renamed. ``info.json`` is written last: a dataset
without it is an unfinished job.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import pyarrow.parquet as pq

from trajshard import __version__
from trajshard.config import JobConfig
from trajshard.pipelines.actions import gripper_convention
from trajshard.pipelines.passes import EpisodeFacts, GroupResult, Quarantined
from trajshard.pipelines.plan import Group
from trajshard.pipelines.samples import sample_features
from trajshard.pipelines.shards import json_document, promote_parts, shard_name
from trajshard.pipelines.stats import stats_document
from trajshard.reports.card import dataset_card
from trajshard.schemas.metadata import EPISODES_VERSION, INFO_VERSION, MANIFEST_VERSION
from trajshard.schemas.raw_layout import RAW_LAYOUT_VERSION
from trajshard.schemas.sample import SHARD_SAMPLE_VERSION, json_bytes
from trajshard.storage import Store, redact


def commit(
    store: Store,
    source: str,
    fmt: str,
    cfg: JobConfig,
    facts: list[EpisodeFacts],
    quarantined: list[Quarantined],
    groups: list[tuple[Group, GroupResult]],
    stats_streams: dict,
    tok_json: dict,
    vocab_json: dict | None,
    n_input: int,
    seconds: float,
    report_type: type,
    before_promotion: Callable[[list[tuple[str, str]]], None] | None = None,
):
    quarantined = quarantined + [q for _, g in groups for q in g.quarantined]
    bad = {q.episode for q in quarantined}
    written = [f for f in facts if f.source_episode not in bad]
    n_written = len({f.source_episode for f in written})
    by_split = {split: [p for g, r in groups if g.split == split for p in r.parts] for split in cfg.splits}
    if before_promotion is not None:
        before_promotion(
            [(p.name, shard_name(split, i)) for split, mine in by_split.items() for i, p in enumerate(mine)]
        )
    parts = [p for split, mine in by_split.items() for p in promote_parts(store, split, mine)]
    split_of_part = [split for split, mine in by_split.items() for _ in mine]
    shard_names = [f"shards/{p.name}" for p in parts]
    split_of_episode = {e: g.split for g, r in groups for p in r.parts for e in p.episodes}

    manifest = {
        "schema": "trajshard.manifest",
        "version": MANIFEST_VERSION,
        "shards": [
            {
                "name": n,
                "split": split,
                "samples": p.samples,
                "bytes": p.bytes,
                "sha256": p.sha256,
                "episodes": p.episodes,
            }
            for n, p, split in zip(shard_names, parts, split_of_part, strict=True)
        ],
    }
    _json(store, "manifest.json", manifest)

    shards_of: dict[str, list[str]] = {}
    for n, p in zip(shard_names, parts, strict=True):
        for e in p.episodes:
            shards_of.setdefault(e, []).append(n)
    store.write_bytes("meta/episodes.parquet", _episodes_parquet(written, shards_of, split_of_episode))
    quarantined.sort(key=lambda q: q.episode)
    store.write_bytes("meta/quarantine.jsonl", b"".join(json_bytes(q.to_json()) + b"\n" for q in quarantined))
    _json(store, "stats.json", stats_document(stats_streams))
    _json(store, "tokenizer.json", tok_json)
    roundtrip = None
    for _, g in groups:
        if g.roundtrip is not None and g.roundtrip.count:
            roundtrip = g.roundtrip if roundtrip is None else roundtrip.merge(g.roundtrip)
    names = list(written[0].action_names) if written else []
    if roundtrip is not None:
        _json(store, "roundtrip.json", roundtrip.to_json(names))
    has_picture = _histogram_picture(store, tok_json, roundtrip, names)

    first = written[0] if written else facts[0]
    samples = sum(p.samples for p in parts)
    info = {
        "schema": "trajshard.info",
        "version": INFO_VERSION,
        "trajshard_version": __version__,
        "shard_sample_version": SHARD_SAMPLE_VERSION,
        "episodes_version": EPISODES_VERSION,
        "source": {"format": fmt, "raw_layout_version": RAW_LAYOUT_VERSION if fmt == "raw" else None},
        "config": cfg.output_dict(),
        "fps": cfg.fps,
        "clock": cfg.clock if cfg.clock != "fixed" else f"fixed {cfg.fps} Hz",
        "cameras": list(first.cameras),
        "embodiments": sorted({f.embodiment for f in written}),
        "action_source": first.action_source,
        "state_names": list(first.state_names),
        "action_names": list(first.action_names),
        "features": sample_features(
            list(first.cameras),
            cfg.image_size,
            first.shape[1],
            first.shape[0],
            cfg.horizon,
            tok_json["token_range"],
            [min(vocab_json["ids"]), max(vocab_json["ids"])] if vocab_json else None,
            chunked=tok_json["type"] == "fast",
        ),
        "tokenizer": {
            "type": tok_json["type"],
            "bins": tok_json["bins"],
            "token_range": tok_json["token_range"],
        },
        "vocab": vocab_json,
        "gripper": gripper_convention(cfg.gripper) if cfg.gripper else None,
        "counts": {
            "episodes_input": n_input,
            "episodes_written": n_written,
            "parts": len(written),
            "episodes_quarantined": len(quarantined),
            "samples": samples,
            "shards": len(parts),
        },
        "splits": {
            split: {
                "shards": [n for n, s in zip(shard_names, split_of_part, strict=True) if s == split],
                "samples": sum(p.samples for p, s in zip(parts, split_of_part, strict=True) if s == split),
                "episodes": sum(split_of_episode.get(f.episode) == split for f in written),
            }
            for split in cfg.splits
        },
        "stats_hash": stats_document(stats_streams)["hash"],
    }
    store.write_bytes("README.md", dataset_card(info, stats_streams, quarantined, has_picture).encode())
    _json(store, "info.json", info)
    return report_type(
        redact(store.location),
        n_input,
        n_written,
        len(quarantined),
        samples,
        len(parts),
        sum(g.frames_written for _, g in groups),
        seconds,
    )


def _json(store: Store, name: str, obj: object) -> None:
    store.write_bytes(f"meta/{name}", json_document(obj))


def _histogram_picture(store: Store, tok_json: dict, roundtrip, names: list[str]) -> bool:
    """meta/histogram.png from the token counts pass 2 gathered (per-dimension tokenizers only)."""
    if roundtrip is None or roundtrip.token_counts is None:
        return False
    from trajshard.reports.histogram import Histogram, bin_counts
    from trajshard.reports.plots import histogram_heatmap_png

    counts = bin_counts(roundtrip.token_counts, tok_json)
    histogram_heatmap_png(
        Histogram(counts, roundtrip.sq, names, roundtrip.count),
        lambda data: store.write_bytes("meta/histogram.png", data),
    )
    return True


def _episodes_parquet(
    written: list[EpisodeFacts], shards_of: dict[str, list[str]], split_of: dict[str, str]
) -> bytes:
    report_type = pa.list_(
        pa.struct(
            [
                ("stream", pa.string()),
                ("samples", pa.int64()),
                ("rate_hz", pa.float64()),
                ("max_dt_s", pa.float64()),
                ("p95_dt_s", pa.float64()),
                ("dropped_ticks", pa.int64()),
                ("gaps", pa.int64()),
                ("max_gap_s", pa.float64()),
            ]
        )
    )
    table = pa.table(
        {
            "episode": pa.array([f.episode for f in written], pa.string()),
            "split": pa.array([split_of.get(f.episode, "") for f in written], pa.string()),
            "steps": pa.array([f.steps for f in written], pa.int64()),
            "shards": pa.array([shards_of.get(f.episode, []) for f in written], pa.list_(pa.string())),
            "start_time": pa.array([f.start_time for f in written], pa.float64()),
            "end_time": pa.array([f.end_time for f in written], pa.float64()),
            "source_episode": pa.array([f.source_episode for f in written], pa.string()),
            "align_error_max_s": pa.array(
                [max(r.max_dt_s for r in f.report.values()) for f in written], pa.float64()
            ),
            "dropped_ticks": pa.array(
                [sum(r.dropped_ticks for r in f.report.values()) for f in written], pa.int64()
            ),
            "alignment": pa.array(
                [[r.to_row(k) for k, r in sorted(f.report.items())] for f in written], report_type
            ),
            "embodiment": pa.array([f.embodiment for f in written], pa.string()),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()
