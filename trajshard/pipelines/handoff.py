"""A cache in front of the episode reader: pass 1's prepared episodes handed to pass 2 through files.

A pass-2 task needs what pass 1's prepare stages made of its episodes (pipelines/episode.py): every
camera's frame times, presentation timestamps and entry frames, and the aligned ticks (times, states,
actions, each camera's frame, instructions). Reading them again probes every video (demuxing every
packet), reads the tables and aligns, in every task, so more than once for an episode cut into spans.

:class:`HandoffReader` wraps the episode reader. In pass 1 it writes each good episode's result as
``<dir>/<episode id>.safetensors`` (named arrays and a JSON header: no pickle; a temporary file
renamed into place); in pass 2 it reads that file and falls back to the reader when the file is
missing or unreadable. A handoff never changes the output (a test compares), and a failure to write
one never quarantines an episode.

``<dir>`` is ``OUT/.trajshard-handoff/<run>``, a new random name for each run, so pass 2 only ever
reads what this run's pass 1 wrote (a crashed run's, or another job's on the same OUT, are in
another directory, or gone). The driver deletes ``OUT/.trajshard-handoff/`` before pass 1 and after
pass 2, and a late write into a deleted directory fails instead of making it again. Only with a
local OUT and a local source: a remote source's load is what copies the episode's videos to the
worker that decodes them. ``TRAJSHARD_HANDOFF=0`` turns it off.
"""

from __future__ import annotations

import json
import logging
import os
import uuid

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save

from trajshard.pipelines.align import AlignedEpisode
from trajshard.pipelines.episode import EpisodeReader, EpisodeWork
from trajshard.schemas.episode import Camera, Episode
from trajshard.storage import Store, atomic_output, is_remote

HANDOFF = ".trajshard-handoff"
HANDOFF_ENV = "TRAJSHARD_HANDOFF"
VERSION = 1
SUFFIX = ".safetensors"
log = logging.getLogger("trajshard.handoff")


class HandoffReader:
    """An episode reader with pass 1's results in ``directory`` in front of it: pass 1 (``writes``)
    hands every episode it reads over; pass 2 reads what was handed over, else reads the source."""

    def __init__(self, reader: EpisodeReader, directory: str, writes: bool) -> None:
        self.reader, self.directory, self.writes = reader, directory, writes

    @property
    def source(self):
        return self.reader.source

    def read(self, episode_id: str) -> EpisodeWork:
        if not self.writes:
            found = read(self.directory, episode_id)
            if found is not None:
                return EpisodeWork(*found)
        work = self.reader.read(episode_id)
        if self.writes:
            write(self.directory, episode_id, work.episode, work.parts)
        return work


def prepare(store: Store, source_root: str) -> str | None:
    """A new, empty handoff directory under OUT for this run (its local path), after deleting what
    earlier runs left; None when handoffs are off, cannot help (remote OUT or source) or cannot be
    made."""
    remove(store)
    if store.remote or is_remote(source_root) or os.environ.get(HANDOFF_ENV, "").strip() == "0":
        return None
    run = f"{HANDOFF}/{uuid.uuid4().hex}"
    try:
        store.makedirs(run)
    except OSError as exc:
        log.warning("pass 2 will load every episode again: cannot make %s: %s", run, exc)
        return None
    return str(store.local(run))


def remove(store: Store) -> None:
    """Delete OUT's handoff directory, every run's; a failure is logged, never raised (the job's
    outcome does not depend on it)."""
    if store.remote:
        return
    try:
        store.delete_dir(HANDOFF)
    except OSError as exc:
        log.warning("cannot delete %s under OUT: %s", HANDOFF, exc)


def write(directory: str, episode_id: str, ep: Episode, parts: list[AlignedEpisode]) -> bool:
    """Hand the prepared episode ``episode_id`` (the prepare stages' result) to pass 2; False when it could
    not be written."""
    try:
        data = save(*_encode(episode_id, ep, parts))
        with atomic_output(os.path.join(directory, episode_id + SUFFIX), make_parents=False) as f:
            f.write(data)
        return True
    except Exception:  # noqa: BLE001 - pass 2 loads the episode itself
        return False


