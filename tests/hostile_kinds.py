"""The hostile corpus as one registry of kinds, across formats (raw, LeRobot, HDF5, RLDS, MCAP).

A ``Kind`` builds one source: good episodes plus the hostile one(s). ``build(src, outside, synthetic)``
writes the source into ``src``, may put what it links to into ``outside`` (a sibling nobody may read
through the source), and returns ({bad episode id: words its quarantine record ``file: reason`` must
contain}, [good episode ids, each to be written once]). ``KINDS`` maps a kind's name to it; the names
are distinct, so ``len(KINDS)`` is the number of kinds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.hostile import CORPUS, HOSTILE_NAMES
from tests.hostile_formats import FORMAT_KINDS
from tests.hostile_raw import RAW_ACCEPTED, RAW_MORE

Built = tuple[dict[str, list[str]], list[str]]
GOOD_RAW = ["ep_001", "ep_002"]  # the bad one is a copy of ep_000, which the mutations know
# only the job sees these (a frame-level decode failure, the dataset-wide shape check)
JOB_ONLY = {"frames_do_not_decode", "proprio_wrong_width"}
ON_RAY = {"rlds_record_claims_2_60_bytes", "camera_link_to_fifo"}  # run with --workers 2 on real Ray


@dataclass(frozen=True)
class Kind:
    name: str
    fmt: str
    build: Callable[[Path, Path, Path], Built]
    validate_sees: bool = True  # validate SOURCE names the bad episodes (exit 1)
    workers: int = 0  # 0: serial, in the CLI's process; 2: on an embedded local Ray
    shows: tuple[str, ...] = ()  # words the CLI's output must show (a note, inspect's escaping)
    flags: tuple[str, ...] = ()  # more ingest flags (--no-images for a source without cameras)


def _good_raw(src: Path, synthetic: Path) -> None:
    for name in GOOD_RAW:
        shutil.copytree(synthetic / name, src / name)


def raw_episode(name: str, mutate, words: list[str], accepted: bool = False) -> Callable:
    """A raw source: two good episodes and ``name``, a good one broken by ``mutate``."""

    def build(src: Path, outside: Path, synthetic: Path) -> Built:
        _good_raw(src, synthetic)
        shutil.copytree(synthetic / "ep_000", src / name)
        mutate(src / name)
        if accepted:
            return {}, [*GOOD_RAW, name]
        return {name: words}, GOOD_RAW

    return build


def raw_entry(name: str, make: Callable[[Path, Path, Path], None], words: list[str]) -> Callable:
    """A raw source: two good episodes and a hostile entry ``name`` that ``make(entry, outside,
    good episode)`` creates."""

    def build(src: Path, outside: Path, synthetic: Path) -> Built:
        _good_raw(src, synthetic)
        make(src / name, outside, synthetic / "ep_000")
        return {name.replace("\n", "\\x0a"): words}, GOOD_RAW  # a record shows a control character escaped

    return build


def _copy_named(entry: Path, outside: Path, good: Path) -> None:
    shutil.copytree(good, entry)


def _linked_dir(entry: Path, outside: Path, good: Path) -> None:
    shutil.copytree(good, outside / "ep")
    entry.symlink_to(outside / "ep", target_is_directory=True)


def _loop(entry: Path, outside: Path, good: Path) -> None:
    entry.symlink_to(entry.name)  # ln -s loop loop


def _mode_000_dir(entry: Path, outside: Path, good: Path) -> None:
    shutil.copytree(good, entry)
    entry.chmod(0)


def name_not_utf8(src: Path, outside: Path, synthetic: Path) -> Built:
    """An episode directory whose name is not UTF-8 and holds an escape sequence: its record shows the
    name escaped (a lone surrogate would stop every UTF-8 writer, the escape would drive a terminal)."""
    _good_raw(src, synthetic)
    shutil.copytree(synthetic / "ep_000", src / os.fsdecode(b"ep_\xff\x1b[2J"))
    return {"ep_\\xff\\x1b[2J": ["ep_\\xff\\x1b[2J", "[A-Za-z0-9_-]+"]}, GOOD_RAW


def _raw_kinds() -> list[Kind]:
    kinds = [
        Kind(n, "raw", raw_episode(n, m, w), validate_sees=n not in JOB_ONLY)
        for n, (m, w) in {**CORPUS, **RAW_MORE}.items()
    ]
    kinds += [
        Kind(n, "raw", raw_episode(n, m, [], accepted=True), shows=tuple(w))
        for n, (m, w) in RAW_ACCEPTED.items()
    ]
    names = {**HOSTILE_NAMES, "new\nline": "[A-Za-z0-9_-]+"}
    kinds += [
        Kind(f"name_{i}", "raw", raw_entry(n, _copy_named, [w])) for i, (n, w) in enumerate(names.items())
    ]
    kinds.append(Kind("name_not_utf8", "raw", name_not_utf8))
    kinds += [
        Kind("linked_dir", "raw", raw_entry("linked_dir", _linked_dir, ["outside the source"])),
        Kind("root_symlink_loop", "raw", raw_entry("loop", _loop, ["loop", "cannot be followed"])),
        Kind(
            "mode_000_episode_dir",
            "raw",
            raw_entry("aa_locked", _mode_000_dir, ["aa_locked", "Permission denied"]),
        ),
    ]
    return kinds


def _format_kinds() -> list[Kind]:
    out = []
    for fmt, builders in FORMAT_KINDS.items():
        for b in builders:
            flags = ("--no-images",) if fmt == "hdf5" else ()  # the robomimic files hold no images
            out.append(
                Kind(b.__name__, fmt, lambda src, outside, synthetic, b=b: b(src, outside), flags=flags)
            )
    return out


def _registry() -> dict[str, Kind]:
    kinds = _raw_kinds() + _format_kinds()
    by_name = {k.name: k for k in kinds}
    assert len(by_name) == len(kinds), "kind names must be distinct"
    for name in ON_RAY:
        k = by_name[name]
        by_name[name] = Kind(k.name, k.fmt, k.build, k.validate_sees, 2, k.shows, k.flags)
    return by_name


KINDS = _registry()
