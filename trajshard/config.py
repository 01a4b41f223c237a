"""The job configuration: sections owned by their stages, flat flags and TOML keys mapped onto them.

A job config is eight sections, each defined (with its choices and its checks) next to the code it
drives: ``source`` (sources/), ``align`` (pipelines/align.py), ``filter`` (pipelines/filters.py),
``image`` (pipelines/frames.py), ``tokenizer`` (tokenizers/config.py), ``output``
(pipelines/plan.py), ``embodiment`` (pipelines/embodiment.py) and ``run`` (here: where and how
the job runs, which never changes the output). Flags and TOML keys stay flat (``--image-size``,
``image_size = 224``); :data:`FLAGS` maps each to its section's field. ``meta/info.json`` records
the flat form without the run section (see docs/output-layout.md).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from trajshard.io import parse_size
from trajshard.pipelines.align import AlignConfig
from trajshard.pipelines.embodiment import EmbodimentConfig
from trajshard.pipelines.filters import FilterConfig
from trajshard.pipelines.frames import ImageConfig
from trajshard.pipelines.plan import OutputConfig
from trajshard.sources import SourceConfig
from trajshard.sources.mapping import load_mapping_file
from trajshard.sources.tables import DEFAULT_EPISODE_MEMORY
from trajshard.tokenizers import TokenizerConfig


@dataclass(frozen=True)
class RunConfig:
    """The ``run`` section: where and how the job runs. It never changes an output byte."""

    address: str | None = None  # Ray cluster; None: an embedded local Ray
    workers: int | None = None  # tasks at once; None: every CPU Ray has; 0: serially in this process
    task_cpus: float = 1.0  # Ray CPUs each task asks for
    task_memory: str | None = None  # Ray memory each task reserves ("4GB"); None: no reservation
    episode_retries: int = 2  # retries of an episode after an unexpected (possibly transient) exception
    episode_timeout: float | None = 600.0  # seconds one episode may take in a task; None: no limit
    max_quarantine_fraction: float = 1.0  # abort the job when more of the input than this is quarantined
    no_images: bool = False  # accept an output without any camera (state/action-only data); else it fails

    def problems(self) -> list[str]:
        out = []
        if self.workers is not None and self.workers < 0:
            out.append(f"workers must be 0 (serial, no Ray) or more, got {self.workers}")
        if not self.task_cpus > 0:
            out.append(f"task_cpus must be positive, got {self.task_cpus}")
        if self.task_memory is not None:
            try:
                parse_size(self.task_memory)
            except ValueError as exc:
                out.append(f"task_memory: {exc}")
        if self.episode_timeout is not None and not self.episode_timeout > 0:
            out.append(f"episode_timeout must be positive seconds, got {self.episode_timeout}")
        if self.episode_retries < 0:
            out.append(f"episode_retries must be 0 or more, got {self.episode_retries}")
        if not 0 <= self.max_quarantine_fraction <= 1:
            out.append(f"max_quarantine_fraction must be in [0, 1], got {self.max_quarantine_fraction}")
        return out

    def episode_memory(self) -> int:
        """Bytes one episode's declared sizes may reach (tables, HDF5 arrays): half of ``task_memory``
        (the rest is the interpreter, decoders and the writer), else ``DEFAULT_EPISODE_MEMORY``."""
        if self.task_memory is None:
            return DEFAULT_EPISODE_MEMORY
        return parse_size(self.task_memory) // 2


SECTIONS = {
    "source": SourceConfig,
    "align": AlignConfig,
    "filter": FilterConfig,
    "image": ImageConfig,
    "tokenizer": TokenizerConfig,
    "output": OutputConfig,
    "embodiment": EmbodimentConfig,
    "run": RunConfig,
}
# flag (and TOML key) -> (section, field); a flag's name is its field's unless given here
_RENAMED = {
    "image_size": ("image", "size"),
    "jpeg_quality": ("image", "quality"),
    "jpeg_subsampling": ("image", "subsampling"),
    "tokenizer": ("tokenizer", "kind"),
    "keep_episodes": ("filter", "episodes"),
    "exclude_episodes": ("filter", "exclude"),
    "embodiment": ("embodiment", "name"),
}
FLAGS: dict[str, tuple[str, str]] = {
    **{
        f.name: (section, f.name)
        for section, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if (section, f.name) not in _RENAMED.values()
    },
    **_RENAMED,
}
TUPLES = (
    "cameras",
    "normalization_mask",
    "keep_episodes",
    "exclude_episodes",
)  # lists in TOML and JSON, tuples in the config
RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig))


@dataclass(frozen=True)
class JobConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    embodiment: EmbodimentConfig = field(default_factory=EmbodimentConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        problems = [p for name in SECTIONS for p in getattr(self, name).problems()]
        if problems:
            raise ValueError("invalid job config: " + "; ".join(problems))

    @classmethod
    def from_flags(cls, **flags: object) -> JobConfig:
        """A config from flat keys (``fps=5, image_size=128``); every other field keeps its default."""
        unknown = sorted(set(flags) - set(FLAGS))
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known: {sorted(FLAGS)}")
        per_section: dict[str, dict[str, object]] = {name: {} for name in SECTIONS}
        for key, value in flags.items():
            section, name = FLAGS[key]
            per_section[section][name] = tuple(value) if key in TUPLES else value
        return cls(**{name: SECTIONS[name](**values) for name, values in per_section.items()})

    def replace(self, **flags: object) -> JobConfig:
        """This config with some flat keys changed."""
        return JobConfig.from_flags(**{**self.to_dict(), **flags})

    def to_dict(self) -> dict[str, object]:
        """The flat form: every flag with its value, in JSON's types."""
        return {key: _plain(getattr(getattr(self, section), name)) for key, (section, name) in FLAGS.items()}

    def output_dict(self) -> dict[str, object]:
        """The config as recorded in info.json: without the run section, which must not change its bytes."""
        d = self.to_dict()
        for key in RUN_KEYS:
            d.pop(key)
        return d


def _plain(value: object) -> object:
    """A copy made of JSON's types only (tuples as lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def load_config(path: str | Path | None = None, **overrides: object) -> JobConfig:
    """Read a TOML job config (optional, flat keys), then apply the overrides that are not None."""
    values: dict[str, object] = {}
    if path is not None:
        with open(path, "rb") as f:
            values = tomllib.load(f)
        unknown = sorted(set(values) - set(FLAGS))
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(FLAGS)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(values.get("mapping"), str):  # a mapping kept in its own file (--mapping FILE)
        values["mapping"] = load_mapping_file(values["mapping"])
    return JobConfig.from_flags(**values)
