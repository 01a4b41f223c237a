"""A corpus of broken and hostile raw-layout episodes, each made from a copy of a good one.

``CORPUS`` maps a name to (mutation, words the quarantine reason must contain). Each mutation takes
the episode directory (already a copy of a good episode) and breaks one thing.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _proprio(ep: Path) -> pa.Table:
    return pq.read_table(ep / "proprio.parquet")


def _set_proprio(ep: Path, ts=None, values=None) -> None:
    t = _proprio(ep)
    ts = t.column("timestamp").to_numpy() if ts is None else ts
    vals = np.stack(t.column("proprio").to_numpy(zero_copy_only=False)) if values is None else values
    pq.write_table(
        pa.table(
            {"timestamp": ts, "proprio": pa.array(list(vals.astype(np.float32)), pa.list_(pa.float32()))}
        ),
        ep / "proprio.parquet",
    )


def _proprio_ts(ep: Path) -> np.ndarray:
    return _proprio(ep).column("timestamp").to_numpy().copy()


def _proprio_values(ep: Path) -> np.ndarray:
    return np.stack(_proprio(ep).column("proprio").to_numpy(zero_copy_only=False)).astype(np.float32)


def _json(ep: Path, **changes) -> None:
    meta = json.loads((ep / "episode.json").read_text())
    meta.update(changes)
    meta = {k: v for k, v in meta.items() if v is not None}
    (ep / "episode.json").write_text(json.dumps(meta))


def empty_video(ep):
    (ep / "front.mp4").write_bytes(b"")


def truncated_in_header(ep):
    data = (ep / "front.mp4").read_bytes()
    (ep / "front.mp4").write_bytes(data[:40])


def truncated_mid_stream(ep):
    data = (ep / "front.mp4").read_bytes()
    (ep / "front.mp4").write_bytes(data[: len(data) // 2])


def truncated_webm_at_packet(ep):
    data = (ep / "wrist.webm").read_bytes()
    (ep / "wrist.webm").write_bytes(data[: int(len(data) * 0.6)])


def garbage_video(ep):
    p = ep / "front.mp4"
    p.write_bytes(np.random.default_rng(1).integers(0, 256, p.stat().st_size, dtype=np.uint8).tobytes())


def frames_do_not_decode(ep):
    p = ep / "front.mp4"
    data = bytearray(p.read_bytes())
    i = data.find(b"mdat")
    size = int.from_bytes(data[i - 4 : i], "big")
    data[i + 104 : i - 4 + size] = bytes(size - 108)
    p.write_bytes(bytes(data))


def no_video_stream(ep):
    (ep / "front.mp4").unlink()
    with av.open(str(ep / "front.mkv"), "w") as out:
        s = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        frame.pts, frame.time_base = 0, Fraction(1, 8000)
        for packet in s.encode(frame):
            out.mux(packet)
        out.mux(s.encode(None))


def zero_frames(ep):
    (ep / "front.mp4").unlink()
    with av.open(str(ep / "front.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()  # a header and a video stream, and not one frame


def timestamps_backwards(ep):
    ts = _proprio_ts(ep)
    ts[50], ts[51] = ts[51], ts[50]
    _set_proprio(ep, ts=ts)


def timestamps_repeat(ep):
    ts = _proprio_ts(ep)
    ts[80] = ts[79]
    _set_proprio(ep, ts=ts)


def timestamps_jump_hours(ep):
    ts = _proprio_ts(ep)
    ts[150:] += 3 * 3600
    _set_proprio(ep, ts=ts)


def timestamps_nan(ep):
    ts = _proprio_ts(ep)
    ts[10] = np.nan
    _set_proprio(ep, ts=ts)


def timestamps_wrong_unit(ep):
    _set_proprio(ep, ts=_proprio_ts(ep) * 1000.0)  # milliseconds written as seconds


def proprio_nan(ep):
    v = _proprio_values(ep)
    v[20, 3] = np.nan
    _set_proprio(ep, values=v)


def proprio_inf(ep):
    v = _proprio_values(ep)
    v[30, 1] = np.inf
    _set_proprio(ep, values=v)


def proprio_wrong_width(ep):
    _set_proprio(ep, values=_proprio_values(ep)[:, :5])


def ragged_list_rows(ep):
    t = _proprio(ep)
    rows = [list(map(float, r)) for r in t.column("proprio").to_pylist()]
    rows[7] = rows[7][:4]
    pq.write_table(pa.table({"timestamp": t.column("timestamp"), "proprio": rows}), ep / "proprio.parquet")


def ragged_csv(ep):
    (ep / "action.parquet").unlink()
    lines = ["timestamp,a,b,c"] + [f"{i * 0.05},1,2,3" for i in range(60)]
    lines[10] = "0.45,1,2"
    (ep / "action.csv").write_text("\n".join(lines) + "\n")


def parquet_cut_in_half(ep):
    data = (ep / "proprio.parquet").read_bytes()
    (ep / "proprio.parquet").write_bytes(data[: len(data) // 2])


def no_overlap(ep):
    _json(ep, offsets={"wrist": 0.25, "front": 100.0})


def missing_instruction(ep):
    _json(ep, instruction=None)


def huge_instruction(ep):
    _json(ep, instruction="pick " * 2_000_000)  # 10 MB


def non_utf8(ep):
    (ep / "episode.json").write_bytes(b'{"instruction": "pick \xff\xfe up"}')


def missing_proprio(ep):
    (ep / "proprio.parquet").unlink()


def missing_episode_json(ep):
    (ep / "episode.json").unlink()


def link_outside(ep):
    outside = ep.parent.parent / "outside_secret.parquet"
    outside.write_bytes((ep / "proprio.parquet").read_bytes())
    (ep / "proprio.parquet").unlink()
    (ep / "proprio.parquet").symlink_to(outside)


def wrong_length_timestamps_file(ep):
    np.save(ep / "front.timestamps.npy", np.arange(10, dtype=np.float64), allow_pickle=False)


def pickled_timestamps_file(ep):
    np.save(ep / "front.timestamps.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)


def offsets_for_missing_stream(ep):
    _json(ep, offsets={"side": 0.5})


def bad_offset_value(ep):
    _json(ep, offsets={"wrist": "soon"})


CORPUS = {
    "empty_video": (empty_video, ["front.mp4", "cannot open"]),
    "truncated_in_header": (truncated_in_header, ["front.mp4", "cannot open"]),
    "truncated_mid_stream": (truncated_mid_stream, ["front.mp4"]),
    "truncated_webm_at_packet": (truncated_webm_at_packet, ["wrist.webm", "truncated"]),
    "garbage_video": (garbage_video, ["front.mp4", "cannot open"]),
    "frames_do_not_decode": (frames_do_not_decode, ["front.mp4", "decode failed"]),
    "no_video_stream": (no_video_stream, ["front.mkv", "no video stream"]),
    "zero_frames": (zero_frames, ["front.mp4"]),
    "timestamps_backwards": (timestamps_backwards, ["proprio.parquet", "not strictly increasing"]),
    "timestamps_repeat": (timestamps_repeat, ["proprio.parquet", "not strictly increasing"]),
    "timestamps_jump_hours": (timestamps_jump_hours, ["proprio.parquet", "jump by 10800 s"]),
    "timestamps_nan": (timestamps_nan, ["proprio.parquet", "NaN"]),
    "timestamps_wrong_unit": (timestamps_wrong_unit, ["wrong unit"]),
    "proprio_nan": (proprio_nan, ["proprio.parquet", "NaN/Inf"]),
    "proprio_inf": (proprio_inf, ["proprio.parquet", "NaN/Inf"]),
    "proprio_wrong_width": (proprio_wrong_width, ["state 5-D", "differ"]),
    "ragged_list_rows": (ragged_list_rows, ["proprio.parquet", "ragged"]),
    "ragged_csv": (ragged_csv, ["action.csv", "cannot be read"]),
    "parquet_cut_in_half": (parquet_cut_in_half, ["proprio.parquet", "cannot be read"]),
    "no_overlap": (no_overlap, ["do not overlap"]),
    "missing_instruction": (missing_instruction, ["episode.json", "exactly one"]),
    "huge_instruction": (huge_instruction, ["episode.json", "bytes, more than"]),
    "non_utf8": (non_utf8, ["episode.json", "UTF-8"]),
    "missing_proprio": (missing_proprio, ["proprio", "missing"]),
    "missing_episode_json": (missing_episode_json, ["episode.json", "missing"]),
    "link_outside": (link_outside, ["proprio.parquet", "outside the source"]),
    "wrong_length_timestamps_file": (wrong_length_timestamps_file, ["front.timestamps.npy", "10 timestamps"]),
    "pickled_timestamps_file": (pickled_timestamps_file, ["front.timestamps.npy", "pickle"]),
    "offsets_for_missing_stream": (offsets_for_missing_stream, ["episode.json", "do not exist"]),
    "bad_offset_value": (bad_offset_value, ["episode.json", "finite number"]),
}

HOSTILE_NAMES = {"dot.name": "[A-Za-z0-9_-]+", "with space": "[A-Za-z0-9_-]+", "...": "[A-Za-z0-9_-]+"}
