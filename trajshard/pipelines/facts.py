"""What tasks return to the driver: small summaries, never decoded frames.

Pass 1 returns the :class:`EpisodeFacts` of each good episode's parts (or the Problem that
quarantines it); pass 2 a :class:`GroupResult` per group of episodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trajshard.pipelines.align import StreamReport
from trajshard.pipelines.shards import PartInfo
from trajshard.pipelines.stats import StreamStats
from trajshard.schemas.problems import Problem
from trajshard.tokenizers.report import RoundTrip


class IngestError(RuntimeError):
    """The job cannot run or cannot finish (not a bad episode: those are quarantined)."""


@dataclass
class EpisodeFacts:
    """What pass 1 learns about one aligned part of a good episode (no video decoded)."""

    episode: str  # the part's id: the source episode id, or <id>_partNN when gaps split it
    source_episode: str
    steps: int
    start_time: float
    end_time: float
    report: dict[str, StreamReport]
    shape: tuple  # (action dims, state dims, cameras, action source): one dataset has one shape
    stats: dict[str, StreamStats] | None  # "action", "state"; dropped once merged on the driver
    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[str, ...]
    embodiment: str
    action_source: str
    cuts: tuple[int, ...] = ()  # ticks where a pass-2 task may start this part (plan.cut_ticks)
    trimmed: tuple[int, int] = (0, 0)  # idle ticks trimmed off the source episode's start and end
    cameras_left_out: tuple[str, ...] = ()  # the episode's cameras the config's camera list leaves out
    reader_notes: tuple[str, ...] = ()  # notes the reader made while loading this episode (in its task)
    ended_early: tuple[str, float] | None = None  # the stream that ended first, seconds before the last


@dataclass
class GroupResult:
    parts: list[PartInfo] = field(default_factory=list)
    quarantined: list[Problem] = field(default_factory=list)
    frames_written: int = 0
    roundtrip: RoundTrip | None = None

    def to_state(self) -> dict[str, object]:
        """Everything commit needs, exactly, for a resumable job's group record."""
        return {
            "parts": [
                {
                    "name": p.name,
                    "samples": p.samples,
                    "bytes": p.bytes,
                    "sha256": p.sha256,
                    "episodes": p.episodes,
                }
                for p in self.parts
            ],
            "quarantined": [q.to_record() for q in self.quarantined],
            "frames_written": self.frames_written,
            "roundtrip": None if self.roundtrip is None else self.roundtrip.to_state(),
        }

    @classmethod
    def from_state(cls, d: dict) -> GroupResult:
        return cls(
            [
                PartInfo(p["name"], p["samples"], p["bytes"], p["sha256"], list(p["episodes"]))
                for p in d["parts"]
            ],
            [Problem.from_record(q) for q in d["quarantined"]],
            int(d["frames_written"]),
            None if d["roundtrip"] is None else RoundTrip.from_state(d["roundtrip"]),
        )


def part_names(results) -> set[str]:
    """The part file names the group results hold."""
    return {p.name for r in results for p in r.parts}


@dataclass
class IngestReport:
    out: str
    episodes_input: int
    episodes_written: int
    episodes_quarantined: int
    samples: int
    shards: int
    frames: int
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)  # wall seconds of plan, pass1, fit, pass2, commit
    warnings: list[str] = field(default_factory=list)  # what degrades the data, with its fix
    episodes_filtered: int = 0  # left out by the job's filters (written + quarantined + filtered = input)
    already_complete: bool = False  # --resume found this job's dataset finished: nothing was done
    shard_note: str = ""  # why there are more shards than the size cap needs ('' when there are not)

    @classmethod
    def of_counts(cls, out: str, counts: dict, frames: int, seconds: float) -> IngestReport:
        """The report of a dataset from info.json's ``counts``."""
        return cls(
            out,
            counts["episodes_input"],
            counts["episodes_written"],
            counts["episodes_quarantined"],
            counts["samples"],
            counts["shards"],
            frames,
            seconds,
            episodes_filtered=counts.get("episodes_filtered", 0),
        )
