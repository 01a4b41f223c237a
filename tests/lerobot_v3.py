"""Write a small LeRobot v3.0 dataset (several episodes per data and video file) for tests.

Frames are drawn with the ground-truth marker of tests/groundtruth.py so a test can check that each
episode's frames are cut from the shared video at the right from/to timestamps.
"""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tests import groundtruth as gt

FPS = 15


def write_v3(root: Path, lengths=(30, 45, 24)) -> None:
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    vdir = root / "videos" / "observation.images.top" / "chunk-000"
    vdir.mkdir(parents=True)
    rows, eps, start = [], [], 0
    with av.open(str(vdir / "file-000.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=FPS)
        s.width = s.height = gt.SIZE
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = Fraction(1, FPS)
        s.options = {"crf": "10", "bf": "0"}
        for e, n in enumerate(lengths):
            for i in range(n):
                t = i / FPS  # episode time
                frame = av.VideoFrame.from_ndarray(gt.draw(float(gt.position(t + e))), format="rgb24")
                frame.pts = start + i
                frame.time_base = Fraction(1, FPS)
                out.mux(s.encode(frame))
                x = float(gt.position(t + e))
                rows.append(
                    {
                        "observation.state": [x, float(e)],
                        "action": [x, 0.0],
                        "timestamp": np.float32(t),
                        "frame_index": i,
                        "episode_index": e,
                        "index": start + i,
                        "task_index": e % 2,
                    }
                )
            eps.append(
                {
                    "episode_index": e,
                    "tasks": [f"task {e % 2}"],
                    "length": n,
                    "data/chunk_index": 0,
                    "data/file_index": 0,
                    "dataset_from_index": start,
                    "dataset_to_index": start + n,
                    "videos/observation.images.top/chunk_index": 0,
                    "videos/observation.images.top/file_index": 0,
                    "videos/observation.images.top/from_timestamp": start / FPS,
                    "videos/observation.images.top/to_timestamp": (start + n) / FPS,
                }
            )
            start += n
        out.mux(s.encode(None))
    table = pa.table(
        {
            "observation.state": pa.array([r["observation.state"] for r in rows], pa.list_(pa.float32(), 2)),
            "action": pa.array([r["action"] for r in rows], pa.list_(pa.float32(), 2)),
            "timestamp": pa.array([r["timestamp"] for r in rows], pa.float32()),
            **{
                k: pa.array([r[k] for r in rows], pa.int64())
                for k in ("frame_index", "episode_index", "index", "task_index")
            },
        }
    )
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(eps), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(
        pa.table({"task_index": [0, 1], "task": ["pick the marker", "place the marker"]}),
        root / "meta" / "tasks.parquet",
    )
    info = {
        "codebase_version": "v3.0",
        "robot_type": "marker_rig",
        "fps": FPS,
        "total_episodes": len(lengths),
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": {
            "observation.images.top": {"dtype": "video", "shape": [gt.SIZE, gt.SIZE, 3]},
            "observation.state": {"dtype": "float32", "shape": [2], "names": ["x", "episode"]},
            "action": {"dtype": "float32", "shape": [2]},
            "timestamp": {"dtype": "float32", "shape": [1]},
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
