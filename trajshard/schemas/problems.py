"""The one shape of "something is wrong": a Problem names where, in which file or field, and what.

Validators list Problems; a quarantined episode is a Problem (``where`` is the episode id, ``field``
the file or stream); a reader raises ``EpisodeError``, which carries one.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input or an output.

    ``where`` names the place (episode id, shard name, sample key), ``field`` the file, stream or
    sample field, and ``message`` says what is wrong in words a user can act on. ``retryable``: an
    unexpected exception (it may be transient), not a finding about the data; never serialized.
    """

    where: str
    field: str
    message: str
    retryable: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.where}{field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "field": self.field, "message": self.message}

    def to_record(self) -> dict[str, str]:
        """The quarantine record of an episode (a line of ``meta/quarantine.jsonl``)."""
        return {"episode": self.where, "file": self.field, "reason": self.message}

    @classmethod
    def from_record(cls, d: dict) -> Problem:
        return cls(d["episode"], d["file"], d["reason"])


@dataclass(frozen=True)
class Filtered(Problem):
    """An episode the job config leaves out on purpose (pipelines/filters.py): not a fault of the data.
    ``field`` is ``filter``; recorded in meta/filtered.jsonl, never in quarantine.jsonl."""


class EpisodeFiltered(Exception):
    """Raised by a filter stage: the episode is left out, with the reason."""

    def __init__(self, episode_id: str, reason: str) -> None:
        super().__init__(f"episode {episode_id!r} filtered: {reason}")
        self.episode_id, self.reason = episode_id, reason


def format_problems(problems: list[Problem], limit: int = 50) -> str:
    """Render problems one per line, at most ``limit`` of them plus a count of the rest."""
    lines = [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
