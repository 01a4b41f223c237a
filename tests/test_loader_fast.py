"""The loader's fast paths give what the general ones give: the ustar scan (loading/tarscan.py) the
members ``tarfile`` reads, simplejpeg the pixels Pillow decodes, the cached .npy headers load_npy's
arrays; anything unusual goes to the general path, with its errors."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trajshard.io import ShardError, tar_members
from trajshard.loading.source import LoaderError, NpyLoader, decode_image
from trajshard.loading.tarscan import shard_members
from trajshard.schemas.sample import MAX_IMAGE_PIXELS, SAMPLE_SUFFIXES, load_npy


def _members(fn, path: Path) -> list[tuple]:
    with open(path, "rb") as f:
        return [(i.name, i.size, i.offset_data, i.type, k, fl) for i, k, fl in fn(f, path, SAMPLE_SUFFIXES)]


def _tar(path: Path, members: list[tuple[str, bytes, bytes]], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "elsewhere"
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_scan_gives_tarfiles_members_on_every_shard(two_split):
    shards = sorted((two_split / "shards").glob("*.tar"))
    assert shards
    for shard in shards:
        assert _members(shard_members, shard) == _members(tar_members, shard)


def test_scan_hands_unusual_headers_to_tarfile(tmp_path):
    long = "k" * 120 + ".meta.json"  # longer than the 100-byte field: a PAX header, then tarfile reads on
    plain = [("a.meta.json", b"{}", tarfile.REGTYPE), ("a.state.npy", b"x" * 700, tarfile.REGTYPE)]
    mixed = _tar(
        tmp_path / "mixed.tar", [*plain, (long, b"{}", tarfile.REGTYPE), ("c.meta.json", b"{}", b"0")]
    )
    got = _members(shard_members, mixed)
    assert got == _members(tar_members, mixed) and [m[0] for m in got][2] == long
    gnu = _tar(tmp_path / "gnu.tar", plain, tarfile.GNU_FORMAT)
    assert _members(shard_members, gnu) == _members(tar_members, gnu)
    link = _tar(tmp_path / "link.tar", [*plain, ("b.meta.json", b"", tarfile.SYMTYPE)])
    errors = []
    for fn in (shard_members, tar_members):
        with pytest.raises(ShardError) as exc:
            _members(fn, link)
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "regular files only" in errors[0]


def test_scan_falls_back_on_a_bad_checksum(tmp_path):
    path = _tar(tmp_path / "bad.tar", [("a.meta.json", b"{}", tarfile.REGTYPE)] * 2)
    data = bytearray(path.read_bytes())
    data[512 * 2] = ord("b")  # the second member's name changes, its stored checksum does not
    path.write_bytes(bytes(data))
    assert _members(shard_members, path) == _members(tar_members, path)
    data[0] = ord("b")  # the first header: tarfile refuses the file
    path.write_bytes(bytes(data))
    errors = []
    for fn in (shard_members, tar_members):
        with pytest.raises(tarfile.ReadError) as exc:
            _members(fn, path)
        errors.append(str(exc.value))
    assert errors[0] == errors[1]


def _jpeg(img: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        arr = np.asarray(im if im.mode in ("RGB", "L", "I;16") else im.convert("RGB"))
    return arr[:, :, None] if arr.ndim == 2 else arr


def test_jpeg_decode_is_pillows_pixels():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    img[:30] = np.linspace(0, 255, 83, dtype=np.uint8)[None, :, None]
    cases = [_jpeg(img, quality=q, subsampling=s) for q in (40, 95) for s in (0, 1, 2)]
    cases += [_jpeg(img[:, :, 0]), _cmyk(img)]
    for data in cases:
        got, want = decode_image(data), _pillow(data)
        assert got.dtype == np.uint8 and got.shape == want.shape and np.array_equal(got, want)
    depth = io.BytesIO()
    Image.fromarray(rng.integers(0, 65535, (8, 9), dtype=np.uint16)).save(depth, "PNG")
    assert np.array_equal(decode_image(depth.getvalue()), _pillow(depth.getvalue()))


def _cmyk(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).convert("CMYK").save(buf, "JPEG")
    return buf.getvalue()


def test_jpeg_declaring_too_many_pixels_is_refused_before_decoding():
    data = bytearray(_jpeg(np.zeros((16, 16, 3), dtype=np.uint8)))
    sof = data.index(b"\xff\xc0")
    side = int(MAX_IMAGE_PIXELS**0.5) + 1
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2  # height and width
    with pytest.raises(LoaderError, match="more than"):
        decode_image(bytes(data))
    with pytest.raises(OSError):  # a broken JPEG: Pillow says so, as before
        decode_image(b"\xff\xd8" + b"\x00" * 40)


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def test_cached_npy_headers_give_load_npys_arrays_and_checks():
    load = NpyLoader(limit=3)
    arrays = [
        np.arange(7, dtype=np.float32),
        np.arange(6, dtype=np.int64).reshape(2, 3),
        np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
        np.array(5, dtype=np.int32),
        np.zeros((0, 4), dtype=np.uint8),
        np.arange(7, dtype=np.float32) + 1,
    ]
    for _ in range(2):  # the second round hits the cache
        for a in arrays:
            got, want = load(_npy(a)), load_npy(_npy(a))
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
            assert got.flags.writeable and got.flags.owndata == want.flags.owndata
            assert got.flags.f_contiguous == want.flags.f_contiguous
    data = _npy(np.arange(7, dtype=np.float32))
    for bad in (data[:-4], data + b"\0" * 4):
        with pytest.raises(ValueError, match="header declares"):
            load(bad)
