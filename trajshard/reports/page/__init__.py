"""``trajshard report OUT [--html FILE]``: one self-contained HTML file to open and explore a dataset.

No server and no network: plotly.js (from the ``plotly`` package, the ``report`` extra) is inlined
once, the data is one JSON document in the page, and the page's own script draws the charts and runs
the episode browser. What it holds (docs/cli.md has the figures):

- the action bins of every dimension: occupancy counted over a sample of shards (all of them up to
  ``histogram_samples`` samples), each bin's action interval and decoded value, dead bins, edge share,
  entropy; clip rate and round-trip error from ``meta/roundtrip.json`` (every written step);
- the statistics, split and alignment report of ``trajshard stats``, and histograms over every
  episode of its length and per-stream alignment error (``meta/`` only);
- quarantined and filtered episodes grouped by reason, and the doctor's findings
  (``meta/quality.json``, when the dataset has one);
- an episode browser over a sample of episodes (``episodes.EpisodeBudget``).

Its size does not grow with the dataset beyond the sample: the bins, the tables and the histograms
are fixed-size summaries, and the episodes are a fixed number with a fixed frame budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trajshard.io import read_json, write_bytes_atomic
from trajshard.reports.histogram import Histogram
from trajshard.reports.page.bins import bin_values, count_bins
from trajshard.reports.page.episodes import EpisodeBudget, episode_rows, pick_episodes, read_episodes, rounded
from trajshard.reports.page.render import render_page
from trajshard.reports.page.sections import distributions, grouped_records, quality
from trajshard.reports.summary import stats_report

__all__ = ["EpisodeBudget", "ReportOptions", "ReportFacts", "build_report", "write_report"]


@dataclass(frozen=True)
class ReportOptions:
    histogram_samples: int = 200_000  # samples whose tokens are counted; more: a sample of shards
    budget: EpisodeBudget = field(default_factory=EpisodeBudget)


@dataclass
class ReportFacts:
    """What the page embeds, for the command's summary line and for tests."""

    bytes: int = 0
    seconds: float = 0.0
    episodes_embedded: int = 0
    episodes_total: int = 0
    frames_embedded: int = 0
    histogram_samples: int = 0
    samples_total: int = 0
    histogram_shards: int = 0
    shards_total: int = 0
    quality: bool = False

    def line(self, path: str) -> str:
        hist = (
            f"bins counted over {self.histogram_samples} of {self.samples_total} samples "
            f"({self.histogram_shards} of {self.shards_total} shards)"
            if self.histogram_samples
            else "no per-dimension bins"
        )
        return (
            f"wrote {path} ({self.bytes / 1e6:.1f} MB in {self.seconds:.1f}s): {self.episodes_embedded} of "
            f"{self.episodes_total} episodes embedded with {self.frames_embedded} frames; {hist}; doctor "
            f"findings {'shown' if self.quality else 'absent (no meta/quality.json)'}"
        )


def build_report(out: str | Path, options: ReportOptions | None = None) -> tuple[bytes, ReportFacts]:
    """The HTML page for the finished output ``out`` (a local directory), and what it embeds."""
    start = time.perf_counter()
    out = Path(out)
    options = options or ReportOptions()
    if not (out / "meta" / "info.json").is_file():
        raise ValueError(f"{out}: no meta/info.json (not a finished trajshard output)")
    info = read_json(out / "meta" / "info.json")
    stats = stats_report(out)
    tok_doc = read_json(out / "meta" / "tokenizer.json")
    manifest = read_json(out / "meta" / "manifest.json")["shards"]
    names = {s: _names(info.get(f"{s}_names"), stats["streams"].get(s, {})) for s in ("state", "action")}
    bins = _bins(out, tok_doc, manifest, stats.get("roundtrip"), names["action"], options.histogram_samples)
    qual = quality(out)
    rows = episode_rows(out)
    named = [ex.get("where", "") for f in (qual or {}).get("findings", []) for ex in f.get("examples", [])]
    chosen = pick_episodes(rows, options.budget.episodes, named)
    episodes = read_episodes(out, chosen, list(info["cameras"]), options.budget, float(info["fps"]))
    frames = sum(len(e["frames"][c]["jpg"]) for e in episodes for c in e["frames"])
    facts = ReportFacts(
        episodes_embedded=len(episodes),
        episodes_total=len(rows),
        frames_embedded=frames,
        histogram_samples=bins["samples"] if bins else 0,
        samples_total=sum(s["samples"] for s in manifest),
        histogram_shards=bins["shards"] if bins else 0,
        shards_total=len(manifest),
        quality=qual is not None,
    )
    data = {
        "title": str(out),
        "names": names,
        "cameras": list(info["cameras"]),
        "fps": info["fps"],
        "bins": bins,
        "distributions": distributions(out),
        "episodes": episodes,
        "budget": options.budget.__dict__ | {"histogram_samples": options.histogram_samples},
    }
    page = render_page(
        data,
        info=info,
        stats=stats,
        tok_doc=tok_doc,
        quarantine=grouped_records(out / "meta" / "quarantine.jsonl"),
        filtered=grouped_records(out / "meta" / "filtered.jsonl"),
        quality=qual,
        facts=facts,
    )
    facts.bytes = len(page)
    facts.seconds = time.perf_counter() - start
    return page, facts


def write_report(
    out: str | Path, html: str | Path | None = None, options: ReportOptions | None = None
) -> tuple[Path, ReportFacts]:
    """Write the page to ``html`` (default ``OUT/report.html``)."""
    path = Path(html) if html else Path(out) / "report.html"
    page, facts = build_report(out, options)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, page)
    return path, facts


def _names(declared, stream: dict) -> list[str]:
    dims = len(stream.get("mean", []))
    names = list(declared or stream.get("names") or [])
    return [names[d] if d < len(names) and names[d] else f"dim {d}" for d in range(dims)]


def _bins(out: Path, tok_doc: dict, manifest: list, roundtrip: dict | None, names: list[str], budget: int):
    sample = count_bins(out, tok_doc, manifest, budget)
    if sample is None:
        return None
    lower, upper, centre, token = bin_values(tok_doc, sample.counts.shape[1])
    hist = Histogram(sample.counts, np.zeros(sample.counts.shape[0]), names, sample.samples)
    guards = {g["dim"]: g for g in tok_doc.get("guards", [])}
    rt = {d["dim"]: d for d in (roundtrip or {}).get("dims", [])}
    dims = []
    for d in range(sample.counts.shape[0]):
        s = hist.dim_summary(d)
        r = rt.get(d, {})
        dims.append(
            {
                "dim": d,
                "name": names[d] if d < len(names) else f"dim {d}",
                "counts": s["counts"],
                "lower": rounded(lower[d]),
                "upper": rounded(upper[d]),
                "centre": rounded(centre[d]),
                "token": token[d].tolist(),
                "used": s["used_bins"],
                "dead": s["dead_bins"],
                "edge_share": s["edge_share"],
                "entropy_bits": s["entropy_bits"],
                "clip_rate": r.get("clip_rate"),
                "rmse": r.get("rmse"),
                "max_error": r.get("max_error"),
                "guard": guards.get(d, {}).get("kind", ""),
                "guard_message": guards.get(d, {}).get("message", ""),
            }
        )
    return {
        "samples": sample.samples,
        "samples_total": sample.samples_total,
        "shards": sample.shards,
        "shards_total": sample.shards_total,
        "exact": sample.samples == sample.samples_total,
        "tokenizer": tok_doc["type"],
        "mode": tok_doc.get("mode", ""),
        "token_range": tok_doc["token_range"],
        "dims": dims,
    }
