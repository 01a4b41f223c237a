"""``trajshard episodes PATH``: the episode ids a dataset holds (samples, split, instruction), or the ids
a source's reader plans to read, so that ``inspect --episode`` and the job's id filters have ids to take.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from trajshard.io import shard_path
from trajshard.reports.page.bins import iter_members
from trajshard.schemas.problems import Problem
from trajshard.schemas.sample import split_key


@dataclass(frozen=True)
class EpisodeRow:
    """One written episode (a part id when a gap split its recording)."""

    episode: str
    source_episode: str
    split: str
    samples: int
    instruction: str | None  # the instruction in force at its first step; None without a sample

    def to_json(self) -> dict:
        return asdict(self)


def dataset_episodes(out: str | Path, split: str | None = None) -> list[EpisodeRow]:
    """The episodes of a trajshard output in ``meta/episodes.parquet`` order, ``split``'s only when given."""
    out = Path(out)
    cols = ["episode", "source_episode", "split", "steps", "shards"]
    rows = pq.read_table(out / "meta" / "episodes.parquet", columns=cols).to_pylist()
    rows = [r for r in rows if split is None or r["split"] == split]
    said = first_instructions(out, {r["episode"]: r["shards"][0] for r in rows if r["shards"]})
    return [
        EpisodeRow(r["episode"], r["source_episode"], r["split"], r["steps"], said.get(r["episode"]))
        for r in rows
    ]


def first_instructions(out: Path, first_shard: dict[str, str]) -> dict[str, str]:
    """The instruction at each episode's lowest step in its first shard, from the samples' ``meta.json``.
    Each shard is read once, images skipped, and only until it has given step 0 of every episode
    wanted from it (with a write-time shuffle that can be the whole shard)."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for episode, shard in first_shard.items():
        wanted[shard].add(episode)
    found: dict[str, tuple[int, str]] = {}
    for shard, episodes in sorted(wanted.items()):
        missing = set(episodes)
        members = iter_members(
            shard_path(out, shard),
            lambda key, field, mine=episodes: field == "meta.json" and _episode(key) in mine,
        )
        for key, _, data in members:
            episode, step = split_key(key) or (key, 0)
            if episode not in found or step < found[episode][0]:
                found[episode] = (step, str(json.loads(data).get("instruction")))
            if step == 0:
                missing.discard(episode)
            if not missing:
                break
    return {episode: text for episode, (_, text) in found.items()}


def _episode(key: str) -> str | None:
    parts = split_key(key)
    return parts[0] if parts else None


def render_dataset(out: str, rows: list[EpisodeRow]) -> str:
    """A header line, then one line per episode: id, split, samples, instruction."""
    per_split: dict[str, int] = defaultdict(int)
    for r in rows:
        per_split[r.split] += 1
    counts = ", ".join(f"{s} {n}" for s, n in per_split.items())
    width = max([len(r.episode) for r in rows] + [7])
    lines = [f"dataset {out}: {len(rows)} episodes ({counts or 'none'})"]
    lines.append(f"{'episode':<{width}}  {'split':<8} {'samples':>7}  instruction")
    for r in rows:
        source = "" if r.source_episode == r.episode else f" [part of {r.source_episode}]"
        lines.append(f"{r.episode:<{width}}  {r.split:<8} {r.samples:>7}  {r.instruction or '-'}{source}")
    return "\n".join(lines)


def render_source(path: str, fmt: str, ids: list[str], rejected: list[Problem]) -> str:
    """The ids a source's reader plans, one a line, then those it rejects by their id, with the reason."""
    lines = [f"source {path} ({fmt}): {len(ids)} episodes planned, {len(rejected)} rejected by their id"]
    lines += ids
    lines += [f"rejected {p.where}: {p.message}" for p in rejected]
    return "\n".join(lines)
