"""``trajshard histogram OUT``: per-dimension action-bin occupancy, read from the shards (streaming).

For each action dimension: occupancy of every bin (drawn as a bar line in the terminal), dead bins
(never used), the share of samples in the two edge bins, the share clipped (``action.npy`` outside
the tokenizer's bounds: those land in an edge bin too, but a two-valued dimension such as a gripper
fills its edge bins without any clipping), the entropy of the bin distribution in bits, and the
round-trip RMSE of ``decode(tokens)`` against ``action.npy``.

The counts array is sized from tokenizer.json before any shard is read, so it is bounded first:
the token range must be the tokenizer's (at most ``MAX_BINS`` values), every sample's tokens must have
the tokenizer's dimensions, and dims x token values at most ``MAX_HISTOGRAM_CELLS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trajshard.io import ShardError, read_json, shard_path
from trajshard.schemas.sample import iter_shard_samples, load_npy
from trajshard.tokenizers import from_json

BARS = " ▁▂▃▄▅▆▇█"
MAX_HISTOGRAM_CELLS = 2**26  # action dims x token values counted (512 MiB of int64 counts)


@dataclass
class Histogram:
    counts: np.ndarray  # int64 [D, bins]: counts[d, b] = samples of dim d in bin b (0-based)
    sq_err: np.ndarray  # float64 [D]
    names: list[str]
    samples: int
    guards: dict[int, str] = field(default_factory=dict)  # dim -> guard kind (tokenizers/guards.py)
    clipped: np.ndarray | None = None  # int64 [D]: samples outside the tokenizer's bounds, when counted
    centres: np.ndarray | None = None  # float64 [D, bins]: the action value each bin decodes to

    def kind(self, d: int) -> str:
        """``constant`` (one bin used), ``two-valued`` (two bins: a gripper, a binary flag) or ``""``."""
        used = int((self.counts[d] > 0).sum())
        return "constant" if used <= 1 else "two-valued" if used == 2 else ""

    def warned(self, d: int) -> str:
        """The guard kind of a dimension the tokenizer degrades ("" for none and for constant dims)."""
        kind = self.guards.get(d, "")
        return "" if kind == "constant" else kind

    def dim_summary(self, d: int) -> dict[str, object]:
        c = self.counts[d]
        total = max(int(c.sum()), 1)
        p = c[c > 0] / total
        return {
            "dim": d,
            "name": self.names[d] if d < len(self.names) else "",
            "samples": int(c.sum()),
            "used_bins": int((c > 0).sum()),
            "dead_bins": int((c == 0).sum()),
            "edge_share": float((c[0] + c[-1]) / total),
            "clipped_share": None if self.clipped is None else float(self.clipped[d] / total),
            "kind": self.kind(d),
            "entropy_bits": abs(float((p * np.log2(p)).sum())),  # a constant dim: 0.0, not -0.0
            "roundtrip_rmse": float(np.sqrt(self.sq_err[d] / max(self.samples, 1))),
            "counts": [int(v) for v in c],
        }


def shard_paths(out: Path, patterns: tuple[str, ...] = ()) -> list[Path]:
    """The dataset's shards (from the manifest, else every shards/*.tar), optionally only those whose
    name matches one of the glob ``patterns``."""
    import fnmatch

    manifest = out / "meta" / "manifest.json"
    if manifest.exists():
        paths = [shard_path(out, s["name"]) for s in read_json(manifest)["shards"]]
    else:
        paths = sorted((out / "shards").glob("*.tar"))
    if patterns:
        paths = [p for p in paths if any(fnmatch.fnmatch(p.name, pat) for pat in patterns)]
    return paths


def compute_histogram(
    out: str | Path, shards: tuple[str, ...] = (), episodes: tuple[str, ...] = ()
) -> Histogram:
    """Stream the shards (or the subset matching ``shards`` globs, holding ``episodes``)."""
    out = Path(out)
    tok_doc = read_json(out / "meta" / "tokenizer.json")
    if tok_doc.get("type") == "fast":
        raise ValueError(
            "FAST tokens are not per-dimension bins; `trajshard stats` shows their round-trip "
            "report (tokens per chunk, errors, decode failures)"
        )
    tokenizer = from_json(tok_doc)  # checks bins <= MAX_BINS and token_range against the tokenizer's
    lo, hi = tokenizer.token_range
    dims = tokenizer.dims
    if dims * (hi - lo + 1) > MAX_HISTOGRAM_CELLS:
        raise ValueError(
            f"tokenizer.json: {dims} dims x {hi - lo + 1} token values, more than the "
            f"{MAX_HISTOGRAM_CELLS} cells a histogram counts"
        )
    info = read_json(out / "meta" / "info.json")
    names = list(info.get("action_names") or [])
    wanted = set(episodes)
    counts = np.zeros((dims, hi - lo + 1), dtype=np.int64)
    sq_err, samples = np.zeros(dims), 0
    low, high = (np.asarray(b, dtype=np.float64) for b in tokenizer.bounds())
    clipped = np.zeros(dims, dtype=np.int64)
    for path in shard_paths(out, shards):
        for key, members in iter_shard_samples(path):
            if wanted and key.rsplit("_", 1)[0] not in wanted:
                continue
            tokens, action = _step_arrays(path, key, members, dims)
            counts[np.arange(dims), np.clip(tokens, lo, hi) - lo] += 1
            sq_err += (tokenizer.decode(tokens) - action) ** 2
            clipped += (action < low) | (action > high)
            samples += 1
    if not samples:
        raise ValueError(f"{out}: no sample found" + (" for that selection" if shards or episodes else ""))
    guards = {g["dim"]: g["kind"] for g in tok_doc.get("guards", [])}
    binned = bin_counts(counts, tok_doc)
    return Histogram(binned, sq_err, names, samples, guards, clipped, bin_centres(tokenizer, binned.shape[1]))


def _step_arrays(path: Path, key: str, members: dict[str, bytes], dims: int) -> tuple[np.ndarray, np.ndarray]:
    """A sample's tokens of this step and its float64 action, both [dims], else ``ShardError``."""
    try:
        tokens = load_npy(members["tokens.npy"])
        action = load_npy(members["action.npy"]).astype(np.float64)
    except (KeyError, ValueError) as exc:
        raise ShardError(f"{path}: sample {key}: tokens.npy/action.npy: {exc}") from exc
    if tokens.ndim == 2 and len(tokens):  # a chunk: the first row is this step's action
        tokens = tokens[0]
    if tokens.shape != (dims,) or action.shape != (dims,):
        raise ShardError(
            f"{path}: sample {key}: tokens {list(tokens.shape)}, action {list(action.shape)}, "
            f"the tokenizer has {dims} dims"
        )
    return tokens, action


