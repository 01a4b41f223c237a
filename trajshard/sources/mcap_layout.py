"""Where the episodes of an MCAP source are: the bag files of each and the folder beside them.

Two layouts, both as recorders leave them:

- flat: ``<root>/<episode>.mcap``; its videos, if any, in the folder ``<root>/<episode>/`` (or, as
  before, ``<root>/<episode>.<camera>.mp4`` beside the bag);
- rosbag2: ``<root>/<episode>/`` holding ``metadata.yaml`` and the bag's splits
  ``<episode>_0.mcap``, ``<episode>_1.mcap``, ... (read in split order), the videos in the same folder.

SOURCE may also be one ``.mcap`` file or one rosbag2 folder (one episode each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm")
SPLIT_RE = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class EpisodeFiles:
    """One episode: its bag files in reading order, and the folder its videos may be in (``None``:
    no such folder). ``legacy_prefix`` is the ``<root>/<episode>.`` prefix of videos beside a flat bag."""

    episode_id: str
    bags: tuple[Path, ...]
    folder: Path | None
    legacy_prefix: Path | None = None

    @property
    def label(self) -> str:
        """The bag as messages name it: ``ep.mcap``, or ``ep/ep_0.mcap`` in a rosbag2 folder."""
        bag = self.bags[0]
        if self.folder is not None and bag.parent == self.folder:
            return f"{self.folder.name}/{bag.name}"
        return bag.name

    def videos(self) -> list[Path]:
        """The video files beside the bag: those in the episode's folder, then the flat layout's
        ``<episode>.<camera>.mp4`` files; sorted by name."""
        found = []
        if self.folder is not None:
            found += sorted(p for p in self.folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if self.legacy_prefix is not None:
            prefix = self.legacy_prefix
            found += sorted(prefix.parent.glob(f"{prefix.name}.*.mp4"))
        return found


def _split_key(path: Path) -> tuple[int, str]:
    m = SPLIT_RE.search(path.stem)
    return (int(m.group(1)) if m else -1, path.name)


def _rosbag2(folder: Path) -> EpisodeFiles | None:
    bags = sorted((p for p in folder.glob("*.mcap") if p.is_file()), key=_split_key)
    return EpisodeFiles(folder.name, tuple(bags), folder) if bags else None


def find_episodes(root: Path) -> dict[str, EpisodeFiles]:
    """Every episode of SOURCE ``root`` (resolved), by id; a flat bag wins over a folder of the same name
    (the folder then holds its videos)."""
    if root.is_file():
        folder = root.parent / root.stem
        return {root.stem: EpisodeFiles(root.stem, (root,), folder if folder.is_dir() else None)}
    if (root / "metadata.yaml").is_file():
        one = _rosbag2(root)
        return {one.episode_id: one} if one else {}
    out: dict[str, EpisodeFiles] = {}
    for bag in sorted(root.glob("*.mcap")):
        if not bag.is_dir():  # a FIFO or a link out is listed, and refused by name when it is read
            folder = root / bag.stem
            out[bag.stem] = EpisodeFiles(
                bag.stem, (bag,), folder if folder.is_dir() else None, root / bag.stem
            )
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in out):
        one = _rosbag2(folder)
        if one is not None:
            out[one.episode_id] = one
    return dict(sorted(out.items()))
