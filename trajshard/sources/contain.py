"""Containment: every file a reader opens lies inside the source, and paths built from the source's
own metadata (LeRobot's templates) cannot escape it or blow up.

One helper for every reader: ``contained`` resolves a path (following links) and refuses one outside
the source root; ``from_template`` formats a metadata path template with bounded field widths first.
"""

from __future__ import annotations

import stat
import string
from pathlib import Path

from trajshard.schemas.episode import EpisodeError

MAX_FIELD_WIDTH = 32  # digits a template field may be padded to ({episode_index:06d}); more is hostile


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, links followed, lies in ``root`` (a resolved directory)."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a link loop, a name too long
        return False


def contained(root: Path, path: Path, episode_id: str, what: str = "") -> Path:
    """``path`` when it lies in the source ``root``, else EpisodeError naming it."""
    if not inside(root, path):
        name = what or path.name
        raise EpisodeError(
            episode_id, name, f"{path} is outside the source (a link, an absolute or '..' path)"
        )
    return path


def regular_file(path: Path, episode_id: str) -> Path:
    """``path`` when it is a regular file (links followed): a FIFO or a device would block a reader
    forever or never end."""
    try:
        regular = stat.S_ISREG(path.stat().st_mode)
    except OSError as exc:
        raise EpisodeError(episode_id, path.name, f"cannot be read: {exc.strerror or exc}") from exc
    if not regular:
        raise EpisodeError(episode_id, path.name, "is not a regular file (a FIFO, a device or a directory)")
    return path


def from_template(root: Path, template: str, episode_id: str, **fields: object) -> Path:
    """``root / template.format(**fields)``, contained in ``root``; EpisodeError for a template whose
    fields ask for huge widths or that leads outside the source."""
    for _, name, spec, _ in string.Formatter().parse(template):
        digits = "".join(c for c in (spec or "") if c.isdigit())
        if name is not None and digits and int(digits) > MAX_FIELD_WIDTH:
            raise EpisodeError(
                episode_id,
                "meta/info.json",
                f"path template field {{{name}:{spec}}} pads to {int(digits)} characters",
            )
    try:
        relative = template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise EpisodeError(
            episode_id, "meta/info.json", f"path template {template!r} cannot be filled: {exc}"
        ) from exc
    return contained(root, root / relative, episode_id, "meta/info.json")
