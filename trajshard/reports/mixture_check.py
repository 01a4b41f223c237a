"""Per-dataset facts of a ``trajshard mix`` output, for ``validate`` and ``stats`` (docs/loader.md).

A mixed output's samples carry their provenance (``meta.json`` ``dataset_name``, ``source``) and
``meta/mixture.json`` each dataset's weight, draws and own tokenizer. :class:`MixtureTally` is fed
every sample and gives, per dataset: samples, source episodes, the share it got against its weight,
and the round trip of its actions (its own dimensions, ``action_dim``) under the two tokenizers it
has: the output's (``meta/tokenizer.json``, the stored ``tokens.npy``) and its own (re-encoded
from ``action.npy``, as a trainer using each dataset's tokenizer would). The round trip is the
largest ``|decode(tokens) - clip(action)|`` in units of the tokenizer's tolerance (half a bin for
the uniform tokenizer); it fails past ``token_limit`` (that tolerance plus float32 rounding).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trajshard.io import read_json, shard_path, tar_members
from trajshard.schemas.problems import Problem
from trajshard.schemas.sample import load_npy
from trajshard.tokenizers import from_json
from trajshard.tokenizers.pooled import narrowed

# validation.token_limit, passed in (validation imports this module): the one bound every round trip has
Limit = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

MIXTURE_FILE = "meta/mixture.json"
_SMALL = frozenset({"meta.json", "action.npy", "action_chunk.npy", "tokens.npy"})


def _worst(err: np.ndarray, tolerance: np.ndarray, kept_only: bool = False) -> float:
    """max(err / tolerance). A dimension with no tolerance (the tokenizer erases it) counts as
    infinite if it errs at all, or, with ``kept_only``, is left out."""
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), err.shape)
    fill = np.where((err > 0) & (not kept_only), np.inf, 0.0)
    ratio = np.divide(err, tol, out=fill, where=tol > 0)
    return float(ratio.max()) if ratio.size else 0.0


@dataclass
class _Trip:
    """The worst round trip seen: max error / the tokenizer's tolerance (and / another one), and how
    many values passed ``token_limit``."""

    ratio: float = 0.0
    other: float = 0.0  # the same errors / the ``other`` tolerance given to add, on the dims it keeps
    over: int = 0  # values past token_limit
    where: str = ""  # the first sample with one

    def add(self, tok, tokens: np.ndarray, action: np.ndarray, where: str, limit: Limit, other=None) -> None:
        lo, hi = tok.bounds()
        decoded = np.asarray(tok.decode(tokens), dtype=np.float64)
        err = np.abs(decoded - np.clip(action, lo, hi))
        self.ratio = max(self.ratio, _worst(err, tok.tolerance()))
        if other is not None:
            self.other = max(self.other, _worst(err, other, kept_only=True))
        over = int(np.count_nonzero(err > limit(tok.tolerance(), action, decoded)))
        if over and not self.over:
            self.where = where
        self.over += over


@dataclass
class _Dataset:
    name: str
    weight: float
    drawn: int
    own: object  # its own tokenizer (meta/mixture.json)
    samples: int = 0
    episodes: set[str] = field(default_factory=set)
    checked: int = 0
    stored: _Trip = field(default_factory=_Trip)
    trip_own: _Trip = field(default_factory=_Trip)


class MixtureTally:
    """Fed each sample of a mixed output (:meth:`add`); then :meth:`problems` and :meth:`rows`."""

    def __init__(self, mixture: dict, tokenizer, limit: Limit) -> None:
        self.tokenizer = tokenizer  # the output's: meta/tokenizer.json
        self.limit = limit
        self._narrow: dict[int, object] = {}  # the output tokenizer on a dataset's first dims
        self.datasets = {
            d["name"]: _Dataset(d["name"], float(d["weight"]), int(d["drawn"]), from_json(d["tokenizer"]))
            for d in mixture["datasets"]
        }
        self.unknown: dict[str, int] = {}  # samples of a dataset mixture.json does not list
        self.missing = 0  # samples without dataset_name or source in meta.json

    @classmethod
    def of(cls, out: Path, tokenizer, limit: Limit) -> MixtureTally | None:
        """The tally of ``out`` when it is a mixed output (it has meta/mixture.json), else None."""
        path = out / MIXTURE_FILE
        return cls(read_json(path), tokenizer, limit) if path.is_file() else None

    def add(self, where: str, members: dict[str, bytes], deep: bool = True) -> None:
        """Count the sample under its dataset; with ``deep``, its round trips as well."""
        try:
            meta = json.loads(members["meta.json"])
            name = meta["dataset_name"]
            episode = meta["source"]["episode"]
        except (KeyError, TypeError, ValueError):
            self.missing += 1
            return
        ds = self.datasets.get(name)
        if ds is None:
            self.unknown[str(name)] = self.unknown.get(str(name), 0) + 1
            return
        ds.samples += 1
        ds.episodes.add(str(episode))
        if deep:
            self._round_trips(ds, where, members, int(meta["action_dim"]))

    def _round_trips(self, ds: _Dataset, where: str, members: dict[str, bytes], dim: int) -> None:
        try:
            tokens = load_npy(members["tokens.npy"])
            chunk = tokens.ndim == 2 and "action_chunk.npy" in members  # a horizon: tokens of the chunk
            action = load_npy(members["action_chunk.npy" if chunk else "action.npy"]).astype(np.float64)
        except (KeyError, ValueError):
            return  # a missing or broken member is validate_sample's finding
        action, tokens = action[..., :dim], tokens[..., :dim]
        ds.checked += 1
        if dim not in self._narrow:
            self._narrow[dim] = narrowed(self.tokenizer, dim)
        ds.stored.add(self._narrow[dim], tokens, action, where, self.limit, ds.own.tolerance())
        ds.trip_own.add(ds.own, ds.own.encode(action), action, where, self.limit)

    def problems(self) -> list[Problem]:
        """A dataset whose round trip passes its bound; counts that disagree with meta/mixture.json;
        samples of a dataset the mixture does not list."""
        out = []
        for ds in self.datasets.values():
            if ds.samples != ds.drawn:
                out.append(
                    Problem(
                        MIXTURE_FILE,
                        f"datasets.{ds.name}.drawn",
                        f"says {ds.drawn}, shards hold {ds.samples}",
                    )
                )
            for label, trip in (("the output's tokenizer", ds.stored), ("its own tokenizer", ds.trip_own)):
                if trip.over:
                    out.append(
                        Problem(
                            trip.where,
                            f"dataset {ds.name}",
                            f"{trip.over} action values round-trip under {label} farther than its bound "
                            f"(worst {trip.ratio:.3g} x the tolerance, half a bin for uniform)",
                        )
                    )
        if self.missing:
            out.append(
                Problem(MIXTURE_FILE, "datasets", f"{self.missing} samples name no dataset in meta.json")
            )
        for name, n in sorted(self.unknown.items()):
            out.append(
                Problem(MIXTURE_FILE, "datasets", f"{n} samples of dataset {name!r}, which it does not list")
            )
        return out

    def rows(self) -> list[dict]:
        total = sum(ds.samples for ds in self.datasets.values()) or 1
        return [
            {
                "dataset": ds.name,
                "samples": ds.samples,
                "episodes": len(ds.episodes),
                "weight": ds.weight,
                "share": ds.samples / total,
                "checked": ds.checked,
                "roundtrip_output": ds.stored.ratio,
                "roundtrip_output_own_bins": ds.stored.other,
                "roundtrip_own": ds.trip_own.ratio,
                "ok": not (ds.stored.over or ds.trip_own.over),
            }
            for ds in self.datasets.values()
        ]


def mixture_table(out: str | Path, limit: Limit) -> list[dict] | None:
    """The per-dataset rows of a mixed output (None for any other output): every sample's
    ``meta.json``, actions and tokens are read, never its images."""
    out = Path(out)
    tally = MixtureTally.of(out, from_json(read_json(out / "meta" / "tokenizer.json")), limit)
    if tally is None:
        return None
    for shard in read_json(out / "meta" / "manifest.json")["shards"]:
        for key, members in _small_members(shard_path(out, shard["name"])):
            tally.add(f"{shard['name']} {key}", members)
    return tally.rows()


def _small_members(path: Path):
    """``(key, {field: bytes})`` of each sample of a shard, only the members a tally reads."""
    key, members = None, {}
    with open(path, "rb") as f:
        for info, k, fieldname in tar_members(f, path):
            if k != key:
                if key is not None:
                    yield key, members
                key, members = k, {}
            if fieldname in _SMALL:
                f.seek(info.offset_data)
                members[fieldname] = f.read(info.size)
    if key is not None:
        yield key, members


def render_mixture(rows: list[dict]) -> str:
    """The per-dataset table, as validate and stats print it."""
    lines = [
        "datasets of the mixture: round trips as the worst |decoded - action| over a dataset's own dims, "
        "in half bins",
        f"{'dataset':<16}{'samples':>9}{'episodes':>10}{'share':>9}{'weight':>9}"
        f"{'stored':>9}{'in own bins':>13}{'own':>7}  ok",
    ]
    for r in rows:
        lines.append(
            f"{r['dataset'][:16]:<16}{r['samples']:>9}{r['episodes']:>10}{r['share']:>9.2%}{r['weight']:>9.2%}"
            f"{r['roundtrip_output']:>9.3f}{r['roundtrip_output_own_bins']:>13.3f}{r['roundtrip_own']:>7.3f}"
            f"  {'yes' if r['ok'] else 'NO'}"
        )
    lines += [
        "  stored: the stored tokens under meta/tokenizer.json, in its half bins (over 1: a problem)",
        "  in own bins: the same errors in the dataset's own tokenizer's half bins, on the dims it keeps "
        "(over 1: coarser than alone)",
        "  own: its actions re-encoded with its own tokenizer (meta/mixture.json), in its half bins",
    ]
    return "\n".join(lines)
