"""What `trajshard ingest` says, run as a user runs it (a subprocess, output piped): its first line at
once, progress lines without a terminal, a line per task with -v, one line and exit 2 for a store
that cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _trajshard(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "trajshard", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=environ, timeout=timeout, cwd=ROOT)


def test_piped_ingest_says_what_it_found_first_then_progress_lines(synthetic_raw, tmp_path):
    res = _trajshard("ingest", str(synthetic_raw), str(tmp_path / "out"), "--workers", "0")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == (
        f"trajshard.ingest: ingest {synthetic_raw} (raw) -> {tmp_path / 'out'}: 8 episodes found; "
        "running serially in this process (--workers 0, no Ray)"
    )
    assert lines[1] == "trajshard.ingest: pass 1: statistics: started, 8 episodes"
    assert any(line.startswith("trajshard.ingest: pass 2: shards: 8/8 episodes") for line in lines)
    assert not any(line.startswith("trajshard.tasks") for line in lines)  # only with -v


def test_verbose_ingest_logs_a_line_per_finished_task(synthetic_raw, tmp_path):
    res = _trajshard("-v", "ingest", str(synthetic_raw), str(tmp_path / "out"), "--workers", "0")
    assert res.returncode == 0, res.stderr
    tasks = [line for line in res.stderr.splitlines() if line.startswith("trajshard.tasks: ")]
    pass2 = [line for line in tasks if "pass 2: shards: group" in line]
    groups = sorted(int(line.split(" group ")[1].split()[0]) for line in pass2)
    assert len(groups) >= 2 and groups == list(range(len(groups)))  # every pass-2 task, once
    assert (
        pass2[-1].endswith("(8/8 episodes)") and "ep_000" in pass2[0] and " samples in 1 part, " in pass2[0]
    )
    assert any("pass 1: statistics: task 1/" in line for line in tasks)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/raw?endpoint_override=127.0.0.1:9&scheme=http",
        "hf://datasets/trajshard-none/no-such-repo",
    ],
    ids=["s3-closed-port", "hf"],
)
def test_an_unreachable_store_is_one_line_and_exit_2(uri, tmp_path):
    if uri.startswith("hf://"):
        pytest.importorskip("huggingface_hub")
    creds = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "HF_HUB_OFFLINE": "0"}
    res = _trajshard("ingest", uri, str(tmp_path / "out"), "--workers", "0", env=creds)
    assert res.returncode == 2, res.stderr
    assert res.stderr.startswith(f"Error: cannot reach {uri.split('?')[0]}")
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr
