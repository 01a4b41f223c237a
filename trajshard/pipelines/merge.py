"""Pass 1's results merged on the driver, in episode order, into one summary per episode shape."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from trajshard.pipelines.passes import EpisodeFacts, Quarantined
from trajshard.pipelines.stats import StreamStats


class Pass1Merger:
    """Merges pass-1 results in episode order as they arrive, so the driver holds one merged summary
    per (action dims, state dims, cameras) shape, never every episode's values. At the end the most
    common shape wins (ties: the one seen first); episodes of other shapes are quarantined."""

    def __init__(self) -> None:
        self.next = 0
        self.waiting: dict[int, list] = {}
        self.facts: list[EpisodeFacts] = []
        self.quarantined: list[Quarantined] = []
        self.merged: dict[tuple, dict[str, StreamStats]] = {}
        self.sketch: StreamStats | None = None

    def add(self, index: int, batch: list[list[EpisodeFacts] | Quarantined]) -> None:
        self.waiting[index] = batch
        while self.next in self.waiting:
            for episode in self.waiting.pop(self.next):
                if isinstance(episode, Quarantined):
                    self.quarantined.append(episode)
                    continue
                for r in episode:  # the parts of one source episode
                    have = self.merged.get(r.shape)
                    self.merged[r.shape] = (
                        r.stats if have is None else {k: have[k].merge(v) for k, v in r.stats.items()}
                    )
                    self.facts.append(replace(r, stats=None))
            self.next += 1

    def finish(self) -> tuple[list[EpisodeFacts], list[Quarantined], dict[str, dict]]:
        if not self.facts:
            return [], [], {}
        sources = {f.source_episode for f in self.facts} | {q.episode for q in self.quarantined}
        clash = {
            f.source_episode for f in self.facts if f.episode != f.source_episode and f.episode in sources
        }
        self.quarantined += [
            Quarantined(e, "streams", "a gap split it into parts whose ids are taken by other episodes")
            for e in sorted(clash)
        ]
        self.facts = [f for f in self.facts if f.source_episode not in clash]
        if not self.facts:
            return [], [], {}
        counts = Counter(f.shape for f in self.facts)
        best = max(counts, key=lambda k: counts[k])  # Counter keeps first-seen order on ties
        kept = [f for f in self.facts if f.shape == best]
        odd_facts = {f.source_episode: f for f in self.facts if f.shape != best}
        odd = [
            Quarantined(
                f.source_episode,
                "streams",
                f"action {f.shape[0]}-D ({f.shape[3]}), state {f.shape[1]}-D, cameras {list(f.shape[2])} "
                f"differ from the dataset's {best[0]}-D ({best[3]}), {best[1]}-D, {list(best[2])}",
            )
            for f in odd_facts.values()
        ]
        stats = self.merged[best]
        self.sketch = stats["action"]
        streams = {
            "action": stats["action"].to_json(kept[0].action_names),
            "state": stats["state"].to_json(kept[0].state_names),
        }
        return kept, odd, streams
