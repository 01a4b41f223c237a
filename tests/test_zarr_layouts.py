"""The Zarr replay buffer diffusion_policy writes (``data/{action, state, img}`` + ``meta/episode_ends``,
Zarr format 2), read through a mapping: one episode's rows at a time, nothing outside the store."""

from __future__ import annotations

import os

import numpy as np
import pytest
import zarr

from tests.layouts import SIDE, check_output, frames, ingest, quarantined, values
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import detect_format, open_source

LENGTHS = (19, 26, 13, 22)
MAPPING = {
    "state": ["state"],
    "action": ["action"],
    "cameras": {"top": "img"},
    "instruction": "push the T into place",
}


def write_replay_buffer(
    root, lengths=LENGTHS, extra: dict | None = None, chunk: int = 4, img_dtype=np.uint8, zarr_format: int = 2
) -> dict[str, dict]:
    """A replay buffer of ``lengths`` episodes plus two broken entries in meta/episode_ends: an
    episode of no rows, and one that ends 5 rows past the data. Returns each good episode's arrays."""
    n = sum(lengths)
    state, action, img = values(n, 5, 1, np.float32), values(n, 2, 2, np.float32), frames(n, 3)
    img = img.astype(img_dtype)  # Push-T stores float32 0-255 values
    g = zarr.open_group(str(root), mode="w", zarr_format=zarr_format)
    data, meta = g.create_group("data"), g.create_group("meta")
    for key, arr, chunks in (
        ("state", state, (64, 5)),
        ("action", action, (64, 2)),
        ("img", img, (chunk, SIDE, SIDE, 3)),
    ):
        data.create_array(key, shape=arr.shape, dtype=arr.dtype, chunks=chunks)[:] = arr
    data.create_array("keypoint", shape=(n, 9, 2), dtype=np.float32, chunks=(64, 9, 2))[:] = 0
    for key, arr in (extra or {}).items():
        data.create_array(key, shape=arr.shape, dtype=arr.dtype, chunks=arr.shape)[:] = arr
    ends = np.cumsum(lengths)
    ends = np.concatenate([ends[:2], ends[1:2], ends[2:], [n + 5]])  # episode 2 has no rows; the last is cut
    meta.create_array("episode_ends", shape=ends.shape, dtype=np.int64, chunks=ends.shape)[:] = ends
    expected, start = {}, 0
    for i, stop in enumerate(ends[:-1]):
        if stop > start:
            expected[f"episode_{i:06d}"] = {
                "state": state[start:stop],
                "action": action[start:stop],
                "img": img[start:stop],
            }
        start = stop
    return expected


def test_replay_buffer_ingests_through_a_mapping(tmp_path):
    src = tmp_path / "pusht_replay.zarr"
    expected = write_replay_buffer(src)
    assert detect_format(src) == "zarr"
    out = tmp_path / "out"
    ingest(src, out, "zarr", MAPPING)
    check_output(out, expected, {"top": "img"}, len(LENGTHS) + 2)
    bad = quarantined(out)
    assert (
        bad["episode_000002"]["file"] == "meta/episode_ends" and "no rows" in bad["episode_000002"]["reason"]
    )
    assert (
        bad["episode_000005"]["file"] == "data/state" and "ends at row 85" in bad["episode_000005"]["reason"]
    )


def test_defaults_and_an_ambiguous_state(tmp_path):
    src = tmp_path / "buffer.zarr"
    write_replay_buffer(src)
    source = open_source(src, "auto", 10.0)
    ep = source.load("episode_000001")
    assert list(ep.cameras) == ["img"] and ep.streams["proprio"].values.shape == (26, 5)
    assert ep.instructions[0].text == "buffer" and ep.embodiment == "zarr"
    n = sum(LENGTHS)
    other = tmp_path / "real.zarr"
    write_replay_buffer(other, extra={"robot_eef_pose": values(n, 6, 4), "robot_joint": values(n, 7, 5)})
    del zarr.open_group(str(other), mode="a")["data/state"]
    with pytest.raises(
        ValueError, match=r"other candidates \['robot_eef_pose', 'robot_joint'\].*mapping.state"
    ):
        open_source(other, "zarr", 10.0)
    mapped = open_source(other, "zarr", 10.0, mapping={"state": ["robot_joint", "robot_eef_pose[0:3]"]})
    assert mapped.load("episode_000000").streams["proprio"].values.shape == (19, 10)


def test_a_chunk_linked_out_of_the_store_is_refused(tmp_path):
    src = tmp_path / "buffer.zarr"
    write_replay_buffer(src)
    chunk = src / "data" / "state" / "0.0"
    outside = tmp_path / "outside_chunk"
    outside.write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(outside)
    with pytest.raises(EpisodeError, match="outside the source") as err:
        open_source(src, "zarr", 10.0).load("episode_000000")
    assert err.value.problem.field == "data/state/0.0"


def test_declared_chunks_are_bounded_before_reading(tmp_path):
    src = tmp_path / "huge.zarr"
    g = zarr.open_group(str(src), mode="w", zarr_format=2)
    g.create_group("data").create_array(
        "state", shape=(1_000_000, 1000), dtype=np.float32, chunks=(1_000_000, 1000)
    )
    g["data"].create_array("action", shape=(1_000_000, 2), dtype=np.float32, chunks=(1000, 2))
    g.create_group("meta").create_array("episode_ends", shape=(1,), dtype=np.int64)[:] = [10]
    with pytest.raises(EpisodeError, match="declares chunks .* 3814 MiB, more than 512 MiB") as err:
        open_source(src, "zarr", 10.0).load("episode_000000")
    assert err.value.problem.field == "data/state"


def test_float_images_as_push_t_stores_them(tmp_path):
    """diffusion_policy's Push-T buffer keeps ``img`` as float32 0-255: mapped as a camera, it is read
    as those values (not a default camera: only uint8 arrays are taken without asking)."""
    src = tmp_path / "pusht_cchi_v7_replay.zarr"
    expected = write_replay_buffer(src, img_dtype=np.float32)
    assert open_source(src, "zarr", 10.0).cameras == {}
    out = tmp_path / "out"
    ingest(src, out, "zarr", MAPPING)
    check_output(out, expected, {"top": "img"}, len(LENGTHS) + 2)


def test_zarr_format_3_store_without_the_suffix(tmp_path):
    src = tmp_path / "buffer_v3"
    expected = write_replay_buffer(src, zarr_format=3)
    assert (src / "zarr.json").is_file() and detect_format(src) == "zarr"
    source = open_source(src, "auto", 10.0)
    ep = source.load("episode_000003")
    got = np.stack([f.to_ndarray(format="rgb24") for f in source.frames(ep.cameras["img"], 2)])
    assert np.array_equal(got, expected["episode_000003"]["img"][2:])  # stored pixels, from frame 2 on
    assert np.array_equal(ep.streams["proprio"].values, expected["episode_000003"]["state"])
    assert ep.cameras["img"].path.endswith("#img#45") and ep.instructions[0].text == "buffer v3"


def test_a_fifo_chunk_is_refused_not_waited_on(tmp_path):
    src = tmp_path / "buffer.zarr"
    write_replay_buffer(src)
    chunk = src / "data" / "action" / "0.0"
    chunk.unlink()
    os.mkfifo(chunk)
    with pytest.raises(EpisodeError, match="not a regular file") as err:
        open_source(src, "zarr", 10.0).load("episode_000000")
    assert err.value.problem.field == "data/action/0.0"
