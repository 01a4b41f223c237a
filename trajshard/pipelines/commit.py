"""Commit: promote the parts to final shard names and write ``meta/`` (with the doctor's findings on
the output, ``quality.json``) and the dataset card.

Every file is written to a temporary name and renamed. ``info.json`` is written last: a dataset
without it is an unfinished job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from trajshard import __version__
from trajshard.io import json_document
from trajshard.pipelines.actions import gripper_convention
from trajshard.pipelines.embodiment import embodiment_problems, embodiment_record
from trajshard.pipelines.facts import EpisodeFacts, GroupResult, IngestError, IngestReport
from trajshard.pipelines.merge import Pass1Summary
from trajshard.pipelines.plan import Group
from trajshard.pipelines.samples import sample_features
from trajshard.pipelines.shards import PartInfo, promote_parts, shard_name
from trajshard.pipelines.stats import stats_document
from trajshard.pipelines.tasks import TaskContext
from trajshard.reports.card import dataset_card
from trajshard.reports.doctor import doctor_output
from trajshard.reports.histogram import Histogram, bin_counts
from trajshard.reports.plots import histogram_heatmap_png
from trajshard.reports.summary import loss_lines
from trajshard.schemas.metadata import EPISODES_VERSION, INFO_VERSION, MANIFEST_VERSION
from trajshard.schemas.problems import Problem
from trajshard.schemas.raw_layout import RAW_LAYOUT_VERSION
from trajshard.schemas.sample import SHARD_SAMPLE_VERSION, json_bytes
from trajshard.storage import Store, redact
from trajshard.tokenizers.guards import guard_lines

log = logging.getLogger("trajshard.ingest")


@dataclass
class Outcome:
    """What the passes produced, settled: pass 1's summary and every group with its result."""

    n_input: int
    pass1: Pass1Summary
    groups: list[tuple[Group, GroupResult]]
    fingerprint: str = ""  # of the source's listing (job.job_identity)
    notes: list[str] = field(default_factory=list)  # what the source's reader left out, in words

    @property
    def quarantined(self) -> list[Problem]:
        return self.pass1.quarantined + [q for _, r in self.groups for q in r.quarantined]


@dataclass
class Shards:
    """The promoted shards in split order: name (``shards/...``), facts and split of each."""

    names: list[str]
    parts: list[PartInfo]
    splits: list[str]


def commit(
    store: Store, ctx: TaskContext, outcome: Outcome, before_promotion: Callable[[list], None]
) -> IngestReport:
    quarantined = sorted(outcome.quarantined, key=lambda q: q.where)
    bad = {q.where for q in quarantined}
    written = [f for f in outcome.pass1.facts if f.source_episode not in bad]
    shards = _promote(store, ctx.cfg.output.splits, outcome.groups, before_promotion)
    split_of = {e: g.split for g, r in outcome.groups for p in r.parts for e in p.episodes}
    _json(store, "manifest.json", _manifest(shards))
    store.write_bytes("meta/episodes.parquet", _episodes_parquet(written, _shards_of(shards), split_of))
    filtered = _records(store, ctx, outcome, quarantined)
    streams = outcome.pass1.streams
    _json(store, "stats.json", stats_document(streams))
    _json(store, "tokenizer.json", ctx.tokenizer)
    roundtrip = _roundtrip([r for _, r in outcome.groups])
    names = list(written[0].action_names) if written else []
    if roundtrip is not None:
        _json(store, "roundtrip.json", roundtrip.to_json(names, ctx.tokenizer["guards"]))
    has_picture = _histogram_picture(store, ctx.tokenizer, roundtrip, names)
    guards = ctx.tokenizer["guards"]
    info = _info(ctx, outcome, written, shards)
    info["counts"]["episodes_written"] = len({f.source_episode for f in written})
    info["counts"]["parts"] = len(written)
    info["counts"]["episodes_quarantined"] = len(quarantined)
    info["counts"]["episodes_filtered"] = len(filtered)
    info["splits"] = {
        split: {
            "shards": [n for n, s in zip(shards.names, shards.splits, strict=True) if s == split],
            "samples": sum(p.samples for p, s in zip(shards.parts, shards.splits, strict=True) if s == split),
            "episodes": sum(split_of.get(f.episode) == split for f in written),
        }
        for split in ctx.cfg.output.splits
    }
    quality = _quality(store, ctx, info)
    card = dataset_card(info, streams, quarantined, has_picture, guards, filtered, quality)
    store.write_bytes("README.md", card.encode())
    _json(store, "info.json", info)
    frames = sum(r.frames_written for _, r in outcome.groups)
    report = IngestReport.of_counts(redact(store.location), info["counts"], frames, 0.0)
    report.warnings = (
        [f"source: {n}" for n in outcome.notes]
        + loss_lines(info, images=True)
        + guard_lines(ctx.tokenizer["guards"])
    )
    return report


