"""More broken and hostile raw-layout episodes (issue hostile2), beside tests/hostile.py's ``CORPUS``.

``RAW_MORE`` maps a name to (mutation, words the quarantine record ``file: reason`` must contain).
Each mutation takes the episode directory (a copy of a good one) and breaks one thing. Mutations
that need a place outside the source use ``ep.parent.parent / "outside"`` (the case's scratch).
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _meta(ep: Path) -> dict:
    return json.loads((ep / "episode.json").read_text())


def _write_json_text(ep: Path, text: str) -> None:
    (ep / "episode.json").write_text(text, encoding="utf-8")


def _with(ep: Path, key: str, raw_value: str) -> None:
    """episode.json with ``key`` set to the JSON text ``raw_value`` (verbatim: it may be hostile)."""
    meta = _meta(ep)
    meta.pop(key, None)
    body = json.dumps(meta)[:-1]
    _write_json_text(ep, f'{body}, "{key}": {raw_value}}}')


def _set_timestamps(ep: Path, ts: pa.Array) -> None:
    t = pq.read_table(ep / "proprio.parquet")
    pq.write_table(
        t.set_column(t.schema.get_field_index("timestamp"), "timestamp", ts), ep / "proprio.parquet"
    )


def deep_json(ep):
    _write_json_text(ep, '{"instruction": "pick", "success": ' + "[" * 200_000 + "]" * 200_000 + "}")


def lone_surrogate_instruction(ep):
    _with(ep, "instruction", '"pick \\ud800 up"')


def lone_surrogate_embodiment(ep):
    _with(ep, "embodiment", '"arm\\udfff"')


def huge_int_offset(ep):
    _with(ep, "offsets", '{"wrist": ' + "9" * 400 + "}")


def huge_int_segment_end(ep):
    _with(ep, "instructions", '[{"start": 0, "end": ' + "7" * 400 + ', "text": "pick"}]')
    meta = _meta(ep)
    meta.pop("instruction")
    _write_json_text(ep, json.dumps(meta))


def huge_embodiment(ep):
    _with(ep, "embodiment", json.dumps("franka " * 130_000))  # 910 KB, under episode.json's 1 MB


def json_top_level_list(ep):
    _write_json_text(ep, '["pick up the cup"]')


def instruction_not_text(ep):
    _with(ep, "instruction", "42")


def unknown_key(ep):
    _with(ep, "robot_secret", '"x"')


def segment_end_before_start(ep):
    meta = _meta(ep)
    meta.pop("instruction")
    meta["instructions"] = [{"start": 2.0, "end": 1.0, "text": "pick"}]
    _write_json_text(ep, json.dumps(meta))


def success_not_bool(ep):
    _with(ep, "success", '"yes"')


def empty_episode_json(ep):
    (ep / "episode.json").write_bytes(b"")


def episode_json_nan_offset(ep):
    _with(ep, "offsets", '{"wrist": NaN}')


def episode_json_is_directory(ep):
    (ep / "episode.json").unlink()
    (ep / "episode.json").mkdir()


def episode_json_self_link(ep):
    (ep / "episode.json").unlink()
    (ep / "episode.json").symlink_to("episode.json")


def proprio_self_link(ep):
    (ep / "proprio.parquet").unlink()
    (ep / "proprio.parquet").symlink_to("proprio.parquet")


def episode_json_mode_000(ep):
    (ep / "episode.json").chmod(0)


def proprio_mode_000(ep):
    (ep / "proprio.parquet").chmod(0)


def camera_fifo(ep):
    (ep / "front.mp4").unlink()
    os.mkfifo(ep / "front.mp4")


def camera_link_to_fifo(ep):
    os.mkfifo(ep / "pipe")  # inside the source: only its kind is wrong
    (ep / "front.mp4").unlink()
    (ep / "front.mp4").symlink_to(ep / "pipe")


def proprio_fifo(ep):
    (ep / "proprio.parquet").unlink()
    os.mkfifo(ep / "proprio.parquet")


def camera_char_device(ep):
    (ep / "front.mp4").unlink()
    os.mknod(ep / "front.mp4", 0o644 | 0o020000, os.makedev(1, 5))  # /dev/zero's numbers, in the source


def episode_json_link_outside(ep):
    outside = ep.parent.parent / "outside" / "episode.json"
    outside.write_bytes((ep / "episode.json").read_bytes())
    (ep / "episode.json").unlink()
    (ep / "episode.json").symlink_to(outside)


def camera_link_outside(ep):
    outside = ep.parent.parent / "outside" / "front.mp4"
    outside.write_bytes((ep / "front.mp4").read_bytes())
    (ep / "front.mp4").unlink()
    (ep / "front.mp4").symlink_to(outside)


def uint64_timestamps(ep):
    n = pq.read_table(ep / "proprio.parquet").num_rows
    _set_timestamps(ep, pa.array(np.full(n, 2**64 - 1, np.uint64) - np.arange(n, dtype=np.uint64)[::-1]))


def year_9999_timestamps(ep):
    n = pq.read_table(ep / "proprio.parquet").num_rows
    _set_timestamps(ep, pa.array(253_402_300_799.0 + np.arange(n) * 0.01))  # 9999-12-31 as float seconds


def timestamps_file_nan(ep):
    with av.open(str(ep / "front.mp4")) as c:
        n = sum(1 for _ in c.demux(video=0)) - 1  # packets less the flush packet
    times = np.arange(n, dtype=np.float64) / 30.0
    times[3] = np.nan
    np.save(ep / "front.timestamps.npy", times, allow_pickle=False)


def orphan_timestamps_file(ep):
    np.save(ep / "side.timestamps.npy", np.arange(5, dtype=np.float64), allow_pickle=False)


def second_proprio_table(ep):
    (ep / "proprio.csv").write_text("timestamp,a\n0,1\n1,2\n")


def jsonl_garbage(ep):
    (ep / "action.parquet").unlink()
    (ep / "action.jsonl").write_text('{"timestamp": 0.0, "action": [1, 2]}\n{not json\n')


def single_proprio_row(ep):
    t = pq.read_table(ep / "proprio.parquet")
    pq.write_table(t.slice(0, 1), ep / "proprio.parquet")


def rotated_video(ep):
    """A good episode whose camera declares a 90 degree display rotation: written, with a note."""
    path = ep / "front.mp4"
    with av.open(str(path)) as src:
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        s = out.add_stream("libx264", rate=30)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        s.set_display_rotation(90)
        for i, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(a, format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 30)
            out.mux(s.encode(f))
        out.mux(s.encode(None))


def escape_sequences_instruction(ep):
    """A good episode whose instruction holds terminal escape sequences: written verbatim (it is data),
    shown escaped by ``inspect``."""
    _with(ep, "instruction", json.dumps("pick \x1b[2J\x1b]0;pwned\x07 up the cup"))


RAW_MORE = {
    "deep_json": (deep_json, ["episode.json", "nest"]),
    "lone_surrogate_instruction": (lone_surrogate_instruction, ["episode.json", "surrogate"]),
    "lone_surrogate_embodiment": (lone_surrogate_embodiment, ["episode.json", "surrogate"]),
    "huge_int_offset": (huge_int_offset, ["episode.json", "finite number"]),
    "huge_int_segment_end": (huge_int_segment_end, ["episode.json", "finite numbers"]),
    "huge_embodiment": (huge_embodiment, ["episode.json", "embodiment"]),
    "json_top_level_list": (json_top_level_list, ["episode.json", "JSON object"]),
    "instruction_not_text": (instruction_not_text, ["episode.json", "non-empty text"]),
    "unknown_key": (unknown_key, ["episode.json", "unknown keys"]),
    "segment_end_before_start": (segment_end_before_start, ["episode.json", "not after start"]),
    "success_not_bool": (success_not_bool, ["episode.json", "true or false"]),
    "empty_episode_json": (empty_episode_json, ["episode.json", "not UTF-8 JSON"]),
    "episode_json_nan_offset": (episode_json_nan_offset, ["episode.json", "finite number"]),
    "episode_json_is_directory": (episode_json_is_directory, ["episode.json", "missing"]),
    "episode_json_self_link": (episode_json_self_link, ["episode.json", "cannot be"]),
    "proprio_self_link": (proprio_self_link, ["proprio.parquet", "cannot be"]),
    "episode_json_mode_000": (episode_json_mode_000, ["episode.json", "Permission denied"]),
    "proprio_mode_000": (proprio_mode_000, ["proprio.parquet", "Permission denied"]),
    "camera_fifo": (camera_fifo, ["front.mp4", "not a regular file"]),
    "camera_link_to_fifo": (camera_link_to_fifo, ["front.mp4", "not a regular file"]),
    "proprio_fifo": (proprio_fifo, ["proprio.parquet", "not a regular file"]),
    "camera_char_device": (camera_char_device, ["front.mp4", "not a regular file"]),
    "episode_json_link_outside": (episode_json_link_outside, ["episode.json", "outside the source"]),
    "camera_link_outside": (camera_link_outside, ["front.mp4", "outside the source"]),
    "uint64_timestamps": (uint64_timestamps, ["proprio.parquet", "not in range"]),
    "year_9999_timestamps": (year_9999_timestamps, ["do not overlap"]),
    "timestamps_file_nan": (timestamps_file_nan, ["front", "NaN"]),
    "orphan_timestamps_file": (orphan_timestamps_file, ["side.timestamps.npy", "no video"]),
    "second_proprio_table": (second_proprio_table, ["proprio", "second proprio table"]),
    "jsonl_garbage": (jsonl_garbage, ["action.jsonl", "cannot be read"]),
    "single_proprio_row": (single_proprio_row, ["proprio.parquet", "need at least 2"]),
}

# good episodes with hostile content: written (once), and the words a note or inspect must show
RAW_ACCEPTED = {
    "rotated_video": (rotated_video, ["front.mp4", "rotat"]),
    "escape_sequences_instruction": (escape_sequences_instruction, ["\\x1b[2J"]),
}
