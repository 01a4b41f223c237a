"""One sample layout for a mixture of datasets of different robots (no torch; see docs/loader.md).

A mixture file's ``[target]`` table asks for it. Every sample drawn from dataset ``d`` is turned into
the target layout by :meth:`Standardizer.apply`, a pure function of the sample and ``d``, so the
loader's order, resume, rank and worker splits are those of any mixture:

- **cameras by role**: ``images`` holds one image per target role (``primary``, ``wrist``, ...), found
  through the dataset's camera roles (info.json ``embodiment.cameras``, or the mixture file's
  ``camera_roles``, or the camera's own name); a role the dataset lacks is a zero (black) image, and
  ``image_mask`` (bool ``[R]``, in the target's role order) says which are real. Images of every
  dataset have one size: ``image_size`` resizes (bilinear), without it the sizes must agree;
- **state and action padded** to a common width (``action_width``, ``state_width``; default the
  widest) with zeros, and ``state_mask``/``action_mask`` (bool) true on a dataset's own dimensions;
  ``tokens`` (and ``token_ids``) padded with -1, ``action_chunk`` with zeros. With
  ``actions = "ragged"`` nothing is padded: each sample keeps its widths;
- **tokens**: ``tokenizer = "own"`` keeps each dataset's tokens (its own statistics into the shared
  bins, OpenVLA's scheme; decode each with its own tokenizer.json: :meth:`Standardizer.decode`);
  ``"pooled"`` re-encodes every action with one tokenizer fitted on the datasets' pooled statistics
  (tokenizers/pooled.py);
- **who**: ``meta`` gains ``dataset_name``, ``embodiment`` (the dataset's robot), ``action_dim`` and
  ``state_dim`` (the sample's own widths) and ``fps`` (its dataset's sample rate).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from trajshard.io import read_json
from trajshard.loading.source import LoaderError, SplitSource
from trajshard.tokenizers import from_json
from trajshard.tokenizers.pooled import narrowed, pooled_tokenizer

ACTION_LAYOUTS = ("pad", "ragged")
TOKENIZER_MODES = ("own", "pooled")
TARGET_KEYS = ("cameras", "image_size", "actions", "action_width", "state_width", "tokenizer")
TOKEN_PAD = -1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ROLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Target:
    """A mixture file's ``[target]`` table: the layout every sample is given."""

    cameras: tuple[str, ...] | None = None  # roles to emit, in this order; None: every role of any dataset
    image_size: int | None = None  # resize every image to this square; None: the datasets must agree
    actions: str = "pad"  # pad to a common width with masks, or keep each dataset's width (ragged)
    action_width: int | None = None  # None: the widest dataset's
    state_width: int | None = None
    tokenizer: str = "own"  # each dataset's own tokenizer, or one pooled over them all

    @classmethod
    def parse(cls, raw: object) -> Target:
        if not isinstance(raw, dict):
            raise ValueError(f"[target] must be a table of {list(TARGET_KEYS)}, got {raw!r}")
        if unknown := sorted(set(raw) - set(TARGET_KEYS)):
            raise ValueError(f"[target] has unknown keys {unknown}; allowed {list(TARGET_KEYS)}")
        cams = raw.get("cameras")
        if cams is not None and (
            not isinstance(cams, list) or not all(isinstance(c, str) and c for c in cams)
        ):
            raise ValueError(f"target.cameras must be a list of camera roles, got {cams!r}")
        if cams is not None and len(set(cams)) != len(cams):
            raise ValueError(f"target.cameras names a role twice: {cams}")
        for key in ("image_size", "action_width", "state_width"):
            v = raw.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"target.{key} must be a positive integer, got {v!r}")
        if raw.get("actions", "pad") not in ACTION_LAYOUTS:
            raise ValueError(f"target.actions must be one of {ACTION_LAYOUTS}, got {raw['actions']!r}")
        if raw.get("tokenizer", "own") not in TOKENIZER_MODES:
            raise ValueError(f"target.tokenizer must be one of {TOKENIZER_MODES}, got {raw['tokenizer']!r}")
        return cls(
            tuple(cams) if cams is not None else None,
            raw.get("image_size"),
            raw.get("actions", "pad"),
            raw.get("action_width"),
            raw.get("state_width"),
            raw.get("tokenizer", "own"),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "cameras": None if self.cameras is None else list(self.cameras),
            "image_size": self.image_size,
            "actions": self.actions,
            "action_width": self.action_width,
            "state_width": self.state_width,
            "tokenizer": self.tokenizer,
        }


