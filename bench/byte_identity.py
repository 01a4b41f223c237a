"""Byte identity of ingests against recorded sha256 hashes: a refactor must not change one output byte.

    python bench/byte_identity.py            # compare against bench/byte_identity.json
    python bench/byte_identity.py --record   # record the hashes (before a change)
    python bench/byte_identity.py --only demo,lift
    python bench/byte_identity.py --shards   # compare the shards only (metadata files may differ)

Ingests the demo's synthetic source and the real datasets in ../shared/data (G1, GR00T, Bridge,
lift) twice each: with default settings, and with ``--shuffle-window 8 --val-fraction 0.2 --tokenizer
fast --horizon 10``. Hashes every file of each OUT (shards and meta/, dataset card included) and
prints one table row per ingest: files, files that differ, files missing or new. Exit 1 on a
difference. A dataset absent from ../shared/data is skipped with a note.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORD = HERE / "byte_identity.json"
SHARED_DATA = Path(os.environ.get("TRAJSHARD_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
SOURCES = {
    "demo": None,  # written by write_synthetic_dataset
    "g1": SHARED_DATA / "g1_lerobot_v21",
    "gr00t": SHARED_DATA / "gr00t_pnp_lerobot_v20",
    "bridge": SHARED_DATA / "bridge_rlds",
    "lift": SHARED_DATA / "robosuite_hdf5" / "lift.hdf5",
}
EXTRA = {"lift": ["--no-images"]}  # lift has no camera: said so, else the job fails (no silent loss)
SETTINGS = {
    "default": [],
    "mixed": ["--shuffle-window", "8", "--val-fraction", "0.2", "--tokenizer", "fast", "--horizon", "10"],
}


def tree_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file under OUT, by relative path (hidden job directories excluded)."""
    hashes = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def ingest(source: Path, out: Path, flags: list[str], workers: int) -> None:
    cmd = [sys.executable, "-m", "trajshard", "ingest", str(source), str(out), "--workers", str(workers)]
    subprocess.run(cmd + flags, check=True, stdout=subprocess.DEVNULL)


def shards_only(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if k.startswith("shards/")}


def compare(name: str, got: dict[str, str], want: dict[str, str]) -> tuple[int, int, int]:
    differ = sorted(k for k in got.keys() & want.keys() if got[k] != want[k])
    missing, new = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
    for label, files in (("differs", differ), ("missing", missing), ("new", new)):
        for f in files:
            print(f"  {name}: {label}: {f}", file=sys.stderr)
    return len(differ), len(missing), len(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true", help="write the hashes instead of comparing")
    ap.add_argument("--only", default="", help="comma-separated sources (default all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shards", action="store_true", help="compare the shards only, not meta/ or the card")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    recorded = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    results, failed = {}, False
    work = Path(tempfile.mkdtemp(prefix="byte-identity-"))
    try:
        for src_name, src in SOURCES.items():
            if only and src_name not in only:
                continue
            if src is None:
                from trajshard.sources.synthetic import write_synthetic_dataset

                src = work / "demo_raw"
                write_synthetic_dataset(src, n_episodes=8, seconds=4.0)
            elif not src.exists():
                print(f"note: {src} is absent; {src_name} skipped", file=sys.stderr)
                continue
            for setting, flags in SETTINGS.items():
                name = f"{src_name}/{setting}"
                out = work / name.replace("/", "-")
                ingest(src, out, flags + EXTRA.get(src_name, []), args.workers)
                results[name] = tree_hashes(out)
                shutil.rmtree(out)
                print(f"ingested {name}: {len(results[name])} files", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.record:
        RECORD.write_text(json.dumps({**recorded, **results}, indent=1, sort_keys=True) + "\n")
        print(f"recorded {len(results)} ingests in {RECORD}")
        return 0
    print("| ingest | files | differ | missing | new |\n| --- | ---: | ---: | ---: | ---: |")
    for name, got in results.items():
        if name not in recorded:
            print(f"| {name} | {len(got)} | not recorded | | |")
            failed = True
            continue
        want = shards_only(recorded[name]) if args.shards else recorded[name]
        got = shards_only(got) if args.shards else got
        d, m, n = compare(name, got, want)
        failed |= bool(d or m or n)
        print(f"| {name} | {len(got)} | {d} | {m} | {n} |")
    print("identical" if not failed else "DIFFERENT")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
