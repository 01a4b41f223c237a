"""A dataset split as the loader sees it, and reading its samples in a planned order (no torch).

``SplitSource`` reads ``meta/info.json`` and ``meta/manifest.json``; :func:`emit` follows a
:class:`~trajshard.loading.order.RolePlan`, reading the role's shard pieces front to back and holding at
most ``shuffle_buffer`` raw samples. Samples before ``skip`` in the emission order (already consumed
before a resume) are seeked over: their bytes are never read.

The dataset is untrusted (docs/robustness.md): the manifest must pass its schema check (shard names
``shards/<file>.tar``, split names ``[A-Za-z0-9_]+``), each shard is opened through
:func:`trajshard.io.shard_path` (confined to ``OUT/shards``) and each member passes
:func:`trajshard.io.check_member` with the shard sample's suffixes before its data is read; a refusal
is a :class:`LoaderError` naming the shard and the member.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image

from trajshard.io import ShardError, read_json, shard_path
from trajshard.loading.order import Piece, RolePlan
from trajshard.loading.tarscan import shard_members
from trajshard.schemas.metadata import validate_metadata
from trajshard.schemas.sample import MAX_IMAGE_PIXELS, SAMPLE_SUFFIXES, load_npy

IMAGE_SUFFIXES = (".jpg", ".png")


class LoaderError(RuntimeError):
    """The dataset on disk does not match its manifest, or a loader argument is wrong."""


@dataclass(frozen=True)
class SplitSource:
    """One split of one trajshard output: its shards (sorted by name) with sample counts."""

    root: Path
    split: str
    shards: tuple[str, ...]  # paths relative to root, "shards/<split>-NNNNNN.tar"
    counts: tuple[int, ...]
    cameras: tuple[str, ...]
    features: dict = field(hash=False, compare=False)
    info: dict = field(default_factory=dict, hash=False, compare=False)  # meta/info.json

    @property
    def samples(self) -> int:
        return int(sum(self.counts))

    def fingerprint(self) -> str:
        """Hash of the shard names and counts: a state dict only resumes on the same split."""
        text = json.dumps([self.split, list(self.shards), list(self.counts)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def open_split(root: str | Path, split: str = "train") -> SplitSource:
    """Read ``OUT/meta/{info,manifest}.json`` and select ``split``'s shards."""
    root = Path(root)
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise LoaderError(f"{root}: no meta/info.json (not a finished trajshard output)")
    info = read_json(info_path)
    manifest = checked_manifest(root)
    entries = sorted((s for s in manifest["shards"] if s["split"] == split), key=lambda s: s["name"])
    if not entries:
        have = sorted({s["split"] for s in manifest["shards"]})
        raise LoaderError(f"{root}: split {split!r} has no shards (splits: {have})")
    return SplitSource(
        root=root,
        split=split,
        shards=tuple(s["name"] for s in entries),
        counts=tuple(int(s["samples"]) for s in entries),
        cameras=tuple(info.get("cameras", [])),
        features=dict(info.get("features", {})),
        info=info,
    )


def checked_manifest(root: Path) -> dict:
    """``meta/manifest.json`` after its schema check (names, splits, types), else :class:`LoaderError`;
    and every shard name confined to ``OUT/shards`` (:func:`trajshard.io.shard_path`)."""
    path = root / "meta" / "manifest.json"
    manifest = read_json(path)
    problems = validate_metadata("manifest", manifest)
    if problems:
        listed = "; ".join(str(p) for p in problems[:3])
        raise LoaderError(f"{path}: {len(problems)} problems ({listed}); `trajshard validate` lists them")
    for s in manifest["shards"]:
        try:
            shard_path(root, s["name"])
        except ShardError as exc:
            raise LoaderError(f"{path}: {exc}") from None
    return manifest


RawSample = tuple[str, dict[str, bytes]]


def read_piece(
    root: Path, name: str, piece: Piece, skip: np.ndarray, base: int
) -> Iterator[RawSample | None]:
    """Samples ``piece.start .. piece.stop-1`` of a shard, in file order.

    Yields ``None`` (reading no member data) for a sample whose range position
    ``base + (index - piece.start)`` is marked in ``skip``. Raises :class:`LoaderError` if the shard
    has fewer samples than the manifest says.
    """
    try:
        path = shard_path(root, name)
        with open(path, "rb") as f:
            yield from _read_piece(f, path, piece, skip, base)
    except ShardError as exc:  # a member refused: name it, and read nothing of it
        raise LoaderError(str(exc)) from None


def _read_piece(f, path: Path, piece: Piece, skip: np.ndarray, base: int) -> Iterator[RawSample | None]:
    index, key, members, skipping = -1, None, {}, False
    for info, k, fieldname in shard_members(f, path, SAMPLE_SUFFIXES):
        if k != key:
            if key is not None and index >= piece.start:
                yield None if skipping else (key, members)
            index += 1
            if index >= piece.stop:
                return
            key, members = k, {}
            skipping = index < piece.start or bool(skip[base + index - piece.start])
        if not skipping and index >= piece.start:
            f.seek(info.offset_data)
            members[fieldname] = f.read(info.size)
            if len(members[fieldname]) != info.size:
                raise ShardError(f"{path}: member {info.name!r} is cut short")
    if key is not None and index >= piece.start:
        yield None if skipping else (key, members)
    if index + 1 < piece.stop:
        raise LoaderError(f"{path}: {index + 1} samples, the manifest says at least {piece.stop}")


