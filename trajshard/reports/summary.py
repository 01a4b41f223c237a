"""``trajshard stats OUT``: counts, per-dimension statistics, the alignment report, the quarantine summary.

Reads only ``meta/`` (no shard is opened), so it answers in a moment on any size of dataset.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from trajshard.io import read_json
from trajshard.tokenizers.guards import guard_lines


def alignment_summary(out: str | Path) -> dict[str, dict[str, float]]:
    """Per stream over all episodes: worst and median max |dt|, worst p95, ticks dropped, gaps, rates."""
    rows = pq.read_table(Path(out) / "meta" / "episodes.parquet", columns=["alignment"]).column(0).to_pylist()
    per: dict[str, list[dict]] = {}
    for report in rows:
        for r in report:
            per.setdefault(r["stream"], []).append(r)
    summary = {}
    for stream, rs in sorted(per.items()):
        max_dt = sorted(r["max_dt_s"] for r in rs)
        rates = sorted(r["rate_hz"] for r in rs)
        summary[stream] = {
            "episodes": len(rs),
            "max_dt_s": max_dt[-1],
            "median_max_dt_s": max_dt[len(max_dt) // 2],
            "p95_dt_s": max(r["p95_dt_s"] for r in rs),
            "dropped_ticks": sum(r["dropped_ticks"] for r in rs),
            "gaps": sum(r["gaps"] for r in rs),
            "rate_hz_min": rates[0],
            "rate_hz_max": rates[-1],
        }
    return summary


def reason_kind(file: str, reason: str) -> str:
    """A quarantine reason with its numbers masked, so the same problem in many episodes counts once."""
    text = re.sub(r"(?<![\w.])/[^\s:'\"]+", "<path>", f"{file or '-'}: {reason}")  # paths name one episode
    return re.sub(r"\d+(\.\d+)?", "#", text)[:160]


def quarantine_summary(out: str | Path) -> dict[str, int]:
    """Quarantined episodes counted by kind of reason (file and reason, numbers masked)."""
    path = Path(out) / "meta" / "quarantine.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return dict(Counter(reason_kind(q["file"], q["reason"]) for q in map(json.loads, lines)))


def splits_summary(out: str | Path) -> dict[str, dict[str, float]]:
    """Per split: shards, samples, episodes, and episodes per shard (min, mean, max) from the manifest:
    how well a loader's shuffle buffer will mix (a shuffle window raises it)."""
    manifest = read_json(Path(out) / "meta" / "manifest.json")
    per: dict[str, dict[str, float]] = {}
    for split in dict.fromkeys(s["split"] for s in manifest["shards"]):
        mine = [s for s in manifest["shards"] if s["split"] == split]
        eps = [len(s["episodes"]) for s in mine]
        per[split] = {
            "shards": len(mine),
            "samples": sum(s["samples"] for s in mine),
            "episodes": len({e for s in mine for e in s["episodes"]}),
            "episodes_per_shard_min": min(eps),
            "episodes_per_shard_mean": sum(eps) / len(eps),
            "episodes_per_shard_max": max(eps),
        }
    return per


def quality_lines(quality: dict) -> list[str]:
    """One line per finding of meta/quality.json (``trajshard doctor``'s), most severe first."""
    lines = []
    for f in quality.get("findings", []):
        sampled = "sampled " if f.get("scope") == "frames" else ""
        detail = f["examples"][0]["detail"] if f["examples"] and not f["examples"][0]["where"] else ""
        base = (
            f" ({f['count']} of {f['of']} {sampled}episodes)"
            if f.get("of")
            else f" ({detail})"
            if detail
            else ""
        )
        lines.append(f"{f['severity']} {f['code']}: {f['message']}{base}")
    return lines


def loss_lines(info: dict, images: bool = False) -> list[str]:
    """What a dataset lost, in words, from info.json ``source.losses`` (the camera list's and the
    readers' own notes are in ``source.notes``): for ingest's summary, ``trajshard stats`` and the
    card. With ``images``, also a line when it has no camera (ingest and stats; the card's camera
    line already shows none, and keeps its bytes)."""
    losses = info["source"].get("losses", {})
    lines = []
    if losses.get("ticks_without_frame"):
        counts = ", ".join(f"{k} {v}" for k, v in losses["ticks_without_frame"].items())
        lines.append(
            f"ticks dropped for lack of a frame within tolerance: {counts} (meta/episodes.parquet; "
            "--on-missing-frame fail quarantines such episodes instead)"
        )
    if images and not info["cameras"]:
        lines.append("no images: the written episodes have no camera (ingested with --no-images)")
    return lines


def quality_summary(out: str | Path) -> dict | None:
    """meta/quality.json's counts and finding lines; None when the dataset has none (made before it)."""
    path = Path(out) / "meta" / "quality.json"
    if not path.exists():
        return None
    quality = read_json(path)
    return {"counts": quality["counts"], "findings": quality_lines(quality)}


def stats_report(out: str | Path) -> dict[str, object]:
    out = Path(out)
    info, stats = read_json(out / "meta" / "info.json"), read_json(out / "meta" / "stats.json")
    return {
        "counts": info["counts"],
        "fps": info["fps"],
        "cameras": info["cameras"],
        "action_source": info["action_source"],
        "source_notes": info["source"].get("notes", []),
        "losses": info["source"].get("losses", {}),
        "loss_lines": loss_lines(info, images=True),
        "stats_hash": stats["hash"],
        "streams": stats["streams"],
        "splits": splits_summary(out),
        "alignment": alignment_summary(out),
        "quarantine": quarantine_summary(out),
        "tokenizer": {k: v for k, v in read_json(out / "meta" / "tokenizer.json").items() if k != "bpe"},
        "roundtrip": read_json(out / "meta" / "roundtrip.json")
        if (out / "meta" / "roundtrip.json").exists()
        else None,
        "quality": quality_summary(out),
    }


