"""docs/cluster.md, run as written: ``ray start --head`` on free ports, ``ray job submit -- trajshard
-v ingest``, the job SUCCEEDED, its log shows progress lines, the output validates. Then this head (and
only this head: found by its temp dir and GCS port, never ``ray stop``) is stopped.

Needs the Ray dashboard (``ray[default]``, in the ``dev`` and ``cluster`` extras); skips without it."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 300  # a hang guard on a loaded machine, not a speed check
JOB_TIMEOUT_S = 600


def dashboard_missing() -> str | None:
    """Why this Ray cannot run the dashboard (and so the job server), or None when it can."""
    try:
        from ray._private.utils import get_dashboard_dependency_error
    except ImportError:  # a Ray without this helper: check the packages ray[default] adds
        for module in ("aiohttp", "aiohttp_cors", "opencensus", "prometheus_client"):
            try:
                __import__(module)
            except ImportError as exc:
                return str(exc)
        return None
    error = get_dashboard_dependency_error()
    return None if error is None else str(error)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Head:
    dashboard: str  # http://127.0.0.1:<dashboard port>
    env: dict[str, str]  # the environment the docs' shell has: venv on PATH, RAY_AUTH_MODE=token
    ray: str  # the ray CLI of this environment


def stop_head(temp_dir: str, gcs_port: int) -> None:
    """Terminate this head's processes: every process whose command line names its temp dir or its GCS
    port, and their descendants (workers, the job's entrypoint). Other Ray instances are not touched."""
    import psutil

    marks = (temp_dir, f":{gcs_port}")
    roots = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(m in a for m in marks for a in proc.info["cmdline"] or []):
                roots.append(proc)
        except psutil.Error:
            continue
    procs: dict[int, psutil.Process] = {}
    for root in roots:
        try:
            procs.update({p.pid: p for p in [root, *root.children(recursive=True)]})
        except psutil.Error:
            continue
    for proc in procs.values():
        try:
            proc.terminate()
        except psutil.Error:
            pass
    # The dashboard's processes go within a few seconds of SIGTERM; the raylet, its runtime-env agent and
    # the GCS take 15 s or never go (and were killed then): 5 s of grace, then SIGKILL.
    _, alive = psutil.wait_procs(list(procs.values()), timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture
def ray_head() -> Iterator[Head]:
    missing = dashboard_missing()
    if missing:
        pytest.skip(f"`ray job submit` needs the Ray dashboard: pip install 'ray[default]' ({missing})")
    pytest.importorskip("psutil")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")  # what `source .venv/bin/activate` does
    if shutil.which("trajshard", path=env["PATH"]) is None or shutil.which("ray", path=env["PATH"]) is None:
        pytest.skip(f"the trajshard and ray console scripts are not in {bin_dir}")
    # A token of this head's own (not ~/.ray/auth_token, which other Ray users on the machine share).
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    temp_dir = tempfile.mkdtemp(prefix="tsray-", dir="/tmp")  # short: Ray's socket paths live under it
    gcs, dashboard, client, agent = free_ports(4)
    ray_cli = shutil.which("ray", path=env["PATH"])
    assert ray_cli is not None
    try:
        subprocess.run(
            [ray_cli, "start", "--head", "--port", str(gcs), "--dashboard-port", str(dashboard)]
            + ["--ray-client-server-port", str(client), "--dashboard-agent-listen-port", str(agent)]
            + ["--num-cpus", "2", "--disable-usage-stats", "--temp-dir", temp_dir],
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        yield Head(f"http://127.0.0.1:{dashboard}", env, ray_cli)
    finally:
        stop_head(temp_dir, gcs)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_recipe(ray_head: Head, tmp_path: Path) -> None:
    from trajshard.sources.synthetic import write_synthetic_dataset

    raw, out = tmp_path / "raw", tmp_path / "out"
    write_synthetic_dataset(raw, n_episodes=4, seconds=2.0, seed=0, width=64, height=64)
    submit = subprocess.run(
        [ray_head.ray, "job", "submit", "--address", ray_head.dashboard, "--submission-id", "ingest-test"]
        + ["--", "trajshard", "-v", "ingest", str(raw), str(out)],
        env=ray_head.env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    logs = submit.stdout + submit.stderr
    assert submit.returncode == 0, logs[-4000:]
    status = subprocess.run(
        [
            sys.executable,
            "-c",
            # `ray job submit` returns when the job's log ends; its status may say RUNNING a moment
            # longer, so wait (bounded) for a terminal one
            "import sys, time; from ray.job_submission import JobSubmissionClient as C; c = C(sys.argv[1])\n"
            "for _ in range(120):\n"
            "    s = str(c.get_job_status(sys.argv[2]))\n"
            "    if s not in ('PENDING', 'RUNNING'): break\n"
            "    time.sleep(1)\n"
            "print(s)",
            ray_head.dashboard,
            "ingest-test",
        ],
        env=ray_head.env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert status.stdout.strip().splitlines()[-1:] == ["SUCCEEDED"], (
        status.stdout + status.stderr + logs[-3000:]
    )
    # Without a terminal the ingest logs progress lines, and they reach the job's log.
    assert "trajshard.ingest: pass 2: shards: 4/4 episodes" in logs, logs[-4000:]
    assert "wrote 72 samples of 4 episodes" in logs
    check = subprocess.run(
        [sys.executable, "-m", "trajshard", "validate", str(out)],
        env=ray_head.env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith(f"OK: dataset {out}: 4 episodes, 72 samples")
