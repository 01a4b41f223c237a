"""Shard sample v1: one training step in a WebDataset tar (see docs/shard-sample.md).

A sample's key is ``<episode_id>_<step:06d>`` (no dots). Its members, each ``<key>.<field>``:

- ``<camera>.jpg``           uint8 RGB [H, W, 3], JPEG (``<camera>.png`` for 16-bit depth, later)
- ``state.npy``              float32 [S] proprio at the tick
- ``action.npy``             float32 [D] continuous action at the tick
- ``action_chunk.npy``       float32 [H, D] actions of ticks t..t+H-1 (only when horizon > 1)
- ``action_chunk_mask.npy``  bool [H], False where the chunk ran past the episode end
- ``tokens.npy``             int32 [D] (or [H, D] with a horizon) bin indices of the action tokenizer
- ``meta.json``              episode, step, time, instruction, embodiment, is_first, is_last, ...

The expected dtypes and shapes come from ``features`` in ``meta/info.json``; this module checks a
sample against them. npy members are always read with ``allow_pickle=False``, and only after their
header's shape and dtype are found to fit the member's bytes. A member whose suffix is not one of
``SAMPLE_SUFFIXES`` is refused by every reader (:func:`iter_shard_samples`) and is a problem for
``validate``, whatever info.json's features declare (no ``.pyd``, ``.pickle``, ``.pth``: a generic
WebDataset decoder would unpickle them).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from os import PathLike

import numpy as np

from trajshard.io import iter_tar_samples
from trajshard.schemas.problems import Problem

SHARD_SAMPLE_VERSION = 1
# the last suffix of every field the schema defines: <camera>.jpg/.png, <name>.npy, meta.json
SAMPLE_SUFFIXES = frozenset({"jpg", "png", "npy", "json"})
MAX_IMAGE_PIXELS = 4096 * 4096  # the largest image_size squared: a reader decodes no larger image
KEY_RE = re.compile(r"^(?P<episode>[A-Za-z0-9_-]+)_(?P<step>\d{6,})$")
META_FIELDS = {
    "episode": str,
    "step": int,
    "time": float,
    "instruction": str,
    "embodiment": str,
    "is_first": bool,
    "is_last": bool,
}


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialize an array as .npy without pickle."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    """Read .npy bytes (format 1.0 or 2.0, as ``numpy.save`` writes them).

    Object arrays (which would need pickle) are refused, and so is a header whose shape and dtype do
    not describe exactly the bytes that follow it: nothing is allocated from a declared size alone.
    """
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]}; trajshard reads 1.0 and 2.0")
    if dtype.hasobject:
        raise ValueError(f".npy of dtype {dtype} holds Python objects, which would need pickle")
    count = 1
    for n in shape:
        count *= n
    start = f.tell()
    if count * dtype.itemsize != len(data) - start:
        raise ValueError(
            f".npy header declares shape {list(shape)} of {dtype} ({count * dtype.itemsize} bytes), "
            f"the member holds {len(data) - start} bytes of data"
        )
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=start) if count else np.empty(0, dtype)
    return np.reshape(flat, shape, order="F" if fortran else "C").copy(order="K")


def iter_shard_samples(path: str | PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {field: bytes})`` of each sample of a shard, every member checked by
    :func:`trajshard.io.check_member` with the schema's suffixes (``trajshard.io.ShardError``
    otherwise, naming the shard and the member)."""
    return iter_tar_samples(path, SAMPLE_SUFFIXES)


def feature_problems(features: object) -> list[Problem]:
    """The problems of info.json ``features``: each a ``<name>.<suffix>`` field with a suffix of the
    schema (``SAMPLE_SUFFIXES``) and a spec ``{"dtype": str, "shape": [int | None, ...]}``."""
    if not isinstance(features, dict):
        return [Problem("meta/info.json", "features", "not a JSON object")]
    return [
        Problem("meta/info.json", f"features.{name}", message)
        for name, spec in features.items()
        for message in _feature_problems(name, spec)
    ]


def usable_features(features: dict) -> dict[str, dict]:
    """The features whose spec can be checked against a member (a declared ``.pyd`` is kept: its
    members are then reported for their suffix, never decoded)."""
    return {
        name: spec
        for name, spec in features.items()
        if all(m.startswith("suffix") for m in _feature_problems(name, spec))
    }


def _feature_problems(name: str, spec: object) -> list[str]:
    out = []
    suffix = name.rpartition(".")[2]
    if "." not in name or suffix not in SAMPLE_SUFFIXES:
        out.append(
            f"suffix .{suffix} is not one of a shard sample's "
            f"({', '.join('.' + s for s in sorted(SAMPLE_SUFFIXES))}), whatever is declared"
        )
    if not isinstance(spec, dict) or not isinstance(spec.get("dtype"), str):
        return [*out, "not an object with a dtype string"]
    shape = spec.get("shape")
    if not isinstance(shape, list) or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d >= 0) for d in shape
    ):
        out.append(f"shape is not a list of sizes (int or null): {shape!r}")
    rng = spec.get("range")
    if rng is not None and not (
        isinstance(rng, list)
        and len(rng) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in rng)
    ):
        out.append(f"range is not [low, high]: {rng!r}")
    return out