def read(directory: str, episode_id: str) -> tuple[Episode, list[AlignedEpisode]] | None:
    """What pass 1 handed over for ``episode_id``, or None (no file, another version, unreadable)."""
    path = os.path.join(directory, episode_id + SUFFIX)
    try:
        with safe_open(path, "np") as f:
            doc = json.loads((f.metadata() or {})["handoff"])
            if doc.get("version") != VERSION or doc.get("episode") != episode_id:
                return None
            return _decode(doc, {k: f.get_tensor(k) for k in f.keys()})
    except Exception:  # noqa: BLE001 - missing or unreadable: pass 2 loads the episode itself
        return None


def _encode(
    episode_id: str, ep: Episode, parts: list[AlignedEpisode]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    names = list(ep.cameras)
    tensors: dict[str, np.ndarray] = {}
    cameras = []
    for i, name in enumerate(names):
        c = ep.cameras[name]
        tensors[f"c{i}.timestamps"] = c.timestamps
        tensors[f"c{i}.pts"] = c.pts
        if c.entry is not None:
            tensors[f"c{i}.entry"] = c.entry
        cameras.append(
            {
                "name": c.name,
                "path": c.path,
                "width": c.width,
                "height": c.height,
                "codec": c.codec,
                "entry": c.entry is not None,
            }
        )
    texts: dict[str, int] = {}
    docs = []
    for j, al in enumerate(parts):
        tensors[f"p{j}.times"] = al.times
        tensors[f"p{j}.state"] = al.state
        tensors[f"p{j}.action"] = al.action
        for cam, idx in al.frames.items():
            tensors[f"p{j}.frames.{names.index(cam)}"] = idx
        tensors[f"p{j}.instructions"] = np.array(
            [texts.setdefault(t, len(texts)) for t in al.instructions], dtype=np.int64
        )
        docs.append(
            {
                "episode_id": al.episode_id,
                "source_episode": al.source_episode,
                "action_source": al.action_source,
                "cameras": [names.index(cam) for cam in al.frames],
            }
        )
    doc = {
        "version": VERSION,
        "episode": episode_id,
        "episode_id": ep.episode_id,
        "embodiment": ep.embodiment,
        "cameras": cameras,
        "texts": list(texts),
        "parts": docs,
    }
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    return tensors, {"handoff": json.dumps(doc, ensure_ascii=False)}


def _decode(doc: dict, t: dict[str, np.ndarray]) -> tuple[Episode, list[AlignedEpisode]]:
    """The episode as pass 2 uses it: its id, embodiment and cameras (no streams or instruction
    segments: pass 2 reads the aligned parts' instructions), and its aligned parts (no reports)."""
    cameras = {}
    for i, c in enumerate(doc["cameras"]):
        cameras[c["name"]] = Camera(
            c["name"],
            c["path"],
            t[f"c{i}.timestamps"],
            t[f"c{i}.pts"],
            c["width"],
            c["height"],
            c["codec"],
            t[f"c{i}.entry"] if c["entry"] else None,
        )
    names = [c["name"] for c in doc["cameras"]]
    texts = doc["texts"]
    parts = [
        AlignedEpisode(
            episode_id=p["episode_id"],
            times=t[f"p{j}.times"],
            state=t[f"p{j}.state"],
            action=t[f"p{j}.action"],
            frames={names[i]: t[f"p{j}.frames.{i}"] for i in p["cameras"]},
            instructions=[texts[k] for k in t[f"p{j}.instructions"].tolist()],
            source_episode=p["source_episode"],
            action_source=p["action_source"],
        )
        for j, p in enumerate(doc["parts"])
    ]
    ep = Episode(doc["episode_id"], (), {}, cameras, embodiment=doc["embodiment"])
    return ep, parts
