"""The job configuration: plain data, loaded from TOML, overridden by command-line flags.

Every field has a TOML key of the same name (see docs/cli.md). The whole config is recorded in
``meta/info.json`` so a dataset says how it was made.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

RESIZE_MODES = ("stretch", "pad", "center-crop")
TOKENIZERS = ("uniform", "quantile", "fast")
FORMATS = ("auto", "raw", "lerobot", "rlds", "hdf5", "mcap")
VAL_SPLIT = "val"
RUN_KEYS = ("address", "workers", "task_cpus", "task_memory", "episode_retries", "max_quarantine_fraction")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class JobConfig:
    format: str = "auto"
    fps: float = 10.0
    mcap: dict[str, object] = field(default_factory=dict)  # state_topic, action_topic, cameras, stamp
    source_fps: float | None = None  # step rate of step-indexed sources (RLDS); None: fps
    image_size: int = 224
    resize_mode: str = "stretch"
    jpeg_quality: int = 95
    jpeg_subsampling: str = "4:4:4"  # chroma; "4:2:0": 14-21% smaller, less colour detail (decisions.md)
    tokenizer: str = "uniform"
    bins: int = 256
    uniform_mode: str = "openvla"
    fast_scale: float = 10.0
    fast_fit_episodes: int = 256
    normalization: str = "bounds_q99"
    normalization_mask: tuple[bool, ...] = ()
    gripper: dict[str, object] = field(default_factory=dict)
    vocab: str | None = None
    vocab_file: str | None = None
    horizon: int = 1
    shard_size: str = "1GB"
    seed: int = 0
    split: str = "train"  # the name of the training split
    val_fraction: float = 0.0  # share of source episodes (by a seeded hash of the id) in split "val"
    shuffle_window: int = 0  # episodes whose samples are interleaved across one group's shards; 0: off
    workers: int | None = None
    address: str | None = None
    task_cpus: float = 1.0  # Ray CPUs each task asks for
    task_memory: str | None = None  # Ray memory each task reserves ("4GB"); None: no reservation
    episode_retries: int = 2  # retries of an episode after an unexpected (possibly transient) exception
    max_quarantine_fraction: float = 1.0  # abort the job when more of the input than this is quarantined
    cameras: tuple[str, ...] = ()
    clock: str = "fixed"
    video_policy: str = "nearest"
    video_tolerance: float | None = None
    on_missing_frame: str = "drop"
    action_policy: str = "hold"
    derive_action: str = "absolute"
    max_gap: float = 1.0
    on_gap: str = "split"
    signals: dict[str, dict[str, list]] = field(default_factory=dict)
    task_steps: int | None = None  # steps per pass-2 task; None: about one shard's worth
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.format not in FORMATS:
            problems.append(f"format must be one of {FORMATS}, got {self.format!r}")
        if not self.fps > 0:
            problems.append(f"fps must be positive, got {self.fps}")
        if not 8 <= self.image_size <= 4096:
            problems.append(f"image_size must be in [8, 4096], got {self.image_size}")
        if self.resize_mode not in RESIZE_MODES:
            problems.append(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.jpeg_subsampling not in ("4:4:4", "4:2:2", "4:2:0"):
            problems.append(f"jpeg_subsampling must be 4:4:4, 4:2:2 or 4:2:0, got {self.jpeg_subsampling!r}")
        if self.tokenizer not in TOKENIZERS:
            problems.append(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        problems += _token_problems(self)
        if not 3 <= self.bins <= 65536:
            problems.append(f"bins must be in [3, 65536], got {self.bins}")
        if self.horizon < 1:
            problems.append(f"horizon must be at least 1, got {self.horizon}")
        problems += _align_problems(self)
        if self.workers is not None and self.workers < 1:
            problems.append(f"workers must be at least 1, got {self.workers}")
        if not self.task_cpus > 0:
            problems.append(f"task_cpus must be positive, got {self.task_cpus}")
        if self.task_memory is not None:
            try:
                parse_size(self.task_memory)
            except ValueError as exc:
                problems.append(f"task_memory: {exc}")
        if self.episode_retries < 0:
            problems.append(f"episode_retries must be 0 or more, got {self.episode_retries}")
        if not 0 <= self.max_quarantine_fraction <= 1:
            problems.append(f"max_quarantine_fraction must be in [0, 1], got {self.max_quarantine_fraction}")
        if self.task_steps is not None and self.task_steps < 1:
            problems.append(f"task_steps must be at least 1, got {self.task_steps}")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.split):
            problems.append(f"split must match [A-Za-z0-9_]+, got {self.split!r}")
        if self.split == VAL_SPLIT:
            problems.append(
                f"split {VAL_SPLIT!r} is the validation split's name; name the training split else"
            )
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.shuffle_window < 0 or self.shuffle_window == 1:
            problems.append(
                f"shuffle_window must be 0 (off) or at least 2 episodes, got {self.shuffle_window}"
            )
        try:
            if self.shard_size_bytes < 1000:
                problems.append(f"shard_size must be at least 1KB, got {self.shard_size!r}")
        except ValueError as exc:
            problems.append(str(exc))
        if problems:
            raise ValueError("invalid job config: " + "; ".join(problems))

    @property
    def shard_size_bytes(self) -> int:
        return parse_size(self.shard_size)

    @property
    def splits(self) -> tuple[str, ...]:
        return (self.split, VAL_SPLIT) if self.val_fraction > 0 else (self.split,)

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["cameras"] = list(self.cameras)
        d["normalization_mask"] = list(self.normalization_mask)
        return d

    def output_dict(self) -> dict[str, object]:
        """The config as recorded in info.json: without where and how it ran (``RUN_KEYS``: address,
        workers, task resources, retries, the quarantine limit), which must not change its bytes."""
        d = self.to_dict()
        for key in RUN_KEYS:
            d.pop(key)
        return d


def _token_problems(c: JobConfig) -> list[str]:
    from trajshard.pipelines.actions import gripper_convention
    from trajshard.tokenizers.normalize import MODES
    from trajshard.tokenizers.uniform import MODES as UNIFORM_MODES

    problems = []
    if c.normalization not in MODES:
        problems.append(f"normalization must be one of {MODES}, got {c.normalization!r}")
    if c.uniform_mode not in UNIFORM_MODES:
        problems.append(f"uniform_mode must be one of {UNIFORM_MODES}, got {c.uniform_mode!r}")
    if c.gripper:
        try:
            gripper_convention(c.gripper)
        except ValueError as exc:
            problems.append(str(exc))
    if c.vocab is not None and c.vocab.partition(":")[0] not in ("openvla", "offset", "list"):
        problems.append(f"vocab must be openvla:V, offset:K or list:FILE, got {c.vocab!r}")
    if c.tokenizer == "fast" and c.horizon < 2:
        problems.append("the fast tokenizer works on action chunks: set horizon to 2 or more")
    if not c.fast_scale > 0 or c.fast_fit_episodes < 1:
        problems.append("fast_scale must be positive and fast_fit_episodes at least 1")
    if c.vocab_file is not None and c.vocab is None:
        problems.append("vocab_file is given without vocab")
    return problems


def _align_problems(c: JobConfig) -> list[str]:
    from trajshard.pipelines.align import (
        ACTION_POLICIES,
        DERIVE_ACTIONS,
        MISSING_FRAME,
        ON_GAP,
        VIDEO_POLICIES,
    )

    problems = []
    for name, value, allowed in (
        ("video_policy", c.video_policy, VIDEO_POLICIES),
        ("on_missing_frame", c.on_missing_frame, MISSING_FRAME),
        ("action_policy", c.action_policy, ACTION_POLICIES),
        ("derive_action", c.derive_action, DERIVE_ACTIONS),
        ("on_gap", c.on_gap, ON_GAP),
    ):
        if value not in allowed:
            problems.append(f"{name} must be one of {allowed}, got {value!r}")
    if c.clock != "fixed" and not (c.clock.startswith("camera:") and len(c.clock) > 7):
        problems.append(f"clock must be 'fixed' or 'camera:<name>', got {c.clock!r}")
    if c.video_tolerance is not None and not c.video_tolerance > 0:
        problems.append(f"video_tolerance must be positive seconds, got {c.video_tolerance}")
    if not c.max_gap > 0:
        problems.append(f"max_gap must be positive seconds, got {c.max_gap}")
    if not isinstance(c.signals, dict):
        problems.append("signals must map stream names to {angles, quaternions, discrete}")
    else:
        for stream, spec in c.signals.items():
            unknown = (
                sorted(set(spec) - {"angles", "quaternions", "discrete"}) if isinstance(spec, dict) else []
            )
            if not isinstance(spec, dict) or unknown:
                problems.append(f"signals.{stream} takes only angles, quaternions, discrete (got {spec!r})")
            elif any(len(g) != 4 for g in spec.get("quaternions", [])):
                problems.append(f"signals.{stream}.quaternions: each group must list 4 dimensions")
    return problems


def parse_size(text: str | int) -> int:
    """``"1GB"`` -> 10**9, ``"512MiB"`` -> 512 * 2**20, ``1000`` -> 1000."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"shard_size {text!r} is not a size like 1GB, 500MB or 64MiB")
    unit = (m[2] or "").upper()
    base = 1024 if "I" in unit else 1000
    power = "BKMGT".find(unit[:1]) if unit else 0
    return int(float(m[1]) * base ** max(power, 0))


def load_config(path: str | Path | None = None, **overrides: object) -> JobConfig:
    """Read a TOML job config (optional), then apply the overrides that are not None."""
    values: dict[str, object] = {}
    if path is not None:
        with open(path, "rb") as f:
            values = tomllib.load(f)
        known = {f.name for f in dataclasses.fields(JobConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("cameras", "normalization_mask"):
        if key in values:
            values[key] = tuple(values[key])
    return JobConfig(**values)
