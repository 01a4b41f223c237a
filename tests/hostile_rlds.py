"""Hostile RLDS sources (TFRecord shards of the BridgeData V2 debug split), mixed with good records.

Builders as in tests/hostile_formats.py: ``(src, outside) -> (bad, good)``. Records are copied from
the real shard; hostile ones are written with a small TFRecord and ``tf.train.Example`` encoder.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np

from tests.helpers import shared_data
from trajshard.sources.tfrecord import _masked_crc, index_records, parse_example, read_record

Built = tuple[dict[str, list[str]], list[str]]

SHARD = "bridge_dataset-train.tfrecord-00000-of-00001"


def _record(data: bytes) -> bytes:
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", _masked_crc(head)) + data + struct.pack("<I", _masked_crc(data))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_example(features: dict) -> bytes:
    """A ``tf.train.Example`` of ``{name: list of bytes | float32 array | int64 array}``."""
    entries = b""
    for name, value in features.items():
        if isinstance(value, list):
            feature = _field(1, b"".join(_field(1, v) for v in value))
        elif value.dtype == np.float32:
            feature = _field(2, _field(1, value.astype("<f4").tobytes()))
        else:
            feature = _field(3, _field(1, b"".join(_varint(int(x) % (1 << 64)) for x in value)))
        entries += _field(1, _field(1, name.encode()) + _field(2, feature))
    return _field(1, entries)


def _rlds(src: Path, good: int, tail: bytes = b"") -> tuple[Path, list[bytes]]:
    """The bridge debug split's first ``good`` records, then ``tail``; (shard path, the good records)."""
    real = shared_data("bridge_rlds")
    src.mkdir()
    for name in ("features.json", "dataset_info.json"):
        shutil.copy(real / name, src / name)
    records = [read_record(str(real / SHARD), o, n) for o, n in index_records(str(real / SHARD))[:good]]
    (src / SHARD).write_bytes(b"".join(map(_record, records)) + tail)
    return src / SHARD, records


def _ids(n: int) -> list[str]:
    return [f"train_00000_{i:06d}" for i in range(n)]


def rlds_record_claims_2_60_bytes(src, outside) -> Built:
    head = struct.pack("<Q", 1 << 60)
    shard, records = _rlds(src, 12, head + struct.pack("<I", _masked_crc(head)) + b"\0" * 64)
    offset = sum(16 + len(r) for r in records)
    return {"train_00000_000012": [SHARD, f"byte {offset}", "claims"]}, _ids(12)


def rlds_truncated_record(src, outside) -> Built:
    real = shared_data("bridge_rlds")
    o, n = index_records(str(real / SHARD))[3]
    tail = _record(read_record(str(real / SHARD), o, n))[: n // 2]
    _rlds(src, 3, tail)
    return {"train_00000_000003": [SHARD, "past the end"]}, _ids(3)


def rlds_header_crc_broken(src, outside) -> Built:
    tail = struct.pack("<QI", 100, 12345) + bytes(104)
    _rlds(src, 3, tail)
    return {"train_00000_000003": [SHARD, "fails its CRC"]}, _ids(3)


def rlds_flipped_bit(src, outside) -> Built:
    shard, _ = _rlds(src, 4)
    data = bytearray(shard.read_bytes())
    o, n = index_records(str(shard))[1]
    data[o + n // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    return {"train_00000_000001": [SHARD, "data CRC"]}, ["train_00000_000000", *_ids(4)[2:]]


def rlds_missing_action(src, outside) -> Built:
    shard, records = _rlds(src, 3)
    ex = parse_example(records[0])
    del ex["steps/action"]
    shard.write_bytes(shard.read_bytes() + _record(encode_example(ex)))
    return {"train_00000_000003": [SHARD, "no steps/action"]}, _ids(3)


def rlds_undecodable_image(src, outside) -> Built:
    shard, records = _rlds(src, 3)
    ex = parse_example(records[0])
    ex["steps/observation/image_0"] = [b"\xff\xd8garbage"] * len(ex["steps/observation/image_0"])
    shard.write_bytes(shard.read_bytes() + _record(encode_example(ex)))
    return {"train_00000_000003": [SHARD, "does not decode"]}, _ids(3)


def rlds_shard_mode_000(src, outside) -> Built:
    shard, _ = _rlds(src, 3)
    good = src / "bridge_dataset-train.tfrecord-00000-of-00002"
    shard.rename(good)
    bad = src / "bridge_dataset-train.tfrecord-00001-of-00002"
    shutil.copy(good, bad)
    bad.chmod(0)
    return {bad.name: [bad.name, "Permission denied"]}, _ids(3)


RLDS_KINDS = [
    rlds_record_claims_2_60_bytes,
    rlds_truncated_record,
    rlds_header_crc_broken,
    rlds_flipped_bit,
    rlds_missing_action,
    rlds_undecodable_image,
    rlds_shard_mode_000,
]
