"""Index files for other loaders: a wids shard index per split, and an Energon ``.nv-meta`` folder.

``write_indexes(out)`` writes, for a finished trajshard output ``out``:

- ``meta/wids-<split>.json`` per split: the wids ``ShardListDataset`` description (``__kind__``,
  ``wids_version``, ``name``, ``shardlist`` of ``{url, nsamples, filesize, sha256}``; urls relative to
  the index file);
- with Energon (``megatron-energon`` installed): ``.nv-meta/{.info.json, split.yaml, index.sqlite,
  index.uuid, dataset.yaml}`` and ``shards/<name>.tar.idx``, made by Energon's own
  ``BaseWebdatasetFactory.prepare_dataset`` with our splits as its split parts, plus a ``dataset.yaml``
  naming :class:`trajshard.loading.energon.TrajshardSample` with a field map.

Every shard's size and sha256 are checked against ``meta/manifest.json`` first, and every member header
against the shard sample's rules (``trajshard.io.check_member``: regular files named ``<key>.<field>``,
no sparse or oversize member, a suffix of the schema): an index never describes shards that differ from
the manifest, or that a generic decoder would unpickle. Shard names come through
``trajshard.io.shard_path`` and split names must match ``[A-Za-z0-9_]+``: nothing outside ``OUT`` is
read, linked or written.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trajshard.io import (
    ShardError,
    file_digest,
    read_json,
    shard_path,
    tar_members,
    write_bytes_atomic,
    write_json_atomic,
)
from trajshard.loading.source import LoaderError, checked_manifest
from trajshard.schemas.sample import SAMPLE_SUFFIXES

WIDS_KIND = "wids-shard-index-v1"
ENERGON_SAMPLE = ("trajshard.loading.energon", "TrajshardSample")
MAX_ENERGON_CAMERAS = 4
NV_META = ".nv-meta"


@dataclass(frozen=True)
class IndexReport:
    wids: list[Path]
    energon: Path | None
    splits: dict[str, int]  # samples per split


def _manifest_by_split(out: Path) -> dict[str, list[dict]]:
    if not (out / "meta" / "info.json").is_file():
        raise LoaderError(f"{out}: no meta/info.json (not a finished trajshard output)")
    splits: dict[str, list[dict]] = {}
    for s in checked_manifest(out)["shards"]:  # names confined to OUT/shards, splits [A-Za-z0-9_]+
        splits.setdefault(s["split"], []).append(s)
    return {k: sorted(v, key=lambda s: s["name"]) for k, v in sorted(splits.items())}


def verify_shards(out: Path, shards: list[dict]) -> None:
    """Raise :class:`LoaderError` unless each shard's bytes and sha256 equal its manifest entry and each
    of its member headers passes ``trajshard.io.check_member`` with the schema's suffixes (headers only:
    no member's data is read)."""
    for s in shards:
        try:
            path = shard_path(out, s["name"])
        except ShardError as exc:
            raise LoaderError(str(exc)) from None
        if not path.is_file():
            raise LoaderError(f"{path}: listed in meta/manifest.json but missing")
        size, digest = file_digest(path)
        if (size, digest) != (s["bytes"], s["sha256"]):
            raise LoaderError(
                f"{path}: {size} bytes sha256 {digest}, the manifest says {s['bytes']} {s['sha256']}"
            )
        try:
            with open(path, "rb") as f:
                for _ in tar_members(f, path, SAMPLE_SUFFIXES):
                    pass
        except (ShardError, OSError, tarfile.TarError) as exc:
            raise LoaderError(f"{path}: {exc}") from None


def wids_index(out: Path, split: str, shards: list[dict]) -> dict:
    """The wids description of one split (urls relative to ``meta/``, where it is written)."""
    return {
        "__kind__": WIDS_KIND,
        "wids_version": 1,
        "name": f"{out.name}/{split}",
        "shardlist": [
            {
                "url": os.path.relpath(shard_path(out, s["name"]), out / "meta"),
                "nsamples": s["samples"],
                "filesize": s["bytes"],
                "sha256": s["sha256"],
            }
            for s in shards
        ],
    }


