"""bench/loader.py's decode limit and its breakdown of where a loader sample's time goes (imported by it).

- **decode limit**: the split's JPEG members, read into memory first, decoded by simplejpeg
  (libjpeg-turbo) in this process, one thread, and nothing else: what a loader that only decoded
  would reach on one core.
- **breakdown**: the loader's own stages, each timed alone in this process on one epoch of the split
  (role 0 of 1, the loader's shuffled order): tar read (``emit``: headers and member bytes), members
  to arrays (``decode_sample`` without images: .npy, meta.json), JPEG decode (the loader's
  ``decode_image``), batching (``collate``: images to ``[B, C, H, W]``, arrays stacked), the
  shared memory a DataLoader worker puts each batch's images in (the same copy into shared against
  private memory), and the persistent workers' restart at each epoch (an epoch of an empty
  2-worker DataLoader whose workers already run, spread over the split's samples). All as
  microseconds of one core per sample; the workers' start, once per loader, is timed apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from torch.utils.data import DataLoader, IterableDataset

from trajshard.loader import collate
from trajshard.loading.order import role_plan
from trajshard.loading.source import decode_image, decode_sample, emit, open_split


@dataclass
class Stage:
    name: str
    how: str
    micros: float  # microseconds of one core per sample, best of the passes


def _best(fn: Callable[[], int], repeat: int) -> float:
    """Best seconds per item of ``fn`` (which returns how many items it did) over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        n = fn()
        best = min(best, (time.perf_counter() - start) / max(1, n))
    return best


def raw_samples(out: Path) -> list[tuple[str, dict[str, bytes]]]:
    src = open_split(out)
    plan = role_plan(src.counts, seed=0, epoch=0, role=0, roles=1, shuffle_buffer=1000, shuffle_shards=True)
    return list(emit(src, plan))


def jpeg_members(raw: list[tuple[str, dict[str, bytes]]]) -> list[bytes]:
    return [data for _, members in raw for name, data in sorted(members.items()) if name.endswith(".jpg")]


def decode_limit(jpegs: list[bytes], samples: int, repeat: int) -> float:
    """Samples/s of simplejpeg decoding the JPEG members of ``samples`` samples, nothing else."""

    def run() -> int:
        for data in jpegs:
            simplejpeg.decode_jpeg(data, colorspace="RGB")
        return samples

    return 1.0 / _best(run, repeat)


def breakdown(out: Path, batch_size: int, repeat: int) -> list[Stage]:
    src = open_split(out)
    plan = role_plan(src.counts, seed=0, epoch=0, role=0, roles=1, shuffle_buffer=1000, shuffle_shards=True)
    raw = list(emit(src, plan))
    n = len(raw)
    decoded = [decode_sample(k, m) for k, m in raw]
    batches = [decoded[i : i + batch_size] for i in range(0, n, batch_size)]
    images = [[s["images"][c] for s in b] for b in batches for c in b[0]["images"]]

    def read() -> int:
        return sum(1 for _ in emit(src, plan))

    def arrays() -> int:
        for k, m in raw:
            decode_sample(k, m, decode_images=False)
        return n

    def jpeg() -> int:
        for _, m in raw:
            for name, data in m.items():
                if name.endswith(".jpg"):
                    decode_image(data)
        return n

    def batch() -> int:
        for b in batches:
            collate(b)
        return n

    stages = [
        Stage("tar read", "`emit`: ustar headers, member bytes, shuffle buffer", _best(read, repeat)),
        Stage("members to arrays", "`decode_sample` without images: .npy, meta.json", _best(arrays, repeat)),
        Stage("JPEG decode", "the loader's `decode_image` (simplejpeg)", _best(jpeg, repeat)),
        Stage("batching", "`collate`: images to [B, C, H, W], arrays stacked", _best(batch, repeat)),
        Stage(
            "shared memory (workers only)",
            "a batch's images copied into new shared memory, less the same copy into private memory",
            _shared_memory_extra(images, n, repeat),
        ),
        Stage(
            "worker restart per epoch (workers only)",
            "an epoch of a persistent 2-worker DataLoader with nothing to read, its workers already "
            "started, 2 cores x its wall time, over the split's samples",
            2 * _worker_restart(repeat) / n,
        ),
    ]
    for s in stages:
        s.micros *= 1e6
    return stages


