"""``trajshard validate OUT``: check an output dataset against its own metadata, every problem reported.

Checks: the metadata files (structure and versions); every shard against the manifest (presence,
bytes, sha256, sample count, episodes); every sample against the features of info.json (members,
dtypes, shapes, JPEG decodability and size, NaN/Inf, meta.json fields); tokens within the
tokenizer's range and decoding back to the action within the tokenizer's tolerance (half a bin for the
uniform tokenizer) plus float32 rounding (see ``token_limit``); every episode's steps present
exactly once (and in order, unless the dataset was written with a shuffle window), in shards of the
episode's split; counts of input, written, quarantined and filtered episodes reconciling.

The output is read as untrusted (docs/robustness.md): a shard name from the metadata that leaves
``OUT/shards`` is a problem and is never opened; a member that is not a regular file, is sparse or
oversize, is named with ``/`` or ``..``, or has a suffix the shard sample schema does not define
(``.pyd``, ``.pickle``...) is a problem even when info.json's features declare it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from trajshard.io import ShardError, file_digest, read_json, shard_path
from trajshard.reports.mixture_check import MixtureTally
from trajshard.schemas.metadata import EPISODES_COLUMNS, validate_metadata, validate_quarantine_line
from trajshard.schemas.problems import Problem
from trajshard.schemas.sample import (
    feature_problems,
    iter_shard_samples,
    load_npy,
    split_key,
    usable_features,
    validate_sample,
)
from trajshard.tokenizers import from_json
from trajshard.tokenizers.guards import dim_label

META_FILES = ("info", "stats", "tokenizer", "manifest")


@dataclass
class ValidationReport:
    problems: list[Problem] = field(default_factory=list)
    shards: int = 0
    samples: int = 0
    episodes: int = 0
    deep_checked: int = 0
    notes: list[str] = field(default_factory=list)
    findings: list[Problem] = field(
        default_factory=list
    )  # the data is consistent but degraded (--strict: exit 1)
    mixture: list[dict] | None = None  # a `trajshard mix` output: per dataset (reports/mixture_check.py)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "episodes": self.episodes,
            "deep_checked": self.deep_checked,
            "notes": self.notes,
            "problems": [p.to_dict() for p in self.problems],
            "findings": [p.to_dict() for p in self.findings],
            **({"mixture": self.mixture} if self.mixture is not None else {}),
        }


@dataclass
class _Context:
    features: dict
    tokenizer: object
    vocab: dict | None
    sample_rate: float
    shuffled: bool = False
    written: dict[str, int] = field(default_factory=dict)  # episode part -> steps (episodes.parquet)
    split_of: dict[str, str] = field(default_factory=dict)  # episode part -> split (episodes.parquet)
    step_sets: dict[str, set[int]] = field(default_factory=dict)  # shuffled datasets only
    steps_seen: dict[str, int] = field(default_factory=dict)
    values: dict[str, _Range] = field(default_factory=dict)
    deep: int = 0
    mixture: MixtureTally | None = None

    def sampled(self, key: str) -> bool:
        """Deterministic sample: the same keys are checked on every run at one rate."""
        if self.sample_rate >= 1:
            return True
        return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 2**32 < self.sample_rate


@dataclass
class _Range:
    low: np.ndarray
    high: np.ndarray
    total: np.ndarray
    count: int = 0

    def add(self, x: np.ndarray) -> None:
        self.low, self.high = np.minimum(self.low, x), np.maximum(self.high, x)
        self.total = self.total + x
        self.count += 1


def guard_findings(tok_doc: dict) -> list[Problem]:
    """The tokenizer's guard warnings (tokenizers/guards.py): dimensions it erases or clips."""
    return [
        Problem(
            "meta/tokenizer.json", f"guards: {dim_label(g)}", f"{g['kind']}: {g['message']}; fix: {g['fix']}"
        )
        for g in tok_doc.get("guards", [])
        if g.get("severity") == "warning"
    ]