def _records(store: Store, ctx: TaskContext, outcome: Outcome, quarantined: list[Problem]) -> list[Problem]:
    """meta/quarantine.jsonl, meta/filtered.jsonl and, with trims, meta/trims.jsonl; the filtered
    episodes, in id order."""
    filtered = sorted(outcome.pass1.filtered, key=lambda q: q.where)
    for name, records in (("quarantine", quarantined), ("filtered", filtered)):
        store.write_bytes(f"meta/{name}.jsonl", b"".join(json_bytes(q.to_record()) + b"\n" for q in records))
    if ctx.cfg.filter.trims:
        store.write_bytes("meta/trims.jsonl", _trims(outcome.pass1.facts))
    return filtered


def _trims(facts: list[EpisodeFacts]) -> bytes:
    """meta/trims.jsonl: per source episode, the idle ticks trimmed off its start and its end."""
    firsts = {}
    for f in facts:
        firsts.setdefault(f.source_episode, f)
    return b"".join(
        json_bytes({"episode": e, "start_ticks": f.trimmed[0], "end_ticks": f.trimmed[1]}) + b"\n"
        for e, f in sorted(firsts.items())
    )


def _quality(store: Store, ctx: TaskContext, info: dict) -> dict | None:
    """meta/quality.json: ``trajshard doctor``'s findings on the output just written (info.json is not
    yet). A doctor that fails costs the findings, never the dataset: it is logged and the job goes on."""
    try:
        report = doctor_output(store.location, info, source=ctx.source).to_json()
    except Exception as exc:  # noqa: BLE001 - the shards and metadata are fine without it
        log.warning("doctor could not run on %s, no meta/quality.json: %s", redact(store.location), exc)
        return None
    _json(store, "quality.json", report)
    return report


def _promote(store: Store, splits, groups: list[tuple[Group, GroupResult]], before_promotion) -> Shards:
    by_split = {split: [p for g, r in groups if g.split == split for p in r.parts] for split in splits}
    before_promotion(
        [(p.name, shard_name(split, i)) for split, mine in by_split.items() for i, p in enumerate(mine)]
    )
    parts = [p for split, mine in by_split.items() for p in promote_parts(store, split, mine)]
    split_of_part = [split for split, mine in by_split.items() for _ in mine]
    return Shards([f"shards/{p.name}" for p in parts], parts, split_of_part)


def _manifest(shards: Shards) -> dict:
    return {
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
            for n, p, split in zip(shards.names, shards.parts, shards.splits, strict=True)
        ],
    }


def _shards_of(shards: Shards) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n, p in zip(shards.names, shards.parts, strict=True):
        for e in p.episodes:
            out.setdefault(e, []).append(n)
    return out


def _roundtrip(results: list[GroupResult]):
    roundtrip = None
    for r in results:
        if r.roundtrip is not None and r.roundtrip.count:
            roundtrip = r.roundtrip if roundtrip is None else roundtrip.merge(r.roundtrip)
    return roundtrip


def info_header() -> dict:
    """The keys every info.json starts with: its schema and the versions of what it describes."""
    return {
        "schema": "trajshard.info",
        "version": INFO_VERSION,
        "trajshard_version": __version__,
        "shard_sample_version": SHARD_SAMPLE_VERSION,
        "episodes_version": EPISODES_VERSION,
    }


