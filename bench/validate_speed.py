"""How fast `trajshard validate` checks a ~1 GB dataset, full and with --sample-rate.

    python bench/validate_speed.py [--gb 1.0] [--keep DIR]

Builds a synthetic raw dataset, ingests it at 512x512 (large JPEGs, so a modest number of episodes
reaches the size), then times `validate_output` at sample rates 1.0, 0.05 and 0.01. The reference
measured in the same run is reading the same shard files once (sha256 only): checksums every shard
is the floor any validation pays, so the ratio column says what the deep checks cost on top.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import ray

from trajshard.config import JobConfig
from trajshard.io import file_digest
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output
from trajshard.sources.synthetic import write_synthetic_dataset


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--keep", default=None)
    args = ap.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="trajshard-validate-"))
    raw, out = work / "raw", work / "out"
    seconds = max(4.0, 160.0 * args.gb)  # ~80 KB per 10 Hz sample at 512 px, 2 cameras: 8 eps x 160 s ~ 1 GB
    if not (out / "meta" / "info.json").exists():
        write_synthetic_dataset(raw, n_episodes=8, seconds=seconds, seed=0)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        t = time.perf_counter()
        run_ingest(
            str(raw),
            str(out),
            JobConfig.from_flags(image_size=512, workers=2, task_steps=400),
            progress=False,
        )
        print(f"ingest: {time.perf_counter() - t:.1f} s")
        ray.shutdown()
    shards = sorted((out / "shards").glob("*.tar"))
    size = sum(p.stat().st_size for p in shards)
    t = time.perf_counter()
    for p in shards:
        file_digest(p)
    ref = time.perf_counter() - t
    print(f"\n# validate on {size / 1e9:.2f} GB, {len(shards)} shards\n")
    print("| check | seconds | samples deep-checked | seconds / sha256-only reference | ok |")
    print("|---|---:|---:|---:|---|")
    print(f"| sha256 of every shard (reference) | {ref:.1f} | 0 | 1.00 | |")
    for rate in (1.0, 0.05, 0.01):
        t = time.perf_counter()
        report = validate_output(out, sample_rate=rate)
        dt = time.perf_counter() - t
        print(
            f"| validate --sample-rate {rate} | {dt:.1f} | {report.deep_checked} of {report.samples} | "
            f"{dt / ref:.2f} | {report.ok} |"
        )
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
