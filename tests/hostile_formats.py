"""Hostile sources in the other formats (LeRobot v3.0, HDF5, RLDS, MCAP), each mixed with good episodes.

A builder takes ``(src, outside)``: it writes the source into ``src`` (which does not exist yet) and
may put files the source links to into ``outside`` (a sibling directory nobody may read through the
source). It returns ``(bad, good)``: {episode id: words its quarantine record ``file: reason`` must
contain}, and the ids of the good episodes that must be written once.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np

from tests.helpers import write_bag
from tests.hostile_rlds import RLDS_KINDS
from tests.lerobot_v3 import write_v3

Built = tuple[dict[str, list[str]], list[str]]
V3_IDS = [f"episode_{i:06d}" for i in range(3)]


# ---- LeRobot v3.0 -------------------------------------------------------------------------------


def _lerobot(src: Path, **info_changes) -> None:
    write_v3(src, lengths=(12, 9, 10))
    info = json.loads((src / "meta" / "info.json").read_text())
    (src / "meta" / "info.json").write_text(json.dumps({**info, **info_changes}))


def lerobot_video_path_outside(src, outside) -> Built:
    _lerobot(src, video_path="../outside/{video_key}.mp4")
    shutil.copy(next(src.glob("videos/*/*/*.mp4")), outside / "observation.images.top.mp4")  # a decoy
    return {e: ["meta/info.json", "outside the source"] for e in V3_IDS}, []


def lerobot_data_path_absolute(src, outside) -> Built:
    _lerobot(src, data_path=str(outside / "file-{file_index:03d}.parquet"))
    return {e: ["meta/info.json", "outside the source"] for e in V3_IDS}, []


def lerobot_template_width(src, outside) -> Built:
    _lerobot(src, data_path="data/chunk-{chunk_index:0500000000d}/file-{file_index:03d}.parquet")
    return {e: ["meta/info.json", "pads to 500000000"] for e in V3_IDS}, []


def lerobot_video_link_outside(src, outside) -> Built:
    _lerobot(src)
    video = src / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4"
    shutil.move(video, outside / "file-000.mp4")
    video.symlink_to(outside / "file-000.mp4")
    return {e: ["file-000.mp4", "outside the source"] for e in V3_IDS}, []


def lerobot_video_fifo(src, outside) -> Built:
    _lerobot(src)
    video = src / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4"
    video.unlink()
    os.mkfifo(video)
    # the reader's is_file() check refuses it before any open: "missing" (never a hang)
    return {e: ["observation.images.top", "video file is missing"] for e in V3_IDS}, []


def lerobot_episode_video_missing(src, outside) -> Built:
    import pyarrow as pa
    import pyarrow.parquet as pq

    _lerobot(src)
    path = src / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    t = pq.read_table(path)
    key = "videos/observation.images.top/file_index"
    t = t.set_column(t.schema.get_field_index(key), key, pa.array([0, 7, 0], pa.int64()))
    pq.write_table(t, path)
    return {"episode_000001": ["observation.images.top", "video file is missing"]}, [
        "episode_000000",
        "episode_000002",
    ]


def lerobot_data_mode_000(src, outside) -> Built:
    _lerobot(src)
    (src / "data" / "chunk-000" / "file-000.parquet").chmod(0)
    return {e: ["file-000.parquet", "Permission denied"] for e in V3_IDS}, []


def lerobot_lone_surrogate_robot_type(src, outside) -> Built:
    _lerobot(src)
    text = (src / "meta" / "info.json").read_text().replace('"marker_rig"', '"rig\\udc80"')
    (src / "meta" / "info.json").write_text(text)
    return {e: ["meta/info.json", "lone surrogate"] for e in V3_IDS}, []


# ---- HDF5 (robomimic) ---------------------------------------------------------------------------


def _robomimic(path: Path, demos: int = 2, steps: int = 40) -> None:
    with h5py.File(path, "w") as h:
        h.create_group("data").attrs["env"] = "Lift"
        for i in range(demos):
            g = h.create_group(f"data/demo_{i}")
            g["actions"] = np.random.default_rng(i).normal(size=(steps, 3)).astype(np.float32)
            g["states"] = np.random.default_rng(i + 9).normal(size=(steps, 5)).astype(np.float32)


HDF5_GOOD = ["evil-demo_0", "good-demo_0", "good-demo_1"]


def _hdf5(src: Path, outside: Path, spoil) -> None:
    src.mkdir()
    _robomimic(src / "good.hdf5")
    _robomimic(src / "evil.hdf5")
    (outside / "secret.bin").write_bytes(b"root:x:0:0:" * 64)
    _robomimic(outside / "other.hdf5")
    with h5py.File(src / "evil.hdf5", "a") as h:
        spoil(h["data/demo_1"], outside)


def _external_link(g, outside):
    del g["actions"]
    g["actions"] = h5py.ExternalLink(str(outside / "other.hdf5"), "data/demo_0/actions")


def _external_storage(g, outside):
    del g["states"]
    g.create_dataset("states", (32, 5), "<f4", external=[(str(outside / "secret.bin"), 0, 640)])


def _virtual(g, outside):
    del g["actions"]
    layout = h5py.VirtualLayout(shape=(40, 3), dtype="f4")
    layout[:] = h5py.VirtualSource(str(outside / "other.hdf5"), "data/demo_0/actions", shape=(40, 3))
    g.create_virtual_dataset("actions", layout)


def _declared_huge(g, outside):
    del g["actions"], g["states"]
    g.create_dataset("actions", (150_000_000, 2), "f8", chunks=(1024, 2))
    g.create_dataset("states", (150_000_000, 2), "f8", chunks=(1024, 2))


def hdf5_external_link(src, outside) -> Built:
    _hdf5(src, outside, _external_link)
    return {"evil-demo_1": ["evil.hdf5", "external link"]}, HDF5_GOOD


def hdf5_external_storage(src, outside) -> Built:
    _hdf5(src, outside, _external_storage)
    return {"evil-demo_1": ["evil.hdf5", "outside the file"]}, HDF5_GOOD


def hdf5_virtual_dataset(src, outside) -> Built:
    _hdf5(src, outside, _virtual)
    return {"evil-demo_1": ["evil.hdf5", "outside the file"]}, HDF5_GOOD


def hdf5_declared_huge(src, outside) -> Built:
    _hdf5(src, outside, _declared_huge)
    return {"evil-demo_1": ["evil.hdf5", "MiB a state or action array may take"]}, HDF5_GOOD


def hdf5_linked_from_outside(src, outside) -> Built:
    src.mkdir()
    _robomimic(src / "good.hdf5")
    _robomimic(outside / "evil.hdf5")
    (src / "evil.hdf5").symlink_to(outside / "evil.hdf5")
    return {"evil": ["evil.hdf5", "outside the source"]}, ["good-demo_0", "good-demo_1"]


def hdf5_fifo(src, outside) -> Built:
    src.mkdir()
    _robomimic(src / "good.hdf5")
    os.mkfifo(src / "evil.hdf5")
    return {"evil": ["evil.hdf5", "not a regular file"]}, ["good-demo_0", "good-demo_1"]


def hdf5_garbage(src, outside) -> Built:
    src.mkdir()
    _robomimic(src / "good.hdf5")
    (src / "evil.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    return {"evil": ["evil.hdf5", "not a readable HDF5"]}, ["good-demo_0", "good-demo_1"]


def hdf5_mode_000(src, outside) -> Built:
    src.mkdir()
    _robomimic(src / "good.hdf5")
    _robomimic(src / "evil.hdf5")
    (src / "evil.hdf5").chmod(0)
    return {"evil": ["evil.hdf5", "Permission denied"]}, ["good-demo_0", "good-demo_1"]


def hdf5_name_not_utf8(src, outside) -> Built:
    src.mkdir()
    _robomimic(src / "good.hdf5")
    _robomimic(src / os.fsdecode(b"ev\xffil.hdf5"))
    return {
        "ev\\xffil-demo_0": ["ev\\xffil-demo_0", "[A-Za-z0-9_-]+"],
        "ev\\xffil-demo_1": ["[A-Za-z0-9_-]+"],
    }, [
        "good-demo_0",
        "good-demo_1",
    ]


# ---- MCAP (ROS 2) -------------------------------------------------------------------------------


def _mcap(src: Path) -> list[str]:
    src.mkdir()
    for name in ("ep_a", "ep_b"):
        write_bag(src / f"{name}.mcap", seconds=2.0)
    return ["ep_a", "ep_b"]


def mcap_truncated(src, outside) -> Built:
    good = _mcap(src)
    write_bag(src / "evil.mcap", seconds=2.0)
    data = (src / "evil.mcap").read_bytes()
    (src / "evil.mcap").write_bytes(data[: len(data) // 2])
    return {"evil": ["evil.mcap"]}, good


def mcap_garbage(src, outside) -> Built:
    good = _mcap(src)
    (src / "evil.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 16)
    return {"evil": ["evil.mcap", "cannot be read"]}, good


def mcap_link_outside(src, outside) -> Built:
    good = _mcap(src)
    write_bag(outside / "evil.mcap", seconds=2.0)
    (src / "evil.mcap").symlink_to(outside / "evil.mcap")
    return {"evil": ["evil.mcap", "outside the source"]}, good


def mcap_fifo(src, outside) -> Built:
    good = _mcap(src)
    os.mkfifo(src / "evil.mcap")
    return {"evil": ["evil.mcap", "not a regular file"]}, good


def mcap_side_video_outside(src, outside) -> Built:
    good = _mcap(src)
    write_bag(outside / "evil.mcap", seconds=2.0, video=True)
    shutil.move(outside / "evil.mcap", src / "evil.mcap")
    (src / "evil.side.mp4").symlink_to(outside / "evil.side.mp4")
    return {"evil": ["evil.side.mp4", "outside the source"]}, good


def mcap_mode_000(src, outside) -> Built:
    good = _mcap(src)
    write_bag(src / "evil.mcap", seconds=2.0)
    (src / "evil.mcap").chmod(0)
    return {"evil": ["evil.mcap", "Permission denied"]}, good


FORMAT_KINDS = {
    "lerobot": [
        lerobot_video_path_outside,
        lerobot_data_path_absolute,
        lerobot_template_width,
        lerobot_video_link_outside,
        lerobot_video_fifo,
        lerobot_episode_video_missing,
        lerobot_data_mode_000,
        lerobot_lone_surrogate_robot_type,
    ],
    "hdf5": [
        hdf5_external_link,
        hdf5_external_storage,
        hdf5_virtual_dataset,
        hdf5_declared_huge,
        hdf5_linked_from_outside,
        hdf5_fifo,
        hdf5_garbage,
        hdf5_mode_000,
        hdf5_name_not_utf8,
    ],
    "rlds": RLDS_KINDS,
    "mcap": [
        mcap_truncated,
        mcap_garbage,
        mcap_link_outside,
        mcap_fifo,
        mcap_side_video_outside,
        mcap_mode_000,
    ],
}