@dataclass(frozen=True)
class DatasetView:
    """What the layout needs of one dataset of the mixture."""

    name: str
    embodiment: str
    action_dim: int
    state_dim: int
    fps: float  # the rate its samples are spaced at (info.json fps)
    camera_of: dict[str, str]  # target role -> this dataset's camera
    image_hw: dict[str, tuple[int, int]]  # camera -> (height, width) as stored
    tokenizer: dict = field(repr=False)  # its meta/tokenizer.json
    stats: dict = field(repr=False)  # its stats.json action entry
    roles: dict[str, str] = field(default_factory=dict)  # every camera -> its role


def dataset_embodiment(info: dict, name: str) -> str:
    """The robot's name: info.json ``embodiment.name``, else the one ``embodiments`` entry, else ``name``."""
    recorded = (info.get("embodiment") or {}).get("name")
    named = [e for e in info.get("embodiments", []) if e]
    return recorded or (named[0] if len(named) == 1 else name)


def camera_roles(info: dict, overrides: dict[str, str], where: str) -> dict[str, str]:
    """Every camera of a dataset -> its role: info.json ``embodiment.cameras`` (else the camera's own
    name), with the mixture file's ``camera_roles`` on top."""
    cams = list(info.get("cameras", []))
    roles = {c: c for c in cams}
    roles.update((info.get("embodiment") or {}).get("cameras") or {})
    for cam, role in overrides.items():
        if cam not in roles:
            raise LoaderError(f"{where}: camera_roles names camera {cam!r}, the dataset has {cams}")
        if not isinstance(role, str) or not ROLE_RE.match(role):
            raise LoaderError(
                f"{where}: camera_roles.{cam} must be a role name ([A-Za-z][A-Za-z0-9_]*), got {role!r}"
            )
        roles[cam] = role
    seen: dict[str, str] = {}
    for cam, role in roles.items():
        if role in seen:
            raise LoaderError(f"{where}: cameras {seen[role]!r} and {cam!r} both have the role {role!r}")
        seen[role] = cam
    return roles


def _width(features: dict, member: str) -> int:
    return int(features[member]["shape"][-1])


def _image_hw(features: dict, camera: str) -> tuple[int, int]:
    for suffix in IMAGE_SUFFIXES:
        spec = features.get(f"{camera}{suffix}")
        if spec is not None:
            return int(spec["shape"][0]), int(spec["shape"][1])
    raise LoaderError(f"info.json features list no image of camera {camera!r}")