def emit(source: SplitSource, plan: RolePlan, skip: int = 0) -> Iterator[RawSample]:
    """Raw samples of ``plan`` in its emission order, starting at emission position ``skip``."""
    n = plan.size
    done = np.zeros(n, dtype=bool)
    done[plan.order[:skip]] = True

    def inputs() -> Iterator[tuple[int, RawSample | None]]:
        pos = 0
        for piece in plan.pieces:
            for raw in read_piece(source.root, source.shards[piece.shard], piece, done, pos):
                yield pos, raw
                pos += 1

    reader = inputs()
    held: dict[int, RawSample] = {}
    for k in range(skip, n):
        want = int(plan.order[k])
        while want not in held:
            try:
                pos, raw = next(reader)
            except StopIteration:
                raise LoaderError(f"{source.root}: shards ended before sample {want} of the plan") from None
            if raw is not None:
                held[pos] = raw
        yield held.pop(want)


# JPEG colour spaces simplejpeg decodes to exactly Pillow's pixels (both are libjpeg-turbo with the
# accurate DCT and fancy upsampling; tests/test_loader_fast.py compares them): YCbCr to RGB, gray to one
# channel.
_SIMPLEJPEG = {"YCbCr": "RGB", "Gray": "Gray"}


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes to uint8 ``[H, W, C]`` (RGB, or one channel kept as ``[H, W, 1]``); an image
    declaring more than ``MAX_IMAGE_PIXELS`` is refused before it is decoded.

    A YCbCr or gray JPEG is decoded by libjpeg-turbo through simplejpeg (no Pillow image object, one
    copy); anything else, or a JPEG simplejpeg refuses, by Pillow, which then names what is wrong."""
    arr = _decode_jpeg(data) if data[:2] == b"\xff\xd8" else None
    if arr is not None:
        return arr
    with Image.open(io.BytesIO(data)) as im:
        if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
            raise LoaderError(f"image of {im.size[0]}x{im.size[1]}, more than {MAX_IMAGE_PIXELS} pixels")
        if im.mode not in ("RGB", "L", "I;16"):
            im = im.convert("RGB")
        arr = np.asarray(im)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _decode_jpeg(data: bytes) -> np.ndarray | None:
    try:
        height, width, space, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if space not in _SIMPLEJPEG:
        return None
    if height * width > MAX_IMAGE_PIXELS:
        raise LoaderError(f"image of {width}x{height}, more than {MAX_IMAGE_PIXELS} pixels")
    try:
        return simplejpeg.decode_jpeg(data, colorspace=_SIMPLEJPEG[space])
    except ValueError:
        return None


class NpyLoader:
    """``schemas.sample.load_npy`` with each distinct header parsed once (a split's members share a
    few): the same checks (an unknown header goes through ``load_npy``; a known one must still be
    followed by exactly its shape's bytes) and the same writable, owned array."""

    def __init__(self, limit: int = 64) -> None:
        self._layouts: dict[bytes, tuple[np.dtype, tuple[int, ...], int, int]] = {}
        self._limit = limit  # distinct headers remembered; the rest are parsed every time

    def __call__(self, data: bytes) -> np.ndarray:
        if data[:6] != b"\x93NUMPY" or data[6:8] != b"\x01\x00" or len(data) < 10:
            return load_npy(data)
        end = 10 + int.from_bytes(data[8:10], "little")
        known = self._layouts.get(data[:end])
        if known is None:
            arr = load_npy(data)
            if arr.flags.c_contiguous and len(self._layouts) < self._limit:
                self._layouts[data[:end]] = (arr.dtype, arr.shape, arr.size, end)
            return arr
        dtype, shape, count, start = known
        if count * dtype.itemsize != len(data) - start:
            return load_npy(data)  # raises, naming the sizes
        return np.frombuffer(data, dtype, count, start).reshape(shape).copy()


_NPY = NpyLoader()


_RESERVED = frozenset({"key", "images", "meta", "instruction", "dataset"})  # decode_sample's own keys


def decode_sample(
    key: str, members: dict[str, bytes], decode_images: bool = True, cameras: frozenset[str] | None = None
) -> dict:
    """A raw sample to plain values: images (HWC uint8), arrays (npy), meta and instruction.

    Returns ``{"key", "images": {camera: array|bytes}, "<name>": array for each <name>.npy,
    "meta": dict, "instruction": str}``. A member that does not decode (an ``.npy`` header that does
    not fit its bytes, an oversize image, meta.json not a JSON object) or an ``.npy`` named like one of
    those keys raises :class:`LoaderError` naming the sample and the member.
    """
    out: dict = {"key": key, "images": {}}
    for name, data in members.items():
        stem, _, ext = name.rpartition(".")
        try:
            if name.endswith(IMAGE_SUFFIXES):
                if cameras is None or stem in cameras:  # a camera no one asked for is not decoded
                    out["images"][stem] = decode_image(data) if decode_images else data
            elif ext == "npy":
                if stem in _RESERVED:
                    raise LoaderError(f"an array may not be named {stem!r}")
                out[stem] = _NPY(data)
            elif name == "meta.json":
                out["meta"] = json.loads(data.decode("utf-8"))
                if not isinstance(out["meta"], dict):
                    raise LoaderError("not a JSON object")
        except (LoaderError, ValueError, OSError, Image.DecompressionBombError) as exc:
            raise LoaderError(f"sample {key}: member {key}.{name}: {exc}") from None
    meta = out.setdefault("meta", {})
    if "instruction" not in out:
        out["instruction"] = meta.get("instruction", "")
    return out
