"""Damaged bytes in an npz episode or a Zarr replay buffer: the readers read, or raise the episode's
EpisodeError (a reason naming the file), or refuse the whole store naming it; nothing else, in load
and while the frames are read."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_npz_layouts import MAPPING, write_npz_folders
from tests.test_zarr_layouts import write_replay_buffer
from trajshard.schemas.episode import EpisodeError
from trajshard.sources import open_source

SLOW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def good_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    write_npz_folders(root / "npz", broken=-1)
    write_replay_buffer(root / "b.zarr")
    return root


def read_all(src, eid: str) -> None:
    """Load an episode and read every frame of it."""
    try:
        ep = src.load(eid)
        for cam in ep.cameras.values():
            for _ in src.frames(cam):
                pass
    except EpisodeError as exc:
        assert exc.where and exc.message


def flip(data: bytes, at: list[int], values: list[int]) -> bytes:
    b = bytearray(data)
    for i, v in zip(at, values, strict=False):
        if b:
            b[i % len(b)] = v
    return bytes(b)


@SLOW
@given(at=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=16), values=st.lists(st.integers(0, 255)))
def test_fuzz_npz_reader_never_crashes(good_sources, tmp_path_factory, at, values):
    root = tmp_path_factory.mktemp("fuzz_npz")
    shutil.copytree(good_sources / "npz" / "ep_000", root / "ep")
    npz = root / "ep" / "trajectory.npz"
    npz.write_bytes(flip(npz.read_bytes(), at, values))
    read_all(open_source(root, "npz", 10.0, mapping=MAPPING), "ep")


@SLOW
@given(
    pick=st.integers(0, 1 << 16),
    at=st.lists(st.integers(0, 1 << 20), min_size=1, max_size=4),
    values=st.lists(st.integers(0, 255)),
)
def test_fuzz_zarr_reader_never_crashes(good_sources, tmp_path_factory, pick, at, values):
    root = tmp_path_factory.mktemp("fuzz_zarr") / "b.zarr"
    shutil.copytree(good_sources / "b.zarr", root)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    target = files[pick % len(files)]
    target.write_bytes(flip(target.read_bytes(), at, values))
    try:
        src = open_source(root, "zarr", 10.0)
    except ValueError as exc:  # a damaged .zarray, .zattrs or episode_ends: the whole store, named
        assert str(root) in str(exc)
        return
    for eid in src.plan()[0]:
        read_all(src, eid)