def validate_output(out: str | Path, sample_rate: float = 1.0) -> ValidationReport:
    """Check a dataset. ``sample_rate`` < 1 decodes and checks only that share of samples (chosen by a
    hash of the key, so the same ones each time); checksums, counts and step order are always checked."""
    out = Path(out)
    report = ValidationReport()
    problems = report.problems
    docs = {}
    for kind in META_FILES:
        path = out / "meta" / f"{kind}.json"
        try:
            docs[kind] = read_json(path)
        except (OSError, ValueError) as exc:
            problems.append(Problem(f"meta/{kind}.json", "", f"cannot be read: {exc}"))
            continue
        problems += validate_metadata(kind, docs[kind])
    if problems:
        return report
    info, manifest = docs["info"], docs["manifest"]
    try:
        tokenizer = from_json(docs["tokenizer"])
    except Exception as exc:  # noqa: BLE001 - a tokenizer.json that cannot be used is a finding
        problems.append(Problem("meta/tokenizer.json", "", f"cannot be used: {exc}"))
        return report
    problems += feature_problems(info["features"])
    report.findings += guard_findings(docs["tokenizer"])
    quarantined = _quarantine(out, problems)
    filtered = _quarantine(out, problems, "filtered")
    written, source_of, split_of = _episodes(out, problems)

    shuffled = bool(info.get("config", {}).get("shuffle_window"))
    ctx = _Context(
        usable_features(info["features"]),
        tokenizer,
        info.get("vocab"),
        sample_rate,
        shuffled,
        written,
        split_of,
    )
    try:
        ctx.mixture = MixtureTally.of(out, tokenizer, token_limit)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        problems.append(Problem("meta/mixture.json", "", f"cannot be used: {exc}"))
    steps_seen = ctx.steps_seen
    for shard in manifest["shards"]:
        report.shards += 1
        report.samples += _check_shard(out, shard, ctx, problems)
    _check_stats(docs["stats"], ctx, report.samples, problems)
    if ctx.mixture is not None:
        problems += ctx.mixture.problems()
        report.mixture = ctx.mixture.rows()
    _check_splits(out, info, manifest, problems)
    listed = {s["name"] for s in manifest["shards"]}
    for path in sorted((out / "shards").glob("*.tar")):
        if f"shards/{path.name}" not in listed:
            problems.append(Problem(f"shards/{path.name}", "", "shard is not in the manifest"))

    for eid, steps in sorted(written.items()):
        if eid not in steps_seen:
            problems.append(
                Problem(eid, "episodes.parquet", "episode listed but no sample of it is in a shard")
            )
        elif steps_seen[eid] != steps:
            problems.append(
                Problem(eid, "episodes.parquet", f"{steps} steps listed, {steps_seen[eid]} in shards")
            )
    for eid in sorted(set(steps_seen) - set(written)):
        problems.append(Problem(eid, "episodes.parquet", "samples in shards but episode not listed"))
    sources = set(source_of.values())
    for eid in sorted(sources & set(quarantined)):
        problems.append(Problem(eid, "quarantine.jsonl", "episode both written and quarantined"))
    for eid in sorted((sources | quarantined) & filtered):
        problems.append(
            Problem(eid, "filtered.jsonl", "episode both filtered out and written or quarantined")
        )
    counts = info["counts"]
    expect = {
        "episodes_written": len(sources),
        "parts": len(written),
        "episodes_quarantined": len(quarantined),
        "episodes_filtered": len(filtered) if "episodes_filtered" in counts else None,
        "samples": report.samples,
        "shards": report.shards,
    }
    for key, actual in expect.items():
        if actual is not None and counts.get(key) != actual:
            problems.append(
                Problem("meta/info.json", f"counts.{key}", f"says {counts.get(key)}, found {actual}")
            )
    report.episodes = len(steps_seen)
    report.deep_checked = ctx.deep
    return report


