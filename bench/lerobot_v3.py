"""Loading one episode of a LeRobot v3 dataset, whose data and video files each hold many episodes:
the cost must not grow with the episodes per file.

    python bench/lerobot_v3.py [--episodes 50,400] [--frames 45]

For each size, a v3 dataset with that many episodes in one data file and one video file (224 px
H.264, tests/lerobot_v3.py), then per episode, CPU ms, in one process:
(a) PyAV decode-only of the episode's own frames (open, seek, decode them: the cost an ingest cannot
avoid), (b) ``LeRobotSource.load`` for every episode in order (a pass-1 or pass-2 task loads
consecutive episodes), and (c) what a load cost before: the whole data file read and filtered, and
the whole video probed, for each episode. (b)/(a) must stay flat as the file grows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tests.lerobot_v3 import write_v3  # noqa: E402
from trajshard.sources.lerobot import LeRobotSource  # noqa: E402
from trajshard.sources.video import probe_video  # noqa: E402

SAMPLE = 20  # episodes timed for (a) and (c), spread over the file


def cpu_ms(fn, items) -> float:
    started = time.process_time()
    for item in items:
        fn(item)
    return (time.process_time() - started) / len(items) * 1e3


def row(n: int, frames: int, work: Path) -> str:
    root = work / f"v3-{n}"
    write_v3(root, lengths=(frames,) * n)
    source = LeRobotSource(root)
    ids = source.plan()[0]
    sample = ids[:: max(1, n // SAMPLE)][:SAMPLE]
    key = source.cameras[0]
    video = root / source.info["video_path"].format(video_key=key, chunk_index=0, file_index=0)
    data = root / source.info["data_path"].format(chunk_index=0, file_index=0)

    def decode(eid: str) -> None:
        meta = source.episodes[eid]
        start, end = meta[f"videos/{key}/from_timestamp"], meta[f"videos/{key}/to_timestamp"]
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            container.seek(int(start / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time >= end - 1e-6:
                    break

    def before(eid: str) -> None:
        table = pq.read_table(data)
        table.filter(pc.equal(table.column("episode_index"), int(source.episodes[eid]["episode_index"])))
        probe_video(str(video))

    a = cpu_ms(decode, sample)
    b = cpu_ms(source.load, ids)
    c = cpu_ms(before, sample)
    return f"| {n} | {frames} | {a:.2f} | {b:.2f} | {c:.2f} | **{b / a:.2f}** | {c / a:.2f} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", default="50,400", help="episodes per file, comma-separated")
    p.add_argument("--frames", type=int, default=45, help="frames per episode (15 fps)")
    args = p.parse_args(argv)
    print(
        "| episodes per file | frames per episode | (a) decode its frames, ms | (b) load, ms "
        "| (c) load before, ms | (b)/(a) | (c)/(a) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="trajshard-v3-") as tmp:
        for n in (int(x) for x in args.episodes.split(",")):
            print(row(n, args.frames, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