# one encoder for every sample: json.dumps with options builds a new JSONEncoder at each call
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def json_bytes(obj: object) -> bytes:
    """Canonical JSON: sorted keys, no spaces beyond separators, UTF-8."""
    return _CANONICAL.encode(obj).encode("utf-8")


def split_key(key: str) -> tuple[str, int] | None:
    m = KEY_RE.match(key)
    return (m["episode"], int(m["step"])) if m else None


def validate_sample(key: str, members: dict[str, bytes], features: dict[str, dict]) -> list[Problem]:
    """Every problem of one sample against the ``features`` of info.json.

    ``members`` maps a field (``front.jpg``, ``state.npy``, ...) to its bytes. JPEGs are decoded.
    """
    problems: list[Problem] = []

    def bad(fieldname: str, message: str) -> None:
        problems.append(Problem(key, fieldname, message))

    parsed = split_key(key)
    if parsed is None:
        bad("__key__", "key is not <episode>_<step:06d>")
    missing = sorted(set(features) - set(members))
    extra = sorted(set(members) - set(features))
    for name in missing:
        bad(name, "missing")
    for name in extra:
        bad(name, "not declared in info.json features")
    for name in sorted(members):
        if name.rpartition(".")[2] not in SAMPLE_SUFFIXES:
            bad(name, f"suffix .{name.rpartition('.')[2]} is not one of a shard sample's (never decoded)")
    for name in sorted(set(features) & set(members)):
        spec, data = features[name], members[name]
        if name.rpartition(".")[2] not in SAMPLE_SUFFIXES:
            continue
        if name.endswith(".npy"):
            _check_array(name, data, spec, bad)
        elif name.endswith(".jpg") or name.endswith(".png"):
            _check_image(name, data, spec, bad)
        elif name == "meta.json":
            _check_meta(data, parsed, bad)
    return problems


def _check_array(name: str, data: bytes, spec: dict, bad) -> None:
    try:
        arr = load_npy(data)
    except Exception as exc:  # noqa: BLE001 - any failure to parse is the problem we report
        bad(name, f"not a readable pickle-free .npy: {exc}")
        return
    if str(arr.dtype) != spec["dtype"]:
        bad(name, f"dtype {arr.dtype}, expected {spec['dtype']}")
    shape = spec["shape"]
    if len(arr.shape) != len(shape) or any(
        e is not None and a != e for a, e in zip(arr.shape, shape, strict=False)
    ):
        bad(name, f"shape {list(arr.shape)}, expected {list(spec['shape'])}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad(name, f"{int((~np.isfinite(arr)).sum())} NaN/Inf values")
    if "range" in spec and arr.size:
        lo, hi = spec["range"]
        if arr.min() < lo or arr.max() > hi:
            bad(name, f"values in [{arr.min()}, {arr.max()}], outside the range [{lo}, {hi}]")


def _check_image(name: str, data: bytes, spec: dict, bad) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:
                bad(name, f"declares {img.size[0]}x{img.size[1]} pixels, more than {MAX_IMAGE_PIXELS}")
                return
            img.load()
            size, mode, fmt = img.size, img.mode, img.format
    except Exception as exc:  # noqa: BLE001
        bad(name, f"does not decode as an image: {exc}")
        return
    h, w = spec["shape"][:2]
    if size != (w, h):
        bad(name, f"size {size[0]}x{size[1]}, expected {w}x{h}")
    if fmt != spec.get("format", fmt):
        bad(name, f"format {fmt}, expected {spec['format']}")
    if spec.get("mode") and mode != spec["mode"]:
        bad(name, f"mode {mode}, expected {spec['mode']}")


def _check_meta(data: bytes, parsed: tuple[str, int] | None, bad) -> None:
    try:
        meta = json.loads(data.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001
        bad("meta.json", f"not UTF-8 JSON: {exc}")
        return
    if not isinstance(meta, dict):
        bad("meta.json", "not a JSON object")
        return
    for fieldname, typ in META_FIELDS.items():
        value = meta.get(fieldname)
        ok = (
            isinstance(value, int | float) and not isinstance(value, bool)
            if typ is float
            else (isinstance(value, typ) and not (typ is int and isinstance(value, bool)))
        )
        if not ok:
            bad("meta.json", f"{fieldname!r} must be {typ.__name__}, got {value!r}")
    if isinstance(meta.get("instruction"), str) and not meta["instruction"].strip():
        bad("meta.json", "empty instruction")
    if parsed is not None and (meta.get("episode"), meta.get("step")) != parsed:
        bad("meta.json", f"episode/step {meta.get('episode')!r}/{meta.get('step')!r} disagree with the key")