def _check_shard(out: Path, shard: dict, ctx: _Context, problems: list[Problem]) -> int:
    name = shard["name"]
    try:
        path = shard_path(out, name)
    except ShardError as exc:
        problems.append(Problem(name, "", f"not read: {exc}"))
        return 0
    if not path.is_file():
        problems.append(Problem(name, "", "missing"))
        return 0
    size, digest = file_digest(path)
    if size != shard["bytes"]:
        problems.append(Problem(name, "", f"{size} bytes, manifest says {shard['bytes']}"))
    if digest != shard["sha256"]:
        problems.append(Problem(name, "", "sha256 differs from the manifest"))
    n, episodes, listed = 0, [], set()
    try:
        for key, members in iter_shard_samples(path):
            n += 1
            deep = ctx.sampled(key)
            if deep:
                ctx.deep += 1
                found = validate_sample(key, members, ctx.features)
                problems += [Problem(f"{name} {p.where}", p.field, p.message) for p in found]
                if not found:
                    _record_values(members, ctx)
            parsed = split_key(key)
            if parsed is None:
                continue
            eid, step = parsed
            if eid not in listed:  # in order of first sample, as the manifest lists them
                listed.add(eid)
                episodes.append(eid)
            _check_step(f"{name} {key}", eid, step, shard.get("split"), ctx, problems)
            if deep:
                _check_tokens(f"{name} {key}", members, ctx.tokenizer, ctx.vocab, problems)
            if ctx.mixture is not None:
                ctx.mixture.add(f"{name} {key}", members, deep)
    except Exception as exc:  # noqa: BLE001 - a broken tar is a finding, not a crash
        problems.append(Problem(name, "", f"tar cannot be read after {n} samples: {exc}"))
    if n != shard["samples"]:
        problems.append(Problem(name, "", f"{n} samples, manifest says {shard['samples']}"))
    if episodes != shard["episodes"]:
        problems.append(
            Problem(name, "", f"holds episodes {episodes[:5]}..., manifest says {shard['episodes'][:5]}...")
        )
    return n


def _check_splits(out: Path, info: dict, manifest: dict, problems: list[Problem]) -> None:
    """Shard names start with their split; info.json ``splits`` agrees with the manifest."""
    listed: dict[str, list[dict]] = {}
    for shard in manifest["shards"]:
        listed.setdefault(shard["split"], []).append(shard)
        if not shard["name"].rsplit("/", 1)[-1].startswith(f"{shard['split']}-"):
            problems.append(
                Problem(shard["name"], "split", f"name does not start with its split {shard['split']!r}")
            )
    splits = info.get("splits", {})
    for split in sorted(set(listed) - set(splits)):
        problems.append(Problem("meta/info.json", "splits", f"split {split!r} has shards but is not listed"))
    for split, sp in sorted(splits.items()):
        mine = listed.get(split, [])
        if not isinstance(sp, dict) or not isinstance(sp.get("shards"), list):
            problems.append(Problem("meta/info.json", f"splits.{split}", "not an object with a shards list"))
            continue
        for name in sp["shards"]:
            try:
                shard_path(out, name)
            except ShardError as exc:
                problems.append(Problem("meta/info.json", f"splits.{split}.shards", str(exc)))
        if sp.get("shards") != [s["name"] for s in mine]:
            problems.append(Problem("meta/info.json", f"splits.{split}.shards", "differ from the manifest"))
        if sp.get("samples") != sum(s["samples"] for s in mine):
            problems.append(
                Problem(
                    "meta/info.json",
                    f"splits.{split}.samples",
                    f"says {sp.get('samples')}, manifest {sum(s['samples'] for s in mine)}",
                )
            )