def energon_field_map(info: dict) -> dict[str, str]:
    """Our sample type's fields -> tar parts (Energon ``field_map``), from ``info.json`` features."""
    cams = sorted(info.get("cameras", []))
    if not cams:
        raise LoaderError("Energon needs at least one camera: info.json lists none")
    if len(cams) > MAX_ENERGON_CAMERAS:
        raise LoaderError(f"{len(cams)} cameras; the Energon sample type holds at most {MAX_ENERGON_CAMERAS}")
    features = info.get("features", {})
    fmap = {}
    for i, cam in enumerate(cams):
        part = next((f for f in features if f.partition(".")[0] == cam), f"{cam}.jpg")
        fmap["image" if i == 0 else f"image_{i}"] = part
    for name in ("state", "action", "tokens", "token_ids", "action_chunk", "action_chunk_mask"):
        if f"{name}.npy" in features:
            fmap[name] = f"{name}.npy"
    for name in ("instruction", "episode", "step"):
        fmap[name] = f"meta.json[{name}]"
    return fmap


def dataset_yaml(field_map: dict[str, str]) -> str:
    lines = [
        "# written by `trajshard index`: Energon reads trajshard samples as TrajshardSample",
        "sample_type:",
        f"  __module__: {ENERGON_SAMPLE[0]}",
        f"  __class__: {ENERGON_SAMPLE[1]}",
        "field_map:",
    ]
    lines += [f"  {k}: {_yaml_str(v)}" for k, v in field_map.items()]
    return "\n".join(lines) + "\n"


def _yaml_str(s: str) -> str:
    return (
        s if re.fullmatch(r"[A-Za-z0-9_.\-]+", s) else '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    )


def write_energon(out: Path, splits: dict[str, list[dict]], workers: int = 2) -> Path:
    """Run Energon's ``prepare_dataset`` on ``out`` (our splits as its split parts) and add dataset.yaml.

    Energon writes into a staging folder whose ``shards/`` holds symlinks to ours; the ``.tar.idx``
    files are then moved beside the shards and the finished ``.nv-meta`` renamed into place, so a
    failure never leaves a half-written index.
    """
    try:
        from megatron.energon.flavors.webdataset.base_webdataset import BaseWebdatasetFactory
    except ImportError as e:
        raise LoaderError(
            "Energon indexes need megatron-energon: install torch==2.13.0 (the CPU build) first, then "
            "pip install 'trajshard[energon]'"
        ) from e
    info = read_json(out / "meta" / "info.json")
    fmap = energon_field_map(info)
    names = [s["name"] for shards in splits.values() for s in shards]
    # braceexpand (run by Energon on patterns) eats backslashes: no \d or \. here; splits are [A-Za-z0-9_]+
    patterns = [(split, f"^shards/{split}-[0-9]+[.]tar$") for split in splits]
    stage = Path(tempfile.mkdtemp(prefix=".energon-", dir=out))
    try:
        (stage / "shards").mkdir()
        for name in names:
            os.symlink(shard_path(out, name).resolve(), stage / name)
        with contextlib.redirect_stdout(io.StringIO()):
            BaseWebdatasetFactory.prepare_dataset(
                stage, names, split_parts_patterns=patterns, shuffle_seed=None, workers=workers
            )
        write_bytes_atomic(stage / NV_META / "dataset.yaml", dataset_yaml(fmap).encode())
        for name in names:
            idx = stage / f"{name}.idx"
            if idx.is_file():
                os.replace(idx, out / f"{name}.idx")
            elif not (out / f"{name}.idx").is_file():
                raise LoaderError(f"Energon wrote no tar index for {name}")
        final, old = out / NV_META, out / f".{NV_META}.old"
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(stage / NV_META, final)
        shutil.rmtree(old, ignore_errors=True)
        for p in final.iterdir():
            p.chmod(0o644)
        return final
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_indexes(
    out: str | Path, *, wids: bool = True, energon: bool = True, verify: bool = True
) -> IndexReport:
    """Write the wids index of every split and (when ``energon``) the Energon ``.nv-meta`` folder."""
    out = Path(out)
    splits = _manifest_by_split(out)
    if verify:
        for shards in splits.values():
            verify_shards(out, shards)
    wids_paths = []
    if wids:
        for split, shards in splits.items():
            path = out / "meta" / f"wids-{split}.json"
            write_json_atomic(path, wids_index(out, split, shards))
            wids_paths.append(path)
    nv = write_energon(out, splits) if energon else None
    return IndexReport(wids_paths, nv, {k: sum(s["samples"] for s in v) for k, v in splits.items()})
