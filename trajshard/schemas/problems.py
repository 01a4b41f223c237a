"""A problem found by a validator: where it is and what is wrong."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input or an output.

    ``where`` names the place (episode id, shard name, sample key), ``field`` the file, stream or
    sample field, and ``message`` says what is wrong in words a user can act on.
    """

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        field = f" [{self.field}]" if self.field else ""
        return f"{self.where}{field}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def format_problems(problems: list[Problem], limit: int = 50) -> str:
    """Render problems one per line, at most ``limit`` of them plus a count of the rest."""
    lines = [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)
