"""Mixture files: several trajshard outputs sampled by weight (see docs/loader.md#mixtures).

TOML (or JSON with the same keys)::

    weighting = "transitions"        # optional: "weights" (default) or "transitions"
    samples_per_epoch = 200000       # optional: default, the sum of the datasets' split sizes
    seed = 0                         # optional: the loader's seed wins when given

    [[datasets]]
    path = "bridge_out"              # a trajshard OUT directory, relative to this file
    split = "train"                  # optional, default "train"
    weight = 1.0                     # optional, default 1.0
    name = "bridge"                  # optional: default the directory's name
    camera_roles = {image_0 = "primary"}   # optional: camera -> role, over info.json's embodiment

    [target]                         # optional: one layout for datasets of different robots
    cameras = ["primary", "wrist"]   # roles emitted (default: every role of any dataset)
    image_size = 224                 # resize every image (default: the datasets must agree)
    actions = "pad"                  # "pad" (masks) or "ragged"
    action_width = 44                # default: the widest; state_width likewise
    tokenizer = "own"                # "own" (each dataset's) or "pooled"

With ``weighting = "transitions"`` a dataset's effective weight is ``weight x samples in its split``
(Octo's ``balance_weights``, OpenVLA's mixtures): sampling is then uniform over transitions, scaled by
``weight``. With ``"weights"`` the weights are used as given. Either way they are normalized to sum 1.
``[target]`` makes every sample take one layout (loading/standard.py); without it the datasets must
have the same cameras and members.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from trajshard.loading.source import LoaderError, SplitSource, open_split
from trajshard.loading.standard import Standardizer, Target

WEIGHTINGS = ("weights", "transitions")
_TOP_KEYS = {"weighting", "samples_per_epoch", "seed", "datasets", "target"}
_DATASET_KEYS = {"path", "split", "weight", "name", "camera_roles"}


@dataclass(frozen=True)
class Mixture:
    sources: tuple[SplitSource, ...]
    weights: tuple[float, ...]  # normalized effective weights
    samples_per_epoch: int
    seed: int | None
    path: Path
    names: tuple[str, ...] = ()  # one per dataset, unique
    camera_roles: tuple[dict[str, str], ...] = ()  # the file's camera -> role overrides, per dataset
    target: Target | None = None  # [target]: the layout every sample is given

    def standardizer(self, decode_images: bool = True) -> Standardizer | None:
        """The layout of ``[target]`` over these datasets (None without one)."""
        if self.target is None:
            return None
        return Standardizer.build(
            self.sources, self.names, self.camera_roles, self.weights, self.target, decode_images
        )


def is_mixture_file(path: str | Path) -> bool:
    p = Path(path)
    return p.is_file() and p.suffix in (".toml", ".json")


def read_mixture(path: str | Path) -> Mixture:
    """Parse and check a mixture file; opens every dataset's split (reads its meta/ files)."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        spec = tomllib.loads(raw.decode("utf-8")) if path.suffix == ".toml" else json.loads(raw)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LoaderError(f"{path}: cannot parse the mixture file: {e}") from e

    def bad(msg: str) -> LoaderError:
        return LoaderError(f"{path}: {msg}")

    if not isinstance(spec, dict) or (unknown := set(spec) - _TOP_KEYS):
        raise bad(
            f"unknown keys {sorted(unknown) if isinstance(spec, dict) else spec!r}; allowed {sorted(_TOP_KEYS)}"
        )
    weighting = spec.get("weighting", "weights")
    if weighting not in WEIGHTINGS:
        raise bad(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    entries = spec.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise bad("'datasets' must be a non-empty list of {path, split, weight}")
    sources, weights, names, roles = [], [], [], []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or "path" not in e or (unknown := set(e) - _DATASET_KEYS):
            raise bad(f"datasets[{i}] needs 'path' and only keys {sorted(_DATASET_KEYS)}")
        w = e.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not w > 0:
            raise bad(f"datasets[{i}].weight must be a number > 0, got {w!r}")
        name = e.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            raise bad(f"datasets[{i}].name must be a non-empty string, got {name!r}")
        cam_roles = e.get("camera_roles", {})
        if not isinstance(cam_roles, dict):
            raise bad(f"datasets[{i}].camera_roles must map camera names to roles, got {cam_roles!r}")
        src = open_split((path.parent / e["path"]).resolve(), e.get("split", "train"))
        sources.append(src)
        weights.append(float(w) * (src.samples if weighting == "transitions" else 1.0))
        names.append(name)
        roles.append(dict(cam_roles))
    names = _names(names, sources)
    if len(set(names)) != len(names):
        raise bad(f"dataset names must differ, got {names}: give each a 'name'")
    target = None
    if "target" in spec:
        try:
            target = Target.parse(spec["target"])
        except ValueError as exc:
            raise bad(str(exc)) from exc
    total = sum(weights)
    per_epoch = spec.get("samples_per_epoch", sum(s.samples for s in sources))
    if isinstance(per_epoch, bool) or not isinstance(per_epoch, int) or per_epoch <= 0:
        raise bad(f"samples_per_epoch must be a positive integer, got {per_epoch!r}")
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad(f"seed must be an integer, got {seed!r}")
    return Mixture(
        tuple(sources),
        tuple(w / total for w in weights),
        per_epoch,
        seed,
        path,
        tuple(names),
        tuple(roles),
        target,
    )


def _names(given: list[str | None], sources: list[SplitSource]) -> list[str]:
    """Each dataset's name: as given, else its directory's name (with its split, or its index, added
    when that name is taken twice)."""
    default = [s.root.name for s in sources]
    out = []
    for i, (name, src) in enumerate(zip(given, sources, strict=True)):
        if name is None:
            name = src.root.name
            if default.count(name) > 1:
                with_split = [f"{d}/{s.split}" for d, s in zip(default, sources, strict=True)]
                name = (
                    f"{name}/{src.split}" if with_split.count(f"{name}/{src.split}") == 1 else f"{name}#{i}"
                )
        out.append(name)
    return out
