"""Readers that yield Episode objects. Only sources/ and pipelines/shards.py touch the file system."""

from __future__ import annotations

import os
from pathlib import Path

from trajshard.sources.raw import RawSource

SOURCES = {"raw": RawSource}


def detect_format(path: str | os.PathLike) -> str:
    """Guess a source's format from what it holds; raise ValueError when nothing fits."""
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"{path}: not a directory")
    if (root / "meta" / "info.json").is_file() and (root / "shards").is_dir():
        raise ValueError(f"{path}: this is a trajshard output, not a source")
    for child in sorted(root.iterdir())[:1000]:
        if child.is_dir() and (child / "episode.json").is_file():
            return "raw"
    raise ValueError(f"{path}: cannot tell its format (no <episode>/episode.json found); pass --format")


def open_source(path: str | os.PathLike, fmt: str = "auto") -> RawSource:
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in SOURCES:
        raise ValueError(f"unknown source format {fmt!r}; known: {sorted(SOURCES)}")
    return SOURCES[fmt](path)
