"""The source mapping: which keys of a source make the state, the action, the cameras and the
instruction, declared once per dataset (the ``[mapping]`` table of a job config, or its own file)
and read by every format.

A *key* names what the format stores: a LeRobot or table column, an HDF5 dataset path (relative to
the episode's group), an npz or Zarr array, an MCAP topic, an RLDS flattened feature key
(``steps/observation/state``). A *part* is a key, an optional message field (MCAP: ``position``,
``velocity``, ``effort``, ...), an optional slice of its columns and optional dimension names.
``state`` and ``action`` concatenate their parts in the declared order.

In TOML a part is either a string, ``"key"``, ``"key[0:7]"``, ``"/topic:position[0:6]"``, or a table
``{key = "...", field = "...", slice = [0, 7], names = [...]}``::

    [mapping]
    state = ["/robot/arm_left_follow/joint_states", "/robot/arm_right_follow/joint_states"]
    action = ["/robot/arm_left_lead/joint_states", "/robot/arm_right_lead/joint_states"]
    cameras = { primary = "image", wrist = "wrist_image" }      # output name = key
    instruction = { record = "task_info", field = "task_description" }
    time_base = "/robot/arm_left_follow/joint_states"
    exclude = ["object"]                                        # keys never read into the state

The instruction is a string (a constant) or one of ``{column = ...}`` (a per-step label; RLDS:
also an ``episode_metadata/...`` text, one per episode), ``{record = ..., field = ...}`` (an MCAP
metadata record), ``{file = ...}`` (a text file in the episode, or beside it), ``{attribute = ...}``
(an HDF5 attribute). ``episodes`` (HDF5: the group holding the demos, ``"/"`` for the root) selects
where episodes are. An empty mapping keeps each reader's defaults, which are today's behaviour on
today's datasets.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PART_RE = re.compile(
    r"^(?P<key>[^\[\]:]+?)(?::(?P<field>[A-Za-z_][A-Za-z0-9_.]*))?(?:\[(?P<a>-?\d+)?:(?P<b>-?\d+)?\])?$"
)
INSTRUCTION_KINDS = ("column", "record", "file", "attribute")
KEYS = ("state", "action", "cameras", "instruction", "time_base", "exclude", "episodes")
MAX_MAPPING_BYTES = 1 << 20


class MappingError(ValueError):
    """A mapping that cannot be used; the message names the key."""


@dataclass(frozen=True)
class Part:
    """One key's contribution to the state or action: ``values[:, start:stop]``."""

    key: str
    field: str = ""  # a message field (MCAP); "" is the reader's default
    start: int | None = None
    stop: int | None = None
    names: tuple[str, ...] = ()

    def cut(self, values: np.ndarray) -> np.ndarray:
        return values[:, self.start : self.stop]

    def label(self) -> str:
        return self.key + (f":{self.field}" if self.field else "")

    def dim_names(self, own: tuple[str, ...], width: int) -> tuple[str, ...]:
        """The names of this part's ``width`` columns: the mapping's, else the source's own (sliced),
        else ``key[i]`` (or ``key`` for one column)."""
        if self.names:
            return self.names
        own = own[self.start : self.stop] if len(own) >= width else ()
        if len(own) == width:
            return tuple(own)
        offset = self.start or 0
        return (self.label(),) if width == 1 else tuple(f"{self.label()}[{offset + i}]" for i in range(width))


@dataclass(frozen=True)
class Instruction:
    kind: str  # "constant" or one of INSTRUCTION_KINDS
    value: str
    field: str = ""  # the record's field


@dataclass(frozen=True)
class Mapping:
    state: tuple[Part, ...] = ()
    action: tuple[Part, ...] = ()
    cameras: dict[str, str] = field(default_factory=dict)  # output name -> key
    instruction: Instruction | None = None
    time_base: str = ""
    exclude: tuple[str, ...] = ()
    episodes: str = ""

    @property
    def empty(self) -> bool:
        return self == Mapping()


