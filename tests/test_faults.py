"""Fault injection on a real multi-node Ray cluster (ray.cluster_utils.Cluster: a head and two worker
nodes in this machine): a worker node lost in the middle of pass 2, and the driver killed (SIGKILL)
then run again with --resume, both end with output byte-identical to a clean run (made serially,
the same bytes as any run on Ray). And the quarantine limit (serially, no Ray)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import tree_digest
from trajshard.config import JobConfig
from trajshard.pipelines.ingest import run_ingest
from trajshard.reports.validation import validate_output

JOB_TOML = 'task_steps = 30\nshard_size = "300KB"\nval_fraction = 0.2\nseed = 5\n'


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, connect=False)
    nodes = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, nodes
    c.shutdown()


@pytest.fixture(scope="module")
def clean(many_raw, tmp_path_factory) -> Path:
    """The reference: an uninterrupted run, serially in this process."""
    work = tmp_path_factory.mktemp("clean")
    (work / "job.toml").write_text(JOB_TOML)
    from trajshard.config import load_config

    out = work / "out"
    run_ingest(str(many_raw), str(out), load_config(work / "job.toml", workers=0), progress=False)
    assert validate_output(out).ok
    return out


def _driver(src: Path, out: Path, address: str, config: Path, *extra: str) -> subprocess.Popen:
    cli = Path(sys.executable).with_name("trajshard")
    cmd = [str(cli), "ingest", str(src), str(out), "--config", str(config), "--address", address, *extra]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_groups(out: Path, proc: subprocess.Popen, n: int, timeout_s: float = 240) -> int:
    """Block until the job has recorded ``n`` finished pass-2 groups; return how many it has."""
    groups = out / ".trajshard" / "groups"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = len(list(groups.glob("*.json"))) if groups.is_dir() else 0
        if done >= n:
            return done
        if proc.poll() is not None:
            raise AssertionError(f"the job ended before the fault: {proc.stderr.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError("pass 2 did not start in time")


def _job(tmp_path: Path, address: str, src: Path):
    """(start(*flags) -> driver process, OUT) of a job on the cluster, its config written."""
    config, out = tmp_path / "job.toml", tmp_path / "out"
    config.write_text(JOB_TOML)
    return (lambda *extra: _driver(src, out, address, config, *extra)), out


def test_driver_killed_mid_pass2_then_resume_is_byte_identical(cluster, many_raw, clean, tmp_path):
    start, out = _job(tmp_path, cluster[0].address, many_raw)
    proc = start()
    _wait_for_groups(out, proc, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "meta" / "info.json").exists()
    recorded = len(list((out / ".trajshard" / "groups").glob("*.json")))
    assert recorded >= 2

    again = start()  # without --resume: refused, nothing touched
    _, err = again.communicate(timeout=120)
    assert again.returncode != 0 and "--resume" in err

    resumed = start("--resume", "--no-progress")
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr[-3000:]
    assert "already done (resumed)" in stderr
    assert tree_digest(out) == tree_digest(clean)


def test_worker_node_lost_mid_pass2_is_byte_identical(cluster, many_raw, clean, tmp_path):
    c, nodes = cluster
    start, out = _job(tmp_path, c.address, many_raw)
    proc = start()
    done = _wait_for_groups(out, proc, 1)
    c.remove_node(nodes[0])  # its raylet and workers die with tasks in flight; Ray retries them
    stdout, stderr = proc.communicate(timeout=300)
    nodes[0] = c.add_node(num_cpus=1)
    assert proc.returncode == 0, stderr[-3000:]
    planned = len(json.loads((clean / "meta" / "manifest.json").read_text())["shards"])
    assert done < planned  # the node died with pass 2 unfinished
    assert tree_digest(out) == tree_digest(clean)


def test_quarantine_limit_aborts_with_a_summary(raw_copy, tmp_path):
    for ep in sorted(raw_copy.iterdir())[:3]:
        (ep / "action.parquet").write_bytes(b"not parquet")
    from trajshard.pipelines.ingest import IngestError

    with pytest.raises(IngestError, match=r"3 of 8 episodes \(37.5%\).*max_quarantine_fraction 0.25") as err:
        run_ingest(
            str(raw_copy),
            str(tmp_path / "out"),
            JobConfig.from_flags(workers=0, max_quarantine_fraction=0.25),
            progress=False,
        )
    assert "action.parquet" in str(err.value)
    assert not (tmp_path / "out" / "meta" / "info.json").exists()
    report = run_ingest(
        str(raw_copy),
        str(tmp_path / "ok"),
        JobConfig.from_flags(workers=0, max_quarantine_fraction=0.5),
        progress=False,
    )
    assert report.episodes_quarantined == 3
