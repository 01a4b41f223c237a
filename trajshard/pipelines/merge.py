"""Pass 1's results merged on the driver, in episode order, into one summary per episode shape."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace

from trajshard.pipelines.facts import EpisodeFacts
from trajshard.pipelines.stats import StreamStats
from trajshard.schemas.problems import Filtered, Problem


@dataclass
class Pass1Summary:
    """Everything pass 1 produced: the kept parts' facts, every quarantined episode (read failures,
    part-id clashes and odd shapes), the statistics of stats.json and the merged action sketch."""

    facts: list[EpisodeFacts] = field(default_factory=list)
    quarantined: list[Problem] = field(default_factory=list)
    filtered: list[Filtered] = field(default_factory=list)
    streams: dict[str, dict] = field(default_factory=dict)
    sketch: StreamStats | None = None
    notes: list[str] = field(default_factory=list)  # what the dataset-shape rule did, in words
    losses: dict[str, dict[str, int]] = field(default_factory=dict)  # info.json source.losses, by kind


class Pass1Merger:
    """Merges pass-1 results in episode order as they arrive, so the driver holds one merged summary
    per (action dims, state dims, cameras, action source) shape, never every episode's values. At the
    end the most common shape wins (ties: the one seen first); episodes of other shapes are quarantined."""

    def __init__(self, episode_ids: list[str]) -> None:
        self.ids = set(episode_ids)  # every episode pass 1 reads: part ids must not be among them
        self.next = 0
        self.waiting: dict[int, list] = {}
        self.facts: list[EpisodeFacts] = []
        self.quarantined: list[Problem] = []
        self.filtered: list[Filtered] = []
        self.merged: dict[tuple, dict[str, StreamStats]] = {}

    def add(self, index: int, batch: list[list[EpisodeFacts] | Problem]) -> None:
        self.waiting[index] = batch
        while self.next in self.waiting:
            for episode in self.waiting.pop(self.next):
                if isinstance(episode, Filtered):
                    self.filtered.append(episode)
                    continue
                if isinstance(episode, Problem):
                    self.quarantined.append(episode)
                    continue
                if any(r.episode != r.source_episode and r.episode in self.ids for r in episode):
                    self.quarantined.append(_clash(episode[0].source_episode))
                    continue  # its statistics are never merged
                for r in episode:  # the parts of one source episode
                    have = self.merged.get(r.shape)
                    self.merged[r.shape] = (
                        r.stats if have is None else {k: have[k].merge(v) for k, v in r.stats.items()}
                    )
                    self.facts.append(replace(r, stats=None))
            self.next += 1

    def finish(self) -> Pass1Summary:
        """The summary; the merger is not used afterwards."""
        facts, quarantined = self.facts, list(self.quarantined)
        if not facts:
            return Pass1Summary([], quarantined, self.filtered)
        counts = Counter(f.shape for f in facts)
        best = max(counts, key=lambda k: counts[k])  # Counter keeps first-seen order on ties
        kept = [f for f in facts if f.shape == best]
        odd = {f.source_episode: f for f in facts if f.shape != best}
        quarantined += [_odd_shape(f, best) for f in odd.values()]
        notes = (
            [_shapes_note(Counter(f.shape for f in {f.source_episode: f for f in facts}.values()), best)]
            if odd
            else []
        )
        notes += reader_notes(facts)
        early = [f for f in {f.source_episode: f for f in kept}.values() if f.ended_early]
        if early:
            notes.append(_early_note(early))
        left = Counter(c for f in {f.source_episode: f for f in kept}.values() for c in f.cameras_left_out)
        if left:
            listed = ", ".join(f"{c} ({n} episodes)" for c, n in sorted(left.items()))
            notes.append(f"cameras left out by the camera list (--camera): {listed}")
        stats = self.merged[best]
        streams = {
            "action": stats["action"].to_json(kept[0].action_names),
            "state": stats["state"].to_json(kept[0].state_names),
        }
        ended = Counter(f.ended_early[0] for f in early)
        losses = {
            "cameras_left_out": dict(sorted(left.items())),
            "streams_ended_early": dict(sorted(ended.items())),
        }
        return Pass1Summary(kept, quarantined, self.filtered, streams, stats["action"], notes, losses)


def reader_notes(facts: list[EpisodeFacts]) -> list[str]:
    """The notes readers made in the tasks, once each, in episode order. Each task's reader notes a
    quirk at the first episode that shows it, and may name that episode: notes equal but for that id
    are one note, in the words of the first episode that made it (the same on any number of workers)."""
    out, keys = [], set()
    for f in facts:
        for note in f.reader_notes:
            key = re.sub(rf"(?<![\w-]){re.escape(f.source_episode)}(?![\w-])", "<episode>", note)
            if key not in keys:
                keys.add(key)
                out.append(note)
    return out


def _early_note(early: list[EpisodeFacts]) -> str:
    """One line on the episodes cut short because a stream ended before the others."""
    worst = max(early, key=lambda f: f.ended_early[1])
    return (
        f"{len(early)} episode(s) end where their first stream ends, before the others: the clock covers "
        f"only the span every stream covers (e.g. a video with fewer frames than the table's rows); "
        f"longest: {worst.source_episode}, {worst.ended_early[0]} ends {worst.ended_early[1]:.3g} s early"
    )


def _clash(episode: str) -> Problem:
    return Problem(episode, "streams", "a gap split it into parts whose ids are taken by other episodes")


def _shapes_note(episodes_of: Counter, best: tuple) -> str:
    """One line on episodes of different shapes: which the dataset kept, and how to choose."""
    others = "; ".join(
        f"{n} with cameras {list(shape[2])}, action {shape[0]}-D, state {shape[1]}-D"
        for shape, n in episodes_of.most_common()
        if shape != best
    )
    return (
        f"episodes differ in shape: {episodes_of[best]} with cameras {list(best[2])}, action {best[0]}-D, "
        f"state {best[1]}-D were kept, the others quarantined ({others}); name the cameras a dataset "
        "must have with --camera (the others are then left out of every episode)"
    )


def _odd_shape(f: EpisodeFacts, best: tuple) -> Problem:
    return Problem(
        f.source_episode,
        "streams",
        f"action {f.shape[0]}-D ({f.shape[3]}), state {f.shape[1]}-D, cameras {list(f.shape[2])} "
        f"differ from the dataset's {best[0]}-D ({best[3]}), {best[1]}-D, {list(best[2])}",
    )