class Standardizer:
    """Turns a sample of dataset ``d`` into the target layout (:meth:`apply`); decodes tokens of a batch
    back to actions, each with its dataset's (or the pooled) tokenizer (:meth:`decode`)."""

    def __init__(
        self,
        views: Sequence[DatasetView],
        target: Target,
        roles: tuple[str, ...],
        image_size: int | None,
        action_width: int,
        state_width: int,
        pooled=None,
        decode_images: bool = True,
        vocab: dict | None = None,
    ) -> None:
        self.views = tuple(views)
        self.target = target
        self.roles = roles
        self.image_size = image_size
        self.action_width, self.state_width = action_width, state_width
        self.pooled = pooled
        self.decode_images = decode_images
        self.vocab = vocab
        self.tokenizers = [from_json(v.tokenizer) for v in self.views]
        self.encoders = [None if pooled is None else narrowed(pooled, v.action_dim) for v in self.views]
        self._blank_jpeg: bytes | None = None

    @property
    def padded(self) -> bool:
        return self.target.actions == "pad"

    @classmethod
    def build(
        cls,
        sources: Sequence[SplitSource],
        names: Sequence[str],
        role_overrides: Sequence[dict[str, str]],
        weights: Sequence[float],
        target: Target,
        decode_images: bool = True,
    ) -> Standardizer:
        """The layout of a mixture; raises :class:`LoaderError` naming the dataset that does not fit."""
        views = []
        for src, name, overrides in zip(sources, names, role_overrides, strict=True):
            where = f"dataset {name!r} ({src.root})"
            info = src.info
            roles = camera_roles(info, overrides, where)
            views.append(
                DatasetView(
                    name=name,
                    embodiment=dataset_embodiment(info, name),
                    action_dim=_width(src.features, "action.npy"),
                    state_dim=_width(src.features, "state.npy"),
                    fps=float(info.get("fps", 0.0)),
                    camera_of={role: cam for cam, role in roles.items()},
                    image_hw={cam: _image_hw(src.features, cam) for cam in roles},
                    tokenizer=read_json(src.root / "meta" / "tokenizer.json"),
                    stats=read_json(src.root / "meta" / "stats.json")["streams"]["action"],
                    roles=roles,
                )
            )
        _check_members(sources, names)
        vocab = _check_tokens(sources, views, target)
        roles = target.cameras
        if roles is None:
            roles = tuple(dict.fromkeys(r for v in views for _, r in sorted(v.roles.items())))
        for role in roles:
            if not any(role in v.camera_of for v in views):
                have = sorted({r for v in views for r in v.camera_of})
                raise LoaderError(
                    f"target camera role {role!r}: no dataset of the mixture has it (roles: {have})"
                )
        sizes = {
            v.name: sorted({v.image_hw[v.camera_of[r]] for r in roles if r in v.camera_of}) for v in views
        }
        found = {hw for s in sizes.values() for hw in s}
        image_size = target.image_size
        if image_size is None and found:
            if len(found) > 1 or next(iter(found))[0] != next(iter(found))[1]:
                listed = ", ".join(
                    f"{n}: {' '.join(f'{h}x{w}' for h, w in s)}" for n, s in sizes.items() if s
                )
                raise LoaderError(
                    f"the mixture's images differ in size ({listed}): set target.image_size to resize them"
                )
            image_size = next(iter(found))[0]
        widths = {}
        for key, dim in (("action_width", "action_dim"), ("state_width", "state_dim")):
            widest = max(getattr(v, dim) for v in views)
            widths[key] = getattr(target, key) or widest
            for v in views:
                if getattr(v, dim) > widths[key]:
                    raise LoaderError(
                        f"dataset {v.name!r} has {getattr(v, dim)}-D {dim[:-4]}s, wider than "
                        f"target.{key} = {widths[key]}"
                    )
        pooled = None
        if target.tokenizer == "pooled":
            try:
                pooled = pooled_tokenizer([v.tokenizer for v in views], [v.stats for v in views], weights)
            except ValueError as exc:
                raise LoaderError(f"target.tokenizer = 'pooled': {exc}") from exc
        return cls(
            views,
            target,
            tuple(roles),
            image_size,
            widths["action_width"],
            widths["state_width"],
            pooled,
            decode_images,
            vocab,
        )

    def cameras_used(self) -> tuple[frozenset[str], ...]:
        """Per dataset, the cameras some target role takes: the only images :meth:`apply` reads."""
        return tuple(frozenset(v.camera_of[r] for r in self.roles if r in v.camera_of) for v in self.views)

    # ---- one sample ---------------------------------------------------------------------------------

    def apply(self, sample: dict, d: int) -> dict:
        """The sample of dataset ``d`` (as ``decode_sample`` made it) in the target layout."""
        v = self.views[d]
        images, mask = {}, np.zeros(len(self.roles), dtype=bool)
        for i, role in enumerate(self.roles):
            cam = v.camera_of.get(role)
            if cam is not None and cam in sample["images"]:
                images[role] = self._sized(sample["images"][cam], v.image_hw[cam])
                mask[i] = True
            else:
                images[role] = self._blank()
        sample["images"] = images
        sample["image_mask"] = mask
        if self.pooled is not None:
            values = sample["action_chunk"] if "action_chunk" in sample else sample["action"]
            sample["tokens"] = self.encoders[d].encode(values)
            if "token_ids" in sample:
                ids = np.asarray(self.vocab["ids"], dtype=np.int64)
                sample["token_ids"] = ids[sample["tokens"].astype(np.int64) - int(self.vocab["token_lo"])]
        if self.padded:
            for name, width, fill in (
                ("state", self.state_width, 0),
                ("action", self.action_width, 0),
                ("action_chunk", self.action_width, 0),
                ("tokens", self.action_width, TOKEN_PAD),
                ("token_ids", self.action_width, TOKEN_PAD),
            ):
                if name in sample:
                    sample[name] = _pad(sample[name], width, fill)
            sample["state_mask"] = np.arange(self.state_width) < v.state_dim
            sample["action_mask"] = np.arange(self.action_width) < v.action_dim
        meta = dict(sample.get("meta", {}))
        meta.update(
            dataset_name=v.name,
            embodiment=v.embodiment,
            action_dim=v.action_dim,
            state_dim=v.state_dim,
            fps=v.fps,
        )
        sample["meta"] = meta
        return sample

    def _sized(self, img, hw: tuple[int, int]):
        size = self.image_size
        if size is None or hw == (size, size):
            return img
        if isinstance(img, np.ndarray):
            pil = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
            return np.asarray(pil.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        with Image.open(io.BytesIO(img)) as im:
            buf = io.BytesIO()
            im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(buf, "JPEG", quality=95)
        return buf.getvalue()

    def _blank(self):
        size = self.image_size or 1
        if self.decode_images:  # one zero repeated (all strides 0): the batch fills it, copies nothing
            return np.broadcast_to(np.zeros((1, 1, 1), dtype=np.uint8), (size, size, 3))
        if self._blank_jpeg is None:
            buf = io.BytesIO()
            Image.new("RGB", (size, size)).save(buf, "JPEG", quality=95)
            self._blank_jpeg = buf.getvalue()
        return self._blank_jpeg

    # ---- decoding -----------------------------------------------------------------------------------

    def decode(self, tokens, dataset) -> np.ndarray | list[np.ndarray]:
        """Actions (float64) from a batch's ``tokens`` and ``dataset``, each sample decoded with its own
        dataset's tokenizer (or the pooled one). Padded: ``[B, ..., action_width]`` with NaN beyond a
        sample's own width; ragged (a list of arrays): a list."""
        dataset = np.asarray(dataset).tolist()
        if isinstance(tokens, list | tuple):
            return [self._decode_one(np.asarray(t), d) for t, d in zip(tokens, dataset, strict=True)]
        tokens = np.asarray(tokens)
        out = np.full(tokens.shape, np.nan, dtype=np.float64)
        for i, d in enumerate(dataset):
            w = self.views[d].action_dim
            out[i, ..., :w] = self._decode_one(tokens[i, ..., :w], d)
        return out

    def _decode_one(self, tokens: np.ndarray, d: int) -> np.ndarray:
        tok = self.encoders[d] if self.pooled is not None else self.tokenizers[d]
        return tok.decode(tokens[..., : self.views[d].action_dim])

    def tokenizer_of(self, d: int):
        """The tokenizer that decodes dataset ``d``'s tokens in this layout."""
        return self.encoders[d] if self.pooled is not None else self.tokenizers[d]

    def to_json(self) -> dict[str, object]:
        """The layout, as ``trajshard mix`` records it in info.json ``mixture``."""
        return {
            "target": self.target.to_json(),
            "cameras": list(self.roles),
            "image_size": self.image_size,
            "action_width": self.action_width,
            "state_width": self.state_width,
            "datasets": [
                {
                    "name": v.name,
                    "embodiment": v.embodiment,
                    "action_dim": v.action_dim,
                    "state_dim": v.state_dim,
                    "fps": v.fps,
                    "cameras": {role: v.camera_of[role] for role in self.roles if role in v.camera_of},
                }
                for v in self.views
            ],
        }


def _pad(a: np.ndarray, width: int, fill) -> np.ndarray:
    if a.shape[-1] == width:
        return a
    out = np.full((*a.shape[:-1], width), fill, dtype=a.dtype)
    out[..., : a.shape[-1]] = a
    return out


def _arrays(src: SplitSource) -> dict[str, list]:
    """The npy members of a dataset and their shapes without the last (width) dimension."""
    return {k: list(v["shape"][:-1]) for k, v in src.features.items() if k.endswith(".npy")}


def _check_members(sources: Sequence[SplitSource], names: Sequence[str]) -> None:
    first = _arrays(sources[0])
    for src, name in zip(sources[1:], names[1:], strict=True):
        mine = _arrays(src)
        if set(mine) != set(first):
            raise LoaderError(
                f"dataset {name!r} has sample members {sorted(mine)}, dataset {names[0]!r} has "
                f"{sorted(first)}: a mixture needs the same (ingest them with the same horizon and vocab)"
            )
        for k in mine:
            if k not in ("state.npy", "action.npy") and mine[k] != first[k]:
                raise LoaderError(
                    f"dataset {name!r}: {k} is [{', '.join(map(str, mine[k]))}, D], dataset {names[0]!r} "
                    f"has [{', '.join(map(str, first[k]))}, D] (a different horizon?)"
                )


def _check_tokens(
    sources: Sequence[SplitSource], views: Sequence[DatasetView], target: Target
) -> dict | None:
    """Tokens of every dataset must share one token space: same tokenizer type, bins and token range
    (and the same vocabulary mapping when token ids are stored). Returns that vocabulary."""
    kinds = {(v.tokenizer["type"], v.tokenizer["bins"], tuple(v.tokenizer["token_range"])) for v in views}
    if any(k[0] == "fast" for k in kinds):
        raise LoaderError(
            "a mixture layout needs per-dimension tokenizers (uniform, quantile): FAST tokens are "
            "fitted per dataset and share no vocabulary"
        )
    if target.tokenizer == "own" and len(kinds) != 1:
        listed = ", ".join(f"{v.name}: {v.tokenizer['type']} {v.tokenizer['bins']} bins" for v in views)
        raise LoaderError(
            f"tokenizer = 'own' needs one token space (the same tokenizer type and bins) in every dataset: {listed}"
        )
    vocabs = [src.info.get("vocab") for src in sources]
    if "token_ids.npy" in sources[0].features and any(v != vocabs[0] for v in vocabs):
        raise LoaderError("the datasets map tokens to different vocabulary ids (--vocab): ingest them alike")
    return vocabs[0]
