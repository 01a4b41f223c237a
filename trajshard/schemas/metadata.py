"""Output metadata v1: the files under ``OUT/meta/`` (see docs/output-layout.md).

- ``info.json``        schema versions, features, counts, the job's full config, package version
- ``stats.json``       per-stream, per-dimension statistics and their content hash
- ``tokenizer.json``   everything needed to decode tokens back to actions, formula included
- ``manifest.json``    per shard: name, split, samples, bytes, sha256, episodes
- ``episodes.parquet`` per episode: steps, shards, alignment error per stream
- ``quarantine.jsonl`` one JSON object per rejected episode: episode, file, reason

Each JSON file carries ``"schema"`` (its name) and ``"version"``. The validators here check
structure; ``reports/validation.py`` checks the files against the shards.
"""

from __future__ import annotations

import re

from trajshard.io import SHARD_NAME_RE
from trajshard.schemas.problems import Problem

INFO_VERSION = 2  # 2: counts.episodes_filtered (docs/output-layout.md)
STATS_VERSION = 1
TOKENIZER_VERSION = 2  # 2: guards, per-dimension normalization modes (docs/tokenizers.md)
MANIFEST_VERSION = 1
EPISODES_VERSION = 1
QUARANTINE_VERSION = 1

STAT_KEYS = ("min", "max", "mean", "std", "q01", "q10", "q50", "q90", "q99")
EPISODES_COLUMNS = (
    "episode",
    "source_episode",
    "split",
    "steps",
    "shards",
    "start_time",
    "end_time",
    "align_error_max_s",
    "dropped_ticks",
    "alignment",
    "embodiment",
)

_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "info": {
        "version": int,
        "trajshard_version": str,
        "shard_sample_version": int,
        "config": dict,
        "features": dict,
        "counts": dict,
        "splits": dict,
        "cameras": list,
        "fps": (int, float),
    },
    "stats": {"version": int, "hash": str, "streams": dict},
    "tokenizer": {"version": int, "type": str},
    "manifest": {"version": int, "shards": list},
}
_COUNTS = ("episodes_input", "episodes_written", "episodes_quarantined", "parts", "samples", "shards")
SPLIT_RE = re.compile(r"[A-Za-z0-9_]+")  # a split's name (it names files: meta/wids-<split>.json)
_SHARD_KEYS = {"name": str, "split": str, "samples": int, "bytes": int, "sha256": str, "episodes": list}
_QUARANTINE_KEYS = {"episode": str, "file": str, "reason": str}


def validate_metadata(kind: str, obj: object) -> list[Problem]:
    """Every structural problem of one metadata file (``kind`` is info, stats, tokenizer or manifest)."""
    where = f"meta/{kind}.json"
    if not isinstance(obj, dict):
        return [Problem(where, "", "not a JSON object")]
    problems = _check_keys(where, obj, _REQUIRED[kind])
    if obj.get("schema") != f"trajshard.{kind}":
        problems.append(Problem(where, "schema", f"expected 'trajshard.{kind}', got {obj.get('schema')!r}"))
    if kind == "info" and isinstance(obj.get("counts"), dict):
        counts = obj["counts"]
        problems += _check_keys(where, counts, dict.fromkeys(_COUNTS, int))
        if all(isinstance(counts.get(k), int) for k in _COUNTS[:3]):
            filtered = counts.get("episodes_filtered", 0)  # absent before info.json version 2
            if (
                counts["episodes_written"] + counts["episodes_quarantined"] + filtered
                != counts["episodes_input"]
            ):
                problems.append(
                    Problem(where, "counts", "written + quarantined + filtered != input episodes")
                )
    if kind == "info" and obj.get("embodiment") is not None:
        problems += _check_embodiment(where, obj["embodiment"], obj.get("features"))
    if kind == "stats" and isinstance(obj.get("streams"), dict):
        for name, st in obj["streams"].items():
            problems += _check_stream_stats(where, name, st)
    if kind == "manifest" and isinstance(obj.get("shards"), list):
        for i, shard in enumerate(obj["shards"]):
            found = _check_keys(f"{where} shards[{i}]", shard, _SHARD_KEYS)
            problems += found
            if found:
                continue
            if not SHARD_NAME_RE.fullmatch(shard["name"]):
                problems.append(
                    Problem(
                        f"{where} shards[{i}]",
                        "name",
                        f"{shard['name']!r} is not shards/<file>.tar: shards are read only inside OUT/shards",
                    )
                )
            if not SPLIT_RE.fullmatch(shard["split"]):
                problems.append(
                    Problem(
                        f"{where} shards[{i}]", "split", f"{shard['split']!r} does not match [A-Za-z0-9_]+"
                    )
                )
            for key in ("samples", "bytes"):
                if shard[key] < 0:
                    problems.append(Problem(f"{where} shards[{i}]", key, f"negative: {shard[key]}"))
    return problems


def validate_quarantine_line(lineno: int, obj: object, name: str = "quarantine") -> list[Problem]:
    """A line of meta/quarantine.jsonl (or meta/filtered.jsonl: the same keys)."""
    where = f"meta/{name}.jsonl line {lineno}"
    if not isinstance(obj, dict):
        return [Problem(where, "", "not a JSON object")]
    return _check_keys(where, obj, _QUARANTINE_KEYS)


def _check_embodiment(where: str, emb: object, features: object) -> list[Problem]:
    """info.json ``embodiment`` (info.json v2, optional): its keys, and its layout slices inside the
    widths of action.npy and state.npy."""
    problems = _check_keys(
        where + " embodiment",
        emb,
        {"control_rate": (int, float), "action_space": dict, "action_layout": dict, "state_layout": dict},
    )
    if problems or not isinstance(features, dict):
        return problems
    for key, member in (("action_layout", "action.npy"), ("state_layout", "state.npy")):
        shape = features.get(member, {}).get("shape") or [None]
        width = shape[-1]
        for name, sl in emb[key].items():
            ok = isinstance(sl, list) and len(sl) == 2 and all(isinstance(v, int) for v in sl)
            if not ok or not 0 <= sl[0] < sl[1] or (isinstance(width, int) and sl[1] > width):
                problems.append(
                    Problem(where, f"embodiment.{key}.{name}", f"slice {sl!r} does not fit {member} {shape}")
                )
    return problems


def _check_stream_stats(where: str, name: str, st: object) -> list[Problem]:
    if not isinstance(st, dict):
        return [Problem(where, f"streams.{name}", "not an object")]
    problems = _check_keys(where, st, {"count": int, **dict.fromkeys(STAT_KEYS, list)})
    dims = {len(st[k]) for k in STAT_KEYS if isinstance(st.get(k), list)}
    if len(dims) > 1:
        problems.append(
            Problem(where, f"streams.{name}", f"statistics have different lengths {sorted(dims)}")
        )
    return problems


def _check_keys(where: str, obj: object, spec: dict[str, type | tuple[type, ...]]) -> list[Problem]:
    if not isinstance(obj, dict):
        return [Problem(where, "", "not a JSON object")]
    problems = []
    for key, typ in spec.items():
        if key not in obj:
            problems.append(Problem(where, key, "missing"))
        elif not isinstance(obj[key], typ) or (typ is int and isinstance(obj[key], bool)):
            problems.append(Problem(where, key, f"expected {_typename(typ)}, got {type(obj[key]).__name__}"))
    return problems


def _typename(typ: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in typ) if isinstance(typ, tuple) else typ.__name__
