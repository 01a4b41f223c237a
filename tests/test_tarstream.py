"""trajshard's tar writer gives exactly the bytes of webdataset.TarWriter (PAX, mtime 0, fixed owner)."""

from __future__ import annotations

import io
import tarfile

import pytest
import webdataset as wds

from trajshard.pipelines.tarstream import TarStream, member_header


def _samples():
    for i in range(120):
        key = f"ep_{i:03d}_part01_{i:06d}" if i % 40 else "x" * 110 + f"_{i:06d}"  # > 100 bytes: PAX
        yield {
            "__key__": key,
            "front.jpg": bytes([i % 256]) * (1000 + 37 * i),
            "state.npy": b"\x93NUMPY" + bytes(i),
            "meta.json": b"{}" * (i % 3),  # empty members too
            "_private": b"not written",
        }


def test_bytes_equal_webdataset_tarwriter():
    ref = io.BytesIO()
    writer = wds.TarWriter(
        ref, user="trajshard", group="trajshard", mode=0o444, mtime=0, encoder=False, format="PAX_FORMAT"
    )
    for s in _samples():
        writer.write(s)
    writer.close()
    got = io.BytesIO()
    stream = TarStream(got)
    for s in _samples():
        stream.write(s)
    stream.close()
    assert got.getvalue() == ref.getvalue()
    assert stream.offset == len(got.getvalue()) and stream.offset % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(got.getvalue())) as tar:
        names = tar.getnames()
    assert names[:3] == [
        "x" * 110 + "_000000.front.jpg",
        "x" * 110 + "_000000.meta.json",
        "x" * 110 + "_000000.state.npy",
    ]


@pytest.mark.parametrize("size", [0, 1, 511, 512, 8**11 - 1])
def test_header_equals_tarfile(size):
    info = tarfile.TarInfo("ep_000001_000002.front.jpg")
    info.size, info.mtime, info.mode, info.uname, info.gname = size, 0, 0o444, "trajshard", "trajshard"
    assert member_header(info.name, size) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_refuses_text_values():
    with pytest.raises(ValueError, match="not bytes"):
        TarStream(io.BytesIO()).write({"__key__": "a", "b.txt": "text"})