def _info(ctx: TaskContext, outcome: Outcome, written: list[EpisodeFacts], shards: Shards) -> dict:
    """info.json; the written counts and the splits are filled in by ``commit``."""
    cfg, tok, vocab = ctx.cfg, ctx.tokenizer, ctx.vocab
    first = written[0] if written else outcome.pass1.facts[0]
    return {
        **info_header(),
        "source": {
            "format": ctx.source.format,
            "raw_layout_version": RAW_LAYOUT_VERSION if ctx.source.format == "raw" else None,
            "fingerprint": outcome.fingerprint,
            "notes": outcome.notes,
            **({"losses": losses} if (losses := source_losses(outcome.pass1, written)) else {}),
        },
        "config": cfg.output_dict(),
        "fps": cfg.align.fps,
        "clock": cfg.align.clock_label,
        "cameras": list(first.cameras),
        "embodiments": sorted({f.embodiment for f in written}),
        "action_source": first.action_source,
        "state_names": list(first.state_names),
        "action_names": list(first.action_names),
        "features": sample_features(
            list(first.cameras),
            cfg.image.size,
            first.shape[1],
            first.shape[0],
            cfg.tokenizer.horizon,
            tok["token_range"],
            [min(vocab["ids"]), max(vocab["ids"])] if vocab else None,
            chunked=tok["type"] == "fast",
        ),
        "tokenizer": {"type": tok["type"], "bins": tok["bins"], "token_range": tok["token_range"]},
        "vocab": vocab,
        "gripper": gripper_convention(cfg.align.gripper) if cfg.align.gripper else None,
        "embodiment": _embodiment(cfg, first, written),
        "counts": {
            "episodes_input": outcome.n_input,
            "samples": sum(p.samples for p in shards.parts),
            "shards": len(shards.parts),
        },
        "stats_hash": stats_document(outcome.pass1.streams)["hash"],
    }


def source_losses(pass1: Pass1Summary, written: list[EpisodeFacts]) -> dict:
    """info.json ``source.losses``, only the kinds where something was left out (absent when nothing
    was, so such a dataset keeps its bytes): per camera, episodes the camera list dropped it from;
    per stream, written episodes cut short because it ended first; per camera, ticks dropped for
    lack of a frame within tolerance."""
    ticks: dict[str, int] = {}
    for f in written:
        for cam in f.cameras:
            if cam in f.report and f.report[cam].dropped_ticks:
                ticks[cam] = ticks.get(cam, 0) + f.report[cam].dropped_ticks
    out = {**pass1.losses, "ticks_without_frame": dict(sorted(ticks.items()))}
    return {k: v for k, v in out.items() if v}


def _embodiment(cfg, first: EpisodeFacts, written: list[EpisodeFacts]) -> dict:
    """info.json ``embodiment``; a layout slice or a camera that does not fit the data fails the job."""
    action_dim, state_dim = first.shape[0], first.shape[1]
    problems = embodiment_problems(cfg.embodiment, action_dim, state_dim, first.cameras)
    if problems:
        raise IngestError("; ".join(problems))
    return embodiment_record(
        cfg.embodiment,
        cfg.align.fps,
        cfg.image,
        action_dim,
        state_dim,
        first.cameras,
        [f.embodiment for f in written],
    )


def _json(store: Store, name: str, obj: object) -> None:
    store.write_bytes(f"meta/{name}", json_document(obj))


def _histogram_picture(store: Store, tok_json: dict, roundtrip, names: list[str]) -> bool:
    """meta/histogram.png from the token counts pass 2 gathered (per-dimension tokenizers only)."""
    if roundtrip is None or roundtrip.token_counts is None:
        return False
    counts = bin_counts(roundtrip.token_counts, tok_json)
    histogram_heatmap_png(
        Histogram(
            counts, roundtrip.sq, names, roundtrip.count, {g["dim"]: g["kind"] for g in tok_json["guards"]}
        ),
        lambda data: store.write_bytes("meta/histogram.png", data),
    )
    return True


# episodes.parquet's "alignment" column: one row per stream of an episode part
ALIGNMENT_TYPE = pa.list_(
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


def _episodes_parquet(
    written: list[EpisodeFacts], shards_of: dict[str, list[str]], split_of: dict[str, str]
) -> bytes:
    report_type = ALIGNMENT_TYPE
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