def parse_mapping(raw: object) -> Mapping:
    """The mapping of a ``[mapping]`` table; MappingError naming the key that is wrong."""
    problems = mapping_problems(raw)
    if problems:
        raise MappingError("; ".join(problems))
    assert isinstance(raw, dict)
    return Mapping(
        state=tuple(_part(p) for p in raw.get("state") or ()),
        action=tuple(_part(p) for p in raw.get("action") or ()),
        cameras=dict(raw.get("cameras") or {}),
        instruction=_instruction(raw.get("instruction")),
        time_base=str(raw.get("time_base") or ""),
        exclude=tuple(raw.get("exclude") or ()),
        episodes=str(raw.get("episodes") or ""),
    )


def as_mapping(mapping: Mapping | dict | None) -> Mapping:
    """A reader's mapping: as given, or parsed from its ``[mapping]`` table (none: the defaults)."""
    return mapping if isinstance(mapping, Mapping) else parse_mapping(mapping or {})


def mapping_problems(raw: object) -> list[str]:
    """Everything wrong with a ``[mapping]`` table, each naming its key."""
    if not isinstance(raw, dict):
        return [f"mapping must be a table, got {raw!r}"]
    out = [f"mapping.{k} is not one of {list(KEYS)}" for k in raw if k not in KEYS]
    for key in ("state", "action"):
        parts = raw.get(key)
        if parts is None:
            continue
        if not isinstance(parts, list) or not parts:
            out.append(f"mapping.{key} must be a non-empty list of parts, got {parts!r}")
            continue
        out += [f"mapping.{key}[{i}]: {p}" for i, part in enumerate(parts) for p in _part_problems(part)]
    cams = raw.get("cameras")
    if cams is not None and (
        not isinstance(cams, dict)
        or not cams
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in cams.items())
    ):
        out.append(f"mapping.cameras maps output names to keys (strings), got {cams!r}")
    out += _instruction_problems(raw.get("instruction"))
    for key in ("time_base", "episodes"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            out.append(f"mapping.{key} must be a string, got {raw[key]!r}")
    exclude = raw.get("exclude")
    if exclude is not None and not (isinstance(exclude, list) and all(isinstance(v, str) for v in exclude)):
        out.append(f"mapping.exclude lists keys (strings), got {exclude!r}")
    return out


def load_mapping_file(path: str | Path) -> dict:
    """A mapping kept in its own file: TOML (a ``[mapping]`` table, or the keys at top level) or JSON."""
    p = Path(path)
    if not p.is_file():
        raise MappingError(f"{p}: not a regular file")
    with open(p, "rb") as f:
        data = f.read(MAX_MAPPING_BYTES + 1)
    if len(data) > MAX_MAPPING_BYTES:
        raise MappingError(f"{p}: larger than {MAX_MAPPING_BYTES} bytes")
    try:
        text = data.decode("utf-8")
        raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MappingError(f"{p}: not a mapping file (TOML or JSON): {exc}") from exc
    raw = raw.get("mapping", raw) if isinstance(raw, dict) else raw
    problems = mapping_problems(raw)
    if problems:
        raise MappingError(f"{p}: " + "; ".join(problems))
    return raw


def concat_parts(
    parts: tuple[Part, ...], read: Callable[[Part], tuple[np.ndarray, tuple[str, ...]]], where: str
) -> tuple[np.ndarray, tuple[str, ...]]:
    """The parts side by side as float32 [T, D] with their dimension names. ``read(part)`` returns
    ``(values [T, W], the key's own names)``; every part must have the same number of rows."""
    blocks, names = [], []
    for part in parts:
        values, own = read(part)
        values = np.asarray(values)
        values = values[:, None] if values.ndim == 1 else values
        if values.ndim != 2:
            raise MappingError(f"{where}: {part.label()} is not one vector per step (shape {values.shape})")
        width = values.shape[1]
        if any(v is not None and not -width <= v <= width for v in (part.start, part.stop)):
            raise MappingError(
                f"{where}: {part_text(part)} reaches past the {width} columns of {part.label()}"
            )
        cut = part.cut(values)
        if cut.shape[1] == 0:
            raise MappingError(
                f"{where}: {part.label()}[{part.start}:{part.stop}] selects no column of {values.shape[1]}"
            )
        if part.names and len(part.names) != cut.shape[1]:
            raise MappingError(
                f"{where}: {part.label()} has {cut.shape[1]} columns but the mapping names {len(part.names)}"
            )
        if blocks and len(cut) != len(blocks[0]):
            raise MappingError(
                f"{where}: {part.label()} has {len(cut)} rows, {parts[0].label()} has {len(blocks[0])}"
            )
        blocks.append(cut.astype(np.float32, copy=False))
        names += part.dim_names(tuple(own), cut.shape[1])
    return np.concatenate(blocks, axis=1), tuple(names)


def part_text(part: Part) -> str:
    """A part in its short string form (for templates and messages)."""
    s = part.label()
    if part.start is not None or part.stop is not None:
        s += f"[{'' if part.start is None else part.start}:{'' if part.stop is None else part.stop}]"
    return s


def _part(raw: object) -> Part:
    if isinstance(raw, str):
        m = PART_RE.match(raw)
        assert m is not None
        a, b = m.group("a"), m.group("b")
        return Part(m.group("key"), m.group("field") or "", int(a) if a else None, int(b) if b else None)
    assert isinstance(raw, dict)
    start, stop = raw.get("slice") or [None, None]
    return Part(str(raw["key"]), str(raw.get("field") or ""), start, stop, tuple(raw.get("names") or ()))


def _part_problems(raw: object) -> list[str]:
    if isinstance(raw, str):
        return [] if PART_RE.match(raw) else [f"{raw!r} is not key, key:field, key[a:b] or key:field[a:b]"]
    if not isinstance(raw, dict):
        return [f"a part is a string or a table, got {raw!r}"]
    out = [
        f"unknown key {k!r} (key, field, slice, names)"
        for k in raw
        if k not in ("key", "field", "slice", "names")
    ]
    if not isinstance(raw.get("key"), str) or not raw.get("key"):
        out.append("needs key = <column, dataset, array or topic>")
    if "field" in raw and not isinstance(raw["field"], str):
        out.append(f"field must be a string, got {raw['field']!r}")
    sl = raw.get("slice")
    if sl is not None and not (
        isinstance(sl, list)
        and len(sl) == 2
        and all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in sl)
    ):
        out.append(f"slice must be [start, stop] integers, got {sl!r}")
    names = raw.get("names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        out.append(f"names must be a list of strings, got {names!r}")
    return out


def _instruction(raw: object) -> Instruction | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return Instruction("constant", raw)
    assert isinstance(raw, dict)
    kind = next(k for k in INSTRUCTION_KINDS if k in raw)
    return Instruction(kind, str(raw[kind]), str(raw.get("field") or ""))


def _instruction_problems(raw: object) -> list[str]:
    if raw is None or isinstance(raw, str):
        return []
    if not isinstance(raw, dict):
        return [f"mapping.instruction is a string or a table, got {raw!r}"]
    kinds = [k for k in INSTRUCTION_KINDS if k in raw]
    out = []
    if len(kinds) != 1:
        out.append(f"mapping.instruction needs exactly one of {list(INSTRUCTION_KINDS)}, got {sorted(raw)}")
    out += [
        f"mapping.instruction.{k} is not a known key" for k in raw if k not in (*INSTRUCTION_KINDS, "field")
    ]
    if kinds == ["record"] and not isinstance(raw.get("field"), str):
        out.append("mapping.instruction with record needs field = <the record's key>")
    out += [f"mapping.instruction.{k} must be a string" for k in raw if not isinstance(raw[k], str)]
    return out
