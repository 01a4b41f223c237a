"""The HTML report at scale: a synthetic dataset of many short episodes, its report, and the report
opened in Debian's headless Chromium.

    python bench/report_scale.py [--episodes 10000] [--out-dir DIR] [--keep]

Writes ``--episodes`` synthetic episodes of 1 s (32x32 video; every 100th has no proprio, so it is
quarantined), ingests them serially (``--workers 0``) at 32 px, writes ``OUT/report.html`` and opens
it in Chromium. Prints the build times, the page's size, what it embeds, and the seconds from asking
Chromium for the file to the page saying it is drawn. The acceptance is under 5 s and under 20 MB
for 10,000 episodes. With ``--keep`` and the same ``--out-dir`` the dataset is reused (building 10,000
episodes takes several minutes; the report itself, seconds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/headless.py: the Chromium driver the report's test uses

from tests import headless  # noqa: E402
from trajshard.config import JobConfig  # noqa: E402
from trajshard.pipelines.ingest import run_ingest  # noqa: E402
from trajshard.reports.page import write_report  # noqa: E402
from trajshard.sources import synthetic  # noqa: E402

SECONDS, SIZE, IMAGE_SIZE, BROKEN_EVERY = 1.0, 32, 32, 100


def _write(indexes: range, root: str) -> None:
    for i in indexes:
        ep = Path(root) / f"ep_{i:05d}"
        synthetic._write_episode(ep, i, SECONDS, 0, SIZE, SIZE, None)
        if i % BROKEN_EVERY == BROKEN_EVERY - 1:
            for p in ep.glob("proprio.*"):
                p.unlink()


def build(work: Path, episodes: int, keep: bool) -> tuple[Path, dict]:
    raw, out = work / "raw", work / "out"
    spec = {"episodes": episodes, "seconds": SECONDS, "size": SIZE, "image_size": IMAGE_SIZE}
    marker = work / "complete.json"
    if (
        keep
        and marker.exists()
        and json.loads(marker.read_text()) == spec
        and (out / "meta/info.json").exists()
    ):
        return out, {"reused": True}
    shutil.rmtree(raw, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    chunks = [range(k, episodes, 2) for k in range(2)]
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_write, chunks, [str(raw)] * len(chunks)))
    written = time.perf_counter() - t
    t = time.perf_counter()
    run_ingest(str(raw), str(out), JobConfig.from_flags(workers=0, image_size=IMAGE_SIZE), progress=False)
    marker.write_text(json.dumps(spec))
    return out, {"write_s": written, "ingest_s": time.perf_counter() - t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=10_000)
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="reuse the dataset of an earlier run in --out-dir")
    ap.add_argument("--screenshot", type=Path, default=None, help="also save a PNG of the episode browser")
    args = ap.parse_args()
    work = args.out_dir or Path(tempfile.mkdtemp(prefix="trajshard-report-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    out, built = build(work, args.episodes, args.keep)
    if built.get("reused"):
        print(f"dataset: reused {out}")
    else:
        print(
            f"dataset: {args.episodes} episodes written in {built['write_s']:.1f}s, ingested in {built['ingest_s']:.1f}s"
        )
    path, facts = write_report(out)
    print(facts.line(str(path)))
    why = headless.missing()
    if why:
        print(f"browser: skipped ({why})")
        return 0
    with headless.chromium() as driver:
        seconds = headless.open_report(driver, path)  # a fresh Chromium: it also compiles plotly.js
        again = headless.open_report(driver, path)
        timings = driver.execute_script("return window.trajshardReport.timings")
        before = headless.page_state(driver)
        headless.drag_slider(driver, 0.9)
        after = headless.page_state(driver)
        if args.screenshot:
            headless.screenshot(driver, args.screenshot, "episodes")
        errors = headless.console_errors(driver)
    moved = before["cursors"] != after["cursors"]
    stages = ", ".join(f"{k} {v / 1000:.2f}s" for k, v in sorted(timings.items(), key=lambda kv: kv[1]))
    print(
        f"browser: drawn {seconds:.2f}s after asking for it (opened again: {again:.2f}s; {stages}); "
        f"{facts.bytes / 1e6:.1f} MB; slider moved the cursors: {moved}; console errors: {len(errors)}"
    )
    ok = seconds < 5 and facts.bytes < 20e6 and not errors
    print(("PASS" if ok else "FAIL") + ": under 5 s and 20 MB with no console error")
    if not args.keep and args.out_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
