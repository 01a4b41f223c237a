"""The dataset-wide parts of the HTML report, read from ``meta/`` only: grouped quarantine and filter
records, the doctor's findings, and the distributions of episode length and alignment error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from trajshard.io import read_json
from trajshard.reports.summary import reason_kind

EXAMPLES = 5


def grouped_records(path: Path, examples: int = EXAMPLES) -> dict[str, object]:
    """The records of a quarantine.jsonl or filtered.jsonl grouped by kind of reason (numbers masked,
    as ``trajshard stats`` counts them), most frequent first, with the first few episodes of each."""
    groups: dict[str, dict] = {}
    total = 0
    if path.exists():
        with path.open(encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                total += 1
                kind = reason_kind(rec.get("file", ""), rec.get("reason", ""))
                g = groups.setdefault(kind, {"kind": kind, "count": 0, "examples": []})
                g["count"] += 1
                if len(g["examples"]) < examples:
                    g["examples"].append({k: rec.get(k, "") for k in ("episode", "file", "reason")})
    return {
        "present": path.exists(),
        "total": total,
        "groups": sorted(groups.values(), key=lambda g: (-g["count"], g["kind"])),
    }


def quality(out: Path) -> dict | None:
    """``meta/quality.json`` (the doctor's findings, written by ingest) when present, its findings
    grouped by severity; ``None`` when the dataset has none."""
    path = out / "meta" / "quality.json"
    if not path.exists():
        return None
    doc = read_json(path)
    findings = list(doc.get("findings") or [])
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order.get(f.get("severity"), 3), f.get("code", "")))
    return {
        "version": doc.get("version"),
        "checked": doc.get("checked") or {},
        "counts": doc.get("counts") or {},
        "findings": findings,
    }


def distributions(out: Path, bins: int = 40) -> dict[str, object]:
    """Histograms over every episode (part): steps, and per stream the episode's largest |dt|."""
    table = pq.read_table(out / "meta" / "episodes.parquet", columns=["steps", "alignment"])
    steps = table.column("steps").to_numpy()
    result: dict[str, object] = {"steps": _hist(steps, bins, integer=True), "max_dt_ms": {}}
    flat = pc.list_flatten(table.column("alignment").combine_chunks())
    if len(flat):
        streams = np.asarray(flat.field("stream").to_pylist())
        max_dt = flat.field("max_dt_s").to_numpy(zero_copy_only=False) * 1000.0
        for stream in sorted(set(streams.tolist())):
            result["max_dt_ms"][stream] = _hist(max_dt[streams == stream], bins)
    return result


def _hist(values: np.ndarray, bins: int, integer: bool = False) -> dict[str, list]:
    """Counts over ``bins`` equal intervals of the values' range; integers of a narrow range get one
    interval per value."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return {"edges": [], "counts": []}
    lo, hi = float(values.min()), float(values.max())
    if integer and hi - lo < bins:
        edges = np.arange(lo - 0.5, hi + 1.0)
    else:
        edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    counts, edges = np.histogram(values, bins=edges)
    return {"edges": [float(f"{e:.6g}") for e in edges], "counts": counts.tolist()}
