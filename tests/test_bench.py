"""The benchmark suite runs end to end (a small row of it): its table, the Ray Data peer and the
scaling line. Timings are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ingest_bench_prints_a_full_row_for_each_worker_count(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "bench/ingest.py",
            "--only",
            "synthetic",
            "--repeat",
            "2",
            "--out-dir",
            str(tmp_path),
            "--jpeg-subsampling",
            "4:2:0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "JPEG chroma 4:2:0." in run.stdout
    rows = [line for line in run.stdout.splitlines() if line.startswith("| synthetic |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "2"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "-" not in cells and all(cells), row  # every column measured, the Ray Data peer's too
    assert "synthetic: 2 workers / 1 worker = " in run.stdout
    spread = [line for line in run.stdout.splitlines() if "(c) from " in line]
    assert [line.split(":")[0] for line in spread] == ["- synthetic workers=1", "- synthetic workers=2"]
    assert all(line.count(" / ") == 2 for line in spread), spread  # two repeats of pass 2 and of decode
    assert "Failed rows" not in run.stdout


def test_lerobot_v3_bench_prints_a_row_per_file_size():
    run = subprocess.run(
        [sys.executable, "bench/lerobot_v3.py", "--episodes", "3,6", "--frames", "8"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| 3 |") or line.startswith("| 6 |")]
    assert len(rows) == 2 and all(len(r.split("|")) == 9 for r in rows)


def test_loader_bench_prints_the_decode_limit_its_breakdown_and_the_mixture_row(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "bench/loader.py",
            "--repeat",
            "1",
            "--epochs",
            "1",
            "--reference-samples",
            "32",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    limit = [line for line in lines if line.startswith("| decode limit:")]
    assert len(limit) == 1 and limit[0].rstrip().endswith("| 1.00x |")
    loader = [line for line in lines if line.startswith("| trajshard loader |")]
    assert [r.split("|")[2].strip() for r in loader] == ["0", "1", "2"]
    assert all(r.rstrip(" |").endswith("x") for r in loader)  # each against the decode limit
    stages = ("tar read", "members to arrays", "JPEG decode", "batching", "shared memory (workers only)")
    stages += ("worker restart per epoch (workers only)",)
    for stage in (*stages, "the rest", "**2-worker loader**"):
        row = next(line for line in lines if line.startswith(f"| {stage} |"))
        micros = float(row.split("|")[3].replace(",", ""))  # measured, printed as a number
        assert micros > 0 or stage in ("shared memory (workers only)", "the rest"), row
    assert any(line.startswith("- 2-worker loader: ") and "x the decode limit" in line for line in lines)
    if "### Mixture of four robots" in run.stdout:  # ../shared/data holds the four datasets
        rows = [line for line in lines if line.startswith(("| single dataset: ", "| mixture of the four |"))]
        assert len(rows) == 10 and all(r.split("|")[5].strip() for r in rows)
        assert [line.split(":")[0] for line in lines if "would give" in line] == [
            "- 0 workers",
            "- 2 workers",
        ]