def _check_step(where: str, eid: str, step: int, split: str | None, ctx: _Context, problems: list) -> None:
    """A sample's step: once per episode (in order unless shuffled), in a shard of the episode's split."""
    if eid in ctx.split_of and split is not None and ctx.split_of[eid] != split:
        problems.append(
            Problem(
                where, "__key__", f"in a {split!r} shard, but the episode's split is {ctx.split_of[eid]!r}"
            )
        )
    steps_seen = ctx.steps_seen
    if ctx.shuffled:
        seen = ctx.step_sets.setdefault(eid, set())
        if step in seen:
            problems.append(Problem(where, "__key__", f"step {step} appears twice"))
        elif eid in ctx.written and step >= ctx.written[eid]:
            problems.append(
                Problem(where, "__key__", f"step {step} beyond the episode's {ctx.written[eid]} steps")
            )
        seen.add(step)
        steps_seen[eid] = len(seen)
        return
    expected = steps_seen.get(eid, 0)
    if step != expected:
        problems.append(
            Problem(
                where,
                "__key__",
                f"step {step} where step {expected} was due (steps must appear once each, in order)",
            )
        )
    steps_seen[eid] = max(expected, step + 1)


def _record_values(members: dict[str, bytes], ctx: _Context) -> None:
    for stream, member in (("action", "action.npy"), ("state", "state.npy")):
        x = load_npy(members[member]).astype(np.float64)
        if stream not in ctx.values:
            ctx.values[stream] = _Range(x.copy(), x.copy(), np.zeros_like(x))
        ctx.values[stream].add(x)


def _check_stats(stats: dict, ctx: _Context, samples: int, problems: list[Problem]) -> None:
    """stats.json against the data: every checked value inside [min, max]; with every sample checked
    and the same count, the mean recomputed from the shards matches."""
    for stream, seen in ctx.values.items():
        st = stats["streams"].get(stream)
        if st is None:
            problems.append(Problem("meta/stats.json", f"streams.{stream}", "missing"))
            continue
        lo, hi, mean, std = (np.asarray(st[k], dtype=np.float64) for k in ("min", "max", "mean", "std"))
        if lo.shape != seen.low.shape:
            problems.append(
                Problem("meta/stats.json", f"streams.{stream}", f"{len(lo)} dims, data has {len(seen.low)}")
            )
            continue
        slack = 1e-6 * (1 + np.abs(lo) + np.abs(hi))
        for d in np.nonzero((seen.low < lo - slack) | (seen.high > hi + slack))[0]:
            problems.append(
                Problem(
                    "meta/stats.json",
                    f"streams.{stream}.min/max",
                    f"dim {d}: data spans "
                    f"[{seen.low[d]:.6g}, {seen.high[d]:.6g}], stats say [{lo[d]:.6g}, {hi[d]:.6g}]",
                )
            )
        if ctx.sample_rate >= 1 and seen.count == samples == st["count"]:
            recomputed = seen.total / seen.count
            for d in np.nonzero(np.abs(recomputed - mean) > 1e-4 * (std + np.abs(mean) + 1e-6))[0]:
                problems.append(
                    Problem(
                        "meta/stats.json",
                        f"streams.{stream}.mean",
                        f"dim {d}: data mean {recomputed[d]:.6g}, stats say {mean[d]:.6g}",
                    )
                )


def _check_tokens(
    where: str, members: dict[str, bytes], tokenizer, vocab: dict | None, problems: list[Problem]
) -> None:
    """Tokens decode to the action within ``token_limit`` (after clipping to the tokenizer's bounds),
    and token ids are the vocabulary mapping of the tokens."""
    if "tokens.npy" not in members or "action.npy" not in members:
        return
    chunked = getattr(tokenizer, "chunked", False)
    try:
        tokens, action = load_npy(members["tokens.npy"]), load_npy(members["action.npy"])
        if chunked:
            action = load_npy(members["action_chunk.npy"])
        step_tokens = tokens[0] if tokens.ndim == 2 else tokens
    except Exception:  # noqa: BLE001 - malformed members are reported by validate_sample
        return
    try:
        decoded = tokenizer.decode(step_tokens)
    except ValueError as exc:
        problems.append(Problem(where, "tokens.npy", f"tokens do not decode with tokenizer.json: {exc}"))
        return
    lo, hi = tokenizer.bounds()
    decoded, action = np.asarray(decoded, dtype=np.float64), action.astype(np.float64)
    err = np.abs(decoded - np.clip(action, lo, hi))
    limit = token_limit(tokenizer.tolerance(), action, decoded)
    if np.any(err > limit):
        flat = np.argmax(err - limit)
        d = np.unravel_index(int(flat), err.shape)[-1]
        decoded, action, limit = decoded.flat[flat], action.flat[flat], limit.flat[flat]
        problems.append(
            Problem(
                where,
                "tokens.npy",
                f"dim {d}: token decodes to {decoded:.9g}, action is {action:.9g}: "
                f"more than the tokenizer's tolerance {limit:.3g} apart (tokenizer.json does not match?)",
            )
        )
    if vocab is not None and "token_ids.npy" in members:
        try:
            ids = load_npy(members["token_ids.npy"])
            expected = np.asarray(vocab["ids"])[tokens.astype(np.int64) - vocab["token_lo"]]
        except Exception:  # noqa: BLE001
            return
        if ids.shape != expected.shape or np.any(ids != expected):
            problems.append(
                Problem(where, "token_ids.npy", f"ids are not the vocabulary mapping {vocab['spec']}")
            )


