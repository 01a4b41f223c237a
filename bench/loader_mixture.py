"""bench/loader.py's mixture row (imported by it): the four robots of ../shared/data as one mixture.

Bridge (RLDS, 5 Hz, four cameras), GR00T (LeRobot v2.0, 10 Hz), robosuite Lift (HDF5, no camera)
are ingested at 224 px beside the G1 output the rest of the bench reads, so no image is resized in
the loader (ingesting at the training size is what docs/loader.md advises). The mixture file has
weights 0.3/0.3/0.2/0.2 and a ``[target]`` of two camera roles (``primary``, ``secondary``) with
padded actions, as in docs/loader.md. Timed with the same batch size and workers: the single-dataset
loader over each of the four outputs, and the mixture. The mixture's reference is what the same draws
would cost read from each dataset alone: ``1 / sum(w_d / rate_d)`` of the single-dataset rates.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trajshard.config import JobConfig
from trajshard.loader import make_loader, open_dataset
from trajshard.pipelines.ingest import run_ingest

SHARED = Path(
    os.environ.get("TRAJSHARD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
WEIGHTS = {"bridge": 0.3, "gr00t": 0.3, "g1": 0.2, "lift": 0.2}
INGEST = {
    "bridge": (
        "bridge_rlds",
        dict(fps=5, camera_roles={"image_0": "primary", "image_1": "secondary"}),
    ),
    "gr00t": ("gr00t_pnp_lerobot_v20", dict(fps=10, camera_roles={"ego_view": "primary"})),
    "lift": ("robosuite_hdf5/lift.hdf5", dict(fps=20, no_images=True)),  # state and action only
}


@dataclass
class MixRow:
    reader: str
    workers: int
    samples: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.samples / self.seconds


def available() -> bool:
    return all((SHARED / src).exists() for src, _ in INGEST.values())


def prepare(work: Path, g1_out: Path, log: Callable[[str], None]) -> dict[str, Path]:
    """The four outputs (G1's is the bench's) and the mixture file, ``{"mix": file, name: OUT}``."""
    outs = {"g1": g1_out}
    for name, (src, flags) in INGEST.items():
        outs[name] = work / name
        log(f"ingesting {SHARED / src} -> {outs[name]}")
        run_ingest(
            str(SHARED / src), str(outs[name]), JobConfig.from_flags(workers=2, **flags), progress=False
        )
    lines = ["seed = 0", f"samples_per_epoch = {sum(open_dataset(p).num_samples() for p in outs.values())}"]
    for name, w in WEIGHTS.items():
        lines += ["[[datasets]]", f'path = "{outs[name]}"', f'name = "{name}"', f"weight = {w}"]
        if name == "g1":
            lines.append('camera_roles = {cam_high = "primary"}')
    lines += ["[target]", 'cameras = ["primary", "secondary"]', 'actions = "pad"']
    outs["mix"] = work / "robots.toml"
    outs["mix"].write_text("\n".join(lines) + "\n")
    return outs


def time_reader(path: Path, workers: int, epochs: int, batch_size: int, reader: str) -> MixRow:
    """The fastest of ``epochs`` epochs, each timed whole (the workers start in the first, and
    persist through the others)."""
    loader = make_loader(open_dataset(path, batch_size=batch_size, shuffle_buffer=1000, seed=0), workers)
    best = None
    for _ in range(epochs):
        n, start = 0, time.perf_counter()
        for batch in loader:
            n += len(batch["key"])
        row = MixRow(reader, workers, n, time.perf_counter() - start)
        best = row if best is None or row.rate > best.rate else best
    return best


def mixture_rows(outs: dict[str, Path], workers: int, epochs: int, batch_size: int) -> list[MixRow]:
    rows = [time_reader(outs[n], workers, epochs, batch_size, f"single dataset: {n}") for n in WEIGHTS]
    rows.append(time_reader(outs["mix"], workers, epochs, batch_size, "mixture of the four"))
    return rows


def mixture_lines(rows: list[MixRow]) -> list[str]:
    lines = [
        "| reader | DataLoader workers | samples | seconds | samples/s | vs the four read alone, weighted |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    summary = []
    for w in sorted({r.workers for r in rows}):
        mine = [r for r in rows if r.workers == w]
        single = {
            r.reader.removeprefix("single dataset: "): r.rate for r in mine if r.reader.startswith("single")
        }
        alone = 1.0 / sum(WEIGHTS[n] / single[n] for n in WEIGHTS)
        for r in mine:
            ratio = f"{r.rate / alone:.2f}x" if r.reader.startswith("mixture") else ""
            lines.append(
                f"| {r.reader} | {r.workers} | {r.samples} | {r.seconds:.2f} | {r.rate:,.0f} | {ratio} |"
            )
        mixed = next(r.rate for r in mine if r.reader.startswith("mixture"))
        summary.append(
            f"- {w} workers: the four read alone, weighted 0.3/0.3/0.2/0.2, would give {alone:,.0f} samples/s; "
            f"the mixture gives {mixed:,.0f} = {mixed / alone:.2f}x"
        )
    return lines + [""] + summary
