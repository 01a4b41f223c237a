"""Where things are in a robot-learning HDF5 file: the group holding the demos (robomimic's ``data``,
the root, or the mapping's), an ALOHA file's single episode, the observation keys, the default state,
action and instruction, and the checked reads of datasets (bytes inside the file, declared sizes
bounded). Used by the reader (sources/hdf5.py) and its ``describe``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from trajshard.schemas.episode import EpisodeError
from trajshard.sources.arrays import check_array
from trajshard.sources.mapping import Mapping

OBS_GROUPS = ("obs", "observation", "observations")
STATE_DATASETS = ("states", "state", "qpos", "proprio")
TEXT_ATTRS = ("instruction", "language_instruction", "task", "language")


def attr_text(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


NO_LAYOUT = (
    "neither robomimic (data/demo_N), ALOHA (/observations) nor demo groups at the root (demo_N/action); "
    "name the group holding the demos with mapping.episodes"
)


def demo_groups(h: h5py.File, mapping: Mapping) -> tuple[str, list[str]] | None:
    """Where a file's demos are: (the group holding them, "" for the root; their names in demo order),
    or None for an ALOHA file (one episode, the file's root). ``mapping.episodes`` names the group;
    else ``data``, else ``/observations`` (ALOHA), else the root's groups that hold an action."""
    if mapping.episodes:
        where = mapping.episodes.strip("/")
        g = h[where] if where else h
        if not isinstance(g, h5py.Group):
            raise KeyError(f"{mapping.episodes!r} is not a group")
        return where, members(g)
    if "data" in h:
        return "data", members(h["data"])
    if "observations" in h:
        return None
    hard = [k for k in members(h) if isinstance(h.get(k, getlink=True), h5py.HardLink)]
    return "", [k for k in hard if isinstance(h[k], h5py.Group) and action_key(h[k])]


def members(g: h5py.Group) -> list[str]:
    """A group's members in demo order, datasets stored in it left out (a link is kept: reading it
    quarantines the episode with the reason)."""
    hard = lambda k: isinstance(g.get(k, getlink=True), h5py.HardLink)  # noqa: E731
    return sorted((k for k in g if not (hard(k) and isinstance(g[k], h5py.Dataset))), key=demo_order)


def action_key(g: h5py.Group) -> str | None:
    return next((k for k in ("actions", "action") if g.get(k, getlink=True) is not None), None)


def obs_keys(eid: str, f: Path, g: h5py.Group, exclude: tuple[str, ...]) -> dict[str, h5py.Dataset]:
    """The observation datasets of a demo (``obs/<key>`` -> dataset), the excluded ones never opened."""
    name = next((k for k in OBS_GROUPS if isinstance(g.get(k), h5py.Group)), None)
    if name is None:
        return {}
    keep = [k for k in g[name] if k not in exclude and f"{name}/{k}" not in exclude]
    return {f"{name}/{k}": dataset(eid, f, g[name][k]) for k in keep}


def default_state(g: h5py.Group, kind: str, obs: dict[str, h5py.Dataset]) -> list:
    """The datasets concatenated into the default state: ALOHA's ``observations/qpos``; the 2-D
    observation keys in name order; else ``states`` (the simulator state)."""
    if kind == "aloha":
        return [g["observations/qpos"]]
    low = [d for k, d in sorted(obs.items()) if d.ndim == 2]
    return low or [g[next((k for k in STATE_DATASETS if g.get(k, getlink=True) is not None), "states")]]


def default_action(eid: str, f: Path, g: h5py.Group) -> list:
    key = action_key(g)
    if key is None:
        raise EpisodeError(eid, f"{f.name}:{g.name}", "no action dataset (actions or action); map it")
    return [g[key]]


def default_text(f: Path, h: h5py.File, g: h5py.Group, kind: str) -> str:
    """ALOHA: the file's ``instruction``, else the directory name. Demo groups: the group holding
    them's ``env`` (robomimic's task), else an instruction attribute, else the file's name."""
    if kind == "aloha":
        return attr_text(h.attrs.get("instruction", "")) or f.parent.name.replace("_", " ")
    parent = g.parent
    env = attr_text(parent.attrs.get("env", "")) or env_name(parent.attrs.get("env_args"))
    if env:
        return env
    for obj in (g, parent, h):
        text = next((attr_text(obj.attrs[a]) for a in TEXT_ATTRS if a in obj.attrs), "")
        if text:
            return text
    return f.stem.replace("_", " ")


def attribute(eid: str, f: Path, g: h5py.Group, name: str) -> str:
    """The attribute ``name`` of the demo group or, when it has none, of the nearest group above."""
    obj = g
    while True:
        if name in obj.attrs:
            return attr_text(obj.attrs[name])
        if obj.name == "/":
            raise EpisodeError(
                eid, f.name, f"no attribute {name!r} on {g.name} or above (mapping.instruction)"
            )
        obj = obj.parent


def no_external_links(eid: str, f: Path, group: h5py.Group) -> None:
    """Refuse an episode whose group holds an external link anywhere below it, before any is
    followed: HDF5 opens the link's target file as soon as the link is accessed."""
    found: list[tuple[str, str]] = []

    def seen(name: str) -> bool | None:  # the link itself (getlink), never what it leads to
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            found.append((name, link.filename))
            return True  # stop at the first
        return None

    group.visit_links(seen)
    if found:
        name, target = found[0]
        raise EpisodeError(
            eid,
            f"{f.name}:{group.name.rstrip('/')}/{name}",
            f"is an external link into {target}: outside the source file",
        )


def dataset(eid: str, f: Path, obj) -> h5py.Dataset:
    """An HDF5 dataset whose bytes lie in ``f`` itself: not reached through an external link, not
    virtual (mapped from other files), not in external raw storage."""
    where = f"{f.name}:{getattr(obj, 'name', '?')}"
    if not isinstance(obj, h5py.Dataset):
        raise EpisodeError(eid, where, "is a group where a dataset is expected")
    if Path(obj.file.filename).resolve() != f.resolve():
        raise EpisodeError(
            eid, where, f"is an external link into {obj.file.filename}: outside the source file"
        )
    if obj.is_virtual or obj.external:
        raise EpisodeError(eid, where, "is stored outside the file (virtual or external storage): refused")
    return obj


def array(eid: str, f: Path, obj) -> np.ndarray:
    """A low-dimensional dataset read whole, as float32, after its declared size is checked."""
    d = dataset(eid, f, obj)
    check_array(eid, f"{f.name}:{d.name}", d.shape)
    if d.dtype.kind not in "biuf":
        raise EpisodeError(eid, f"{f.name}:{d.name}", f"is {d.dtype}, not numbers")
    return np.asarray(d, dtype=np.float32)


def demo_order(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c.isdigit())
    return (int(digits) if digits else -1, name)


def env_name(env_args: object) -> str:
    try:
        return str(json.loads(attr_text(env_args)).get("env_name", ""))
    except (ValueError, TypeError, AttributeError):
        return ""