def tokenizer_lines(tok: dict) -> list[str]:
    """The normalization chosen per dimension (when it differs) and the tokenizer's guard findings."""
    norm = tok.get("normalization") or {}
    lines = []
    if norm.get("modes"):
        chosen = norm.get("auto", {})
        lines += ["", "normalization per dimension" + (" (auto)" if chosen else "")]
        lines += [
            f"{d:>4} {m}" + (f"  ({chosen[str(d)]})" if str(d) in chosen else "")
            for d, m in enumerate(norm["modes"])
        ]
    guards = guard_lines(tok.get("guards", []))
    lines += ["", "tokenizer guards"] + [
        f"  {g}" for g in guards or ["none: no dimension is erased or clipped"]
    ]
    return lines


def render_stats(rep: dict) -> str:
    c = rep["counts"]
    lines = [
        f"episodes: {c['episodes_written']} written ({c.get('parts', c['episodes_written'])} parts), "
        f"{c['episodes_quarantined']} quarantined, {c['episodes_input']} in the source",
        f"samples: {c['samples']} in {c['shards']} shards at {rep['fps']} Hz; cameras: "
        f"{', '.join(rep['cameras']) or 'none'}; actions: {rep['action_source']}",
        *[f"note on the source: {n}" for n in rep.get("source_notes", [])],
        *[f"left out: {n}" for n in rep.get("loss_lines", [])],
        f"statistics {rep['stats_hash']}",
    ]
    for split, sp in rep.get("splits", {}).items():
        lines.append(
            f"split {split}: {sp['samples']} samples of {sp['episodes']} episodes in {sp['shards']} shards; "
            f"episodes per shard {sp['episodes_per_shard_min']}-{sp['episodes_per_shard_max']} "
            f"(mean {sp['episodes_per_shard_mean']:.1f})"
        )
    for stream, st in rep["streams"].items():
        names = st.get("names") or [""] * len(st["mean"])
        lines += ["", f"{stream} ({st['count']} values per dim, quantiles {st['quantile_method']})"]
        lines.append(
            f"{'dim':>4} {'name':<22}"
            + "".join(f"{k:>11}" for k in ("min", "q01", "mean", "std", "q99", "max"))
        )
        for d in range(len(st["mean"])):
            vals = "".join(f"{st[k][d]:>11.4g}" for k in ("min", "q01", "mean", "std", "q99", "max"))
            lines.append(f"{d:>4} {names[d][:22]:<22}{vals}")
    lines += ["", "alignment (per stream, over all episodes)"]
    lines.append(
        f"{'stream':<16}{'max|dt| s':>11}{'median':>11}{'p95 s':>10}{'dropped':>9}{'gaps':>6}{'rate Hz':>16}"
    )
    for stream, a in rep["alignment"].items():
        rate = f"{a['rate_hz_min']:.1f}-{a['rate_hz_max']:.1f}"
        lines.append(
            f"{stream:<16}{a['max_dt_s']:>11.4f}{a['median_max_dt_s']:>11.4f}{a['p95_dt_s']:>10.4f}"
            f"{a['dropped_ticks']:>9}{a['gaps']:>6}{rate:>16}"
        )
    tok, rt = rep["tokenizer"], rep["roundtrip"]
    lines += [
        "",
        f"tokenizer: {tok['type']} ({tok.get('mode', '')}), {tok['bins']} bins/tokens, range {tok['token_range']}",
    ]
    if rt:
        t = rt.get("tokens") or {}
        if t:
            lines.append(
                f"tokens per unit: mean {t['mean_tokens']:.1f}, p99 {t['p99_tokens']:.0f}; "
                f"decode failures: {rt['decode_failures']}"
            )
        guarded = {g["dim"]: g["kind"] for g in tok.get("guards", [])}
        lines.append(
            f"{'dim':>4} {'name':<22}{'rmse':>11}{'max err':>11}{'rmse norm':>11}{'max norm':>11}{'clip %':>8}"
            "  guard"
        )
        for d in rt["dims"]:
            lines.append(
                f"{d['dim']:>4} {d['name'][:22]:<22}{d['rmse']:>11.4g}{d['max_error']:>11.4g}"
                f"{d['rmse_normalized']:>11.4g}{d['max_error_normalized']:>11.4g}{100 * d['clip_rate']:>8.2f}"
                f"  {guarded.get(d['dim'], '')}"
            )
    lines += tokenizer_lines(tok)
    lines += ["", "quarantine"]
    lines += [f"  {n:>5} x {reason}" for reason, n in sorted(rep["quarantine"].items(), key=lambda x: -x[1])]
    if not rep["quarantine"]:
        lines.append("  none")
    lines += render_quality(rep.get("quality"))
    return "\n".join(lines)


def render_quality(quality: dict | None) -> list[str]:
    if quality is None:
        return []
    c = quality["counts"]
    head = f"data quality (trajshard doctor): errors {c['error']}, warnings {c['warning']}, notes {c['info']}"
    return ["", head] + [f"  {line}" for line in quality["findings"]]