def _shared_memory_extra(images: list[list[np.ndarray]], samples: int, repeat: int) -> float:
    def fill(shared: bool) -> Callable[[], int]:
        def run() -> int:
            for group in images:
                h, w, c = group[0].shape
                nbytes = len(group) * c * h * w
                if shared:
                    out = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(nbytes))
                else:
                    out = torch.empty(nbytes, dtype=torch.uint8)
                np.stack([a.transpose(2, 0, 1) for a in group], out=out.view(len(group), c, h, w).numpy())
            return samples

        return run

    return max(0.0, _best(fill(True), repeat) - _best(fill(False), repeat))


class _Nothing(IterableDataset):
    def __iter__(self):
        return iter(())


def worker_start_stop(repeat: int) -> float:
    """Wall seconds of one epoch of a 2-worker DataLoader that reads nothing and whose workers do not
    persist: the workers' fork, set-up and exit, which the loader pays once (its workers persist)."""

    def run() -> int:
        for _ in DataLoader(_Nothing(), batch_size=None, num_workers=2):
            pass
        return 1

    return _best(run, max(3, repeat))


def _worker_restart(repeat: int) -> float:
    """Wall seconds of a later epoch of a persistent 2-worker DataLoader that reads nothing: the
    resume signal to each worker and its acknowledgement, which the loader pays at every epoch."""
    best = float("inf")
    for _ in range(max(3, repeat)):
        loader = DataLoader(_Nothing(), batch_size=None, num_workers=2, persistent_workers=True)
        for _ in loader:  # the first epoch starts the workers
            pass
        start = time.perf_counter()
        for _ in loader:
            pass
        best = min(best, time.perf_counter() - start)
        del loader  # its iterator stops the workers
    return best


def breakdown_lines(
    stages: list[Stage], limit: float, loader_rates: dict[int, float], start_stop: float
) -> list[str]:
    """The breakdown table, against the 2-worker loader's time: 2 cores for 1/rate seconds a sample."""
    w2 = loader_rates.get(2)
    lines = [
        "| where a sample's time goes | what is timed | µs per sample (one core) | share of the 2-worker loader's 2 cores |",
        "| --- | --- | ---: | ---: |",
    ]
    budget = 2e6 / w2 if w2 else None
    for s in stages:
        share = f"{s.micros / budget:.0%}" if budget else "-"
        lines.append(f"| {s.name} | {s.how} | {s.micros:,.0f} | {share} |")
    in_process = sum(s.micros for s in stages if "workers only" not in s.name)
    if budget:
        rest = budget - sum(s.micros for s in stages)
        lines.append(
            f"| the rest | the main process taking batches, the workers' first reads before the first "
            f"batch, other load on the cores | {rest:,.0f} | {rest / budget:.0%} |"
        )
        lines.append(f"| **2-worker loader** | 2 cores x its seconds per sample | {budget:,.0f} | 100% |")
        if rest < 0:
            lines.append(
                "\n(The rest is negative: each stage is its best time, taken at other moments than the "
                "loader's; the other jobs' load moved between them.)"
            )
    lines += [
        "",
        f"- decode limit: {limit:,.0f} samples/s = {1e6 / limit:,.0f} µs per sample on one core; "
        f"the stages in one process add up to {in_process:,.0f} µs "
        f"({1e6 / in_process:,.0f} samples/s, the 0-worker loader measured {loader_rates.get(0, 0):,.0f})",
    ]
    if w2:
        lines.append(f"- 2-worker loader: {w2:,.0f} samples/s = {w2 / limit:.2f}x the decode limit")
    lines.append(
        f"- the workers' start and stop, paid once per loader (an epoch of an empty 2-worker DataLoader "
        f"without persistent workers): {start_stop * 1e3:,.0f} ms of wall time"
    )
    return lines
