"""A raw-layout source on an object store (``s3://``, ``gs://``): listed remotely, staged per episode.

The plan comes from one listing of the prefix (no download). ``load(id)`` copies that episode's
files, and nothing else, into a private local directory and reads them with :class:`RawSource`; the
previous episode's copy is deleted first, so a worker holds at most one staged episode on disk. The
videos stay staged until the next ``load``: pass 2 decodes them in between.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from pathlib import Path

from trajshard.schemas.episode import Episode, EpisodeError
from trajshard.schemas.problems import Problem
from trajshard.schemas.raw_layout import EPISODE_ID_RE
from trajshard.sources.raw import RawSource
from trajshard.storage import Store, redact


class StagedRawSource:
    format = "raw"

    def __init__(self, location: str) -> None:
        self.store = Store(location)
        self.root = location  # what tasks reopen
        self.notes: list[str] = []
        if not self.store.probe():
            raise FileNotFoundError(f"raw source {redact(location)} is not a directory (prefix) or is empty")
        self._cache = Path(tempfile.mkdtemp(prefix="trajshard-stage-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._cache, True)
        self._local = RawSource(self._cache)
        self._staged: str | None = None

    def plan(self) -> tuple[list[str], list[Problem]]:
        ids, rejected = [], []
        for name in self.store.list_dirs():
            if EPISODE_ID_RE.match(name):
                ids.append(name)
            else:
                rejected.append(Problem(name, name, "episode directory name must match [A-Za-z0-9_-]+"))
        return ids, rejected

    def load(self, episode_id: str) -> Episode:
        self._stage(episode_id)
        return self._local.load(episode_id)

    def check(self, episode_id: str) -> list[Problem]:
        try:
            self._stage(episode_id)
        except EpisodeError as exc:
            return [Problem(episode_id, exc.where, exc.message)]
        return self._local.check(episode_id)

    def close(self) -> None:
        self._finalizer()

    def _stage(self, episode_id: str) -> None:
        if self._staged == episode_id:
            return
        if self._staged is not None:
            shutil.rmtree(self._cache / self._staged, ignore_errors=True)
            self._staged = None
        if not EPISODE_ID_RE.match(episode_id):
            raise EpisodeError(episode_id, episode_id, "episode id must match [A-Za-z0-9_-]+")
        names = self.store.list(episode_id)
        if not names:
            raise EpisodeError(episode_id, episode_id, "episode directory is missing or empty")
        for name in names:
            if name in (".", "..") or os.sep in name or (os.altsep and os.altsep in name):
                raise EpisodeError(episode_id, name, "file name is not a plain name")
        dest = self._cache / episode_id
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir()
        try:
            for name in names:
                self.store.get_file(f"{episode_id}/{name}", dest / name)
        except OSError as exc:  # a retry stages the episode again from scratch
            shutil.rmtree(dest, ignore_errors=True)
            raise OSError(f"cannot stage {redact(self.store.path(episode_id))}/{name}: {exc}") from exc
        self._staged = episode_id
