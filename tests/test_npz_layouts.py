"""Per-episode npz folders (``<episode>/trajectory.npz`` + ``meta.json``, images as arrays or files)
read through a mapping; the npy headers bound what is read."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from tests.layouts import check_output, frames, ingest, quarantined, values
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import detect_format, open_source

LENGTHS = (18, 25, 12, 21)
MAPPING = {
    "state": ["qpos", "gripper"],
    "action": ["actions"],
    "cameras": {"wrist": "wrist_rgb", "front": "front"},
    "instruction": {"attribute": "task"},
}


def write_npz_folders(root, broken: int = 2) -> dict[str, dict]:
    """One folder per episode: trajectory.npz (qpos, gripper, actions, wrist_rgb), meta.json, and a
    ``front/`` folder of PNG files; episode ``broken`` has a trajectory.npz cut in half."""
    expected = {}
    for i, n in enumerate(LENGTHS):
        folder = root / f"ep_{i:03d}"
        (folder / "front").mkdir(parents=True)
        qpos, grip, act = values(n, 7, i), values(n, 1, 20 + i, np.float32), values(n, 8, 40 + i)
        wrist, front = frames(n, i), frames(n, 9 + i)
        np.savez_compressed(folder / "trajectory.npz", qpos=qpos, gripper=grip, actions=act, wrist_rgb=wrist)
        for j, f in enumerate(front):
            Image.fromarray(f).save(folder / "front" / f"{j}.png")
        (folder / "meta.json").write_text(json.dumps({"task": "open the drawer", "fps": 10}))
        if i == broken:
            data = (folder / "trajectory.npz").read_bytes()
            (folder / "trajectory.npz").write_bytes(data[: len(data) // 2])
            continue
        state = np.concatenate([qpos.astype(np.float32), grip], 1)
        expected[f"ep_{i:03d}"] = {"state": state, "action": act, "wrist": wrist, "front": front}
    return expected


def test_npz_folders_ingest_through_a_mapping(tmp_path):
    src = tmp_path / "src"
    expected = write_npz_folders(src)
    assert detect_format(src) == "npz"
    out = tmp_path / "out"
    ingest(src, out, "npz", MAPPING)
    check_output(out, expected, {"wrist": "wrist", "front": "front"}, len(LENGTHS))
    bad = quarantined(out)["ep_002"]
    assert bad["file"] == "trajectory.npz" and "not a readable npz file" in bad["reason"]


def test_default_names_need_no_mapping(tmp_path):
    folder = tmp_path / "src" / "episode_0"
    folder.mkdir(parents=True)
    state, action = values(15, 3, 1), values(15, 2, 2)
    np.savez(folder / "trajectory.npz", state=state, action=action, image=frames(15, 0))
    (folder / "meta.json").write_text(json.dumps({"instruction": "push the block", "embodiment": "ur5"}))
    ep = open_source(tmp_path / "src", "auto", 5.0).load("episode_0")
    assert np.array_equal(ep.streams["proprio"].values, state.astype(np.float32))
    assert list(ep.cameras) == ["image"] and ep.instructions[0].text == "push the block"
    assert ep.embodiment == "ur5" and ep.streams["action"].timestamps[1] == pytest.approx(0.2)
    np.savez(folder / "trajectory.npz", joints=state, action=action)
    with pytest.raises(EpisodeError, match=r"no state array .*\['action', 'joints'\].*mapping.state"):
        open_source(tmp_path / "src", "npz", 5.0).load("episode_0")


def lying_npz(path, shape) -> None:
    """An npz whose ``state`` member declares ``shape`` but holds 28 bytes of data."""
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    member.write(np.zeros(7, np.float32).tobytes())
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("state.npy", member.getvalue())
        z.writestr("action.npy", member.getvalue())


def test_npy_headers_are_checked_before_reading(tmp_path):
    folder = tmp_path / "src" / "e"
    folder.mkdir(parents=True)
    lying_npz(folder / "trajectory.npz", (1_000_000_000, 7))
    with pytest.raises(EpisodeError, match="the member holds fewer"):
        open_source(tmp_path / "src", "npz", 5.0).load("e")
    np.savez(folder / "trajectory.npz", state=np.array([{"x": 1}], dtype=object), action=np.zeros((1, 2)))
    with pytest.raises(EpisodeError, match=r"pickle\): refused"):
        open_source(tmp_path / "src", "npz", 5.0).load("e")
    outside = tmp_path / "outside"
    outside.mkdir()
    np.savez(outside / "trajectory.npz", state=np.zeros((3, 2)), action=np.zeros((3, 2)))
    (tmp_path / "src" / "linked").symlink_to(outside)
    ids, rejected = open_source(tmp_path / "src", "npz", 5.0).plan()
    assert ids == ["e"] and [p.where for p in rejected] == ["linked"]


def test_an_image_folder_linked_out_of_the_episode_is_refused(tmp_path):
    src = tmp_path / "src"
    write_npz_folders(src)
    outside = tmp_path / "elsewhere"
    (src / "ep_000" / "front").rename(outside)
    (src / "ep_000" / "front").symlink_to(outside)
    with pytest.raises(EpisodeError, match="outside the source") as err:
        open_source(src, "npz", 10.0, mapping=MAPPING).load("ep_000")
    assert err.value.problem.field == "front"
    with pytest.raises(EpisodeError, match="outside the source"):
        open_source(src, "npz", 10.0).load("ep_000")  # the default cameras: the folder is not listed


def test_recorded_times_through_time_base(tmp_path):
    folder = tmp_path / "src" / "e"
    folder.mkdir(parents=True)
    stamps = 1_700_000_000_000_000_000 + np.arange(6, dtype=np.int64) * 50_000_000  # ns, 20 Hz
    np.savez(folder / "trajectory.npz", state=values(6, 2, 0), action=values(6, 2, 1), stamp_ns=stamps)
    (folder / "meta.json").write_text(json.dumps({"instruction": "wave"}))
    ep = open_source(tmp_path / "src", "npz", 5.0, mapping={"time_base": "stamp_ns"}).load("e")
    assert np.allclose(ep.streams["proprio"].timestamps, np.arange(6) * 0.05)


def test_a_mapping_key_of_another_format_is_refused(tmp_path):
    write_npz_folders(tmp_path / "src")
    with pytest.raises(ValueError, match="mapping.episodes is for HDF5"):
        open_source(tmp_path / "src", "npz", 10.0, mapping={"episodes": "/"})