def token_limit(tolerance: np.ndarray, action: np.ndarray, decoded: np.ndarray) -> np.ndarray:
    """Largest |decoded - clip(action)| a correct token allows, per element, compared in float64:

        tolerance + spacing32(|action|) + spacing32(|decoded|)

    ``tolerance`` is the tokenizer's bound for exact values (half a bin for the uniform tokenizer);
    ``spacing32(v)`` is ``np.spacing(np.float32(v))``, the float32 step at v's magnitude. The action is
    stored as float32 (it may have been rounded after it was encoded), and a decoded value may have been
    rounded to float32 (a consumer's copy), each by at most half a step; the whole steps also cover the
    float64 rounding of normalizing and decoding, a few float64 steps (2**29 times finer). Near 152.3 a
    float32 step is 1.5e-5, 13% of half a bin when the bounds are 152.3 +- 0.03."""

    def spacing32(v: np.ndarray) -> np.ndarray:
        return np.spacing(np.abs(v).astype(np.float32)).astype(np.float64)

    return tolerance + spacing32(action) + spacing32(decoded)


def _quarantine(out: Path, problems: list[Problem], name: str = "quarantine") -> set[str]:
    """The episodes a record file lists (quarantine.jsonl; filtered.jsonl, absent before info.json
    version 2), each line checked."""
    ids = set()
    path = out / "meta" / f"{name}.jsonl"
    if not path.is_file():
        if name == "quarantine":
            problems.append(Problem("meta/quarantine.jsonl", "", "missing"))
        return ids
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            obj = json.loads(line)
        except ValueError as exc:
            problems.append(Problem(f"meta/{name}.jsonl line {i}", "", f"not JSON: {exc}"))
            continue
        problems += validate_quarantine_line(i, obj, name)
        if isinstance(obj, dict) and isinstance(obj.get("episode"), str):
            if obj["episode"] in ids:
                problems.append(Problem(f"meta/{name}.jsonl line {i}", "episode", "episode listed twice"))
            ids.add(obj["episode"])
    return ids


def _episodes(out: Path, problems: list[Problem]) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """({episode part: steps}, {part: source episode}, {part: split}) from episodes.parquet."""
    try:
        table = pq.read_table(out / "meta" / "episodes.parquet")
    except Exception as exc:  # noqa: BLE001
        problems.append(Problem("meta/episodes.parquet", "", f"cannot be read: {exc}"))
        return {}, {}, {}
    missing = [c for c in EPISODES_COLUMNS if c not in table.column_names]
    if missing:
        problems.append(Problem("meta/episodes.parquet", "", f"missing columns {missing}"))
        return {}, {}, {}
    eps = table.column("episode").to_pylist()
    if len(set(eps)) != len(eps):
        problems.append(Problem("meta/episodes.parquet", "episode", "an episode is listed twice"))
    steps = dict(zip(eps, table.column("steps").to_pylist(), strict=True))
    return (
        steps,
        dict(zip(eps, table.column("source_episode").to_pylist(), strict=True)),
        dict(zip(eps, table.column("split").to_pylist(), strict=True)),
    )