def bin_centres(tokenizer, bins: int) -> np.ndarray:
    """[D, bins]: the action value bin ``b`` (0-based, as counted) of each dimension decodes to."""
    lo, _ = tokenizer.token_range
    tokens = np.repeat(np.arange(lo, lo + bins, dtype=np.int64)[:, None], tokenizer.dims, axis=1)
    return np.asarray(tokenizer.decode(tokens), dtype=np.float64).T


def bin_counts(token_counts: np.ndarray, tok_doc: dict) -> np.ndarray:
    """[D, token values] counts as [D, bins]: in OpenVLA mode token == bins (y == +1 exactly)
    decodes into the last interval, so it is counted there."""
    if tok_doc.get("mode") != "openvla":
        return token_counts
    counts = token_counts[:, :-1].copy()
    counts[:, -1] += token_counts[:, -1]
    return counts


def bar_line(counts: np.ndarray, width: int = 64) -> str:
    """Occupancy as one line of block characters, ``width`` columns (bins summed per column)."""
    cols = np.array_split(counts, min(width, len(counts)))
    sums = np.array([c.sum() for c in cols], dtype=np.float64)
    if sums.max() == 0:
        return " " * len(sums)
    levels = np.ceil(sums / sums.max() * (len(BARS) - 1)).astype(int)
    return "".join(BARS[v] for v in levels)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.2f}"


def render(h: Histogram, dim: int | None = None, width: int = 64) -> str:
    dims = [dim] if dim is not None else range(h.counts.shape[0])
    bins = h.counts.shape[1]
    lines = [
        f"{h.samples} samples, {h.counts.shape[0]} action dims, {bins} bins "
        f"(one column = {max(1, round(bins / width))} bins)",
        "",
    ]
    header = (
        f"{'dim':>4} {'name':<20} |{'occupancy':^{min(width, bins)}}| {'dead':>5} {'edge%':>6} {'clip%':>6} "
        f"{'H(bits)':>7} {'rmse':>9}  note"
    )
    lines.append(header)
    for d in dims:
        s = h.dim_summary(d)
        lines.append(
            f"{d:>4} {s['name'][:20]:<20} |{bar_line(h.counts[d], width)}| {s['dead_bins']:>5} "
            f"{100 * s['edge_share']:>6.2f} {_pct(s['clipped_share']):>6} {s['entropy_bits']:>7.3f} "
            f"{s['roundtrip_rmse']:>9.3g}  {h.guards.get(d, '') or s['kind']}"
        )
    if any(h.warned(d) for d in dims):
        lines += [
            "",
            "note: a guard kind says the tokenizer erases or clips that dimension; `trajshard stats` "
            "says how, and the fix",
        ]
    if dim is not None:
        lines.append("")
        c = h.counts[dim]
        top = max(int(c.max()), 1)
        for b in range(bins):
            lines.append(f"  bin {b + 1:>5} {int(c[b]):>8} {'#' * round(40 * c[b] / top)}")
    return "\n".join(lines)
